"""The one place that reads configuration. Handlers never know whether they run in AWS or locally (promise 7):
boto3 itself honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>, and every name and URL comes from here."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise RuntimeError(f"environment variable {name} is not set")
    return value


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    ledger_table: str
    webhook_secret: str  # Secrets Manager name or ARN: {"current": ..., "previous": ..., "previous_expires_at": ...}
    record_retention_days: int = 0
    secret_max_age_seconds: int = 300
    max_body_bytes: int = 256 * 1024
    fingerprint_key_secret: str = ""  # optional: outcomes then carry no evidence to match reviews with
    # A signature that does not verify re-reads the secret at most this often per container: forged requests cost
    # only the HMAC. `docdrop rotate-webhook-secret` waits this long after marking a rotation, so every container
    # sees the mark (and, while a rotation is marked, re-reads on each mismatch).
    secret_reread_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WebhookSettings:
        return cls(
            ledger_table=_required(env, "LEDGER_TABLE"),
            webhook_secret=_required(env, "WEBHOOK_SECRET"),
            record_retention_days=int(env.get("RECORD_RETENTION_DAYS") or 0),
            fingerprint_key_secret=env.get("FINGERPRINT_KEY_SECRET", ""),
            secret_reread_seconds=float(env.get("WEBHOOK_SECRET_REREAD_SECONDS") or 60.0),
        )


@dataclasses.dataclass(frozen=True)
class UploaderSettings:
    ledger_table: str
    cobalt_base_url: str
    cobalt_credentials_secret: str  # Secrets Manager name or ARN: {"client_id", "client_secret", "access_token"}
    watched_prefix: str = ""
    record_retention_days: int = 0
    connect_timeout_seconds: float = 3.05
    read_timeout_seconds: float = 30.0
    max_parallel_uploads: int = 10
    secret_max_age_seconds: int = 300
    # Promise 6: a 500 from Cobalt is ambiguous (it may have stored the document): NEEDS_REVIEW unless set to "retry".
    server_error_policy: str = "needs_review"
    # Secrets Manager name or ARN: {"key": ...}, the per-stack key of the patient/folder/file fingerprints.
    fingerprint_key_secret: str = ""
    duplicate_window_hours: float = 24.0
    # Cobalt unavailable: the queue's delays (docdrop.retry_schedule), set as the message's visibility on the way out.
    retry_steps_seconds: str = ""
    ingest_queue_url: str = ""
    max_receive_count: int = 0  # the queue's; on that receive the reason says the message goes to the DLQ next
    # The breaker on Cobalt (docdrop.breaker): this many unavailable answers within the window open it.
    breaker_failures: int = 5
    breaker_window_seconds: float = 60.0
    breaker_cool_down_seconds: float = 60.0
    account_prefixes: str = ""  # COBALT_ACCOUNT_PREFIXES, e.g. "practice-a/=a,practice-b/=b" (docdrop.accounts)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> UploaderSettings:
        optional: dict[str, Any] = {}
        for field, name, kind in (
            ("connect_timeout_seconds", "COBALT_CONNECT_TIMEOUT", float),
            ("read_timeout_seconds", "COBALT_READ_TIMEOUT", float),
            ("max_parallel_uploads", "MAX_PARALLEL_UPLOADS", int),
            ("server_error_policy", "COBALT_SERVER_ERROR_POLICY", str),
            ("duplicate_window_hours", "DUPLICATE_WINDOW_HOURS", float),
            ("retry_steps_seconds", "RETRY_STEPS_SECONDS", str),
            ("ingest_queue_url", "INGEST_QUEUE_URL", str),
            ("max_receive_count", "MAX_RECEIVE_COUNT", int),
            ("breaker_failures", "BREAKER_FAILURES", int),
            ("breaker_window_seconds", "BREAKER_WINDOW_SECONDS", float),
            ("breaker_cool_down_seconds", "BREAKER_COOL_DOWN_SECONDS", float),
            ("account_prefixes", "COBALT_ACCOUNT_PREFIXES", str),
        ):
            if env.get(name):
                optional[field] = kind(env[name])
        settings = cls(
            ledger_table=_required(env, "LEDGER_TABLE"),
            cobalt_base_url=_required(env, "COBALT_BASE_URL").rstrip("/"),
            cobalt_credentials_secret=_required(env, "COBALT_CREDENTIALS_SECRET"),
            watched_prefix=env.get("WATCHED_PREFIX", ""),
            record_retention_days=int(env.get("RECORD_RETENTION_DAYS") or 0),
            fingerprint_key_secret=_required(env, "FINGERPRINT_KEY_SECRET"),
            **optional,
        )
        if settings.server_error_policy not in ("needs_review", "retry"):
            raise RuntimeError("COBALT_SERVER_ERROR_POLICY must be needs_review or retry")
        return settings


@dataclasses.dataclass(frozen=True)
class JoinerSettings:
    ledger_table: str
    record_retention_days: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> JoinerSettings:
        return cls(
            ledger_table=_required(env, "LEDGER_TABLE"),
            record_retention_days=int(env.get("RECORD_RETENTION_DAYS") or 0),
        )


@dataclasses.dataclass(frozen=True)
class ReconcilerSettings:
    """The deadlines of open states (template parameters; fractions allowed, so a local stack can use seconds)."""

    ledger_table: str
    cobalt_base_url: str
    cobalt_credentials_secret: str
    record_retention_days: int = 0
    outcome_grace_minutes: float = 15.0
    stale_after_hours: float = 24.0
    tag_wait_hours: float = 72.0
    # A PENDING_RETRY not rewritten for this long was not received again: its message is in the DLQ.
    retry_horizon_minutes: float = 70.0  # the longest wait between tries (60 min), and a margin
    ingest_queue_url: str = ""  # where a re-linked account's BLOCKED objects are sent again
    foreign_retention_days: float = 7.0
    # How long the ingest dead-letter queue keeps a message (its MessageRetentionPeriod): past it, a redrive finds
    # nothing, and a dead-lettered PENDING_RETRY is sent again by `docdrop retry` instead.
    dlq_retention_days: float = 14.0
    # A review whose attempt window plus this many hours holds no event of its patient and folder in Cobalt's log (read
    # whole) is "not filed, by silence"; with `resend_silent_reviews`, the reconciler then resends it once itself.
    silent_after_hours: float = 72.0
    resend_silent_reviews: bool = False
    dead_letter_queue_arn: str = ""
    fingerprint_key_secret: str = ""  # optional: reviews are then matched to webhooks only, not to the event log
    connect_timeout_seconds: float = 3.05
    read_timeout_seconds: float = 10.0
    secret_max_age_seconds: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ReconcilerSettings:
        optional: dict[str, Any] = {}
        for field, name in (
            ("outcome_grace_minutes", "OUTCOME_GRACE_MINUTES"),
            ("stale_after_hours", "STALE_AFTER_HOURS"),
            ("tag_wait_hours", "TAG_WAIT_HOURS"),
            ("retry_horizon_minutes", "RETRY_HORIZON_MINUTES"),
            ("foreign_retention_days", "FOREIGN_RETENTION_DAYS"),
            ("dlq_retention_days", "DLQ_RETENTION_DAYS"),
            ("silent_after_hours", "SILENT_AFTER_HOURS"),
            ("connect_timeout_seconds", "COBALT_CONNECT_TIMEOUT"),
            ("read_timeout_seconds", "COBALT_READ_TIMEOUT"),
        ):
            if env.get(name):
                optional[field] = float(env[name])
        settings = cls(
            ledger_table=_required(env, "LEDGER_TABLE"),
            cobalt_base_url=_required(env, "COBALT_BASE_URL").rstrip("/"),
            cobalt_credentials_secret=_required(env, "COBALT_CREDENTIALS_SECRET"),
            record_retention_days=int(env.get("RECORD_RETENTION_DAYS") or 0),
            dead_letter_queue_arn=env.get("DEAD_LETTER_QUEUE_ARN", ""),
            fingerprint_key_secret=env.get("FINGERPRINT_KEY_SECRET", ""),
            ingest_queue_url=env.get("INGEST_QUEUE_URL", ""),
            resend_silent_reviews=env.get("RESEND_SILENT_REVIEWS", "false").strip().lower() == "true",
            **optional,
        )
        if settings.stale_after_hours * 60 < settings.outcome_grace_minutes:
            raise RuntimeError("STALE_AFTER_HOURS must not be shorter than OUTCOME_GRACE_MINUTES")
        return settings

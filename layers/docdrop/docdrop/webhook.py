"""Cobalt's webhooks: verify, parse, record in one ledger write, answer fast (promises 3, 4, 5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from docdrop.cobalt_events import MAX_ID_CHARS, outcome_event_from, usable_id
from docdrop.evidence import outcome_fingerprint
from docdrop.ledger import OUTCOMES, LedgerError, LedgerRefusedItem, WebhookStores, parse_moment
from docdrop.observability import MetricName
from docdrop.signature import parse_json, verify_cobalt_signature, well_formed_signature

# Event families counted when ignored: a bounded set of metric dimension values, whatever Cobalt sends.
KNOWN_FAMILIES = frozenset({"appointment", "patient", "note", "task", "access_token", "document", "provider", "order"})


class MetricSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


@dataclasses.dataclass(frozen=True)
class WebhookAnswer:
    status_code: int
    body: dict[str, Any]
    event_id: str | None = None  # the signed body's event id, capped at MAX_ID_CHARS; None before the signature holds


# Cobalt keeps a rotated secret valid for 24 hours; so does DocDrop, no longer (a leaked old one could forge outcomes).
PREVIOUS_SECRET_LIFETIME = timedelta(hours=24)
# `docdrop rotate-webhook-secret` marks the document before asking Cobalt for a new secret and stores it right after:
# a delivery signed with a secret not stored yet is answered 503 in that window, and Cobalt's retry 1 s later passes.
ROTATION_WINDOW = timedelta(minutes=2)


def signing_secrets(document: Mapping[str, Any], now: datetime | None = None) -> list[str]:
    """The secrets to try: `current`, then `previous` until it expires.

    It expires at `previous_expires_at` (ISO 8601) when written, else 24 hours after the secret's version was created
    (`version_created_at`, from Secrets Manager); when neither can be read it is not trusted.
    """
    keys = [str(document.get("current") or "")]
    previous = str(document.get("previous") or "")
    if previous and (now or datetime.now(UTC)) >= _previous_expiry(document):
        previous = ""
    keys.append(previous)
    return [k for k in keys if k and k != "REPLACE_ME"]


def rotation_in_progress(document: Mapping[str, Any], now: datetime | None = None) -> bool:
    """True while a rotation started less than ROTATION_WINDOW ago has not stored its new secret yet."""
    started = parse_moment(document.get("rotation_started_at"))
    return started is not None and (now or datetime.now(UTC)) - started < ROTATION_WINDOW


def _previous_expiry(document: Mapping[str, Any]) -> datetime:
    for value, extra in (
        (document.get("previous_expires_at"), timedelta(0)),
        (document.get("version_created_at"), PREVIOUS_SECRET_LIFETIME),
    ):
        moment = parse_moment(value)
        if moment is not None:
            return moment + extra
    return datetime.min.replace(tzinfo=UTC)


def handle_cobalt_webhook(
    raw_body: bytes,
    headers: Mapping[str, str],
    *,
    ledger: WebhookStores,
    load_secrets: Callable[[bool], Mapping[str, Any]],
    metrics: MetricSink,
    max_body_bytes: int = 256 * 1024,
    fingerprint_key: Callable[[], bytes] | None = None,
) -> WebhookAnswer:
    """One delivery. `headers` have lower-case names. `load_secrets(refresh)` returns the signing-secret document."""
    if len(raw_body) > max_body_bytes:
        metrics.add_metric(MetricName.WEBHOOK_BAD_REQUEST, "Count", 1)
        return WebhookAnswer(413, {"error": "payload too large"})
    signature = headers.get("cobalt-verification")
    if not well_formed_signature(signature):  # refused before the body or a secret is read
        metrics.add_metric(MetricName.WEBHOOK_INVALID_SIGNATURE, "Count", 1)
        return WebhookAnswer(401, {"error": "invalid signature"})
    # On a mismatch the secret may have been rotated since it was cached: read it once more before refusing.
    if not verify_cobalt_signature(raw_body, signature, signing_secrets(load_secrets(False))):
        fresh = load_secrets(True)
        if not verify_cobalt_signature(raw_body, signature, signing_secrets(fresh)):
            if rotation_in_progress(fresh):  # Cobalt retries a 5xx once, after 1 s
                metrics.add_metric(MetricName.WEBHOOK_DEFERRED_FOR_ROTATION, "Count", 1)
                return WebhookAnswer(503, {"error": "the signing secret is being rotated; retry"})
            metrics.add_metric(MetricName.WEBHOOK_INVALID_SIGNATURE, "Count", 1)
            return WebhookAnswer(401, {"error": "invalid signature"})
    try:
        event = parse_json(raw_body)
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        metrics.add_metric(MetricName.WEBHOOK_BAD_REQUEST, "Count", 1)
        return WebhookAnswer(400, {"error": "body must be a JSON event with id and type"})
    answer = _handle_signed_event(event, headers, ledger=ledger, metrics=metrics, fingerprint_key=fingerprint_key)
    return dataclasses.replace(answer, event_id=event["id"][:MAX_ID_CHARS])


def _handle_signed_event(
    event: dict[str, Any],
    headers: Mapping[str, str],
    *,
    ledger: WebhookStores,
    metrics: MetricSink,
    fingerprint_key: Callable[[], bytes] | None,
) -> WebhookAnswer:
    event_type: str = event["type"]
    raw_data = event.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    try:
        if event_type in OUTCOMES:
            attempt = _attempt(headers.get("webhook-attempt"))
            outcome = outcome_event_from(event, attempt=attempt)
            if outcome is None:
                metrics.add_metric(MetricName.WEBHOOK_BAD_REQUEST, "Count", 1)
                return WebhookAnswer(400, {"error": "document event without a usable data.document_id"})
            if fingerprint_key is not None:
                fingerprint = outcome_fingerprint(fingerprint_key(), data)
                outcome = dataclasses.replace(outcome, evidence_fingerprint=fingerprint)
            recorded = ledger.record_outcome(outcome)
            if recorded:  # DocumentsUploaded/Failed are counted when joined to an object (docdrop.outcomes)
                metrics.add_metric(MetricName.OUTCOME_EVENTS_RECORDED, "Count", 1)
        elif event_type in ("access_token.login_required", "access_token.password_change_warning"):
            reference = usable_id(
                data.get("access_token_reference_id") or event.get("access_token_reference_id") or "unknown"
            )
            if reference is None:
                metrics.add_metric(MetricName.WEBHOOK_BAD_REQUEST, "Count", 1)
                return WebhookAnswer(400, {"error": "login_required event without a usable access_token_reference_id"})
            message = data.get("message")
            warning = event_type == "access_token.password_change_warning"
            record = ledger.record_password_warning if warning else ledger.record_login_required
            recorded = record(
                reference, event["id"], str(event.get("created") or ""), str(message) if message else None
            )
            if recorded:
                metric = MetricName.PASSWORD_CHANGE_WARNING if warning else MetricName.LOGIN_REQUIRED
                metrics.add_metric(metric, "Count", 1)
        else:
            metrics.add_metric(MetricName.WEBHOOK_IGNORED_EVENT, "Count", 1)
            return WebhookAnswer(200, {"status": "ignored", "family": event_family(event_type)})
    except LedgerRefusedItem:  # a shape DynamoDB can never store: a retry would fail the same way
        metrics.add_metric(MetricName.WEBHOOK_BAD_REQUEST, "Count", 1)
        return WebhookAnswer(400, {"error": "the event cannot be stored as sent"})
    except LedgerError:
        # 5xx only when the write failed: Cobalt retries once, and the event log keeps it for the reconciler.
        metrics.add_metric(MetricName.WEBHOOK_LEDGER_ERROR, "Count", 1)
        return WebhookAnswer(500, {"error": "could not record the event; retry"})
    if not recorded:
        metrics.add_metric(MetricName.WEBHOOK_DUPLICATE, "Count", 1)
        return WebhookAnswer(200, {"status": "duplicate"})
    return WebhookAnswer(200, {"status": "recorded"})


def event_family(event_type: str) -> str:
    family = event_type.split(".", 1)[0]
    return family if family in KNOWN_FAMILIES else "other"


def _attempt(header: str | None) -> int | None:
    """`webhook-attempt` as a small number (Cobalt sends 1 or 2); anything else is not kept."""
    try:
        attempt = int(header or "")
    except ValueError:
        return None
    return attempt if 0 < attempt < 1000 else None

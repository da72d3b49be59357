"""The upload path: one S3 object version → validated → claimed → sent to Cobalt at most once → its state recorded.

Promises kept here: 1 (claim before the POST; a duplicate, a redelivery or a racing invocation finds the claim and
stops; an ambiguous POST becomes NEEDS_REVIEW), 2 (every version read ends in a state with a reason, or its message
returns to the queue), 5 (logs name the object id, never key, MRN or notes), 6 (answers classified by `docdrop.cobalt`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import posixpath
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import ClientError

from docdrop.accounts import DEFAULT as DEFAULT_ACCOUNT
from docdrop.accounts import CobaltAccount, CobaltAccounts, route
from docdrop.breaker import BreakerSettings, CobaltBreaker, Permission
from docdrop.cobalt import CobaltAnswer, CobaltClient, Verdict, backoff_seconds
from docdrop.contract import Accepted, Refused, UploadFields, read_contract
from docdrop.evidence import document_fingerprint, patient_folder_fingerprint
from docdrop.filetype import EXTENSIONS, MAX_DOCUMENT_BYTES, SNIFF_BYTES, sniff_content_type
from docdrop.ledger import (
    CLAIMABLE,
    IN_CHART,
    INTERRUPTED_REASON,
    RESEND_APPROVED,
    RESENDABLE,
    TAGS_EXPIRED,
    Claim,
    DocumentLedger,
    LedgerError,
    ObjectRef,
    Status,
    never_posted,
    now_iso,
    parse_moment,
)
from docdrop.observability import AccountMetrics, MetricName
from docdrop.retry_schedule import RetrySchedule
from docdrop.s3_events import ObjectEvent, UnreadableMessage, parse_s3_notifications

# A claim outlives the invocation that holds it by this much; past it, the holder is known dead (see mark_interrupted).
LEASE_MARGIN_SECONDS = 30.0
# Time kept back at the end of an invocation to record what happened after the last answer from Cobalt.
RECORD_MARGIN_SECONDS = 5.0
LINK_CACHE_SECONDS = 5.0  # how long an account's link state is trusted per container
_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "Forbidden"})
# The ledger's version for an object read from a bucket without versioning: DocDrop sends nothing from one, since
# without S3's version id two events of one write cannot be told from two writes (a second upload).
UNVERSIONED = "unversioned"
UNVERSIONED_REASON = (
    "The inbox bucket's versioning is off or suspended, and DocDrop sends a document only by its S3 version id, "
    "so that it is never filed twice: enable versioning on the bucket, then put the object again"
)

Metric = tuple[MetricName, str, float]


class RetryLater(Exception):
    """The message must come back (SQS redelivers it after its visibility timeout). Never carries PHI."""


class MetricSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class Deadline:
    """The time an invocation has left, from Lambda's context."""

    def __init__(self, remaining_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + remaining_seconds

    @classmethod
    def from_context(cls, context: Any, default_seconds: float = 60.0) -> Deadline:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return cls(remaining() / 1000 if callable(remaining) else default_seconds)

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())


@dataclasses.dataclass(frozen=True)
class ObjectResult:
    """What processing one object event came to: the state it left the version in, and what to count."""

    object_id: str | None
    status: Status | None  # None: this event recorded nothing (not a document, or another writer got there first)
    retry_later: bool = False
    metrics: tuple[Metric, ...] = ()
    retry_in_seconds: int | None = None  # Cobalt unavailable: the queue's delay before the message is received again
    account: str | None = None  # the Cobalt account it went to, for the per-account counts


@dataclasses.dataclass
class _OpenedObject:
    ref: ObjectRef
    tags: dict[str, str]
    metadata: dict[str, str]
    content_length: int
    body: Any


class ObjectGone(Exception):
    """The object version no longer exists (deleted between the event and the read)."""


def _count(name: MetricName, value: float = 1) -> Metric:
    return (name, "Count", value)


_RECEIVED = _count(MetricName.OBJECTS_RECEIVED)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


class DocumentUploader:
    """Sends object versions to Cobalt. Collaborators are passed in, so tests can hand in local servers or fakes."""

    def __init__(
        self,
        ledger: DocumentLedger,
        s3: Any,
        cobalt: CobaltClient,
        *,
        logger: logging.Logger | Any,
        watched_prefix: str = "",
        max_attempts: int = 2,  # one quick retry for a blip; an outage is waited out in the queue
        sleep: Callable[[float], None] = time.sleep,
        fingerprint_key: Callable[[], bytes] | None = None,
        duplicate_window: timedelta = timedelta(hours=24),
        retry_schedule: RetrySchedule | None = None,
        max_receive_count: int = 0,
        breaker_settings: BreakerSettings | None = None,
        accounts: Callable[[], CobaltAccounts] | None = None,
        account_prefixes: Mapping[str, str] | None = None,
    ) -> None:
        self._ledger = ledger
        self._s3 = s3
        self._cobalt = cobalt
        self.logger = logger
        self._prefix = watched_prefix
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._fingerprint_key = fingerprint_key
        self._duplicate_window = duplicate_window
        self._retry_schedule = retry_schedule or RetrySchedule()
        self._max_receive_count = max_receive_count
        self._breaker_settings = breaker_settings
        self._breakers: dict[str, CobaltBreaker] = {}  # one per account: one practice's outage holds back only it
        self._breakers_lock = threading.Lock()
        self._accounts = accounts or (lambda: CobaltAccounts((CobaltAccount(DEFAULT_ACCOUNT, "", DEFAULT_ACCOUNT),)))
        self._account_prefixes = dict(account_prefixes or {})
        self._links: dict[
            str, tuple[float, bool]
        ] = {}  # reference id -> (read at, broken), a few seconds per container

    # ----- one object event ---------------------------------------------------------------------------------------
    def process(self, event: ObjectEvent, deadline: Deadline, receive_count: int = 1) -> ObjectResult:
        """One object event; `receive_count` is its SQS message's `ApproximateReceiveCount` (the retry schedule)."""
        if event.is_folder_placeholder or not event.key.startswith(self._prefix):
            self.logger.info("not a document under the watched prefix; skipped", extra={"event": event.event_name})
            return ObjectResult(None, None)
        ref = ObjectRef(event.bucket, event.key, event.identity) if event.identity else None
        if ref is not None:
            settled = self._settled(ref, self._ledger.get_object(ref))
            if settled is not None:
                return settled
            if event.size is not None and event.size > MAX_DOCUMENT_BYTES:
                return self._refuse(ref, self._too_big(event.size))
        try:
            opened = self._open(event)
        except ObjectGone:
            if ref is None:  # nothing exists and the event does not say which version: nothing to record
                self.logger.warning("object gone before it could be read; nothing to record")
                return ObjectResult(None, None, metrics=(_RECEIVED,))
            return self._refuse(ref, "The object version was deleted before DocDrop could read it")
        with _closing(opened.body):
            ref = opened.ref
            if event.identity is None:  # the version was only learnt now: look for an earlier event's work
                settled = self._settled(ref, self._ledger.get_object(ref))
                if settled is not None:
                    return settled
            if ref.version_id == UNVERSIONED:
                return self._refuse(ref, UNVERSIONED_REASON, unversioned=True)
            if opened.content_length > MAX_DOCUMENT_BYTES:
                return self._refuse(ref, self._too_big(opened.content_length))
            decision = read_contract(opened.tags, opened.metadata)
            if isinstance(decision, Refused):
                return self._refuse(ref, decision.reason)
            if not isinstance(decision, Accepted):
                return self._record_unclaimed(
                    ref, Status.WAITING_FOR_TAGS, decision.reason, missing_tags=list(decision.missing)
                )
            routed = route(self._accounts(), decision.account, ref.key, self._prefix, self._account_prefixes)
            if routed.account is None:
                return self._refuse(ref, routed.problem or "No Cobalt account for this object")
            account = routed.account
            content: bytes = opened.body.read(MAX_DOCUMENT_BYTES + 1)
        content_type = sniff_content_type(content[:SNIFF_BYTES])
        if content_type is None or not content or len(content) > MAX_DOCUMENT_BYTES:
            return self._refuse(ref, self._content_problem(content))
        if deadline.remaining() < self._attempt_floor():
            # Said once here, so a function timeout too short for its batch shows in the logs, not only as redeliveries.
            self.logger.warning(
                "too little time left in this invocation to upload; its message returns to the queue",
                extra={"object_id": ref.object_id, "seconds_left": round(deadline.remaining(), 1)},
            )
            raise RetryLater(f"object {ref.object_id}: too little time left in this invocation to upload")
        digest = hashlib.sha256(content).hexdigest()
        claim = self._ledger.claim(
            ref,
            lease_seconds=deadline.remaining() + LEASE_MARGIN_SECONDS,
            details={
                "content_type": content_type,
                "size": len(content),
                "account": account.name,
                **self._evidence(decision, digest),
            },
        )
        if not claim.won:
            settled = self._settled(ref, claim.current)
            if settled is None:  # claimable again already (a racing writer gave up): let the redelivery try
                raise RetryLater(f"object {ref.object_id}: claim lost to a concurrent writer")
            return settled
        duplicate = self._identical_one_sent(ref, claim, decision, digest)
        if duplicate is not None:
            return dataclasses.replace(duplicate, account=account.name)
        # No call through a dead login: only this account waits. A BLOCKED version sent again (a person's retry or
        # re-tag) is the one call that tries the link.
        if self._link_broken(account) and claim.previous_status != Status.BLOCKED.value:
            reason = (
                f"The EHR link of Cobalt account {account.name} is broken (login_required): re-link it in Cobalt, "
                f"then run docdrop accounts relink {account.name}; this object is sent then, once"
            )
            self._record(ref, claim.token, Status.BLOCKED, reason, cobalt_error="login_required")
            blocked = (_RECEIVED, _count(MetricName.DOCUMENTS_BLOCKED))
            return ObjectResult(ref.object_id, Status.BLOCKED, metrics=blocked, account=account.name)
        filename = posixpath.basename(ref.key) or "document" + EXTENSIONS[content_type]
        sent = self._send(
            ref, claim.token, decision.fields, filename, content_type, content, deadline, receive_count, account
        )
        return dataclasses.replace(sent, account=account.name)

    def _breaker(self, account: CobaltAccount | None) -> CobaltBreaker | None:
        if self._breaker_settings is None:
            return None
        name = account.name if account else DEFAULT_ACCOUNT
        with self._breakers_lock:
            if name not in self._breakers:
                self._breakers[name] = CobaltBreaker(self._ledger, self._breaker_settings, account=name)
            return self._breakers[name]

    def _link_broken(self, account: CobaltAccount) -> bool:
        read_at, broken = self._links.get(account.reference_id, (float("-inf"), False))
        if time.monotonic() - read_at > LINK_CACHE_SECONDS:
            link = self._ledger.get_account_link(account.reference_id, consistent=False) or {}  # a cache
            broken = link.get("status") == "LOGIN_REQUIRED"
            self._links[account.reference_id] = (time.monotonic(), broken)
        return broken

    def _link_works(self, account: CobaltAccount) -> None:
        """Cobalt answered through this account: a link known broken works again (the next objects are sent)."""
        if not self._links.get(account.reference_id, (0.0, False))[1]:
            return
        try:
            self._ledger.record_relink(account.reference_id, by="a call through it passed")
        except (LedgerError, ClientError):
            return
        self._links[account.reference_id] = (time.monotonic(), False)

    def _link_failed(self, account: CobaltAccount, ref: ObjectRef, message: str | None) -> None:
        """Cobalt answered login_required: the account's link is broken for every later object of it."""
        try:
            self._ledger.record_login_required(account.reference_id, f"upload:{ref.object_id}", now_iso(), message)
        except (LedgerError, ClientError):
            return  # the next object asks Cobalt again and records it then
        self._links[account.reference_id] = (time.monotonic(), True)

    # ----- the same page twice ------------------------------------------------------------------------------------
    def _identical_one_sent(self, ref: ObjectRef, claim: Claim, decision: Accepted, digest: str) -> ObjectResult | None:
        """DUPLICATE when the same file, patient and folder went out within the window (an SDK's retried PutObject,
        a scanner sending twice); None to send it. Compared by a keyed fingerprint, never the MRN in clear."""
        if self._fingerprint_key is None:
            return None
        fields = decision.fields
        fingerprint = document_fingerprint(self._fingerprint_key(), fields.patient_mrn, fields.folder_name, digest)
        # Sent anyway: a producer's allow_duplicate, or a person's resend of a DUPLICATE. A person's resend of a
        # review says this version is not in the chart, not that its page is not: an identical version sent meanwhile
        # makes it a DUPLICATE (which the person may then send anyway).
        force = decision.allow_duplicate or (claim.resend_approved and claim.previous_status == Status.DUPLICATE.value)
        copy: dict[str, Any] | None = None
        try:
            holder = self._ledger.hold_fingerprint(fingerprint, ref, self._duplicate_window)
            # Taken over only from the holder as read: sent anyway (a producer's or a person's say), or one whose
            # version was refused (say, for a staff id fixed since) with no copy in the chart, so this one is not a
            # second copy. Another version racing past the same holder then finds this one holding it. Sent anyway
            # past a copy that may be in the chart, the fingerprint keeps that copy: this one may be refused yet.
            for _ in range(3):
                copy = self._chart_copy(holder) if holder is not None else None
                if holder is None or not (force or copy is None):
                    break
                holder = self._ledger.hold_fingerprint(
                    fingerprint, ref, self._duplicate_window, replacing=holder, in_chart=copy
                )
            if holder is not None and force:
                raise LedgerError("the fingerprint kept changing hands")
        except (LedgerError, ClientError) as exc:
            self._record(ref, claim.token, Status.PENDING_RETRY, "Could not check for an identical document; retried")
            raise RetryLater(f"object {ref.object_id}: fingerprint not checked") from exc
        if holder is None:
            return None
        holder = copy or holder
        reason = (
            f"Identical to {holder.get('key')} (version {holder.get('version_id')}), sent at {holder.get('held_at')}: "
            f"same file, patient and folder within {self._duplicate_window.total_seconds() / 3600:g} h, so not sent "
            "again. To send it anyway: docdrop resolve --resend, or put it again tagged allow_duplicate=true"
        )
        self._record(ref, claim.token, Status.DUPLICATE, reason, duplicate_of=holder.get("object_id"))
        self.logger.info("identical to a document sent lately; not sent", extra={"object_id": ref.object_id})
        return ObjectResult(
            ref.object_id, Status.DUPLICATE, metrics=(_RECEIVED, _count(MetricName.DOCUMENTS_DUPLICATE))
        )

    def _evidence(self, decision: Accepted, digest: str) -> dict[str, str]:
        """What recognises this attempt's document later if its answer is lost (docdrop.reviews): no MRN in clear."""
        evidence = {"sha256": digest}
        if self._fingerprint_key is not None:
            fields = decision.fields
            key = self._fingerprint_key()
            evidence["evidence_fingerprint"] = patient_folder_fingerprint(key, fields.patient_mrn, fields.folder_name)
        return evidence

    def _chart_copy(self, holder: Mapping[str, Any]) -> dict[str, Any] | None:
        """The version a fingerprint's holder says may be in the chart within the window: the holder, unless it was
        certainly never filed; else the copy kept past a take-over sent anyway (`in_chart`); None when neither."""
        if not self._never_filed(holder):
            return {k: holder.get(k) for k in ("bucket", "key", "version_id", "object_id", "held_at")}
        kept = holder.get(IN_CHART)
        if not isinstance(kept, Mapping):
            return None
        since = datetime.now(UTC) - self._duplicate_window
        held_at = parse_moment(kept.get("held_at"))
        if held_at is not None and held_at < since:
            return None  # sent before the window: a new copy is no duplicate
        return self._chart_copy(kept)

    def _never_filed(self, holder: Mapping[str, Any]) -> bool:
        """Whether the version holding a fingerprint certainly did not reach the chart (FAILED or REJECTED)."""
        if not holder.get("bucket") or not holder.get("key") or not holder.get("version_id"):
            return False
        held = self._ledger.get_object(ObjectRef(str(holder["bucket"]), str(holder["key"]), str(holder["version_id"])))
        return (held or {}).get("status") in (Status.FAILED.value, Status.REJECTED.value)

    # ----- reading ------------------------------------------------------------------------------------------------
    def _open(self, event: ObjectEvent) -> _OpenedObject:
        """Tags and metadata of the event's version, and its body as a stream (read only if the object is accepted).

        Two S3 calls. Without a version in the event, GetObject comes first and names the version it returned.
        """
        version = event.version_id if event.version_id and event.version_id != "null" else None
        try:
            if version is not None:
                tagging = self._s3.get_object_tagging(Bucket=event.bucket, Key=event.key, VersionId=version)
                got = self._s3.get_object(Bucket=event.bucket, Key=event.key, VersionId=version)
            else:
                got = self._s3.get_object(Bucket=event.bucket, Key=event.key)
                version = got.get("VersionId") if got.get("VersionId") not in (None, "null") else None
                kwargs = {"VersionId": version} if version else {}
                tagging = self._s3.get_object_tagging(Bucket=event.bucket, Key=event.key, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in _MISSING:
                raise ObjectGone from None
            # Without s3:ListBucket, S3 answers 403 for a version that no longer exists: ask the version list.
            if code in _DENIED and not self._still_exists(event.bucket, event.key, version):
                raise ObjectGone from None
            raise
        # No version from S3 either: the bucket's versioning is off or suspended. One record per key says so.
        identity = event.identity or version or UNVERSIONED
        return _OpenedObject(
            ref=ObjectRef(event.bucket, event.key, identity),
            tags={t["Key"]: t["Value"] for t in tagging.get("TagSet", [])},
            metadata=dict(got.get("Metadata") or {}),
            content_length=int(got.get("ContentLength") or 0),
            body=got["Body"],
        )

    def _still_exists(self, bucket: str, key: str, version: str | None) -> bool:
        """Whether the key (or this version of it) is still in the bucket, by ListObjectVersions on the key itself."""
        pages = self._s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
        for page in pages:
            for entry in page.get("Versions", []):
                if entry.get("Key") == key and (
                    entry.get("VersionId") == version or (version is None and entry.get("IsLatest"))
                ):
                    return True
        return False

    @staticmethod
    def _too_big(size: int) -> str:
        return f"File is {_mb(size)}; Cobalt accepts at most {_mb(MAX_DOCUMENT_BYTES)}"

    def _content_problem(self, content: bytes) -> str:
        """Why the bytes cannot be sent (called once the size or the sniffed type ruled them out)."""
        if not content:
            return "File is empty"
        if len(content) > MAX_DOCUMENT_BYTES:
            return self._too_big(len(content))
        return "File is not a PDF, JPEG or PNG (judged by its content, not its name)"

    def _attempt_floor(self) -> float:
        """Seconds one attempt needs at the least: connecting, 2 s for Cobalt to answer, recording what it said."""
        return self._cobalt.timeout[0] + 2 + RECORD_MARGIN_SECONDS

    # ----- states before a claim ----------------------------------------------------------------------------------
    def _settled(self, ref: ObjectRef, current: dict[str, Any] | None) -> ObjectResult | None:
        """What an existing ledger item means for this event: None to go on, else the result (duplicate, review...)."""
        if current is None or current.get("status") in CLAIMABLE or current.get(TAGS_EXPIRED):
            return None  # new, resumable, or refused only because its tags never came (they may have come now)
        status = Status(current["status"])
        if current.get(RESEND_APPROVED) and status in RESENDABLE:  # a person approved sending it, once
            kept = self._ledger.kept_submission(ref.object_id) if status is Status.NEEDS_REVIEW else None
            if kept is None:
                return None
            # Cobalt accepted this version already (its own write failed): recorded, never sent a second time.
            self._ledger.record_late_submission(kept)
            self.logger.warning(
                "a resend found the version accepted by Cobalt already", extra={"object_id": ref.object_id}
            )
            return ObjectResult(ref.object_id, Status.SUBMITTED, metrics=(_count(MetricName.DUPLICATE_EVENTS),))
        if status is Status.RECEIVED:
            if str(current.get("lease_until", "")) >= datetime.now(UTC).isoformat(timespec="microseconds"):
                raise RetryLater(f"object {ref.object_id}: another invocation holds its claim")
            if never_posted(current):  # its holder died before its POST: sent by this event's claim, not reviewed
                return None
            if not self._ledger.mark_interrupted(ref, INTERRUPTED_REASON):
                raise RetryLater(f"object {ref.object_id}: its state changed while it was read")
            self.logger.warning("interrupted upload marked for review", extra={"object_id": ref.object_id})
            review = _count(MetricName.DOCUMENTS_NEEDS_REVIEW)
            return ObjectResult(ref.object_id, Status.NEEDS_REVIEW, metrics=(review,))
        self.logger.info(
            "duplicate event: the object version was handled already",
            extra={"object_id": ref.object_id, "status": status.value},
        )
        return ObjectResult(ref.object_id, status, metrics=(_count(MetricName.DUPLICATE_EVENTS),))

    def _refuse(self, ref: ObjectRef, reason: str, unversioned: bool = False) -> ObjectResult:
        result = self._record_unclaimed(ref, Status.REJECTED, reason)
        if unversioned:
            self.logger.error("the inbox bucket is not versioned: nothing is sent", extra={"object_id": ref.object_id})
            return dataclasses.replace(result, metrics=(*result.metrics, _count(MetricName.UNVERSIONED_OBJECTS)))
        return result

    def _record_unclaimed(self, ref: ObjectRef, status: Status, reason: str, **attrs: Any) -> ObjectResult:
        """REJECTED or WAITING_FOR_TAGS; when another writer got there first, what that writer's state means."""
        if not self._ledger.record_unclaimed_state(ref, status, reason, **attrs):
            return self._settled(ref, self._ledger.get_object(ref)) or ObjectResult(ref.object_id, None)
        self.logger.info("recorded before sending", extra={"object_id": ref.object_id, "status": status.value})
        metric = MetricName.DOCUMENTS_REJECTED if status is Status.REJECTED else MetricName.DOCUMENTS_WAITING_FOR_TAGS
        return ObjectResult(ref.object_id, status, metrics=(_RECEIVED, _count(metric)))

    # ----- the upload ---------------------------------------------------------------------------------------------
    def _send(
        self,
        ref: ObjectRef,
        token: str,
        fields: UploadFields,
        filename: str,
        content_type: str,
        content: bytes,
        deadline: Deadline,
        receive_count: int = 1,
        account: CobaltAccount | None = None,
    ) -> ObjectResult:
        metrics: list[Metric] = [_RECEIVED]
        attempt = 0
        breaker = self._breaker(account)
        while True:
            permission = breaker.before_call() if breaker is not None else Permission()
            if permission.wait and breaker is not None:  # another upload is finding out whether Cobalt answers
                permission = breaker.wait_for_warmth(deadline.remaining() - self._attempt_floor())
            if permission.defer_seconds > 0:  # Cobalt is down or asked to wait: not called, the queue holds it
                metrics.append(_count(MetricName.COBALT_CALLS_DEFERRED))
                return self._retry_later(
                    ref, token, permission.reason, receive_count, metrics, at_least=permission.defer_seconds
                )
            if attempt == 0:
                self._fence(ref, token)
            # The read timeout never outlasts the invocation: an answer that cannot come in time is recorded by us.
            budget = deadline.remaining() - RECORD_MARGIN_SECONDS - self._cobalt.timeout[0]
            sent_at = now_iso()
            answer = self._cobalt.upload_document(
                fields, filename, content_type, content, timeout=budget, account=account.name if account else None
            )
            if account is not None and answer.error_code == "login_required":
                self._link_failed(account, ref, answer.message)
            elif account is not None and answer.status_code is not None and answer.status_code != 401:
                self._link_works(account)
            if breaker is not None and answer.status_code != 401:
                throttled = answer.retry_after_seconds if answer.status_code == 429 else None
                # An ambiguous answer (a read timeout, 500, 502, 504) is a Cobalt in trouble too: a Cobalt that hangs
                # must open the breaker, so that the rest of the queue waits instead of each becoming a review.
                ambiguous = answer.verdict is Verdict.AMBIGUOUS
                unavailable = ambiguous or answer.verdict is Verdict.RETRY
                breaker.after_call(
                    unavailable, throttled, probe=permission.probe, cold=permission.cold, ambiguous=ambiguous
                )
            metrics.append((MetricName.COBALT_LATENCY, "Milliseconds", round(answer.elapsed_seconds * 1000, 1)))
            self.logger.info(
                "cobalt answered",
                extra={
                    "object_id": ref.object_id,
                    "verdict": answer.verdict.value,
                    "http_status": answer.status_code,
                    "error_code": answer.error_code,
                    "attempt": attempt + 1,
                    "elapsed_ms": round(answer.elapsed_seconds * 1000, 1),
                },
            )
            if answer.verdict is not Verdict.RETRY:
                break
            delay = backoff_seconds(attempt, answer.retry_after_seconds)
            attempt += 1
            metrics.append(_count(MetricName.DOCUMENTS_RETRIED))
            if attempt >= self._max_attempts or deadline.remaining() < delay + self._attempt_floor():
                return self._retry_later(
                    ref, token, answer.reason, receive_count, metrics, at_least=answer.retry_after_seconds or 0
                )
            self._sleep(delay)
        return self._settle_answer(ref, token, answer, metrics, sent_at)

    def _fence(self, ref: ObjectRef, token: str) -> None:
        """Write the POST's start on the claim, or send nothing: a claim that lapsed meanwhile may be another's now."""
        try:
            started = self._ledger.mark_post_started(ref, token)
        except (LedgerError, ClientError) as exc:
            raise RetryLater(f"object {ref.object_id}: the start of its POST could not be recorded") from exc
        if not started:
            self.logger.warning("the claim lapsed before its POST; not sent", extra={"object_id": ref.object_id})
            raise RetryLater(f"object {ref.object_id}: its claim lapsed before its POST")

    def _retry_later(
        self,
        ref: ObjectRef,
        token: str,
        reason: str,
        receive_count: int,
        metrics: list[Metric],
        at_least: float = 0.0,
    ) -> ObjectResult:
        """PENDING_RETRY with the attempt count and the next attempt's time; the message waits in the queue."""
        delay = max(self._retry_schedule.delay_after(receive_count), math.ceil(at_least))
        next_at = datetime.now(UTC) + timedelta(seconds=delay)
        if self._max_receive_count and receive_count >= self._max_receive_count:
            then = (
                "this was its last try: its message goes to the dead-letter queue next; "
                "once Cobalt answers again, run docdrop redrive"
            )
        else:
            then = f"tried again at {next_at:%Y-%m-%d %H:%M:%S} UTC"
        self._record(
            ref,
            token,
            Status.PENDING_RETRY,
            f"{reason}; attempt {receive_count}, {then}",
            retry_attempts=receive_count,
            next_attempt_at=next_at.isoformat(timespec="seconds"),
        )
        return ObjectResult(
            ref.object_id, Status.PENDING_RETRY, retry_later=True, metrics=tuple(metrics), retry_in_seconds=delay
        )

    def _settle_answer(
        self, ref: ObjectRef, token: str, answer: CobaltAnswer, metrics: list[Metric], sent_at: str
    ) -> ObjectResult:
        if answer.verdict is Verdict.ACCEPTED and answer.document_id is not None:
            if not self._record_submission(ref, token, answer.document_id, answer.job_id):
                metrics.append(_count(MetricName.DOCUMENT_LINK_CONFLICTS))
            metrics.append(_count(MetricName.DOCUMENTS_SUBMITTED))
            return ObjectResult(ref.object_id, Status.SUBMITTED, metrics=tuple(metrics))
        status, metric = {
            Verdict.FAILED: (Status.FAILED, MetricName.DOCUMENTS_FAILED),
            Verdict.BLOCKED: (Status.BLOCKED, MetricName.DOCUMENTS_BLOCKED),
            Verdict.AMBIGUOUS: (Status.NEEDS_REVIEW, MetricName.DOCUMENTS_NEEDS_REVIEW),
            Verdict.ACCEPTED: (Status.NEEDS_REVIEW, MetricName.DOCUMENTS_NEEDS_REVIEW),  # only without a document id
        }[answer.verdict]
        extra: dict[str, Any] = {"cobalt_status": answer.status_code, "cobalt_error": answer.error_code}
        if status is Status.NEEDS_REVIEW:  # the attempt's window, to recognise its document later (docdrop.reviews)
            extra.update(attempt_sent_at=sent_at, attempt_ended_at=now_iso(), review_kind=answer.verdict.value)
        self._record(ref, token, status, answer.reason, **extra)
        metrics.append(_count(metric))
        return ObjectResult(ref.object_id, status, metrics=tuple(metrics))

    def _record(self, ref: ObjectRef, token: str, status: Status, reason: str, **attrs: Any) -> None:
        try:
            written = self._ledger.record_claimed_state(ref, token, status, reason, **attrs)
        except (LedgerError, ClientError) as exc:
            # The claim stays RECEIVED; when its lease runs out the redelivered message marks it for review.
            raise RetryLater(f"object {ref.object_id}: could not record {status.value}") from exc
        if not written:
            self.logger.error("claim token no longer matches", extra={"object_id": ref.object_id})

    def _record_submission(self, ref: ObjectRef, token: str, document_id: str, job_id: str | None) -> bool:
        """A document id Cobalt returned must reach the ledger: a few tries, then the lease and a review take over.
        False when the document is linked to another object (a conflict, reported)."""
        for attempt in range(3):
            try:
                linked = self._ledger.record_submission(ref, token, document_id, job_id)
                if not linked:
                    # Cobalt's id names another object already (it was wrongly linked): reported, never overwritten.
                    self.logger.error(
                        "Cobalt's document id is linked to another object already: a person must check both",
                        extra={"object_id": ref.object_id, "document_id": document_id},
                    )
                return linked
            except (LedgerError, ClientError):
                if attempt == 2:
                    kept = self._remember_submission(ref, token, document_id, job_id)
                    # The document id is Cobalt's, not PHI: logged so an operator can join it by hand if need be.
                    self.logger.error(
                        "accepted by Cobalt but not recorded"
                        + ("; kept for the reconciler" if kept else "; NOT kept: join it by hand"),
                        extra={"object_id": ref.object_id, "document_id": document_id},
                    )
                    raise RetryLater(f"object {ref.object_id}: submission not recorded") from None
                self._sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable: the last try returns or raises")

    def _remember_submission(self, ref: ObjectRef, token: str, document_id: str, job_id: str | None) -> bool:
        """Keep Cobalt's document id on its own small item, so the outcome and the reconciler can still find it."""
        for attempt in range(2):
            try:
                return self._ledger.remember_submission(ref, token, document_id, job_id)  # False: another's document
            except (LedgerError, ClientError):
                self._sleep(0.2 * 2**attempt)
        return False


@contextmanager
def _closing(body: Any) -> Iterator[None]:
    try:
        yield
    finally:
        close = getattr(body, "close", None)
        if callable(close):
            close()


# ----- a batch of SQS messages ----------------------------------------------------------------------------------------
def upload_sqs_batch(
    event: dict[str, Any],
    context: Any,
    *,
    uploader: DocumentUploader,
    metrics: MetricSink,
    executor: Executor,
    delay_message: Callable[[str, int], None] | None = None,
    account_metrics: AccountMetrics | None = None,
) -> dict[str, Any]:
    """Process one SQS batch: objects in parallel (bounded by `executor`), partial failures reported to SQS.

    Powertools' AsyncBatchProcessor builds the partial-batch response; the blocking work runs on `executor`'s threads.
    `delay_message(receipt_handle, seconds)` holds back a message whose documents wait for Cobalt (the retry schedule).
    """
    from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response

    deadline = Deadline.from_context(context)
    # One task per object version in this batch: S3 may send the same event twice and SQS may batch both.
    tasks: dict[tuple[str, str, str | None], asyncio.Future[ObjectResult]] = {}

    def settle(task: asyncio.Future[ObjectResult]) -> None:
        """Count what one object came to, once, however many messages carried it."""
        if task.cancelled():
            return
        outcome = task.exception()
        if outcome is None:
            result = task.result()
            for name, unit, value in result.metrics:
                metrics.add_metric(name, unit, value)
                if account_metrics is not None and result.account:
                    account_metrics.add(result.account, name, unit, value)
        elif not isinstance(outcome, RetryLater):
            # Type and error code only: exception texts can quote keys.
            code = outcome.response.get("Error", {}).get("Code") if isinstance(outcome, ClientError) else None
            uploader.logger.error(
                "object event failed; its message returns to the queue",
                extra={"error": type(outcome).__name__, "error_code": code},
            )

    def start(event: ObjectEvent, receive_count: int) -> asyncio.Future[ObjectResult]:
        key = (event.bucket, event.key, event.identity)
        if key not in tasks:
            loop = asyncio.get_running_loop()
            task = loop.run_in_executor(executor, uploader.process, event, deadline, receive_count)
            task.add_done_callback(settle)
            tasks[key] = task
        return tasks[key]

    async def record_handler(record: Any) -> int:
        try:
            events = parse_s3_notifications(record.body)
        except UnreadableMessage as exc:  # after maxReceiveCount it lands in the DLQ, whose alarm a person sees
            uploader.logger.warning("message is not an S3 notification", extra={"message_id": record.message_id})
            raise RetryLater(str(exc)) from None
        receive_count = int(record.attributes.approximate_receive_count or 1)
        outcomes = await asyncio.gather(*(start(e, receive_count) for e in events), return_exceptions=True)
        if any(not isinstance(o, ObjectResult) or o.retry_later for o in outcomes):
            delays = [o.retry_in_seconds for o in outcomes if isinstance(o, ObjectResult) and o.retry_in_seconds]
            if delays and delay_message is not None:
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        executor, delay_message, record.receipt_handle, max(delays)
                    )
                except Exception as exc:  # the queue's own visibility timeout applies instead: sooner, never lost
                    uploader.logger.warning("could not delay the message", extra={"error": type(exc).__name__})
            raise RetryLater("at least one object in this message must be tried again")
        return len(events)

    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    try:
        result: dict[str, Any] = dict(
            async_process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )
    finally:
        if account_metrics is not None:
            account_metrics.flush()
    return result

"""`DocumentUploader`: the order of one object event's steps (settled already? read, judged, claimed, sent), and the
states recorded before a claim (REJECTED, WAITING_FOR_TAGS). The package's docstring says which promises it keeps."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import posixpath
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from docdrop.accounts import DEFAULT as DEFAULT_ACCOUNT
from docdrop.accounts import CobaltAccount, CobaltAccounts, route
from docdrop.breaker import BreakerSettings, CobaltBreaker
from docdrop.cobalt import CobaltClient
from docdrop.contract import Accepted, Refused, read_contract
from docdrop.deadline import Deadline
from docdrop.filetype import EXTENSIONS, MAX_DOCUMENT_BYTES, SNIFF_BYTES, sniff_content_type
from docdrop.ledger import (
    CLAIMABLE,
    INTERRUPTED_REASON,
    RESEND_APPROVED,
    RESENDABLE,
    TAGS_EXPIRED,
    DocumentLedger,
    ObjectRef,
    Status,
    never_posted,
)
from docdrop.observability import MetricName
from docdrop.retry_schedule import RetrySchedule
from docdrop.s3_events import ObjectEvent
from docdrop.uploader.duplicates import DuplicateCheck
from docdrop.uploader.reading import ObjectGone, ObjectReading, closing_body
from docdrop.uploader.results import (
    LEASE_MARGIN_SECONDS,
    RECEIVED,
    UNVERSIONED,
    UNVERSIONED_REASON,
    ObjectResult,
    RetryLater,
    count,
)
from docdrop.uploader.sending import Sending


class DocumentUploader(Sending, DuplicateCheck, ObjectReading):
    """Sends object versions to Cobalt. Collaborators are passed in, so tests can hand in local servers or fakes.

    Its parts are modules of this package: reading the version (`reading`), the same page twice (`duplicates`), the
    call and its answer (`sending`)."""

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
                return ObjectResult(None, None, metrics=(RECEIVED,))
            return self._refuse(ref, "The object version was deleted before DocDrop could read it")
        with closing_body(opened.body):
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
            blocked = (RECEIVED, count(MetricName.DOCUMENTS_BLOCKED))
            return ObjectResult(ref.object_id, Status.BLOCKED, metrics=blocked, account=account.name)
        filename = posixpath.basename(ref.key) or "document" + EXTENSIONS[content_type]
        sent = self._send(
            ref, claim.token, decision.fields, filename, content_type, content, deadline, receive_count, account
        )
        return dataclasses.replace(sent, account=account.name)

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
            return ObjectResult(ref.object_id, Status.SUBMITTED, metrics=(count(MetricName.DUPLICATE_EVENTS),))
        if status is Status.RECEIVED:
            if str(current.get("lease_until", "")) >= datetime.now(UTC).isoformat(timespec="microseconds"):
                raise RetryLater(f"object {ref.object_id}: another invocation holds its claim")
            if never_posted(current):  # its holder died before its POST: sent by this event's claim, not reviewed
                return None
            if not self._ledger.mark_interrupted(ref, INTERRUPTED_REASON):
                raise RetryLater(f"object {ref.object_id}: its state changed while it was read")
            self.logger.warning("interrupted upload marked for review", extra={"object_id": ref.object_id})
            review = count(MetricName.DOCUMENTS_NEEDS_REVIEW)
            return ObjectResult(ref.object_id, Status.NEEDS_REVIEW, metrics=(review,))
        self.logger.info(
            "duplicate event: the object version was handled already",
            extra={"object_id": ref.object_id, "status": status.value},
        )
        return ObjectResult(ref.object_id, status, metrics=(count(MetricName.DUPLICATE_EVENTS),))

    def _refuse(self, ref: ObjectRef, reason: str, unversioned: bool = False) -> ObjectResult:
        result = self._record_unclaimed(ref, Status.REJECTED, reason)
        if unversioned:
            self.logger.error("the inbox bucket is not versioned: nothing is sent", extra={"object_id": ref.object_id})
            return dataclasses.replace(result, metrics=(*result.metrics, count(MetricName.UNVERSIONED_OBJECTS)))
        return result

    def _record_unclaimed(self, ref: ObjectRef, status: Status, reason: str, **attrs: Any) -> ObjectResult:
        """REJECTED or WAITING_FOR_TAGS; when another writer got there first, what that writer's state means."""
        if not self._ledger.record_unclaimed_state(ref, status, reason, **attrs):
            return self._settled(ref, self._ledger.get_object(ref)) or ObjectResult(ref.object_id, None)
        self.logger.info("recorded before sending", extra={"object_id": ref.object_id, "status": status.value})
        metric = MetricName.DOCUMENTS_REJECTED if status is Status.REJECTED else MetricName.DOCUMENTS_WAITING_FOR_TAGS
        return ObjectResult(ref.object_id, status, metrics=(RECEIVED, count(metric)))

"""The upload: the breaker and the account's link before the call, the fence before the first POST, Cobalt's answer
recorded (a retry in the queue, a submission, a refusal or a review)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from docdrop.accounts import DEFAULT as DEFAULT_ACCOUNT
from docdrop.accounts import CobaltAccount
from docdrop.breaker import CobaltBreaker, Permission
from docdrop.cobalt_answers import CobaltAnswer, Verdict, backoff_seconds
from docdrop.contract import UploadFields
from docdrop.deadline import Deadline
from docdrop.ledger import LedgerError, ObjectRef, Status, now_iso
from docdrop.observability import MetricName
from docdrop.uploader.base import UploaderBase
from docdrop.uploader.results import (
    LINK_CACHE_SECONDS,
    RECEIVED,
    RECORD_MARGIN_SECONDS,
    Metric,
    ObjectResult,
    RetryLater,
    count,
)


class Sending(UploaderBase):
    """Sends one claimed version to Cobalt and records what came of it."""

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
        metrics: list[Metric] = [RECEIVED]
        attempt = 0
        breaker = self._breaker(account)
        while True:
            permission = breaker.before_call() if breaker is not None else Permission()
            if permission.wait and breaker is not None:  # another upload is finding out whether Cobalt answers
                permission = breaker.wait_for_warmth(deadline.remaining() - self._attempt_floor())
            if permission.defer_seconds > 0:  # Cobalt is down or asked to wait: not called, the queue holds it
                metrics.append(count(MetricName.COBALT_CALLS_DEFERRED))
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
            metrics.append(count(MetricName.DOCUMENTS_RETRIED))
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
                metrics.append(count(MetricName.DOCUMENT_LINK_CONFLICTS))
            metrics.append(count(MetricName.DOCUMENTS_SUBMITTED))
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
        metrics.append(count(metric))
        return ObjectResult(ref.object_id, status, metrics=tuple(metrics))

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

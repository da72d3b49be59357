"""The open states with a deadline and no document to wait for: WAITING_FOR_TAGS past the tag wait, RECEIVED whose
holder died, PENDING_RETRY past the queue's retry horizon, and BLOCKED objects of an account whose link works again."""

from __future__ import annotations

from typing import Any

from docdrop.accounts import account_of
from docdrop.ledger import INTERRUPTED_REASON, Status, items_within, never_posted
from docdrop.reconciler.sweep import NEVER_POSTED_CLAIMS, Pass, Sweep, hours, parse_time


class ExpiredTagWaits(Sweep):
    """WAITING_FOR_TAGS past the tag wait: REJECTED, naming the missing tags (its own tags still resume it)."""

    def run(self, p: Pass) -> None:
        waited = self._deadlines.tag_wait
        for item in self._ledger.open_items(Status.WAITING_FOR_TAGS, before=self._clock() - waited):
            if p.out_of_time():
                return
            missing = item.get("missing_tags") or ["patient_mrn", "folder_name"]
            reason = (
                f"Required tags never arrived: {', '.join(map(str, missing))} (waited {hours(waited)}). "
                "Add them to this version's tags and it is sent; there is no need to upload the file again"
            )
            if self._ledger.expire_tag_wait(item, reason):
                p.report.tag_waits_expired += 1


class InterruptedClaims(Sweep):
    """RECEIVED whose lease lapsed: a review (its POST may have gone out), or sent again if it never posted."""

    def run(self, p: Pass) -> None:
        now = self._clock()
        for item in items_within(p.in_flight_items(), Status.RECEIVED, before=now - self._deadlines.outcome_grace):
            if p.out_of_time():
                return
            if str(item.get("lease_until", "")) >= now.isoformat(timespec="microseconds"):
                continue  # its holder may still be at work
            ref = self._ledger.item_ref(item)
            tried = int(item.get("attempts") or 0)
            if never_posted(item) and tried < NEVER_POSTED_CLAIMS and self._resend is not None:
                self._resend(ref, int(item.get("size") or 0))  # nothing was sent: its event's claim sends it once
                p.report.interrupted_resent += 1
                continue
            reason = INTERRUPTED_REASON
            if never_posted(item):  # every holder stopped before its POST: something stops them, a person looks
                reason = (
                    f"Claimed {tried} times, and every holder stopped before its POST: nothing of it is in the EMR. "
                    "Find out what stops the uploader (its logs), then: docdrop resolve --not-filed --resend"
                )
            if self._ledger.mark_interrupted(ref, reason):
                p.report.interrupted += 1


class DeadLetteredRetries(Sweep):
    """PENDING_RETRY past the retry horizon (its message is dead-lettered), and past the DLQ's retention."""

    def run(self, p: Pass) -> None:
        cutoff = self._clock() - self._deadlines.retry_horizon
        where = f"the dead-letter queue {self._dlq_arn}" if self._dlq_arn else "the ingest dead-letter queue"
        reason = (
            f"Cobalt stayed unavailable for MaxRetryHours, every try of this object's message; it is now in {where}. "
            "Once Cobalt answers again, redrive it: docdrop redrive (or aws sqs start-message-move-task --source-arn "
            "<that queue's ARN>)"
        )
        expired_before = (self._clock() - self._deadlines.dlq_retention).isoformat(timespec="microseconds")
        for item in self._ledger.open_items(Status.PENDING_RETRY):
            overdue = parse_time(str(item["status_at"])) <= cutoff
            noted = bool(item.get("dead_lettered_at")) or (overdue and self._ledger.note_dead_lettered(item, reason))
            p.report.dead_lettered += noted
            if item.get("dead_letter_expired_at"):
                p.report.dead_letter_expired += 1  # still counted while it waits: the alarm holds
            elif item.get("dead_lettered_at") and str(item["dead_lettered_at"]) <= expired_before:
                expired = (
                    f"Cobalt stayed unavailable for MaxRetryHours, and this object's message has since expired from "
                    f"the dead-letter queue (kept {hours(self._deadlines.dlq_retention)}): a redrive finds nothing. "
                    f"Send it again with: docdrop retry --object {item['object_id']}"
                )
                p.report.dead_letter_expired += self._ledger.note_dead_letter_expired(item, expired)


class RelinkedAccounts(Sweep):
    """BLOCKED objects of an account whose link works again, sent once each by an S3-shaped event."""

    def run(self, p: Pass) -> None:
        """Once an account's link works again (a retried object's call passed, or a person re-linked it), its objects
        BLOCKED before then are sent once, each by an S3-shaped event (their claims keep a repeat from Cobalt)."""
        if self._resend is None:
            return
        blocked: list[dict[str, Any]] | None = None
        for account in self._accounts().accounts:
            link = self._ledger.get_account_link(account.reference_id) or {}
            relinked_at = str(link.get("status_at") or "")
            if link.get("status") != "LINKED" or relinked_at <= str(link.get("resent_at") or ""):
                continue
            if blocked is None:
                blocked = list(self._ledger.open_items(Status.BLOCKED))
            for item in blocked:
                if p.out_of_time():
                    return
                mine = account_of(item) == account.name
                if mine and str(item.get("status_at") or "") <= relinked_at:
                    self._resend(self._ledger.item_ref(item), int(item.get("size") or 0))
                    p.report.relinked_resent += 1
            self._ledger.mark_link_resent(account.reference_id, relinked_at)

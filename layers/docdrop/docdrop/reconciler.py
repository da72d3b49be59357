"""The reconciler: every open state reaches a terminal one by its deadline, and someone is told (promise 2).

One pass, on a schedule, one at a time (a lease in the ledger), inside a time budget:
- SUBMITTED past the outcome grace: an outcome already in the ledger is joined; otherwise Cobalt's event log is read
  (oldest first, resuming at the page it reached) and what it holds is recorded through the webhook's own ledger path,
  de-duplicated by event id; still nothing after `stale_after`: STALE, with what to check.
- WAITING_FOR_TAGS past the tag wait: REJECTED, naming the missing tags (the version's tags still resume it).
- RECEIVED whose lease ran out long ago (its message will not come back): NEEDS_REVIEW, never a second upload; or,
  when its POST never started (docdrop.ledger.never_posted), an event that claims it again.
- PENDING_RETRY past the queue's retry horizon: its message is in the dead-letter queue; the reason says how to redrive.
- Outcomes no object claimed within the grace period are not DocDrop's: never counted, left to expire.
- A submission Cobalt accepted whose own ledger write failed (kept by the uploader on the document's item) is recorded.
- NEEDS_REVIEW is linked to an unknown Cobalt document where the evidence is definitive (docdrop.reviews); past its
  span with nothing in Cobalt's whole event log, it is "not filed, by silence", and resent once where the stack allows.
Every write is conditional on the state that was read, so two passes (or a pass and a webhook) cannot collide.
Each pass reads open items only: its cost grows with what is open, never with history.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from docdrop.accounts import CobaltAccounts, account_of
from docdrop.breaker import CobaltBreaker
from docdrop.cobalt import CobaltClient, EventLogPage, EventLogUnavailable
from docdrop.cobalt_events import outcome_event_from
from docdrop.evidence import outcome_fingerprint
from docdrop.ledger import (
    INTERRUPTED_REASON,
    OPEN,
    OUTCOMES,
    SILENCE,
    DocumentLedger,
    JoinResult,
    ObjectRef,
    OutcomeEvent,
    Status,
    items_within,
    never_posted,
    parse_moment,
)
from docdrop.observability import MetricName
from docdrop.outcomes import OutcomeJoiner
from docdrop.reviews import (
    DISMISSED_RIVALS,
    MARGIN_AFTER,
    REVIEW_HORIZON,
    Candidates,
    LoggedDocument,
    Window,
    candidates_for,
    evidence_rivals,
    is_silent,
    resend_silent_reviews,
    silence_of,
    silent_span,
)
from docdrop.settings import ReconcilerSettings
from docdrop.uploader import Deadline

RUN_NAME = "reconciler"
LEASE_MARGIN_SECONDS = 30.0
# Time kept back at the end of a pass to record where it stopped and to release its lease.
RESERVE_SECONDS = 5.0
# A claim that lapsed before its POST is sent again by an event, up to this many claims in all; then it is a review.
NEVER_POSTED_CLAIMS = 5
# In the pass's state: how far the one-off indexing of an older ledger's open items got ("done" once the table is).
OPEN_INDEX_STATE = "open_index"


class MetricSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


@dataclasses.dataclass(frozen=True)
class Deadlines:
    outcome_grace: timedelta
    stale_after: timedelta
    tag_wait: timedelta
    retry_horizon: timedelta
    foreign_retention: timedelta
    dlq_retention: timedelta = timedelta(days=14)
    silent_after: timedelta = timedelta(hours=72)
    resend_silent: bool = False  # ResendSilentReviews: the reconciler resends a silent review itself, once

    @classmethod
    def from_settings(cls, settings: ReconcilerSettings) -> Deadlines:
        return cls(
            outcome_grace=timedelta(minutes=settings.outcome_grace_minutes),
            stale_after=timedelta(hours=settings.stale_after_hours),
            tag_wait=timedelta(hours=settings.tag_wait_hours),
            retry_horizon=timedelta(minutes=settings.retry_horizon_minutes),
            foreign_retention=timedelta(days=settings.foreign_retention_days),
            dlq_retention=timedelta(days=settings.dlq_retention_days),
            silent_after=timedelta(hours=settings.silent_after_hours),
            resend_silent=settings.resend_silent_reviews,
        )

    @classmethod
    def defaults(cls) -> Deadlines:
        """The deadlines a stack gets when no parameter changes them."""
        return cls.from_settings(ReconcilerSettings(ledger_table="", cobalt_base_url="", cobalt_credentials_secret=""))


@dataclasses.dataclass
class PassReport:
    """What one pass did, and what is still open."""

    ran: bool = True
    complete: bool = True
    late_submissions: int = 0
    reviews_resolved: int = 0
    reviews_open: int = 0
    reviews_found_silent: int = 0  # "not filed, by silence" (docdrop.reviews.silence_of), newly this pass
    reviews_resent_by_silence: int = 0  # of the silent ones, resent by this pass (ResendSilentReviews)
    joined_from_ledger: int = 0
    recovered_from_event_log: int = 0
    event_log_pages: int = 0
    event_log_unavailable: bool = False
    stale: int = 0
    tag_waits_expired: int = 0
    interrupted: int = 0
    interrupted_resent: int = 0  # lapsed claims that never started their POST: sent again by an event, not reviewed
    dead_lettered: int = 0
    dead_letter_expired: int = 0  # of those, whose message the dead-letter queue no longer holds: docdrop retry
    foreign: int = 0
    open_submitted_past_grace: int = 0
    open_objects: dict[str, int] = dataclasses.field(default_factory=dict)
    oldest_open_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    foreign_unknown_account: int = 0  # of those, outcomes for an access token no account in the secret holds
    relinked_resent: int = 0  # BLOCKED objects sent again because their account's link works again
    cobalt_circuit_open_seconds: float = 0.0  # the longest-open breaker on Cobalt (docdrop.breaker)
    oldest_review_seconds: float = 0.0  # the oldest NEEDS_REVIEW: past REVIEW_HORIZON no evidence can settle it
    open_items_indexed: int = 0  # open items of an older ledger put into the `by_open` index (once per table)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse(moment: str) -> datetime:
    """A time the ledger wrote itself: unreadable is a bug, not an input to forgive."""
    parsed = parse_moment(moment)
    if parsed is None:
        raise ValueError("not an ISO 8601 time")
    return parsed


def _linked(document: Mapping[str, Any] | None) -> str | None:
    return str(document["object_id"]) if document and document.get("object_id") else None


def _hours(span: timedelta) -> str:
    """A deadline as a person reads it: 45 s, 20 min, 24 h, 3 days."""
    seconds = span.total_seconds()
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size or (unit == "h" and seconds >= size):
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


class Reconciler:
    """Closes open loops. Collaborators are passed in; `clock` lets tests move time instead of waiting for it."""

    def __init__(
        self,
        ledger: DocumentLedger,
        cobalt: CobaltClient,
        joiner: OutcomeJoiner,
        deadlines: Deadlines,
        *,
        metrics: MetricSink,
        logger: logging.Logger | Any,
        dead_letter_queue_arn: str = "",
        fingerprint_key: Callable[[], bytes] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        event_log_page_size: int = 100,
        accounts: Callable[[], CobaltAccounts] = lambda: CobaltAccounts.from_secret({"access_token": "-"}),
        resend: Callable[[ObjectRef, int], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._accounts = accounts  # for each account's breaker gauge, and its re-linked BLOCKED objects
        self._resend = resend  # puts an S3-shaped event for one version on the ingest queue
        self._cobalt = cobalt
        self._joiner = joiner
        self._deadlines = deadlines
        self._metrics = metrics
        self.logger = logger
        self._dlq_arn = dead_letter_queue_arn
        self._clock = clock
        self._page_size = event_log_page_size
        self._review_fingerprints: set[str] = set()
        self._fingerprint_key = fingerprint_key
        self._in_flight: list[dict[str, Any]] | None = None  # this pass's read of the in-flight entry

    def run(self, deadline: Deadline) -> PassReport:
        """One pass. A pass that finds another one running does nothing (`ran` False)."""
        owner = secrets.token_hex(8)
        if not self._ledger.acquire_run_lease(RUN_NAME, owner, deadline.remaining() + LEASE_MARGIN_SECONDS):
            self.logger.info("another reconciler pass holds the lease; nothing done")
            return PassReport(ran=False, complete=False)
        state = self._ledger.run_state(RUN_NAME)
        report = PassReport()
        self._in_flight = None
        try:
            steps = (
                self._index_open_items,
                self._unrecorded,
                self._submitted,
                self._tag_waits,
                self._interrupted,
                self._dead_lettered,
                self._relinked,
                self._reviews,
                self._foreign,
            )
            for step in steps:
                if deadline.remaining() < RESERVE_SECONDS:
                    report.complete = False
                    break
                step(report, deadline, state, owner)
            self._gauges(report)
        finally:
            self._ledger.release_run_lease(RUN_NAME, owner, state)
        self._count(report)
        self.logger.info("reconciler pass", extra={"report": report.to_dict()})
        return report

    def _in_flight_items(self) -> list[dict[str, Any]]:
        """RECEIVED and SUBMITTED items, read once a pass for both sweeps: each sweep's write is conditional on the
        item as it stands, so an item that moved on since this read is left alone."""
        if self._in_flight is None:
            self._in_flight = self._ledger.in_flight_items()
        return self._in_flight

    # ----- open items of a ledger written before the `by_open` index: indexed once, then never looked for again ------
    def _index_open_items(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
        progress = state.get(OPEN_INDEX_STATE)
        if progress == "done":
            return
        start = dict(progress) if isinstance(progress, dict) else None
        while deadline.remaining() >= RESERVE_SECONDS:
            indexed, start = self._ledger.index_open_items(start)
            report.open_items_indexed += indexed
            state[OPEN_INDEX_STATE] = start or "done"
            if start is None:
                return
        report.complete = False

    # ----- submissions Cobalt accepted whose own ledger write failed ------------------------------------------------
    def _unrecorded(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
        for document in self._ledger.unrecorded_submissions():
            if deadline.remaining() < RESERVE_SECONDS:
                report.complete = False
                return
            if document.get("outcome"):  # the outcome came already: it closes the object directly
                self._joiner.join(document, mark=f"reconciler:{owner}:{document['document_id']}")
                report.late_submissions += 1
            elif self._ledger.record_late_submission(document):
                report.late_submissions += 1

    # ----- SUBMITTED: the outcome, from the ledger or Cobalt's event log, else STALE ----------------------------------
    def _submitted(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
        # A STALE object whose outcome came after all, and whose stream record failed: joined from the ledger.
        stale = {str(i["document_id"]): i for i in self._ledger.open_items(Status.STALE) if i.get("document_id")}
        report.joined_from_ledger += self._join_recorded(stale, owner) if stale else 0
        now = self._clock()
        grace_cutoff = now - self._deadlines.outcome_grace
        submitted = items_within(self._in_flight_items(), Status.SUBMITTED)
        wanted = {
            str(item["document_id"]): item
            for item in submitted
            if item.get("document_id") and _parse(str(item["status_at"])) <= grace_cutoff
        }
        if not wanted:
            return
        # An outcome the ledger holds already (a stream record that failed for good, a late submission): join it.
        report.joined_from_ledger += self._join_recorded(wanted, owner)
        if wanted:
            known = {str(item["document_id"]) for item in submitted if item.get("document_id")}
            searched = self._search_event_log(wanted, known, state, deadline, report)
            report.recovered_from_event_log += self._join_recorded(wanted, owner)
        else:
            searched = True
        stale_cutoff = now - self._deadlines.stale_after
        due = {i: item for i, item in wanted.items() if _parse(str(item["status_at"])) <= stale_cutoff}
        if due and searched:
            # Before STALE, the whole log from its first page: pages the cursor passed may hold an event logged
            # before its submission was recorded. Rare (a day's deadline), so the full read is cheap overall.
            searched = self._search_event_log(due, set(due), state, deadline, report, from_first_page=True)
            joined = set(due)
            report.recovered_from_event_log += self._join_recorded(due, owner)
            joined -= set(due)
            wanted = {i: item for i, item in wanted.items() if i not in joined}
        for item in (due if searched else {}).values():
            reason = (
                f"Cobalt accepted the document (document id {item['document_id']}) but no outcome came in "
                f"{_hours(self._deadlines.stale_after)}, by webhook or in Cobalt's event log: check the patient's "
                "chart in the EMR, then resolve it; a later outcome still closes it"
            )
            if self._ledger.mark_stale(item, reason):
                report.stale += 1
        report.open_submitted_past_grace = len(wanted) - report.stale

    def _join_recorded(self, wanted: dict[str, dict[str, Any]], owner: str) -> int:
        """Join the wanted documents whose outcome is in the ledger; they leave `wanted`. Returns how many joined."""
        joined = 0
        for document_id, document in self._ledger.get_documents(list(wanted)).items():
            if not document.get("outcome"):
                continue
            ref = self._ledger.item_ref(wanted[document_id])
            if document.get("object_id") != ref.object_id:  # the upload's link write failed, or a conflict
                if not self._ledger.link_document(ref, document_id):
                    self.logger.error(
                        "Cobalt's document id is linked to another object already: a person must check both",
                        extra={"object_id": ref.object_id, "document_id": document_id},
                    )
                    self._metrics.add_metric(MetricName.DOCUMENT_LINK_CONFLICTS, "Count", 1)
                    continue  # left SUBMITTED: it goes STALE by its deadline, for a person
                document = {**document, "object_id": ref.object_id}
            result = self._joiner.join(document, mark=f"reconciler:{owner}:{document_id}")
            joined += result is JoinResult.JOINED
            wanted.pop(document_id, None)
        return joined

    def _search_event_log(
        self,
        wanted: dict[str, dict[str, Any]],
        known: set[str],
        state: dict[str, Any],
        deadline: Deadline,
        report: PassReport,
        from_first_page: bool = False,
        reviews: Mapping[str, datetime] | None = None,
    ) -> bool:
        """Record the outcomes Cobalt's event log holds for open submissions. True when the whole log was read.

        With `reviews` (keyed patient/folder fingerprints of open reviews, and the earliest attempt), it records instead
        the outcomes of unknown documents with those fingerprints: candidates whose webhook was lost too. Such a search
        keeps a cursor of its own.

        Pages are read oldest first from the day before the oldest wanted submission, and the page reached is kept
        in `state`: the next pass starts one page earlier (pages fill up at the end), not at the beginning. Events
        are matched against every open submission, not only the overdue ones, so a page passed once is not needed
        again for a document that becomes overdue later.
        """
        if reviews:
            oldest, cursor_name = min(reviews.values()), "review_log"
        else:
            oldest, cursor_name = min(_parse(str(item["status_at"])) for item in wanted.values()), "event_log"
        start: date = (oldest - timedelta(days=1)).date()  # Cobalt's days may not be UTC days
        cursor = state.get(cursor_name)
        if not isinstance(cursor, dict) or cursor.get("start_date") != start.isoformat():
            cursor = {"start_date": start.isoformat(), "pages": {}}
        state[cursor_name] = cursor
        found: set[str] = set()
        for account, log_cursor in self._event_logs(wanted, reviews, cursor_name, cursor, state):
            if not self._read_event_log(
                report, deadline, wanted, reviews, known, start, log_cursor, account, found, from_first_page
            ):
                return False
            if wanted and wanted.keys() <= found:
                break
        return True

    def _event_logs(
        self,
        wanted: dict[str, dict[str, Any]],
        reviews: Mapping[str, datetime] | None,
        cursor_name: str,
        cursor: dict[str, Any],
        state: dict[str, Any],
    ) -> list[tuple[str | None, dict[str, Any]]]:
        """Whose event log to read: each account with open submissions, with a cursor each (Cobalt's docs do not say
        whether the log is per access token or per client: read per account, and the event ids de-duplicate)."""
        accounts = self._accounts()
        names = sorted({account_of(i) for i in wanted.values() if accounts.get(account_of(i))})
        if reviews or len(accounts.accounts) <= 1 or not names:
            return [(None, cursor)]
        logs: list[tuple[str | None, dict[str, Any]]] = []
        for name in names:
            own = state.get(f"{cursor_name}#{name}")
            if not isinstance(own, dict) or own.get("start_date") != cursor["start_date"]:
                own = {"start_date": cursor["start_date"], "pages": {}}
            state[f"{cursor_name}#{name}"] = own
            logs.append((name, own))
        return logs

    def _read_event_log(
        self,
        report: PassReport,
        deadline: Deadline,
        wanted: dict[str, dict[str, Any]],
        reviews: Mapping[str, datetime] | None,
        known: set[str],
        start: date,
        cursor: dict[str, Any],
        account: str | None,
        found: set[str],
        from_first_page: bool,
    ) -> bool:
        """One account's log (None: the first account's), oldest first from `start`, resuming at `cursor`."""
        for event_type in OUTCOMES:
            reached = int(cursor["pages"].get(event_type, 1))
            page = 1 if from_first_page else max(1, reached - 1)
            while True:
                result = self._log_page(report, deadline, event_type, start, page, account)
                if result is None:
                    return False
                for envelope in result.events:
                    event = outcome_event_from(envelope, source="event_log")
                    if event is not None and reviews:
                        key = self._fingerprint_key
                        fingerprint = outcome_fingerprint(key(), envelope.get("data")) if key else None
                        if fingerprint is not None and fingerprint in reviews:
                            self._record_candidate(event, fingerprint)
                        continue
                    if event is None or event.document_id not in known:
                        continue
                    self._ledger.record_outcome(event)  # False: the webhook (or an earlier pass) had it already
                    found.add(event.document_id)
                cursor["pages"][event_type] = max(page, reached)
                if page >= result.total_pages:
                    break
                page += 1
            if wanted and wanted.keys() <= found:
                break
        return True

    def _log_page(
        self, report: PassReport, deadline: Deadline, event_type: str, start: date, page: int, account: str | None
    ) -> EventLogPage | None:
        """One page of Cobalt's event log, counted; None when the pass's time is short or the log cannot be read."""
        if deadline.remaining() < RESERVE_SECONDS + self._cobalt.timeout[0] + self._cobalt.timeout[1]:
            report.complete = False
            return None
        try:
            result = self._cobalt.webhook_events(
                event_type=event_type, start_date=start, page=page, page_size=self._page_size, account=account
            )
        except EventLogUnavailable as exc:
            self.logger.warning("Cobalt's event log could not be read", extra={"error": str(exc)})
            report.event_log_unavailable = True
            return None
        report.event_log_pages += 1
        return result

    def _record_candidate(self, event: OutcomeEvent, fingerprint: str) -> None:
        """A logged outcome of a review's patient and folder, recorded as the webhook would, and listed as unjoined now
        (as the stream would) so this pass's match can find it."""
        self._ledger.record_outcome(dataclasses.replace(event, evidence_fingerprint=fingerprint))
        self._joiner.join(self._ledger.get_document(event.document_id) or {}, mark="reconciler:event-log")

    # ----- WAITING_FOR_TAGS, RECEIVED, PENDING_RETRY ----------------------------------------------------------------
    def _tag_waits(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
        waited = self._deadlines.tag_wait
        for item in self._ledger.open_items(Status.WAITING_FOR_TAGS, before=self._clock() - waited):
            if deadline.remaining() < RESERVE_SECONDS:
                report.complete = False
                return
            missing = item.get("missing_tags") or ["patient_mrn", "folder_name"]
            reason = (
                f"Required tags never arrived: {', '.join(map(str, missing))} (waited {_hours(waited)}). "
                "Add them to this version's tags and it is sent; there is no need to upload the file again"
            )
            if self._ledger.expire_tag_wait(item, reason):
                report.tag_waits_expired += 1

    def _interrupted(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
        now = self._clock()
        for item in items_within(self._in_flight_items(), Status.RECEIVED, before=now - self._deadlines.outcome_grace):
            if deadline.remaining() < RESERVE_SECONDS:
                report.complete = False
                return
            if str(item.get("lease_until", "")) >= now.isoformat(timespec="microseconds"):
                continue  # its holder may still be at work
            ref = self._ledger.item_ref(item)
            tried = int(item.get("attempts") or 0)
            if never_posted(item) and tried < NEVER_POSTED_CLAIMS and self._resend is not None:
                self._resend(ref, int(item.get("size") or 0))  # nothing was sent: its event's claim sends it once
                report.interrupted_resent += 1
                continue
            reason = INTERRUPTED_REASON
            if never_posted(item):  # every holder stopped before its POST: something stops them, a person looks
                reason = (
                    f"Claimed {tried} times, and every holder stopped before its POST: nothing of it is in the EMR. "
                    "Find out what stops the uploader (its logs), then: docdrop resolve --not-filed --resend"
                )
            if self._ledger.mark_interrupted(ref, reason):
                report.interrupted += 1

    def _dead_lettered(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
        cutoff = self._clock() - self._deadlines.retry_horizon
        where = f"the dead-letter queue {self._dlq_arn}" if self._dlq_arn else "the ingest dead-letter queue"
        reason = (
            f"Cobalt stayed unavailable for MaxRetryHours, every try of this object's message; it is now in {where}. "
            "Once Cobalt answers again, redrive it: docdrop redrive (or aws sqs start-message-move-task --source-arn "
            "<that queue's ARN>)"
        )
        expired_before = (self._clock() - self._deadlines.dlq_retention).isoformat(timespec="microseconds")
        for item in self._ledger.open_items(Status.PENDING_RETRY):
            overdue = _parse(str(item["status_at"])) <= cutoff
            noted = bool(item.get("dead_lettered_at")) or (overdue and self._ledger.note_dead_lettered(item, reason))
            report.dead_lettered += noted
            if item.get("dead_letter_expired_at"):
                report.dead_letter_expired += 1  # still counted while it waits: the alarm holds
            elif item.get("dead_lettered_at") and str(item["dead_lettered_at"]) <= expired_before:
                expired = (
                    f"Cobalt stayed unavailable for MaxRetryHours, and this object's message has since expired from "
                    f"the dead-letter queue (kept {_hours(self._deadlines.dlq_retention)}): a redrive finds nothing. "
                    f"Send it again with: docdrop retry --object {item['object_id']}"
                )
                report.dead_letter_expired += self._ledger.note_dead_letter_expired(item, expired)

    # ----- BLOCKED objects of an account whose link works again ------------------------------------------------------
    def _relinked(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
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
                if deadline.remaining() < RESERVE_SECONDS:
                    report.complete = False
                    return
                mine = account_of(item) == account.name
                if mine and str(item.get("status_at") or "") <= relinked_at:
                    self._resend(self._ledger.item_ref(item), int(item.get("size") or 0))
                    report.relinked_resent += 1
            self._ledger.mark_link_resent(account.reference_id, relinked_at)

    # ----- NEEDS_REVIEW matched to Cobalt's documents where the evidence is definitive --------------------------------
    def _reviews(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
        now = self._clock()
        # Past the horizon a review is a person's, but it may still have sent a document the EMR filed late: a rival.
        every_review = list(self._ledger.open_items(Status.NEEDS_REVIEW))
        # A dismissed review's attempt may be what the EMR files late, as much as an open one's.
        every_review += self._ledger.dismissed_reviews(since=now - DISMISSED_RIVALS)
        reviews = items_within(every_review, Status.NEEDS_REVIEW, since=now - REVIEW_HORIZON)
        report.reviews_open = len(reviews)
        # Documents that may be a review's stay out of the foreign sweep (and so in the unjoined index) meanwhile.
        self._review_fingerprints = {str(r["evidence_fingerprint"]) for r in reviews if r.get("evidence_fingerprint")}
        if not self._review_fingerprints:
            return
        in_flight = self._in_flight_items()
        found_all = candidates_for(reviews, self._review_documents(now), in_flight, every_review)
        lonely = self._reviews_without_candidates(found_all, now)
        if lonely and self._fingerprint_key is not None:  # their webhooks may have been lost too: ask the log
            self._search_event_log({}, set(), state, deadline, report, reviews=lonely)
            found_all = candidates_for(reviews, self._review_documents(now), in_flight, every_review)
        for found in found_all:
            if not found.unique or deadline.remaining() < RESERVE_SECONDS:
                continue
            review, [document] = found.review, found.documents
            sha = self._cobalt.document_sha256(str(document["document_id"]))
            if sha is not None and sha != review.get("sha256"):
                self.logger.warning("a review's only candidate has other bytes: left for a person")
                continue
            reason = (
                f"Matched to Cobalt document {document['document_id']}, "
                f"{'filed in the EMR' if document.get('outcome') == Status.UPLOADED.value else 'refused by the EMR'}: "
                "the same patient and folder, its outcome created within the attempt's window "
                f"(+{int(MARGIN_AFTER.total_seconds() // 60)} min), the only candidate on each side"
                + ("; the sha256 of its bytes matches" if sha else "; Cobalt did not return its bytes")
                + (f". Cobalt: {document.get('outcome_reason')}" if document.get("outcome") == "FAILED" else "")
            )
            if self._ledger.link_review(review, document, reason, decided_by="reconciler (evidence)"):
                report.reviews_resolved += 1
                failed = document.get("outcome") == Status.FAILED.value
                self._metrics.add_metric(
                    MetricName.DOCUMENTS_FAILED if failed else MetricName.DOCUMENTS_UPLOADED, "Count", 1
                )
        report.reviews_open -= report.reviews_resolved
        if self._fingerprint_key is not None:
            self._silence(report, deadline, found_all, every_review, in_flight, now)

    # ----- NEEDS_REVIEW not filed, by silence: nothing of it in Cobalt's whole event log over its span ----------------
    def _silence(
        self,
        report: PassReport,
        deadline: Deadline,
        found_all: list[Candidates],
        every_review: list[dict[str, Any]],
        in_flight: list[dict[str, Any]],
        now: datetime,
    ) -> None:
        """Check each review past its span (window + SilentAfterHours) once, with no candidate and no check yet: the
        whole log is read from the day before the oldest span starts, in this pass, and the verdict kept on the review
        (silent, or why not). A read cut short (Cobalt's log unavailable, the pass's deadline) decides nothing."""
        horizon = self._deadlines.silent_after
        due: list[dict[str, Any]] = [
            dict(c.review)
            for c in found_all
            if not c.documents
            and not isinstance(c.review.get(SILENCE), Mapping)
            and (span := silent_span(c.review, horizon)) is not None
            and span[1] <= now
        ]
        silent = [r for r in every_review if is_silent(r)]
        if due:
            oldest = min(span[0] for r in due if (span := silent_span(r, horizon)) is not None)
            read = self._read_whole_log(report, deadline, due, (oldest - timedelta(days=1)).date())
            if read is not None:
                logged, pages = read
                unjoined = list(self._ledger.unjoined_documents(before=now))
                kept = list(self._ledger.unrecorded_submissions())
                for review in due:
                    rivals = evidence_rivals(review, every_review, in_flight)
                    why = silence_of(review, horizon, logged, unjoined, rivals, kept)
                    start, end = silent_span(review, horizon) or (now, now)
                    check = {
                        "verdict": "silent" if why is None else "not silent",
                        **({"why": why} if why else {}),
                        "span_start": start.isoformat(),
                        "span_end": end.isoformat(),
                        "log_from": (oldest - timedelta(days=1)).date().isoformat(),
                        "pages": pages,
                    }
                    reason = (
                        "Not filed, by silence: no document of its patient and folder in Cobalt's whole event log over "
                        f"its window and {_hours(horizon)} after; send it once: docdrop resolve --silent --resend"
                        if why is None
                        else f"The silence check found something: {why}. A person decides"
                    )
                    if self._ledger.note_silence(review, check, reason) and why is None:
                        report.reviews_found_silent += 1
                        silent.append({**review, SILENCE: check, "status_at": review["status_at"]})
        if self._deadlines.resend_silent and self._resend is not None:
            self._resend_silent(report, deadline, silent)

    def _resend_silent(self, report: PassReport, deadline: Deadline, silent: list[dict[str, Any]]) -> None:
        """ResendSilentReviews: each silent review sent once, claimed as any upload is (never one resent by silence)."""
        assert self._resend is not None
        if deadline.remaining() < RESERVE_SECONDS:
            report.complete = False
            return
        done = resend_silent_reviews(
            self._ledger, "reconciler (silence)", self._resend, reviews=silent, by_silence=True
        )
        report.reviews_resent_by_silence += sum(1 for _, what in done if what == "sent")

    def _read_whole_log(
        self, report: PassReport, deadline: Deadline, due: list[dict[str, Any]], start: date
    ) -> tuple[list[LoggedDocument], int] | None:
        """Every `document.*` event in the log of each account the reviews went to, from `start`, every page, and what
        the ledger knows of their documents. Events of the reviews' patients and folders are recorded as the webhook's
        would be (so a lost webhook's document becomes a candidate). None when the read could not be completed."""
        accounts = self._accounts()
        names: list[str | None] = [None]
        if len(accounts.accounts) > 1:
            names = [*sorted({account_of(r) for r in due if accounts.get(account_of(r))})] or [None]
        fingerprints = {str(r["evidence_fingerprint"]) for r in due}
        key = self._fingerprint_key
        assert key is not None
        events: dict[str, tuple[str | None, datetime | None]] = {}
        pages = 0
        for account in names:
            for event_type in OUTCOMES:
                page = 1
                while True:
                    result = self._log_page(report, deadline, event_type, start, page, account)
                    if result is None:
                        return None
                    pages += 1
                    for envelope in result.events:
                        event = outcome_event_from(envelope, source="event_log")
                        if event is None:
                            continue
                        fingerprint = outcome_fingerprint(key(), envelope.get("data"))
                        events[event.document_id] = (fingerprint, parse_moment(event.created))
                        if fingerprint in fingerprints:  # a lost webhook's document: a candidate from now on
                            self._record_candidate(event, fingerprint)
                    if page >= result.total_pages:
                        break
                    page += 1
        known = self._ledger.get_documents(list(events)) if events else {}
        logged = [
            LoggedDocument(document_id, fingerprint, created, _linked(known.get(document_id)))
            for document_id, (fingerprint, created) in events.items()
        ]
        return logged, pages

    def _review_documents(self, now: datetime) -> list[dict[str, Any]]:
        """Unknown documents with an open review's fingerprint, listed for the outcome grace at least: the candidates.
        (The grace gives an upload whose answer is on its way the time to link its own document first.)"""
        documents = self._ledger.unjoined_documents(before=now - self._deadlines.outcome_grace)
        return [d for d in documents if d.get("evidence_fingerprint") in self._review_fingerprints]

    def _reviews_without_candidates(self, found: list[Candidates], now: datetime) -> dict[str, datetime]:
        """Fingerprints (and earliest attempt) of reviews with no candidate after the outcome grace: webhook lost?"""
        lonely: dict[str, datetime] = {}
        for candidates in found:
            window = Window.of(candidates.review)
            if candidates.documents or window is None or window.end + self._deadlines.outcome_grace > now:
                continue
            fingerprint = str(candidates.review["evidence_fingerprint"])
            lonely[fingerprint] = min(lonely.get(fingerprint, window.start), window.start)
        return lonely

    # ----- outcomes of documents that are not DocDrop's -------------------------------------------------------------
    def _foreign(self, report: PassReport, deadline: Deadline, state: dict[str, Any], owner: str) -> None:
        now = self._clock()
        accounts = self._accounts().accounts
        # Only when every account names its reference id can an event be told to be none of theirs.
        known = {a.reference_id for a in accounts} if accounts and all(a.declared for a in accounts) else None
        # A claim still RECEIVED (its answer not recorded, or its holder dead and its review not yet marked) may be a
        # document's sender as much as a review is: the review it may become must find that document unjoined.
        claimed = {
            str(i.get("evidence_fingerprint"))
            for i in items_within(self._in_flight_items(), Status.RECEIVED)
            if i.get("evidence_fingerprint") and not i.get("document_id")
        }
        for document in self._ledger.unjoined_documents(before=now - self._deadlines.outcome_grace):
            if deadline.remaining() < RESERVE_SECONDS:
                report.complete = False
                return
            if document.get("object_id"):  # DocDrop's after all, and the stream has not joined it: join it
                self._joiner.join(document, mark=f"reconciler:{owner}:{document['document_id']}")
            elif document.get("evidence_fingerprint") in self._review_fingerprints | claimed:
                continue  # it may be an open review's (or an open claim's) document: kept for the match, or a person
            elif self._ledger.mark_foreign(str(document["document_id"]), now + self._deadlines.foreign_retention):
                report.foreign += 1
                events = document.get("events") or []
                reference = next(
                    (e["access_token_reference_id"] for e in events if e.get("access_token_reference_id")), None
                )
                report.foreign_unknown_account += known is not None and bool(reference) and reference not in known

    # ----- what is still open -------------------------------------------------------------------------------------
    def _gauges(self, report: PassReport) -> None:
        now = self._clock()
        counts = self._ledger.count_open([*sorted(OPEN), Status.NEEDS_REVIEW])
        # Reviews wait for a person; one older than the review horizon is past any evidence's help: its age alarms.
        _, oldest_review = counts.pop(Status.NEEDS_REVIEW)
        if oldest_review:
            report.oldest_review_seconds = max(0.0, (now - _parse(oldest_review)).total_seconds())
        for status, (count, oldest) in counts.items():
            report.open_objects[status.value] = count
            if oldest:
                report.oldest_open_seconds[status.value] = max(0.0, (now - _parse(oldest)).total_seconds())
        for account in self._accounts().names:  # the longest-open breaker of any account
            seconds = CobaltBreaker(self._ledger, account=account, clock=self._clock).open_seconds()
            report.cobalt_circuit_open_seconds = max(report.cobalt_circuit_open_seconds, seconds)

    def _count(self, report: PassReport) -> None:
        if not report.ran:
            return
        for name, value in (
            (MetricName.RECOVERED_FROM_EVENT_LOG, report.recovered_from_event_log),
            (MetricName.LATE_SUBMISSIONS, report.late_submissions),
            (MetricName.REVIEWS_RESOLVED, report.reviews_resolved),
            (MetricName.REVIEWS_OPEN, report.reviews_open),
            (MetricName.REVIEWS_FOUND_SILENT, report.reviews_found_silent),
            (MetricName.REVIEWS_RESENT_BY_SILENCE, report.reviews_resent_by_silence),
            (MetricName.DOCUMENTS_STALE, report.stale),
            (MetricName.TAG_WAITS_EXPIRED, report.tag_waits_expired),
            (MetricName.INTERRUPTED_CLAIMS, report.interrupted),
            (MetricName.INTERRUPTED_CLAIMS_RESENT, report.interrupted_resent),
            (MetricName.PENDING_RETRY_DEAD_LETTERED, report.dead_lettered),
            (MetricName.DEAD_LETTERED_MESSAGES_EXPIRED, report.dead_letter_expired),
            (MetricName.FOREIGN_OUTCOMES, report.foreign),
            (MetricName.OUTCOMES_OF_UNKNOWN_ACCOUNTS, report.foreign_unknown_account),
            (MetricName.OPEN_OBJECTS, sum(report.open_objects.values())),
            (MetricName.OPEN_SUBMITTED, report.open_objects.get(Status.SUBMITTED.value, 0)),
            (MetricName.OPEN_SUBMITTED_PAST_GRACE, report.open_submitted_past_grace),
            (MetricName.EVENT_LOG_UNAVAILABLE, int(report.event_log_unavailable)),
            (MetricName.RECONCILER_INCOMPLETE, int(not report.complete)),
        ):
            self._metrics.add_metric(name, "Count", value)
        circuit = report.cobalt_circuit_open_seconds
        self._metrics.add_metric(MetricName.COBALT_CIRCUIT_OPEN_SECONDS, "Seconds", circuit)
        ages = report.oldest_open_seconds
        self._metrics.add_metric(MetricName.OLDEST_OPEN_SECONDS, "Seconds", max(ages.values(), default=0.0))
        self._metrics.add_metric(MetricName.OLDEST_SUBMITTED_SECONDS, "Seconds", ages.get(Status.SUBMITTED.value, 0.0))
        self._metrics.add_metric(MetricName.OLDEST_REVIEW_SECONDS, "Seconds", report.oldest_review_seconds)

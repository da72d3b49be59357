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

Each sweep is a module of this package, in the order a pass runs them (`Reconciler.SWEEPS`); what they share is
`docdrop.reconciler.sweep`'s.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from docdrop.accounts import CobaltAccounts
from docdrop.breaker import CobaltBreaker
from docdrop.cobalt import CobaltClient
from docdrop.deadline import Deadline
from docdrop.ledger import OPEN, DocumentLedger, ObjectRef, Status
from docdrop.observability import MetricName
from docdrop.outcomes import OutcomeJoiner
from docdrop.reconciler.foreign import ForeignOutcomes
from docdrop.reconciler.open_states import DeadLetteredRetries, ExpiredTagWaits, InterruptedClaims, RelinkedAccounts
from docdrop.reconciler.reviews import ReviewMatch
from docdrop.reconciler.submitted import OverdueSubmissions, UnrecordedSubmissions
from docdrop.reconciler.sweep import (
    LEASE_MARGIN_SECONDS,
    NEVER_POSTED_CLAIMS,
    OPEN_INDEX_STATE,
    RESERVE_SECONDS,
    RUN_NAME,
    Deadlines,
    Loops,
    MetricSink,
    Pass,
    PassReport,
    Sweep,
    parse_time,
)
from docdrop.reconciler.upgrade import IndexUpgrade

__all__ = [
    "LEASE_MARGIN_SECONDS",
    "NEVER_POSTED_CLAIMS",
    "OPEN_INDEX_STATE",
    "RESERVE_SECONDS",
    "RUN_NAME",
    "Deadlines",
    "MetricSink",
    "PassReport",
    "Reconciler",
]


class Reconciler:
    """Closes open loops: one pass runs each sweep in order under its deadline. Collaborators are passed in; `clock`
    lets tests move time instead of waiting for it."""

    SWEEPS: ClassVar[tuple[type[Sweep], ...]] = (
        IndexUpgrade,
        UnrecordedSubmissions,
        OverdueSubmissions,
        ExpiredTagWaits,
        InterruptedClaims,
        DeadLetteredRetries,
        RelinkedAccounts,
        ReviewMatch,  # with the silence check of the reviews it leaves without a candidate
        ForeignOutcomes,  # after the reviews: a document a review may have sent is kept for it
    )

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
        loops = Loops(
            ledger=ledger,
            cobalt=cobalt,
            joiner=joiner,
            deadlines=deadlines,
            metrics=metrics,
            logger=logger,
            dlq_arn=dead_letter_queue_arn,
            fingerprint_key=fingerprint_key,
            clock=clock,
            page_size=event_log_page_size,
            accounts=accounts,
            resend=resend,
        )
        self._ledger = ledger
        self._accounts = accounts
        self._clock = clock
        self._metrics = metrics
        self.logger = logger
        self._sweeps = [sweep(loops) for sweep in self.SWEEPS]

    def run(self, deadline: Deadline) -> PassReport:
        """One pass. A pass that finds another one running does nothing (`ran` False)."""
        owner = secrets.token_hex(8)
        if not self._ledger.acquire_run_lease(RUN_NAME, owner, deadline.remaining() + LEASE_MARGIN_SECONDS):
            self.logger.info("another reconciler pass holds the lease; nothing done")
            return PassReport(ran=False, complete=False)
        state = self._ledger.run_state(RUN_NAME)
        report = PassReport()
        this_pass = Pass(report, deadline, state, owner, self._ledger)
        try:
            for sweep in self._sweeps:
                if this_pass.out_of_time():
                    break
                sweep.run(this_pass)
            self._gauges(report)
        finally:
            self._ledger.release_run_lease(RUN_NAME, owner, state)
        self._count(report)
        self.logger.info("reconciler pass", extra={"report": report.to_dict()})
        return report

    def _gauges(self, report: PassReport) -> None:
        now = self._clock()
        counts = self._ledger.count_open([*sorted(OPEN), Status.NEEDS_REVIEW])
        # Reviews wait for a person; one older than the review horizon is past any evidence's help: its age alarms.
        _, oldest_review = counts.pop(Status.NEEDS_REVIEW)
        if oldest_review:
            report.oldest_review_seconds = max(0.0, (now - parse_time(oldest_review)).total_seconds())
        for status, (count, oldest) in counts.items():
            report.open_objects[status.value] = count
            if oldest:
                report.oldest_open_seconds[status.value] = max(0.0, (now - parse_time(oldest)).total_seconds())
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

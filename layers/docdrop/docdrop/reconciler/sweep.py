"""What every sweep of a reconciler pass shares: the collaborators (`Loops`), one pass's state (`Pass`), its report, the
deadlines, and the base of a sweep. Each sweep is a module of this package; the pass (`docdrop.reconciler.Reconciler`)
runs them in order under its deadline."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from docdrop.accounts import CobaltAccounts
from docdrop.cobalt import CobaltClient
from docdrop.deadline import Deadline
from docdrop.ledger import DocumentLedger, ObjectRef, parse_moment
from docdrop.outcomes import OutcomeJoiner
from docdrop.settings import ReconcilerSettings

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


def parse_time(moment: str) -> datetime:
    """A time the ledger wrote itself: unreadable is a bug, not an input to forgive."""
    parsed = parse_moment(moment)
    if parsed is None:
        raise ValueError("not an ISO 8601 time")
    return parsed


def linked(document: Mapping[str, Any] | None) -> str | None:
    return str(document["object_id"]) if document and document.get("object_id") else None


def hours(span: timedelta) -> str:
    """A deadline as a person reads it: 45 s, 20 min, 24 h, 3 days."""
    seconds = span.total_seconds()
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size or (unit == "h" and seconds >= size):
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


@dataclasses.dataclass
class Loops:
    """The collaborators every sweep works with (the Reconciler's, as it was given them)."""

    ledger: DocumentLedger
    cobalt: CobaltClient
    joiner: OutcomeJoiner
    deadlines: Deadlines
    metrics: MetricSink
    logger: logging.Logger | Any
    dlq_arn: str
    fingerprint_key: Callable[[], bytes] | None
    clock: Callable[[], datetime]
    page_size: int
    accounts: Callable[[], CobaltAccounts]
    resend: Callable[[ObjectRef, int], None] | None


@dataclasses.dataclass
class Pass:
    """One pass: its report, its deadline, the state it keeps for the next pass, its lease's owner, and what its sweeps
    read once for all of them."""

    report: PassReport
    deadline: Deadline
    state: dict[str, Any]
    owner: str
    ledger: DocumentLedger
    review_fingerprints: set[str] = dataclasses.field(default_factory=set)  # the reviews' sweep's, for the foreign one
    _in_flight: list[dict[str, Any]] | None = None

    def out_of_time(self) -> bool:
        """Whether the pass is down to its reserve (`RESERVE_SECONDS`): then it is incomplete, and the caller stops."""
        if self.deadline.remaining() >= RESERVE_SECONDS:
            return False
        self.report.complete = False
        return True

    def in_flight_items(self) -> list[dict[str, Any]]:
        """RECEIVED and SUBMITTED items, read once a pass for every sweep: each sweep's write is conditional on the
        item as it stands, so an item that moved on since this read is left alone."""
        if self._in_flight is None:
            self._in_flight = self.ledger.in_flight_items()
        return self._in_flight


class Sweep:
    """One sweep of a pass: `run` moves what is due in its states; it stops (the pass incomplete) when time is short."""

    def __init__(self, loops: Loops) -> None:
        self._ledger = loops.ledger
        self._cobalt = loops.cobalt
        self._joiner = loops.joiner
        self._deadlines = loops.deadlines
        self._metrics = loops.metrics
        self.logger = loops.logger
        self._dlq_arn = loops.dlq_arn
        self._fingerprint_key = loops.fingerprint_key
        self._clock = loops.clock
        self._page_size = loops.page_size
        self._accounts = loops.accounts  # for each account's breaker gauge, and its re-linked BLOCKED objects
        self._resend = loops.resend  # puts an S3-shaped event for one version on the ingest queue

    def run(self, p: Pass) -> None:
        raise NotImplementedError

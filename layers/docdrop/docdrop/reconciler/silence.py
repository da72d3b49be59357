"""NEEDS_REVIEW not filed, by silence: nothing of it in Cobalt's whole event log over its span; resent once where the
stack allows (ResendSilentReviews)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from docdrop.ledger import SILENCE
from docdrop.reconciler.event_log import EventLog
from docdrop.reconciler.sweep import Loops, Pass, Sweep, hours
from docdrop.reviews import Candidates, evidence_rivals, is_silent, resend_silent_reviews, silence_of, silent_span


class SilenceCheck(Sweep):
    """Checks reviews past their span once, keeps the verdict on each, and resends the silent ones if allowed."""

    def __init__(self, loops: Loops) -> None:
        super().__init__(loops)
        self._log = EventLog(loops)

    def check(
        self,
        p: Pass,
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
            read = self._log.read_whole(p.report, p.deadline, due, (oldest - timedelta(days=1)).date())
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
                        f"its window and {hours(horizon)} after; send it once: docdrop resolve --silent --resend"
                        if why is None
                        else f"The silence check found something: {why}. A person decides"
                    )
                    if self._ledger.note_silence(review, check, reason) and why is None:
                        p.report.reviews_found_silent += 1
                        silent.append({**review, SILENCE: check, "status_at": review["status_at"]})
        if self._deadlines.resend_silent and self._resend is not None:
            self._resend_silent(p, silent)

    def _resend_silent(self, p: Pass, silent: list[dict[str, Any]]) -> None:
        """ResendSilentReviews: each silent review sent once, claimed as any upload is (never one resent by silence)."""
        assert self._resend is not None
        if p.out_of_time():
            return
        done = resend_silent_reviews(
            self._ledger, "reconciler (silence)", self._resend, reviews=silent, by_silence=True
        )
        p.report.reviews_resent_by_silence += sum(1 for _, what in done if what == "sent")

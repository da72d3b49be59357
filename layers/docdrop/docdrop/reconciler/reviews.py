"""NEEDS_REVIEW matched to the Cobalt document it sent, where the evidence is definitive (docdrop.reviews); then, with
no candidate past its span, the silence check (`docdrop.reconciler.silence`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from docdrop.ledger import Status, items_within
from docdrop.observability import MetricName
from docdrop.reconciler.event_log import EventLog
from docdrop.reconciler.silence import SilenceCheck
from docdrop.reconciler.sweep import RESERVE_SECONDS, Loops, Pass, Sweep
from docdrop.reviews import DISMISSED_RIVALS, MARGIN_AFTER, REVIEW_HORIZON, Candidates, Window, candidates_for


class ReviewMatch(Sweep):
    """Links a review to its only candidate document; hands those with none to the silence check."""

    def __init__(self, loops: Loops) -> None:
        super().__init__(loops)
        self._log = EventLog(loops)
        self._silence = SilenceCheck(loops)

    def run(self, p: Pass) -> None:
        now = self._clock()
        # Past the horizon a review is a person's, but it may still have sent a document the EMR filed late: a rival.
        every_review = list(self._ledger.open_items(Status.NEEDS_REVIEW))
        # A dismissed review's attempt may be what the EMR files late, as much as an open one's.
        every_review += self._ledger.dismissed_reviews(since=now - DISMISSED_RIVALS)
        reviews = items_within(every_review, Status.NEEDS_REVIEW, since=now - REVIEW_HORIZON)
        p.report.reviews_open = len(reviews)
        # Documents that may be a review's stay out of the foreign sweep (and so in the unjoined index) meanwhile.
        p.review_fingerprints = {str(r["evidence_fingerprint"]) for r in reviews if r.get("evidence_fingerprint")}
        if not p.review_fingerprints:
            return
        in_flight = p.in_flight_items()
        found_all = candidates_for(reviews, self._review_documents(p, now), in_flight, every_review)
        lonely = self._reviews_without_candidates(found_all, now)
        if lonely and self._fingerprint_key is not None:  # their webhooks may have been lost too: ask the log
            self._log.search({}, set(), p.state, p.deadline, p.report, reviews=lonely)
            found_all = candidates_for(reviews, self._review_documents(p, now), in_flight, every_review)
        for found in found_all:
            if not found.unique or p.deadline.remaining() < RESERVE_SECONDS:
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
                p.report.reviews_resolved += 1
                failed = document.get("outcome") == Status.FAILED.value
                self._metrics.add_metric(
                    MetricName.DOCUMENTS_FAILED if failed else MetricName.DOCUMENTS_UPLOADED, "Count", 1
                )
        p.report.reviews_open -= p.report.reviews_resolved
        if self._fingerprint_key is not None:
            self._silence.check(p, found_all, every_review, in_flight, now)

    def _review_documents(self, p: Pass, now: datetime) -> list[dict[str, Any]]:
        """Unknown documents with an open review's fingerprint, listed for the outcome grace at least: the candidates.
        (The grace gives an upload whose answer is on its way the time to link its own document first.)"""
        documents = self._ledger.unjoined_documents(before=now - self._deadlines.outcome_grace)
        return [d for d in documents if d.get("evidence_fingerprint") in p.review_fingerprints]

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

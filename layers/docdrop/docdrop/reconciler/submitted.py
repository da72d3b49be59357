"""Submissions: those Cobalt accepted whose own ledger write failed are recorded; SUBMITTED past the outcome grace is
joined to an outcome from the ledger or Cobalt's event log, and still nothing after `stale_after` is STALE."""

from __future__ import annotations

from typing import Any

from docdrop.ledger import JoinResult, Status, items_within
from docdrop.observability import MetricName
from docdrop.reconciler.event_log import EventLog
from docdrop.reconciler.sweep import Loops, Pass, Sweep, hours, parse_time


class UnrecordedSubmissions(Sweep):
    """Submissions kept on the document's item (`remember_submission`) recorded on their object."""

    def run(self, p: Pass) -> None:
        for document in self._ledger.unrecorded_submissions():
            if p.out_of_time():
                return
            if document.get("outcome"):  # the outcome came already: it closes the object directly
                self._joiner.join(document, mark=f"reconciler:{p.owner}:{document['document_id']}")
                p.report.late_submissions += 1
            elif self._ledger.record_late_submission(document):
                p.report.late_submissions += 1


class OverdueSubmissions(Sweep):
    """SUBMITTED past the outcome grace: its outcome from the ledger or Cobalt's event log, else STALE."""

    def __init__(self, loops: Loops) -> None:
        super().__init__(loops)
        self._log = EventLog(loops)

    def run(self, p: Pass) -> None:
        # A STALE object whose outcome came after all, and whose stream record failed: joined from the ledger.
        stale = {str(i["document_id"]): i for i in self._ledger.open_items(Status.STALE) if i.get("document_id")}
        p.report.joined_from_ledger += self._join_recorded(stale, p.owner) if stale else 0
        now = self._clock()
        grace_cutoff = now - self._deadlines.outcome_grace
        submitted = items_within(p.in_flight_items(), Status.SUBMITTED)
        wanted = {
            str(item["document_id"]): item
            for item in submitted
            if item.get("document_id") and parse_time(str(item["status_at"])) <= grace_cutoff
        }
        if not wanted:
            return
        # An outcome the ledger holds already (a stream record that failed for good, a late submission): join it.
        p.report.joined_from_ledger += self._join_recorded(wanted, p.owner)
        if wanted:
            known = {str(item["document_id"]) for item in submitted if item.get("document_id")}
            searched = self._log.search(wanted, known, p.state, p.deadline, p.report)
            p.report.recovered_from_event_log += self._join_recorded(wanted, p.owner)
        else:
            searched = True
        stale_cutoff = now - self._deadlines.stale_after
        due = {i: item for i, item in wanted.items() if parse_time(str(item["status_at"])) <= stale_cutoff}
        if due and searched:
            # Before STALE, the whole log from its first page: pages the cursor passed may hold an event logged
            # before its submission was recorded. Rare (a day's deadline), so the full read is cheap overall.
            searched = self._log.search(due, set(due), p.state, p.deadline, p.report, from_first_page=True)
            joined = set(due)
            p.report.recovered_from_event_log += self._join_recorded(due, p.owner)
            joined -= set(due)
            wanted = {i: item for i, item in wanted.items() if i not in joined}
        for item in (due if searched else {}).values():
            reason = (
                f"Cobalt accepted the document (document id {item['document_id']}) but no outcome came in "
                f"{hours(self._deadlines.stale_after)}, by webhook or in Cobalt's event log: check the patient's "
                "chart in the EMR, then resolve it; a later outcome still closes it"
            )
            if self._ledger.mark_stale(item, reason):
                p.report.stale += 1
        p.report.open_submitted_past_grace = len(wanted) - p.report.stale

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

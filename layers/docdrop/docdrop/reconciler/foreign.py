"""Outcomes no DocDrop object claimed within the grace period: not DocDrop's, never counted, left to expire."""

from __future__ import annotations

from docdrop.ledger import Status, items_within
from docdrop.reconciler.sweep import Pass, Sweep


class ForeignOutcomes(Sweep):
    """Marks unjoined outcomes past the grace as foreign, unless a review or a claim may be theirs."""

    def run(self, p: Pass) -> None:
        now = self._clock()
        accounts = self._accounts().accounts
        # Only when every account names its reference id can an event be told to be none of theirs.
        known = {a.reference_id for a in accounts} if accounts and all(a.declared for a in accounts) else None
        # A claim still RECEIVED (its answer not recorded, or its holder dead and its review not yet marked) may be a
        # document's sender as much as a review is: the review it may become must find that document unjoined.
        claimed = {
            str(i.get("evidence_fingerprint"))
            for i in items_within(p.in_flight_items(), Status.RECEIVED)
            if i.get("evidence_fingerprint") and not i.get("document_id")
        }
        for document in self._ledger.unjoined_documents(before=now - self._deadlines.outcome_grace):
            if p.out_of_time():
                return
            if document.get("object_id"):  # DocDrop's after all, and the stream has not joined it: join it
                self._joiner.join(document, mark=f"reconciler:{p.owner}:{document['document_id']}")
            elif document.get("evidence_fingerprint") in p.review_fingerprints | claimed:
                continue  # it may be an open review's (or an open claim's) document: kept for the match, or a person
            elif self._ledger.mark_foreign(str(document["document_id"]), now + self._deadlines.foreign_retention):
                p.report.foreign += 1
                events = document.get("events") or []
                reference = next(
                    (e["access_token_reference_id"] for e in events if e.get("access_token_reference_id")), None
                )
                p.report.foreign_unknown_account += known is not None and bool(reference) and reference not in known

"""Cobalt documents (`pk=CDOC#<document_id>`, `sk=CDOC`): what Cobalt said about a document, and the object it came
from. The webhook's one write (`record_outcome`), the submission and its link, the join of an outcome onto its object,
submissions kept when their own write failed, and the unjoined and foreign marks the sweeps read."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from docdrop.ledger.expression import Expression, plain
from docdrop.ledger.model import (
    MAX_OBJECT_REASON,
    SUBMITTED_REASON,
    UNJOINED,
    UNRECORDED,
    DocumentView,
    JoinResult,
    LedgerError,
    ObjectRef,
    OutcomeEvent,
    Status,
    _view,
    now_iso,
)
from docdrop.ledger.objects import ObjectStore
from docdrop.ledger.table import failure, ref_attributes


class DocumentStore(ObjectStore):
    """Cobalt document items, and the writes that join them to object versions (built on `ObjectStore`)."""

    def get_document(self, document_id: str) -> dict[str, Any] | None:
        return self._get(self._document_key(document_id))

    def get_documents(self, document_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Cobalt document items by id (BatchGetItem, 100 at a time); ids without an item are left out."""
        keys = [self._document_key(i) for i in dict.fromkeys(document_ids)]
        return {str(item.get("document_id")): item for item in self._batch_items(keys)}

    def lookup(self, ref: ObjectRef) -> DocumentView | None:
        obj = self.get_object(ref)
        if obj is None:
            return None
        document = self.get_document(obj["document_id"]) if obj.get("document_id") else None
        return _view(obj, document, self.history(ref.object_id, obj))

    def lookup_document(self, document_id: str) -> DocumentView | None:
        document = self.get_document(document_id)
        if document is None:
            return None
        object_id = document.get("object_id")
        obj = self._get(self._object_key(object_id)) if object_id else None
        return _view(obj, document, self.history(str(object_id), obj) if obj else [])

    def record_submission(self, ref: ObjectRef, token: str, document_id: str, job_id: str | None = None) -> bool:
        """Cobalt accepted the upload: SUBMITTED with its document id, then the Cobalt document linked to the object.

        Two single writes, not a transaction (which DynamoDB bills twice per item): the object's, conditional on the
        claim, decides; the document's link is idempotent and joins any outcome that arrived first (through the
        stream). Written whatever the object's state says now (a slow invocation's lease may have run out and the object
        been marked NEEDS_REVIEW): a document id Cobalt returned is never dropped. Only the claim holder can write it,
        and a retry of a write that was applied (its answer lost) finds its own document id and goes on to the link.
        If the link fails, the object is SUBMITTED all the same and the reconciler links it (`link_document`).
        Returns False when the document names another object already (a conflict the caller reports).
        """
        now = now_iso()
        e = Expression()
        update = self._transition(
            e,
            Status.SUBMITTED,
            SUBMITTED_REASON,
            now,
            {"document_id": document_id, "job_id": job_id, "submitted_at": now},
            remove=("lease_until",),  # a claim's lease ends with its submission: the object item stays small
        )
        # Still this claim's, or given up on while its POST was out (a lapsed lease's review, even one a person
        # dismissed): Cobalt has the document, so the object says so.
        condition = self._unrecorded_sender(e, token)
        try:
            answer = self._update_both_ways(self._object_key(ref.object_id), e.kwargs(update, condition))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise failure(exc, "submission write") from exc
            old: Any = exc.response.get("Item")
            current = plain(old) or {}
            if current.get("claim_token") != token or current.get("document_id") != document_id:
                raise LedgerError("DynamoDB submission write failed: the claim is no longer this upload's") from exc
        else:
            previous = (plain(answer.get("Attributes")) or {}).get("status")
            if previous != Status.RECEIVED.value:  # e.g. over a NEEDS_REVIEW its lapsed lease left: not the hot path
                self._note_history(ref.object_id, now, Status.SUBMITTED, SUBMITTED_REASON, previous=previous)
        return self.link_document(ref, document_id)

    def link_document(self, ref: ObjectRef, document_id: str) -> bool:
        """The Cobalt document names the object it came from. An outcome already on it is then joined by the stream; a
        foreign mark, expiry or unjoined entry made before this link is taken off: it is DocDrop's.

        The first object wins: a repeat by the same object is a no-op success, and a document that names another object
        already is left as it is and answered False (a conflict, for the caller to report: never overwritten).
        """
        now = now_iso()
        e = Expression()
        sets = e.assign(
            {"object_id": ref.object_id, "document_id": document_id},  # the object item holds its bucket, key, version
            keep_first={"submitted_at": now},
        )
        removed = ", ".join(e.n(a) for a in ("foreign_at", "expires_at", UNJOINED))
        mine = f"attribute_not_exists({e.n('object_id')}) OR {e.n('object_id')} = {e.v(ref.object_id)}"
        return self._conditional_update(
            self._document_key(document_id), e, "SET " + ", ".join(sets) + " REMOVE " + removed, mine
        )

    def record_outcome(self, event: OutcomeEvent) -> bool:
        """Record a document outcome in one DynamoDB call. False when this event id was recorded already.

        The first terminal outcome is kept (`if_not_exists`); every distinct event joins the history either way,
        and an outcome that arrives before its submission waits on the document's item until the submission's link
        joins it (`mark_unjoined` lists it meanwhile). It touches no index: the hot path's one write is one write unit.
        """
        now = now_iso()
        said = event.failure_reason or " ".join(r.get("description", "") for r in event.reasons).strip()
        reason = said if event.outcome is Status.FAILED else "Filed in the EMR"
        e = Expression()
        sets = e.assign(
            {"document_id": event.document_id},
            keep_first={
                "outcome": event.outcome.value,
                "outcome_reason": reason or "Cobalt reported the upload failed (no reason given)",
                "outcome_created": event.created,
                "evidence_fingerprint": event.evidence_fingerprint,
                "created_at": now,
                "expires_at": self._document_expiry(),
            },
        )
        sets.append(
            e.append(
                "events",
                {
                    "event_id": event.event_id,
                    "type": event.event_type,
                    "created": event.created,
                    "received_at": now,
                    "attempt": event.attempt,
                    # Cobalt's reason text is kept once, as `outcome_reason` (it may be 1,000 characters): the events
                    # keep its codes only.
                    "reason_codes": [r["code"] for r in event.reasons if r.get("code")] or None,
                    "job_id": event.job_id,
                    "access_token_reference_id": event.access_token_reference_id,
                    "source": event.source,
                },
            )
        )
        return self._record_event_once(self._document_key(event.document_id), e, sets, event.event_id)

    def _record_event_once(self, key: dict[str, Any], e: Expression, sets: list[str], event_id: str) -> bool:
        """Apply `sets` and remember `event_id`, unless that event id was applied before: one conditional write.

        Each call writes its own `last_writer` token: when botocore re-sends a write DynamoDB applied but whose answer
        was lost, the retry fails the condition, and the token in the returned item tells it that the write was its own.
        """
        writer = secrets.token_hex(8)
        ids = e.n("event_ids")
        sets = [*sets, f"{e.n('last_writer')} = {e.v(writer)}"]
        update = "SET " + ", ".join(sets) + f" ADD {ids} {e.v({event_id})}"
        condition = f"attribute_not_exists({ids}) OR NOT contains({ids}, {e.v(event_id)})"
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=key,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **e.kwargs(update, condition),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                old: Any = exc.response.get("Item")
                return (plain(old) or {}).get("last_writer") == writer
            raise failure(exc, "update") from exc
        return True

    def join_outcome(self, document: Mapping[str, Any], mark: str) -> JoinResult:
        """Move the object a Cobalt document came from to that document's outcome, with Cobalt's reason.

        One conditional UpdateItem: only a SUBMITTED or STALE object with this document id moves, or, for a submission
        whose own write failed (`remember_submission`), the claim that sent it. `mark` names this write (a stream
        record's sequence number, a reconciler pass): when botocore retries a write whose answer was lost, the item
        already carries the mark, and the retry is known as its own success, not someone else's.
        """
        outcome = Status(document["outcome"])
        reason = _joined_reason(outcome, str(document.get("outcome_reason") or outcome.value), document)
        now = now_iso()
        e = Expression()
        update = self._transition(
            e,
            outcome,
            reason,
            now,
            {"joined_mark": mark, "document_id": str(document["document_id"])},
        )
        open_states = f"{e.v(Status.SUBMITTED.value)}, {e.v(Status.STALE.value)}"
        condition = (
            f"({e.n('document_id')} = {e.v(str(document['document_id']))} AND {e.n('status')} IN ({open_states}))"
        )
        if document.get("claim_token"):
            condition += f" OR {self._unrecorded_sender(e, str(document['claim_token']))}"
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=self._object_key(str(document["object_id"])),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **e.kwargs(update, condition),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise LedgerError(f"DynamoDB join failed: {exc.response['Error']['Code']}") from exc
            old: Any = exc.response.get("Item")
            current = plain(old) or {}
            if current.get("joined_mark") == mark:
                return JoinResult.JOINED  # our own earlier try was applied; its answer was lost
            return JoinResult.ALREADY if current.get("status") == outcome.value else JoinResult.NOT_OPEN
        return JoinResult.JOINED

    def remember_submission(self, ref: ObjectRef, token: str, document_id: str, job_id: str | None) -> bool:
        """Cobalt accepted the upload but the submission could not be recorded: keep the document id durably anyway,
        on the Cobalt document's own item, with the claim that sent it, in the `by_unjoined_outcome` index under
        UNRECORDED, so an outcome joins it and the reconciler records the submission (`record_late_submission`).
        Like `link_document`, only over a document no other object names: False for that conflict."""
        now = now_iso()
        e = Expression()
        sets = e.assign(
            {**ref_attributes(ref), "document_id": document_id, "claim_token": token, "job_id": job_id},
            keep_first={"submitted_at": now, "created_at": now, UNJOINED: UNRECORDED, "outcome_at": now},
        )
        mine = f"attribute_not_exists({e.n('object_id')}) OR {e.n('object_id')} = {e.v(ref.object_id)}"
        return self._conditional_update(self._document_key(document_id), e, "SET " + ", ".join(sets), mine)

    def unrecorded_submissions(self) -> Iterator[dict[str, Any]]:
        """Cobalt documents whose submission `remember_submission` kept, not yet recorded on their object."""
        return self._index_items("by_unjoined_outcome", UNJOINED, "outcome_at", UNRECORDED, None, None, False)

    def kept_submission(self, object_id: str) -> dict[str, Any] | None:
        """The Cobalt document `remember_submission` kept for this object and not yet recorded on it, if any: a version
        Cobalt accepted, whose own write failed. Such a version must never be sent again."""
        return next((d for d in self.unrecorded_submissions() if d.get("object_id") == object_id), None)

    def record_late_submission(self, document: Mapping[str, Any]) -> bool:
        """The object whose submission was kept by `remember_submission` becomes SUBMITTED with its document id (from
        any state its claim may be in: SENT_BY_CLAIM); the document leaves the UNRECORDED index once its object names
        it. True when the object moved; False when it had moved on already, or is in a state that cannot take it (the
        document then stays listed as UNRECORDED, never dropped)."""
        now = now_iso()
        reason = "Accepted by Cobalt (recorded late: the upload's own write failed); waiting for the EMR's outcome"
        e = Expression()
        update = self._transition(
            e,
            Status.SUBMITTED,
            reason,
            now,
            {"document_id": str(document["document_id"]), "job_id": document.get("job_id"), "submitted_at": now},
        )
        object_id = str(document["object_id"])
        moved = self._conditional_update(
            self._object_key(object_id), e, update, self._unrecorded_sender(e, str(document["claim_token"]))
        )
        if moved:
            self._note_history(object_id, now, Status.SUBMITTED, reason)
        elif (self.get_object_by_id(object_id) or {}).get("document_id") != str(document["document_id"]):
            return False  # the object holds no record of this document: kept in the index, for a person to see
        d = Expression()
        self._conditional_update(
            self._document_key(str(document["document_id"])),
            d,
            f"REMOVE {d.n(UNJOINED)}",
            f"{d.n(UNJOINED)} = {d.v(UNRECORDED)}",
        )
        return moved

    def clear_unjoined(self, document_id: str) -> None:
        """Take a joined Cobalt document out of the `by_unjoined_outcome` index (so sweeps never read history)."""
        e = Expression()
        self._conditional_update(
            self._document_key(document_id), e, f"REMOVE {e.n(UNJOINED)}", f"attribute_exists({e.n('pk')})"
        )

    def mark_unjoined(self, document: Mapping[str, Any]) -> bool:
        """An outcome on a Cobalt document no object is linked to (yet): list it in the sparse `by_unjoined_outcome`
        index, for the reviews' match and the foreign sweep. Off the hot path: the stream calls it only for such
        documents (its webhook came before the upload's answer, or it is not DocDrop's). False once linked or listed."""
        e = Expression()
        sets = e.assign({UNJOINED: str(document["outcome"])}, keep_first={"outcome_at": now_iso()})
        condition = (
            f"attribute_exists({e.n('outcome')}) AND attribute_not_exists({e.n('object_id')})"
            f" AND attribute_not_exists({e.n(UNJOINED)})"
        )
        return self._conditional_update(
            self._document_key(str(document["document_id"])), e, "SET " + ", ".join(sets), condition
        )

    def mark_foreign(self, document_id: str, expires_at: datetime) -> bool:
        """An outcome no DocDrop object claimed within the grace period: not DocDrop's. It expires (TTL) and leaves
        the unjoined index. True the first time only; never over a document whose submission is recorded."""
        now = now_iso()
        e = Expression()
        sets = e.assign({"expires_at": int(expires_at.timestamp()), "updated_at": now}, keep_first={"foreign_at": now})
        update = "SET " + ", ".join(sets) + f" REMOVE {e.n(UNJOINED)}"
        try:
            answer = self._call(
                "update_item",
                TableName=self._table,
                Key=self._document_key(document_id),
                ReturnValues="UPDATED_OLD",
                **e.kwargs(update, f"attribute_exists({e.n('pk')}) AND attribute_not_exists({e.n('object_id')})"),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise LedgerError(f"DynamoDB update failed: {exc.response['Error']['Code']}") from exc
        return "foreign_at" not in answer.get("Attributes", {})


def _joined_reason(outcome: Status, said: str, document: Mapping[str, Any]) -> str:
    """The reason an object takes from its outcome: Cobalt's own text stays once, on the document (`lookup` shows it
    whole); the object keeps its start, so a 1,000-character refusal costs no second write unit on the object too."""
    if outcome is not Status.FAILED or len(said) <= MAX_OBJECT_REASON:
        return said
    return f"{said[: MAX_OBJECT_REASON - 60].rstrip()}… (whole: docdrop status --document-id {document['document_id']})"

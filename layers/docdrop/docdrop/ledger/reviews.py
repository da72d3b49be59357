"""Reviews (NEEDS_REVIEW object versions) decided: linked to the Cobalt document they were shown to be, approved for a
resend (keeping the reviewed attempt as a rival, `sk=ATTEMPT#<sent at>`), found silent, or dismissed. Each only as the
review was read. The evidence behind these decisions is docdrop.reviews'."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from docdrop.ledger.expression import Expression, clean, item_values
from docdrop.ledger.model import (
    DISMISSED_REVIEW,
    RESEND_APPROVED,
    RESENDABLE,
    RESENT_BY_SILENCE,
    RIVAL_LIFETIME,
    SILENCE,
    UNJOINED,
    LedgerError,
    ObjectRef,
    Status,
    now_iso,
)
from docdrop.ledger.objects import ObjectStore
from docdrop.ledger.table import failure, ref_attributes


class ReviewStore(ObjectStore):
    """Writes that decide a review (built on `ObjectStore`: a decision is an object version's transition)."""

    def link_review(self, review: Mapping[str, Any], document: Mapping[str, Any], reason: str, decided_by: str) -> bool:
        """Close a NEEDS_REVIEW object as the outcome of the Cobalt document it was shown to be, in one transaction:
        the object only as it was read, the document only if no object holds it. False when either had changed."""
        outcome = Status(document.get("outcome") or Status.UPLOADED.value)
        now = now_iso()
        obj = Expression()
        obj_update = self._transition(
            obj,
            outcome,
            reason,
            now,
            {"document_id": str(document["document_id"]), "decided_by": decided_by},
        )
        obj_condition = (
            f"{obj.n('status')} = {obj.v(Status.NEEDS_REVIEW.value)} AND "
            f"{obj.n('status_at')} = {obj.v(str(review['status_at']))} AND "
            f"attribute_not_exists({obj.n(RESEND_APPROVED)})"  # a person approved a resend: not for a link any more
        )
        ref = self.item_ref(review)
        doc = Expression()
        doc_sets = doc.assign({**ref_attributes(ref), "document_id": str(document["document_id"]), "updated_at": now})
        doc_update = (
            "SET "
            + ", ".join(doc_sets)
            + " REMOVE "
            + ", ".join(doc.n(a) for a in (UNJOINED, "foreign_at", "expires_at"))
        )
        doc_condition = (  # nobody's, or this object's own (a submission kept when its record failed)
            f"attribute_not_exists({doc.n('object_id')}) OR {doc.n('object_id')} = {doc.v(ref.object_id)}"
        )
        try:
            self._update_object_and_document(
                ref.object_id,
                obj.kwargs(obj_update, obj_condition),
                str(document["document_id"]),
                doc.kwargs(doc_update, doc_condition),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise failure(exc, "review link") from exc
        self._note_history(ref.object_id, now, outcome, reason, by=decided_by)
        return True

    def _update_object_and_document(
        self, object_id: str, object_update: Mapping[str, Any], document_id: str, document_update: Mapping[str, Any]
    ) -> None:
        """One transaction: an object version and a Cobalt document change together, or neither does."""
        self._call(
            "transact_write_items",
            TransactItems=[
                {"Update": {"TableName": self._table, "Key": self._object_key(object_id), **object_update}},
                {"Update": {"TableName": self._table, "Key": self._document_key(document_id), **document_update}},
            ],
        )

    def approve_resend(
        self,
        ref: ObjectRef,
        reason: str,
        decided_by: str = "",
        status: Status = Status.DUPLICATE,
        read_at: str | None = None,
        by_silence: bool = False,
    ) -> bool:
        """A person's decision: this DUPLICATE (or NEEDS_REVIEW) is to be sent after all, once, at its next event.

        Only one approval holds: a second person's, at the same time, finds it approved already and gets False. With
        `read_at`, only if its state is still the one read then (a review found silent, say); `by_silence` marks a
        review resent because it was found silent (RESENT_BY_SILENCE: the reconciler does that once per object).
        """
        if status not in RESENDABLE:
            raise ValueError(f"{status} cannot be approved for sending")
        e = Expression()
        condition = f"{e.n('status')} = {e.v(status.value)} AND attribute_not_exists({e.n(RESEND_APPROVED)})"
        if read_at is not None:
            condition += f" AND {e.n('status_at')} = {e.v(read_at)}"
        now = now_iso()
        sets = e.assign(
            {
                "reason": reason,
                RESEND_APPROVED: True,
                "updated_at": now,
                "decided_by": decided_by,
                **({RESENT_BY_SILENCE: now} if by_silence else {}),
            }
        )
        approved = self._conditional_update(self._object_key(ref.object_id), e, "SET " + ", ".join(sets), condition)
        if approved:
            self._note_history(ref.object_id, now, status, reason, by=decided_by)
            if status is Status.NEEDS_REVIEW:
                self._keep_attempt(ref.object_id, now)
        return approved

    def _keep_attempt(self, object_id: str, now: str) -> None:
        """The reviewed attempt, kept as a rival (ATTEMPT_PREFIX) before the resend's claim clears its window.

        Written after the approval, which holds either way; should this write fail, the approval is undone, so that no
        resend ever goes out with its first attempt forgotten (the person is told to decide again)."""
        review = self.get_object_by_id(object_id) or {}
        sent_at = review.get("attempt_sent_at")
        if not sent_at or not review.get("evidence_fingerprint"):
            return  # no window or no evidence: it could never be any document's rival
        expires = datetime.now(UTC) + RIVAL_LIFETIME
        item = {
            "object_id": object_id,
            "evidence_fingerprint": review["evidence_fingerprint"],
            "attempt_sent_at": sent_at,
            "attempt_ended_at": review.get("attempt_ended_at"),
            "open_state": DISMISSED_REVIEW,
            "open_at": now,
            "expires_at": int(expires.timestamp()),
        }
        try:
            self._call(
                "put_item",
                TableName=self._table,
                Item={**self._attempt_key(object_id, sent_at), **item_values(clean(item))},
            )
        except (ClientError, LedgerError):
            e = Expression()
            undo = f"REMOVE {e.n(RESEND_APPROVED)}"
            self._conditional_update(self._object_key(object_id), e, undo, f"attribute_exists({e.n(RESEND_APPROVED)})")
            raise

    def note_silence(self, review: Mapping[str, Any], check: Mapping[str, Any], reason: str) -> bool:
        """The reconciler found a review "not filed, by silence": what it checked (`check`) is kept on the review, which
        stays NEEDS_REVIEW for a person's `docdrop resolve --silent --resend` (or the reconciler's own resend). Only as
        the review was read: a review decided or sent meanwhile is left alone."""
        e = Expression()
        read_at = e.v(str(review["status_at"]))
        condition = f"{e.n('status')} = {e.v(Status.NEEDS_REVIEW.value)} AND {e.n('status_at')} = {read_at}"
        now = now_iso()
        update = "SET " + ", ".join(e.assign({SILENCE: {**check, "checked_at": now}}))
        written = self._conditional_update(self._object_key(str(review["object_id"])), e, update, condition)
        if written:
            self._note_history(str(review["object_id"]), now, Status.NEEDS_REVIEW, reason, by="reconciler (silence)")
        return written

    def dismiss_review(self, review: Mapping[str, Any], reason: str, decided_by: str) -> bool:
        """A person closes a review without sending: DISMISSED, with who and why; only as it was read."""
        e = Expression()
        read_at = e.v(str(review["status_at"]))
        condition = (
            f"{e.n('status')} = {e.v(Status.NEEDS_REVIEW.value)} AND {e.n('status_at')} = {read_at}"
            f" AND attribute_not_exists({e.n(RESEND_APPROVED)})"
        )
        return self._set_state(
            self.item_ref(review), Status.DISMISSED, reason, e, condition, {"decided_by": decided_by}
        )

"""Object versions: what DocDrop did with one S3 object version (`pk=OBJ#<object_id>`, `sk=OBJ`), and its history
(`sk=H#<time>#<status>`). The claim, the states a claim's holder or the reconciler reaches, the fence before a POST,
and the one place a transition's expression is built (`_transition`: reason, times, expiry, the `by_open` entry)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from docdrop.ledger.expression import Expression, clean, item_values, plain
from docdrop.ledger.model import (
    _CLEARED_ON_CLAIM,
    _INDEX_KEYS,
    CLAIM_REASON,
    CLAIMABLE,
    CLAIMED_AGAIN_REASON,
    EVIDENCE_STATE,
    HISTORY_PREFIX,
    OPEN_STATE,
    POST_FENCE,
    POST_STARTED_AT,
    RESEND_APPROVED,
    RESENDABLE,
    SENT_BY_CLAIM,
    SUBMITTED_REASON,
    TAGS_EXPIRED,
    Claim,
    LedgerError,
    ObjectRef,
    Status,
    now_iso,
)
from docdrop.ledger.table import LedgerTable, ref_attributes


class ObjectStore(LedgerTable):
    """Object version items and their history: each state change is conditional, so concurrent writers never collide."""

    def get_object(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self._get(self._object_key(ref.object_id))

    def get_object_by_id(self, object_id: str) -> dict[str, Any] | None:
        return self._get(self._object_key(object_id))

    def item_ref(self, item: Mapping[str, Any]) -> ObjectRef:
        return ObjectRef(str(item["bucket"]), str(item["key"]), str(item["version_id"]))

    def history(self, object_id: str, item: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every recorded transition of an object version, oldest first: its history items, and the hot path's
        transitions from the times on the object item (`item`, when the caller has read it already)."""
        entries = [
            {k: v for k, v in entry.items() if k not in ("pk", "sk", "expires_at")}
            for entry in self._items_under(f"OBJ#{object_id}", HISTORY_PREFIX, consistent=True)
        ]
        item = item if item is not None else self.get_object_by_id(object_id) or {}
        entries += [dict(h) for h in item.get("history") or []]  # kept on the item itself before 2026-12
        seen = {(str(h.get("at")), str(h.get("status"))) for h in entries}
        first = not any(str(h.get("at")) == str(item.get("created_at")) for h in entries)
        for at, status, reason in (
            (item.get("created_at") if first else None, Status.RECEIVED.value, CLAIM_REASON),  # a first claim
            (item.get("submitted_at"), Status.SUBMITTED.value, SUBMITTED_REASON),
            (item.get("status_at"), item.get("status"), item.get("reason")),
        ):
            if at and status and (str(at), str(status)) not in seen:
                seen.add((str(at), str(status)))
                entries.append({"at": at, "status": status, "reason": reason})
        return sorted(entries, key=lambda h: str(h.get("at")))

    def _transition(
        self,
        e: Expression,
        status: Status,
        reason: str,
        now: str,
        extra: Mapping[str, Any],
        keep_first: Mapping[str, Any] | None = None,
        clauses: list[str] | None = None,
        remove: tuple[str, ...] = (),
    ) -> str:
        """The update expression that moves an object item to `status`: its reason and times, `extra`, its expiry, and
        its place in the `by_open` index. A move within IN_FLIGHT (the submission) keeps the entry: no index write.

        The expiry is the new status's own (`_object_expiry`): set, or removed, never kept from an earlier state, so an
        item that goes back to an open state can never carry a TTL. A person's approval to send again belongs to the
        state it was given in: any move out of DUPLICATE or NEEDS_REVIEW takes it off. The claim's fence before its
        POST (`POST_FENCE`, `POST_STARTED_AT`) ends with the claim: any move out of RECEIVED takes it off.
        """
        expiry = self._object_expiry(status)
        sets = e.transition(status, reason, now, {**extra, "expires_at": expiry}, keep_first) + (clauses or [])
        removed = list(dict.fromkeys([*remove, *(() if expiry is not None else ("expires_at",))]))
        if status not in RESENDABLE and RESEND_APPROVED not in removed:
            removed.append(RESEND_APPROVED)
        if status is not Status.RECEIVED:  # the fence is the claim's: it ends with it (and keeps the items small)
            removed += [a for a in (POST_FENCE, POST_STARTED_AT) if a not in removed]
        state = OPEN_STATE.get(status) or EVIDENCE_STATE.get(status)
        if state is None:
            removed += _INDEX_KEYS
        elif status is Status.SUBMITTED:
            sets += e.assign({"open_state": state}, keep_first={"open_at": now})
        else:
            sets += e.assign({"open_state": state, "open_at": now})
        return "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(map(e.n, removed)) if removed else "")

    def _note_history(self, object_id: str, at: str, status: Status, reason: str, **attrs: Any) -> None:
        """One history entry of a transition off the hot path, as an item of its own beside the object item.

        Written after the transition it records: the object item holds the state and its reason either way, so a
        history write that fails is left out rather than failing (or repeating) the transition itself.
        """
        item = {"at": at, "status": status.value, "reason": reason, **attrs, "expires_at": self._object_expiry(status)}
        try:
            self._call(
                "put_item",
                TableName=self._table,
                Item={**self._history_key(object_id, at, status.value), **item_values(clean(item))},
            )
        except (ClientError, LedgerError):
            return

    def claim(self, ref: ObjectRef, lease_seconds: float, details: Mapping[str, Any] | None = None) -> Claim:
        """Claim an object version for upload: exactly one caller wins, whatever S3, SQS or Lambda repeat.

        A new version, or one waiting for tags, retrying or blocked, can be claimed; anything else belongs to someone.
        So can a claim that lapsed before its POST started (`POST_FENCE`, no `POST_STARTED_AT`): it sent nothing.
        """
        token = secrets.token_hex(16)
        now = now_iso()
        lease_until = (datetime.now(UTC) + timedelta(seconds=lease_seconds)).isoformat(timespec="microseconds")
        e = Expression()
        attempts = e.n("attempts")
        update = self._transition(
            e,
            Status.RECEIVED,
            CLAIM_REASON,
            now,
            {
                "claim_token": token,
                "lease_until": lease_until,
                POST_FENCE: True,
                **ref_attributes(ref),
                **(details or {}),
            },
            keep_first={"created_at": now},
            clauses=[f"{attempts} = if_not_exists({attempts}, {e.v(0)}) + {e.v(1)}"],
            remove=_CLEARED_ON_CLAIM,
        )
        claimable = ", ".join(e.v(s.value) for s in sorted(CLAIMABLE))
        resendable = ", ".join(e.v(s.value) for s in RESENDABLE)
        approved = f"({e.n('status')} IN ({resendable}) AND {e.n(RESEND_APPROVED)} = {e.v(True)})"
        condition = (
            f"attribute_not_exists({e.n('pk')}) OR {e.n('status')} IN ({claimable}) OR {self._tags_expired(e)}"
            f" OR {approved} OR {self._never_posted(e, now)}"
        )
        try:
            answer = self._update_both_ways(self._object_key(ref.object_id), e.kwargs(update, condition))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise LedgerError(f"DynamoDB claim failed: {exc.response['Error']['Code']}") from exc
            old_item: Any = exc.response.get("Item")  # the item as it stood, thanks to ALL_OLD
            current = plain(old_item) or self.get_object(ref)
            if current and current.get("claim_token") == token and current.get("status") == Status.RECEIVED.value:
                # botocore re-sent our claim after DynamoDB applied it and the answer was lost: the claim is ours.
                return Claim(True, token, None)
            return Claim(False, token, current)
        previous = plain(answer.get("Attributes")) or {}
        if previous.get("status"):  # a claim that takes over an earlier state: off the hot path, so in the history
            reason = CLAIMED_AGAIN_REASON if previous["status"] == Status.RECEIVED.value else CLAIM_REASON
            self._note_history(ref.object_id, now, Status.RECEIVED, reason, previous=previous["status"])
        return Claim(
            True,
            token,
            None,
            resend_approved=previous.get(RESEND_APPROVED) is True,
            previous_status=previous.get("status"),
        )

    def record_unclaimed_state(self, ref: ObjectRef, status: Status, reason: str, **attrs: Any) -> bool:
        """REJECTED or WAITING_FOR_TAGS, decided before any claim: only over nothing, over a wait for tags, or over a
        claim that lapsed before its POST (the version was deleted, or its tags changed, since that claim).

        Returns False when another writer got there first (the object was claimed, submitted or refused already).
        """
        if status not in (Status.REJECTED, Status.WAITING_FOR_TAGS):
            raise ValueError(f"{status} is not decided before a claim")
        e = Expression()
        condition = (
            f"attribute_not_exists({e.n('pk')}) OR {e.n('status')} = {e.v(Status.WAITING_FOR_TAGS.value)}"
            f" OR {self._tags_expired(e)} OR {self._never_posted(e, now_iso())}"
        )
        return self._set_state(ref, status, reason, e, condition, attrs, remove=(TAGS_EXPIRED,))

    @staticmethod
    def _never_posted(e: Expression, now: str) -> str:
        """Condition: a claim whose lease lapsed before its POST started (`never_posted`): nothing of it was sent."""
        return (
            f"({e.n('status')} = {e.v(Status.RECEIVED.value)} AND {e.n('lease_until')} < {e.v(now)}"
            f" AND {e.n(POST_FENCE)} = {e.v(True)} AND attribute_not_exists({e.n(POST_STARTED_AT)}))"
        )

    @staticmethod
    def _tags_expired(e: Expression) -> str:
        """Condition: REJECTED only because its tags never came (a late tagging event still resumes it)."""
        return f"({e.n('status')} = {e.v(Status.REJECTED.value)} AND {e.n(TAGS_EXPIRED)} = {e.v(True)})"

    def mark_post_started(self, ref: ObjectRef, token: str) -> bool:
        """The claim's holder is about to POST: after this, a lapse of its lease is a review, never a new claim.

        False when the claim is no longer this holder's (its lease lapsed and a redelivery claimed it again): then the
        holder must not POST. Repeating it (botocore's retry of an applied write) is harmless.
        """
        e = Expression()
        condition = f"{e.n('claim_token')} = {e.v(token)} AND {e.n('status')} = {e.v(Status.RECEIVED.value)}"
        update = "SET " + ", ".join(e.assign({POST_STARTED_AT: now_iso()}))
        return self._conditional_update(self._object_key(ref.object_id), e, update, condition)

    def record_claimed_state(self, ref: ObjectRef, token: str, status: Status, reason: str, **attrs: Any) -> bool:
        """A state reached by the holder of a claim (FAILED, NEEDS_REVIEW, BLOCKED, PENDING_RETRY, REJECTED)."""
        e = Expression()
        return self._set_state(ref, status, reason, e, f"{e.n('claim_token')} = {e.v(token)}", attrs)

    def mark_interrupted(self, ref: ObjectRef, reason: str) -> bool:
        """A claim whose lease ran out (the invocation died mid-upload) → NEEDS_REVIEW: the POST may have gone out."""
        e = Expression()
        condition = f"{e.n('status')} = {e.v(Status.RECEIVED.value)} AND {e.n('lease_until')} < {e.v(now_iso())}"
        # The attempt's window, from the item as it stood: claimed at its RECEIVED time, over when the lease ran out.
        window = [
            f"{e.n('attempt_sent_at')} = if_not_exists({e.n('attempt_sent_at')}, {e.n('status_at')})",
            f"{e.n('attempt_ended_at')} = {e.n('lease_until')}",
        ]
        return self._set_state(ref, Status.NEEDS_REVIEW, reason, e, condition, {}, clauses=window)

    def _set_state(
        self,
        ref: ObjectRef,
        status: Status,
        reason: str,
        e: Expression,
        condition: str,
        attrs: Mapping[str, Any],
        remove: tuple[str, ...] = (),
        clauses: list[str] | None = None,
    ) -> bool:
        now = now_iso()
        update = self._transition(
            e,
            status,
            reason,
            now,
            {**ref_attributes(ref), **attrs},
            keep_first={"created_at": now},
            clauses=clauses,
            remove=remove,
        )
        written = self._conditional_update(self._object_key(ref.object_id), e, update, condition)
        if written:
            by = attrs.get("decided_by")
            self._note_history(ref.object_id, now, status, reason, **({"by": by} if by else {}))
        return written

    @staticmethod
    def _unrecorded_sender(e: Expression, token: str) -> str:
        """Condition: the object is still held (or given up on: SENT_BY_CLAIM) by the claim whose upload Cobalt
        accepted."""
        held = ", ".join(e.v(s.value) for s in SENT_BY_CLAIM)
        return f"({e.n('claim_token')} = {e.v(token)} AND {e.n('status')} IN ({held}))"

    def _transition_from(
        self, item: Mapping[str, Any], status: Status, reason: str, attrs: Mapping[str, Any] | None = None
    ) -> bool:
        """Move an object item read from an index to `status`, only if nobody changed it since it was read."""
        e = Expression()
        condition = (
            f"{e.n('status')} = {e.v(str(item['status']))} AND {e.n('status_at')} = {e.v(str(item['status_at']))}"
        )
        return self._set_state(self.item_ref(item), status, reason, e, condition, attrs or {})

    def mark_stale(self, item: Mapping[str, Any], reason: str) -> bool:
        """SUBMITTED with no outcome by the deadline → STALE (an outcome that comes later still joins it)."""
        return self._transition_from(item, Status.STALE, reason)

    def expire_tag_wait(self, item: Mapping[str, Any], reason: str) -> bool:
        """WAITING_FOR_TAGS past its deadline → REJECTED; the version's own tags, if they come, still resume it."""
        return self._transition_from(item, Status.REJECTED, reason, {TAGS_EXPIRED: True})

    def note_dead_lettered(self, item: Mapping[str, Any], reason: str) -> bool:
        """PENDING_RETRY whose message has used up its deliveries: it stays PENDING_RETRY (a redrive resumes it),
        and its reason says so and how to redrive."""
        return self._transition_from(item, Status.PENDING_RETRY, reason, {"dead_lettered_at": now_iso()})

    def note_dead_letter_expired(self, item: Mapping[str, Any], reason: str) -> bool:
        """PENDING_RETRY whose dead-lettered message has expired from the queue: it stays PENDING_RETRY (only a person's
        `docdrop retry` sends it now), and its reason says so."""
        return self._transition_from(item, Status.PENDING_RETRY, reason, {"dead_letter_expired_at": now_iso()})

"""The document ledger: the one DynamoDB model, and the one class that reads and writes it.

Item types (one table, keys `pk`/`sk`):
- object version  `pk=OBJ#<object_id>`  `sk=OBJ`  — what DocDrop did with one S3 object version: claim, refusal,
  submission. `status`/`status_at` feed the `by_status` index.
- Cobalt document `pk=CDOC#<document_id>` `sk=CDOC` — what Cobalt said about a document: the first terminal outcome
  (`outcome`/`outcome_at` feed the `by_outcome` index), every event received, the event ids seen, and (once the
  submission is recorded) the object it came from. Webhooks know only the document id, so they write here, in one call.
- account link    `pk=TOKEN#<reference>`   `sk=TOKEN`  — `access_token.login_required` and its history.

An object's effective status is its own until it is SUBMITTED, then the Cobalt document's outcome once one arrived.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from docdrop.ledger_expression import Expression, item_values, plain

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class Status(StrEnum):
    RECEIVED = "RECEIVED"  # claimed: the upload is under way
    WAITING_FOR_TAGS = "WAITING_FOR_TAGS"  # MRN or folder missing; the tagging event resumes it
    PENDING_RETRY = "PENDING_RETRY"  # Cobalt was unavailable before accepting anything; SQS redelivers
    SUBMITTED = "SUBMITTED"  # Cobalt accepted it; document_id known; outcome awaited
    UPLOADED = "UPLOADED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"  # refused by DocDrop before sending
    NEEDS_REVIEW = "NEEDS_REVIEW"  # may or may not be in the EMR: never sent again automatically
    STALE = "STALE"  # submitted, no outcome by the deadline
    BLOCKED = "BLOCKED"  # Cobalt said login_required: waits for a re-link, then a redrive


TERMINAL = frozenset({Status.UPLOADED, Status.FAILED, Status.REJECTED, Status.NEEDS_REVIEW, Status.STALE})
# States from which a new delivery of the object's event may claim it again (nothing was sent to Cobalt).
CLAIMABLE = frozenset({Status.WAITING_FOR_TAGS, Status.PENDING_RETRY, Status.BLOCKED})
OUTCOMES = {"document.uploaded": Status.UPLOADED, "document.upload_failed": Status.FAILED}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """One S3 object version. `object_id` names it in logs and keys without revealing the key (which may hold PHI)."""

    bucket: str
    key: str
    version_id: str

    @property
    def object_id(self) -> str:
        material = f"{self.bucket}\0{self.key}\0{self.version_id}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(material).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class Claim:
    """The result of trying to claim an object version: `won`, or the state that another writer left."""

    won: bool
    token: str
    current: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class OutcomeEvent:
    """A document outcome from a Cobalt webhook (or its event log), as the ledger keeps it."""

    event_id: str
    event_type: str
    document_id: str
    created: str
    failure_reason: str | None = None
    reasons: tuple[Mapping[str, str], ...] = ()
    job_id: str | None = None
    access_token_reference_id: str | None = None
    attempt: int | None = None
    source: str = "webhook"

    @property
    def outcome(self) -> Status:
        return OUTCOMES[self.event_type]


@dataclasses.dataclass(frozen=True)
class DocumentView:
    """Everything known about one object version or Cobalt document, joined."""

    status: str
    reason: str | None
    object_id: str | None
    bucket: str | None
    key: str | None
    version_id: str | None
    document_id: str | None
    job_id: str | None
    created_at: str | None
    updated_at: str | None
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]


class LedgerError(Exception):
    """A DynamoDB call failed: the caller must not assume the write happened."""


def _ref_attributes(ref: ObjectRef) -> dict[str, Any]:
    return {"bucket": ref.bucket, "key": ref.key, "version_id": ref.version_id, "object_id": ref.object_id}


class DocumentLedger:
    """Reads and writes the ledger table. Every state change is conditional, so concurrent writers cannot collide."""

    def __init__(self, client: DynamoDBClient, table_name: str, retention_days: int = 0) -> None:
        self._client = client
        self._table = table_name
        self._retention = timedelta(days=retention_days) if retention_days > 0 else None

    # ----- keys -------------------------------------------------------------------------------------------------
    @staticmethod
    def _object_key(object_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"OBJ#{object_id}"}, "sk": {"S": "OBJ"}}

    @staticmethod
    def _document_key(document_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"CDOC#{document_id}"}, "sk": {"S": "CDOC"}}

    @staticmethod
    def _link_key(reference_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"TOKEN#{reference_id}"}, "sk": {"S": "TOKEN"}}

    def _expiry(self, status: Status) -> int | None:
        if self._retention is None or status not in TERMINAL:
            return None
        return int((datetime.now(UTC) + self._retention).timestamp())

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._client, operation)(**kwargs)
        except ClientError:
            raise
        except Exception as exc:  # botocore connection and timeout errors: the write may not have happened
            raise LedgerError(f"DynamoDB {operation} failed: {type(exc).__name__}") from exc
        return result

    def _conditional_update(self, key: dict[str, Any], expression: Expression, update: str, condition: str) -> bool:
        """One conditional UpdateItem; False when the condition did not hold."""
        try:
            self._call("update_item", TableName=self._table, Key=key, **expression.kwargs(update, condition))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise LedgerError(f"DynamoDB update failed: {exc.response['Error']['Code']}") from exc
        return True

    # ----- object versions --------------------------------------------------------------------------------------
    def get_object(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self._get(self._object_key(ref.object_id))

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        answer = self._call("get_item", TableName=self._table, Key=key, ConsistentRead=True)
        return plain(answer.get("Item"))

    def claim(self, ref: ObjectRef, lease_seconds: float, details: Mapping[str, Any] | None = None) -> Claim:
        """Claim an object version for upload: exactly one caller wins, whatever S3, SQS or Lambda repeat.

        A new version, or one waiting for tags, retrying or blocked, can be claimed; anything else belongs to someone.
        """
        token = secrets.token_hex(16)
        now = now_iso()
        lease_until = (datetime.now(UTC) + timedelta(seconds=lease_seconds)).isoformat(timespec="microseconds")
        reason = "Claimed for upload to Cobalt"
        e = Expression()
        sets = e.transition(
            Status.RECEIVED,
            reason,
            now,
            {"claim_token": token, "lease_until": lease_until, **_ref_attributes(ref), **(details or {})},
            keep_first={"created_at": now},
        )
        attempts = e.n("attempts")
        sets.append(f"{attempts} = if_not_exists({attempts}, {e.v(0)}) + {e.v(1)}")
        claimable = ", ".join(e.v(s.value) for s in sorted(CLAIMABLE))
        condition = f"attribute_not_exists({e.n('pk')}) OR {e.n('status')} IN ({claimable})"
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=self._object_key(ref.object_id),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **e.kwargs("SET " + ", ".join(sets), condition),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise LedgerError(f"DynamoDB claim failed: {exc.response['Error']['Code']}") from exc
            old_item: Any = exc.response.get("Item")  # the item as it stood, thanks to ALL_OLD
            return Claim(False, token, plain(old_item) or self.get_object(ref))
        return Claim(True, token, None)

    def record_unclaimed_state(self, ref: ObjectRef, status: Status, reason: str, **attrs: Any) -> bool:
        """REJECTED or WAITING_FOR_TAGS, decided before any claim: only over nothing, or over a wait for tags.

        Returns False when another writer got there first (the object was claimed, submitted or refused already).
        """
        if status not in (Status.REJECTED, Status.WAITING_FOR_TAGS):
            raise ValueError(f"{status} is not decided before a claim")
        e = Expression()
        condition = f"attribute_not_exists({e.n('pk')}) OR {e.n('status')} = {e.v(Status.WAITING_FOR_TAGS.value)}"
        return self._set_state(ref, status, reason, e, condition, attrs)

    def record_claimed_state(self, ref: ObjectRef, token: str, status: Status, reason: str, **attrs: Any) -> bool:
        """A state reached by the holder of a claim (FAILED, NEEDS_REVIEW, BLOCKED, PENDING_RETRY, REJECTED)."""
        e = Expression()
        return self._set_state(ref, status, reason, e, f"{e.n('claim_token')} = {e.v(token)}", attrs)

    def mark_interrupted(self, ref: ObjectRef, reason: str) -> bool:
        """A claim whose lease ran out (the invocation died mid-upload) → NEEDS_REVIEW: the POST may have gone out."""
        e = Expression()
        condition = f"{e.n('status')} = {e.v(Status.RECEIVED.value)} AND {e.n('lease_until')} < {e.v(now_iso())}"
        return self._set_state(ref, Status.NEEDS_REVIEW, reason, e, condition, {})

    def _set_state(
        self, ref: ObjectRef, status: Status, reason: str, e: Expression, condition: str, attrs: Mapping[str, Any]
    ) -> bool:
        now = now_iso()
        sets = e.transition(
            status,
            reason,
            now,
            {"expires_at": self._expiry(status), **_ref_attributes(ref), **attrs},
            keep_first={"created_at": now},
        )
        return self._conditional_update(self._object_key(ref.object_id), e, "SET " + ", ".join(sets), condition)

    def record_submission(self, ref: ObjectRef, token: str, document_id: str, job_id: str | None = None) -> None:
        """Cobalt accepted the upload: SUBMITTED with its document id, joined to any outcome that arrived first.

        Written whatever the object's state says now (a slow invocation's lease may have run out and the object been
        marked NEEDS_REVIEW): a document id Cobalt returned is never dropped. Only the claim holder can write it.
        """
        now = now_iso()
        reason = "Accepted by Cobalt; waiting for the EMR's outcome"
        obj = Expression()
        obj_sets = obj.transition(Status.SUBMITTED, reason, now, {"document_id": document_id, "job_id": job_id})
        doc = Expression()
        doc_sets = doc.assign(
            {**_ref_attributes(ref), "document_id": document_id, "submitted_at": now},
            keep_first={"created_at": now},
        )
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": self._object_key(ref.object_id),
                            **obj.kwargs("SET " + ", ".join(obj_sets), f"{obj.n('claim_token')} = {obj.v(token)}"),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": self._document_key(document_id),
                            **doc.kwargs("SET " + ", ".join(doc_sets)),
                        }
                    },
                ],
            )
        except ClientError as exc:
            raise LedgerError(f"DynamoDB submission write failed: {exc.response['Error']['Code']}") from exc

    # ----- Cobalt outcomes (the webhook's hot path: one call) ---------------------------------------------------
    def record_outcome(self, event: OutcomeEvent) -> bool:
        """Record a document outcome in one DynamoDB call. False when this event id was recorded already.

        The first terminal outcome is kept (`if_not_exists`); every distinct event joins the history either way,
        and an outcome that arrives before its submission waits on the document's item until the submission joins it.
        """
        now = now_iso()
        reason = event.failure_reason if event.outcome is Status.FAILED else "Filed in the EMR"
        e = Expression()
        sets = e.assign(
            {"document_id": event.document_id, "updated_at": now},
            keep_first={
                "outcome": event.outcome.value,
                "outcome_reason": reason or "Cobalt reported the upload failed (no reason given)",
                "outcome_created": event.created,
                "outcome_at": now,
                "created_at": now,
                "expires_at": self._expiry(event.outcome),
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
                    "failure_reason": event.failure_reason,
                    "reasons": [dict(r) for r in event.reasons] or None,
                    "job_id": event.job_id,
                    "access_token_reference_id": event.access_token_reference_id,
                    "source": event.source,
                },
            )
        )
        return self._record_event_once(self._document_key(event.document_id), e, sets, event.event_id)

    def _record_event_once(self, key: dict[str, Any], e: Expression, sets: list[str], event_id: str) -> bool:
        """Apply `sets` and remember `event_id`, unless that event id was applied before: one conditional write."""
        ids = e.n("event_ids")
        update = "SET " + ", ".join(sets) + f" ADD {ids} {e.v({event_id})}"
        condition = f"attribute_not_exists({ids}) OR NOT contains({ids}, {e.v(event_id)})"
        return self._conditional_update(key, e, update, condition)

    def record_login_required(self, reference_id: str, event_id: str, created: str, message: str | None) -> bool:
        """`access_token.login_required` for one account link, in one call; False for a repeated event id."""
        now = now_iso()
        e = Expression()
        sets = e.assign(
            {
                "status": "LOGIN_REQUIRED",
                "reason": "Cobalt reports the EHR login behind this access token stopped working; re-link it",
                "status_at": now,
                "updated_at": now,
                "access_token_reference_id": reference_id,
            }
        )
        sets.append(e.append("history", {"at": now, "event_id": event_id, "created": created, "message": message}))
        return self._record_event_once(self._link_key(reference_id), e, sets, event_id)

    def get_account_link(self, reference_id: str) -> dict[str, Any] | None:
        return self._get(self._link_key(reference_id))

    # ----- reading ----------------------------------------------------------------------------------------------
    def get_document(self, document_id: str) -> dict[str, Any] | None:
        return self._get(self._document_key(document_id))

    def lookup(self, ref: ObjectRef) -> DocumentView | None:
        obj = self.get_object(ref)
        if obj is None:
            return None
        document = self.get_document(obj["document_id"]) if obj.get("document_id") else None
        return _view(obj, document)

    def lookup_document(self, document_id: str) -> DocumentView | None:
        document = self.get_document(document_id)
        if document is None:
            return None
        obj = self._get(self._object_key(document["object_id"])) if document.get("object_id") else None
        return _view(obj, document)

    def list_by_status(
        self, status: Status, older_than: timedelta | None = None, limit: int = 100, newest_first: bool = False
    ) -> list[DocumentView]:
        """Object versions (or, for UPLOADED and FAILED, Cobalt documents) in a status, oldest first by default."""
        outcome = status in (Status.UPLOADED, Status.FAILED)
        index, hash_attr, range_attr = (
            ("by_outcome", "outcome", "outcome_at") if outcome else ("by_status", "status", "status_at")
        )
        condition = "#h = :h"
        values: dict[str, Any] = {":h": status.value}
        if older_than is not None:
            condition += " AND #r <= :cutoff"
            values[":cutoff"] = (datetime.now(UTC) - older_than).isoformat(timespec="microseconds")
        views: list[DocumentView] = []
        names = {"#h": hash_attr, **({"#r": range_attr} if older_than else {})}
        for item in self._query(index, condition, names, values, forward=not newest_first):
            if outcome:
                view = self.lookup_document(item["document_id"])
            else:
                document = self.get_document(item["document_id"]) if item.get("document_id") else None
                view = _view(item, document)
            if view is not None and view.status == status.value:
                views.append(view)
            if len(views) >= limit:
                break
        return views

    def _query(
        self, index: str, condition: str, names: Mapping[str, str], values: Mapping[str, Any], forward: bool = True
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "ScanIndexForward": forward,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": dict(names),
            "ExpressionAttributeValues": item_values(values),
        }
        while True:
            page = self._call("query", **kwargs)
            for item in page.get("Items", []):
                found = plain(item)
                if found is not None:
                    yield found
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _view(obj: Mapping[str, Any] | None, document: Mapping[str, Any] | None) -> DocumentView:
    """Join an object version and its Cobalt document: after submission, the document's outcome is the status."""
    obj = obj or {}
    document = document or {}
    status = obj.get("status")
    reason = obj.get("reason")
    if document.get("outcome") and (
        status in (None, Status.SUBMITTED.value, Status.STALE.value, Status.NEEDS_REVIEW.value)
    ):
        status, reason = document["outcome"], document.get("outcome_reason")
    return DocumentView(
        status=str(status or Status.SUBMITTED.value),
        reason=reason,
        object_id=obj.get("object_id") or document.get("object_id"),
        bucket=obj.get("bucket") or document.get("bucket"),
        key=obj.get("key") or document.get("key"),
        version_id=obj.get("version_id") or document.get("version_id"),
        document_id=obj.get("document_id") or document.get("document_id"),
        job_id=obj.get("job_id") or None,
        created_at=obj.get("created_at") or document.get("created_at"),
        updated_at=max(filter(None, [obj.get("updated_at"), document.get("updated_at")]), default=None),
        history=list(obj.get("history", [])),
        events=list(document.get("events", [])),
    )

"""The document ledger: the one DynamoDB model, and the one class that reads and writes it.

Item types (one table, keys `pk`/`sk`):
- object version  `pk=OBJ#<object_id>`  `sk=OBJ`  — what DocDrop did with one S3 object version: claim, refusal,
  submission. While its state waits, `open_state`/`open_at` put it in the sparse `by_open` index.
- history entry   `pk=OBJ#<object_id>`  `sk=H#<time>#<status>` — one transition off the hot path (`history`).
- Cobalt document `pk=CDOC#<document_id>` `sk=CDOC` — what Cobalt said about a document: the first terminal outcome
  (`outcome_unjoined`/`outcome_at` feed the `by_unjoined_outcome` index while no object is linked), every event
  received, the event ids seen, and (once the
  submission is recorded) the object it came from. Webhooks know only the document id, so they write here, in one call.
- account link    `pk=TOKEN#<reference>`   `sk=TOKEN`  — the link's state (LINKED, LOGIN_REQUIRED), a fixed size;
  its events (`access_token.*`, upload answers, re-links) are items of their own, `sk=EVT#<event id>`, that expire.
- breaker         `pk=BREAKER#<account>`  `sk=BREAKER` — Cobalt's circuit breaker, shared by every uploader
  (`docdrop.breaker`): consecutive unavailable answers, open until, the probe's lease, a Retry-After hold.

An object's effective status is its own until it is SUBMITTED, then the Cobalt document's outcome once one arrived.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from docdrop.ledger_expression import Expression, clean, item_values, plain

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
    DUPLICATE = "DUPLICATE"  # the same file, patient and folder went out within the duplicate window: not sent
    DISMISSED = "DISMISSED"  # a review closed by a person without sending (`docdrop resolve --dismiss`)


TERMINAL = frozenset(
    {
        Status.UPLOADED,
        Status.FAILED,
        Status.REJECTED,
        Status.NEEDS_REVIEW,
        Status.STALE,
        Status.DUPLICATE,
        Status.DISMISSED,
    }
)
# A DUPLICATE or NEEDS_REVIEW a person approved for sending (`docdrop resolve`): its next event claims it, once.
RESEND_APPROVED = "resend_approved"
RESENDABLE = (Status.DUPLICATE, Status.NEEDS_REVIEW)
# States from which a new delivery of the object's event may claim it again (nothing was sent to Cobalt).
CLAIMABLE = frozenset({Status.WAITING_FOR_TAGS, Status.PENDING_RETRY, Status.BLOCKED})
# States that still wait for something; each has a deadline and an owner (the reconciler, SQS, or a person's re-link).
OPEN = frozenset({Status.RECEIVED, Status.WAITING_FOR_TAGS, Status.PENDING_RETRY, Status.SUBMITTED, Status.BLOCKED})
# States an object may be in while (or after) its claim's POST was out: still RECEIVED, or given up on when its lease
# lapsed (NEEDS_REVIEW), even by a person's dismissal (DISMISSED). A document id Cobalt returned for that claim is
# recorded over any of them, however it reaches the ledger (`record_submission`, `record_late_submission`, a join).
SENT_BY_CLAIM = (Status.RECEIVED, Status.NEEDS_REVIEW, Status.DISMISSED)
# A REJECTED version with this flag was refused only because its tags never came: its tags, if they come, resume it.
TAGS_EXPIRED = "tags_expired"
IN_CHART = "in_chart"  # on a fingerprint: the version that may be in the chart, kept past a take-over sent anyway
# On a Cobalt document: its outcome is not yet joined to an object (feeds the sparse `by_unjoined_outcome` index).
UNJOINED = "outcome_unjoined"
# Its value for a submission Cobalt accepted whose own ledger write failed (see `remember_submission`).
UNRECORDED = "UNRECORDED"
CLAIM_REASON = "Claimed for upload to Cobalt"
SUBMITTED_REASON = "Accepted by Cobalt; waiting for the EMR's outcome"
INTERRUPTED_REASON = (
    "The upload was interrupted after its claim: it may or may not be in the EMR; check the chart, then resolve it"
)
# A claim's fence before its POST: the claim sets POST_FENCE, and its holder writes POST_STARTED_AT (conditional on its
# claim token) before its first POST. A lapsed claim with the fence and no start never sent anything: it is claimed
# again, not reviewed; once the start is written, no later claim can take it, so a slow holder and a new one never
# both POST. A claim of an older deploy (no fence) may have sent: its lapse is a review, as it always was.
# On a review: what the reconciler checked when it found the attempt "not filed, by silence" (docdrop.reviews.silent):
# the window, the event log's first day and pages read, and when. A claim takes it off; `RESENT_BY_SILENCE` stays, so
# the reconciler resends an object by silence once, ever (a person may again).
SILENCE = "silence"
RESENT_BY_SILENCE = "resent_by_silence"
POST_FENCE = "post_fence"
POST_STARTED_AT = "post_started_at"
CLAIMED_AGAIN_REASON = "Claimed again: the last claim lapsed before its POST started, so nothing was sent"
# What a claim takes off an item it resumes: a refusal's expiry and flag, a dead-letter note, and what the last attempt
# left (its window, Cobalt's answer, its next retry): a new attempt starts clean, and the item keeps its first size
# (only `retry_attempts`, a count, stays: how often Cobalt was unavailable for it).
_CLEARED_ON_CLAIM = (
    TAGS_EXPIRED,
    "dead_lettered_at",
    "dead_letter_expired_at",
    "expires_at",
    RESEND_APPROVED,
    "attempt_sent_at",
    "attempt_ended_at",
    "review_kind",
    "cobalt_status",
    "cobalt_error",
    "missing_tags",
    "duplicate_of",
    "next_attempt_at",
    "decided_by",
    POST_STARTED_AT,
    SILENCE,
)
OUTCOMES = {"document.uploaded": Status.UPLOADED, "document.upload_failed": Status.FAILED}
# The sparse `by_open` index (KEYS_ONLY): an object item is in it only while its state waits for something or someone,
# under `open_state` (this map's value) since `open_at`. RECEIVED and SUBMITTED share one entry, so a submission changes
# no index key and writes no index; a settled object (UPLOADED, FAILED, REJECTED...) is in no index at all.
IN_FLIGHT = "IN_FLIGHT"
OPEN_STATE = {
    Status.RECEIVED: IN_FLIGHT,
    Status.SUBMITTED: IN_FLIGHT,
    Status.WAITING_FOR_TAGS: Status.WAITING_FOR_TAGS.value,
    Status.PENDING_RETRY: Status.PENDING_RETRY.value,
    Status.BLOCKED: Status.BLOCKED.value,
    Status.NEEDS_REVIEW: Status.NEEDS_REVIEW.value,  # waits for a person
    Status.STALE: Status.STALE.value,  # waits for a person, or a late outcome
}
_INDEX_KEYS = ("open_state", "open_at")
# A review a person dismissed is settled, but its attempt may still be what the EMR files late: it stays listed in
# `by_open` under this entry (never counted as open), so that the review match counts it as a rival (docdrop.reviews).
DISMISSED_REVIEW = "DISMISSED_REVIEW"
EVIDENCE_STATE = {Status.DISMISSED: DISMISSED_REVIEW}
# A review's attempt that a person decided to send again keeps an item of its own (sk ATTEMPT#<sent at>), listed as a
# dismissed review is and for as long: the document that attempt may have sent stays its, never another review's.
ATTEMPT_PREFIX = "ATTEMPT#"
# How long a dismissed review, or a reviewed attempt sent again, stays a rival (docdrop.reviews reads it too).
RIVAL_LIFETIME = timedelta(days=30)
# An account link keeps its few fields on one item; each of its events is an item of its own under the link's key,
# `sk = EVT#<event id>` (a repeated event is found by its key), kept this long, with Cobalt's message cut short.
LINK_EVENT_PREFIX = "EVT#"
LINK_EVENT_RETENTION = timedelta(days=90)
MAX_LINK_MESSAGE = 500
# Cobalt's refusal as an object keeps it (the document keeps it whole).
MAX_OBJECT_REASON = 160
# History: the hot path's transitions (the first claim, the submission, the joined outcome) keep only their times on
# the object item (`created_at`, `submitted_at`, `status_at`); every other transition also writes one small item of its
# own (`sk = H#<time>#<status>`), so the object item stays the same small size whatever happened to it.
HISTORY_PREFIX = "H#"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def parse_moment(value: Any) -> datetime | None:
    """An ISO 8601 time as the ledger, Cobalt (`Z` or an offset) or Secrets Manager give it; None if unreadable."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
    resend_approved: bool = False  # the claimed item was a DUPLICATE a person approved for sending
    previous_status: str | None = None  # what the claim took over (None: a new version)


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
    evidence_fingerprint: str | None = None  # keyed patient/folder fingerprint (docdrop.evidence), for reviews

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
    account: str | None = None  # the Cobalt account it went to (docdrop.accounts)


class JoinResult(StrEnum):
    JOINED = "joined"  # this call moved the object to its outcome
    ALREADY = "already"  # the object had its outcome already (a replayed stream record, or the other joiner)
    NOT_OPEN = "not_open"  # the object is in no state an outcome closes (e.g. NEEDS_REVIEW): left as it is


class LedgerError(Exception):
    """A DynamoDB call failed: the caller must not assume the write happened."""


class LedgerRefusedItem(LedgerError):
    """DynamoDB refused the item itself (ValidationException): trying again can never succeed."""


def _failure(exc: ClientError, what: str) -> LedgerError:
    """The error a failed call becomes: refused for good (the item itself is invalid), or possibly transient."""
    code = exc.response["Error"]["Code"]
    if code == "ValidationException":
        return LedgerRefusedItem(f"DynamoDB refused the {what} (ValidationException)")
    return LedgerError(f"DynamoDB {what} failed: {code}")


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
    def _history_key(object_id: str, at: str, status: str) -> dict[str, Any]:
        return {"pk": {"S": f"OBJ#{object_id}"}, "sk": {"S": f"{HISTORY_PREFIX}{at}#{status}"}}

    @staticmethod
    def _attempt_key(object_id: str, sent_at: str) -> dict[str, Any]:
        return {"pk": {"S": f"OBJ#{object_id}"}, "sk": {"S": f"{ATTEMPT_PREFIX}{sent_at}"}}

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

    def history(self, object_id: str, item: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every recorded transition of an object version, oldest first: its history items, and the hot path's
        transitions from the times on the object item (`item`, when the caller has read it already)."""
        e = Expression()
        query = {
            "TableName": self._table,
            "KeyConditionExpression": f"{e.n('pk')} = {e.v(f'OBJ#{object_id}')} AND begins_with({e.n('sk')}, "
            f"{e.v(HISTORY_PREFIX)})",
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
            "ConsistentRead": True,
        }
        entries = [
            {k: v for k, v in entry.items() if k not in ("pk", "sk", "expires_at")}
            for entry in self._items("query", query)
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

    @staticmethod
    def _link_key(reference_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"TOKEN#{reference_id}"}, "sk": {"S": "TOKEN"}}

    def _object_expiry(self, status: Status) -> int | None:
        """Retention never makes DocDrop forget whether a version was sent: only a version it refused before sending
        (REJECTED) may expire. Everything sent, or maybe sent, keeps its object item for ever."""
        if self._retention is None or status is not Status.REJECTED:
            return None
        return int((datetime.now(UTC) + self._retention).timestamp())

    def _document_expiry(self) -> int | None:
        """A Cobalt document's events and outcome may expire; its object keeps the outcome and Cobalt's reason."""
        if self._retention is None:
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
            raise _failure(exc, "update") from exc
        return True

    # ----- object versions --------------------------------------------------------------------------------------
    def get_object(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self._get(self._object_key(ref.object_id))

    def _get(self, key: dict[str, Any], consistent: bool = True) -> dict[str, Any] | None:
        answer = self._call("get_item", TableName=self._table, Key=key, ConsistentRead=consistent)
        return plain(answer.get("Item"))

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
                **_ref_attributes(ref),
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

    def _update_both_ways(self, key: dict[str, Any], expression: Mapping[str, Any]) -> dict[str, Any]:
        """A conditional UpdateItem that returns what it changed (`UPDATED_OLD`) or, when its condition fails, raises
        with the whole item as it stood (`ALL_OLD`): who holds it, or whether a retried write was already applied."""
        return self._call(
            "update_item",
            TableName=self._table,
            Key=key,
            ReturnValues="UPDATED_OLD",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **expression,
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
            {**_ref_attributes(ref), **attrs},
            keep_first={"created_at": now},
            clauses=clauses,
            remove=remove,
        )
        written = self._conditional_update(self._object_key(ref.object_id), e, update, condition)
        if written:
            by = attrs.get("decided_by")
            self._note_history(ref.object_id, now, status, reason, **({"by": by} if by else {}))
        return written

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
                raise _failure(exc, "submission write") from exc
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

    # ----- Cobalt outcomes (the webhook's hot path: one call) ---------------------------------------------------
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
            raise _failure(exc, "update") from exc
        return True

    def record_login_required(self, reference_id: str, event_id: str, created: str, message: str | None) -> bool:
        """`access_token.login_required` for one account link, in one call; False for a repeated event id."""
        now = now_iso()
        link = {
            "status": "LOGIN_REQUIRED",
            "reason": "Cobalt reports the EHR login behind this access token stopped working; re-link it",
            "status_at": now,
            "updated_at": now,
            "access_token_reference_id": reference_id,
        }
        return self._record_link_event(reference_id, event_id, link, {"created": created, "message": message})

    def record_password_warning(self, reference_id: str, event_id: str, created: str, message: str | None) -> bool:
        """`access_token.password_change_warning`: the link's latest warning (shown by `docdrop accounts`); the link
        still works, so its status does not change. False for a repeated event id."""
        now = now_iso()
        link = {"updated_at": now, "access_token_reference_id": reference_id, "password_warning_at": now}
        entry = {"created": created, "message": message, "warning": True}
        return self._record_link_event(reference_id, event_id, link, entry)

    def _record_link_event(
        self, reference_id: str, event_id: str, link: Mapping[str, Any], entry: Mapping[str, Any]
    ) -> bool:
        """One account-link event: the link item's few fields, and the event as a small item of its own (`EVT#<id>`,
        which expires), in one transaction of two UpdateItems; False when that event id was recorded before.

        The link item never grows: a weekend of login_required answers adds items that expire, never list entries to
        an item that DynamoDB would refuse past 400 KB (and the lists older items kept are dropped here).
        """
        now = now_iso()
        e = Expression()
        update = "SET " + ", ".join(e.assign(link)) + " REMOVE " + ", ".join(map(e.n, ("history", "event_ids")))
        v = Expression()
        message = entry.get("message")
        values = {
            **entry,
            "message": str(message)[:MAX_LINK_MESSAGE] if message else None,
            "at": now,
            "event_id": event_id,
            "expires_at": int((datetime.now(UTC) + LINK_EVENT_RETENTION).timestamp()),
        }
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {"Update": {"TableName": self._table, "Key": self._link_key(reference_id), **e.kwargs(update)}},
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {
                                "pk": {"S": f"TOKEN#{reference_id}"},
                                "sk": {"S": f"{LINK_EVENT_PREFIX}{event_id}"},
                            },
                            **v.kwargs("SET " + ", ".join(v.assign(values)), f"attribute_not_exists({v.n('pk')})"),
                        }
                    },
                ],
            )
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if exc.response["Error"]["Code"] == "TransactionCanceledException" and reasons[1:2] == [
                "ConditionalCheckFailed"
            ]:
                return False
            raise _failure(exc, "account link write") from exc
        return True

    def link_events(self, reference_id: str) -> list[dict[str, Any]]:
        """The account link's recorded events (login_required, warnings, re-links) still kept, oldest first."""
        e = Expression()
        query = {
            "TableName": self._table,
            "KeyConditionExpression": f"{e.n('pk')} = {e.v(f'TOKEN#{reference_id}')} AND begins_with({e.n('sk')}, "
            f"{e.v(LINK_EVENT_PREFIX)})",
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
        }
        found = [{k: v for k, v in i.items() if k not in ("pk", "sk")} for i in self._items("query", query)]
        return sorted(found, key=lambda i: str(i.get("at")))

    def mark_link_resent(self, reference_id: str, relinked_at: str) -> None:
        """The account's BLOCKED objects from before `relinked_at` were sent again: not again for this re-link."""
        e = Expression()
        sets = e.assign({"resent_at": relinked_at})
        self._call(
            "update_item", TableName=self._table, Key=self._link_key(reference_id), **e.kwargs("SET " + ", ".join(sets))
        )

    def get_account_link(self, reference_id: str, consistent: bool = True) -> dict[str, Any] | None:
        """The account link's item; `consistent=False` for a cache's refresh (half the read units, a second behind)."""
        return self._get(self._link_key(reference_id), consistent)

    def record_relink(self, reference_id: str, by: str) -> None:
        """A person says the account's EHR link works again (`docdrop accounts relink`), or a call through it passed."""
        now = now_iso()
        link = {
            "status": "LINKED",
            "reason": f"Re-linked ({by})",
            "status_at": now,
            "updated_at": now,
            "access_token_reference_id": reference_id,
        }
        self._record_link_event(reference_id, f"relink:{now}", link, {"relinked_by": by})

    # ----- reading ----------------------------------------------------------------------------------------------
    def get_document(self, document_id: str) -> dict[str, Any] | None:
        return self._get(self._document_key(document_id))

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

    def list_by_status(
        self, status: Status, older_than: timedelta | None = None, limit: int = 100, newest_first: bool = False
    ) -> list[DocumentView]:
        """Object versions in a status, oldest first by default, without their history (`history` reads it).

        An object's own item carries its status once its outcome is joined, so no other item is read per row.
        """
        before = datetime.now(UTC) - older_than if older_than is not None else None
        items = self.open_items(status, before=before, limit=limit, newest_first=newest_first)
        return [object_view(item) for item in items]

    def open_items(
        self,
        status: Status,
        before: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        since: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Object items in `status` whose `status_at` is at or after `since` and at or before `before`, oldest first.

        A state of the `by_open` index is read from it, so the cost grows with what is open, never with history. A
        settled state (UPLOADED, FAILED, REJECTED, DUPLICATE, DISMISSED) is in no index: it is read by a Scan of the
        table, whose cost grows with the table (an operator's listing, never a function's sweep).
        """
        state = OPEN_STATE.get(status)
        if state is not None and state != IN_FLIGHT:  # an entry's `open_at` is its `status_at`: the index orders rows
            keys = self._open_keys(state, before, since, newest_first, limit)
            return iter([i for i in self._batch_items(keys) if i.get("status") == status.value])
        # RECEIVED and SUBMITTED share one entry, opened at the claim: read it whole. A settled state is scanned for.
        found = self.in_flight_items() if state == IN_FLIGHT else self._scanned(status)
        items = items_within(found, status, before, since)
        items = items[::-1] if newest_first else items
        return iter(items[:limit] if limit is not None else items)

    def dismissed_reviews(self, since: datetime) -> list[dict[str, Any]]:
        """Reviews a person dismissed, and reviewed attempts a person sent again, since `since`: settled, but rivals for
        a document their attempt may have sent."""
        keys = self._open_keys(DISMISSED_REVIEW, None, since, False, None)
        return [
            i
            for i in self._batch_items(keys)
            if i.get("status") == Status.DISMISSED.value or str(i.get("sk", "")).startswith(ATTEMPT_PREFIX)
        ]

    def in_flight_items(self) -> list[dict[str, Any]]:
        """Every object item RECEIVED or SUBMITTED: the in-flight entry of `by_open`, read whole. A caller that needs
        both statuses reads it once and picks with `items_within`."""
        return self._batch_items(self._open_keys(IN_FLIGHT, None, None, False, None))

    def _open_keys(
        self, state: str, before: datetime | None, since: datetime | None, newest_first: bool, limit: int | None
    ) -> list[dict[str, Any]]:
        """The table keys under one `open_state` of the `by_open` index (KEYS_ONLY), in `open_at` order."""
        entries = self._index_items("by_open", "open_state", "open_at", state, before, limit, newest_first, since)
        return [{"pk": {"S": str(i["pk"])}, "sk": {"S": str(i["sk"])}} for i in entries]

    def _batch_items(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items of `keys` (BatchGetItem, 100 at a time, consistent), in the order of `keys`."""
        found: dict[tuple[str, str], dict[str, Any]] = {}  # by pk and sk: an attempt item shares its object's pk
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self._table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while request:
                answer = self._call("batch_get_item", RequestItems=request)
                for raw in answer.get("Responses", {}).get(self._table, []):
                    found[(raw["pk"]["S"], raw["sk"]["S"])] = plain(raw) or {}
                request = answer.get("UnprocessedKeys") or {}
        wanted = [(k["pk"]["S"], k["sk"]["S"]) for k in keys]
        return [found[k] for k in wanted if k in found]

    def _scanned(self, status: Status) -> Iterator[dict[str, Any]]:
        """Object items in a settled `status`, by a Scan of the whole table (see `open_items`)."""
        e = Expression()
        return self._scan(e, f"{e.n('sk')} = {e.v('OBJ')} AND {e.n('status')} = {e.v(status.value)}")

    def status_counts(self) -> dict[str, int]:
        """How many object items are in each status, by one Scan of the table (benchmarks and tests; not a sweep)."""
        e = Expression()
        found = self._scan(e, f"{e.n('sk')} = {e.v('OBJ')}", projection=e.n("status"))
        return dict(Counter(str(item.get("status")) for item in found))

    def _scan(self, e: Expression, condition: str, projection: str | None = None) -> Iterator[dict[str, Any]]:
        """Every item of the table that `condition` (built with `e`) keeps: a Scan, page by page."""
        scan = {
            "TableName": self._table,
            "FilterExpression": condition,
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
            **({"ProjectionExpression": projection} if projection else {}),
        }
        return self._items("scan", scan)

    def _pages(self, operation: str, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every page of a Query or Scan, following `LastEvaluatedKey`."""
        request = dict(request)
        while True:
            page = self._call(operation, **request)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _items(self, operation: str, request: Mapping[str, Any], limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The items a Query or Scan returns, page by page; with `limit`, no more than it."""
        returned = 0
        for page in self._pages(operation, request):
            for raw in page.get("Items", []):
                found = plain(raw)
                if found is not None:
                    yield found
                    returned += 1
                    if limit is not None and returned >= limit:
                        return

    def index_open_items(self, start: Mapping[str, str] | None, limit: int = 500) -> tuple[int, dict[str, str] | None]:
        """Put open object items written before the `by_open` index existed into it: one Scan page (up to `limit` items
        read) from `start`. Returns how many were indexed and where to go on (None: the table is done). Each item only
        as it was read, so a transition meanwhile is never overwritten."""
        e = Expression()
        states = ", ".join(e.v(s.value) for s in OPEN_STATE)
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Limit": limit,
            "FilterExpression": f"{e.n('sk')} = {e.v('OBJ')} AND attribute_not_exists({e.n('open_state')})"
            f" AND {e.n('status')} IN ({states})",
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
        }
        if start:
            kwargs["ExclusiveStartKey"] = {k: {"S": v} for k, v in start.items()}
        page = self._call("scan", **kwargs)
        indexed = 0
        for item in filter(None, map(plain, page.get("Items", []))):
            u = Expression()
            sets = u.assign({"open_state": OPEN_STATE[Status(item["status"])], "open_at": str(item["status_at"])})
            condition = (
                f"{u.n('status')} = {u.v(item['status'])} AND {u.n('status_at')} = {u.v(item['status_at'])}"
                f" AND attribute_not_exists({u.n('open_state')})"
            )
            indexed += self._conditional_update(
                {"pk": {"S": str(item["pk"])}, "sk": {"S": "OBJ"}}, u, "SET " + ", ".join(sets), condition
            )
        last = page.get("LastEvaluatedKey")
        return indexed, ({k: str(v["S"]) for k, v in last.items()} if last else None)

    def ever_in(self, status: Status) -> set[str]:
        """The object ids with a history item of `status` (a transition off the hot path), by one Scan of the table:
        for benchmarks and audits, never a function's sweep."""
        e = Expression()
        condition = f"begins_with({e.n('sk')}, {e.v(HISTORY_PREFIX)}) AND {e.n('status')} = {e.v(status.value)}"
        return {str(item["pk"]).removeprefix("OBJ#") for item in self._scan(e, condition, projection=e.n("pk"))}

    def unjoined_outcomes(self, outcome: Status, before: datetime) -> Iterator[dict[str, Any]]:
        """Cobalt documents with an `outcome` not yet joined to an object, recorded at or before `before`."""
        return self._index_items("by_unjoined_outcome", UNJOINED, "outcome_at", outcome.value, before, None, False)

    def unjoined_documents(self, before: datetime) -> Iterator[dict[str, Any]]:
        """Cobalt documents with an outcome, UPLOADED or FAILED, not yet joined to an object (`unjoined_outcomes`)."""
        for outcome in (Status.UPLOADED, Status.FAILED):
            yield from self.unjoined_outcomes(outcome, before)

    def count_open(self, statuses: Iterable[Status]) -> dict[Status, tuple[int, str | None]]:
        """How many object items are in each open status and the `status_at` of the oldest: cost grows with what is
        open only (a settled status is counted by `status_counts`). RECEIVED and SUBMITTED share the in-flight entry,
        which is read once for both."""
        counts: dict[Status, tuple[int, str | None]] = {}
        in_flight: list[dict[str, Any]] | None = None
        for status in statuses:
            state = OPEN_STATE.get(status)
            if state is None:
                raise ValueError(f"{status} is not an open state: count it with status_counts()")
            if state == IN_FLIGHT:
                if in_flight is None:
                    in_flight = self.in_flight_items()
                times = sorted(str(i.get("status_at") or "") for i in in_flight if i.get("status") == status.value)
                counts[status] = (len(times), (times[0] or None) if times else None)
                continue
            # The oldest entry's `open_at` is its item's `status_at`: the keys-only index says it, no item is read.
            oldest = next(self._index_items("by_open", "open_state", "open_at", state, None, 1, False, None), None)
            if oldest is None:
                counts[status] = (0, None)
                continue
            query = {**self._index_query("by_open", "open_state", "open_at", state, None, True), "Select": "COUNT"}
            count = sum(int(page.get("Count", 0)) for page in self._pages("query", query))
            counts[status] = (count, str(oldest.get("open_at") or "") or None)
        return counts

    def get_documents(self, document_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Cobalt document items by id (BatchGetItem, 100 at a time); ids without an item are left out."""
        keys = [self._document_key(i) for i in dict.fromkeys(document_ids)]
        return {str(item.get("document_id")): item for item in self._batch_items(keys)}

    def _index_query(
        self,
        index: str,
        hash_attr: str,
        range_attr: str,
        value: str,
        before: datetime | None,
        forward: bool,
        since: datetime | None = None,
    ) -> dict[str, Any]:
        e = Expression()
        condition = f"{e.n(hash_attr)} = {e.v(value)}"
        low = e.v(since.isoformat(timespec="microseconds")) if since is not None else None
        high = e.v(before.isoformat(timespec="microseconds")) if before is not None else None
        if low and high:
            condition += f" AND {e.n(range_attr)} BETWEEN {low} AND {high}"
        elif high:
            condition += f" AND {e.n(range_attr)} <= {high}"
        elif low:
            condition += f" AND {e.n(range_attr)} >= {low}"
        return {
            "TableName": self._table,
            "IndexName": index,
            "ScanIndexForward": forward,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
        }

    def _index_items(
        self,
        index: str,
        hash_attr: str,
        range_attr: str,
        value: str,
        before: datetime | None,
        limit: int | None,
        newest_first: bool,
        since: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items of one index partition, page by page; with `limit`, pages of that size and no more rows than it."""
        query = self._index_query(index, hash_attr, range_attr, value, before, not newest_first, since)
        if limit is not None:
            query["Limit"] = limit
        return self._items("query", query, limit)

    # ----- closing open loops (the outcome joiner and the reconciler) --------------------------------------------
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

    @staticmethod
    def _unrecorded_sender(e: Expression, token: str) -> str:
        """Condition: the object is still held (or given up on: SENT_BY_CLAIM) by the claim whose upload Cobalt
        accepted."""
        held = ", ".join(e.v(s.value) for s in SENT_BY_CLAIM)
        return f"({e.n('claim_token')} = {e.v(token)} AND {e.n('status')} IN ({held}))"

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

    def remember_submission(self, ref: ObjectRef, token: str, document_id: str, job_id: str | None) -> bool:
        """Cobalt accepted the upload but the submission could not be recorded: keep the document id durably anyway,
        on the Cobalt document's own item, with the claim that sent it, in the `by_unjoined_outcome` index under
        UNRECORDED, so an outcome joins it and the reconciler records the submission (`record_late_submission`).
        Like `link_document`, only over a document no other object names: False for that conflict."""
        now = now_iso()
        e = Expression()
        sets = e.assign(
            {**_ref_attributes(ref), "document_id": document_id, "claim_token": token, "job_id": job_id},
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

    def item_ref(self, item: Mapping[str, Any]) -> ObjectRef:
        return ObjectRef(str(item["bucket"]), str(item["key"]), str(item["version_id"]))

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

    # ----- identical documents (same file, patient and folder) -------------------------------------------------
    def hold_fingerprint(
        self,
        fingerprint: str,
        ref: ObjectRef,
        window: timedelta,
        replacing: Mapping[str, Any] | None = None,
        in_chart: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Hold a keyed fingerprint of (file, patient, folder) for this object version for `window`.

        Returns None when it is held for this version now; else the version that holds it (it sent the same within the
        window). With `replacing` (the holder as a caller read it: one that was never filed, a producer's
        allow_duplicate, a person's resend), it takes the fingerprint over from that holder only, as it was read. Always
        one conditional UpdateItem, so two identical versions racing each other, even past a holder they both may
        replace, cannot both pass.

        `in_chart` (a take-over sent anyway past a version that may be in the chart: its bucket, key, version, object id
        and `held_at`) is kept as the item's `in_chart`, so that when this version is refused, the next identical one
        still finds the copy in the chart (`chart_copy`) instead of a refused holder it may replace. It is never
        removed: the holder's own later holds (a retry after BLOCKED) keep it, and one from before the window is
        ignored by whoever reads it.
        """
        now = datetime.now(UTC)
        e = Expression()
        sets = e.assign(
            {
                **_ref_attributes(ref),
                "held_at": now.isoformat(timespec="microseconds"),
                "expires_at": int(
                    (now + window + timedelta(days=1)).timestamp()  # useless after the window (the kept copy's too)
                ),
                **({IN_CHART: dict(in_chart)} if in_chart else {}),
            }
        )
        free = f"attribute_not_exists({e.n('pk')}) OR {e.n('object_id')} = {e.v(ref.object_id)}"
        if replacing is None:  # (placeholders only for what the expression uses: DynamoDB refuses unused ones)
            condition = f"{free} OR {e.n('held_at')} < {e.v((now - window).isoformat(timespec='microseconds'))}"
        else:
            holder, held_at = e.v(str(replacing.get("object_id"))), e.v(str(replacing.get("held_at")))
            condition = f"{free} OR ({e.n('object_id')} = {holder} AND {e.n('held_at')} = {held_at})"
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key={"pk": {"S": f"FP#{fingerprint}"}, "sk": {"S": "FP"}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **e.kwargs("SET " + ", ".join(sets), condition),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise _failure(exc, "fingerprint write") from exc
            old: Any = exc.response.get("Item")
            return plain(old) or {}
        return None

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
        doc_sets = doc.assign({**_ref_attributes(ref), "document_id": str(document["document_id"]), "updated_at": now})
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
            raise _failure(exc, "review link") from exc
        self._note_history(ref.object_id, now, outcome, reason, by=decided_by)
        return True

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

    def get_object_by_id(self, object_id: str) -> dict[str, Any] | None:
        return self._get(self._object_key(object_id))

    # ----- one reconciler at a time, and where it stopped -------------------------------------------------------
    def acquire_run_lease(self, name: str, owner: str, seconds: float) -> bool:
        """A lease on a named job (e.g. the reconciler): True for exactly one owner until it expires or is released."""
        now = datetime.now(UTC)
        e = Expression()
        sets = e.assign(
            {"owner": owner, "lease_until": (now + timedelta(seconds=seconds)).isoformat(timespec="microseconds")}
        )
        condition = (
            f"attribute_not_exists({e.n('pk')}) OR {e.n('lease_until')} < {e.v(now.isoformat(timespec='microseconds'))}"
            f" OR {e.n('owner')} = {e.v(owner)}"
        )
        return self._conditional_update(self._run_key(name), e, "SET " + ", ".join(sets), condition)

    def release_run_lease(self, name: str, owner: str, state: Mapping[str, Any]) -> None:
        """End the lease and keep `state` (where the job stopped) for the next run."""
        e = Expression()
        sets = e.assign({"state": dict(state), "lease_until": "", "updated_at": now_iso()})
        self._conditional_update(self._run_key(name), e, "SET " + ", ".join(sets), f"{e.n('owner')} = {e.v(owner)}")

    def checkpoint_run(self, name: str, owner: str, state: Mapping[str, Any], seconds: float) -> bool:
        """Keep where a leased job has got to and extend its lease; False when the lease is no longer `owner`'s."""
        e = Expression()
        until = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="microseconds")
        sets = e.assign({"state": dict(state), "lease_until": until, "updated_at": now_iso()})
        return self._conditional_update(
            self._run_key(name), e, "SET " + ", ".join(sets), f"{e.n('owner')} = {e.v(owner)}"
        )

    def run_state(self, name: str) -> dict[str, Any]:
        item = self._get(self._run_key(name)) or {}
        state = item.get("state")
        return dict(state) if isinstance(state, Mapping) else {}

    # ----- Cobalt's circuit breaker (docdrop.breaker) -------------------------------------------------------------
    @staticmethod
    def _breaker_key(account: str) -> dict[str, Any]:
        return {"pk": {"S": f"BREAKER#{account}"}, "sk": {"S": "BREAKER"}}

    def breaker_state(self, account: str) -> dict[str, Any]:
        """The breaker as every uploader shares it, read eventually consistent (half the read units): it is advice, and
        the one probe after a cool-down is taken by a conditional write, not by this read."""
        return self._get(self._breaker_key(account), consistent=False) or {}

    def record_breaker_failure(
        self,
        account: str,
        now: datetime,
        *,
        window: timedelta,
        threshold: int,
        cool_down: timedelta,
        hold_until: datetime | None,
        probe: bool = False,
    ) -> dict[str, Any]:
        """One unavailable answer: counted (afresh when the last was longer than `window` ago); at `threshold` the
        breaker opens for `cool_down`. Small updates whose races are harmless: a count off by one opens it a call
        later or sooner. The `probe`'s own answer ends its lease, so the next caller may find out."""
        moment = now.isoformat(timespec="microseconds")
        noted = {"last_failure_at": moment, **({"probe_until": moment} if probe else {})}
        if hold_until is not None:
            noted["hold_until"] = hold_until.isoformat(timespec="microseconds")
        e = Expression()
        failures = e.n("failures")
        sets = [f"{failures} = if_not_exists({failures}, {e.v(0)}) + {e.v(1)}", *e.assign(noted)]
        stale = (now - window).isoformat(timespec="microseconds")
        recent = f"attribute_not_exists({e.n('last_failure_at')}) OR {e.n('last_failure_at')} >= {e.v(stale)}"
        try:
            state = self._update_breaker(account, e, "SET " + ", ".join(sets), recent)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise _failure(exc, "update") from exc
            e = Expression()  # the last failure is older than the window: count from one again
            state = self._update_breaker(account, e, "SET " + ", ".join(e.assign({"failures": 1, **noted})))
        if int(state.get("failures") or 0) >= threshold:
            e = Expression()
            sets = e.assign(
                {
                    "open_until": (now + cool_down).isoformat(timespec="microseconds"),
                    "cool_down_seconds": Decimal(str(cool_down.total_seconds())),
                },
                keep_first={"opened_at": moment},
            )
            state = self._update_breaker(account, e, "SET " + ", ".join(sets)) or state
        return state

    def _update_breaker(self, account: str, e: Expression, update: str, condition: str | None = None) -> dict[str, Any]:
        """One UpdateItem of the breaker item; the item as it now stands."""
        answer = self._call(
            "update_item",
            TableName=self._table,
            Key=self._breaker_key(account),
            ReturnValues="ALL_NEW",
            **e.kwargs(update, condition),
        )
        return plain(answer.get("Attributes")) or {}

    def take_breaker_probe(self, account: str, now: datetime, lease_until: datetime) -> bool:
        """The one probe after a cool-down: True for exactly one caller until `lease_until`."""
        e = Expression()
        sets = e.assign({"probe_until": lease_until.isoformat(timespec="microseconds")})
        condition = (
            f"attribute_not_exists({e.n('probe_until')}) OR "
            f"{e.n('probe_until')} < {e.v(now.isoformat(timespec='microseconds'))}"
        )
        return self._conditional_update(self._breaker_key(account), e, "SET " + ", ".join(sets), condition)

    def close_breaker(self, account: str, warm_until: datetime | None = None) -> dict[str, Any]:
        """Cobalt answered: the breaker forgets its failures and its probe (an UpdateItem: the uploader may not delete
        items), and Cobalt is known to answer until `warm_until`. The item as it now stands."""
        e = Expression()
        names = (
            "failures",
            "last_failure_at",
            "open_until",
            "opened_at",
            "probe_until",
            "hold_until",
            "cool_down_seconds",
        )
        update = "REMOVE " + ", ".join(e.n(name) for name in names)
        if warm_until is not None:
            update = (
                "SET "
                + ", ".join(e.assign({"warm_until": warm_until.isoformat(timespec="microseconds")}))
                + " "
                + update
            )
        return self._update_breaker(account, e, update)

    @staticmethod
    def _run_key(name: str) -> dict[str, Any]:
        return {"pk": {"S": f"RUN#{name}"}, "sk": {"S": "RUN"}}


def _joined_reason(outcome: Status, said: str, document: Mapping[str, Any]) -> str:
    """The reason an object takes from its outcome: Cobalt's own text stays once, on the document (`lookup` shows it
    whole); the object keeps its start, so a 1,000-character refusal costs no second write unit on the object too."""
    if outcome is not Status.FAILED or len(said) <= MAX_OBJECT_REASON:
        return said
    return f"{said[: MAX_OBJECT_REASON - 60].rstrip()}… (whole: docdrop status --document-id {document['document_id']})"


def never_posted(item: Mapping[str, Any]) -> bool:
    """A RECEIVED claim fenced before its POST (`POST_FENCE`) whose POST never started: once its lease lapses, it is
    claimed again (`claim`), never reviewed: nothing of it can be in Cobalt."""
    return (
        item.get("status") == Status.RECEIVED.value and item.get(POST_FENCE) is True and not item.get(POST_STARTED_AT)
    )


def items_within(
    items: Iterable[dict[str, Any]], status: Status, before: datetime | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The object items in `status` with `status_at` in [since, before], oldest first (e.g. of `in_flight_items()`,
    which holds RECEIVED and SUBMITTED together)."""
    return sorted((i for i in items if _within(i, status, before, since)), key=lambda i: str(i.get("status_at")))


def _within(item: Mapping[str, Any], status: Status, before: datetime | None, since: datetime | None) -> bool:
    """Whether an object item is in `status` with its `status_at` between `since` and `before` (either may be None)."""
    at = str(item.get("status_at") or "")
    return (
        item.get("status") == status.value
        and (before is None or at <= before.isoformat(timespec="microseconds"))
        and (since is None or at >= since.isoformat(timespec="microseconds"))
    )


def object_view(item: Mapping[str, Any]) -> DocumentView:
    """An object item as shown, when its own status is all there is to show (its outcome is joined onto it)."""
    return _view(item, None, [])


def _view(
    obj: Mapping[str, Any] | None, document: Mapping[str, Any] | None, history: list[dict[str, Any]]
) -> DocumentView:
    """Join an object version and its Cobalt document: after submission, the document's outcome is the status."""
    obj = obj or {}
    document = document or {}
    status = obj.get("status")
    reason = obj.get("reason")
    if document.get("outcome") and (
        status in (None, Status.SUBMITTED.value, Status.STALE.value, Status.NEEDS_REVIEW.value)
    ):
        status, reason = document["outcome"], document.get("outcome_reason")
    elif status == Status.FAILED.value and obj.get("joined_mark") and document.get("outcome_reason"):  # its start
        reason = document["outcome_reason"]
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
        updated_at=max(
            filter(None, [obj.get("updated_at"), obj.get("status_at"), document.get("updated_at")]), default=None
        ),
        history=history,
        events=list(document.get("events", [])),
        account=obj.get("account"),
    )

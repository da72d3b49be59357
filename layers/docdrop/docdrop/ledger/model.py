"""The ledger's words: statuses, the names of the attributes that carry meaning, and the values callers pass and get
(an object version's reference, a claim, an outcome event, a joined view). No DynamoDB call lives here."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


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

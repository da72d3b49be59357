"""The document ledger: the one DynamoDB table, as small stores that each own one kind of item (docs/ledger.md names
the module of every write). `DocumentLedger` is all of them over one client; a caller that needs fewer takes fewer
(the webhook's handler writes only Cobalt documents: `DocumentStore`).

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

from docdrop.ledger.control import AccountLinkStore, BreakerStore, RunLeases
from docdrop.ledger.documents import DocumentStore
from docdrop.ledger.fingerprints import FingerprintStore
from docdrop.ledger.model import (
    ATTEMPT_PREFIX,
    CLAIM_REASON,
    CLAIMABLE,
    CLAIMED_AGAIN_REASON,
    DISMISSED_REVIEW,
    EVIDENCE_STATE,
    HISTORY_PREFIX,
    IN_CHART,
    IN_FLIGHT,
    INTERRUPTED_REASON,
    LINK_EVENT_PREFIX,
    LINK_EVENT_RETENTION,
    MAX_LINK_MESSAGE,
    MAX_OBJECT_REASON,
    OPEN,
    OPEN_STATE,
    OUTCOMES,
    POST_FENCE,
    POST_STARTED_AT,
    RESEND_APPROVED,
    RESENDABLE,
    RESENT_BY_SILENCE,
    RIVAL_LIFETIME,
    SENT_BY_CLAIM,
    SILENCE,
    SUBMITTED_REASON,
    TAGS_EXPIRED,
    TERMINAL,
    UNJOINED,
    UNRECORDED,
    Claim,
    DocumentView,
    JoinResult,
    LedgerError,
    LedgerRefusedItem,
    ObjectRef,
    OutcomeEvent,
    Status,
    items_within,
    never_posted,
    now_iso,
    object_view,
    parse_moment,
)
from docdrop.ledger.objects import ObjectStore
from docdrop.ledger.open_index import OpenIndex
from docdrop.ledger.reviews import ReviewStore
from docdrop.ledger.table import LedgerTable


class WebhookStores(DocumentStore, AccountLinkStore):
    """What the webhook writes: Cobalt documents and account links (its role's `dynamodb:LeadingKeys` allow no more)."""


class DocumentLedger(WebhookStores, ReviewStore, OpenIndex, FingerprintStore, RunLeases, BreakerStore):
    """Every store over one table and one client: for a function or a CLI command that touches several kinds of item."""


__all__ = [
    "ATTEMPT_PREFIX",
    "CLAIMABLE",
    "CLAIMED_AGAIN_REASON",
    "CLAIM_REASON",
    "DISMISSED_REVIEW",
    "EVIDENCE_STATE",
    "HISTORY_PREFIX",
    "INTERRUPTED_REASON",
    "IN_CHART",
    "IN_FLIGHT",
    "LINK_EVENT_PREFIX",
    "LINK_EVENT_RETENTION",
    "MAX_LINK_MESSAGE",
    "MAX_OBJECT_REASON",
    "OPEN",
    "OPEN_STATE",
    "OUTCOMES",
    "POST_FENCE",
    "POST_STARTED_AT",
    "RESENDABLE",
    "RESEND_APPROVED",
    "RESENT_BY_SILENCE",
    "RIVAL_LIFETIME",
    "SENT_BY_CLAIM",
    "SILENCE",
    "SUBMITTED_REASON",
    "TAGS_EXPIRED",
    "TERMINAL",
    "UNJOINED",
    "UNRECORDED",
    "AccountLinkStore",
    "BreakerStore",
    "Claim",
    "DocumentLedger",
    "DocumentStore",
    "DocumentView",
    "FingerprintStore",
    "JoinResult",
    "LedgerError",
    "LedgerRefusedItem",
    "LedgerTable",
    "ObjectRef",
    "ObjectStore",
    "OpenIndex",
    "OutcomeEvent",
    "ReviewStore",
    "RunLeases",
    "Status",
    "WebhookStores",
    "items_within",
    "never_posted",
    "now_iso",
    "object_view",
    "parse_moment",
]

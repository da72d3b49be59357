"""Cobalt's event envelopes, from a webhook delivery or from the event log, read one way into an `OutcomeEvent`.

The event log (`GET /v1/webhook-events`) has two documented item shapes, `{id, type, created, status, ...}` and
`{event_id, event_type, created_at, delivery_status, ...}`: both become the webhook's envelope
`{id, type, created, job_id, access_token_reference_id, data}`, so a recovered event and a delivered one are recorded
through the same ledger path and de-duplicated by the same event id (promise 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from docdrop.ledger import OUTCOMES, OutcomeEvent

# Cobalt's ids are short (document ids have 16 digits); DynamoDB refuses key values over 2 KB. Anything longer is
# a malformed event, refused before it reaches the ledger, never a write that fails and is answered "retry".
MAX_ID_CHARS = 256
# Cobalt is JavaScript: every number it signs is a double, exact only below 2**53.
JS_SAFE_INTEGER_LIMIT = 2**53


def usable_id(value: Any) -> str | None:
    """A string or integer id of at most MAX_ID_CHARS characters, as text; None for anything else.

    An integer must be one JavaScript holds exactly (below 2**53): a signature over JSON.stringify's form verifies
    a larger one and its neighbours alike, so it would name no one document.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    if isinstance(value, int) and abs(value) >= JS_SAFE_INTEGER_LIMIT:
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_ID_CHARS else None


def envelope_from_log_item(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """One event-log item in the webhook's envelope shape; None when it has no usable id or type."""
    event_id = item.get("id", item.get("event_id"))
    event_type = item.get("type", item.get("event_type"))
    if usable_id(event_id) is None or not isinstance(event_type, str):
        return None
    data = item.get("data")
    return {
        "id": str(event_id),
        "type": event_type,
        "created": item.get("created", item.get("created_at")),
        "job_id": item.get("job_id"),
        "access_token_reference_id": item.get("access_token_reference_id"),
        "data": data if isinstance(data, Mapping) else {},
    }


def outcome_event_from(
    envelope: Mapping[str, Any], *, attempt: int | None = None, source: str = "webhook"
) -> OutcomeEvent | None:
    """The document outcome an envelope carries; None when it is not a document outcome or has no document id."""
    event_type = envelope.get("type")
    if event_type not in OUTCOMES:
        return None
    raw_data = envelope.get("data")
    data: Mapping[str, Any] = raw_data if isinstance(raw_data, Mapping) else {}
    document_id = usable_id(data.get("document_id"))
    reference = envelope.get("access_token_reference_id")
    if document_id is None or (reference is not None and usable_id(reference) is None and reference != ""):
        return None
    raw_reasons = data.get("reasons")
    reasons = tuple(
        {"code": str(r.get("code", "")), "description": str(r.get("description", ""))}
        for r in (raw_reasons if isinstance(raw_reasons, list) else [])
        if isinstance(r, Mapping)
    )
    job_id = envelope.get("job_id")
    failure_reason = data.get("failure_reason")
    return OutcomeEvent(
        event_id=str(envelope["id"]),
        event_type=str(event_type),
        document_id=document_id,
        created=str(envelope.get("created") or ""),  # signed, or unknown: never an unsigned header
        failure_reason=str(failure_reason) if failure_reason else None,
        reasons=reasons,
        job_id=str(job_id) if job_id is not None else None,
        access_token_reference_id=str(reference) if reference else None,
        attempt=attempt,
        source=source,
    )

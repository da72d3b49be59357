"""What one document costs the ledger, measured by DynamoDB Local's own capacity accounting (the rules DynamoDB bills
by), and the sizes of the items the hot path rewrites: a key of 200 characters and a long history must not grow them
past 1 KB, where every write would cost twice."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from docdrop.ledger import DocumentLedger, ObjectRef, OutcomeEvent, Status
from docdrop.outcomes import OutcomeJoiner

from local.capacity import CapacityMeter
from tests.support.aws import dynamodb_client
from tests.support.stream import NoMetrics

BUCKET = "clinic-north-docdrop-inbox-123456789012-us-east-1-production-a"  # 63 characters: S3's longest
LONG_KEY = "inbox/" + "referrals/2026/" * 12 + "x" * 14  # 200 characters
VERSION = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
DOCUMENT = "9988776655443322"
# Under DynamoDB's 1 KB write unit at the worst (S3's longest bucket name, a 200-character key), so that every write
# of the hot path is one unit; a typical key (40 characters) leaves a third of it free.
ITEM_BOUND = 1000
TYPICAL_BOUND = 800


def _size(value: Any) -> int:
    """DynamoDB's size of a typed attribute value (strings and binaries by bytes, numbers ~ digits/2 + 1)."""
    kind, inner = next(iter(value.items()))
    if kind in ("S", "B"):
        return len(inner.encode() if isinstance(inner, str) else inner)
    if kind == "N":
        return len(inner.strip("-").replace(".", "")) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_size({kind[0]: v}) for v in inner)
    if kind == "L":
        return 3 + sum(1 + _size(v) for v in inner)
    return 3 + sum(len(k.encode()) + 1 + _size(v) for k, v in inner.items())  # M


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _size(value) for name, value in item.items())


def _raw(ddb: Any, table: str, pk: str, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = ddb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]
    return item


@pytest.fixture
def metered(dynamodb_endpoint: str, ledger_table: str) -> tuple[DocumentLedger, CapacityMeter]:
    meter = CapacityMeter()
    return DocumentLedger(meter.attach(dynamodb_client(dynamodb_endpoint)), ledger_table), meter


def _claim_details() -> dict[str, Any]:
    return {
        "content_type": "application/pdf",
        "size": 5 * 1024 * 1024,
        "account": "clinic-north",
        "sha256": "a" * 64,
        "evidence_fingerprint": "b" * 64,
    }


def _webhook_event(event_id: str = "550e8400-e29b-41d4-a716-446655440000") -> OutcomeEvent:
    return OutcomeEvent(
        event_id,
        "document.uploaded",
        DOCUMENT,
        "2026-11-30T14:30:00.000Z",
        job_id="12345",
        access_token_reference_id="clinic-north-reference",
        attempt=1,
        evidence_fingerprint="d" * 64,
    )


def test_a_document_costs_9_write_units_and_1_read_with_a_200_character_key(
    metered: tuple[DocumentLedger, CapacityMeter], ddb: Any, ledger_table: str
) -> None:
    ledger, meter = metered
    ref = ObjectRef(BUCKET, LONG_KEY, VERSION)
    assert len(LONG_KEY) == 200
    joiner = OutcomeJoiner(ledger, NoMetrics(), logging.getLogger("test"))
    per_step: dict[str, tuple[dict[str, float], dict[str, float]]] = {}

    def step(name: str, call: Any) -> Any:
        meter.reset()
        result = call()
        per_step[name] = (dict(meter.write_units), dict(meter.read_units))
        return result

    # The uploader: is the version known, claim, fingerprint, the POST's start, the POST, the submission; the webhook;
    # the stream's join.
    step("known?", lambda: ledger.get_object(ref))
    claim = step("claim", lambda: ledger.claim(ref, lease_seconds=60, details=_claim_details()))
    step("fingerprint", lambda: ledger.hold_fingerprint("c" * 64, ref, timedelta(hours=24)))
    step("post started", lambda: ledger.mark_post_started(ref, claim.token))
    step("submission", lambda: ledger.record_submission(ref, claim.token, DOCUMENT, "12345"))
    step("webhook", lambda: ledger.record_outcome(_webhook_event()))
    image = ledger.get_document(DOCUMENT) or {}  # the stream's new image: Lambda hands it over without a read
    step("join", lambda: joiner.join(image, mark="49668312345678901234567890"))

    assert ledger.get_object(ref)["status"] == Status.UPLOADED.value
    assert per_step == {
        "known?": ({}, {"table": 1.0}),
        "claim": ({"table": 1.0, "by_open": 1.0}, {}),  # the object opens: its one index entry
        "fingerprint": ({"table": 1.0}, {}),
        # #28: a lapsed claim without it sent nothing, so it is claimed again instead of becoming a review
        "post started": ({"table": 1.0}, {}),
        "submission": ({"table": 2.0}, {}),  # the object's write and the document's link; no index, no transaction
        "webhook": ({"table": 1.0}, {}),  # the webhook's one call: one unit, no index
        "join": ({"table": 1.0, "by_open": 1.0}, {}),  # the object settles and leaves the index
    }
    writes = sum(sum(w.values()) for w, _ in per_step.values())
    reads = sum(sum(r.values()) for _, r in per_step.values())
    assert (writes, reads) == (9.0, 1.0)


def test_the_hot_items_stay_well_under_1_kb_with_a_200_character_key(
    metered: tuple[DocumentLedger, CapacityMeter], ddb: Any, ledger_table: str
) -> None:
    ledger, _ = metered
    ref = ObjectRef(BUCKET, LONG_KEY, VERSION)
    claim = ledger.claim(ref, lease_seconds=60, details=_claim_details())
    sizes = {"claimed": item_size(_raw(ddb, ledger_table, f"OBJ#{ref.object_id}", "OBJ"))}
    ledger.hold_fingerprint("c" * 64, ref, timedelta(hours=24))
    ledger.mark_post_started(ref, claim.token)
    ledger.record_submission(ref, claim.token, DOCUMENT, "12345")
    sizes["submitted"] = item_size(_raw(ddb, ledger_table, f"OBJ#{ref.object_id}", "OBJ"))
    ledger.record_outcome(_webhook_event())
    sizes["document"] = item_size(_raw(ddb, ledger_table, f"CDOC#{DOCUMENT}", "CDOC"))
    joiner = OutcomeJoiner(ledger, NoMetrics(), logging.getLogger("test"))
    joiner.join(ledger.get_document(DOCUMENT) or {}, mark="49668312345678901234567890")
    sizes["uploaded"] = item_size(_raw(ddb, ledger_table, f"OBJ#{ref.object_id}", "OBJ"))
    sizes["fingerprint"] = item_size(_raw(ddb, ledger_table, f"FP#{'c' * 64}", "FP"))

    assert max(sizes.values()) <= ITEM_BOUND, sizes


def test_the_hot_items_of_a_typical_key_leave_a_fifth_of_a_write_unit_free(
    metered: tuple[DocumentLedger, CapacityMeter], ddb: Any, ledger_table: str
) -> None:
    ledger, _ = metered
    ref = ObjectRef("clinic-inbox", "inbox/scans/2026-11-30/fax-000123.pdf", VERSION)
    claim = ledger.claim(ref, lease_seconds=60, details=_claim_details())
    ledger.mark_post_started(ref, claim.token)
    ledger.record_submission(ref, claim.token, DOCUMENT, "12345")
    submitted = item_size(_raw(ddb, ledger_table, f"OBJ#{ref.object_id}", "OBJ"))
    assert submitted <= TYPICAL_BOUND, submitted


def test_a_long_history_leaves_the_object_item_the_size_it_was(
    metered: tuple[DocumentLedger, CapacityMeter], ddb: Any, ledger_table: str
) -> None:
    """Waiting for tags, then Cobalt down for a day (30 redeliveries), then a review a person resolves: every one of
    those transitions is in the history, and the object item carries none of them."""
    ledger, meter = metered
    ref = ObjectRef(BUCKET, LONG_KEY, VERSION)
    ledger.record_unclaimed_state(ref, Status.WAITING_FOR_TAGS, "Missing tag: patient_mrn", missing_tags=["mrn"])
    for attempt in range(30):
        claim = ledger.claim(ref, lease_seconds=60, details=_claim_details())
        reason = f"Cobalt answered 503 (attempt {attempt + 1}); retried with a growing delay, about a day in all"
        ledger.record_claimed_state(ref, claim.token, Status.PENDING_RETRY, reason, retry_attempts=attempt + 1)
    claim = ledger.claim(ref, lease_seconds=60, details=_claim_details())
    long_reason = "Cobalt did not answer in time after the document was sent: " + "it may or may not be filed. " * 8
    ledger.record_claimed_state(ref, claim.token, Status.NEEDS_REVIEW, long_reason)
    ledger.approve_resend(ref, "Checked the chart: not there", decided_by="nurse@clinic", status=Status.NEEDS_REVIEW)
    claim = ledger.claim(ref, lease_seconds=60, details=_claim_details())
    ledger.record_submission(ref, claim.token, DOCUMENT, "12345")
    meter.reset()
    ledger.record_outcome(_webhook_event())
    ledger.join_outcome(ledger.get_document(DOCUMENT) or {}, mark="m")

    history = [h["status"] for h in ledger.history(ref.object_id)]
    assert history[:3] == ["WAITING_FOR_TAGS", "RECEIVED", "PENDING_RETRY"] and history.count("PENDING_RETRY") == 30
    assert history[-3:] == ["RECEIVED", "SUBMITTED", "UPLOADED"] and "NEEDS_REVIEW" in history
    assert item_size(_raw(ddb, ledger_table, f"OBJ#{ref.object_id}", "OBJ")) <= ITEM_BOUND
    assert meter.write_units == {"table": 2.0, "by_open": 1.0}  # the outcome and its join: one unit each, as ever

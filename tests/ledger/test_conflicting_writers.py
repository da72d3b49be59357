"""Writers that meet on one item, as a second reader found them: every write where idempotence is promised is
conditional, an item's state is never overwritten by a writer that no longer owns it, and no item grows for ever.
Each test here failed on the code before its fix (the defect it names is in the interleavings issue)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from docdrop.ledger import RESEND_APPROVED, DocumentLedger, ObjectRef, OutcomeEvent, Status

from local.capacity import CapacityMeter
from tests.ledger.test_write_units import BUCKET, LONG_KEY, VERSION, item_size
from tests.support.aws import dynamodb_client
from tests.support.stream import as_the_stream_does

A = ObjectRef("inbox-bucket", "inbox/a.pdf", "v-a")
B = ObjectRef("inbox-bucket", "inbox/b.pdf", "v-b")
DOCUMENT = "5550001112223334"


@pytest.fixture
def ledger(ddb: Any, ledger_table: str) -> DocumentLedger:
    return DocumentLedger(ddb, ledger_table)


def _outcome(event_id: str, event_type: str = "document.uploaded", **kw: Any) -> OutcomeEvent:
    return OutcomeEvent(event_id, event_type, DOCUMENT, "2026-12-01T10:00:00Z", **kw)


def _lapsed_claim(ledger: DocumentLedger, ref: ObjectRef) -> str:
    """A claim whose invocation died (its lease ran out) and that the next delivery marked for review."""
    claim = ledger.claim(ref, lease_seconds=0.01)
    time.sleep(0.05)
    assert ledger.mark_interrupted(ref, "interrupted")
    return claim.token


def test_a_document_linked_to_one_object_is_never_relinked_to_another(ledger: DocumentLedger) -> None:
    """Defect 1's last step: A's own link overwrote the document a review had (wrongly) taken for B."""
    assert ledger.link_document(B, DOCUMENT)
    assert ledger.link_document(B, DOCUMENT)  # the same object again: a no-op success (a retried write)
    claim = ledger.claim(A, lease_seconds=60)
    assert ledger.record_submission(A, claim.token, DOCUMENT) is False  # a conflict, answered, never overwritten
    assert ledger.get_document(DOCUMENT)["object_id"] == B.object_id
    assert ledger.get_object(A)["status"] == Status.SUBMITTED.value  # Cobalt's answer is still recorded on A


def test_a_fingerprint_taken_over_from_a_holder_goes_to_one_of_two_racing_versions(ledger: DocumentLedger) -> None:
    """Defect 2: both identical versions read the refused holder, and both took it over (`force`, unconditional)."""
    window = timedelta(hours=24)
    assert ledger.hold_fingerprint("f" * 64, A, window) is None
    refused = ledger.hold_fingerprint("f" * 64, B, window)  # B reads A's hold; A's version was refused since
    assert refused is not None and refused["object_id"] == A.object_id
    third = ObjectRef("inbox-bucket", "inbox/c.pdf", "v-c")
    also_read = ledger.hold_fingerprint("f" * 64, third, window)
    assert ledger.hold_fingerprint("f" * 64, B, window, replacing=refused) is None
    holder = ledger.hold_fingerprint("f" * 64, third, window, replacing=also_read)
    assert holder is not None and holder["object_id"] == B.object_id  # the second finds the first holding it


def test_a_submission_kept_after_a_person_dismissed_the_review_is_recorded(ledger: DocumentLedger) -> None:
    """Defect 4: the POST's answer came after the lapsed claim's review was dismissed, and its own write failed."""
    token = _lapsed_claim(ledger, A)
    review = ledger.get_object(A) or {}
    assert ledger.dismiss_review(review, "Dismissed by nurse: not needed", decided_by="nurse")
    ledger.remember_submission(A, token, DOCUMENT, "77")
    [kept] = list(ledger.unrecorded_submissions())

    assert ledger.record_late_submission(kept)
    item = ledger.get_object(A)
    assert (item["status"], item["document_id"]) == (Status.SUBMITTED.value, DOCUMENT)
    assert list(ledger.unrecorded_submissions()) == []
    ledger.record_outcome(_outcome("evt-1"))
    as_the_stream_does(ledger, DOCUMENT)
    assert ledger.get_object(A)["status"] == Status.UPLOADED.value  # the chart holds it, and so does the ledger


def test_a_kept_submission_whose_object_cannot_take_it_stays_listed(ledger: DocumentLedger) -> None:
    """A kept submission is dropped from the UNRECORDED list only once its object names the document."""
    claim = ledger.claim(A, lease_seconds=60)
    ledger.remember_submission(A, "another claim's token", DOCUMENT, None)
    [kept] = list(ledger.unrecorded_submissions())
    assert not ledger.record_late_submission(kept)
    assert [d["document_id"] for d in ledger.unrecorded_submissions()] == [DOCUMENT]
    ledger.record_submission(A, claim.token, DOCUMENT)
    assert not ledger.record_late_submission(kept)  # moved on already, and names the document: listed no more
    assert list(ledger.unrecorded_submissions()) == []


def test_a_resend_approval_ends_with_the_review_it_was_given_for(ledger: DocumentLedger) -> None:
    """Defect 6: a person approved a resend, then the slow POST's answer recorded SUBMITTED; the approval stayed,
    and the resend's event could neither claim nor settle the object (it looped to the dead-letter queue)."""
    claim = ledger.claim(A, lease_seconds=0.01)
    time.sleep(0.05)
    assert ledger.mark_interrupted(A, "interrupted")
    assert ledger.approve_resend(A, "not in the chart", decided_by="nurse", status=Status.NEEDS_REVIEW)
    assert ledger.record_submission(A, claim.token, DOCUMENT)
    item = ledger.get_object(A)
    assert item["status"] == Status.SUBMITTED.value and RESEND_APPROVED not in item
    assert not ledger.claim(A, lease_seconds=60).won  # and so never sent again


def test_an_object_that_goes_back_to_an_open_state_keeps_no_expiry(ddb: Any, ledger_table: str) -> None:
    """`clean()` drops None, so `expires_at: None` never removed a TTL: a REJECTED version (which may expire) that
    went back to WAITING_FOR_TAGS kept its TTL, and DynamoDB would have deleted an open item."""
    ledger = DocumentLedger(ddb, ledger_table, retention_days=30)
    assert ledger.record_unclaimed_state(A, Status.WAITING_FOR_TAGS, "Missing tag: folder_name")
    assert ledger.expire_tag_wait(ledger.get_object(A) or {}, "Required tags never arrived")
    assert ledger.get_object(A)["expires_at"]  # refused, never sent: it may go
    assert ledger.record_unclaimed_state(A, Status.WAITING_FOR_TAGS, "Missing tag: folder_name")
    assert "expires_at" not in ledger.get_object(A)
    assert ledger.expire_tag_wait(ledger.get_object(A) or {}, "Required tags never arrived")
    assert ledger.claim(A, lease_seconds=60).won  # its tags came after all
    assert "expires_at" not in ledger.get_object(A)


def test_an_account_link_stays_small_whatever_it_was_told(ledger: DocumentLedger) -> None:
    """Defect 5: each login_required answer appended to the link's lists; past 400 KB DynamoDB refused the item, and
    login_required webhooks answered 400 for ever. A weekend of BLOCKED faxes resent is about 1,500 answers."""
    reference = "clinic-north"
    for n in range(1500):
        assert ledger.record_login_required(reference, f"upload:{n:032x}", "2026-12-01T10:00:00Z", "re-link")
        if n % 500 == 0:
            ledger.record_relink(reference, by="a call through it passed")
    raw = ledger._client.get_item(
        TableName=ledger._table, Key={"pk": {"S": f"TOKEN#{reference}"}, "sk": {"S": "TOKEN"}}
    )["Item"]
    assert item_size(raw) < 1000, item_size(raw)
    assert ledger.record_login_required(reference, "evt-webhook", "2026-12-01T11:00:00Z", "re-link")
    assert not ledger.record_login_required(reference, "evt-webhook", "2026-12-01T11:00:00Z", "re-link")
    assert ledger.get_account_link(reference)["status"] == "LOGIN_REQUIRED"
    events = ledger.link_events(reference)
    assert len(events) == 1500 + 3 + 1 and all(e["expires_at"] > time.time() for e in events)


def test_a_failed_document_with_a_long_reason_costs_at_most_one_write_unit_more(
    dynamodb_endpoint: str, ledger_table: str
) -> None:
    """Cobalt's 1,000-character refusal was stored three times on the document and copied onto the object."""
    meter = CapacityMeter()
    ledger = DocumentLedger(meter.attach(dynamodb_client(dynamodb_endpoint)), ledger_table)
    reason = ("Patient not found. Please check the patient MRN and try again. " * 20)[:1000]
    costs: dict[str, float] = {}
    failed: dict[str, Any] = {
        "failure_reason": reason,
        "reasons": ({"code": "PATIENT_NOT_FOUND", "description": reason},),
    }
    for n, (event_type, kw) in enumerate((("document.uploaded", {}), ("document.upload_failed", failed))):
        ref = ObjectRef(BUCKET, LONG_KEY, f"{VERSION}-{n}")
        document = f"99887766554433{n:02d}"
        claim = ledger.claim(ref, lease_seconds=60, details={"sha256": "a" * 64, "evidence_fingerprint": "b" * 64})
        meter.reset()
        ledger.record_submission(ref, claim.token, document, "12345")
        ledger.record_outcome(OutcomeEvent(f"evt-{n}", event_type, document, "2026-12-01T10:00:00Z", **kw))
        as_the_stream_does(ledger, document)
        costs[event_type] = sum(meter.write_units.values())
        assert ledger.get_object(ref)["status"] in ("UPLOADED", "FAILED")
    assert costs["document.upload_failed"] <= costs["document.uploaded"] + 1, costs
    view = ledger.lookup(ObjectRef(BUCKET, LONG_KEY, f"{VERSION}-1"))
    assert view is not None and view.status == "FAILED" and view.reason == reason  # shown whole, from one place
    stored = json.dumps(ledger.get_document("9988776655443301"), default=str)
    assert stored.count("Patient not found") == reason.count("Patient not found")  # once on the document


def test_a_kept_submission_never_takes_a_document_another_object_holds(ledger: DocumentLedger) -> None:
    """`remember_submission` wrote the object reference unconditionally, as the link once did."""
    assert ledger.link_document(B, DOCUMENT)
    claim = ledger.claim(A, lease_seconds=60)
    assert not ledger.remember_submission(A, claim.token, DOCUMENT, None)
    assert ledger.get_document(DOCUMENT)["object_id"] == B.object_id
    assert ledger.remember_submission(B, "b's claim", DOCUMENT, None)  # its own: kept

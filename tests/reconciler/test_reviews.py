"""NEEDS_REVIEW resolved on its own only where the evidence is definitive: a unique match on both sides, inside the
attempt's window, with the same keyed patient/folder fingerprint, and bytes that do not contradict it."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from docdrop.cobalt_events import outcome_event_from
from docdrop.evidence import patient_folder_fingerprint
from docdrop.ledger import ObjectRef, Status

from local.samples import pdf_bytes
from tests.reconciler.conftest import OpenLoops

KEY = b"per-stack fingerprint key for tests"
MRN, FOLDER = "100001", "MedicalRecords"
# A document is a candidate once it has been listed for the outcome grace (15 min): an upload whose answer is on its
# way may be its sender, and links it first.
AFTER_GRACE = timedelta(minutes=16)


def _review(loops: OpenLoops, name: str, content: bytes, mrn: str = MRN, sent: datetime | None = None) -> ObjectRef:
    """An upload whose answer was lost: claimed with its evidence, then NEEDS_REVIEW with the attempt's window."""
    ref = ObjectRef("inbox", f"inbox/{name}", uuid.uuid4().hex)
    loops.refs[name] = ref
    evidence = {
        "sha256": hashlib.sha256(content).hexdigest(),
        "evidence_fingerprint": patient_folder_fingerprint(KEY, mrn, FOLDER),
    }
    claim = loops.ledger.claim(ref, lease_seconds=60, details=evidence)
    sent = sent or datetime.now(UTC) - timedelta(seconds=5)
    loops.ledger.record_claimed_state(
        ref,
        claim.token,
        Status.NEEDS_REVIEW,
        "Cobalt did not answer in time after the document was sent: it may or may not be filed",
        attempt_sent_at=sent.isoformat(),
        attempt_ended_at=(sent + timedelta(seconds=30)).isoformat(),
    )
    return ref


def _stored_and_reported(loops: OpenLoops, name: str, content: bytes, mrn: str = MRN) -> str:
    """What Cobalt did with the lost request: stored it, then sent the webhook, which DocDrop records as unknown."""
    from docdrop.contract import UploadFields

    answer = loops.cobalt.upload_document(UploadFields(mrn, FOLDER), name, "application/pdf", content)
    assert answer.document_id is not None
    loops.wait_for_outcomes(sum(1 for r in loops.sandbox.events if r["event"]["type"].startswith("document.")) + 1)
    record = next(r for r in loops.sandbox.events if r["event"]["data"]["document_id"] == answer.document_id)
    event = outcome_event_from(record["event"], attempt=1)
    assert event is not None
    data = record["event"]["data"]
    fingerprint = patient_folder_fingerprint(KEY, data["patient_mrn"], data["folder_name"])
    assert loops.ledger.record_outcome(dataclasses.replace(event, evidence_fingerprint=fingerprint))
    loops.stream(answer.document_id)  # the ledger's stream lists it as unjoined
    return answer.document_id


def test_a_unique_match_takes_the_documents_outcome_and_says_on_what_evidence(loops: OpenLoops) -> None:
    content = pdf_bytes("lost answer")
    ref = _review(loops, "lost.pdf", content)
    document_id = _stored_and_reported(loops, "lost.pdf", content)

    report = loops.run(AFTER_GRACE)

    assert report.reviews_resolved == 1 and report.reviews_open == 0
    item = loops.ledger.get_object(ref)
    assert (item["status"], item["document_id"]) == ("UPLOADED", document_id)
    assert item["reason"].startswith(f"Matched to Cobalt document {document_id}, filed in the EMR")
    assert "only candidate on each side" in item["reason"] and "sha256 of its bytes matches" in item["reason"]
    history = loops.ledger.history(ref.object_id)
    assert history[-1]["status"] == "UPLOADED" and history[-1]["by"] == item["decided_by"] == "reconciler (evidence)"
    assert loops.ledger.get_document(document_id)["object_id"] == ref.object_id
    assert loops.metrics.counts["ReviewsResolvedByEvidence"] == 1 and loops.metrics.counts["DocumentsUploaded"] == 1
    assert loops.run(timedelta(minutes=30)).foreign == 0  # linked: never counted as another integration's


def test_two_candidates_leave_it_for_a_person(loops: OpenLoops) -> None:
    content = pdf_bytes("twice in a minute")
    ref = _review(loops, "ambiguous.pdf", content)
    _stored_and_reported(loops, "ambiguous.pdf", content)
    _stored_and_reported(loops, "ambiguous copy.pdf", pdf_bytes("another page, same patient and folder"))
    assert loops.run(AFTER_GRACE).reviews_resolved == 0
    assert loops.status("ambiguous.pdf") == "NEEDS_REVIEW"
    assert loops.run(timedelta(minutes=30)).foreign == 0  # the candidates are kept for the person
    assert loops.ledger.get_object(ref)["status"] == "NEEDS_REVIEW"


def test_two_attempts_for_one_document_leave_both_for_a_person(loops: OpenLoops) -> None:
    content = pdf_bytes("one of two")
    _review(loops, "first try.pdf", content)
    _review(loops, "second try.pdf", content)
    _stored_and_reported(loops, "first try.pdf", content)
    assert loops.run(AFTER_GRACE).reviews_resolved == 0
    assert {loops.status("first try.pdf"), loops.status("second try.pdf")} == {"NEEDS_REVIEW"}


def test_a_candidate_outside_the_attempts_window_is_not_linked(loops: OpenLoops) -> None:
    content = pdf_bytes("long ago")
    _review(loops, "old attempt.pdf", content, sent=datetime.now(UTC) - timedelta(hours=2))
    _stored_and_reported(loops, "old attempt.pdf", content)  # its outcome was created just now: 2 h later
    assert loops.run(AFTER_GRACE).reviews_resolved == 0
    assert loops.status("old attempt.pdf") == "NEEDS_REVIEW"


def test_another_patient_is_not_linked(loops: OpenLoops) -> None:
    content = pdf_bytes("other patient")
    _review(loops, "patient a.pdf", content, mrn="100001")
    _stored_and_reported(loops, "patient b.pdf", content, mrn="100002")
    assert loops.run(AFTER_GRACE).reviews_resolved == 0
    assert loops.status("patient a.pdf") == "NEEDS_REVIEW"


def test_bytes_that_differ_veto_the_link(loops: OpenLoops) -> None:
    _review(loops, "mine.pdf", pdf_bytes("what DocDrop sent"))
    _stored_and_reported(loops, "theirs.pdf", pdf_bytes("what Cobalt holds"))
    assert loops.run(AFTER_GRACE).reviews_resolved == 0
    assert loops.status("mine.pdf") == "NEEDS_REVIEW"


def test_without_bytes_from_cobalt_the_other_evidence_decides(loops: OpenLoops, monkeypatch) -> None:
    content = pdf_bytes("no bytes endpoint")
    ref = _review(loops, "no-bytes.pdf", content)
    _stored_and_reported(loops, "no-bytes.pdf", content)
    monkeypatch.setattr(loops.sandbox, "contents", {})  # GET /v1/documents/{id} answers 404: no evidence either way
    assert loops.run(AFTER_GRACE).reviews_resolved == 1
    assert "Cobalt did not return its bytes" in loops.ledger.get_object(ref)["reason"]


def test_the_matching_logs_and_counts_no_mrn(loops: OpenLoops, caplog: pytest.LogCaptureFixture) -> None:
    content = pdf_bytes("private")
    _review(loops, "p.pdf", content, mrn="100003")
    _stored_and_reported(loops, "p.pdf", content, mrn="100003")
    _review(loops, "q.pdf", pdf_bytes("mine"), mrn="100003")
    _stored_and_reported(loops, "q.pdf", pdf_bytes("not mine"), mrn="100003")
    with caplog.at_level(logging.DEBUG):
        loops.run(AFTER_GRACE)
    assert "100003" not in caplog.text and "100003" not in str(loops.metrics.counts)


def test_a_review_whose_documents_webhook_was_lost_too_is_matched_through_the_event_log(loops: OpenLoops) -> None:
    from docdrop.contract import UploadFields

    loops.fingerprint_key = KEY
    content = pdf_bytes("lost twice")
    ref = _review(loops, "lost twice.pdf", content)
    answer = loops.cobalt.upload_document(UploadFields(MRN, FOLDER), "lost twice.pdf", "application/pdf", content)
    loops.wait_for_outcomes(1)  # Cobalt stored it and logged its outcome; no webhook ever reached DocDrop

    assert loops.run(timedelta(minutes=5)).reviews_resolved == 0  # the webhook may still come: the log is not read
    report = loops.run(timedelta(minutes=30))

    assert report.reviews_resolved == 1
    item = loops.ledger.get_object(ref)
    assert (item["status"], item["document_id"]) == ("UPLOADED", answer.document_id)
    events = loops.ledger.get_document(str(answer.document_id))["events"]
    assert [e["source"] for e in events] == ["event_log"]


def test_a_review_is_never_matched_to_the_document_of_an_upload_still_in_flight(
    loops: OpenLoops, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second reading, defect 1: B's attempt was lost (Cobalt never stored it); A, same patient and folder, was accepted
    as D, and D's webhook came before A's submission was recorded. The match took D for B, and both ended UPLOADED as
    D, while B is not in the chart at all."""
    from docdrop.contract import UploadFields

    content = pdf_bytes("the page B meant to send")
    review = _review(loops, "b.pdf", content)
    a = ObjectRef("inbox", "inbox/a.pdf", uuid.uuid4().hex)
    evidence = {"sha256": "0" * 64, "evidence_fingerprint": patient_folder_fingerprint(KEY, MRN, FOLDER)}
    claim = loops.ledger.claim(a, lease_seconds=3600, details=evidence)  # A's POST is out; its answer not yet recorded
    answer = loops.cobalt.upload_document(UploadFields(MRN, FOLDER), "a.pdf", "application/pdf", pdf_bytes("A"))
    assert answer.document_id is not None
    loops.wait_for_outcomes(1)
    record = next(r for r in loops.sandbox.events if r["event"]["data"]["document_id"] == answer.document_id)
    event = outcome_event_from(record["event"], attempt=1)
    assert event is not None
    loops.ledger.record_outcome(dataclasses.replace(event, evidence_fingerprint=evidence["evidence_fingerprint"]))
    loops.stream(answer.document_id)  # D is listed as unjoined: its webhook beat A's answer
    monkeypatch.setattr(loops.sandbox, "contents", {})  # no bytes from Cobalt: the other evidence decides

    report = loops.run(AFTER_GRACE)
    assert report.reviews_resolved == 0 and loops.status("b.pdf") == "NEEDS_REVIEW"

    assert loops.ledger.record_submission(a, claim.token, answer.document_id, answer.job_id)  # A's answer lands
    loops.stream(answer.document_id)
    assert loops.ledger.get_object(a)["status"] == "UPLOADED"
    assert loops.run(AFTER_GRACE).reviews_resolved == 0  # D is A's: never a candidate for B
    assert loops.ledger.get_object(review)["status"] == "NEEDS_REVIEW"
    assert loops.ledger.get_document(str(answer.document_id))["object_id"] == a.object_id


@pytest.mark.parametrize("filed_after", [timedelta(minutes=30), timedelta(days=3)])
def test_an_earlier_lost_attempt_the_emr_filed_late_keeps_a_later_review_from_taking_its_document(
    loops: OpenLoops, monkeypatch: pytest.MonkeyPatch, filed_after: timedelta
) -> None:
    """Found by the model-based test: A's answer was lost, and the EMR robot filed A's document D only `filed_after`
    later. B, same patient and folder, lost its answer just now, and Cobalt never stored B's. D fits B's window and
    A's window not at all, so D was B's only candidate and B its only fitting review: B was linked to D and ended
    UPLOADED, while B is in no chart. A sent before D was created, so A may be D's sender, however late the EMR was."""
    now = datetime.now(UTC)
    a = _review(loops, "a.pdf", pdf_bytes("A's page"), sent=now - filed_after)
    b = _review(loops, "b.pdf", pdf_bytes("B's page"))
    document_id = _stored_and_reported(loops, "a.pdf", pdf_bytes("A's page"))  # D: created now
    monkeypatch.setattr(loops.sandbox, "contents", {})  # no bytes from Cobalt (as often): the other evidence decides

    report = loops.run(AFTER_GRACE)

    assert report.reviews_resolved == 0
    assert loops.ledger.get_object(b)["status"] == loops.ledger.get_object(a)["status"] == "NEEDS_REVIEW"
    assert "object_id" not in loops.ledger.get_document(document_id)


def test_a_dismissed_attempts_document_is_never_taken_by_a_later_review(
    loops: OpenLoops, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the model-based test with its new rules: A's answer was lost and Cobalt stored it as D; a person
    dismissed A's review (not in the chart yet: the EMR had not filed D). B, same patient and folder, lost its answer
    just after D's outcome was created. A's review was DISMISSED, in no index, so no rival: D was B's only candidate
    and B was linked to it, while B is in no chart. A dismissed review now stays listed as a rival."""
    a = _review(loops, "a.pdf", pdf_bytes("A's page"), sent=datetime.now(UTC) - timedelta(minutes=30))
    document_id = _stored_and_reported(loops, "a.pdf", pdf_bytes("A's page"))
    monkeypatch.setattr(loops.sandbox, "contents", {})  # no bytes from Cobalt: the other evidence decides
    review = loops.ledger.get_object(a)
    assert review is not None
    assert loops.ledger.dismiss_review(review, "Dismissed by a person: not needed", "person")
    b = _review(loops, "b.pdf", pdf_bytes("B's page"))

    loops.run(AFTER_GRACE)

    assert loops.ledger.get_object(b)["status"] == "NEEDS_REVIEW"
    assert "object_id" not in loops.ledger.get_document(document_id)


def test_a_document_listed_within_the_outcome_grace_is_not_matched_yet(loops: OpenLoops) -> None:
    """The grace gives an upload whose answer is on its way the time to link its own document first."""
    content = pdf_bytes("just now")
    _review(loops, "recent.pdf", content)
    _stored_and_reported(loops, "recent.pdf", content)
    assert loops.run(timedelta(minutes=5)).reviews_resolved == 0
    assert loops.run(AFTER_GRACE).reviews_resolved == 1


def test_the_document_of_a_claim_whose_holder_died_stays_unjoined_until_its_review_takes_it(loops: OpenLoops) -> None:
    """Found by make chaos (#28): a worker died with its POST out; Cobalt stored the document and its webhook came at
    once. While the claim waited for its lease to lapse, the foreign sweep took the document for another integration's,
    so the review the claim became had no candidate. A RECEIVED claim's patient and folder now keep it unjoined."""
    from docdrop.contract import UploadFields

    loops.fingerprint_key = KEY
    content = pdf_bytes("the dead worker's page")
    ref = ObjectRef("inbox", "inbox/dead worker.pdf", uuid.uuid4().hex)
    loops.refs["dead worker.pdf"] = ref
    evidence = {
        "sha256": hashlib.sha256(content).hexdigest(),
        "evidence_fingerprint": patient_folder_fingerprint(KEY, MRN, FOLDER),
    }
    claim = loops.ledger.claim(ref, lease_seconds=3600, details=evidence)  # lapses only when the test says so
    assert loops.ledger.mark_post_started(ref, claim.token)
    logged = sum(1 for r in loops.sandbox.events if r["event"]["type"].startswith("document."))
    answer = loops.cobalt.upload_document(UploadFields(MRN, FOLDER), "dead worker.pdf", "application/pdf", content)
    loops.wait_for_outcomes(logged + 1)
    record = next(r for r in loops.sandbox.events if r["event"]["data"]["document_id"] == answer.document_id)
    event = outcome_event_from(record["event"], attempt=1)
    assert event is not None
    loops.ledger.record_outcome(dataclasses.replace(event, evidence_fingerprint=evidence["evidence_fingerprint"]))
    loops.stream(str(answer.document_id))

    assert loops.run(AFTER_GRACE).foreign == 0  # the claim is still RECEIVED: its document is kept
    loops.ledger._client.update_item(
        TableName=loops.ledger._table,
        Key={"pk": {"S": f"OBJ#{ref.object_id}"}, "sk": {"S": "OBJ"}},
        UpdateExpression="SET lease_until = :past",  # the holder died a moment ago
        ExpressionAttributeValues={
            ":past": {"S": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="microseconds")}
        },
    )
    assert loops.ledger.mark_interrupted(ref, "interrupted")  # its message came back: a review
    report = loops.run(AFTER_GRACE)

    assert report.reviews_resolved == 1 and report.foreign == 0
    assert loops.ledger.get_object(ref)["document_id"] == answer.document_id

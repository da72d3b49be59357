"""What a person does with what the evidence could not settle: `docdrop review` shows each open review with the
documents that fit it; `docdrop resolve` records one decision, with who, when and why; two people cannot both decide."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import threading
import time
from pathlib import Path

import docdrop_cli.main as cli
import pytest
from docdrop.cobalt_events import outcome_event_from
from docdrop.contract import UploadFields
from docdrop.evidence import patient_folder_fingerprint
from docdrop.ledger import ObjectRef, Status

from local.samples import pdf_bytes
from tests.support.stream import as_the_stream_does
from tests.uploader.conftest import MRN, UploaderStack, tags


def _lost_answer(stack: UploaderStack, name: str, fault: str = "drop_connection", mrn: str = MRN) -> str:
    """An upload whose connection was lost after sending: NEEDS_REVIEW. Returns its object id."""
    stack.script({"fault": fault})
    stack.put(name, pdf_bytes(name), tags=tags(mrn=mrn))
    stack.drain()
    view = stack.view(name)
    assert view.status == "NEEDS_REVIEW"
    # Cobalt has answered other uploads since: the breaker that one lost answer opened (a cold Cobalt that does not
    # answer is not sent more) is closed again, so what a person sends next goes out at once.
    stack.module.uploader._breaker(None).after_call(False)
    return str(view.object_id)


def _reported_elsewhere(stack: UploaderStack, name: str) -> str:
    """A document Cobalt holds for the same patient and folder, reported by webhook (DocDrop does not know it)."""
    answer = stack.module.uploader._cobalt.upload_document(
        UploadFields(MRN, "MedicalRecords"), name, "application/pdf", pdf_bytes(name)
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = next(
            (r for r in stack.sandbox.events if r["event"]["data"]["document_id"] == answer.document_id), None
        )
        if record:
            break
        time.sleep(0.05)
    assert record is not None
    event = outcome_event_from(record["event"])
    assert event is not None
    key = str(stack.module.fingerprint_key.get()["key"]).encode()
    stack.ledger.record_outcome(
        dataclasses.replace(event, evidence_fingerprint=patient_folder_fingerprint(key, MRN, "MedicalRecords"))
    )
    as_the_stream_does(stack.ledger, str(answer.document_id))
    return str(answer.document_id)


def _cli(stack_file: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main([*args, "--local", str(stack_file)], out=out)
    return code, out.getvalue()


def test_review_shows_each_open_review_with_its_candidates_and_masks_the_mrn(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    stack = uploader_stack
    object_id = _lost_answer(stack, "lost.pdf")
    first, second = _reported_elsewhere(stack, "maybe-1.pdf"), _reported_elsewhere(stack, "maybe-2.pdf")
    stack_file = stack.stack_file(tmp_path)

    code, text = _cli(stack_file, "review", "--json")
    [row] = json.loads(text)
    assert code == 0 and row["object_id"] == object_id and "key" not in row  # a key may hold a name
    assert json.loads(_cli(stack_file, "review", "--json", "--show-keys")[1])[0]["key"] == "inbox/lost.pdf"
    assert {c["document_id"] for c in row["candidates"]} == {first, second}
    assert row["why_not_automatic"] == "2 documents fit: a person must choose"
    assert (row["mrn"] == "****01" and "lost" in row["what_went_wrong"].lower()) or "connection" in row[
        "what_went_wrong"
    ]
    assert json.loads(_cli(stack_file, "review", "--json", "--show-mrn")[1])[0]["mrn"] == MRN
    code, table = _cli(stack_file, "review")
    assert code == 0 and object_id in table and MRN not in table and "docdrop resolve" in table
    assert "lost.pdf" not in table and "lost.pdf" in _cli(stack_file, "review", "--show-keys")[1]


def test_a_person_links_a_review_to_a_document_and_a_second_person_at_once_is_refused(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    stack = uploader_stack
    object_id = _lost_answer(stack, "which.pdf")
    documents = [_reported_elsewhere(stack, "which-a.pdf"), _reported_elsewhere(stack, "which-b.pdf")]
    stack_file = stack.stack_file(tmp_path)
    barrier, codes = threading.Barrier(2), []

    def decide(document_id: str, who: str) -> None:
        barrier.wait()
        codes.append(
            _cli(stack_file, "resolve", object_id, "--filed", document_id, "--by", who, "--reason", "chart")[0]
        )

    threads = [threading.Thread(target=decide, args=(d, w)) for d, w in zip(documents, ("ana", "ben"), strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(codes) == [0, 1]
    item = stack.ledger.get_object_by_id(object_id)
    assert item["status"] == "UPLOADED" and item["document_id"] in documents
    assert item["decided_by"] in ("ana", "ben") and item["reason"].endswith("(chart)")
    assert stack.ledger.get_document(item["document_id"])["object_id"] == object_id
    assert len(stack.uploads()) == 2  # the two documents only: nothing was sent again


def test_not_filed_resend_is_claimed_once_and_reaches_cobalt_once_however_many_people_ask(
    uploader_stack: UploaderStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = uploader_stack
    object_id = _lost_answer(stack, "missing.pdf")  # the connection dropped before Cobalt stored anything
    stack_file = stack.stack_file(tmp_path)
    barrier, codes = threading.Barrier(3), []

    def decide(who: str) -> None:
        barrier.wait()
        codes.append(_cli(stack_file, "resolve", object_id, "--not-filed", "--resend", "--by", who)[0])

    threads = [threading.Thread(target=decide, args=(who,)) for who in ("ana", "ben", "cy")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stack.drain()

    assert sorted(codes) == [0, 1, 1]
    assert [d["filename"] for d in stack.uploads()] == ["missing.pdf"]
    assert stack.view("missing.pdf").status == "SUBMITTED"
    assert _cli(stack_file, "resolve", object_id, "--not-filed", "--resend")[0] == 1  # decided: no longer a review
    assert re.search(r"no object .* in NEEDS_REVIEW", capsys.readouterr().err)
    stack.drain()
    assert len(stack.uploads()) == 1


def test_dismiss_closes_a_review_without_sending_and_records_who_and_why(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    stack = uploader_stack
    object_id = _lost_answer(stack, "test page.pdf")
    stack_file = stack.stack_file(tmp_path)
    code, _ = _cli(stack_file, "resolve", object_id, "--dismiss", "--reason", "a test page", "--by", "ana")
    assert code == 0
    item = stack.ledger.get_object_by_id(object_id)
    assert (item["status"], item["decided_by"], item["reason"]) == ("DISMISSED", "ana", "Dismissed by ana: a test page")
    assert stack.uploads() == []


def _lapse_the_lease(stack: UploaderStack, name: str) -> None:
    """The invocation that holds the claim is known dead: its lease ran out."""
    stack.ledger._client.update_item(
        TableName=stack.module.settings.ledger_table,
        Key={"pk": {"S": f"OBJ#{stack.ref(name).object_id}"}, "sk": {"S": "OBJ"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"S": "2000-01-01T00:00:00.000000+00:00"}},
    )


def test_a_resend_never_posts_a_version_cobalt_accepted_whose_record_failed(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    """Second reading, defect 3: Cobalt returned a document id but the submission write failed, so the uploader kept
    the id on the document's item; the redelivery after the lease marked the version NEEDS_REVIEW, and a person's
    `resolve --not-filed --resend` sent it a second time, since nothing consulted the kept submission."""
    from tests.uploader.test_open_loops import _SubmissionsFail

    stack = uploader_stack
    ledger = stack.module.uploader._ledger
    client = ledger._client
    ledger._client = _SubmissionsFail(client)
    stack.module.uploader._sleep = lambda seconds: None
    stack.put("accepted.pdf", pdf_bytes("accepted, not recorded"), tags=tags())
    stack.drain()
    [sent] = stack.uploads()
    ledger._client = client
    _lapse_the_lease(stack, "accepted.pdf")
    stack.redeliver_failed()
    stack.drain()
    assert stack.view("accepted.pdf").status == "NEEDS_REVIEW"
    stack_file = stack.stack_file(tmp_path)

    code, review = _cli(stack_file, "review", "--json")
    assert code == 0 and [c["document_id"] for c in json.loads(review)[0]["candidates"]] == [sent["document_id"]]
    object_id = str(stack.view("accepted.pdf").object_id)
    code, text = _cli(stack_file, "resolve", object_id, "--not-filed", "--resend", "--by", "ana")
    assert code == 1 and f"Cobalt accepted this version as document {sent['document_id']}" in text
    # Even an approval given (a person's older command, or a race with the kept write): the event records, never sends.
    assert stack.ledger.approve_resend(stack.ref("accepted.pdf"), "checked", "ben", status=Status.NEEDS_REVIEW)
    event_source_put = stack.sqs.send_message
    from docdrop.s3_events import s3_notification

    ref = stack.ref("accepted.pdf")
    event_source_put(
        QueueUrl=stack.queues.queue_url, MessageBody=s3_notification(ref.bucket, ref.key, ref.version_id, 1)
    )
    stack.drain()
    assert len(stack.uploads()) == 1
    item = stack.ledger.get_object(ref)
    assert (item["status"], item["document_id"]) == ("SUBMITTED", sent["document_id"])


def test_a_resend_event_of_a_version_submitted_meanwhile_settles_instead_of_looping(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    """Second reading, defect 6: a person approved a resend, then the slow POST's answer recorded SUBMITTED; the
    approval stayed, the resend's event could neither claim nor settle the version, and it returned to the queue on
    every delivery until the dead-letter queue (a false alarm; a redrive looped again)."""
    stack = uploader_stack
    ref = ObjectRef(stack.bucket, "inbox/slow answer.pdf", stack.put("slow answer.pdf", pdf_bytes("slow"), tags()))
    stack.receive()  # the S3 event is taken by the invocation that is still waiting for Cobalt
    claim = stack.ledger.claim(ref, lease_seconds=0.01)
    time.sleep(0.05)
    assert stack.ledger.mark_interrupted(ref, "interrupted")  # a second delivery found the lease gone
    stack_file = stack.stack_file(tmp_path)
    assert _cli(stack_file, "resolve", ref.object_id, "--not-filed", "--resend", "--by", "ana")[0] == 0
    stack.ledger.record_submission(ref, claim.token, "5550000000000099")  # the slow POST's answer lands

    reports = stack.drain()
    assert [r.failed for r in reports] == [0]  # the resend event settles at once: nothing left to redeliver
    assert stack.ledger.get_object(ref)["status"] == "SUBMITTED" and stack.uploads() == []


def test_a_resent_review_whose_page_an_identical_version_filed_meanwhile_is_a_duplicate(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    """Found by the model-based test: an upload interrupted after its claim (a review), and an identical version (same
    file, patient and folder) sent meanwhile. A person checks the chart for the review's version, does not find it, and
    resends it: the page went into the chart twice, since a person's resend skipped the duplicate check. Now only a
    resend of a DUPLICATE (or a producer's allow_duplicate) is sent anyway; a resent review is checked as any upload
    is."""
    stack = uploader_stack
    page = pdf_bytes("the same page, twice")
    interrupted = ObjectRef(stack.bucket, "inbox/first.pdf", stack.put("first.pdf", page, tags()))
    stack.receive()  # its invocation died after the claim, before anything else
    stack.ledger.claim(interrupted, lease_seconds=0.01)
    time.sleep(0.05)
    assert stack.ledger.mark_interrupted(interrupted, "interrupted")
    stack.put("second.pdf", page, tags())  # the scanner sent the page again
    stack.drain()
    assert [d["filename"] for d in stack.uploads()] == ["second.pdf"]

    stack_file = stack.stack_file(tmp_path)
    assert _cli(stack_file, "resolve", interrupted.object_id, "--not-filed", "--resend", "--by", "ana")[0] == 0
    stack.drain()

    assert [d["filename"] for d in stack.uploads()] == ["second.pdf"]  # the page is in the chart once
    view = stack.view("first.pdf")
    assert view.status == "DUPLICATE" and view.reason.startswith("Identical to inbox/second.pdf")
    assert _cli(stack_file, "resolve", interrupted.object_id, "--resend", "--by", "ana")[0] == 0  # anyway, on purpose
    stack.drain()
    assert sorted(d["filename"] for d in stack.uploads()) == ["first.pdf", "second.pdf"]


def _found_silent(stack: UploaderStack, object_id: str) -> None:
    """What the reconciler keeps on a review it found not filed, by silence (tests/reconciler/test_silence.py)."""
    review = stack.ledger.get_object_by_id(object_id) or {}
    check = {"verdict": "silent", "span_start": "-", "span_end": "-", "log_from": "2026-12-01", "pages": 4}
    assert stack.ledger.note_silence(review, check, "Not filed, by silence")


def test_review_shows_each_reviews_evidence_matched_several_waiting_for_silence_or_silent(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    stack = uploader_stack
    several = _lost_answer(stack, "several.pdf")
    _reported_elsewhere(stack, "several-1.pdf")
    _reported_elsewhere(stack, "several-2.pdf")
    waiting = _lost_answer(stack, "waiting.pdf", mrn="200001")
    silent = _lost_answer(stack, "silent.pdf", mrn="200002")
    _found_silent(stack, silent)
    stack_file = stack.stack_file(tmp_path)

    code, text = _cli(stack_file, "review", "--json", "--silent-after", "72h")
    rows = {r["object_id"]: r for r in json.loads(text)}
    assert code == 0 and rows[several]["evidence"] == "several candidates"
    assert rows[waiting]["evidence"] == "waiting for silence"
    left = float(rows[waiting]["evidence_detail"].split(" h left")[0])
    assert 71.9 <= left <= 72.0  # 72 h from the attempt's end
    assert rows[silent]["evidence"] == "silent" and "4 page(s)" in rows[silent]["evidence_detail"]
    code, text = _cli(stack_file, "review", "--json", "--silent-after", "0s")
    shorter = {r["object_id"]: r for r in json.loads(text)}[waiting]
    assert shorter["evidence"] == "waiting for silence" and shorter["evidence_detail"].startswith("due")
    table = _cli(stack_file, "review")[1]
    assert "waiting for silence" in table and "docdrop resolve --silent --resend" in table


def test_resolve_silent_resend_sends_each_silent_review_once_and_dry_run_sends_nothing(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    stack = uploader_stack
    silent = [_lost_answer(stack, f"silent {i}.pdf", mrn=f"30000{i}") for i in range(2)]
    waiting = _lost_answer(stack, "not yet.pdf", mrn="300009")
    for object_id in silent:
        _found_silent(stack, object_id)
    sent_before = len(stack.uploads())
    stack_file = stack.stack_file(tmp_path)

    code, text = _cli(stack_file, "resolve", "--silent", "--resend", "--dry-run")
    assert code == 0 and text.count("would send") == 2 and "2 silent review(s) would be sent" in text
    stack.drain()
    assert len(stack.uploads()) == sent_before
    assert {stack.ledger.get_object_by_id(i)["status"] for i in silent} == {"NEEDS_REVIEW"}

    code, text = _cli(stack_file, "resolve", "--silent", "--resend", "--by", "ana")
    assert code == 0 and "2 silent review(s) sent once" in text
    stack.drain()
    filenames = [d["filename"] for d in stack.uploads()[sent_before:]]
    assert sorted(filenames) == ["silent 0.pdf", "silent 1.pdf"]
    for object_id in silent:
        item = stack.ledger.get_object_by_id(object_id)
        assert item["status"] == "SUBMITTED" and "silence" not in item
    assert stack.ledger.get_object_by_id(waiting)["status"] == "NEEDS_REVIEW"
    code, text = _cli(stack_file, "resolve", "--silent", "--resend")
    assert code == 0 and "0 silent review(s) sent once" in text
    stack.drain()
    assert len(stack.uploads()) == sent_before + 2


def test_a_silent_review_the_ledger_has_a_candidate_for_since_is_not_resent(
    uploader_stack: UploaderStack, tmp_path: Path
) -> None:
    stack = uploader_stack
    object_id = _lost_answer(stack, "heard of after all.pdf")
    _found_silent(stack, object_id)
    _reported_elsewhere(stack, "its document, late.pdf")  # an outcome of its patient and folder, in its window
    stack_file = stack.stack_file(tmp_path)
    sent_before = len(stack.uploads())

    code, text = _cli(stack_file, "resolve", "--silent", "--resend")

    assert code == 0 and f"{object_id}: skipped" in text
    stack.drain()
    assert len(stack.uploads()) == sent_before
    assert stack.ledger.get_object_by_id(object_id)["status"] == "NEEDS_REVIEW"


@pytest.mark.parametrize(
    "args", [["--silent"], ["--silent", "--resend", "some-object-id"], ["some-object-id", "--resend", "--dry-run"]]
)
def test_resolve_silent_takes_resend_and_no_object_and_dry_run_only_with_it(
    uploader_stack: UploaderStack, tmp_path: Path, args: list[str]
) -> None:
    assert _cli(uploader_stack.stack_file(tmp_path), "resolve", *args)[0] == 2

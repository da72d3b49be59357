"""The likeliest real duplicate: the same bytes put twice (an SDK retrying PutObject, a scanner re-sending). Two
versions are two documents for promise 1, but a clinic sees the same page twice in a chart: a version identical in
file, patient and folder to one sent within the window is not sent (DUPLICATE), unless a producer or person says so."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import docdrop_cli.main as cli
import pytest
from docdrop.ledger import Status

from local.samples import pdf_bytes
from tests.uploader.conftest import MRN, UploaderStack, tags


def test_the_same_file_patient_and_folder_put_twice_is_sent_once(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    page = pdf_bytes("referral page 1")
    stack.put("scan.pdf", page, tags=tags())
    stack.drain()
    stack.put("scan (1).pdf", page, tags=tags())  # the scanner sent it again
    stack.drain()

    assert [d["filename"] for d in stack.uploads()] == ["scan.pdf"]
    second = stack.view("scan (1).pdf")
    assert second.status == Status.DUPLICATE
    assert second.reason.startswith(f"Identical to inbox/scan.pdf (version {stack.versions['inbox/scan.pdf']})")
    assert "allow_duplicate=true" in second.reason and "docdrop resolve --resend" in second.reason


def test_the_same_key_put_again_with_the_same_bytes_is_a_duplicate_too(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    page = pdf_bytes("retried put")
    first = stack.put("retried.pdf", page, tags=tags())
    stack.drain()
    second = stack.put("retried.pdf", page, tags=tags())  # an SDK retried PutObject after a timeout: a new version
    stack.drain()
    assert len(stack.uploads()) == 1
    assert stack.view("retried.pdf", first).status == Status.SUBMITTED
    assert stack.view("retried.pdf", second).status == Status.DUPLICATE


@pytest.mark.parametrize(
    "other", [tags(mrn="100002"), tags(folder="MedicalRecords/Other"), tags(allow_duplicate="true")]
)
def test_another_patient_or_folder_or_allow_duplicate_sends_it_again(uploader_stack: UploaderStack, other) -> None:
    stack = uploader_stack
    page = pdf_bytes("same page")
    stack.put("a.pdf", page, tags=tags())
    stack.drain()
    stack.put("b.pdf", page, tags=other)
    stack.drain()
    assert sorted(d["filename"] for d in stack.uploads()) == ["a.pdf", "b.pdf"]


def test_identical_versions_racing_in_one_batch_send_exactly_one(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    page = pdf_bytes("racing copies")
    for i in range(6):
        stack.put(f"copy-{i}.pdf", page, tags=tags())
    stack.drain()
    assert len(stack.uploads()) == 1
    statuses = sorted(stack.view(f"copy-{i}.pdf").status for i in range(6))
    assert statuses == [Status.DUPLICATE] * 5 + [Status.SUBMITTED]


def test_after_the_window_the_same_file_is_sent_again(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    stack.module.uploader._duplicate_window = timedelta(seconds=1)
    page = pdf_bytes("monthly form")
    stack.put("form.pdf", page, tags=tags())
    stack.drain()
    time.sleep(1.2)
    stack.put("form again.pdf", page, tags=tags())
    stack.drain()
    assert len(stack.uploads()) == 2


def test_the_fingerprint_never_holds_the_mrn_in_clear(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    stack.put("fp.pdf", pdf_bytes("fingerprint"), tags=tags(mrn="MRN-5566778899"))
    stack.drain()
    items = stack.ledger._client.scan(TableName=stack.module.settings.ledger_table)["Items"]
    fingerprints = [i for i in items if i["pk"]["S"].startswith("FP#")]
    assert len(fingerprints) == 1 and "MRN-5566778899" not in json.dumps(items)


def test_a_person_can_send_a_duplicate_once_with_resolve_resend(
    uploader_stack: UploaderStack, tmp_path, capsys
) -> None:
    stack = uploader_stack
    page = pdf_bytes("needed twice")
    stack.put("needed.pdf", page, tags=tags())
    stack.drain()
    stack.put("needed copy.pdf", page, tags=tags())
    stack.drain()
    assert stack.view("needed copy.pdf").status == Status.DUPLICATE
    stack_file = stack.stack_file(tmp_path)
    args = ["resolve", "--resend", "--key", "inbox/needed copy.pdf", "--local", str(stack_file)]
    assert cli.main(args, out=io.StringIO()) == 0
    stack.drain()
    assert sorted(d["filename"] for d in stack.uploads()) == ["needed copy.pdf", "needed.pdf"]
    assert stack.view("needed copy.pdf").status == Status.SUBMITTED
    assert cli.main(args, out=io.StringIO()) == 1  # once: it is no longer a duplicate
    assert "0 versions of that key in DUPLICATE or NEEDS_REVIEW" in capsys.readouterr().err
    assert MRN not in stack.view("needed copy.pdf").reason


def test_the_same_file_put_again_after_cobalt_refused_it_is_sent_again(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    page = pdf_bytes("assigned to the wrong staff id")
    stack.script({"status": 400, "body": {"success": False, "message": "Staff member not found"}})
    stack.put("assigned.pdf", page, tags=tags(emr_assigned_to_id="staff-999"))
    stack.drain()
    assert stack.view("assigned.pdf").status == Status.FAILED
    stack.put("assigned fixed.pdf", page, tags=tags(emr_assigned_to_id="staff-001"))  # the README's remedy
    stack.drain()
    assert stack.view("assigned fixed.pdf").status == Status.SUBMITTED


def test_two_identical_versions_racing_past_a_refused_one_send_exactly_one(
    uploader_stack: UploaderStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second reading, defect 2: version 1 FAILED; versions 2 and 3 (identical) arrive in one batch, both find version
    1 holding the fingerprint, and both learn it was never filed before either takes it over. Only one may go out."""
    import threading

    stack = uploader_stack
    page = pdf_bytes("refused, then sent twice by the SDK")
    stack.script({"status": 400, "body": {"success": False, "message": "Staff member not found"}})
    stack.put("v1.pdf", page, tags=tags())
    stack.drain()
    assert stack.view("v1.pdf").status == Status.FAILED
    uploader = stack.module.uploader
    both_read = threading.Barrier(2, timeout=20)
    never_filed = uploader._never_filed

    waited: set[int] = set()

    def in_step(holder: dict[str, object]) -> bool:
        answer: bool = never_filed(holder)
        if threading.get_ident() not in waited:  # each has read the refused holder before either takes it over
            waited.add(threading.get_ident())
            both_read.wait()
        return answer

    monkeypatch.setattr(uploader, "_never_filed", in_step)
    stack.put("v2.pdf", page, tags=tags())
    stack.put("v3.pdf", page, tags=tags())
    stack.drain()

    assert [d["filename"] for d in stack.uploads()] in (["v2.pdf"], ["v3.pdf"])
    assert sorted([stack.view("v2.pdf").status, stack.view("v3.pdf").status]) == [Status.DUPLICATE, Status.SUBMITTED]

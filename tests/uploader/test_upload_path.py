"""The upload path end to end on local servers: S3 notification → SQS → uploader → Cobalt sandbox → ledger.

Uploads are counted in the sandbox (`/_sandbox/documents`), which is what "at most once into the EMR" is about.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest
from docdrop.ledger import CLAIMED_AGAIN_REASON, DocumentLedger, Status
from docdrop.s3_events import s3_notification

from local.cobalt_sandbox import FaultSettings
from local.samples import jpeg_bytes, pdf_bytes, png_bytes
from tests.uploader.conftest import MRN, UploaderStack, tags

NOTES = "Faxed by Dr. Example's office; second page is the lab panel. " * 15  # 900 characters, in metadata


def test_each_file_type_uploads_once_with_every_optional_field(uploader_stack: UploaderStack) -> None:
    files = {"scan.pdf": pdf_bytes(), "photo.jpg": jpeg_bytes(), "chart.png": png_bytes()}
    optional = {"emr_assigned_to_id": "staff-001", "is_reviewed": "yes", "is_high_priority": "1"}
    for name, content in files.items():
        uploader_stack.put(name, content, tags(folder="MedicalRecords/LabResults", **optional), {"notes": NOTES})

    reports = uploader_stack.drain()

    assert sum(r.failed for r in reports) == 0
    uploads = {u["filename"]: u for u in uploader_stack.uploads()}
    assert sorted(uploads) == sorted(files)
    for name, content_type in (
        ("scan.pdf", "application/pdf"),
        ("photo.jpg", "image/jpeg"),
        ("chart.png", "image/png"),
    ):
        upload = uploads[name]
        assert upload["content_type"] == content_type
        assert upload["byte_size"] == len(files[name])
        assert upload["fields"] == {
            "patient_mrn": MRN,
            "folder_name": "MedicalRecords/LabResults",
            "emr_assigned_to_id": "staff-001",
            "is_reviewed": "true",
            "is_high_priority": "true",
            "notes": NOTES,
        }
        view = uploader_stack.view(name)
        assert view.status == Status.SUBMITTED
        assert view.document_id == upload["document_id"]


@pytest.mark.parametrize(
    ("content", "given", "metadata", "reason"),
    [
        (b"hello, plain text", tags(), None, "not a PDF, JPEG or PNG"),
        (b"", tags(), None, "File is empty"),
        (pdf_bytes(size=5 * 1024 * 1024 + 1), tags(), None, "Cobalt accepts at most 5.0 MB"),
        (pdf_bytes(), tags(), {"notes": "x" * 1001}, "notes are 1001 characters"),
        (pdf_bytes(), tags(folder="/MedicalRecords"), None, "must not start or end with /"),
        (pdf_bytes(), tags(folder="Medical//Records"), None, "empty segment"),
        (pdf_bytes(), tags(folder="Medical/../Records"), None, "must not contain . or .. segments"),
        (pdf_bytes(), tags(is_reviewed="maybe"), None, "is_reviewed must be true or false"),
        (pdf_bytes(), {**tags(), "Patient-MRN": "999999"}, None, "Two tags name patient_mrn"),
    ],
    ids=[
        "wrong-type",
        "empty",
        "oversize",
        "long-notes",
        "folder-slash",
        "folder-empty",
        "folder-dotdot",
        "boolean",
        "conflict",
    ],
)
def test_each_refusal_is_rejected_with_its_reason_and_never_sent(
    uploader_stack: UploaderStack, content: bytes, given: dict[str, str], metadata: dict[str, str] | None, reason: str
) -> None:
    uploader_stack.put("refused.pdf", content, given, metadata)

    reports = uploader_stack.drain()

    view = uploader_stack.view("refused.pdf")
    assert (view.status, reason in (view.reason or "")) == (Status.REJECTED, True), view.reason
    assert uploader_stack.uploads() == []
    assert sum(r.failed for r in reports) == 0


def test_tags_added_after_the_object_resume_it(uploader_stack: UploaderStack) -> None:
    uploader_stack.put("late.pdf", pdf_bytes(), {"patient_mrn": MRN})
    uploader_stack.drain()
    waiting = uploader_stack.view("late.pdf")
    assert waiting.status == Status.WAITING_FOR_TAGS
    assert "folder_name" in (waiting.reason or "") and "patient_mrn" not in (waiting.reason or "")

    uploader_stack.tag("late.pdf", tags())
    uploader_stack.drain()

    assert uploader_stack.view("late.pdf").status == Status.SUBMITTED
    assert len(uploader_stack.uploads()) == 1


def test_the_same_event_delivered_twice_uploads_once(uploader_stack: UploaderStack) -> None:
    uploader_stack.put("twice.pdf", pdf_bytes(), tags())
    messages = [m for m in uploader_stack.receive() if "TestEvent" not in m["Body"]]

    first = uploader_stack.invoke(messages)
    second = uploader_stack.invoke(messages)
    together = uploader_stack.invoke(messages + messages)  # and twice within one batch

    assert first == second == together == {"batchItemFailures": []}
    assert len(uploader_stack.uploads()) == 1
    assert uploader_stack.view("twice.pdf").status == Status.SUBMITTED


def test_two_invocations_racing_on_one_message_upload_once(uploader_stack: UploaderStack) -> None:
    uploader_stack.put("race.pdf", pdf_bytes(), tags())
    messages = [m for m in uploader_stack.receive() if "TestEvent" not in m["Body"]]
    uploader_stack.script({"fault": "slow_after_accept"}, slow_seconds=0.5)  # keep the winner's claim open a while
    start = threading.Barrier(4)
    results: list[dict[str, Any]] = []

    def invoke() -> None:
        start.wait()
        results.append(uploader_stack.invoke(messages))

    threads = [threading.Thread(target=invoke) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(uploader_stack.uploads()) == 1
    assert uploader_stack.view("race.pdf").status == Status.SUBMITTED
    # The losers returned the message to the queue; once redelivered it is recognised as done.
    assert sum(1 for r in results if r["batchItemFailures"]) >= 1
    assert uploader_stack.invoke(messages) == {"batchItemFailures": []}
    assert len(uploader_stack.uploads()) == 1


@pytest.mark.parametrize("fault", ["http_429", "http_503"])
def test_a_blip_of_unavailable_cobalt_is_retried_once_in_the_invocation_and_the_document_uploaded_once(
    uploader_stack: UploaderStack, fault: str
) -> None:
    uploader_stack.script({"fault": fault})
    uploader_stack.put("retry.pdf", pdf_bytes(), tags())

    reports = uploader_stack.drain()

    assert sum(r.failed for r in reports) == 0
    assert len(uploader_stack.uploads()) == 1
    view = uploader_stack.view("retry.pdf")
    assert view.status == Status.SUBMITTED
    assert [h["status"] for h in view.history] == ["RECEIVED", "SUBMITTED"]


def test_unavailable_beyond_the_invocation_returns_the_message_then_uploads_once(uploader_stack: UploaderStack) -> None:
    uploader_stack.script(*[{"fault": "http_503"}] * 2)  # both attempts of the first invocation
    uploader_stack.put("later.pdf", pdf_bytes(), tags())

    first = uploader_stack.drain()
    assert sum(r.failed for r in first) >= 1  # the message (or both, when S3 sent the event twice) returns
    assert uploader_stack.view("later.pdf").status == Status.PENDING_RETRY
    assert uploader_stack.uploads() == []

    uploader_stack.redeliver_failed()
    uploader_stack.drain()

    assert uploader_stack.view("later.pdf").status == Status.SUBMITTED
    assert len(uploader_stack.uploads()) == 1


@pytest.mark.parametrize(
    ("answer", "sent"),
    [
        ({"fault": "slow_after_accept"}, 1),
        ({"fault": "drop_connection"}, 0),
        ({"status": 500, "body": {}}, 0),
        ({"fault": "http_504_after_store"}, 1),
        ({"fault": "http_502_after_store"}, 1),
    ],
    ids=["slow-after-accept", "connection-dropped", "http-500", "gateway-504-after-store", "gateway-502-after-store"],
)
def test_an_ambiguous_answer_needs_review_and_is_never_sent_again(
    uploader_stack: UploaderStack, answer: dict[str, Any], sent: int
) -> None:
    uploader_stack.script(answer, slow_seconds=4.0)
    uploader_stack.put("ambiguous.pdf", pdf_bytes(), tags())
    messages = [m for m in uploader_stack.receive() if "TestEvent" not in m["Body"]]

    assert uploader_stack.invoke(messages) == {"batchItemFailures": []}
    assert uploader_stack.invoke(messages) == {"batchItemFailures": []}  # redelivered: still not sent again

    view = uploader_stack.view("ambiguous.pdf")
    assert view.status == Status.NEEDS_REVIEW
    assert "may or may not be" in (view.reason or "")
    assert len(uploader_stack.uploads()) == sent  # the slow one was stored by Cobalt: exactly one copy


def test_login_required_blocks_until_relinked_then_tagging_again_sends_it(uploader_stack: UploaderStack) -> None:
    uploader_stack.sandbox.set_login_required("clinic-main", True)
    uploader_stack.put("blocked.pdf", pdf_bytes(), tags())

    reports = uploader_stack.drain()

    assert sum(r.failed for r in reports) == 0  # no retry storm: the message is consumed
    view = uploader_stack.view("blocked.pdf")
    assert view.status == Status.BLOCKED and "login_required" in (view.reason or "")
    assert uploader_stack.uploads() == []

    uploader_stack.sandbox.set_login_required("clinic-main", False)
    uploader_stack.tag("blocked.pdf", tags())
    uploader_stack.drain()

    assert uploader_stack.view("blocked.pdf").status == Status.SUBMITTED
    assert len(uploader_stack.uploads()) == 1


def test_a_400_is_failed_with_cobalts_message(uploader_stack: UploaderStack) -> None:
    uploader_stack.script({"status": 400, "body": {"success": False, "message": "Invalid folder_name: NoSuchFolder"}})
    uploader_stack.put("bad.pdf", pdf_bytes(), tags(folder="NoSuchFolder"))

    reports = uploader_stack.drain()

    assert sum(r.failed for r in reports) == 0
    view = uploader_stack.view("bad.pdf")
    assert view.status == Status.FAILED
    assert view.reason == "Cobalt refused the document (HTTP 400): Invalid folder_name: NoSuchFolder"


def test_a_new_version_of_the_same_key_is_uploaded_again(uploader_stack: UploaderStack) -> None:
    first = uploader_stack.put("same.pdf", pdf_bytes("first"), tags())
    uploader_stack.drain()
    second = uploader_stack.put("same.pdf", pdf_bytes("second"), tags())
    uploader_stack.drain()

    assert first != second
    assert len(uploader_stack.uploads()) == 2
    assert uploader_stack.view("same.pdf", first).document_id != uploader_stack.view("same.pdf", second).document_id


@pytest.mark.parametrize(
    "name",
    [
        "a scan with spaces.pdf",
        "lab+results+2025.pdf",
        "Ünïcødé/Résumé — 東京.pdf",
        "2025/11/23/clinic-a/fax/line 2/p+1.pdf",
    ],
)
def test_keys_with_spaces_plus_unicode_and_deep_prefixes_upload(uploader_stack: UploaderStack, name: str) -> None:
    uploader_stack.put(name, pdf_bytes(), tags())

    uploader_stack.drain()

    assert [u["filename"] for u in uploader_stack.uploads()] == [name.rsplit("/", 1)[-1]]
    assert uploader_stack.view(name).key == "inbox/" + name
    assert uploader_stack.view(name).status == Status.SUBMITTED


def test_an_upload_interrupted_after_its_post_started_needs_review_and_is_not_sent(
    uploader_stack: UploaderStack,
) -> None:
    version = uploader_stack.put("crashed.pdf", pdf_bytes(), tags())
    ledger: DocumentLedger = uploader_stack.ledger
    ref = uploader_stack.ref("crashed.pdf", version)
    claim = ledger.claim(ref, lease_seconds=0)
    assert claim.won and ledger.mark_post_started(ref, claim.token)  # a holder that died with its POST out

    uploader_stack.drain()

    view = uploader_stack.view("crashed.pdf")
    assert view.status == Status.NEEDS_REVIEW and "interrupted" in (view.reason or "")
    assert uploader_stack.uploads() == []


def test_an_upload_whose_holder_died_before_its_post_is_sent_once_by_the_redelivery_and_never_reviewed(
    uploader_stack: UploaderStack,
) -> None:
    """#28 item 4: a worker killed mid-batch leaves claims whose POST never started; they are not reviews."""
    version = uploader_stack.put("killed early.pdf", pdf_bytes(), tags())
    ledger: DocumentLedger = uploader_stack.ledger
    ref = uploader_stack.ref("killed early.pdf", version)
    dead = ledger.claim(ref, lease_seconds=0)  # died after its claim, before its POST

    uploader_stack.drain()

    assert [u["filename"] for u in uploader_stack.uploads()] == ["killed early.pdf"]
    assert uploader_stack.view("killed early.pdf").status == Status.SUBMITTED
    assert not ledger.mark_post_started(ref, dead.token)  # the dead holder, were it only slow, may not POST now
    history = [h["reason"] for h in ledger.history(ref.object_id)]
    assert CLAIMED_AGAIN_REASON in history


def test_a_version_deleted_after_a_claim_that_never_posted_is_refused_not_left_claimed(
    uploader_stack: UploaderStack,
) -> None:
    version = uploader_stack.put("deleted meanwhile.pdf", pdf_bytes(), tags())
    ledger: DocumentLedger = uploader_stack.ledger
    ref = uploader_stack.ref("deleted meanwhile.pdf", version)
    ledger.claim(ref, lease_seconds=0)  # died before its POST; then the producer deleted the version
    uploader_stack.s3.delete_object(Bucket=ref.bucket, Key=ref.key, VersionId=ref.version_id)
    # The event that names the version: S3's own, or the one the reconciler puts for a claim that never posted.
    body = s3_notification(ref.bucket, ref.key, ref.version_id, 1)
    uploader_stack.sqs.send_message(QueueUrl=uploader_stack.queues.queue_url, MessageBody=body)

    uploader_stack.drain()

    view = uploader_stack.view("deleted meanwhile.pdf")
    assert view.status == Status.REJECTED and "deleted" in (view.reason or "")
    assert uploader_stack.uploads() == []


def test_a_slow_holder_whose_lease_lapsed_never_posts_once_a_redelivery_claimed_the_version_again(
    uploader_stack: UploaderStack,
) -> None:
    """The fence both ways: the redelivery's claim and the slow holder's start cannot both win, so only one POSTs."""
    version = uploader_stack.put("slow.pdf", pdf_bytes(), tags())
    ledger: DocumentLedger = uploader_stack.ledger
    ref = uploader_stack.ref("slow.pdf", version)
    slow = ledger.claim(ref, lease_seconds=0)
    taken = ledger.claim(ref, lease_seconds=0)
    assert taken.won and taken.previous_status == Status.RECEIVED.value
    assert not ledger.mark_post_started(ref, slow.token)
    assert ledger.mark_post_started(ref, taken.token)
    assert not ledger.claim(ref, lease_seconds=60).won  # started: nobody claims it again, even after its lease


def test_a_message_that_is_not_an_s3_notification_returns_to_the_queue(uploader_stack: UploaderStack) -> None:
    message = {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": "not json", "Attributes": {}}
    assert uploader_stack.invoke([message]) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}


def test_no_log_line_or_metric_of_a_run_carries_an_mrn_notes_or_object_key(
    uploader_stack: UploaderStack, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import logging
    from urllib.parse import quote, quote_plus

    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(uploader_stack.module.logger.registered_formatter)
    uploader_stack.module.logger.addHandler(capture)
    root = logging.getLogger()
    everything = logging.StreamHandler(stream)  # every other library's records, at the level Lambda runs at
    everything.setLevel(logging.INFO)
    root.addHandler(everything)
    mrn, notes, name = "MRN-778899", "Patient Jane Roe has a rash", "Jane Roe 1970-01-01 referral.pdf"
    try:
        uploader_stack.script({"status": 400, "body": {"success": False, "message": f"Patient {mrn} not found"}})
        uploader_stack.put(name, pdf_bytes(), tags(mrn=mrn), {"notes": notes})
        uploader_stack.put("rejected/" + name, pdf_bytes(), tags(mrn=mrn, is_reviewed="perhaps"), {"notes": notes})
        uploader_stack.put("waiting/" + name, pdf_bytes(), {"patient_mrn": mrn}, {"notes": notes})
        uploader_stack.drain()
        uploader_stack.script({"status": 500, "body": {"message": f"crash while filing {mrn}"}})
        uploader_stack.put("ambiguous/" + name, pdf_bytes("ambiguous"), tags(mrn=mrn), {"notes": notes})
        uploader_stack.drain()
        uploader_stack.put("filed/" + name, pdf_bytes("filed"), tags(mrn=mrn), {"notes": notes})
        uploader_stack.drain()
    finally:
        uploader_stack.module.logger.removeHandler(capture)
        root.removeHandler(everything)
    logged = stream.getvalue()
    output = logged + "\n".join(capsys.readouterr())

    statuses = {uploader_stack.view(n).status for n in (name, "rejected/" + name, "waiting/" + name, "filed/" + name)}
    assert statuses == {Status.FAILED, Status.REJECTED, Status.WAITING_FOR_TAGS, Status.SUBMITTED}
    assert uploader_stack.view("ambiguous/" + name).status == Status.NEEDS_REVIEW
    answered = [line for line in logged.splitlines() if line.startswith("{") and "cobalt answered" in line]
    assert len(answered) == 3 and '"DocumentsSubmitted"' in output  # the capture saw the run
    for secret in (mrn, notes, "Jane Roe", quote(name), quote_plus(name), "referral"):
        assert secret not in output


def _throttled_once(stack: UploaderStack, monkeypatch: pytest.MonkeyPatch, retry_after: int) -> list[float]:
    """Cobalt answers the next upload 429 with `Retry-After`; returns the uploader's sleeps (slept: the breaker shared
    by every invocation holds uploads back until the Retry-After has passed)."""
    stack.sandbox.set_faults(FaultSettings(script=[{"fault": "http_429"}], retry_after_seconds=retry_after))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(stack.module.uploader, "_sleep", sleep)
    return sleeps


def test_retry_after_is_honoured_before_the_next_attempt(
    uploader_stack: UploaderStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps = _throttled_once(uploader_stack, monkeypatch, retry_after=2)
    uploader_stack.put("throttled.pdf", pdf_bytes(), tags())

    uploader_stack.drain()

    assert len(sleeps) == 1 and sleeps[0] >= 2
    assert len(uploader_stack.uploads()) == 1


def test_no_retry_is_started_that_the_invocation_could_not_finish(
    uploader_stack: UploaderStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps = _throttled_once(uploader_stack, monkeypatch, retry_after=30)
    uploader_stack.put("short.pdf", pdf_bytes(), tags())
    messages = [m for m in uploader_stack.receive() if "TestEvent" not in m["Body"]]

    result = uploader_stack.invoke(messages, timeout_seconds=15)  # 30 s Retry-After cannot fit in 15 s

    assert sleeps == [] and len(result["batchItemFailures"]) == len(messages)
    assert uploader_stack.view("short.pdf").status == Status.PENDING_RETRY
    reason = uploader_stack.view("short.pdf").reason or ""
    assert "attempt 1, tried again at" in reason  # no sooner than the Retry-After: the message waits 30 s or more
    item = uploader_stack.ledger.get_object(uploader_stack.ref("short.pdf"))
    assert item["retry_attempts"] == 1
    waited = datetime.fromisoformat(item["next_attempt_at"]) - datetime.fromisoformat(item["status_at"])
    assert waited.total_seconds() >= 29


def test_an_invocation_that_saw_only_s3_test_events_publishes_nothing_and_warns_nothing(
    uploader_stack: UploaderStack, capsys: pytest.CaptureFixture[str]
) -> None:
    import json as json_module
    import warnings

    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": uploader_stack.bucket}
    uploader_stack.receive()  # whatever the bucket's set-up left on the queue
    uploader_stack.sqs.send_message(QueueUrl=uploader_stack.queues.queue_url, MessageBody=json_module.dumps(test_event))
    messages = uploader_stack.receive()
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = uploader_stack.invoke(messages)
    assert result == {"batchItemFailures": []}
    assert [str(w.message) for w in caught if "metrics" in str(w.message)] == []
    assert '"_aws"' not in capsys.readouterr().out  # no empty EMF document either


def test_an_invocation_with_too_little_time_left_returns_the_message_unclaimed_and_says_why(
    uploader_stack: UploaderStack,
) -> None:
    import io
    import logging

    uploader_stack.put("late in the batch.pdf", pdf_bytes(), tags())
    messages = [m for m in uploader_stack.receive() if "TestEvent" not in m["Body"]]
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(uploader_stack.module.logger.registered_formatter)
    uploader_stack.module.logger.addHandler(capture)
    try:
        result = uploader_stack.invoke(messages, timeout_seconds=3)  # less than one attempt needs
    finally:
        uploader_stack.module.logger.removeHandler(capture)

    assert messages and len(result["batchItemFailures"]) == len(messages)
    assert uploader_stack.uploads() == []
    assert uploader_stack.ledger.get_object(uploader_stack.ref("late in the batch.pdf")) is None  # not claimed
    logged = stream.getvalue()
    said = [line for line in logged.splitlines() if "too little time left" in line]
    assert said and all(uploader_stack.ref("late in the batch.pdf").object_id in line for line in said)
    assert "late in the batch" not in logged and "late+in+the+batch" not in logged

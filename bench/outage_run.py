"""`make outage`: 500 documents through the local stack with a Cobalt outage in the middle (every upload answered 503
for a stretch), on a compressed clock (`--time-scale 60`: the retry schedule's hour is a minute). Prints the Cobalt
calls made during the outage (the breaker's probes, not one call per document), the documents in the dead-letter queue
(claim: 0), the documents uploaded twice (claim: 0), the time from Cobalt's return to an empty backlog, and the pace
of the drain (calls a second). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import boto3
from docdrop.ledger import OPEN, DocumentLedger, Status

from bench.settling import status_counts
from local.cobalt_sandbox import FaultSettings
from local.samples import pdf_bytes
from local.stack import LocalStack, StackOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=500)
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--outage-seconds", type=float, default=60.0, help="real seconds of all-503 (x scale)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    options = StackOptions(
        state_dir=Path(tempfile.mkdtemp(prefix="docdrop-outage-")),
        processing_delay_seconds=0.2,
        batching_window_seconds=0,
        reconcile_every_seconds=3600,
        time_scale=args.time_scale,
    )
    with LocalStack(options) as stack:
        info, sandbox = stack.info, stack.sandbox
        assert info is not None and sandbox is not None
        s3 = boto3.client("s3", endpoint_url=info.aws_endpoint_url, region_name=info.region)
        sqs = boto3.client("sqs", endpoint_url=info.aws_endpoint_url, region_name=info.region)
        ledger = DocumentLedger(
            boto3.client("dynamodb", endpoint_url=info.dynamodb_endpoint_url, region_name=info.region), info.table
        )
        sandbox.config.patients.extend({"mrn": f"3{i:05d}"} for i in range(args.documents))

        def drop(i: int) -> None:
            s3.put_object(
                Bucket=info.bucket,
                Key=f"{info.prefix}outage/{i:05d}.pdf",
                Body=pdf_bytes(f"outage {i}"),
                Tagging=urlencode({"patient_mrn": f"3{i:05d}", "folder_name": "MedicalRecords"}),
            )

        def calls() -> int:
            return len(sandbox.fault_log)

        started = time.monotonic()
        third = args.documents // 3
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(drop, range(third)))  # a third before the outage
            sandbox.set_faults(FaultSettings(http_503=1.0))
            outage_started, calls_before = time.monotonic(), calls()
            print(
                f"Cobalt down at {outage_started - started:.0f} s, for {args.outage_seconds:g} s "
                f"({args.outage_seconds * args.time_scale / 3600:g} h at this scale)",
                flush=True,
            )
            list(pool.map(drop, range(third, args.documents)))  # the rest during the outage
        time.sleep(max(0.0, args.outage_seconds - (time.monotonic() - outage_started)))
        calls_during = calls() - calls_before
        sandbox.set_faults(FaultSettings())
        back = time.monotonic()
        print(f"Cobalt back at {back - started:.0f} s; {calls_during} calls reached it while it was down", flush=True)

        per_second: Counter[int] = Counter()
        stop = threading.Event()

        def count_pace() -> None:
            seen = calls()
            while not stop.wait(1.0):
                now = calls()
                per_second[int(time.monotonic() - back)] = now - seen
                seen = now

        pacer = threading.Thread(target=count_pace, daemon=True)
        pacer.start()
        empty = None
        while time.monotonic() - back < args.timeout:
            counts = status_counts(ledger)
            if (
                sum(counts[s] for s in OPEN if s is not Status.SUBMITTED) == 0
                and counts[Status.UPLOADED] >= args.documents
            ):
                empty = time.monotonic() - back
                break
            time.sleep(1.0)
        stop.set()
        counts = status_counts(ledger)
        dlq = int(
            sqs.get_queue_attributes(QueueUrl=info.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        copies = Counter(d["filename"] for d in sandbox._public_documents())
        busiest = max(per_second.values(), default=0)
        print()
        print(f"documents dropped:                      {args.documents} ({args.documents - third} during the outage)")
        print("ended:                                  " + ", ".join(f"{s.value} {n}" for s, n in counts.items() if n))
        print(f"Cobalt calls during the outage:         {calls_during}")
        print(f"documents in the dead-letter queue:     {dlq}")
        print(f"documents uploaded twice:               {sum(1 for n in copies.values() if n > 1)}")
        took = (
            f"{empty:.0f} s ({empty * args.time_scale / 60:.0f} min at this scale)" if empty else "not within timeout"
        )
        print(f"Cobalt's return -> empty backlog:       {took}")
        print(
            f"drain pace:                             at most {busiest} calls in a second "
            f"(one batch of 10 at a time locally; MaximumConcurrency batches on AWS)"
        )
    return 0 if empty is not None and dlq == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

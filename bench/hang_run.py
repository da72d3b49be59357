"""`make hang`: Cobalt accepts connections and never answers (every upload times out) for 10 minutes while 300
documents are dropped, through the local stack, on a compressed clock (`--time-scale 10`: the read timeout, the
breaker's cool-downs and the retry schedule are all divided by it). Prints how many documents ended NEEDS_REVIEW (a
person's work each; goal: at most 10), how many Cobalt calls the hang took, and how the rest ended once Cobalt answers
again. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import boto3
from docdrop.ledger import DocumentLedger, Status

from bench.settling import status_counts, wait_until_closed
from local.cobalt_sandbox import FaultSettings
from local.samples import pdf_bytes
from local.stack import LocalStack, StackOptions

READ_TIMEOUT_SECONDS = 30.0  # the uploader's COBALT_READ_TIMEOUT default (docdrop.settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--hang-minutes", type=float, default=10.0, help="how long Cobalt hangs, before the scale")
    parser.add_argument("--time-scale", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    read_timeout = READ_TIMEOUT_SECONDS / args.time_scale
    os.environ["COBALT_READ_TIMEOUT"] = f"{read_timeout:g}"  # the functions' environment is this process's
    hang_seconds = args.hang_minutes * 60 / args.time_scale
    options = StackOptions(
        state_dir=Path(tempfile.mkdtemp(prefix="docdrop-hang-")),
        processing_delay_seconds=0.2,
        batching_window_seconds=0,
        reconcile_every_seconds=3600,  # no pass during the run: the reviews counted are the uploader's own
        time_scale=args.time_scale,
    )
    with LocalStack(options) as stack:
        info, sandbox = stack.info, stack.sandbox
        assert info is not None and sandbox is not None
        s3 = boto3.client("s3", endpoint_url=info.aws_endpoint_url, region_name=info.region)
        ledger = DocumentLedger(
            boto3.client("dynamodb", endpoint_url=info.dynamodb_endpoint_url, region_name=info.region), info.table
        )
        sandbox.config.patients.extend({"mrn": f"4{i:05d}"} for i in range(args.documents))

        def drop(i: int) -> None:
            s3.put_object(
                Bucket=info.bucket,
                Key=f"{info.prefix}hang/{i:05d}.pdf",
                Body=pdf_bytes(f"hang {i}"),
                Tagging=urlencode({"patient_mrn": f"4{i:05d}", "folder_name": "MedicalRecords"}),
            )

        # Hangs: Cobalt takes every upload and answers after three read timeouts, long after the uploader gave up.
        sandbox.set_faults(FaultSettings(slow_after_accept=1.0, slow_seconds=read_timeout * 3))
        started = time.monotonic()
        print(
            f"Cobalt hangs for {hang_seconds:g} s ({args.hang_minutes:g} min at this scale; read timeout "
            f"{read_timeout:g} s); dropping {args.documents} documents",
            flush=True,
        )
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(drop, range(args.documents)))
        time.sleep(max(0.0, hang_seconds - (time.monotonic() - started)))
        calls_during = len(sandbox.fault_log)
        reviews_during = status_counts(ledger)[Status.NEEDS_REVIEW]
        sandbox.set_faults(FaultSettings())
        print(f"Cobalt answers again at {time.monotonic() - started:.0f} s", flush=True)
        closed = wait_until_closed(ledger, args.documents, started, args.timeout)
        counts = status_counts(ledger)
        copies = Counter(d["filename"] for d in sandbox._public_documents())
        print()
        print(f"documents dropped during the hang:      {args.documents}")
        print(f"Cobalt calls during the hang:           {calls_during}")
        print(f"NEEDS_REVIEW when Cobalt came back:     {reviews_during}")
        print(f"NEEDS_REVIEW at the end (goal <= 10):   {counts[Status.NEEDS_REVIEW]}")
        print("ended:                                  " + ", ".join(f"{s.value} {n}" for s, n in counts.items() if n))
        print(f"documents uploaded twice:               {sum(1 for n in copies.values() if n > 1)}")
        print(f"everything closed:                      {'yes' if closed else 'not within the timeout'}")
    return 0 if closed else 1


if __name__ == "__main__":
    raise SystemExit(main())

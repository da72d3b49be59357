"""`make flood`: a forged flood at twice the webhook route's throttle while Cobalt delivers real outcomes, through the
local stack (its API Gateway applies the template's routes and throttle). Two floods, one stack:
- without the path token (what an attacker who does not hold it can send): how many real deliveries are refused;
- at the route itself (what anyone could send before the token, or with it): the same count, for comparison.
Figures are printed, never asserted."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import boto3
from docdrop.ledger import DocumentLedger, ObjectRef

from local.flood import Flood
from local.resources import webhook_stage
from local.samples import pdf_bytes
from local.stack import LocalStack, StackOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=40, help="real documents dropped during each flood")
    parser.add_argument("--times-the-throttle", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    stage = webhook_stage()
    rate = args.times_the_throttle * stage.rate_per_second
    options = StackOptions(
        state_dir=Path(tempfile.mkdtemp(prefix="docdrop-flood-")),
        batching_window_seconds=0,
        processing_delay_seconds=0.2,
        reconcile_every_seconds=3600,
    )
    with LocalStack(options) as stack:
        info = stack.info
        assert info is not None and stack.sandbox is not None
        s3 = boto3.client("s3", endpoint_url=info.aws_endpoint_url, region_name=info.region)
        ledger = DocumentLedger(
            boto3.client("dynamodb", endpoint_url=info.dynamodb_endpoint_url, region_name=info.region), info.table
        )
        token = stack.webhook_adapter.token
        prefix = info.webhook_url.removesuffix(token)
        print(f"throttle per route: {stage.rate_per_second:.0f}/s, burst {stage.burst}; flood {rate:.0f}/s")
        for label, urls in (
            ("without the token", [prefix.rstrip("/"), prefix + "x" * len(token)]),
            ("at the route", [info.webhook_url]),
        ):
            first = len(stack.sandbox.deliveries)
            started = time.monotonic()
            with Flood(urls, rate=rate) as flood:
                time.sleep(stage.burst / rate + 1)  # past the burst a flood at the route would have spent
                refs = [_put(s3, info.bucket, f"{info.prefix}flood/{label[:4]}-{i}.pdf") for i in range(args.documents)]
                _settle(ledger, refs, deadline=time.monotonic() + 90)
            deliveries = list(stack.sandbox.deliveries[first:])
            refused = sum(1 for d in deliveries if d["result"] != "200")
            waiting = sum(1 for r in refs if (ledger.get_object(r) or {}).get("status") != "UPLOADED")
            print(
                f"flood {label}: {flood.sent} forged requests in {time.monotonic() - started:.0f} s "
                f"({flood.achieved_rate:.0f}/s; answers {dict(flood.answers)}); real deliveries {len(deliveries)}: "
                f"refused {refused}; documents whose outcome waits for the event log: {waiting} of {len(refs)}"
            )
    return 0


def _put(s3: object, bucket: str, key: str) -> ObjectRef:
    tags = urlencode({"patient_mrn": "100001", "folder_name": "MedicalRecords"})
    answer = s3.put_object(Bucket=bucket, Key=key, Body=pdf_bytes(key), Tagging=tags)  # type: ignore[attr-defined]
    return ObjectRef(bucket, key, answer["VersionId"])


def _settle(ledger: DocumentLedger, refs: list[ObjectRef], deadline: float) -> None:
    """Until every document has left SUBMITTED and the states before it (or the deadline)."""
    while time.monotonic() < deadline:
        states = [(ledger.get_object(r) or {}).get("status") for r in refs]
        if all(s in ("UPLOADED", "FAILED", "REJECTED", "NEEDS_REVIEW", "STALE") for s in states):
            return
        time.sleep(0.5)


if __name__ == "__main__":
    raise SystemExit(main())

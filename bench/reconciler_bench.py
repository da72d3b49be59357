"""Reconciler and listing benchmarks (issue 10): one pass over 1,000 open submissions whose webhooks were all lost,
beside 0 and beside 100,000 closed documents, and `docdrop status --status SUBMITTED` at both sizes.

The claim checked: neither cost grows with closed items. Closed items are copies of one document closed through the
real path (claim, submission, webhook outcome, join), so they have the shape, size and index entries real ones have.
Runs against DynamoDB Local and the Cobalt sandbox. Figures are printed, never asserted: compare within one run.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import docdrop_cli.main as cli
from botocore.config import Config
from docdrop.cobalt import CobaltClient, EventLogPage
from docdrop.contract import UploadFields
from docdrop.deadline import Deadline
from docdrop.ledger import DocumentLedger, ObjectRef, OutcomeEvent
from docdrop.outcomes import OutcomeJoiner
from docdrop.reconciler import OPEN_INDEX_STATE, RUN_NAME, Deadlines, PassReport, Reconciler
from docdrop_cli.target import Target

from local.cobalt_sandbox import CobaltSandbox, FaultSettings, SandboxConfig
from local.dynamodb_local import running_dynamodb_local
from local.resources import create_ledger_table
from local.samples import pdf_bytes
from local.stack import LOCAL_CREDENTIALS, SANDBOX_CREDENTIALS

DEADLINES = Deadlines.defaults()


class CountingCobalt(CobaltClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def webhook_events(self, **kwargs: Any) -> EventLogPage:
        self.calls += 1
        return super().webhook_events(**kwargs)


class NoMetrics:
    def add_metric(self, name: str, unit: str, value: float) -> None:
        pass


def _client(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, config=Config(max_pool_connections=32))


def _counted(endpoint: str) -> tuple[Any, Counter[str]]:
    client = _client(endpoint)
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.dynamodb", lambda model, **kw: calls.update([model.name]))
    return client, calls


def fill_closed(endpoint: str, table: str, count: int) -> float:
    """`count` closed documents: one through the real path, then copies of its two items under new keys."""
    ledger = DocumentLedger(_client(endpoint), table)
    ref = ObjectRef("inbox", "inbox/clinic/closed-template.pdf", "v1")
    claim = ledger.claim(ref, lease_seconds=60)
    ledger.record_submission(ref, claim.token, "1000000000000000")
    ledger.record_outcome(OutcomeEvent("evt-template", "document.uploaded", "1000000000000000", "2026-11-30T10:00:00Z"))
    OutcomeJoiner(ledger, NoMetrics(), logging.getLogger("bench")).join(
        ledger.get_document("1000000000000000") or {}, mark="template"
    )
    client = _client(endpoint)
    obj = client.get_item(TableName=table, Key={"pk": {"S": f"OBJ#{ref.object_id}"}, "sk": {"S": "OBJ"}})["Item"]
    doc = client.get_item(TableName=table, Key={"pk": {"S": "CDOC#1000000000000000"}, "sk": {"S": "CDOC"}})["Item"]

    def items(i: int) -> list[dict[str, Any]]:
        object_id = f"{i:032x}"
        document_id = f"2{i:015d}"
        o = {**obj, "pk": {"S": f"OBJ#{object_id}"}, "object_id": {"S": object_id}, "document_id": {"S": document_id}}
        d = {
            **doc,
            "pk": {"S": f"CDOC#{document_id}"},
            "object_id": {"S": object_id},
            "document_id": {"S": document_id},
        }
        return [o, d]

    def write(start: int) -> None:
        requests = [{"PutRequest": {"Item": item}} for i in range(start, min(start + 12, count)) for item in items(i)]
        pending: dict[str, Any] = {table: requests}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(0, count, 12)))
    return time.monotonic() - started


def fill_open(endpoint: str, table: str, sandbox: CobaltSandbox, count: int) -> None:
    """`count` documents sent to Cobalt and recorded SUBMITTED, whose webhooks were never delivered."""
    ledger = DocumentLedger(_client(endpoint), table)
    cobalt = CobaltClient(sandbox.base_url, lambda refresh: SANDBOX_CREDENTIALS, pool_size=16)

    def one(i: int) -> None:
        ref = ObjectRef("inbox", f"inbox/open/{i}.pdf", "v1")
        claim = ledger.claim(ref, lease_seconds=60)
        answer = cobalt.upload_document(UploadFields("100001", "MedicalRecords"), f"{i}.pdf", "application/pdf", PDF)
        assert answer.document_id is not None
        ledger.record_submission(ref, claim.token, answer.document_id)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))
    deadline = time.monotonic() + 60
    while sum(1 for r in sandbox.events if r["event"]["type"].startswith("document.")) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the sandbox did not produce every outcome")
        time.sleep(0.1)


PDF = pdf_bytes("bench")


def one_pass(endpoint: str, table: str, sandbox: CobaltSandbox) -> tuple[PassReport, Counter[str], int, float]:
    client, calls = _counted(endpoint)
    ledger = DocumentLedger(client, table)
    cobalt = CountingCobalt(sandbox.base_url, lambda refresh: SANDBOX_CREDENTIALS)
    reconciler = Reconciler(
        ledger,
        cobalt,
        OutcomeJoiner(ledger, NoMetrics(), logging.getLogger("bench")),
        DEADLINES,
        metrics=NoMetrics(),
        logger=logging.getLogger("bench"),
        clock=lambda: datetime.now(UTC) + timedelta(minutes=16),
    )
    started = time.monotonic()
    report = reconciler.run(Deadline(100))  # the deployed function's timeout
    return report, calls, cobalt.calls, time.monotonic() - started


def status_submitted(endpoint: str, table: str) -> tuple[Counter[str], float, int]:
    calls: Counter[str] = Counter()
    original = Target.client

    def counted(self: Target, service: str) -> Any:
        client = original(self, service)
        client.meta.events.register("before-call.*", lambda model, **kw: calls.update([model.name]))
        return client

    Target.client = counted  # type: ignore[method-assign]
    out = io.StringIO()
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    started = time.monotonic()
    try:
        cli.main(["status", "--status", "SUBMITTED", "--json", "--table", table, "--region", "us-east-1"], out)
    finally:
        Target.client = original  # type: ignore[method-assign]
    return calls, time.monotonic() - started, len(json.loads(out.getvalue()))


def _sandbox() -> CobaltSandbox:
    config = SandboxConfig.load()
    config.processing_delay_seconds = 0.01
    box = CobaltSandbox(config, FaultSettings())
    box.serve(0)  # no webhook registered: every outcome is in the event log only
    return box


def _calls(counter: Counter[str]) -> str:
    return f"{sum(counter.values())} ({', '.join(f'{k} {v}' for k, v in sorted(counter.items()))})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--closed", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=1_000)
    args = parser.parse_args(argv)
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    rows: dict[str, dict[str, str]] = {}
    with running_dynamodb_local() as endpoint:
        for label, closed in (("0 closed", 0), (f"{args.closed:,} closed", args.closed)):
            table = create_ledger_table(_client(endpoint), f"bench-{closed}")
            # A new stack's first pass finds its table empty: the one-off indexing of an older ledger is done then.
            fresh = DocumentLedger(_client(endpoint), table)
            fresh.acquire_run_lease(RUN_NAME, "bench", 60)
            fresh.release_run_lease(RUN_NAME, "bench", {OPEN_INDEX_STATE: "done"})
            fill_seconds = fill_closed(endpoint, table, closed) if closed else 0.0
            sandbox = _sandbox()
            try:
                fill_open(endpoint, table, sandbox, args.open)
                status_calls, status_seconds, status_rows = status_submitted(endpoint, table)
                report, calls, cobalt_calls, seconds = one_pass(endpoint, table, sandbox)
                second, calls2, cobalt2, seconds2 = one_pass(endpoint, table, sandbox)
            finally:
                sandbox.stop()
            rows[label] = {
                "items written to set up": f"{2 * closed + 2:,} in {fill_seconds:.0f} s" if closed else "-",
                "status --status SUBMITTED: calls": _calls(status_calls),
                "status --status SUBMITTED: rows, ms": f"{status_rows}, {status_seconds * 1000:.0f}",
                "pass 1: recovered from the event log": f"{report.recovered_from_event_log} of {args.open}",
                "pass 1: DynamoDB calls": _calls(calls),
                "pass 1: Cobalt calls (event-log pages)": str(cobalt_calls),
                "pass 1: wall s": f"{seconds:.2f}",
                "pass 2 (nothing open): DynamoDB calls": _calls(calls2),
                "pass 2: Cobalt calls": str(cobalt2),
                "pass 2: wall s": f"{seconds2:.2f}",
                "pass 2: still open": str(sum(second.open_objects.values())),
                "still open after pass 1": str(sum(report.open_objects.values())),
            }
    labels = list(rows)
    width = max(len(k) for k in rows[labels[0]])
    print(f"\nReconciler: one pass over {args.open:,} open submissions whose webhooks were lost (grace passed)")
    for key in rows[labels[0]]:
        print(f"  {key:<{width}}")
        for label in labels:
            print(f"      {label:>16}: {rows[label][key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

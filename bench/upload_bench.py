"""DocDrop against the baseline a team writes in a day (bench/baseline), side by side in one run, on the same local
services (moto, DynamoDB Local, the Cobalt sandbox answering in 300 ms), with 1 MiB documents, INFO logs and metrics on.

Each round, interleaved: DocDrop takes a batch of 10 (its uploader, then each document's webhook and the stream's
join), the baseline takes 10 documents (its uploader once per object, as S3 invokes it, then each webhook), and ten
bare chains of DocDrop's own calls run at once. Medians of the rounds are printed, with write and read units (DynamoDB
Local's own accounting), AWS calls, log bytes, peak memory for 10 x 5 MiB (each arm in a process of its own), and a
cost per 1M documents from those figures and named prices. Nothing is asserted: these machines are shared and noisy;
compare within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import requests

from local.capacity import CapacityMeter
from local.dynamodb_local import free_port, running_dynamodb_local
from local.event_source import lambda_sqs_record
from local.lambda_runtime import LocalLambdaContext, load_handler_module, load_module
from local.resources import (
    create_fingerprint_key,
    create_inbox_bucket,
    create_ingest_queues,
    create_ledger_table,
)
from local.samples import pdf_bytes
from local.stack import LOCAL_CREDENTIALS, SANDBOX_CREDENTIALS
from local.template import load_template
from local.webhook_adapter import http_api_event

PREFIX = "inbox/"
LATENCY = 0.3
MIB = 1024 * 1024
BATCH = 10
ROUNDS = 5
BASELINE = Path(__file__).resolve().parent / "baseline"
WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105  (a local signing secret of the bench's own)

# Prices, us-east-1, on-demand, as AWS lists them (assumptions of the model: change them here).
PRICES = {
    "Lambda GB-second (arm64)": 0.0000133334,
    "Lambda request": 0.20 / 1e6,
    "DynamoDB write unit (on-demand)": 0.625 / 1e6,
    "DynamoDB read unit (on-demand)": 0.125 / 1e6,
    "SQS request": 0.40 / 1e6,
    "S3 GET-class request": 0.40 / 1e6,
    "Secrets Manager API call": 0.05 / 1e4,
    "API Gateway HTTP API request": 1.00 / 1e6,
    "CloudWatch Logs ingested GB": 0.50,
}


@dataclasses.dataclass
class Bench:
    s3: Any
    sqs: Any
    dynamodb: Any
    bucket: str
    queue_url: str
    queue_arn: str
    table: str
    naive_table: str
    sandbox_root: str

    def faults(self, **settings: float) -> None:
        requests.post(f"{self.sandbox_root}/_sandbox/faults", json=settings, timeout=5).raise_for_status()

    def drop(self, count: int, size: int | None = None) -> list[dict[str, Any]]:
        """Put `count` documents and take their notification messages off the queue (test events dropped)."""
        for _ in range(count):
            self.s3.put_object(
                Bucket=self.bucket,
                Key=f"{PREFIX}bench/{uuid.uuid4().hex}.pdf",
                Body=pdf_bytes(f"bench {uuid.uuid4().hex}", size=size),
                Tagging=urlencode({"patient_mrn": "100001", "folder_name": "MedicalRecords"}),
            )
        messages: list[dict[str, Any]] = []
        seen: set[str] = set()
        while len(messages) < count:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
            ).get("Messages", [])
            for message in batch:
                body = json.loads(message["Body"])
                keys = [r["s3"]["object"]["key"] for r in body.get("Records", [])]
                if keys and keys[0] not in seen:
                    seen.add(keys[0])
                    messages.append(message)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return messages


def _serve(command: list[str], url: str) -> subprocess.Popen[bytes]:
    """A server in its own process (so its allocations stay out of this process's memory figures)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command[2]} did not start")


@contextlib.contextmanager
def environment() -> Iterator[Bench]:
    """moto, DynamoDB Local and the sandbox, each in its own process; both arms' tables, secrets and settings."""
    os.environ.update({**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"})
    moto_port, sandbox_port = free_port(), free_port()
    moto_url, sandbox_root = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{sandbox_port}"
    moto = _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], moto_url)
    sandbox = _serve(
        # the EMR's outcomes come from the bench itself (signed as Cobalt signs them), not the sandbox
        [sys.executable, "-m", "local.cobalt_sandbox", "--port", str(sandbox_port), "--processing-delay", "600"],
        sandbox_root + "/_sandbox/faults",
    )
    try:
        with running_dynamodb_local() as dynamodb_url:
            name = f"bench-{uuid.uuid4().hex[:6]}"
            s3 = boto3.client("s3", endpoint_url=moto_url)
            sqs = boto3.client("sqs", endpoint_url=moto_url)
            dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_url)
            secrets = boto3.client("secretsmanager", endpoint_url=moto_url)
            queues = create_ingest_queues(sqs, name)
            create_inbox_bucket(s3, f"{name}-inbox", PREFIX, queues.queue_arn)
            table = create_ledger_table(dynamodb, f"{name}-ledger")
            naive_table = f"{name}-naive"
            dynamodb.create_table(
                TableName=naive_table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            )
            secrets.create_secret(Name=f"{name}/cobalt", SecretString=json.dumps(SANDBOX_CREDENTIALS))
            signing = json.dumps({"current": WEBHOOK_SECRET, "previous": ""})
            secrets.create_secret(Name=f"{name}/webhook", SecretString=signing)
            os.environ.update(
                {
                    "AWS_ENDPOINT_URL": moto_url,
                    "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
                    "LEDGER_TABLE": table,
                    "NAIVE_TABLE": naive_table,
                    "COBALT_BASE_URL": sandbox_root + "/v1",
                    "COBALT_CREDENTIALS_SECRET": f"{name}/cobalt",
                    "WEBHOOK_SECRET": f"{name}/webhook",
                    "FINGERPRINT_KEY_SECRET": create_fingerprint_key(secrets, f"{name}/fingerprint-key"),
                    "WATCHED_PREFIX": PREFIX,
                    "POWERTOOLS_LOG_LEVEL": "INFO",  # as deployed (template.yaml's Globals)
                    "POWERTOOLS_METRICS_NAMESPACE": "DocDrop",
                }
            )
            os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
            yield Bench(
                s3, sqs, dynamodb, f"{name}-inbox", queues.queue_url, queues.queue_arn, table, naive_table, sandbox_root
            )
    finally:
        for process in (sandbox, moto):
            process.terminate()
            process.wait(timeout=10)


class LogBytes(io.TextIOBase):
    """Where a function's stdout goes in the bench: counted (CloudWatch bills the bytes), not kept."""

    def __init__(self) -> None:
        self.bytes = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.bytes += len(text.encode())
        return len(text)


@dataclasses.dataclass
class Arm:
    """One side of the comparison: its functions (cold-loaded once, then warm), and what they used."""

    name: str
    modules: dict[str, ModuleType]
    meter: CapacityMeter
    calls: Counter[str]
    logs: LogBytes
    documents: int = 0
    batch_walls: list[float] = dataclasses.field(default_factory=list)
    invocations: Counter[str] = dataclasses.field(default_factory=Counter)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # function -> billed duration, summed

    def invoke(self, function: str, event: dict[str, Any]) -> tuple[float, Any]:
        with contextlib.redirect_stdout(self.logs):
            started = time.perf_counter()
            answer = self.modules[function].handler(event, LocalLambdaContext(function, 90))
            took = time.perf_counter() - started
        self.invocations[function] += 1
        self.seconds[function] = self.seconds.get(function, 0.0) + took
        return took, answer


def load_arm(name: str, functions: dict[str, Callable[[], ModuleType]]) -> Arm:
    """A default boto3 session of the arm's own, whose AWS calls and DynamoDB capacity are counted, and its functions
    loaded against it (their clients are made at import, as in Lambda); their log handlers write to the arm's count."""
    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    calls: Counter[str] = Counter()
    session.events.register(
        "before-call", lambda model, **_: calls.update([f"{model.service_model.service_name}:{model.name}"])
    )
    meter = CapacityMeter()
    meter.attach_events(session.events)
    logs = LogBytes()
    with contextlib.redirect_stdout(logs):
        modules = {function: load() for function, load in functions.items()}
    return Arm(name, modules, meter, calls, logs)


def docdrop_arm() -> Arm:
    return load_arm(
        "DocDrop",
        {name: functools.partial(load_handler_module, name) for name in ("uploader", "webhook", "outcome_joiner")},
    )


def naive_arm() -> Arm:
    return load_arm(
        "baseline",
        {
            "uploader": lambda: load_module(BASELINE / "naive_uploader.py"),
            "webhook": lambda: load_module(BASELINE / "naive_webhook.py"),
        },
    )


def _webhook_event(document_id: str) -> dict[str, Any]:
    from docdrop.signature import sign_payload

    body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "object": "event",
            "created": "2026-11-30T12:00:00.000Z",
            "type": "document.uploaded",
            "access_token_reference_id": "bench",
            "data": {"document_id": document_id, "patient_mrn": "100001", "folder_name": "MedicalRecords"},
        },
        separators=(",", ":"),
    ).encode()
    headers = {
        "cobalt-verification": sign_payload(WEBHOOK_SECRET, body),
        "webhook-id": str(uuid.uuid4()),
        "webhook-attempt": "1",
    }
    return http_api_event("POST", "/webhooks/cobalt", "", headers, body, "127.0.0.1")


def _keys(messages: list[dict[str, Any]]) -> list[str]:
    from docdrop.s3_events import parse_s3_notifications

    return [parse_s3_notifications(m["Body"])[0].key for m in messages]


def _document_ids(bench: Bench, table: str, keys: list[str]) -> list[str]:
    """The document id each key's upload got, read from the arm's table by a Scan of the bench's own (not counted)."""
    found: dict[str, str] = {}
    for page in bench.dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            if "key" in item and ("document_id" in item or item["pk"]["S"].isdigit()):
                found[item["key"]["S"]] = item.get("document_id", item["pk"])["S"]
    return [found[key] for key in keys]


def docdrop_round(bench: Bench, arm: Arm, messages: list[dict[str, Any]]) -> None:
    """A batch through the uploader, then each document's webhook, then the stream's join of each outcome."""
    event = {"Records": [lambda_sqs_record(m, bench.queue_arn) for m in messages]}
    wall, answer = arm.invoke("uploader", event)
    if answer["batchItemFailures"]:  # a broken bench must not print figures
        raise RuntimeError(f"the batch failed: {answer}")
    arm.batch_walls.append(wall)
    for document_id in _document_ids(bench, bench.table, _keys(messages)):
        _, answer = arm.invoke("webhook", _webhook_event(document_id))
        assert answer["statusCode"] == 200, answer
        # What the stream hands the joiner: the document's new image (Lambda reads the stream; no table read).
        image = bench.dynamodb.get_item(
            TableName=bench.table, Key={"pk": {"S": f"CDOC#{document_id}"}, "sk": {"S": "CDOC"}}
        )["Item"]
        record = {
            "eventID": uuid.uuid4().hex,
            "eventName": "MODIFY",
            "dynamodb": {"NewImage": image, "SequenceNumber": uuid.uuid4().hex},
        }
        arm.invoke("outcome_joiner", {"Records": [record]})
    arm.documents += len(messages)


def naive_round(bench: Bench, arm: Arm, messages: list[dict[str, Any]]) -> None:
    """Each object as S3 invokes the baseline (one event each, one after the other), then each webhook."""
    wall = 0.0
    for message in messages:
        record = json.loads(message["Body"])["Records"][0]
        took, _ = arm.invoke("uploader", {"Records": [record]})
        wall += took
    arm.batch_walls.append(wall)
    for document_id in _document_ids(bench, bench.naive_table, _keys(messages)):
        _, answer = arm.invoke("webhook", _webhook_event(document_id))
        assert answer["statusCode"] == 200, answer
    arm.documents += len(messages)


def bare_chains(bench: Bench, messages: list[dict[str, Any]], clients: dict[str, Any]) -> float:
    """Ten chains of the calls DocDrop's uploader makes for one document (GetItem, GetObjectTagging, GetObject,
    UpdateItem x4: claim, fingerprint, submission, link; the POST), with none of its logic, all ten at once."""
    ddb, s3, session = clients["dynamodb"], clients["s3"], clients["http"]
    credentials = {k: SANDBOX_CREDENTIALS[k] for k in ("client_id", "client_secret", "access_token")}

    def chain(key: str) -> None:
        bucket = bench.bucket
        pk = {"pk": {"S": f"BARE#{uuid.uuid4().hex}"}, "sk": {"S": "OBJ"}}
        ddb.get_item(TableName=bench.table, Key=pk, ConsistentRead=True)
        s3.get_object_tagging(Bucket=bucket, Key=key)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        hashlib.sha256(body).hexdigest()

        def write(attribute: str) -> None:  # conditional, returning the old item on failure: as DocDrop's writes are
            ddb.update_item(
                TableName=bench.table,
                Key=pk,
                UpdateExpression="SET #a = :v",
                ConditionExpression="attribute_not_exists(#a)",
                ExpressionAttributeNames={"#a": attribute},
                ExpressionAttributeValues={":v": {"S": "x"}},
                ReturnValues="UPDATED_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )

        write("claim")
        write("fingerprint")
        answer = session.post(
            bench.sandbox_root + "/v1/documents",
            headers=credentials,
            data={"patient_mrn": "100001", "folder_name": "MedicalRecords"},
            files={"document": ("bare.pdf", body, "application/pdf")},
            timeout=30,
        )
        answer.raise_for_status()
        write("submission")
        write("link")

    with ThreadPoolExecutor(len(messages)) as pool:
        started = time.perf_counter()
        list(pool.map(chain, _keys(messages)))
        return time.perf_counter() - started


def _memory_size(function: str) -> int:
    return int(load_template()["Resources"][function]["Properties"]["MemorySize"])


def cost_per_million(arm: Arm, memory_mb: dict[str, int], sqs_requests: float, api_requests: float) -> dict[str, float]:
    """Dollars per 1M documents, by line, from what the arm used per document."""
    per = 1e6 / arm.documents
    gb_seconds = sum(arm.seconds[f] * memory_mb[f] / 1024 for f in arm.seconds)
    s3_gets = sum(n for call, n in arm.calls.items() if call in ("s3:GetObject", "s3:GetObjectTagging"))
    secrets = sum(n for call, n in arm.calls.items() if call.startswith("secretsmanager:"))
    return {
        "Lambda duration": gb_seconds * per * PRICES["Lambda GB-second (arm64)"],
        "Lambda requests": sum(arm.invocations.values()) * per * PRICES["Lambda request"],
        "DynamoDB writes": arm.meter.writes * per * PRICES["DynamoDB write unit (on-demand)"],
        "DynamoDB reads": arm.meter.reads * per * PRICES["DynamoDB read unit (on-demand)"],
        "SQS": sqs_requests * 1e6 * PRICES["SQS request"],
        "S3 GETs": s3_gets * per * PRICES["S3 GET-class request"],
        "Secrets Manager": secrets * per * PRICES["Secrets Manager API call"],
        "API Gateway": api_requests * 1e6 * PRICES["API Gateway HTTP API request"],
        "CloudWatch Logs": arm.logs.bytes / 1e9 * per * PRICES["CloudWatch Logs ingested GB"],
    }


def peak_memory(arm_name: str) -> dict[str, float]:
    """In this (fresh) process: one warm-up document, then a batch of 10 x 5 MiB; RSS before and at the peak."""
    with environment() as bench:
        bench.faults(slow_after_accept=1.0, slow_seconds=LATENCY)
        arm = docdrop_arm() if arm_name == "docdrop" else naive_arm()
        run = docdrop_round if arm_name == "docdrop" else naive_round
        run(bench, arm, bench.drop(1))
        messages = bench.drop(BATCH, size=5 * MIB)
        gc.collect()
        Path("/proc/self/clear_refs").write_text(
            "5"
        )  # the peak (VmHWM) restarts here: dropping the files is not counted
        before = _status_mib("VmRSS")
        run(bench, arm, messages)
        return {"before": before, "peak": _status_mib("VmHWM")}


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _memory_in_fresh_process(arm_name: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.upload_bench", "--memory", arm_name], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory", choices=("docdrop", "naive"))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if args.memory:
        print(json.dumps(peak_memory(args.memory)))
        return
    print(f"== DocDrop against the baseline (Python {sys.version.split()[0]}) ==")
    with environment() as bench:
        bench.faults(slow_after_accept=1.0, slow_seconds=LATENCY)
        docdrop, naive = docdrop_arm(), naive_arm()
        session = boto3.session.Session()  # the chains' own: not counted with either arm
        bare = {"dynamodb": session.client("dynamodb"), "s3": session.client("s3"), "http": requests.Session()}
        # Warm: secrets read, connections made (a warm container's state), then nothing counted yet.
        docdrop_round(bench, docdrop, bench.drop(1))
        naive_round(bench, naive, bench.drop(1))
        bare_chains(bench, bench.drop(BATCH), bare)
        for arm in (docdrop, naive):
            arm.meter.reset()
            arm.calls.clear()
            arm.logs.bytes = 0
            arm.documents = 0
            arm.batch_walls.clear()
            arm.invocations.clear()
            arm.seconds.clear()
        chains: list[float] = []
        for _ in range(args.rounds):  # interleaved, so the machine's noise falls on every arm alike
            docdrop_round(bench, docdrop, bench.drop(BATCH, size=MIB))
            naive_round(bench, naive, bench.drop(BATCH, size=MIB))
            chains.append(bare_chains(bench, bench.drop(BATCH, size=MIB), bare))
        bench.faults()
    memory = {arm: _memory_in_fresh_process(arm) for arm in ("docdrop", "naive")}
    report(docdrop, naive, chains, memory)


def report(docdrop: Arm, naive: Arm, chains: list[float], memory: dict[str, dict[str, float]]) -> None:
    rounds = len(chains)
    print(
        f"{rounds} interleaved rounds of {BATCH} documents of 1 MiB each, Cobalt answering in {LATENCY * 1000:.0f} ms;"
    )
    print("medians of the rounds; per document unless it says otherwise")
    d_wall, n_wall, bare = (statistics.median(x) for x in (docdrop.batch_walls, naive.batch_walls, chains))

    def row(name: str, ours: float, theirs: float, unit: str = "", digits: int = 2) -> None:
        ratio = f"{ours / theirs:5.2f}x" if theirs else "     -"
        print(f"  {name:46s} {ours:10.{digits}f}{unit:3s} {theirs:10.{digits}f}{unit:3s}  {ratio}")

    print(f"  {'':46s} {'DocDrop':>13s} {'baseline':>13s}  DocDrop / baseline")
    row("uploads of a batch of 10, wall", d_wall, n_wall, " s")
    aws = {
        arm.name: sum(n for c, n in arm.calls.items() if c.split(":")[0] in ("s3", "dynamodb", "sqs", "secretsmanager"))
        / arm.documents
        for arm in (docdrop, naive)
    }
    row("AWS calls (functions' own)", aws["DocDrop"], aws["baseline"])
    row(
        "DynamoDB write units (table and indexes)",
        docdrop.meter.writes / docdrop.documents,
        naive.meter.writes / naive.documents,
    )
    row("DynamoDB read units", docdrop.meter.reads / docdrop.documents, naive.meter.reads / naive.documents)
    row(
        "log bytes (INFO logs and EMF metrics)",
        docdrop.logs.bytes / docdrop.documents,
        naive.logs.bytes / naive.documents,
        " B",
        0,
    )
    row("peak RSS, a batch of 10 x 5 MiB", memory["docdrop"]["peak"], memory["naive"]["peak"], " Mi", 1)
    ours = memory["docdrop"]
    print(
        f"    (DocDrop: {ours['peak'] - ours['before']:.1f} MiB over its {ours['before']:.1f} MiB before the batch,"
        f" against its uploader's {_memory_size('UploaderFunction')} MB; the baseline: one object per invocation)"
    )
    print(
        "  write units by table and index, DocDrop:",
        {k: round(v / docdrop.documents, 2) for k, v in docdrop.meter.write_units.items()},
    )
    print()
    print(
        f"batch overhead: DocDrop's batch of 10 against ten bare chains of its own calls at once (median of {rounds})"
    )
    print(f"  DocDrop {d_wall:.3f} s, bare chains {bare:.3f} s: {d_wall / bare:.2f}x")
    print()
    memory_mb = {
        "uploader": _memory_size("UploaderFunction"),
        "webhook": _memory_size("WebhookFunction"),
        "outcome_joiner": _memory_size("OutcomeJoinerFunction"),
    }
    naive_memory = {"uploader": memory_mb["uploader"], "webhook": 128}
    # SQS: S3's SendMessage, and the event source's ReceiveMessage and DeleteMessageBatch per batch of 10.
    ours = cost_per_million(docdrop, memory_mb, sqs_requests=1 + 2 / BATCH, api_requests=1)
    theirs = cost_per_million(naive, naive_memory, sqs_requests=0, api_requests=1)
    print("cost per 1M documents (upload and webhook), from the figures above:")
    print(f"  {'':24s} {'DocDrop':>10s} {'baseline':>10s}")
    for line in ours:
        print(f"  {line:24s} {ours[line]:10.2f} {theirs[line]:10.2f}")
    total_ours, total_theirs = sum(ours.values()), sum(theirs.values())
    print(
        f"  {'total':24s} {total_ours:10.2f} {total_theirs:10.2f}   DocDrop / baseline {total_ours / total_theirs:.2f}x"
    )
    print("  assumed prices (us-east-1, on-demand): " + "; ".join(f"{k} ${v:.10g}" for k, v in PRICES.items()))
    print(
        f"  assumed: memory as template.yaml sets it (DocDrop {memory_mb}), the baseline's uploader as DocDrop's and"
        " its webhook at Lambda's default 128 MB; durations as measured here (one join per document, where the stream"
        " batches them); KMS, custom-metric and alarm charges are monthly, not per document, and left out"
    )


if __name__ == "__main__":
    main()

"""Upload-path benchmarks (issue 4): calls per document, a batch of 10 at 300 ms Cobalt latency against the serial
run, and peak memory for a 5 MB document against the process baseline.

Everything runs against local servers (moto, DynamoDB Local, the Cobalt sandbox) with the real handler module.
Figures are printed, never asserted: machines here are shared and noisy; compare the ratios within one run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import requests

from local.dynamodb_local import free_port, running_dynamodb_local
from local.event_source import lambda_sqs_record
from local.lambda_runtime import LocalLambdaContext, load_handler_module
from local.resources import create_fingerprint_key, create_inbox_bucket, create_ingest_queues, create_ledger_table
from local.samples import pdf_bytes
from local.stack import LOCAL_CREDENTIALS, SANDBOX_CREDENTIALS

PREFIX = "inbox/"
LATENCY = 0.3
MIB = 1024 * 1024


@dataclasses.dataclass
class Bench:
    s3: Any
    sqs: Any
    bucket: str
    queue_url: str
    queue_arn: str
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
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                body = json.loads(message["Body"])
                keys = [r["s3"]["object"]["key"] for r in body.get("Records", [])]
                if keys and keys[0] not in seen:  # moto may send an event twice; the bench wants one each
                    seen.add(keys[0])
                    messages.append(message)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return messages

    def invoke(self, module: ModuleType, messages: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
        event = {"Records": [lambda_sqs_record(m, self.queue_arn) for m in messages]}
        started = time.perf_counter()
        result: dict[str, Any] = module.handler(event, LocalLambdaContext("uploader", 90))
        return time.perf_counter() - started, result


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
    os.environ.update({**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"})
    moto_port, sandbox_port = free_port(), free_port()
    moto_url, sandbox_root = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{sandbox_port}"
    moto = _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], moto_url)
    sandbox = _serve(
        # outcomes (webhooks) are not part of this bench: the "EMR" takes its time
        [sys.executable, "-m", "local.cobalt_sandbox", "--port", str(sandbox_port), "--processing-delay", "600"],
        sandbox_root + "/_sandbox/faults",
    )
    try:
        with running_dynamodb_local() as dynamodb_url:
            name = f"bench-{uuid.uuid4().hex[:6]}"
            s3 = boto3.client("s3", endpoint_url=moto_url)
            sqs = boto3.client("sqs", endpoint_url=moto_url)
            queues = create_ingest_queues(sqs, name)
            create_inbox_bucket(s3, f"{name}-inbox", PREFIX, queues.queue_arn)
            table = create_ledger_table(boto3.client("dynamodb", endpoint_url=dynamodb_url), f"{name}-ledger")
            boto3.client("secretsmanager", endpoint_url=moto_url).create_secret(
                Name=f"{name}/cobalt", SecretString=json.dumps(SANDBOX_CREDENTIALS)
            )
            os.environ.update(
                {
                    "AWS_ENDPOINT_URL": moto_url,
                    "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
                    "LEDGER_TABLE": table,
                    "COBALT_BASE_URL": sandbox_root + "/v1",
                    "COBALT_CREDENTIALS_SECRET": f"{name}/cobalt",
                    "FINGERPRINT_KEY_SECRET": create_fingerprint_key(
                        boto3.client("secretsmanager", endpoint_url=moto_url), f"{name}/fingerprint-key"
                    ),
                    "WATCHED_PREFIX": PREFIX,
                    "POWERTOOLS_METRICS_DISABLED": "true",
                    "POWERTOOLS_LOG_LEVEL": "WARNING",
                }
            )
            yield Bench(s3, sqs, f"{name}-inbox", queues.queue_url, queues.queue_arn, sandbox_root)
    finally:
        for process in (sandbox, moto):
            process.terminate()
            process.wait(timeout=10)


def load_uploader(parallel: int) -> tuple[ModuleType, Counter[str]]:
    """A fresh uploader module (a cold container) whose AWS and Cobalt calls are counted."""
    os.environ["MAX_PARALLEL_UPLOADS"] = str(parallel)
    calls: Counter[str] = Counter()
    boto3.setup_default_session()

    def count(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    boto3.DEFAULT_SESSION.events.register("before-call", count)  # type: ignore[union-attr]
    module = load_handler_module("uploader")
    module.uploader._cobalt._session.hooks["response"].append(
        lambda response, *args, **kwargs: calls.update(
            [f"cobalt:{response.request.method} {response.request.path_url}"]
        )
    )
    return module, calls


def calls_per_document(bench: Bench) -> None:
    module, calls = load_uploader(10)
    messages = bench.drop(10)
    bench.invoke(module, messages)
    print("calls per document (a cold container's first batch of 10; Secrets Manager is read once, then cached):")
    for name, count in sorted(calls.items()):
        print(f"  {name:42s} {count / len(messages):5.2f}")
    aws = sum(n for k, n in calls.items() if not k.startswith("cobalt:"))
    cobalt = sum(n for k, n in calls.items() if k.startswith("cobalt:"))
    print(f"  {'AWS calls, total':42s} {aws / len(messages):5.2f}")
    print(f"  {'Cobalt calls, total':42s} {cobalt / len(messages):5.2f}")
    module.executor.shutdown()


def batch_of_ten(bench: Bench) -> None:
    bench.faults(slow_after_accept=1.0, slow_seconds=LATENCY)
    timings = {}
    for parallel in (10, 1):
        module, _ = load_uploader(parallel)
        bench.invoke(module, bench.drop(1))  # warm: secrets read, connections made
        timings[parallel], result = bench.invoke(module, bench.drop(10))
        if result["batchItemFailures"]:  # a broken bench must not print figures
            raise RuntimeError(f"the batch failed: {result}")
        module.executor.shutdown()
    bench.faults()
    print(f"a batch of 10 documents, Cobalt answering in {LATENCY * 1000:.0f} ms (warm container):")
    print(f"  serial sum of Cobalt answers:   {10 * LATENCY:6.2f} s")
    print(f"  one at a time (1 worker):       {timings[1]:6.2f} s")
    print(f"  concurrent (10 workers):        {timings[10]:6.2f} s")
    print(f"  concurrent / serial:            {timings[10] / timings[1]:6.2f}x")


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def peak_memory(bench: Bench) -> None:
    module, _ = load_uploader(10)
    bench.invoke(module, bench.drop(1))  # warm
    big = bench.drop(1, size=5 * MIB)
    gc.collect()
    baseline = _rss_mib()
    tracemalloc.start()
    bench.invoke(module, big)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    module.executor.shutdown()
    print("one 5 MiB document (warm container):")
    ratio = traced_peak / (5 * MIB)
    print(f"  process RSS before the invocation:     {baseline:7.1f} MiB")
    print(f"  Python allocations at peak, traced:    {traced_peak / MIB:7.1f} MiB  ({ratio:.1f}x the file)")
    print(
        f"  process peak RSS:                      {peak_rss:7.1f} MiB  (+{peak_rss - baseline:.1f} MiB over baseline)"
    )


def main() -> None:
    with environment() as bench:
        calls_per_document(bench)
        batch_of_ten(bench)
        peak_memory(bench)


if __name__ == "__main__":
    main()

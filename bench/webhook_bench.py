"""Webhook benchmarks (promise 4): cold import in Python 3.13, warm latency over 1,000 events, DynamoDB calls per event.

Figures are printed, never asserted: machines here are shared and noisy; compare the ratios within one run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"


def python313() -> str | None:
    candidates = ["python3.13", *sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.13*/bin/python3.13"))]
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.executable) if sys.version_info[:2] == (3, 13) else exit(1)"],
                capture_output=True,
                text=True,
                check=True,
            )
            return out.stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
    return None


def import_times(runs: int = 7) -> None:
    """Seconds to import the built handler in a fresh 3.13 process, against importing boto3 + one client alone."""
    interpreter = python313()
    if interpreter is None or not (BUILD / "WebhookFunction").exists():
        print("import: skipped (needs python3.13 and `make build`)")
        return
    runtime = Path(tempfile.gettempdir()) / "docdrop-bench-py313"
    if not (runtime / "bin" / "python").exists():  # boto3 stands in for the one Lambda's runtime ships
        subprocess.run([interpreter, "-m", "venv", str(runtime)], check=True)
        subprocess.run([str(runtime / "bin" / "pip"), "install", "--quiet", "boto3"], check=True)
    env = {
        **os.environ,
        "PYTHONPATH": f"{BUILD / 'WebhookFunction'}:{BUILD / 'DocDropLayer' / 'python'}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    script = str(ROOT / "bench" / "import_webhook.py")
    results = {}
    for mode in ("boto3", "handler", "naive"):
        subprocess.run([str(runtime / "bin" / "python"), script, mode], env=env, check=True, capture_output=True)
        samples = [
            float(
                subprocess.run(
                    [str(runtime / "bin" / "python"), script, mode], env=env, check=True, capture_output=True, text=True
                ).stdout
            )
            for _ in range(runs)
        ]
        results[mode] = statistics.median(samples)
    print(f"import, fresh Python 3.13 process, median of {runs}:")
    print(f"  boto3 + one client (the floor):  {results['boto3'] * 1000:7.1f} ms")
    ratio = results["handler"] / results["boto3"]
    print(f"  webhook handler module:          {results['handler'] * 1000:7.1f} ms  ({ratio:.2f}x the floor)")
    naive = results["naive"]
    print(
        f"  baseline webhook's imports:      {naive * 1000:7.1f} ms  (DocDrop / baseline:"
        f" {results['handler'] / naive:.2f}x)"
    )


def warm_latency(events: int = 1000) -> None:
    from docdrop.signature import sign_payload
    from moto.server import ThreadedMotoServer

    from local.dynamodb_local import free_port, running_dynamodb_local
    from local.lambda_runtime import LocalLambdaContext, load_handler_module
    from local.resources import create_ledger_table
    from local.webhook_adapter import http_api_event

    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    moto_port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request lines: noise, and they can name keys
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    try:
        with running_dynamodb_local() as ddb_endpoint:
            ddb = boto3.client("dynamodb", endpoint_url=ddb_endpoint)
            create_ledger_table(ddb, "bench")
            secrets = boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{moto_port}")
            secrets.create_secret(Name="bench-signing", SecretString=json.dumps({"current": "s3cret", "previous": ""}))
            os.environ.update(
                {
                    "LEDGER_TABLE": "bench",
                    "WEBHOOK_SECRET": "bench-signing",
                    "AWS_ENDPOINT_URL_DYNAMODB": ddb_endpoint,
                    "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://127.0.0.1:{moto_port}",
                    "POWERTOOLS_LOG_LEVEL": "INFO",  # as deployed
                }
            )
            sink = io.StringIO()  # INFO logs and EMF metrics, as deployed: written (real work), not shown
            with contextlib.redirect_stdout(sink):  # the logger's handler takes the stream it finds at import
                module = load_handler_module("webhook")
            calls: list[str] = []
            module.ledger._client.meta.events.register(
                "before-call.dynamodb", lambda model, **_: calls.append(model.name)
            )
            prepared = []
            for i in range(events + 50):
                body = json.dumps(
                    {
                        "id": str(uuid.uuid4()),
                        "type": "document.uploaded",
                        "created": "2026-01-01T00:00:00Z",
                        "data": {"document_id": str(10**15 + i), "patient_mrn": "1", "folder_name": "F"},
                    },
                    separators=(",", ":"),
                ).encode()
                headers = {"cobalt-verification": sign_payload("s3cret", body), "webhook-attempt": "1"}
                prepared.append(http_api_event("POST", "/webhooks/cobalt", "", headers, body, "127.0.0.1"))
            samples = []
            with contextlib.redirect_stdout(sink):
                for event in prepared[:50]:  # warm-up: the secret cached, connections open
                    module.handler(event, LocalLambdaContext("webhook"))
                calls.clear()
                for event in prepared[50:]:
                    started = time.perf_counter()
                    answer = module.handler(event, LocalLambdaContext("webhook"))
                    samples.append(time.perf_counter() - started)
                    assert answer["statusCode"] == 200, answer
            samples.sort()
            p50 = samples[len(samples) // 2] * 1000
            p99 = samples[int(len(samples) * 0.99) - 1] * 1000
            print(f"warm in-process latency over {events} events against DynamoDB Local:")
            print(f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms   (Cobalt's limit: 5000 ms)")
            print(f"  DynamoDB calls per event: {len(calls) / events:.2f} ({', '.join(sorted(set(calls)))})")
    finally:
        moto.stop()


if __name__ == "__main__":
    print("== webhook ==")
    import_times()
    warm_latency()
    sys.stdout.flush()

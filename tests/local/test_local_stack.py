"""The local stack and the README's run command, end to end: `python -m local.demo` as a user runs it."""

from __future__ import annotations

import io
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import docdrop_cli.main as cli
import pytest

from local.cobalt_sandbox import CobaltSandbox
from local.samples import pdf_bytes
from local.stack import LocalStack, StackOptions
from tests.support.cobalt import running_sandbox
from tests.support.demo import s3_of, start_demo, wait_for_stack_file

STACK_KEYS = {
    "aws_endpoint_url",
    "dynamodb_endpoint_url",
    "bucket",
    "prefix",
    "queue_url",
    "dlq_url",
    "table",
    "webhook_url",
    "cobalt_base_url",
    "secrets",
}


def _listening(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 80)) == 0


def _status(stack_file: Path, *args: str) -> Any:
    out = io.StringIO()
    code = cli.main(["status", "--local", str(stack_file), *args], out=out)
    return code, out.getvalue()


def test_the_demo_settles_every_sample_where_it_should_and_exits_zero(tmp_path: Path) -> None:
    process = start_demo(tmp_path)
    output, _ = process.communicate(timeout=400)

    assert process.returncode == 0, output[-3000:]
    assert "All 12 documents ended where they should" in output
    table = output[output.index("object ") :]
    # The reconciler's two samples: a webhook never sent, recovered from Cobalt's event log; tags that never came.
    lost = next(line for line in table.splitlines() if line.startswith("scanner/webhook-lost.pdf"))
    untagged = next(line for line in table.splitlines() if line.startswith("scanner/never-tagged.pdf"))
    assert "UPLOADED  UPLOADED" in lost
    assert "REJECTED  REJECTED  Required tags never arrived: folder_name" in untagged
    for expected in ("UPLOADED", "FAILED", "REJECTED"):
        assert expected in table
    assert "100001" not in table and "****01" in table  # MRNs are masked
    assert "settled:" in output  # progress was shown while waiting
    assert not (tmp_path / "local-stack.json").exists()  # stopped cleanly, and said so


def test_keep_running_serves_documents_dropped_by_hand_until_interrupted(tmp_path: Path) -> None:
    process = start_demo(tmp_path, "--keep-running", "--no-samples")
    stack_file = tmp_path / "local-stack.json"
    try:
        info = wait_for_stack_file(process, tmp_path)
        deadline = time.monotonic() + 180
        assert set(info) >= STACK_KEYS
        assert set(info["secrets"]) == {"cobalt_credentials", "webhook_signing"}

        s3 = s3_of(info)
        key = info["prefix"] + "by-hand/referral letter.pdf"
        s3.put_object(
            Bucket=info["bucket"],
            Key=key,
            Body=pdf_bytes("by hand"),
            Tagging="patient_mrn=100002&folder_name=MedicalRecords%2FReferrals",
        )
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            code, text = _status(stack_file, "--json", "--key", key)
            rows = json.loads(text) if code == 0 else []
            if rows and rows[0]["status"] == "UPLOADED":
                break
            time.sleep(1)
        assert rows and rows[0]["status"] == "UPLOADED", rows
        document_id = rows[0]["document_id"]
        code, text = _status(stack_file, "--json", "--document-id", document_id, "--show-keys")
        assert code == 0 and json.loads(text)[0]["key"] == key
        # A lookup shows the outcome at once; the listing follows once the stream has joined it (its own invocation).
        while time.monotonic() < deadline:
            code, text = _status(stack_file, "--status", "UPLOADED", "--show-keys")
            if code != 0 or "referral letter.pdf" in text:
                break
            time.sleep(0.5)
        assert code == 0 and "referral letter.pdf" in text and document_id in text
        # One reconciler pass on demand, the same function the stack's schedule runs (exit 3: a pass was running).
        for _ in range(5):
            out = io.StringIO()
            code = cli.main(["reconcile", "--json", "--local", str(stack_file)], out=out)
            if code != 3:
                break
            time.sleep(1)
        report = json.loads(out.getvalue())
        assert code == 0 and report["ran"] and report["complete"]
        assert sum(report["open_objects"].values()) == 0
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-2000:]
    assert not stack_file.exists()
    for url in (info["aws_endpoint_url"], info["dynamodb_endpoint_url"], info["webhook_url"], info["cobalt_base_url"]):
        assert not _listening(url), f"{url} still listening after the stack stopped"


@pytest.fixture
def other_cobalt() -> Iterator[CobaltSandbox]:
    """Another Cobalt-compatible server, started apart from the stack (its own port, secret and documents)."""
    # The nested secret field of another version of Cobalt's docs.
    with running_sandbox(0.2, webhook_secret_field="webhook.secret") as box:
        yield box


def test_cobalt_url_points_the_stack_at_another_server_and_receives_its_webhooks(
    tmp_path: Path, other_cobalt: CobaltSandbox, dynamodb_endpoint: str
) -> None:
    options = StackOptions(state_dir=tmp_path, cobalt_url=other_cobalt.base_url, batching_window_seconds=0)
    with LocalStack(options) as stack:
        info = stack.info
        assert info is not None and stack.sandbox is None and info.cobalt_base_url == other_cobalt.base_url
        s3 = boto3.client("s3", endpoint_url=info.aws_endpoint_url, region_name="us-east-1")
        s3.put_object(
            Bucket=info.bucket,
            Key=info.prefix + "elsewhere.pdf",
            Body=pdf_bytes(),
            Tagging="patient_mrn=100001&folder_name=MedicalRecords",
        )
        deadline = time.monotonic() + 60
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            listed = _status(tmp_path / "local-stack.json", "--json", "--status", "UPLOADED", "--show-keys")
            rows = json.loads(listed[1])
            if rows:
                break
            time.sleep(0.5)

    assert [r["key"] for r in rows] == ["inbox/elsewhere.pdf"]
    assert [d["filename"] for d in other_cobalt._public_documents()] == ["elsewhere.pdf"]
    deliveries = other_cobalt.deliveries
    assert deliveries and all(d["url"] == info.webhook_url for d in deliveries)
    assert other_cobalt.webhooks == {}  # the stack took its dead URL back off Cobalt when it stopped


def test_status_without_any_stack_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LEDGER_TABLE", raising=False)
    monkeypatch.delenv("DOCDROP_LOCAL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["status"]) == 4
    assert "no stack to act on" in capsys.readouterr().err
    assert cli.main(["status", "--local", str(tmp_path / "absent")]) == 4
    error = capsys.readouterr().err
    assert "no local stack in" in error and "make demo ARGS=--keep-running" in error and "Traceback" not in error

"""`python -m local.demo` as a user runs it, in a subprocess with none of this process's stack settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parents[2]
STACK_SETTINGS = ("AWS_", "COBALT_", "LEDGER_", "WEBHOOK_", "DOCDROP_")


def start_demo(state_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(STACK_SETTINGS)}
    return subprocess.Popen(
        [sys.executable, "-m", "local.demo", "--state-dir", str(state_dir), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_stack_file(demo: subprocess.Popen[str], state_dir: Path, seconds: float = 180) -> dict[str, Any]:
    """The running demo's local-stack.json, once written."""
    stack_file = state_dir / "local-stack.json"
    deadline = time.monotonic() + seconds
    while not stack_file.exists():
        assert demo.poll() is None, demo.stdout.read() if demo.stdout else ""
        assert time.monotonic() < deadline, "the stack never wrote local-stack.json"
        time.sleep(0.5)
    info: dict[str, Any] = json.loads(stack_file.read_text())
    return info


def s3_of(info: dict[str, Any]) -> Any:
    """An S3 client for the running demo's moto, from its stack file, as a user of the README would make one."""
    return boto3.client(
        "s3",
        endpoint_url=info["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

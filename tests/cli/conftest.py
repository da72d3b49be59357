"""One local stack (moto, DynamoDB Local, the Cobalt sandbox, the functions) for the operator commands' tests, and a
way to run `docdrop` against it as an operator would: `--local DIR`, its exit code, what it printed."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import docdrop_cli.main as cli
import pytest
from docdrop.ledger import DocumentLedger, ObjectRef

from local.cobalt_sandbox import CobaltSandbox, FaultSettings
from local.samples import pdf_bytes
from local.stack import LocalStack, StackInfo, StackOptions

TAGS = {"patient_mrn": "100001", "folder_name": "MedicalRecords"}


@dataclasses.dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclasses.dataclass
class CliStack:
    stack: LocalStack
    info: StackInfo
    state_dir: Path

    @property
    def sandbox(self) -> CobaltSandbox:
        assert self.stack.sandbox is not None
        return self.stack.sandbox

    def client(self, service: str) -> Any:
        endpoint = self.info.dynamodb_endpoint_url if service == "dynamodb" else self.info.aws_endpoint_url
        return boto3.client(service, endpoint_url=endpoint, region_name=self.info.region)  # type: ignore[call-overload]

    @property
    def ledger(self) -> DocumentLedger:
        return DocumentLedger(self.client("dynamodb"), self.info.table)

    def docdrop(self, *args: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main([*args, "--local", str(self.state_dir)], out=out)
        return Run(code, out.getvalue(), err.getvalue())

    def put(self, name: str, content: bytes | None = None, tags: dict[str, str] | None = None) -> ObjectRef:
        key = self.info.prefix + name
        answer = self.client("s3").put_object(
            Bucket=self.info.bucket, Key=key, Body=content or pdf_bytes(name), Tagging=urlencode(tags or TAGS)
        )
        return ObjectRef(self.info.bucket, key, answer["VersionId"])

    def status_of(self, ref: ObjectRef) -> str | None:
        item = self.ledger.get_object(ref)
        return str(item["status"]) if item else None

    def wait_for(self, check: Callable[[], bool], seconds: float = 60.0, what: str = "the pipeline") -> None:
        deadline = time.monotonic() + seconds
        while not check():
            assert time.monotonic() < deadline, f"{what} did not settle in {seconds} s"
            time.sleep(0.2)

    def wait_status(self, ref: ObjectRef, *statuses: str, seconds: float = 60.0) -> str:
        self.wait_for(lambda: self.status_of(ref) in statuses, seconds, f"{ref.key} to reach {statuses}")
        return str(self.status_of(ref))

    def uploads_of(self, name: str) -> int:
        return sum(1 for d in self.sandbox._public_documents() if d["filename"] == name)

    def queue_depth(self, url: str) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def faults(self, **settings: Any) -> None:
        self.sandbox.set_faults(FaultSettings(**settings))


@pytest.fixture(scope="module")
def cli_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliStack]:
    """The local stack as `make demo ARGS=--keep-running` runs it; the reconciler's schedule out of the way."""
    state_dir = tmp_path_factory.mktemp("stack")
    options = StackOptions(
        state_dir=state_dir,
        batching_window_seconds=0,
        processing_delay_seconds=0.2,
        reconcile_every_seconds=3600,
        secret_reread_seconds=1.0,  # the rotation test waits (--settle) just longer than this
    )
    with LocalStack(options) as stack:
        assert stack.info is not None
        yield CliStack(stack, stack.info, state_dir)

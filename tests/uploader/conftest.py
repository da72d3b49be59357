"""The upload path against real local servers: moto (S3 with notifications, SQS with redrive, Secrets Manager),
DynamoDB Local, the Cobalt sandbox, and the uploader handler loaded from functions/ as Lambda loads it."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from docdrop.ledger import DocumentLedger, DocumentView, ObjectRef

from local.cobalt_sandbox import CobaltSandbox, FaultSettings
from local.event_source import BatchReport, SqsEventSource, lambda_sqs_record
from local.lambda_runtime import LocalLambdaContext, load_handler_module
from local.resources import (
    IngestQueues,
    create_fingerprint_key,
    create_inbox_bucket,
    create_ingest_queues,
    uploader_event_source,
)

AUTH = {"client_id": "ci_test_docdrop", "client_secret": "cs_test_docdrop", "access_token": "at_test_clinic_main"}
PREFIX = "inbox/"
MRN = "100001"
READ_TIMEOUT = 1.5


@dataclass
class UploaderStack:
    s3: Any
    sqs: Any
    ledger: DocumentLedger
    sandbox: CobaltSandbox
    bucket: str
    queues: IngestQueues
    module: ModuleType
    source: SqsEventSource
    versions: dict[str, str] = field(default_factory=dict)

    def put(
        self,
        name: str,
        content: bytes,
        tags: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Put `inbox/<name>` with tags (URL-encoded, as the S3 API takes them); returns its version id."""
        from urllib.parse import urlencode

        key = PREFIX + name
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": content}
        if tags:
            kwargs["Tagging"] = urlencode(tags)
        if metadata:
            kwargs["Metadata"] = metadata
        version: str = self.s3.put_object(**kwargs)["VersionId"]
        self.versions[key] = version
        return version

    def tag(self, name: str, tags: dict[str, str], version: str | None = None) -> None:
        key = PREFIX + name
        self.s3.put_object_tagging(
            Bucket=self.bucket,
            Key=key,
            VersionId=version or self.versions[key],
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]},
        )

    def drain(self, max_batches: int = 20) -> list[BatchReport]:
        """Run the event source until the queue has nothing visible."""
        reports = []
        for _ in range(max_batches):
            report = self.source.poll_once(wait_seconds=0)
            if report is None:
                break
            reports.append(report)
        return reports

    def receive(self) -> list[dict[str, Any]]:
        """Take the visible messages without invoking anything (to replay them by hand)."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queues.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)

    def invoke(self, messages: list[dict[str, Any]], timeout_seconds: float = 90.0) -> dict[str, Any]:
        event = {"Records": [lambda_sqs_record(m, self.queues.queue_arn) for m in messages]}
        result: dict[str, Any] = self.module.handler(event, LocalLambdaContext("uploader", timeout_seconds))
        return result

    def redeliver_failed(self) -> None:
        """Make the messages the event source left in flight visible now, instead of after the visibility timeout."""
        for report in self.source.batches:
            for receipt in report.failed_receipts:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queues.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
                )
        self.source.batches.clear()

    def ref(self, name: str, version: str | None = None) -> ObjectRef:
        key = PREFIX + name
        return ObjectRef(self.bucket, key, version or self.versions[key])

    def view(self, name: str, version: str | None = None) -> DocumentView:
        found = self.ledger.lookup(self.ref(name, version))
        assert found is not None, "no ledger record for this object version"
        return found

    def uploads(self) -> list[dict[str, Any]]:
        return self.sandbox._public_documents()

    def wait_for_outcome_event(self, document_id: str, seconds: float = 10.0) -> None:
        """Until the sandbox's EMR robot has made the document's outcome event (its log holds it, sent or not)."""
        import time

        deadline = time.monotonic() + seconds
        while not any(
            r["event"]["type"].startswith("document.") and r["event"]["data"].get("document_id") == document_id
            for r in list(self.sandbox.events)
        ):
            assert time.monotonic() < deadline, "the sandbox made no outcome event"
            time.sleep(0.05)

    def stack_file(self, directory: Path) -> Path:
        """A local-stack.json naming this stack's servers and resources, for the docdrop command line."""
        path = directory / "local-stack.json"
        info = {
            "table": self.module.settings.ledger_table,
            "bucket": self.bucket,
            "region": "us-east-1",
            "dynamodb_endpoint_url": self.ledger._client.meta.endpoint_url,
            "aws_endpoint_url": self.s3.meta.endpoint_url,
            "secrets": {"cobalt_credentials": self.module.settings.cobalt_credentials_secret, "webhook_signing": "-"},
            "prefix": PREFIX,
            "queue_url": self.queues.queue_url,
            "dlq_url": self.queues.dlq_url,
        }
        path.write_text(json.dumps(info), encoding="utf-8")
        return path

    def script(self, *answers: dict[str, Any], slow_seconds: float = 4.0) -> None:
        self.sandbox.set_faults(FaultSettings(script=list(answers), slow_seconds=slow_seconds, retry_after_seconds=0))


def tags(mrn: str = MRN, folder: str = "MedicalRecords", **extra: str) -> dict[str, str]:
    return {"patient_mrn": mrn, "folder_name": folder, **extra}


@pytest.fixture
def uploader_stack(
    monkeypatch: pytest.MonkeyPatch, ddb: Any, ledger_table: str, moto_endpoint: str, dynamodb_endpoint: str, sandbox
) -> Iterator[UploaderStack]:
    name = f"docdrop-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    queues = create_ingest_queues(sqs, name)
    create_inbox_bucket(s3, f"{name}-inbox", PREFIX, queues.queue_arn)
    secrets.create_secret(Name=f"{name}/cobalt", SecretString=json.dumps(AUTH))
    for variable, value in {
        "LEDGER_TABLE": ledger_table,
        "COBALT_BASE_URL": sandbox.base_url,
        "COBALT_CREDENTIALS_SECRET": f"{name}/cobalt",
        "FINGERPRINT_KEY_SECRET": create_fingerprint_key(secrets, f"{name}/fingerprint-key"),
        "WATCHED_PREFIX": PREFIX,
        "COBALT_READ_TIMEOUT": str(READ_TIMEOUT),
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "POWERTOOLS_METRICS_NAMESPACE": "DocDrop",
    }.items():
        monkeypatch.setenv(variable, value)
    module = load_handler_module("uploader")
    # The template's batch size and timeout, without the 5 s batching window: tests drain the queue many times.
    settings = dataclasses.replace(uploader_event_source(), batching_window_seconds=0)
    source = SqsEventSource(sqs, queues.queue_url, queues.queue_arn, module.handler, settings)
    stack = UploaderStack(s3, sqs, DocumentLedger(ddb, ledger_table), sandbox, f"{name}-inbox", queues, module, source)
    yield stack
    module.executor.shutdown(wait=True)

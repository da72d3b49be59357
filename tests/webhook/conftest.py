from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from docdrop.ledger import DocumentLedger
from docdrop.signature import sign_payload

from local.lambda_runtime import LocalLambdaContext, load_handler_module
from local.webhook_adapter import http_api_event

CURRENT = "whsec_current_0123456789abcdef"
PREVIOUS = "whsec_previous_fedcba9876543210"


@dataclass
class WebhookStack:
    module: ModuleType
    ledger: DocumentLedger
    secrets: Any
    secret_name: str

    def invoke(self, body: bytes, headers: dict[str, str] | None = None, base64_body: bool = False) -> dict[str, Any]:
        import base64

        event = http_api_event("POST", "/webhooks/cobalt", "", headers or {}, body, "127.0.0.1")
        if base64_body:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
        result: dict[str, Any] = self.module.handler(event, LocalLambdaContext("webhook", timeout_seconds=4))
        return result

    def deliver(self, event: dict[str, Any], secret: str = CURRENT, attempt: int = 1) -> dict[str, Any]:
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "cobalt-verification": sign_payload(secret, body),
            "webhook-id": str(event.get("id")),
            "webhook-attempt": str(attempt),
            "content-type": "application/json",
        }
        return self.invoke(body, headers)

    def rotate(self, current: str, previous: str) -> None:
        self.secrets.put_secret_value(
            SecretId=self.secret_name, SecretString=json.dumps({"current": current, "previous": previous})
        )


def document_event(
    event_id: str | None = None,
    event_type: str = "document.uploaded",
    document_id: str = "9988776655443322",
    **data: Any,
) -> dict[str, Any]:
    return {
        "id": event_id or str(uuid.uuid4()),
        "access_token_reference_id": "clinic-main",
        "object": "event",
        "created": "2025-10-21T14:30:00.000Z",
        "type": event_type,
        "job_id": "12345",
        "data": {"document_id": document_id, "patient_mrn": "123456", "folder_name": "MedicalRecords", **data},
    }


@pytest.fixture
def webhook_stack(monkeypatch, ddb, ledger_table, moto_endpoint, dynamodb_endpoint) -> Iterator[WebhookStack]:
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"webhook-signing-{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=name, SecretString=json.dumps({"current": CURRENT, "previous": PREVIOUS}))
    monkeypatch.setenv("LEDGER_TABLE", ledger_table)
    monkeypatch.setenv("WEBHOOK_SECRET", name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "DocDrop")
    module = load_handler_module("webhook")
    yield WebhookStack(module, DocumentLedger(ddb, ledger_table), secrets, name)

"""The sample webhook event in events/ is accepted by the handler once signed with the stack's secret."""

from __future__ import annotations

import json
from pathlib import Path

from docdrop.signature import sign_payload

from local.lambda_runtime import LocalLambdaContext
from tests.webhook.conftest import CURRENT, WebhookStack

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_the_sample_webhook_event_is_recorded(webhook_stack: WebhookStack) -> None:
    event = json.loads((EVENTS / "webhook-document-uploaded.json").read_text())
    event["headers"]["cobalt-verification"] = sign_payload(CURRENT, event["body"].encode())

    answer = webhook_stack.module.handler(event, LocalLambdaContext("webhook", timeout_seconds=4))

    assert answer["statusCode"] == 200
    document = webhook_stack.ledger.get_document(json.loads(event["body"])["data"]["document_id"])
    assert document is not None and document["outcome"] == "UPLOADED"

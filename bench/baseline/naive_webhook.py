"""The baseline webhook: Powertools' HTTP API resolver, as its samples write one. It checks the signature over the raw
body, then puts the outcome in the table: one write per delivery, a repeated delivery written again, and an outcome
before its upload's row simply overwritten later. Kept only to be measured against.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

logger = Logger()
app = APIGatewayHttpResolver()
table = boto3.resource("dynamodb").Table(os.environ["NAIVE_TABLE"])
secret = json.loads(
    boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["WEBHOOK_SECRET"])["SecretString"]
)["current"]


@app.post("/webhooks/cobalt")
def cobalt_webhook() -> Response[str]:
    body = (app.current_event.decoded_body or "").encode()
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, app.current_event.headers.get("cobalt-verification", "")):
        return Response(status_code=401, content_type="application/json", body='{"ok": false}')
    event = json.loads(body)
    data = event.get("data", {})
    table.put_item(
        Item={"pk": data["document_id"], "status": event["type"], "event_id": event["id"], "created": event["created"]}
    )
    logger.info("webhook recorded", extra={"document_id": data["document_id"]})
    return Response(status_code=200, content_type="application/json", body='{"ok": true}')


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)

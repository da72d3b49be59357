"""Cobalt webhook receiver (API Gateway HTTP API, payload 2.0). Thin: decode, call the domain, map the answer."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
from botocore.config import Config
from docdrop.ledger import WebhookStores
from docdrop.observability import build_logger, build_metrics, publish_metrics
from docdrop.secret_documents import SecretDocument
from docdrop.settings import WebhookSettings
from docdrop.webhook import handle_cobalt_webhook, rotation_in_progress

# Created once per container. Timeouts and retries are bounded so one delivery stays under Cobalt's 5 s.
_FAST = Config(connect_timeout=0.5, read_timeout=1.0, retries={"max_attempts": 2, "mode": "standard"})
settings = WebhookSettings.from_env()
logger = build_logger("webhook")
metrics = build_metrics("webhook")
ledger = WebhookStores(boto3.client("dynamodb", config=_FAST), settings.ledger_table, settings.record_retention_days)
_secrets = boto3.client("secretsmanager", config=_FAST)
signing_secret = SecretDocument(
    settings.webhook_secret, settings.secret_max_age_seconds, _secrets, min_refresh=settings.secret_reread_seconds
)
fingerprint_key = (
    SecretDocument(settings.fingerprint_key_secret, settings.secret_max_age_seconds, _secrets)
    if settings.fingerprint_key_secret
    else None
)


def _signing_document(refresh: bool) -> dict[str, Any]:
    """The signing secrets, and when their version was written (a rotated secret lives 24 hours from then).

    A re-read is rate-limited, except while a rotation is marked: then the new secret is read as soon as it is stored.
    """
    force = refresh and rotation_in_progress(signing_secret.get())
    document = signing_secret.get(refresh=refresh, force=force)
    return {**document, "version_created_at": signing_secret.version_created_at}


@publish_metrics(metrics)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    answer = handle_cobalt_webhook(
        raw,
        headers,
        ledger=ledger,
        load_secrets=_signing_document,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        fingerprint_key=fingerprint_key.key_bytes if fingerprint_key else None,
    )
    # Logs carry the outcome and, once the signature holds, the signed event id: never the body (it holds the MRN), and
    # never a header anyone with the URL could fill.
    logger.info("webhook handled", status=answer.status_code, result=answer.body, event_id=answer.event_id)
    return {
        "statusCode": answer.status_code,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(answer.body),
    }

"""Reconciler (scheduled, one invocation at a time): closes open loops by their deadlines. Thin: build collaborators
once, run one time-boxed pass, return what it did (the `docdrop reconcile` command prints it)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from docdrop.accounts import CobaltAccounts
from docdrop.cobalt import CobaltClient
from docdrop.deadline import Deadline
from docdrop.ledger import DocumentLedger, ObjectRef
from docdrop.observability import build_logger, build_metrics, publish_metrics
from docdrop.outcomes import OutcomeJoiner
from docdrop.reconciler import Deadlines, Reconciler
from docdrop.s3_events import s3_notification
from docdrop.secret_documents import SecretDocument
from docdrop.settings import ReconcilerSettings

settings = ReconcilerSettings.from_env()
logger = build_logger("reconciler")
metrics = build_metrics("reconciler")
_AWS = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 4, "mode": "standard"})
credentials = SecretDocument(
    settings.cobalt_credentials_secret, settings.secret_max_age_seconds, boto3.client("secretsmanager", config=_AWS)
)
fingerprint_key = (
    SecretDocument(settings.fingerprint_key_secret, settings.secret_max_age_seconds, boto3.client("secretsmanager"))
    if settings.fingerprint_key_secret
    else None
)
ledger = DocumentLedger(boto3.client("dynamodb", config=_AWS), settings.ledger_table, settings.record_retention_days)
sqs = boto3.client("sqs", config=_AWS)


def resend(ref: ObjectRef, size: int) -> None:
    """An S3-shaped event for one version on the ingest queue: the uploader claims and sends it, once."""
    body = s3_notification(ref.bucket, ref.key, ref.version_id, size)
    sqs.send_message(QueueUrl=settings.ingest_queue_url, MessageBody=body)


reconciler = Reconciler(
    ledger,
    CobaltClient(
        settings.cobalt_base_url,
        lambda refresh: credentials.get(refresh=refresh),
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
    ),
    OutcomeJoiner(ledger, metrics, logger),
    Deadlines.from_settings(settings),
    metrics=metrics,
    logger=logger,
    dead_letter_queue_arn=settings.dead_letter_queue_arn,
    fingerprint_key=fingerprint_key.key_bytes if fingerprint_key else None,
    accounts=lambda: CobaltAccounts.from_secret(credentials.get()),
    resend=resend if settings.ingest_queue_url else None,
)


@publish_metrics(metrics)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return reconciler.run(Deadline.from_context(context)).to_dict()

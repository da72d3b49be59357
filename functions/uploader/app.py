"""Uploader (SQS batches of S3 notifications → Cobalt). Thin: build collaborators once, hand batches to the domain."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import boto3
from botocore.config import Config
from docdrop.accounts import CobaltAccounts, parse_prefix_map
from docdrop.breaker import BreakerSettings
from docdrop.cobalt import CobaltClient
from docdrop.ledger import DocumentLedger
from docdrop.observability import AccountMetrics, build_logger, build_metrics, publish_metrics
from docdrop.retry_schedule import RetrySchedule
from docdrop.secret_documents import SecretDocument
from docdrop.settings import UploaderSettings
from docdrop.uploader import DocumentUploader, upload_sqs_batch

# Created once per container and reused by every invocation: clients, the HTTP session, the thread pool.
settings = UploaderSettings.from_env()
logger = build_logger("uploader")
metrics = build_metrics("uploader")
account_metrics = AccountMetrics("uploader")
_AWS = Config(
    connect_timeout=2,
    read_timeout=10,
    retries={"max_attempts": 4, "mode": "standard"},
    max_pool_connections=settings.max_parallel_uploads * 2,
)
credentials = SecretDocument(
    settings.cobalt_credentials_secret, settings.secret_max_age_seconds, boto3.client("secretsmanager", config=_AWS)
)
fingerprint_key = SecretDocument(
    settings.fingerprint_key_secret, settings.secret_max_age_seconds, boto3.client("secretsmanager", config=_AWS)
)
ledger = DocumentLedger(boto3.client("dynamodb", config=_AWS), settings.ledger_table, settings.record_retention_days)
breaker = BreakerSettings(
    failures=settings.breaker_failures,
    window=timedelta(seconds=settings.breaker_window_seconds),
    cool_down=timedelta(seconds=settings.breaker_cool_down_seconds),
    max_cool_down=timedelta(seconds=settings.breaker_cool_down_seconds * 16),
    # The first upload after a cold spell holds its lease for as long as its answer may take.
    probe_lease=timedelta(seconds=settings.connect_timeout_seconds + settings.read_timeout_seconds + 5),
)
uploader = DocumentUploader(
    ledger,
    boto3.client("s3", config=_AWS),
    CobaltClient(
        settings.cobalt_base_url,
        lambda refresh: credentials.get(refresh=refresh),
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        server_error_policy=settings.server_error_policy,
        pool_size=settings.max_parallel_uploads,
    ),
    logger=logger,
    watched_prefix=settings.watched_prefix,
    fingerprint_key=fingerprint_key.key_bytes,
    duplicate_window=timedelta(hours=settings.duplicate_window_hours),
    retry_schedule=RetrySchedule.parse(settings.retry_steps_seconds),
    max_receive_count=settings.max_receive_count,
    breaker_settings=breaker,
    accounts=lambda: CobaltAccounts.from_secret(credentials.get()),
    account_prefixes=parse_prefix_map(settings.account_prefixes),
)
executor = ThreadPoolExecutor(max_workers=settings.max_parallel_uploads, thread_name_prefix="upload")
sqs = boto3.client("sqs", config=_AWS)


def delay_message(receipt_handle: str, seconds: int) -> None:
    sqs.change_message_visibility(
        QueueUrl=settings.ingest_queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
    )


@publish_metrics(metrics)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return upload_sqs_batch(
        event,
        context,
        uploader=uploader,
        metrics=metrics,
        executor=executor,
        delay_message=delay_message if settings.ingest_queue_url else None,
        account_metrics=account_metrics,
    )

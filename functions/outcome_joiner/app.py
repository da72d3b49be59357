"""Outcome joiner (DynamoDB Streams on the ledger, filtered to Cobalt documents that hold an outcome and an object).
Thin: build collaborators once, hand each batch to the domain, report failed records so the stream retries them."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from docdrop.ledger import DocumentStore
from docdrop.observability import build_logger, build_metrics, publish_metrics
from docdrop.outcomes import OutcomeJoiner, join_stream_batch
from docdrop.settings import JoinerSettings

settings = JoinerSettings.from_env()
logger = build_logger("outcomes")
metrics = build_metrics("outcomes")
_AWS = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 4, "mode": "standard"})
joiner = OutcomeJoiner(
    DocumentStore(boto3.client("dynamodb", config=_AWS), settings.ledger_table, settings.record_retention_days),
    metrics,
    logger,
)


@publish_metrics(metrics)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return join_stream_batch(event, context, joiner=joiner)

"""Uploader (SQS batches of S3 notifications → Cobalt).

NOT IMPLEMENTED YET (issue 4). Until it is, every message is reported as a batch item failure, so nothing is consumed
silently: SQS redelivers, then moves the messages to the dead-letter queue, whose alarm fires; they can be redriven
once the uploader exists. Nothing is sent to Cobalt.
"""

from __future__ import annotations

from typing import Any

from docdrop.observability import build_logger

logger = build_logger("uploader")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records") or []
    logger.error("uploader not implemented: returning every message to the queue", count=len(records))
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if "messageId" in r]}

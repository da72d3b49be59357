"""The one place that builds Powertools' Logger and Metrics, and names every metric DocDrop emits.

Metric dimensions are only the service name: never an MRN, key, folder or document id (promise 5).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

NAMESPACE = "DocDrop"


class MetricName(StrEnum):
    OBJECTS_RECEIVED = "ObjectsReceived"
    DOCUMENTS_SUBMITTED = "DocumentsSubmitted"
    DOCUMENTS_REJECTED = "DocumentsRejected"
    DOCUMENTS_WAITING_FOR_TAGS = "DocumentsWaitingForTags"
    DOCUMENTS_RETRIED = "DocumentsRetried"
    DOCUMENTS_NEEDS_REVIEW = "DocumentsNeedsReview"
    DOCUMENTS_BLOCKED = "DocumentsBlocked"
    DOCUMENTS_FAILED = "DocumentsFailed"
    DOCUMENTS_UPLOADED = "DocumentsUploaded"
    DUPLICATE_EVENTS = "DuplicateEvents"
    COBALT_LATENCY = "CobaltLatency"
    WEBHOOK_INVALID_SIGNATURE = "WebhookInvalidSignature"
    WEBHOOK_BAD_REQUEST = "WebhookBadRequest"
    WEBHOOK_DUPLICATE = "WebhookDuplicate"
    WEBHOOK_IGNORED_EVENT = "WebhookIgnoredEvent"
    WEBHOOK_LEDGER_ERROR = "WebhookLedgerError"
    LOGIN_REQUIRED = "LoginRequired"


def build_logger(service: str) -> Logger:
    from aws_lambda_powertools import Logger

    return Logger(service=service)


def build_metrics(service: str) -> Metrics:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=NAMESPACE, service=service)

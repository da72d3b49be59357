"""The one place that builds Powertools' Logger and Metrics, and names every metric DocDrop emits.

Metric dimensions are only the service name: never an MRN, key, folder or document id (promise 5).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.metrics import EphemeralMetrics

NAMESPACE = "DocDrop"
Handler = Callable[[Any, Any], Any]


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
    UNVERSIONED_OBJECTS = "UnversionedObjects"
    DOCUMENTS_DUPLICATE = "DocumentsDuplicate"
    COBALT_LATENCY = "CobaltLatency"
    WEBHOOK_INVALID_SIGNATURE = "WebhookInvalidSignature"
    WEBHOOK_DEFERRED_FOR_ROTATION = "WebhookDeferredForRotation"
    # An account's EHR password will expire: tell its practice (a metric name, not a secret).
    PASSWORD_CHANGE_WARNING = "PasswordChangeWarning"  # noqa: S105
    COBALT_CALLS_DEFERRED = "CobaltCallsDeferred"  # uploads not sent: the breaker on Cobalt is open, or a Retry-After
    COBALT_CIRCUIT_OPEN_SECONDS = "CobaltCircuitOpenSeconds"
    WEBHOOK_BAD_REQUEST = "WebhookBadRequest"
    WEBHOOK_DUPLICATE = "WebhookDuplicate"
    WEBHOOK_IGNORED_EVENT = "WebhookIgnoredEvent"
    WEBHOOK_LEDGER_ERROR = "WebhookLedgerError"
    LOGIN_REQUIRED = "LoginRequired"
    OUTCOME_EVENTS_RECORDED = "OutcomeEventsRecorded"  # webhook: signed document outcomes kept (DocDrop's or not)
    # The outcome joiner and the reconciler: open loops closed, and how many remain open for how long.
    RECOVERED_FROM_EVENT_LOG = "RecoveredFromEventLog"
    LATE_SUBMISSIONS = "LateSubmissionsRecorded"
    REVIEWS_RESOLVED = "ReviewsResolvedByEvidence"
    REVIEWS_OPEN = "ReviewsOpen"
    REVIEWS_FOUND_SILENT = "ReviewsFoundSilent"  # not filed, by silence: nothing of theirs in Cobalt's whole log
    REVIEWS_RESENT_BY_SILENCE = "ReviewsResentBySilence"  # ResendSilentReviews: sent again by the reconciler, once
    EVENT_LOG_UNAVAILABLE = "EventLogUnavailable"
    DOCUMENTS_STALE = "DocumentsStale"
    TAG_WAITS_EXPIRED = "TagWaitsExpired"
    INTERRUPTED_CLAIMS = "InterruptedClaims"
    INTERRUPTED_CLAIMS_RESENT = "InterruptedClaimsResent"  # lapsed before their POST started: sent again, no review
    PENDING_RETRY_DEAD_LETTERED = "PendingRetryDeadLettered"
    FOREIGN_OUTCOMES = "ForeignOutcomes"
    OUTCOMES_OF_UNKNOWN_ACCOUNTS = "OutcomesOfUnknownAccounts"  # foreign, and for a token no account here holds
    OPEN_OBJECTS = "OpenObjects"
    OLDEST_OPEN_SECONDS = "OldestOpenSeconds"
    OPEN_SUBMITTED = "OpenSubmitted"
    OPEN_SUBMITTED_PAST_GRACE = "OpenSubmittedPastGrace"
    OLDEST_SUBMITTED_SECONDS = "OldestSubmittedSeconds"
    RECONCILER_INCOMPLETE = "ReconcilerIncomplete"
    # A Cobalt document id returned for one object that the ledger links to another already: never overwritten.
    DOCUMENT_LINK_CONFLICTS = "DocumentLinkConflicts"
    OLDEST_REVIEW_SECONDS = "OldestReviewSeconds"  # past the review horizon (7 days), only a person can settle it
    # PENDING_RETRY whose message the dead-letter queue no longer keeps: a redrive finds nothing; docdrop retry sends it
    DEAD_LETTERED_MESSAGES_EXPIRED = "DeadLetteredMessagesExpired"


def build_logger(service: str) -> Logger:
    from aws_lambda_powertools import Logger

    return Logger(service=service)


def build_metrics(service: str) -> EphemeralMetrics:
    """One function's metrics. EphemeralMetrics, not Metrics: Metrics share one metric set per process, so functions run
    in one process (the local stack) would flush each other's counts under the wrong service."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    return EphemeralMetrics(namespace=NAMESPACE, service=service)


def publish_metrics(metrics: EphemeralMetrics) -> Callable[[Handler], Handler]:
    """A handler's metrics published when it returns or raises, as Powertools' `log_metrics` does, but only when
    there are any: `log_metrics` warns on an empty set, and an invocation that saw only test events has none."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def publishing(event: Any, context: Any) -> Any:
            try:
                return handler(event, context)
            finally:
                if metrics.metric_set:
                    metrics.flush_metrics()

        return publishing

    return decorate


# Counted per Cobalt account as well, with the dimensions service and account (the operator's label, never PHI; as
# many values as accounts in the secret).
ACCOUNT_METRICS = frozenset(
    {
        MetricName.DOCUMENTS_SUBMITTED,
        MetricName.DOCUMENTS_BLOCKED,
        MetricName.DOCUMENTS_RETRIED,
        MetricName.COBALT_CALLS_DEFERRED,
    }
)


class AccountMetrics:
    """Per-account counts of one invocation, flushed once at its end as one EMF document per account."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], float] = {}

    def add(self, account: str, name: str, unit: str, value: float) -> None:
        if name not in ACCOUNT_METRICS:
            return
        with self._lock:
            key = (account, name, unit)
            self._counts[key] = self._counts.get(key, 0.0) + value

    def flush(self) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics

        with self._lock:
            counts, self._counts = self._counts, {}
        by_account: dict[str, list[tuple[str, str, float]]] = {}
        for (account, name, unit), value in counts.items():
            by_account.setdefault(account, []).append((name, unit, value))
        for account, values in sorted(by_account.items()):
            metrics = EphemeralMetrics(namespace=NAMESPACE, service=self._service)
            metrics.add_dimension(name="account", value=account)
            for name, unit, value in values:
                metrics.add_metric(name=name, unit=unit, value=value)
            metrics.flush_metrics()

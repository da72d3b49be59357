"""The upload path: one S3 object version → validated → claimed → sent to Cobalt at most once → its state recorded.

Promises kept here: 1 (claim before the POST; a duplicate, a redelivery or a racing invocation finds the claim and
stops; an ambiguous POST becomes NEEDS_REVIEW), 2 (every version read ends in a state with a reason, or its message
returns to the queue), 5 (logs name the object id, never key, MRN or notes), 6 (answers classified by
`docdrop.cobalt_answers`).
"""

from __future__ import annotations

from docdrop.deadline import Deadline
from docdrop.uploader.batch import upload_sqs_batch
from docdrop.uploader.core import DocumentUploader
from docdrop.uploader.results import (
    LEASE_MARGIN_SECONDS,
    RECORD_MARGIN_SECONDS,
    UNVERSIONED,
    UNVERSIONED_REASON,
    MetricSink,
    ObjectResult,
    RetryLater,
)

__all__ = [
    "LEASE_MARGIN_SECONDS",
    "RECORD_MARGIN_SECONDS",
    "UNVERSIONED",
    "UNVERSIONED_REASON",
    "Deadline",
    "DocumentUploader",
    "MetricSink",
    "ObjectResult",
    "RetryLater",
    "upload_sqs_batch",
]

"""What an upload comes to, and the words its parts share: its result, a message to try again, the margins."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from docdrop.ledger import Status
from docdrop.observability import MetricName

# A claim outlives the invocation that holds it by this much; past it, the holder is known dead (see mark_interrupted).
LEASE_MARGIN_SECONDS = 30.0
# Time kept back at the end of an invocation to record what happened after the last answer from Cobalt.
RECORD_MARGIN_SECONDS = 5.0
LINK_CACHE_SECONDS = 5.0  # how long an account's link state is trusted per container
# The ledger's version for an object read from a bucket without versioning: DocDrop sends nothing from one, since
# without S3's version id two events of one write cannot be told from two writes (a second upload).
UNVERSIONED = "unversioned"
UNVERSIONED_REASON = (
    "The inbox bucket's versioning is off or suspended, and DocDrop sends a document only by its S3 version id, "
    "so that it is never filed twice: enable versioning on the bucket, then put the object again"
)

Metric = tuple[MetricName, str, float]


class RetryLater(Exception):
    """The message must come back (SQS redelivers it after its visibility timeout). Never carries PHI."""


class MetricSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


@dataclasses.dataclass(frozen=True)
class ObjectResult:
    """What processing one object event came to: the state it left the version in, and what to count."""

    object_id: str | None
    status: Status | None  # None: this event recorded nothing (not a document, or another writer got there first)
    retry_later: bool = False
    metrics: tuple[Metric, ...] = ()
    retry_in_seconds: int | None = None  # Cobalt unavailable: the queue's delay before the message is received again
    account: str | None = None  # the Cobalt account it went to, for the per-account counts


def count(name: MetricName, value: float = 1) -> Metric:
    return (name, "Count", value)


RECEIVED = count(MetricName.OBJECTS_RECEIVED)

"""The outcome joiner: a Cobalt document's outcome becomes its object's status (promises 2 and 3).

The webhook writes an outcome on the Cobalt-document item in one call and cannot know the object; the submission
links the same item to its object. Whichever comes second, the item then holds both, and a DynamoDB Streams record of
it (filtered to such items in template.yaml) reaches `join_stream_batch`. An outcome that came first is listed as
unjoined until its link comes (`DocumentStore.mark_unjoined`). The reconciler calls the
same `OutcomeJoiner.join` for anything a stream missed. Outcome metrics are counted here, once per join, so an outcome
for a document DocDrop never sent is never counted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer

from docdrop.ledger import UNJOINED, DocumentStore, JoinResult, Status
from docdrop.observability import MetricName

_deserializer = TypeDeserializer()


class MetricSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class OutcomeJoiner:
    def __init__(self, ledger: DocumentStore, metrics: MetricSink, logger: logging.Logger | Any) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self.logger = logger

    def join(self, document: Mapping[str, Any], mark: str) -> JoinResult | None:
        """Join one Cobalt-document item (with `outcome` and `object_id`) to its object; None if it has neither.

        An outcome on a document no object is linked to (its webhook beat the upload's answer, or it is not DocDrop's)
        is listed as unjoined instead, for the link to join it later, or the reviews and the foreign sweep to find it.
        """
        if document.get("outcome") and not document.get("object_id") and not document.get(UNJOINED):
            if not document.get("foreign_at") and self._ledger.mark_unjoined(document):
                self.logger.info("outcome without its object yet", extra={"document_id": document.get("document_id")})
            return None
        if not document.get("outcome") or not document.get("object_id"):
            return None
        result = self._ledger.join_outcome(document, mark)
        if document.get(UNJOINED):
            self._ledger.clear_unjoined(str(document["document_id"]))
        if result is JoinResult.JOINED:  # counted after both writes, so a retry that finds its own mark counts once
            failed = document["outcome"] == Status.FAILED.value
            name = MetricName.DOCUMENTS_FAILED if failed else MetricName.DOCUMENTS_UPLOADED
            self._metrics.add_metric(name, "Count", 1)
        self.logger.info(
            "outcome joined" if result is JoinResult.JOINED else "outcome not joined",
            extra={"object_id": document["object_id"], "outcome": document["outcome"], "result": result.value},
        )
        return result


def stream_new_image(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The item a DynamoDB Streams record leaves behind (its NewImage), as plain values; None for a removal."""
    image = (record.get("dynamodb") or {}).get("NewImage")
    if not isinstance(image, Mapping):
        return None
    return {k: _deserializer.deserialize(v) for k, v in image.items()}


def join_stream_batch(event: dict[str, Any], context: Any, *, joiner: OutcomeJoiner) -> dict[str, Any]:
    """One batch of ledger stream records: each joined, failures reported so the stream retries only from them."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    def record_handler(record: Any) -> None:
        raw: dict[str, Any] = record.raw_event
        document = stream_new_image(raw)
        if document is not None:
            joiner.join(document, mark=str(raw.get("dynamodb", {}).get("SequenceNumber") or record.event_id))

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
    result: dict[str, Any] = dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
    return result

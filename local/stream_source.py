"""A local DynamoDB Streams event source mapping: reads the ledger table's stream on DynamoDB Local and invokes a
handler with Lambda's event shape, as the `DynamoDB` event of template.yaml would in AWS.

What it keeps of Lambda's semantics: records in stream order per shard; the template's batch size and filter
criteria (a record that does not match is dropped, never delivered); partial batch failures (`batchItemFailures`:
the batch is retried from the first failed record) and a handler that raises (the whole batch retried); after
`maximum_retry_attempts` the batch is given up and kept in `given_up`, as Lambda sends it to its on-failure destination.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from local.lambda_runtime import LocalLambdaContext

log = logging.getLogger("docdrop.local.stream")


@dataclasses.dataclass(frozen=True)
class StreamSourceSettings:
    """The `DynamoDB` event of a function in template.yaml, and that function's timeout."""

    batch_size: int
    maximum_retry_attempts: int
    filter_patterns: tuple[Mapping[str, Any], ...]
    function_timeout_seconds: float
    report_batch_item_failures: bool


def matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """Lambda event filtering for the operators DocDrop's template uses: exact values, `exists` and `prefix`.

    Any other operator raises, so a template that starts using one fails loudly here instead of filtering wrongly.
    """
    for field, rule in pattern.items():
        present = isinstance(value, Mapping) and field in value
        inner = value.get(field) if present else None
        if isinstance(rule, Mapping):  # a nested pattern: an absent field is an empty object to it
            if not matches(rule, inner if present else {}):
                return False
            continue
        if not isinstance(rule, list) or not any(_leaf(condition, present, inner) for condition in rule):
            return False
    return True


def _leaf(condition: Any, present: bool, value: Any) -> bool:
    if isinstance(condition, Mapping):
        if set(condition) == {"exists"}:
            return present is bool(condition["exists"])
        if set(condition) == {"prefix"}:
            return present and isinstance(value, str) and value.startswith(str(condition["prefix"]))
        raise NotImplementedError(f"event filter operator not emulated locally: {sorted(condition)}")
    return present and value == condition


def lambda_stream_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record in the shape Lambda hands a function (times as epoch seconds, the stream's ARN)."""
    shaped = dict(record)
    dynamodb = dict(shaped.get("dynamodb") or {})
    moment = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(moment, datetime):
        dynamodb["ApproximateCreationDateTime"] = moment.timestamp()
    shaped["dynamodb"] = dynamodb
    shaped["eventSourceARN"] = stream_arn
    return shaped


class DynamoDBStreamSource:
    """Polls every shard of one table's stream and invokes `handler` with batches, until `stop` is set."""

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Callable[[dict[str, Any], Any], Any],
        settings: StreamSourceSettings,
        *,
        function_name: str = "outcome-joiner",
        poll_interval_seconds: float = 0.1,
    ) -> None:
        self._streams = streams
        self._arn = stream_arn
        self._handler = handler
        self._settings = settings
        self._function = function_name
        self._interval = poll_interval_seconds
        self._iterators: dict[str, str | None] = {}  # shard id -> next iterator (None: shard closed and read)
        self.delivered = 0
        self.filtered_out = 0
        self.given_up: list[dict[str, Any]] = []

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.poll_once()
            except Exception:  # a transient error of the engine: like Lambda's poller, try again
                log.exception("ledger stream poll failed; retrying")
                busy = False
            if not busy:
                stop.wait(self._interval)

    def poll_once(self) -> bool:
        """Read each shard once and deliver what it held. True when any record was read."""
        self._discover_shards()
        busy = False
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            page = self._streams.get_records(ShardIterator=iterator, Limit=self._settings.batch_size)
            records = page.get("Records", [])
            self._iterators[shard_id] = page.get("NextShardIterator")
            if records:
                busy = True
                self._deliver(shard_id, [lambda_stream_record(r, self._arn) for r in records])
        return busy

    def _discover_shards(self) -> None:
        description = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]

    def _deliver(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        pending = [r for r in records if self._selected(r)]
        self.filtered_out += len(records) - len(pending)
        attempts = 0
        while pending:
            failed_from = self._invoke(pending)
            if failed_from is None:
                self.delivered += len(pending)
                return
            attempts += 1
            self.delivered += failed_from
            pending = pending[failed_from:]
            if attempts > self._settings.maximum_retry_attempts:
                log.error("stream batch given up after %d retries (on-failure destination)", attempts - 1)
                self.given_up.extend(pending)
                return
            time.sleep(min(1.0, 0.05 * 2**attempts))

    def _selected(self, record: Mapping[str, Any]) -> bool:
        patterns = self._settings.filter_patterns
        return not patterns or any(matches(pattern, record) for pattern in patterns)

    def _invoke(self, records: list[dict[str, Any]]) -> int | None:
        """Invoke once; None when every record succeeded, else the index of the first record to retry from."""
        context = LocalLambdaContext(
            self._function, self._settings.function_timeout_seconds, aws_request_id=str(uuid.uuid4())
        )
        try:
            answer = self._handler({"Records": records}, context)
        except Exception:
            log.exception("stream handler raised; the batch is retried")
            return 0
        failures = (answer or {}).get("batchItemFailures") if self._settings.report_batch_item_failures else None
        if not failures:
            return None
        failed = {str(f.get("itemIdentifier")) for f in failures}
        for index, record in enumerate(records):
            if str(record.get("dynamodb", {}).get("SequenceNumber")) in failed:
                return index
        return 0  # an identifier Lambda does not know fails the whole batch

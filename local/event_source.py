"""A local SQS event source mapping: polls the ingest queue and invokes the uploader handler as Lambda would.

Faithful in what matters to the promises: batches up to the batch size, filled for at most the batching window; the
queue's visibility timeout hides messages in flight; only messages not listed in `batchItemFailures` are deleted; a
handler that raises (or answers something unreadable) fails the whole batch; SQS's redrive policy moves a message to the
DLQ after maxReceiveCount receives. Messages are received with every attribute, so `ApproximateReceiveCount` is real.
`run` polls and invokes up to the mapping's MaximumConcurrency batches at once; an invocation that timed out or
crashed (local.workers) is a failed one: nothing is deleted, and the batch comes back after the visibility timeout.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from local.lambda_runtime import LocalLambdaContext
from local.resources import EventSourceSettings

log = logging.getLogger("docdrop.local.event_source")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclasses.dataclass(frozen=True)
class BatchReport:
    received: int
    failed: int
    error: str | None = None  # the handler raised: the whole batch returns to the queue
    failed_receipts: tuple[str, ...] = ()  # receipt handles of the messages left for SQS to redeliver


def lambda_sqs_record(message: dict[str, Any], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """One SQS message as Lambda's SQS event carries it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": dict(message.get("MessageAttributes") or {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsEventSource:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        handler: Handler,
        settings: EventSourceSettings,
        *,
        function_name: str = "uploader",
        visibility_timeout: int | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._handler = handler
        self._settings = settings
        self._function = function_name
        self._visibility = visibility_timeout
        self._on_batch = on_batch
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # poller thread -> messages of its batch being handled
        self.batches: list[BatchReport] = []

    @property
    def in_flight(self) -> int:
        """Messages of batches being handled right now."""
        with self._lock:
            return sum(self._in_flight.values())

    def _receive(self, wanted: int, wait_seconds: int) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "QueueUrl": self._queue_url,
            "MaxNumberOfMessages": min(10, wanted),
            "WaitTimeSeconds": wait_seconds,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self._visibility is not None:
            kwargs["VisibilityTimeout"] = self._visibility
        messages: list[dict[str, Any]] = self._sqs.receive_message(**kwargs).get("Messages", [])
        return messages

    def poll_once(self, wait_seconds: int = 1) -> BatchReport | None:
        """Gather one batch (up to the batch size, for at most the batching window) and invoke the handler once."""
        messages = self._receive(self._settings.batch_size, wait_seconds)
        if not messages:
            return None
        window_ends = time.monotonic() + self._settings.batching_window_seconds
        while len(messages) < self._settings.batch_size and time.monotonic() < window_ends:
            more = self._receive(self._settings.batch_size - len(messages), 0)
            if not more:
                time.sleep(min(0.2, max(0.0, window_ends - time.monotonic())))
            messages.extend(more)
        with self._lock:
            self._in_flight[threading.get_ident()] = len(messages)
        try:
            report = self._invoke(messages)
        finally:
            with self._lock:
                self._in_flight.pop(threading.get_ident(), None)
        self.batches.append(report)
        if self._on_batch is not None:
            self._on_batch(report)
        return report

    def _invoke(self, messages: list[dict[str, Any]]) -> BatchReport:
        event = {"Records": [lambda_sqs_record(m, self._queue_arn) for m in messages]}
        context = LocalLambdaContext(self._function, timeout_seconds=self._settings.function_timeout_seconds)
        by_id = {m["MessageId"]: m for m in messages}
        error: str | None = None
        try:
            result = self._handler(event, context)
            failed = self._failed_ids(result, by_id)
        except Exception as exc:  # the whole batch fails, as with Lambda
            error = type(exc).__name__
            log.warning("uploader invocation failed; the whole batch returns to the queue (%s)", error)
            failed = set(by_id)
        done = [m for message_id, m in by_id.items() if message_id not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
        receipts = tuple(by_id[message_id]["ReceiptHandle"] for message_id in sorted(failed))
        return BatchReport(received=len(messages), failed=len(failed), error=error, failed_receipts=receipts)

    def _failed_ids(self, result: Any, by_id: dict[str, Any]) -> set[str]:
        if not self._settings.report_batch_item_failures:
            return set()
        if result is None:
            return set()
        failures = result.get("batchItemFailures") if isinstance(result, dict) else None
        if not isinstance(failures, list):
            return set(by_id)  # an unreadable answer: Lambda treats the batch as failed
        ids = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
        if not ids <= set(by_id):  # an unknown or empty id fails the whole batch, as in Lambda
            return set(by_id)
        return ids

    def run(self, stop: threading.Event, wait_seconds: int = 1) -> None:
        """Poll with MaximumConcurrency pollers until `stop` is set; return once every batch in flight has ended."""
        pollers = [
            threading.Thread(target=self._poll, args=(stop, wait_seconds), name=f"sqs-poller-{n}", daemon=True)
            for n in range(max(1, self._settings.maximum_concurrency))
        ]
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()

    def _poll(self, stop: threading.Event, wait_seconds: int) -> None:
        while not stop.is_set():
            try:
                self.poll_once(wait_seconds)
            except Exception as exc:  # a poller error must not end the local stack; report it and go on
                log.warning("polling the ingest queue failed: %s", type(exc).__name__)
                stop.wait(1.0)

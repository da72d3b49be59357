"""One SQS batch of S3 events: its objects uploaded in parallel, partial failures reported to SQS."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from botocore.exceptions import ClientError

from docdrop.deadline import Deadline
from docdrop.observability import AccountMetrics
from docdrop.s3_events import ObjectEvent, UnreadableMessage, parse_s3_notifications
from docdrop.uploader.core import DocumentUploader
from docdrop.uploader.results import MetricSink, ObjectResult, RetryLater


def upload_sqs_batch(
    event: dict[str, Any],
    context: Any,
    *,
    uploader: DocumentUploader,
    metrics: MetricSink,
    executor: Executor,
    delay_message: Callable[[str, int], None] | None = None,
    account_metrics: AccountMetrics | None = None,
) -> dict[str, Any]:
    """Process one SQS batch: objects in parallel (bounded by `executor`), partial failures reported to SQS.

    Powertools' AsyncBatchProcessor builds the partial-batch response; the blocking work runs on `executor`'s threads.
    `delay_message(receipt_handle, seconds)` holds back a message whose documents wait for Cobalt (the retry schedule).
    """
    from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response

    deadline = Deadline.from_context(context)
    # One task per object version in this batch: S3 may send the same event twice and SQS may batch both.
    tasks: dict[tuple[str, str, str | None], asyncio.Future[ObjectResult]] = {}

    def settle(task: asyncio.Future[ObjectResult]) -> None:
        """Count what one object came to, once, however many messages carried it."""
        if task.cancelled():
            return
        outcome = task.exception()
        if outcome is None:
            result = task.result()
            for name, unit, value in result.metrics:
                metrics.add_metric(name, unit, value)
                if account_metrics is not None and result.account:
                    account_metrics.add(result.account, name, unit, value)
        elif not isinstance(outcome, RetryLater):
            # Type and error code only: exception texts can quote keys.
            code = outcome.response.get("Error", {}).get("Code") if isinstance(outcome, ClientError) else None
            uploader.logger.error(
                "object event failed; its message returns to the queue",
                extra={"error": type(outcome).__name__, "error_code": code},
            )

    def start(event: ObjectEvent, receive_count: int) -> asyncio.Future[ObjectResult]:
        key = (event.bucket, event.key, event.identity)
        if key not in tasks:
            loop = asyncio.get_running_loop()
            task = loop.run_in_executor(executor, uploader.process, event, deadline, receive_count)
            task.add_done_callback(settle)
            tasks[key] = task
        return tasks[key]

    async def record_handler(record: Any) -> int:
        try:
            events = parse_s3_notifications(record.body)
        except UnreadableMessage as exc:  # after maxReceiveCount it lands in the DLQ, whose alarm a person sees
            uploader.logger.warning("message is not an S3 notification", extra={"message_id": record.message_id})
            raise RetryLater(str(exc)) from None
        receive_count = int(record.attributes.approximate_receive_count or 1)
        outcomes = await asyncio.gather(*(start(e, receive_count) for e in events), return_exceptions=True)
        if any(not isinstance(o, ObjectResult) or o.retry_later for o in outcomes):
            delays = [o.retry_in_seconds for o in outcomes if isinstance(o, ObjectResult) and o.retry_in_seconds]
            if delays and delay_message is not None:
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        executor, delay_message, record.receipt_handle, max(delays)
                    )
                except Exception as exc:  # the queue's own visibility timeout applies instead: sooner, never lost
                    uploader.logger.warning("could not delay the message", extra={"error": type(exc).__name__})
            raise RetryLater("at least one object in this message must be tried again")
        return len(events)

    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    try:
        result: dict[str, Any] = dict(
            async_process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )
    finally:
        if account_metrics is not None:
            account_metrics.flush()
    return result

"""The local SQS event source behaves as Lambda's: partial failures, whole-batch failures, redrive to the DLQ."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import boto3
import pytest

from local.event_source import SqsEventSource
from local.resources import EventSourceSettings, IngestQueues, create_ingest_queues, uploader_event_source

SETTINGS = EventSourceSettings(
    batch_size=10, batching_window_seconds=0, function_timeout_seconds=5, report_batch_item_failures=True
)


@pytest.fixture
def queues(moto_endpoint: str) -> tuple[Any, IngestQueues]:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    return sqs, create_ingest_queues(sqs, f"es-{uuid.uuid4().hex[:8]}")


def _send(sqs: Any, queues: IngestQueues, *bodies: str) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queues.queue_url, MessageBody=body)


def _visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_queues_and_event_source_follow_the_template(queues: tuple[Any, IngestQueues]) -> None:
    sqs, made = queues
    attributes = sqs.get_queue_attributes(QueueUrl=made.queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    # maxReceiveCount from the template's MaxRetryHours mapping at its default (24 h: 27 receives).
    assert (attributes["VisibilityTimeout"], redrive["maxReceiveCount"]) == ("540", 27)
    assert redrive["deadLetterTargetArn"] == made.dlq_arn
    assert uploader_event_source() == EventSourceSettings(10, 5.0, 90.0, True, maximum_concurrency=5)


def test_only_messages_not_reported_as_failures_are_deleted(queues: tuple[Any, IngestQueues]) -> None:
    sqs, made = queues
    _send(sqs, made, "keep", "done-1", "done-2")
    seen: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append([r["body"] for r in event["Records"]])
        return {
            "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "keep"]
        }

    source = SqsEventSource(sqs, made.queue_url, made.queue_arn, handler, SETTINGS, visibility_timeout=0)
    report = source.poll_once(wait_seconds=0)

    assert report is not None and (report.received, report.failed) == (3, 1)
    assert sorted(seen[0]) == ["done-1", "done-2", "keep"]
    again = source.poll_once(wait_seconds=0)  # visibility 0: the failed one is back at once
    assert again is not None and again.received == 1 and seen[1] == ["keep"]


def test_a_handler_that_raises_fails_the_whole_batch(queues: tuple[Any, IngestQueues]) -> None:
    sqs, made = queues
    _send(sqs, made, "a", "b")

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    source = SqsEventSource(sqs, made.queue_url, made.queue_arn, handler, SETTINGS, visibility_timeout=0)
    report = source.poll_once(wait_seconds=0)

    assert report is not None and (report.failed, report.error) == (2, "RuntimeError")
    assert _visible(sqs, made.queue_url) == 2


def test_a_message_failing_max_receive_count_times_moves_to_the_dlq(queues: tuple[Any, IngestQueues]) -> None:
    sqs, made = queues
    _send(sqs, made, "poison")
    receive_counts: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        receive_counts.extend(r["attributes"]["ApproximateReceiveCount"] for r in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    source = SqsEventSource(sqs, made.queue_url, made.queue_arn, handler, SETTINGS, visibility_timeout=0)
    for _ in range(made.max_receive_count + 2):
        source.poll_once(wait_seconds=0)

    assert receive_counts == [str(n) for n in range(1, made.max_receive_count + 1)]
    assert _visible(sqs, made.dlq_url) == 1 and _visible(sqs, made.queue_url) == 0


def test_a_batch_fills_up_to_the_batch_size(queues: tuple[Any, IngestQueues]) -> None:
    sqs, made = queues
    _send(sqs, made, *[f"m{i}" for i in range(13)])
    sizes: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        sizes.append(len(event["Records"]))

    settings = dataclasses.replace(SETTINGS, batching_window_seconds=1.0)
    source = SqsEventSource(sqs, made.queue_url, made.queue_arn, handler, settings)
    while source.poll_once(wait_seconds=0):
        pass

    assert sizes == [10, 3]

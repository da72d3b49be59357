"""A Cobalt outage on the local stack, with the retry schedule compressed (time scale 3600: an hour is a second):
documents wait in the queue, not in the DLQ, and are uploaded once when Cobalt returns; past MaxRetryHours they
reach the DLQ with a reason that says how to redrive them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.cobalt_sandbox import FaultSettings
from local.stack import LocalStack, StackOptions
from tests.cli.conftest import CliStack

SCALE = 3600.0


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliStack]:
    state_dir: Path = tmp_path_factory.mktemp("outage")
    options = StackOptions(
        state_dir=state_dir,
        batching_window_seconds=0,
        processing_delay_seconds=0.1,
        reconcile_every_seconds=3600,
        time_scale=SCALE,
    )
    with LocalStack(options) as stack:
        assert stack.info is not None
        yield CliStack(stack, stack.info, state_dir)


def test_an_outage_longer_than_the_old_dlq_window_ends_with_every_document_uploaded_once_and_none_dead_lettered(
    outage_stack: CliStack,
) -> None:
    stack = outage_stack
    stack.faults(http_503=1.0)
    try:
        refs = [stack.put(f"outage/doc-{n}.pdf") for n in range(10)]
        time.sleep(10.0)  # ten hours at this scale; DocDrop used to give up after 45 minutes

        def tried_three_times() -> bool:  # a busy machine's workers poll late: wait for the tries, not a fixed time
            found = [stack.ledger.get_object(ref) for ref in refs]
            return all(i is not None and int(i.get("retry_attempts", 0)) >= 3 for i in found)

        stack.wait_for(tried_three_times, 60, "three tries of each document")
        items = [stack.ledger.get_object(ref) for ref in refs]
        assert all(i is not None and i["status"] in ("PENDING_RETRY", "RECEIVED") for i in items)  # waiting, or a try
        assert min(int(i["retry_attempts"]) for i in items if i) >= 3
        assert stack.queue_depth(stack.info.dlq_url) == 0
        assert stack.uploads_of("doc-0.pdf") == 0
    finally:
        stack.faults()
    stack.wait_for(lambda: all(stack.status_of(ref) == "UPLOADED" for ref in refs), 60, "the documents after Cobalt")
    assert [stack.uploads_of(f"doc-{n}.pdf") for n in range(10)] == [1] * 10
    assert stack.queue_depth(stack.info.dlq_url) == 0


def test_an_outage_longer_than_max_retry_hours_dead_letters_the_documents_with_how_to_redrive_them(
    outage_stack: CliStack,
) -> None:
    stack = outage_stack
    stack.sandbox.set_faults(FaultSettings(http_503=1.0))
    try:
        refs = [stack.put(f"too-long/late-{n}.pdf") for n in range(3)]

        def given_up() -> bool:  # each version's last try recorded, and its message in the DLQ (S3 may send two)
            items = [stack.ledger.get_object(ref) for ref in refs]
            last = all(i is not None and "last try" in str(i.get("reason")) for i in items)
            return last and stack.queue_depth(stack.info.dlq_url) >= 3

        stack.wait_for(given_up, 120, "the messages to reach the DLQ")
        for ref in refs:
            item = stack.ledger.get_object(ref)
            assert item is not None and item["status"] == "PENDING_RETRY"
            assert "last try" in item["reason"] and "docdrop redrive" in item["reason"]
            assert int(item["retry_attempts"]) == stack.stack.queues.max_receive_count
        time.sleep(2.0)  # the reconciler's horizon (70 min) at this scale
        report = stack.stack.reconcile_now()
        assert report["dead_lettered"] >= 3
    finally:
        stack.faults()
    run = stack.docdrop("redrive", "--json")
    assert run.code == 0 and run.json()["moved"] >= 3
    stack.wait_for(lambda: all(stack.status_of(ref) == "UPLOADED" for ref in refs), 60, "the redriven documents")
    assert [stack.uploads_of(f"late-{n}.pdf") for n in range(3)] == [1, 1, 1]

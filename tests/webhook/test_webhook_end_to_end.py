"""The Cobalt sandbox delivers real signed webhooks over HTTP through the local adapter into the ledger."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from docdrop.ledger import DocumentLedger

from local.cobalt_sandbox import CobaltSandbox, FaultSettings, SandboxConfig
from local.webhook_adapter import WebhookAdapter
from tests.sandbox.conftest import AUTH, upload
from tests.webhook.conftest import WebhookStack


@pytest.fixture
def wired(webhook_stack: WebhookStack) -> Iterator[tuple[CobaltSandbox, WebhookStack, WebhookAdapter]]:
    config = SandboxConfig.load()
    config.processing_delay_seconds = 0.05
    sandbox = CobaltSandbox(config, FaultSettings())
    sandbox.serve(0)
    adapter = WebhookAdapter(webhook_stack.module.handler).start()
    # The same steps a production setup takes: register the URL, store the secret Cobalt returns.
    registered = requests.post(
        f"{sandbox.base_url}/webhook", headers=AUTH, json={"webhook_url": adapter.url}, timeout=5
    )
    webhook_stack.rotate(registered.json()["webhook_secret_key"], "")
    try:
        yield sandbox, webhook_stack, adapter
    finally:
        adapter.stop()
        sandbox.stop()


def wait_for_outcomes(ledger: DocumentLedger, document_ids: list[str], timeout: float = 15.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while time.monotonic() < deadline and len(found) < len(document_ids):
        for document_id in document_ids:
            item = ledger.get_document(document_id)
            if item and item.get("outcome"):
                found[document_id] = item["outcome"]
        time.sleep(0.1)
    return found


def test_sandbox_webhooks_reach_the_ledger(wired) -> None:
    sandbox, stack, _ = wired
    good = upload(sandbox).json()["document_id"]
    unknown = upload(sandbox, patient_mrn="999999").json()["document_id"]
    assert wait_for_outcomes(stack.ledger, [good, unknown]) == {good: "UPLOADED", unknown: "FAILED"}
    failed = stack.ledger.lookup_document(unknown)
    assert failed.reason.startswith("Patient not found.")
    assert all(d["result"] == "200" for d in sandbox.deliveries)


def test_sent_twice_is_recorded_once(wired) -> None:
    sandbox, stack, adapter = wired
    sandbox.set_faults(FaultSettings(webhook_twice=1.0))
    ids = [upload(sandbox).json()["document_id"] for _ in range(3)]
    assert set(wait_for_outcomes(stack.ledger, ids).values()) == {"UPLOADED"}
    deadline = time.monotonic() + 5
    while len(sandbox.deliveries) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sandbox.deliveries) == 6 and adapter.invocations == 6
    for document_id in ids:
        assert len(stack.ledger.get_document(document_id)["events"]) == 1


def test_out_of_order_events_keep_the_first_outcome_and_the_history(wired) -> None:
    sandbox, stack, _ = wired
    sandbox.set_faults(FaultSettings(webhook_out_of_order=1.0))
    document_id = upload(sandbox).json()["document_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        item = stack.ledger.get_document(document_id)
        if item and len(item.get("events", [])) == 2:
            break
        time.sleep(0.05)
    events = stack.ledger.get_document(document_id)["events"]
    assert len(events) == 2 and events[0]["created"] > events[1]["created"]

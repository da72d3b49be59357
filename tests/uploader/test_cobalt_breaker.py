"""The circuit breaker on Cobalt, shared by every uploader through the ledger: it opens after N unavailable answers,
makes no call while open, lets one probe through after the cool-down, and closes when Cobalt answers; a 429's
Retry-After holds back every other document too."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from docdrop.breaker import BreakerSettings, CobaltBreaker
from docdrop.ledger import Status

from local.cobalt_sandbox import FaultSettings
from local.samples import pdf_bytes
from tests.uploader.conftest import UploaderStack, tags


def _calls(stack: UploaderStack) -> int:
    return len(stack.sandbox.fault_log)  # one entry per POST /v1/documents


@pytest.fixture
def breaker(uploader_stack: UploaderStack, monkeypatch: pytest.MonkeyPatch) -> CobaltBreaker:
    settings = BreakerSettings(failures=3, window=timedelta(seconds=60), cool_down=timedelta(seconds=2))
    uploader = uploader_stack.module.uploader
    monkeypatch.setattr(uploader, "_breaker_settings", settings)
    monkeypatch.setattr(uploader, "_breakers", {})
    monkeypatch.setattr(uploader, "_sleep", lambda seconds: None)
    shared: CobaltBreaker | None = uploader._breaker(None)  # the one account of the single-token secret
    assert shared is not None
    return shared


def test_the_breaker_opens_after_n_failures_makes_no_call_while_open_probes_once_and_closes(
    uploader_stack: UploaderStack, breaker: CobaltBreaker
) -> None:
    stack = uploader_stack
    stack.sandbox.set_faults(FaultSettings(http_503=1.0))
    names = [f"down-{n}.pdf" for n in range(6)]
    for name in names:  # one at a time, so the count of calls does not depend on the threads' order
        stack.put(name, pdf_bytes(name), tags())
        stack.drain()
    assert _calls(stack) == 3  # two tries of the first, one of the second: then open
    assert breaker.state(fresh=True)["open_until"]
    for name in names[2:]:
        view = stack.view(name)
        assert view.status == Status.PENDING_RETRY and "considered unavailable" in (view.reason or "")

    stack.sandbox.set_faults(FaultSettings())  # Cobalt is back; the breaker does not know yet
    stack.redeliver_failed()
    stack.drain()
    assert _calls(stack) == 3  # still open: nobody called
    time.sleep(2.1)  # the cool-down
    for _ in range(4):
        stack.redeliver_failed()
        stack.drain()
        if all(stack.view(name).status == Status.SUBMITTED for name in names):
            break
    assert [stack.view(name).status for name in names] == [Status.SUBMITTED] * 6
    assert _calls(stack) == 3 + 6  # after the cool-down: one probe, then the rest, each once
    assert [d["filename"] for d in stack.uploads()].count("down-0.pdf") == 1
    assert not breaker.state(fresh=True).get("open_until")


def test_a_429_retry_after_holds_back_the_other_documents_without_calling_cobalt(
    uploader_stack: UploaderStack, breaker: CobaltBreaker
) -> None:
    stack = uploader_stack
    stack.sandbox.set_faults(FaultSettings(script=[{"fault": "http_429"}], retry_after_seconds=30))
    stack.put("first.pdf", pdf_bytes("first"), tags())
    stack.drain()
    stack.put("second.pdf", pdf_bytes("second"), tags())
    stack.drain()

    assert _calls(stack) == 1  # the 429; neither the retry nor the other document called Cobalt
    for name in ("first.pdf", "second.pdf"):
        item = stack.ledger.get_object(stack.ref(name))
        assert item["status"] == "PENDING_RETRY" and "Retry-After" in item["reason"]
        waited = datetime.fromisoformat(item["next_attempt_at"]) - datetime.fromisoformat(item["status_at"])
        assert waited.total_seconds() >= 28

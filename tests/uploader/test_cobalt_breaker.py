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

COOL_DOWN = 4.0  # seconds: long enough that a slow machine's drains all happen while the breaker is open


def _calls(stack: UploaderStack) -> int:
    return len(stack.sandbox.fault_log)  # one entry per POST /v1/documents


@pytest.fixture
def breaker(uploader_stack: UploaderStack, monkeypatch: pytest.MonkeyPatch) -> CobaltBreaker:
    settings = BreakerSettings(failures=3, window=timedelta(seconds=60), cool_down=timedelta(seconds=COOL_DOWN))
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
    time.sleep(COOL_DOWN + 0.1)  # the cool-down
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


def test_a_cobalt_that_hangs_makes_one_review_and_the_rest_wait_in_the_queue(
    uploader_stack: UploaderStack, breaker: CobaltBreaker
) -> None:
    """A Cobalt that accepts connections and never answers turned every upload in flight into a review (a person's
    work each): read timeouts never counted toward the breaker, and even closed it. Now Cobalt is trusted with many
    uploads at once only once it has answered: the first finds out, and its timeout opens the breaker for the rest."""
    stack = uploader_stack
    stack.sandbox.set_faults(FaultSettings(slow_after_accept=1.0, slow_seconds=3.0))
    names = [f"hanging-{n}.pdf" for n in range(10)]
    for name in names:
        stack.put(name, pdf_bytes(name), tags(mrn=f"2000{len(name)}{name[-5]}"))
    stack.drain()  # one batch of ten, uploaded in parallel

    statuses = sorted(stack.view(name).status for name in names)
    assert statuses == [Status.NEEDS_REVIEW] + [Status.PENDING_RETRY] * 9, statuses
    assert _calls(stack) == 1
    assert breaker.state(fresh=True)["open_until"]
    waiting = [stack.view(name) for name in names if stack.view(name).status == Status.PENDING_RETRY]
    assert all("unavailable" in (v.reason or "") or "not answered" in (v.reason or "") for v in waiting)


def test_a_warm_cobalt_takes_a_whole_batch_at_once(uploader_stack: UploaderStack, breaker: CobaltBreaker) -> None:
    stack = uploader_stack
    names = [f"warm-{n}.pdf" for n in range(10)]
    for name in names:
        stack.put(name, pdf_bytes(name), tags(mrn=f"3000{name[-5]}"))
    stack.drain()
    assert [stack.view(name).status for name in names] == [Status.SUBMITTED] * 10  # the first's answer vouched for all
    assert breaker.state(fresh=True)["warm_until"]

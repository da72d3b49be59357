"""10,000 generated webhook requests through the webhook function's own handler, in process and seeded: bodies,
headers, signatures and shapes. No 5xx but for a ledger write that failed, and no write from an unsigned or forged
request."""

from __future__ import annotations

import base64
import json
import random
import string
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from docdrop.ledger import LedgerError, OutcomeEvent
from docdrop.signature import sign_payload

from local.lambda_runtime import LocalLambdaContext, load_handler_module
from local.webhook_adapter import http_api_event

SECRET, OLD, FORGER = "whsec_fuzz_current_0123", "whsec_fuzz_previous_4567", "whsec_someone_else_89ab"
REQUESTS = 10_000
TYPES = (
    "document.uploaded",
    "document.upload_failed",
    "access_token.login_required",
    "access_token.password_change_warning",
    "appointment.created",
    "document.",
    "",
    "x" * 300,
)


class RecordingLedger:
    """The three writes the webhook makes; each one recorded, and failing (LedgerError) when told to."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, Any]] = []
        self.fail_next = False

    def _write(self, kind: str, value: Any) -> bool:
        if self.fail_next:
            self.fail_next = False
            raise LedgerError("injected: the write failed")
        self.writes.append((kind, value))
        return True

    def record_outcome(self, event: OutcomeEvent) -> bool:
        return self._write("outcome", event)

    def record_login_required(self, reference_id: str, event_id: str, created: str, message: str | None) -> bool:
        return self._write("login_required", reference_id)

    def record_password_warning(self, reference_id: str, event_id: str, created: str, message: str | None) -> bool:
        return self._write("password_warning", reference_id)


class FixedSecret:
    version_created_at = datetime.now(UTC)

    def get(self, refresh: bool = False, force: bool = False) -> dict[str, Any]:
        return {"current": SECRET, "previous": OLD}


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[ModuleType, RecordingLedger]]:
    patch = pytest.MonkeyPatch()
    for name, value in {
        "LEDGER_TABLE": "fuzz-ledger",
        "WEBHOOK_SECRET": "fuzz-signing",
        "POWERTOOLS_METRICS_NAMESPACE": "DocDrop",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        patch.setenv(name, value)
    module = load_handler_module("webhook")
    ledger = RecordingLedger()
    collaborators: dict[str, Any] = {"ledger": ledger, "signing_secret": FixedSecret(), "fingerprint_key": None}
    for name, value in collaborators.items():
        setattr(module, name, value)  # the container's collaborators, in memory
    yield module, ledger
    patch.undo()


def _text(rng: random.Random, most: int = 40) -> str:
    alphabet = string.printable + "é—🩺\u0000\ud7ff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(most)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 1e308, 0.1, rng.randrange(10**16)])
    if kind in (3, 4, 5):
        return rng.choice([_text(rng), str(rng.randrange(10**16)), "", " " * 3])
    if kind in (6, 7):
        return {_text(rng, 12): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _event(rng: random.Random) -> Any:
    """A Cobalt-like event, with each part kept, dropped, or replaced by something else."""
    data: dict[str, Any] = {
        "document_id": rng.choice([str(rng.randrange(10**15, 10**16)), _value(rng)]),
        "patient_mrn": str(rng.randrange(10**6)),
        "folder_name": "MedicalRecords",
        "access_token_reference_id": rng.choice(["clinic-main", "", _value(rng)]),
        "message": _value(rng),
        "failure_reason": _value(rng),
    }
    for key in list(data):
        if rng.random() < 0.2:
            del data[key]
    event: dict[str, Any] = {
        "id": rng.choice([f"evt_{rng.randrange(10**9)}", _value(rng)]),
        "type": rng.choice([*TYPES, _value(rng)]),
        "object": "event",
        "created": rng.choice(["2026-11-30T10:00:00.000Z", _value(rng)]),
        "data": rng.choice([data, data, data, _value(rng)]),
    }
    for key in list(event):
        if rng.random() < 0.08:
            del event[key]
    return rng.choice([event] * 8 + [[event], _value(rng)])


def _body(rng: random.Random) -> bytes:
    shape = rng.randrange(10)
    if shape < 7:
        return json.dumps(_event(rng), ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if shape == 7:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))  # not UTF-8, not JSON
    if shape == 8:
        return ("[" * 5000 + "]" * 5000).encode()  # deeper than the JSON parser goes
    return b"{" + b'"a":1,' * rng.randrange(1, 60_000) + b'"id":"x","type":"document.uploaded"}'  # up to ~360 KB


SIGNED, FORGED, UNSIGNED = "signed", "forged", "unsigned"


def _tampered(body: bytes) -> bytes:
    """The body with its content changed (whitespace alone is no change: the signature covers the JSON's own text)."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        return body + b"x"
    return json.dumps({"tampered": True, "was": event}).encode("utf-8", "surrogatepass")


def _signature(rng: random.Random, body: bytes) -> tuple[str, str | None]:
    """How the request is signed: with a secret DocDrop holds, with another, tampered with, or not at all."""
    roll = rng.random()
    if roll < 0.55:
        return SIGNED, sign_payload(rng.choice([SECRET, SECRET, OLD]), body)
    if roll < 0.75:
        good = sign_payload(SECRET, body)
        forged = rng.choice(
            [
                sign_payload(FORGER, body),
                good[:-1] + ("0" if good[-1] != "0" else "1"),
                good[:32],
                good + "00",
                "sha256=" + sign_payload(FORGER, body),
                _text(rng, 80),
                " ",
            ]
        )
        return FORGED, forged
    return UNSIGNED, None


def _request(rng: random.Random) -> tuple[str, dict[str, Any], bool]:
    body = _body(rng)
    kind, signature = _signature(rng, body)
    if kind == SIGNED and rng.random() < 0.05:  # signed, then changed on the way: forged
        body, kind = _tampered(body), FORGED
    headers = {"content-type": rng.choice(["application/json", "text/plain", ""])}
    if signature is not None:
        headers[rng.choice(["cobalt-verification", "Cobalt-Verification", "COBALT-VERIFICATION"])] = signature
    for name in ("webhook-id", "webhook-attempt", "webhook-timestamp"):
        if rng.random() < 0.6:
            headers[name] = rng.choice([str(rng.randrange(-5, 5000)), _text(rng, 20), ""])
    event = http_api_event("POST", "/webhooks/cobalt", "", headers, body, "127.0.0.1")
    if rng.random() < 0.3:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
    fail_write = kind == SIGNED and rng.random() < 0.03
    return kind, event, fail_write


def test_ten_thousand_generated_requests_answer_no_5xx_but_a_failed_write_and_no_unsigned_one_writes(
    webhook: tuple[ModuleType, RecordingLedger],
) -> None:
    module, ledger = webhook
    handler: Callable[[dict[str, Any], Any], dict[str, Any]] = module.handler
    rng = random.Random(20261130)
    answers: Counter[tuple[str, int]] = Counter()
    for n in range(REQUESTS):
        kind, event, fail_write = _request(rng)
        ledger.fail_next = fail_write
        writes = len(ledger.writes)
        answer = handler(event, LocalLambdaContext("webhook", timeout_seconds=4, memory_limit_in_mb=1024))
        module.metrics.clear_metrics()  # disabled metrics still pile up, and print at their 100th value
        status = int(answer["statusCode"])
        failed_write = fail_write and not ledger.fail_next  # the write was attempted, and failed
        ledger.fail_next = False
        answers[(kind, status)] += 1

        assert status < 500 or (status == 500 and failed_write), f"request {n} ({kind}): {status} {answer['body']}"
        assert status != 500 or json.loads(answer["body"]) == {"error": "could not record the event; retry"}
        if kind != SIGNED:
            assert len(ledger.writes) == writes, f"request {n}: a {kind} request wrote to the ledger"
            assert status in (401, 413), f"request {n} ({kind}): {status}"

    # The run covered what it claims to: every kind, writes, refusals, and the injected failures.
    assert {kind for kind, _ in answers} == {SIGNED, FORGED, UNSIGNED}
    assert answers[(SIGNED, 200)] > 500 and answers[(SIGNED, 400)] > 500 and answers[(SIGNED, 500)] > 10
    assert answers[(FORGED, 401)] > 1000 and answers[(UNSIGNED, 401)] > 1000
    assert len(ledger.writes) > 300

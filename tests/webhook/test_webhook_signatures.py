"""Signatures as Cobalt's docs compute them: expected values come from Node.js running the docs' verifier logic."""

from __future__ import annotations

import json
import subprocess

import pytest
from docdrop.signature import js_json_stringify, verify_cobalt_signature

from tests.webhook.conftest import CURRENT, PREVIOUS, WebhookStack, document_event

NODE_SIGN = r"""
const crypto = require('crypto');
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = cases.map(([secret, raw]) => ({
  docs: crypto.createHmac('sha256', secret).update(JSON.stringify(JSON.parse(raw))).digest('hex'),
  raw: crypto.createHmac('sha256', secret).update(Buffer.from(raw, 'utf8')).digest('hex'),
  stringified: JSON.stringify(JSON.parse(raw)),
}));
process.stdout.write(JSON.stringify(out));
"""

PAYLOAD = document_event(
    "evt-sig-1",
    notes="Résumé of café visit ✓ 日本語 — Ω",
    folder_name="MedicalRecords/LabResults",
    url="https://example.test/a/b?c=d",
    scores=[1.0, 0.1, 100.5, 1e21, 1e-7, -0.0, 2.5e-10, 123456789.125],
    counts={"small": 7, "big": 12345678901234567890, "negative": -42, "nested": {"deep": [[1, 2], {"x": None}]}},
    flags=[True, False, None],
    quote='she said "hi" \\ \t\n',
)

RAW_BODIES = {
    "compact, as Cobalt sends it": js_json_stringify(PAYLOAD),
    "pretty-printed with spaces": json.dumps(PAYLOAD, indent=2, ensure_ascii=False),
    "non-ASCII escaped as \\u": json.dumps(PAYLOAD, ensure_ascii=True),
    "slashes escaped as \\/": js_json_stringify(PAYLOAD).replace("/", "\\/"),
    "Python's float forms (1.0, 1e+21)": json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False),
}


def node_sign(cases: list[tuple[str, str]]) -> list[dict[str, str]]:
    completed = subprocess.run(
        ["node", "-e", NODE_SIGN], input=json.dumps(cases).encode(), capture_output=True, check=True, timeout=60
    )
    result: list[dict[str, str]] = json.loads(completed.stdout)
    return result


@pytest.fixture(scope="module")
def signed() -> dict[str, dict[str, str]]:
    names = list(RAW_BODIES)
    results = node_sign([(CURRENT, RAW_BODIES[n]) for n in names])
    return dict(zip(names, results, strict=True))


@pytest.mark.parametrize("variant", list(RAW_BODIES))
def test_docs_signature_over_json_stringify_verifies_for_every_body_form(variant: str, signed) -> None:
    raw = RAW_BODIES[variant].encode("utf-8")
    assert verify_cobalt_signature(raw, signed[variant]["docs"], [CURRENT])


@pytest.mark.parametrize("variant", list(RAW_BODIES))
def test_signature_over_the_raw_body_verifies(variant: str, signed) -> None:
    raw = RAW_BODIES[variant].encode("utf-8")
    assert verify_cobalt_signature(raw, signed[variant]["raw"], [CURRENT])


def test_our_json_stringify_equals_nodes(signed) -> None:
    for variant, raw in RAW_BODIES.items():
        assert js_json_stringify(json.loads(raw)) == signed[variant]["stringified"], variant


def test_wrong_secret_truncated_uppercase_and_missing_signatures(signed) -> None:
    raw = RAW_BODIES["compact, as Cobalt sends it"].encode()
    good = signed["compact, as Cobalt sends it"]["docs"]
    assert not verify_cobalt_signature(raw, good, ["whsec_wrong"])
    assert not verify_cobalt_signature(raw, good[:-2], [CURRENT])
    assert not verify_cobalt_signature(raw, good[:32], [CURRENT])
    assert not verify_cobalt_signature(raw, "", [CURRENT])
    assert not verify_cobalt_signature(raw, None, [CURRENT])
    assert not verify_cobalt_signature(raw, good, [])
    assert verify_cobalt_signature(raw, good.upper(), [CURRENT])  # hex is hex, whatever its case
    tampered = raw.replace(b"123456", b"654321")
    assert not verify_cobalt_signature(tampered, good, [CURRENT])


def test_previous_secret_still_verifies_during_rotation() -> None:
    raw = RAW_BODIES["pretty-printed with spaces"]
    [old] = node_sign([(PREVIOUS, raw)])
    assert verify_cobalt_signature(raw.encode(), old["docs"], [CURRENT, PREVIOUS])
    assert not verify_cobalt_signature(raw.encode(), old["docs"], [CURRENT])


def test_handler_accepts_node_signatures_in_any_header_case_and_base64(webhook_stack: WebhookStack, signed) -> None:
    variant = "pretty-printed with spaces"
    raw = RAW_BODIES[variant].encode()
    answer = webhook_stack.invoke(raw, {"Cobalt-Verification": signed[variant]["docs"], "Webhook-Attempt": "1"})
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"status": "recorded"}
    again = webhook_stack.invoke(raw, {"COBALT-VERIFICATION": signed[variant]["raw"]}, base64_body=True)
    assert json.loads(again["body"]) == {"status": "duplicate"}


def test_handler_refuses_a_wrong_or_truncated_signature_and_writes_nothing(webhook_stack: WebhookStack, signed) -> None:
    variant = "compact, as Cobalt sends it"
    raw = RAW_BODIES[variant].encode()
    for signature in (signed[variant]["docs"][:-1], "0" * 64, ""):
        answer = webhook_stack.invoke(raw, {"cobalt-verification": signature})
        assert answer["statusCode"] == 401
        assert "123456" not in answer["body"]
    assert webhook_stack.ledger.get_document("9988776655443322") is None


def test_handler_rereads_a_rotated_secret_once_on_mismatch(webhook_stack: WebhookStack) -> None:
    assert webhook_stack.deliver(document_event("e-1", document_id="1"))["statusCode"] == 200  # caches the secret
    webhook_stack.rotate("whsec_brand_new", CURRENT)
    assert webhook_stack.deliver(document_event("e-2", document_id="2"), secret="whsec_brand_new")["statusCode"] == 200
    assert webhook_stack.deliver(document_event("e-3", document_id="3"), secret=CURRENT)["statusCode"] == 200
    assert webhook_stack.deliver(document_event("e-4", document_id="4"), secret=PREVIOUS)["statusCode"] == 401

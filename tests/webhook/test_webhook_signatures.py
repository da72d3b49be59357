"""Signatures as Cobalt's docs compute them: expected values come from Node.js running the docs' verifier logic."""

from __future__ import annotations

import json
import subprocess

import pytest
from docdrop.signature import js_json_stringify, sign_payload, verify_cobalt_signature

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
    webhook_stack.module.signing_secret._read_at -= 61  # a minute on: a mismatch may read the secret again
    assert webhook_stack.deliver(document_event("e-2", document_id="2"), secret="whsec_brand_new")["statusCode"] == 200
    assert webhook_stack.deliver(document_event("e-3", document_id="3"), secret=CURRENT)["statusCode"] == 200
    assert webhook_stack.deliver(document_event("e-4", document_id="4"), secret=PREVIOUS)["statusCode"] == 401


def _previous_signed(webhook_stack: WebhookStack, document: dict[str, object]) -> int:
    from docdrop.signature import sign_payload
    from docdrop.webhook import handle_cobalt_webhook

    raw = json.dumps(document_event("evt-rot")).encode()
    answer = handle_cobalt_webhook(
        raw,
        {"cobalt-verification": sign_payload(PREVIOUS, raw)},
        ledger=webhook_stack.ledger,
        load_secrets=lambda refresh: document,
        metrics=webhook_stack.module.metrics,
    )
    return answer.status_code


def test_the_previous_secret_stops_verifying_24_hours_after_the_rotation_without_a_written_expiry(
    webhook_stack: WebhookStack,
) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    rotated = {"current": CURRENT, "previous": PREVIOUS}
    assert _previous_signed(webhook_stack, {**rotated, "version_created_at": now - timedelta(hours=23)}) == 200
    assert _previous_signed(webhook_stack, {**rotated, "version_created_at": now - timedelta(hours=25)}) == 401
    assert _previous_signed(webhook_stack, {**rotated, "version_created_at": None}) == 401  # nothing says how old
    written = (now + timedelta(hours=1)).isoformat()
    old_version = now - timedelta(days=3)
    assert _previous_signed(
        webhook_stack, {**rotated, "previous_expires_at": written, "version_created_at": old_version}
    )
    assert _previous_signed(
        webhook_stack, {**rotated, "previous_expires_at": "soon", "version_created_at": old_version}
    )


def test_the_handler_reads_the_secret_versions_creation_time(webhook_stack: WebhookStack) -> None:
    assert webhook_stack.deliver(document_event("evt-prev"), secret=PREVIOUS)["statusCode"] == 200  # rotated just now
    assert webhook_stack.module.signing_secret.version_created_at is not None


def test_register_webhook_writes_when_the_previous_secret_expires(tmp_path, moto_endpoint, sandbox) -> None:
    import io
    from datetime import UTC, datetime, timedelta

    import boto3
    import docdrop_cli.main as cli

    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"rotate-{tmp_path.name}"
    secrets.create_secret(
        Name=f"{name}/cobalt",
        SecretString=json.dumps(
            {"client_id": "ci_test_docdrop", "client_secret": "cs_test_docdrop", "access_token": "at_test_clinic_main"}
        ),
    )
    secrets.create_secret(Name=f"{name}/signing", SecretString=json.dumps({"current": "whsec_old", "previous": ""}))
    stack_file = tmp_path / "local-stack.json"
    stack_file.write_text(
        json.dumps(
            {
                "table": "unused",
                "bucket": "unused",
                "region": "us-east-1",
                "dynamodb_endpoint_url": moto_endpoint,
                "aws_endpoint_url": moto_endpoint,
                "secrets": {"cobalt_credentials": f"{name}/cobalt", "webhook_signing": f"{name}/signing"},
                "cobalt_base_url": sandbox.base_url,
            }
        )
    )
    args = ["register-webhook", "--local", str(stack_file), "--url", "https://hooks.example.test/cobalt"]
    assert cli.main(args, out=io.StringIO()) == 0
    document = json.loads(secrets.get_secret_value(SecretId=f"{name}/signing")["SecretString"])
    assert document["previous"] == "whsec_old" and document["current"] not in ("", "whsec_old")
    expires = datetime.fromisoformat(document["previous_expires_at"])
    assert abs((expires - datetime.now(UTC)) - timedelta(hours=24)) < timedelta(minutes=5)


def test_a_delivery_signed_with_a_secret_not_stored_yet_is_retried_during_a_rotation_and_refused_after(
    webhook_stack: WebhookStack,
) -> None:
    """`docdrop rotate-webhook-secret` marks the document before asking Cobalt: Cobalt's retry (after a 5xx) then
    finds the new secret stored. Without a mark, or once the mark is old, a wrong signature is refused."""
    from datetime import UTC, datetime, timedelta

    from docdrop.webhook import handle_cobalt_webhook

    raw = json.dumps(document_event("evt-rotating"), separators=(",", ":")).encode()
    headers = {"cobalt-verification": sign_payload("whsec_new_not_stored_yet", raw)}

    def answer(document: dict[str, object]) -> int:
        return handle_cobalt_webhook(
            raw,
            headers,
            ledger=webhook_stack.ledger,
            load_secrets=lambda refresh: document,
            metrics=webhook_stack.module.metrics,
        ).status_code

    now = datetime.now(UTC)
    stored: dict[str, object] = {"current": CURRENT, "previous": ""}
    assert answer({**stored, "rotation_started_at": (now - timedelta(seconds=1)).isoformat()}) == 503
    assert answer({**stored, "rotation_started_at": (now - timedelta(minutes=3)).isoformat()}) == 401
    assert answer(stored) == 401
    assert webhook_stack.ledger.get_document("9988776655443322") is None  # nothing recorded from an unverified body


def test_a_thousand_forged_requests_cost_at_most_one_secret_read_a_minute(webhook_stack: WebhookStack) -> None:
    secret = webhook_stack.module.signing_secret
    assert webhook_stack.deliver(document_event("e-real", document_id="7"))["statusCode"] == 200  # the first read
    reads = secret.reads
    answers = {
        webhook_stack.deliver(document_event(f"forged-{n}"), secret="whsec_forged")["statusCode"] for n in range(1000)
    }
    assert answers == {401}
    assert secret.reads - reads <= 1  # within this minute: the HMAC is all a forged request costs
    secret._read_at -= 61
    webhook_stack.deliver(document_event("forged-later"), secret="whsec_forged")
    assert secret.reads - reads <= 2  # a minute later, one more read at most


def test_while_a_rotation_is_marked_a_mismatch_reads_the_new_secret_at_once(webhook_stack: WebhookStack) -> None:
    from datetime import UTC, datetime

    assert webhook_stack.deliver(document_event("e-before", document_id="8"))["statusCode"] == 200
    marked = {"current": CURRENT, "previous": "", "rotation_started_at": datetime.now(UTC).isoformat()}
    webhook_stack.secrets.put_secret_value(SecretId=webhook_stack.secret_name, SecretString=json.dumps(marked))
    webhook_stack.module.signing_secret._read_at -= 61  # the container has seen the mark (docdrop waits for this)
    early = webhook_stack.deliver(document_event("e-new-1", document_id="9"), secret="whsec_after_rotation")
    assert early["statusCode"] == 503  # Cobalt signs with a secret not stored yet: its retry comes a second later
    webhook_stack.rotate("whsec_after_rotation", CURRENT)  # the CLI stores it
    retried = webhook_stack.deliver(document_event("e-new-1", document_id="9"), secret="whsec_after_rotation")
    assert retried["statusCode"] == 200  # read at once: no minute's wait while a rotation is marked

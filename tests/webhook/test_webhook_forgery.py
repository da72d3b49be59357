"""What someone holding only the webhook URL can make the receiver do: nothing they send unsigned reaches a log or the
ledger, and a signed body cannot be re-shaped into another that still verifies."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from unittest import mock

import pytest
from docdrop.signature import js_json_stringify, sign_payload, verify_cobalt_signature

from tests.webhook.conftest import CURRENT, WebhookStack, document_event


@pytest.fixture
def log_lines(webhook_stack: WebhookStack) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(webhook_stack.module.logger.registered_formatter)
    webhook_stack.module.logger.addHandler(capture)
    yield stream
    webhook_stack.module.logger.removeHandler(capture)


def _handled(stream: io.StringIO) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("message") == "webhook handled"]


def test_an_unverified_request_logs_no_header_it_sent(webhook_stack: WebhookStack, log_lines: io.StringIO) -> None:
    huge = "A" * 8192
    body = json.dumps(document_event("evt-forged")).encode()
    for signature in (sign_payload("whsec_forged", body), "not-a-signature", None):
        headers = {"webhook-id": huge, "webhook-timestamp": huge}
        if signature is not None:
            headers["cobalt-verification"] = signature
        assert webhook_stack.invoke(body, headers)["statusCode"] == 401
    handled = _handled(log_lines)
    assert len(handled) == 3 and all(line.get("event_id") is None for line in handled)
    assert "AAAA" not in log_lines.getvalue() and max(map(len, log_lines.getvalue().splitlines())) < 1024


def test_a_verified_delivery_logs_its_signed_event_id_at_most_256_characters(
    webhook_stack: WebhookStack, log_lines: io.StringIO
) -> None:
    assert webhook_stack.deliver(document_event("evt-short"))["statusCode"] == 200
    long_id = "e" * 1000
    event = {"id": long_id, "type": "patient.updated", "data": {}}  # acknowledged, not stored
    assert webhook_stack.deliver(event)["statusCode"] == 200
    assert [line["event_id"] for line in _handled(log_lines)] == ["evt-short", "e" * 256]


@pytest.mark.parametrize(
    "header",
    ["not-a-signature", "sha256=" + "0" * 64, "0" * 63, "0" * 65, "g" * 64, "0" * 8192],
)
def test_a_malformed_signature_is_refused_before_the_body_or_a_secret_is_read(
    webhook_stack: WebhookStack, header: str
) -> None:
    body = json.dumps(document_event("evt-malformed")).encode()
    with (
        mock.patch("docdrop.signature.parse_json") as parsed_to_verify,
        mock.patch("docdrop.webhook.parse_json") as parsed_to_handle,
        mock.patch.object(webhook_stack.module, "_signing_document") as secrets,
    ):
        answer = webhook_stack.invoke(body, {"cobalt-verification": header})
    assert answer["statusCode"] == 401
    assert parsed_to_verify.call_count == parsed_to_handle.call_count == secrets.call_count == 0


def test_the_unsigned_webhook_timestamp_is_never_stored(webhook_stack: WebhookStack) -> None:
    event = document_event("evt-no-created")
    del event["created"]
    body = js_json_stringify(event).encode()
    headers = {"cobalt-verification": sign_payload(CURRENT, body), "webhook-timestamp": "2001-02-03T04:05:06Z"}
    assert webhook_stack.invoke(body, headers)["statusCode"] == 200
    stored = webhook_stack.ledger.get_document("9988776655443322")
    assert stored is not None and "2001-02-03" not in json.dumps(stored, default=str)


def _signed_with_document_id(document_id: str) -> bytes:
    """A document event, in JSON.stringify's compact form, whose id is the JSON number `document_id`."""
    return js_json_stringify(document_event("evt-number", document_id="@")).replace('"@"', document_id).encode()


@pytest.mark.parametrize(
    ("signed_id", "sent_id", "status"),
    [
        ("9007199254740991", "9007199254740991", 200),  # 2**53 - 1: JavaScript holds it exactly
        ("9007199254740992", "9007199254740992", 400),  # 2**53: it does not, so it names no one document
        ("9007199254740992", "9007199254740993", 400),  # its neighbour verifies under the same signature: refused too
        ("1.5", "1.5", 400),  # a float is no id
        ("12", "12.0", 400),  # verifies as JSON.stringify writes it ("12"), and is still a float
    ],
)
def test_a_numeric_document_id_javascript_cannot_hold_exactly_is_refused(
    webhook_stack: WebhookStack, signed_id: str, sent_id: str, status: int
) -> None:
    signature = sign_payload(CURRENT, _signed_with_document_id(signed_id))
    body = _signed_with_document_id(sent_id)
    answer = webhook_stack.invoke(body, {"cobalt-verification": signature})
    assert answer["statusCode"] == status, answer["body"]
    if status != 200:
        assert webhook_stack.ledger.get_document(sent_id) is None


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_or_infinity_in_place_of_a_signed_null_does_not_verify(webhook_stack: WebhookStack, constant: str) -> None:
    signed = js_json_stringify(document_event("evt-null", notes=None)).encode()
    signature = sign_payload(CURRENT, signed)
    assert verify_cobalt_signature(signed, signature, [CURRENT])
    forged = signed.replace(b'"notes":null', b'"notes":' + constant.encode())
    assert forged != signed and not verify_cobalt_signature(forged, signature, [CURRENT])
    assert webhook_stack.invoke(forged, {"cobalt-verification": signature})["statusCode"] == 401

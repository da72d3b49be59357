"""What one webhook delivery does to the ledger, and what it answers."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from docdrop.ledger import ObjectRef

from tests.webhook.conftest import WebhookStack, document_event


def body(answer: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(answer["body"])
    return parsed


def test_an_outcome_is_recorded_in_exactly_one_dynamodb_call(webhook_stack: WebhookStack) -> None:
    client = webhook_stack.module.ledger._client
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    assert body(webhook_stack.deliver(document_event("evt-1"))) == {"status": "recorded"}
    assert calls == ["UpdateItem"]


def test_a_duplicate_delivery_is_answered_200_duplicate_and_writes_once(webhook_stack: WebhookStack) -> None:
    event = document_event("evt-1")
    first = webhook_stack.deliver(event)
    second = webhook_stack.deliver(event, attempt=2)
    assert (first["statusCode"], body(first)) == (200, {"status": "recorded"})
    assert (second["statusCode"], body(second)) == (200, {"status": "duplicate"})
    assert len(webhook_stack.ledger.get_document("9988776655443322")["events"]) == 1


def test_outcome_before_submission_is_joined_when_the_submission_lands(webhook_stack: WebhookStack) -> None:
    webhook_stack.deliver(document_event("evt-1"))
    ref = ObjectRef("bucket", "inbox/scan.pdf", "v1")
    claim = webhook_stack.ledger.claim(ref, lease_seconds=60)
    webhook_stack.ledger.record_submission(ref, claim.token, "9988776655443322")
    assert webhook_stack.ledger.lookup(ref).status == "UPLOADED"


def test_uploaded_then_failed_keeps_uploaded_and_both_events(webhook_stack: WebhookStack) -> None:
    webhook_stack.deliver(document_event("evt-1"))
    failed = document_event("evt-2", "document.upload_failed", failure_reason="Patient not found.")
    assert body(webhook_stack.deliver(failed)) == {"status": "recorded"}
    view = webhook_stack.ledger.lookup_document("9988776655443322")
    assert view.status == "UPLOADED"
    assert [e["type"] for e in view.events] == ["document.uploaded", "document.upload_failed"]


def test_failed_then_uploaded_keeps_failed_with_cobalts_reason(webhook_stack: WebhookStack) -> None:
    reasons = [{"code": "PATIENT_NOT_FOUND", "description": "Patient not found."}]
    webhook_stack.deliver(
        document_event("evt-1", "document.upload_failed", failure_reason="Patient not found.", reasons=reasons),
        attempt=2,
    )
    webhook_stack.deliver(document_event("evt-2"))
    view = webhook_stack.ledger.lookup_document("9988776655443322")
    assert (view.status, view.reason) == ("FAILED", "Patient not found.")
    first = view.events[0]
    assert first["reason_codes"] == ["PATIENT_NOT_FOUND"] and first["attempt"] == 2 and first["job_id"] == "12345"
    assert first["access_token_reference_id"] == "clinic-main"


def test_unknown_event_types_are_acknowledged_and_not_stored(webhook_stack: WebhookStack) -> None:
    for event_type, family in (
        ("appointment.created", "appointment"),
        ("patient.updated", "patient"),
        ("zzz.new", "other"),
    ):
        answer = webhook_stack.deliver({"id": f"e-{event_type}", "type": event_type, "data": {"patient_mrn": "1"}})
        assert (answer["statusCode"], body(answer)) == (200, {"status": "ignored", "family": family})
    items = webhook_stack.module.ledger._client.scan(TableName=webhook_stack.module.settings.ledger_table)["Items"]
    assert items == []


def test_login_required_is_recorded_for_the_token_reference(webhook_stack: WebhookStack) -> None:
    event = {
        "id": "evt-login",
        "type": "access_token.login_required",
        "created": "2025-10-21T14:30:00Z",
        "access_token_reference_id": "clinic-main",
        "data": {"access_token_reference_id": "clinic-main", "emr_instance_domain": "emr.test", "message": "re-link"},
    }
    assert body(webhook_stack.deliver(event)) == {"status": "recorded"}
    assert body(webhook_stack.deliver(event)) == {"status": "duplicate"}
    link = webhook_stack.ledger.get_account_link("clinic-main")
    history = webhook_stack.ledger.link_events("clinic-main")
    assert link["status"] == "LOGIN_REQUIRED" and history[0]["message"] == "re-link"


def test_a_password_change_warning_is_kept_in_the_links_history_and_does_not_block_it(
    webhook_stack: WebhookStack,
) -> None:
    event = {
        "id": "evt-password",
        "type": "access_token.password_change_warning",
        "created": "2025-10-21T14:30:00Z",
        "access_token_reference_id": "clinic-north",
        "data": {"access_token_reference_id": "clinic-north", "message": "password expires in 5 days"},
    }
    assert body(webhook_stack.deliver(event)) == {"status": "recorded"}
    assert body(webhook_stack.deliver(event)) == {"status": "duplicate"}
    link = webhook_stack.ledger.get_account_link("clinic-north")
    assert link.get("status") is None  # still linked: only a warning
    [warning] = webhook_stack.ledger.link_events("clinic-north")
    assert link["password_warning_at"] and warning["warning"] is True
    assert warning["message"] == "password expires in 5 days"


def test_a_dynamodb_failure_answers_5xx_so_cobalt_retries(webhook_stack: WebhookStack) -> None:
    client = webhook_stack.module.ledger._client
    with mock.patch.object(client, "update_item", side_effect=EndpointConnectionError(endpoint_url="http://x")):
        answer = webhook_stack.deliver(document_event("evt-1"))
    assert answer["statusCode"] == 500
    assert "123456" not in answer["body"]
    assert body(webhook_stack.deliver(document_event("evt-1"), attempt=2)) == {"status": "recorded"}


def test_bad_input_is_refused_and_nothing_written(webhook_stack: WebhookStack) -> None:
    from docdrop.signature import sign_payload

    from tests.webhook.conftest import CURRENT

    def send(raw: bytes) -> dict[str, Any]:
        return webhook_stack.invoke(raw, {"cobalt-verification": sign_payload(CURRENT, raw)})

    assert send(b"not json")["statusCode"] == 400
    assert send(b'{"type": "document.uploaded"}')["statusCode"] == 400  # no id
    assert send(b'{"id": "x"}')["statusCode"] == 400  # no type
    assert send(b'["a list"]')["statusCode"] == 400
    assert send(b'{"id": "x", "type": "document.uploaded", "data": {}}')["statusCode"] == 400  # no document_id
    big = json.dumps({"id": "x", "type": "t", "data": {"pad": "x" * (256 * 1024)}}).encode()
    assert send(big)["statusCode"] == 413
    items = webhook_stack.module.ledger._client.scan(TableName=webhook_stack.module.settings.ledger_table)["Items"]
    assert items == []


def test_logs_and_metrics_carry_no_mrn_notes_or_body(webhook_stack: WebhookStack, capsys) -> None:
    import io
    import logging

    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(webhook_stack.module.logger.registered_formatter)
    webhook_stack.module.logger.addHandler(capture)
    secret_notes = "Patient Jane Roe has a rash"
    webhook_stack.deliver(document_event("evt-1", notes=secret_notes, patient_mrn="MRN-778899"))
    webhook_stack.invoke(b'{"id": "evt-x", "type": "document.uploaded", "data": {"patient_mrn": "MRN-778899"}}', {})
    logs = stream.getvalue()
    metrics = capsys.readouterr().out  # EMF metrics are printed to stdout
    assert logs.count("webhook handled") == 2 and '"OutcomeEventsRecorded"' in metrics
    for output in (logs, metrics):
        assert "MRN-778899" not in output and secret_notes not in output and "MedicalRecords" not in output


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"attempt": 10**40}, 200),  # beyond DynamoDB's 38 digits: not kept, the outcome is
        ({"data": {"reasons": 7}}, 200),  # reasons that are not a list are ignored
        ({"data": {"reasons": True}}, 200),
        ({"data": {"reasons": [1, "x", None, {"code": 5}]}}, 200),
        ({"data": {"document_id": "9" * 3000}}, 400),  # over DynamoDB's key size: never storable
        ({"data": {"document_id": ["a"]}}, 400),
        ({"access_token_reference_id": "r" * 3000}, 400),
        ({"access_token_reference_id": {"a": 1}}, 400),
    ],
)
def test_odd_shapes_from_a_signed_sender_are_recorded_or_refused_never_a_500(
    webhook_stack: WebhookStack, change: dict[str, Any], status: int
) -> None:
    event = document_event("evt-odd")
    event["data"].update(change.get("data", {}))
    for key in ("access_token_reference_id",):
        if key in change:
            event[key] = change[key]
    answer = webhook_stack.deliver(event, attempt=change.get("attempt", 1))
    assert answer["statusCode"] == status, answer["body"]


def test_a_login_required_event_with_an_unstorable_reference_is_refused(webhook_stack: WebhookStack) -> None:
    event = {"id": "evt-l", "type": "access_token.login_required", "data": {"access_token_reference_id": "r" * 3000}}
    assert webhook_stack.deliver(event)["statusCode"] == 400


def test_an_unsigned_body_with_a_400_digit_number_is_refused_not_a_crash(webhook_stack: WebhookStack) -> None:
    raw = b'{"id": "x", "type": "document.uploaded", "n": ' + b"9" * 400 + b"}"
    assert webhook_stack.invoke(raw, {"cobalt-verification": "0" * 64})["statusCode"] == 401
    assert webhook_stack.invoke(raw, {})["statusCode"] == 401


def test_a_write_dynamodb_refuses_is_a_400_not_a_retry(webhook_stack: WebhookStack) -> None:
    client = webhook_stack.module.ledger._client
    refused = ClientError({"Error": {"Code": "ValidationException", "Message": "Item size too large"}}, "UpdateItem")
    with mock.patch.object(client, "update_item", side_effect=refused):
        answer = webhook_stack.deliver(document_event("evt-v"))
    assert answer["statusCode"] == 400


def test_an_outcome_carries_the_keyed_patient_folder_fingerprint_and_never_the_mrn(webhook_stack: WebhookStack) -> None:
    from docdrop.evidence import patient_folder_fingerprint
    from docdrop.signature import sign_payload
    from docdrop.webhook import handle_cobalt_webhook

    from tests.webhook.conftest import CURRENT

    key = b"stack key"
    raw = json.dumps(document_event("evt-fp", patient_mrn="MRN-4455", folder_name="Labs")).encode()
    answer = handle_cobalt_webhook(
        raw,
        {"cobalt-verification": sign_payload(CURRENT, raw)},
        ledger=webhook_stack.ledger,
        load_secrets=lambda refresh: {"current": CURRENT},
        metrics=webhook_stack.module.metrics,
        fingerprint_key=lambda: key,
    )
    assert answer.status_code == 200
    document = webhook_stack.ledger.get_document("9988776655443322")
    assert document["evidence_fingerprint"] == patient_folder_fingerprint(key, "MRN-4455", "Labs")
    assert "MRN-4455" not in json.dumps(document, default=str)

"""The sandbox behaves as Cobalt's documentation says: uploads, auth, webhooks and their retry rules, the event log."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import time
from typing import Any

import pytest
import requests

from local.cobalt_sandbox import CobaltSandbox, FaultSettings
from tests.sandbox.conftest import AUTH, JPEG, PDF, PNG, register, upload
from tests.support.receiver import running_receiver

DOCS_SUCCESS_MESSAGE = "Document uploaded successfully. It will be processed soon."


def test_docs_curl_example_gets_the_documented_success_body(sandbox: CobaltSandbox, tmp_path) -> None:
    sandbox.config.job_ids = False
    document = tmp_path / "document.pdf"
    document.write_bytes(PDF)
    completed = subprocess.run(
        [
            shutil.which("curl") or "curl",
            "--silent",
            "--request", "POST",
            "--url", f"{sandbox.base_url}/documents",
            "--header", "client_id: ci_test_docdrop",
            "--header", "client_secret: cs_test_docdrop",
            "--header", "access_token: at_test_clinic_main",
            "--form", "folder_name=MedicalRecords/LabResults",
            "--form", "patient_mrn=100001",
            "--form", f"document=@{document}",
            "--form", "emr_assigned_to_id=staff-001",
            "--form", "is_reviewed=false",
            "--form", "notes=Lab results from external provider",
            "--form", "is_high_priority=true",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )  # fmt: skip
    body = json.loads(completed.stdout)
    assert set(body) == {"success", "message", "document_id"}
    assert body["success"] is True and body["message"] == DOCS_SUCCESS_MESSAGE
    assert len(body["document_id"]) == 16 and body["document_id"].isdigit()
    [recorded] = sandbox._public_documents()
    assert recorded["fields"]["folder_name"] == "MedicalRecords/LabResults"
    assert recorded["sha256"] == hashlib.sha256(PDF).hexdigest() and recorded["byte_size"] == len(PDF)


def test_upload_returns_a_job_id_when_configured_and_fresh_document_ids(sandbox: CobaltSandbox) -> None:
    first, second = upload(sandbox).json(), upload(sandbox, content=PNG).json()
    assert first["job_id"] and first["document_id"] != second["document_id"]


@pytest.mark.parametrize(
    ("content", "fields", "message"),
    [
        (PDF, {"folder_name": None}, "Missing required field: folder_name"),
        (PDF, {"patient_mrn": None}, "Missing required field: patient_mrn"),
        (b"", {}, "Missing required field: document"),
        (b"GIF89a" + b"\x00" * 10, {}, "Unsupported file type. Only PDF, JPEG and PNG files are allowed."),
        (b"PK\x03\x04 a docx", {}, "Unsupported file type. Only PDF, JPEG and PNG files are allowed."),
        (PDF + b"\x00" * (5 * 1024 * 1024), {}, "File too large. The maximum size is 5 MB."),
        (PDF, {"notes": "n" * 1001}, "notes must be at most 1000 characters"),
        (PDF, {"is_reviewed": "maybe"}, "is_reviewed must be a boolean (true or false)"),
        (PDF, {"is_high_priority": "2"}, "is_high_priority must be a boolean (true or false)"),
    ],
)
def test_upload_validation_answers_400_with_the_rule_broken(sandbox, content, fields, message) -> None:
    answer = upload(sandbox, content=content, **fields)
    assert answer.status_code == 400
    assert answer.json() == {"success": False, "message": message}
    assert sandbox._public_documents() == []


def test_upload_accepts_the_limits_exactly(sandbox: CobaltSandbox) -> None:
    at_limit = PDF + b"\x00" * (5 * 1024 * 1024 - len(PDF))
    assert upload(sandbox, content=at_limit, notes="n" * 1000, is_reviewed="TRUE").status_code == 200
    assert upload(sandbox, content=JPEG).status_code == 200
    assert [d["content_type"] for d in sandbox._public_documents()] == ["application/pdf", "image/jpeg"]


def test_a_body_that_is_not_multipart_is_refused(sandbox: CobaltSandbox) -> None:
    answer = requests.post(f"{sandbox.base_url}/documents", headers=AUTH, json={"folder_name": "x"}, timeout=5)
    assert answer.status_code == 400 and answer.json()["success"] is False


@pytest.mark.parametrize("missing", ["client_id", "client_secret", "access_token"])
def test_each_missing_credential_header_is_401(sandbox: CobaltSandbox, missing: str) -> None:
    headers = {k: v for k, v in AUTH.items() if k != missing}
    answer = upload(sandbox, headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"success": False, "message": f"Missing authentication header: {missing}"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"client_secret": "cs_wrong"}, "Invalid client credentials"),
        ({"access_token": "at_wrong"}, "Invalid access token"),
    ],
)
def test_wrong_credentials_are_401(sandbox: CobaltSandbox, override, message) -> None:
    answer = upload(sandbox, headers={**AUTH, **override})
    assert (answer.status_code, answer.json()["message"]) == (401, message)


def test_a_broken_account_link_answers_the_documented_login_required_403(sandbox: CobaltSandbox) -> None:
    answer = upload(sandbox, headers={**AUTH, "access_token": "at_test_clinic_broken"})
    assert answer.status_code == 403
    body = answer.json()
    assert body["success"] is False and body["error"] == "login_required"
    assert body["message"].startswith("Account link expired.")


def test_breaking_a_link_at_runtime_sends_access_token_login_required(sandbox: CobaltSandbox) -> None:
    with running_receiver() as receiver:
        register(sandbox, receiver.url)
        toggle = requests.post(f"{sandbox.base_url[:-3]}/_sandbox/tokens/clinic-main", json={}, timeout=5)
        assert toggle.status_code == 200
        [delivery] = receiver.wait_for(1)
        event = json.loads(delivery.body)
        assert event["type"] == "access_token.login_required"
        assert event["data"]["access_token_reference_id"] == "clinic-main"
        assert upload(sandbox).status_code == 403


def test_webhook_signature_verifies_with_an_independent_hmac_over_js_json(sandbox: CobaltSandbox) -> None:
    with running_receiver() as receiver:
        secret = register(sandbox, receiver.url)
        document_id = upload(sandbox, notes="Résumé / ünïcode ✓").json()["document_id"]
        [delivery] = receiver.wait_for(1)
    expected = hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["cobalt-verification"] == expected
    assert delivery.headers["content-type"] == "application/json"
    event = json.loads(delivery.body)
    assert event["type"] == "document.uploaded" and event["data"]["document_id"] == document_id
    assert delivery.headers["webhook-id"] == event["id"]
    assert delivery.headers["webhook-timestamp"] == event["created"]
    assert delivery.headers["webhook-attempt"] == "1"
    # The bytes sent are exactly what JavaScript's JSON.stringify gives for the parsed payload.
    restringify = (
        "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>process.stdout.write(JSON.stringify(JSON.parse(s))))"
    )
    node = subprocess.run(
        ["node", "-e", restringify],
        input=delivery.body,
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert node.stdout == delivery.body


def test_unknown_mrn_and_unknown_assignee_fail_with_documented_reasons(sandbox: CobaltSandbox) -> None:
    with running_receiver() as receiver:
        register(sandbox, receiver.url)
        upload(sandbox, patient_mrn="999999")
        upload(sandbox, emr_assigned_to_id="staff-unknown")
        events = [json.loads(d.body) for d in receiver.wait_for(2)]
    by_reason = {e["data"]["reasons"][0]["code"]: e for e in events}
    assert {e["type"] for e in events} == {"document.upload_failed"}
    patient = by_reason["PATIENT_NOT_FOUND"]["data"]
    assert patient["failure_reason"] == "Patient not found. Please check the patient MRN and try again."
    assert patient["failure_reason"] == " ".join(r["description"] for r in patient["reasons"])
    assert "ASSIGNEE_NOT_FOUND" in by_reason


@pytest.mark.parametrize(
    ("script", "attempts"),
    [
        ([(500, 0.0), (200, 0.0)], ["1", "2"]),
        ([(503, 0.0), (503, 0.0)], ["1", "2"]),
        ([(429, 0.0), (200, 0.0)], ["1", "2"]),
        ([(404, 0.0)], ["1"]),
        ([(400, 0.0)], ["1"]),
        ([(200, 0.0)], ["1"]),
    ],
)
def test_webhook_retry_rules(sandbox: CobaltSandbox, script, attempts) -> None:
    with running_receiver(script=list(script)) as receiver:
        register(sandbox, receiver.url)
        upload(sandbox)
        deliveries = receiver.wait_for(len(attempts))
        time.sleep(1.5)  # a retry, if any were (wrongly) coming, would arrive 1 s after the first answer
        deliveries = list(receiver.received)
    assert [d.headers["webhook-attempt"] for d in deliveries] == attempts
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    if len(deliveries) == 2:
        assert 0.9 <= deliveries[1].at - deliveries[0].at < 2.0


def test_a_receiver_that_times_out_sees_exactly_one_attempt(sandbox: CobaltSandbox) -> None:
    with running_receiver(script=[(200, 6.0)]) as receiver:
        register(sandbox, receiver.url)
        upload(sandbox)
        receiver.wait_for(1)
        time.sleep(6.5)  # 5 s timeout + 1 s retry delay, were there a retry
        assert len(receiver.received) == 1
    [record] = sandbox.events
    assert record["status"] == "failed" and record["attempts"] == 1
    assert [d["result"] for d in sandbox.deliveries] == ["timeout"]


def test_an_unreachable_receiver_is_retried_once(sandbox: CobaltSandbox) -> None:
    register(sandbox, "http://127.0.0.1:9/unreachable")
    upload(sandbox)
    deadline = time.monotonic() + 5
    while len(sandbox.deliveries) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(d["attempt"], d["result"]) for d in sandbox.deliveries] == [(1, "network_error"), (2, "network_error")]


def test_every_registered_url_gets_every_event(sandbox: CobaltSandbox) -> None:
    with running_receiver() as first, running_receiver() as second:
        register(sandbox, first.url)
        register(sandbox, second.url)
        upload(sandbox)
        assert first.wait_for(1)[0].body == second.wait_for(1)[0].body


def test_webhook_management_register_list_delete_and_both_rotation_paths(sandbox: CobaltSandbox) -> None:
    assert (
        requests.post(
            f"{sandbox.base_url}/webhook", headers=AUTH, json={"webhook_url": "http://example.com/x"}, timeout=5
        ).status_code
        == 400
    )
    secret = register(sandbox, "https://example.com/hook")
    listed = requests.get(f"{sandbox.base_url}/webhook", headers=AUTH, timeout=5).json()["webhook_urls"]
    assert [w["url"] for w in listed] == ["https://example.com/hook"]
    webhook_id = listed[0]["id"]
    rotated = requests.post(f"{sandbox.base_url}/webhook/{webhook_id}/rotate-secret", headers=AUTH, timeout=5).json()
    assert rotated["webhook_secret_key"] != secret and rotated["previous_secret_valid_until"]
    assert sandbox.previous_secret == secret
    older = requests.post(f"{sandbox.base_url}/webhook/rotate-secret", headers=AUTH, timeout=5).json()
    assert older["webhook_secret_key"] not in (secret, rotated["webhook_secret_key"])
    assert requests.delete(f"{sandbox.base_url}/webhook/{webhook_id}", headers=AUTH, timeout=5).status_code == 200
    assert requests.delete(f"{sandbox.base_url}/webhook/{webhook_id}", headers=AUTH, timeout=5).status_code == 404
    assert requests.get(f"{sandbox.base_url}/webhook", headers=AUTH, timeout=5).json()["webhook_urls"] == []


@pytest.mark.parametrize(
    ("field", "path"), [("webhook_secret", ["webhook_secret"]), ("webhook.secret", ["webhook", "secret"])]
)
def test_the_secret_field_can_take_each_documented_name(sandbox: CobaltSandbox, field, path) -> None:
    sandbox.config.webhook_secret_field = field
    body = requests.post(
        f"{sandbox.base_url}/webhook", headers=AUTH, json={"webhook_url": "https://e.test/h"}, timeout=5
    ).json()
    value = body
    for key in path:
        value = value[key]
    assert isinstance(value, str) and value.startswith("whsec_")


def _events(sandbox: CobaltSandbox, **params: str | int) -> dict[str, Any]:
    answer = requests.get(f"{sandbox.base_url}/webhook-events", headers=AUTH, params=params, timeout=5)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _wait_for_events(sandbox: CobaltSandbox, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(sandbox.events) >= count and all(r["status"] != "pending" for r in sandbox.events):
            return
        time.sleep(0.05)
    raise AssertionError("events were not processed")


def test_event_log_filters_and_pagination(sandbox: CobaltSandbox) -> None:
    with running_receiver() as receiver:
        register(sandbox, receiver.url)
        jobs = [upload(sandbox).json()["job_id"] for _ in range(4)]
        upload(sandbox, patient_mrn="999999")
        _wait_for_events(sandbox, 5)
    everything = _events(sandbox)
    assert everything["pagination"] == {"current_page": 1, "total_pages": 1, "total_count": 5, "page_size": 20}
    created = [e["created"] for e in everything["webhook_events"]]
    assert created == sorted(created, reverse=True)  # newest first
    assert _events(sandbox, event_type="document.upload_failed")["pagination"]["total_count"] == 1
    assert _events(sandbox, status="success")["pagination"]["total_count"] == 5
    assert _events(sandbox, delivery_status="failed")["pagination"]["total_count"] == 0
    [by_job] = _events(sandbox, job_id=jobs[2])["webhook_events"]
    assert by_job["job_id"] == jobs[2]
    today = created[0][:10]
    assert _events(sandbox, start_date=today, end_date=today)["pagination"]["total_count"] == 5
    assert _events(sandbox, end_date="2000-01-01")["pagination"]["total_count"] == 0
    pages = [_events(sandbox, page=p, page_size=2) for p in (1, 2, 3)]
    assert [len(p["webhook_events"]) for p in pages] == [2, 2, 1]
    assert pages[0]["pagination"]["total_pages"] == 3
    assert {e["id"] for p in pages for e in p["webhook_events"]} == {e["id"] for e in everything["webhook_events"]}
    assert _events(sandbox, page_size=500)["pagination"]["page_size"] == 100
    ascending = _events(sandbox, sort="asc")["webhook_events"]
    assert [e["created"] for e in ascending] == sorted(created)


def test_event_log_can_answer_in_the_second_documented_item_shape(sandbox: CobaltSandbox) -> None:
    sandbox.config.event_log_shape = "v2"
    upload(sandbox)
    _wait_for_events(sandbox, 1)
    [item] = _events(sandbox)["webhook_events"]
    assert {"event_id", "event_type", "created_at", "delivery_status", "data"} <= set(item)
    assert item["delivery_status"] == "failed"  # no webhook URL was registered


def test_patients_lookup_by_mrn(sandbox: CobaltSandbox) -> None:
    found = requests.get(f"{sandbox.base_url}/patients", headers=AUTH, params={"mrn": "100002"}, timeout=5).json()
    assert [p["mrn"] for p in found["patients"]] == ["100002"]
    missing = requests.get(f"{sandbox.base_url}/patients", headers=AUTH, params={"mrn": "nope"}, timeout=5).json()
    assert missing["patients"] == []


def _fault_sequence(sandbox: CobaltSandbox, seed: int) -> list[str]:
    sandbox.reset(FaultSettings(seed=seed, http_429=0.2, http_503=0.2, http_500=0.1, webhook_twice=0.3))
    outcomes = []
    for _ in range(25):
        outcomes.append(str(upload(sandbox).status_code))
    return outcomes + [str(entry) for entry in sandbox.fault_log]


def test_one_seed_gives_the_same_faults_twice(sandbox: CobaltSandbox) -> None:
    first = _fault_sequence(sandbox, seed=7)
    second = _fault_sequence(sandbox, seed=7)
    other = _fault_sequence(sandbox, seed=8)
    assert first == second
    assert first != other
    assert {"429", "503", "500", "200"} <= set(first[:25])


def test_fault_429_carries_retry_after(sandbox: CobaltSandbox) -> None:
    sandbox.set_faults(FaultSettings(http_429=1.0, retry_after_seconds=3))
    answer = upload(sandbox)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"
    assert sandbox._public_documents() == []


def test_fault_dropped_connection_answers_nothing_and_accepts_nothing(sandbox: CobaltSandbox) -> None:
    sandbox.set_faults(FaultSettings(drop_connection=1.0))
    with pytest.raises(requests.ConnectionError):
        upload(sandbox)
    assert sandbox._public_documents() == []


def test_fault_slow_answer_after_acceptance_times_the_client_out_but_keeps_the_document(sandbox: CobaltSandbox) -> None:
    sandbox.set_faults(FaultSettings(slow_after_accept=1.0, slow_seconds=2.0))
    with pytest.raises(requests.Timeout):
        upload(sandbox, timeout=0.5)
    assert len(sandbox._public_documents()) == 1


def test_scripted_answers_come_first_and_in_order(sandbox: CobaltSandbox) -> None:
    bad = {"success": False, "message": "Invalid folder_name"}
    sandbox.set_faults(FaultSettings(script=[{"status": 400, "body": bad}, {"fault": "http_503"}]))
    assert (upload(sandbox).status_code, upload(sandbox).status_code, upload(sandbox).status_code) == (400, 503, 200)


def test_fault_webhook_sent_twice_repeats_the_same_event(sandbox: CobaltSandbox) -> None:
    sandbox.set_faults(FaultSettings(webhook_twice=1.0))
    with running_receiver() as receiver:
        register(sandbox, receiver.url)
        upload(sandbox)
        first, second = receiver.wait_for(2)
    assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]


def test_fault_webhook_never_sent_is_still_in_the_event_log(sandbox: CobaltSandbox) -> None:
    sandbox.set_faults(FaultSettings(webhook_never_sent=1.0))
    with running_receiver() as receiver:
        register(sandbox, receiver.url)
        upload(sandbox)
        _wait_for_events(sandbox, 1)
        time.sleep(0.3)
        assert receiver.received == []
    [item] = _events(sandbox, delivery_status="failed")["webhook_events"]
    assert item["type"] == "document.uploaded" and item["delivery_attempts"] == 0


def test_fault_webhook_before_the_upload_answer(sandbox: CobaltSandbox) -> None:
    sandbox.config.processing_delay_seconds = 5.0
    sandbox.set_faults(FaultSettings(webhook_before_response=1.0))
    with running_receiver() as receiver:
        register(sandbox, receiver.url)
        document_id = upload(sandbox).json()["document_id"]
        assert len(receiver.received) == 1  # already there when the upload's answer came back
    assert json.loads(receiver.received[0].body)["data"]["document_id"] == document_id


def test_fault_events_of_one_document_out_of_order(sandbox: CobaltSandbox) -> None:
    sandbox.set_faults(FaultSettings(webhook_out_of_order=1.0))
    with running_receiver() as receiver:
        register(sandbox, receiver.url)
        upload(sandbox)
        deliveries = receiver.wait_for(2)
    events = [json.loads(d.body) for d in deliveries]
    assert events[0]["data"]["document_id"] == events[1]["data"]["document_id"]
    assert events[0]["created"] > events[1]["created"]  # the later event arrived first


def test_faults_can_be_changed_while_running_through_the_admin_endpoint(sandbox: CobaltSandbox) -> None:
    admin = sandbox.base_url[: -len("/v1")] + "/_sandbox"
    assert requests.post(f"{admin}/faults", json={"http_503": 1.0}, timeout=5).status_code == 200
    assert upload(sandbox).status_code == 503
    assert requests.post(f"{admin}/faults", json={"http_503": 2.0}, timeout=5).status_code == 400
    assert requests.post(f"{admin}/faults", json={"nonsense": 1}, timeout=5).status_code == 400
    assert requests.post(f"{admin}/reset", json={}, timeout=5).status_code == 200
    assert upload(sandbox).status_code == 200
    documents = requests.get(f"{admin}/documents", timeout=5).json()["documents"]
    assert len(documents) == 1 and documents[0]["sha256"] == hashlib.sha256(PDF).hexdigest()


def test_the_module_runs_as_a_server_and_prints_its_port(tmp_path) -> None:
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "local.cobalt_sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("Cobalt sandbox listening on http://127.0.0.1:")
        base = line.split()[-1]
        assert requests.get(base.replace("/v1", "/_sandbox/health"), timeout=5).json() == {"ok": True}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert "GET /_sandbox/health -> 200" in stderr
    assert "%PDF" not in stderr


def test_get_document_answers_the_uploaded_bytes_or_a_documented_404(sandbox: CobaltSandbox) -> None:
    answer = upload(sandbox, content=PDF)
    document_id = answer.json()["document_id"]
    got = requests.get(f"{sandbox.base_url}/documents/{document_id}", headers=AUTH, timeout=5)
    assert got.status_code == 200 and got.content == PDF
    assert got.headers["Content-Type"] == "application/pdf" and "attachment" in got.headers["Content-Disposition"]
    assert int(got.headers["Content-Length"]) == len(PDF)
    missing = requests.get(f"{sandbox.base_url}/documents/1234", headers=AUTH, timeout=5)
    assert missing.status_code == 404 and missing.json() == {"success": False, "message": "Document not found"}
    assert requests.get(f"{sandbox.base_url}/documents/{document_id}", timeout=5).status_code == 401

"""The Cobalt client and its classifier (promise 6): what is retried, what fails, what blocks, what needs review."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from docdrop.cobalt import CobaltClient, CobaltSetupError, EventLogUnavailable
from docdrop.cobalt_answers import Verdict, backoff_seconds, classify_exception, classify_response
from docdrop.contract import UploadFields
from urllib3.exceptions import NewConnectionError, ProtocolError

from local.cobalt_sandbox import CobaltSandbox
from local.dynamodb_local import free_port
from local.samples import pdf_bytes

AUTH = {"client_id": "ci_test_docdrop", "client_secret": "cs_test_docdrop", "access_token": "at_test_clinic_main"}
FIELDS = UploadFields(patient_mrn="100001", folder_name="MedicalRecords", is_reviewed=False, notes="Lab panel")


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, {"success": True, "document_id": "9988776655443322"}, Verdict.ACCEPTED),
        (200, {"success": True}, Verdict.AMBIGUOUS),  # accepted, but nothing to follow it by
        (200, {"success": False, "message": "Invalid patient"}, Verdict.FAILED),
        (400, {"success": False, "message": "Missing required field: folder_name"}, Verdict.FAILED),
        (404, {"success": False, "message": "Patient not found"}, Verdict.FAILED),
        (413, {}, Verdict.FAILED),
        (403, {"success": False, "error": "login_required", "message": "Account link expired."}, Verdict.BLOCKED),
        (403, {"success": False, "message": "Forbidden"}, Verdict.FAILED),
        (401, {"success": False, "message": "Invalid credentials"}, Verdict.BLOCKED),
        (429, {"success": False}, Verdict.RETRY),
        (502, {}, Verdict.AMBIGUOUS),  # a gateway that gave up: Cobalt may have stored it
        (503, {}, Verdict.RETRY),
        (504, {}, Verdict.AMBIGUOUS),
        (500, {"success": False}, Verdict.AMBIGUOUS),
        (501, {}, Verdict.AMBIGUOUS),
    ],
)
def test_each_answer_is_classified(status: int, body: dict[str, Any], verdict: Verdict) -> None:
    assert classify_response(status, body, {}).verdict is verdict


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_is_retried_only_when_configured_so(status: int) -> None:
    assert classify_response(status, {}, {}).verdict is Verdict.AMBIGUOUS
    assert classify_response(status, {}, {}, server_error_policy="retry").verdict is Verdict.RETRY


def test_a_refusal_keeps_cobalts_message_and_the_job_id_is_kept_as_text() -> None:
    failed = classify_response(400, {"success": False, "message": "Missing required field: folder_name"}, {})
    assert failed.reason == "Cobalt refused the document (HTTP 400): Missing required field: folder_name"
    accepted = classify_response(200, {"success": True, "document_id": 9988776655443322, "job_id": 12345}, {})
    assert (accepted.document_id, accepted.job_id) == ("9988776655443322", "12345")


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert classify_response(429, {}, {"Retry-After": "7"}).retry_after_seconds == 7
    in_a_minute = formatdate(timeval=__import__("time").time() + 60, usegmt=True)
    seconds = classify_response(503, {}, {"Retry-After": in_a_minute}).retry_after_seconds
    assert seconds is not None and 55 <= seconds <= 61
    assert classify_response(503, {}, {"Retry-After": "soon"}).retry_after_seconds is None


def test_backoff_grows_with_jitter_and_never_undercuts_retry_after() -> None:
    for attempt in range(6):
        delays = [backoff_seconds(attempt, None) for _ in range(200)]
        assert all(0 <= d <= min(8.0, 0.5 * 2**attempt) for d in delays)
        assert len(set(delays)) > 100  # jittered, not a fixed schedule
    assert all(backoff_seconds(0, 3.0) >= 3.0 for _ in range(50))


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (requests.exceptions.ConnectTimeout("connect timed out"), Verdict.RETRY),
        (
            requests.exceptions.ConnectionError(NewConnectionError(None, "Connection refused")),  # type: ignore[arg-type]
            Verdict.RETRY,
        ),
        (requests.exceptions.ConnectionError(ConnectionRefusedError(111, "refused")), Verdict.RETRY),
        (requests.exceptions.ReadTimeout("read timed out"), Verdict.AMBIGUOUS),
        (
            requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104))),
            Verdict.AMBIGUOUS,
        ),
        (requests.exceptions.ChunkedEncodingError("broken"), Verdict.AMBIGUOUS),
    ],
    ids=["connect-timeout", "new-connection", "refused", "read-timeout", "reset-after-send", "broken-body"],
)
def test_only_a_connection_never_made_is_safe_to_retry(exc: Exception, verdict: Verdict) -> None:
    assert classify_exception(exc).verdict is verdict


# ----- against the sandbox -------------------------------------------------------------------------------------------
class Credentials:
    """Hands out stale credentials until refreshed, counting the reads."""

    def __init__(self, first: Mapping[str, str], after_refresh: Mapping[str, str]) -> None:
        self.first, self.after_refresh = first, after_refresh
        self.reads: list[bool] = []

    def __call__(self, refresh: bool) -> Mapping[str, str]:
        self.reads.append(refresh)
        return self.after_refresh if refresh else self.first


def test_the_upload_is_multipart_with_the_sniffed_type_and_true_false_booleans(sandbox: CobaltSandbox) -> None:
    client = CobaltClient(sandbox.base_url, lambda refresh: AUTH)
    fields = UploadFields("100001", "MedicalRecords/Labs", "staff-001", True, False, "Lab panel")

    answer = client.upload_document(fields, "Ünïcødé scan.pdf", "application/pdf", pdf_bytes())

    assert answer.verdict is Verdict.ACCEPTED and answer.elapsed_seconds > 0
    (stored,) = sandbox._public_documents()
    assert stored["document_id"] == answer.document_id
    assert stored["filename"] == "Ünïcødé scan.pdf"
    assert stored["fields"] == {
        "patient_mrn": "100001",
        "folder_name": "MedicalRecords/Labs",
        "emr_assigned_to_id": "staff-001",
        "is_reviewed": "true",
        "is_high_priority": "false",
        "notes": "Lab panel",
    }


def test_credentials_are_read_again_once_on_a_401(sandbox: CobaltSandbox) -> None:
    stale = {**AUTH, "client_secret": "cs_test_rotated_away"}
    credentials = Credentials(stale, AUTH)

    answer = CobaltClient(sandbox.base_url, credentials).upload_document(
        FIELDS, "a.pdf", "application/pdf", pdf_bytes()
    )

    assert answer.verdict is Verdict.ACCEPTED
    assert credentials.reads == [False, True]


def test_credentials_refused_after_the_refresh_block_without_a_third_try(sandbox: CobaltSandbox) -> None:
    wrong = {**AUTH, "client_secret": "cs_test_wrong"}
    credentials = Credentials(wrong, wrong)

    answer = CobaltClient(sandbox.base_url, credentials).upload_document(
        FIELDS, "a.pdf", "application/pdf", pdf_bytes()
    )

    assert (answer.verdict, answer.status_code, credentials.reads) == (Verdict.BLOCKED, 401, [False, True])
    assert sandbox._public_documents() == []


def test_a_refused_connection_is_retryable_because_nothing_left() -> None:
    port = free_port()  # nothing listens there
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    answer = CobaltClient(f"http://127.0.0.1:{port}/v1", lambda refresh: AUTH).upload_document(
        FIELDS, "a.pdf", "application/pdf", pdf_bytes()
    )
    assert answer.verdict is Verdict.RETRY


@contextmanager
def _redirecting_to(target: str, status: int) -> Iterator[str]:
    """A server on 127.0.0.1 that answers every request with `status` and Location: `target`."""

    class Redirect(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            self.send_response(status)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_nothing_reaches_the_other_host(sandbox: CobaltSandbox, status: int) -> None:
    elsewhere = sandbox.base_url.removesuffix("/v1")
    with _redirecting_to(elsewhere, status) as base_url:
        client = CobaltClient(base_url, lambda refresh: AUTH)
        answer = client.upload_document(FIELDS, "a.pdf", "application/pdf", pdf_bytes())
        with pytest.raises(EventLogUnavailable):
            client.webhook_events(event_type="document.uploaded", start_date=date(2026, 11, 30), page=1)
        for setup_call in (
            lambda: client.register_webhook("https://example.test/hook"),
            client.list_webhooks,
            lambda: client.rotate_webhook_secret("wh-1"),
        ):
            with pytest.raises(CobaltSetupError, match="a redirect"):
                setup_call()
    assert answer.verdict is Verdict.FAILED and answer.status_code == status and base_url in answer.reason
    assert sandbox._public_documents() == [] and sandbox.webhooks == {}  # the credentials and the file stayed home


def test_a_documents_sha256_is_optional_evidence_and_anything_but_its_bytes_is_none(sandbox: CobaltSandbox) -> None:
    import hashlib

    client = CobaltClient(sandbox.base_url, lambda refresh: AUTH)
    content = pdf_bytes("evidence")
    answer = client.upload_document(FIELDS, "e.pdf", "application/pdf", content)
    assert client.document_sha256(str(answer.document_id)) == hashlib.sha256(content).hexdigest()
    assert client.document_sha256("0000000000000000") is None  # 404: no evidence, never "not filed"
    unreachable = CobaltClient(f"http://127.0.0.1:{free_port()}/v1", lambda refresh: AUTH, connect_timeout=0.2)
    assert unreachable.document_sha256(str(answer.document_id)) is None

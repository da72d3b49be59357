"""The Cobalt sandbox: Cobalt's documented API, signed webhooks with its retry rules, seeded faults, inspection.

Standard library only (plus requests for webhook delivery), so it starts fast and can run anywhere the tests do.
It never logs file bytes, MRNs or query strings: one line per request with method, path, status and duration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import re
import secrets
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from docdrop.filetype import MAX_DOCUMENT_BYTES, sniff_content_type
from docdrop.signature import js_json_stringify, sign_payload

from local.loopback_server import QuietHTTPServer

log = logging.getLogger("cobalt_sandbox")

DEFAULT_SEED_FILE = Path(__file__).with_name("seed.json")
MAX_NOTES_CHARS = 1000
PATIENT_NOT_FOUND = "Patient not found. Please check the patient MRN and try again."
ASSIGNEE_NOT_FOUND = "Assigned staff member not found. Please check emr_assigned_to_id and try again."
FIRST_TIMEOUT_SECONDS = 5.0
RETRY_DELAY_SECONDS = 1.0
RETRY_TIMEOUT_SECONDS = 2.0
PREVIOUS_SECRET_VALID = timedelta(hours=24)
BOOLEAN_FIELDS = ("is_reviewed", "is_high_priority")


@dataclasses.dataclass
class FaultSettings:
    """Probabilities (0..1) of each fault, drawn from one seeded generator so a seed replays the same faults.

    HTTP faults apply to POST /v1/documents; webhook faults to the events of accepted documents.
    `script` holds forced answers for the next uploads, consumed in order before any draw:
    `{"status": 400, "body": {...}}` or `{"fault": "http_503" | "drop_connection" | "slow_after_accept" | ...}`.
    """

    seed: int = 0
    http_429: float = 0.0
    retry_after_seconds: int = 1
    http_500: float = 0.0
    http_503: float = 0.0
    # A gateway in front of Cobalt that gave up waiting: the document is stored (and processed), the answer is 502/504.
    http_502_after_store: float = 0.0
    http_504_after_store: float = 0.0
    drop_connection: float = 0.0
    slow_after_accept: float = 0.0
    slow_seconds: float = 8.0
    webhook_never_sent: float = 0.0
    webhook_twice: float = 0.0
    webhook_before_response: float = 0.0
    webhook_out_of_order: float = 0.0
    script: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # A webhook fault for every upload of a file of this name, e.g. {"lost.pdf": "webhook_never_sent"}.
    webhook_fault_by_filename: dict[str, str] = dataclasses.field(default_factory=dict)

    HTTP_FAULTS = (
        "http_429",
        "http_500",
        "http_503",
        "drop_connection",
        "slow_after_accept",
        "http_502_after_store",
        "http_504_after_store",
    )
    WEBHOOK_FAULTS = ("webhook_never_sent", "webhook_twice", "webhook_before_response", "webhook_out_of_order")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        settings = cls(**data)
        for name in (*cls.HTTP_FAULTS, *cls.WEBHOOK_FAULTS):
            value = getattr(settings, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if sum(getattr(settings, n) for n in cls.HTTP_FAULTS) > 1:
            raise ValueError("the HTTP fault probabilities add up to more than 1")
        for fault in settings.webhook_fault_by_filename.values():
            if fault not in cls.WEBHOOK_FAULTS:
                raise ValueError(f"webhook_fault_by_filename names {fault!r}, not one of {cls.WEBHOOK_FAULTS}")
        return settings

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SandboxConfig:
    """Seed data and behaviour; loaded from a JSON file (seed.json beside this module by default)."""

    clients: list[dict[str, str]]
    access_tokens: list[dict[str, Any]]
    patients: list[dict[str, Any]]
    staff_ids: list[str]
    processing_delay_seconds: float = 0.5
    answer_seconds: float = 0.0  # how long POST /v1/documents takes to answer, whatever the answer (a real API's time)
    job_ids: bool = True
    webhook_secret_field: str = "webhook_secret_key"  # noqa: S105 (a field name, not a secret); or "webhook_secret", or "webhook.secret" (nested)
    event_log_shape: str = "v1"  # v1: {id, type, created, status, ...}; v2: {event_id, event_type, created_at, ...}

    @classmethod
    def load(cls, path: Path = DEFAULT_SEED_FILE) -> SandboxConfig:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in data.items() if k in known})
        if config.webhook_secret_field not in ("webhook_secret_key", "webhook_secret", "webhook.secret"):
            raise ValueError("webhook_secret_field must be webhook_secret_key, webhook_secret or webhook.secret")
        if config.event_log_shape not in ("v1", "v2"):
            raise ValueError("event_log_shape must be v1 or v2")
        return config


@dataclasses.dataclass
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    drop_connection: bool = False
    delay_seconds: float = 0.0
    raw_body: bytes | None = None  # answered as is (with its own Content-Type header) instead of JSON


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _error(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, {"success": False, **extra, "message": message})


class CobaltSandbox:
    """The sandbox's state and behaviour; `serve()` puts it on 127.0.0.1."""

    def __init__(self, config: SandboxConfig | None = None, faults: FaultSettings | None = None) -> None:
        self.config = config or SandboxConfig.load()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timers: set[threading.Timer] = set()
        self._reset_state(faults or FaultSettings())

    # ----- state -----------------------------------------------------------------------------------------------
    def _reset_state(self, faults: FaultSettings) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self.documents: list[dict[str, Any]] = []
            self.contents: dict[str, bytes] = {}  # document id -> the bytes uploaded (GET /v1/documents/{id})
            self.events: list[dict[str, Any]] = []
            self.deliveries: list[dict[str, Any]] = []
            self.webhooks: dict[str, str] = {}
            self.secret: str | None = None
            self.previous_secret: str | None = None
            self.previous_secret_until: datetime | None = None
            self.fault_log: list[dict[str, Any]] = []
            self.token_refs = {t["access_token"]: t.get("access_token_reference_id") for t in self.config.access_tokens}
            self.broken_tokens = {t["access_token"] for t in self.config.access_tokens if t.get("login_required")}

    def reset(self, faults: FaultSettings | None = None) -> None:
        for timer in list(self._timers):
            timer.cancel()
        self._reset_state(faults or FaultSettings(seed=self.faults.seed))

    def set_faults(self, faults: FaultSettings) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def set_login_required(self, reference_id: str, login_required: bool) -> bool:
        tokens = [
            t["access_token"] for t in self.config.access_tokens if t.get("access_token_reference_id") == reference_id
        ]
        if not tokens:
            return False
        with self._lock:
            for token in tokens:
                if login_required and token not in self.broken_tokens:
                    self.broken_tokens.add(token)
                    self._emit_login_required(reference_id)
                elif not login_required:
                    self.broken_tokens.discard(token)
        return True

    # ----- server ----------------------------------------------------------------------------------------------
    def serve(self, port: int = 0) -> int:
        """Start serving on 127.0.0.1 in a background thread; returns the port (0 picks a free one)."""
        sandbox = self

        class Handler(_Handler):
            owner = sandbox

        self._server = QuietHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="cobalt-sandbox", daemon=True)
        self._thread.start()
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        assert self._server is not None, "serve() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def stop(self) -> None:
        for timer in list(self._timers):
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ----- routing ---------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Message, body: bytes) -> Reply:
        routes: list[tuple[str, str, Callable[..., Reply]]] = [
            ("POST", r"/v1/documents", self._post_document),
            ("GET", r"/v1/documents/(?P<document_id>[^/]+)", self._get_document),
            ("POST", r"/v1/webhook", self._register_webhook),
            ("GET", r"/v1/webhook", self._list_webhooks),
            ("DELETE", r"/v1/webhook/(?P<webhook_id>[^/]+)", self._delete_webhook),
            ("POST", r"/v1/webhook/rotate-secret", self._rotate_secret),
            ("POST", r"/v1/webhook/(?P<webhook_id>[^/]+)/rotate-secret", self._rotate_secret),
            ("GET", r"/v1/webhook-events", self._list_events),
            ("GET", r"/v1/patients", self._list_patients),
            ("GET", r"/v1/providers", self._list_providers),
            ("POST", r"/v1/settings", self._settings),
        ]
        admin: list[tuple[str, str, Callable[..., Reply]]] = [
            ("GET", r"/_sandbox/health", lambda **_: Reply(200, {"ok": True})),
            ("GET", r"/_sandbox/documents", lambda **_: Reply(200, {"documents": self._public_documents()})),
            ("GET", r"/_sandbox/events", lambda **_: Reply(200, {"events": list(self.events)})),
            ("GET", r"/_sandbox/deliveries", lambda **_: Reply(200, {"deliveries": list(self.deliveries)})),
            ("GET", r"/_sandbox/faults", lambda **_: Reply(200, {**self.faults.to_dict(), "log": self.fault_log})),
            ("POST", r"/_sandbox/faults", self._admin_faults),
            ("POST", r"/_sandbox/reset", self._admin_reset),
            ("POST", r"/_sandbox/config", self._admin_config),
            ("POST", r"/_sandbox/tokens/(?P<reference_id>[^/]+)", self._admin_token),
        ]
        path = path.rstrip("/") or "/"
        known_path = False
        for route_method, pattern, handler in routes + admin:
            match = re.fullmatch(pattern, path)
            if match is None:
                continue
            known_path = True
            if route_method != method:
                continue
            if pattern.startswith("/v1/"):
                denied = self._authenticate(headers)
                if denied is not None:
                    return denied
            return handler(query=query, headers=headers, body=body, **match.groupdict())
        if known_path:
            return _error(405, "Method not allowed")
        return _error(404, "Not found")

    def _authenticate(self, headers: Message) -> Reply | None:
        for name in ("client_id", "client_secret", "access_token"):
            if not headers.get(name):
                return _error(401, f"Missing authentication header: {name}")
        client = {"client_id": headers["client_id"], "client_secret": headers["client_secret"]}
        if client not in self.config.clients:
            return _error(401, "Invalid client credentials")
        token = headers["access_token"]
        if token not in self.token_refs:
            return _error(401, "Invalid access token")
        if token in self.broken_tokens:
            return _error(
                403,
                "Account link expired. Please re-link your EHR credentials through Cobalt Link.",
                error="login_required",
            )
        return None

    # ----- documents -------------------------------------------------------------------------------------------
    def _draw_upload_faults(self) -> tuple[str | None, dict[str, bool], dict[str, Any] | None]:
        """One fixed-size draw per upload so the same seed replays the same faults whatever the probabilities."""
        with self._lock:
            scripted = self.faults.script.pop(0) if self.faults.script else None
            http_draw = self._rng.random()
            hook_draws = [self._rng.random() for _ in FaultSettings.WEBHOOK_FAULTS]
        http_fault: str | None = None
        threshold = 0.0
        for name in FaultSettings.HTTP_FAULTS:
            threshold += getattr(self.faults, name)
            if http_draw < threshold:
                http_fault = name
                break
        hook_faults = {
            name: draw < getattr(self.faults, name)
            for name, draw in zip(FaultSettings.WEBHOOK_FAULTS, hook_draws, strict=True)
        }
        if scripted is not None and "fault" in scripted:
            if scripted["fault"] in FaultSettings.HTTP_FAULTS:
                http_fault = scripted["fault"]
            elif scripted["fault"] in FaultSettings.WEBHOOK_FAULTS:
                hook_faults[scripted["fault"]] = True
            scripted = None
        with self._lock:
            self.fault_log.append({"http": http_fault, **hook_faults, "scripted": scripted is not None})
        return http_fault, hook_faults, scripted

    def _post_document(self, headers: Message, body: bytes, **_: Any) -> Reply:
        reply = self._answer_upload(headers, body)
        if self.config.answer_seconds and not reply.drop_connection:
            return dataclasses.replace(reply, delay_seconds=reply.delay_seconds + self.config.answer_seconds)
        return reply

    def _answer_upload(self, headers: Message, body: bytes) -> Reply:
        http_fault, hook_faults, scripted = self._draw_upload_faults()
        if scripted is not None:
            return Reply(int(scripted.get("status", 400)), scripted.get("body"), dict(scripted.get("headers", {})))
        if http_fault == "drop_connection":
            return Reply(0, drop_connection=True)
        if http_fault == "http_429":
            retry_after = str(self.faults.retry_after_seconds)
            return Reply(429, {"success": False, "message": "Too many requests"}, {"Retry-After": retry_after})
        if http_fault == "http_500":
            return _error(500, "Internal server error")
        if http_fault == "http_503":
            return _error(503, "Service temporarily unavailable")

        fields, document = _parse_multipart(headers.get("content-type", ""), body)
        if fields is None:
            return _error(400, "Request must be multipart/form-data")
        invalid = _validate_upload(fields, document)
        if invalid is not None:
            return _error(400, invalid)
        assert document is not None
        filename, content = document
        named_fault = self.faults.webhook_fault_by_filename.get(filename)
        if named_fault is not None:
            hook_faults[named_fault] = True
        token = headers["access_token"]
        record: dict[str, Any] = {
            "document_id": "".join(secrets.choice("0123456789") for _ in range(16)).replace("0", "1", 1),
            "job_id": str(uuid.uuid4().int % 10**9) if self.config.job_ids else None,
            "fields": fields,
            "filename": filename,
            "content_type": sniff_content_type(content),
            "byte_size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "access_token_reference_id": self.token_refs.get(token),
            "accepted_at": _iso(_now()),
            "faults": {"http": http_fault, **hook_faults},
        }
        with self._lock:
            self.documents.append(record)
            self.contents[record["document_id"]] = content
        answer: dict[str, Any] = {
            "success": True,
            "message": "Document uploaded successfully. It will be processed soon.",
            "document_id": record["document_id"],
        }
        if record["job_id"] is not None:
            answer["job_id"] = record["job_id"]
        if hook_faults["webhook_before_response"]:
            self._process(record, hook_faults)  # the webhook goes out before the upload's answer does
        else:
            self._schedule(self.config.processing_delay_seconds, lambda: self._process(record, hook_faults))
        if http_fault == "http_502_after_store":
            return _error(502, "Bad Gateway")
        if http_fault == "http_504_after_store":
            return _error(504, "Gateway Timeout")
        delay = self.faults.slow_seconds if http_fault == "slow_after_accept" else 0.0
        return Reply(200, answer, delay_seconds=delay)

    def _get_document(self, document_id: str, **_: Any) -> Reply:
        """The preview docs' GET /v1/documents/{id}: the raw bytes, or 404 {"success": false, ...}."""
        with self._lock:
            content = self.contents.get(document_id)
            record = next((d for d in self.documents if d["document_id"] == document_id), None)
        if content is None or record is None:
            return _error(404, "Document not found")
        headers = {
            "Content-Type": record["content_type"] or "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{record["filename"]}"',
        }
        return Reply(200, headers=headers, raw_body=content)

    def _public_documents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self.documents]

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        timer: threading.Timer

        def run() -> None:
            self._timers.discard(timer)
            action()

        timer = threading.Timer(delay, run)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _process(self, record: dict[str, Any], hook_faults: dict[str, bool]) -> None:
        fields = record["fields"]
        known_mrns = {str(p["mrn"]) for p in self.config.patients}
        reasons = []
        if fields["patient_mrn"] not in known_mrns:
            reasons.append({"code": "PATIENT_NOT_FOUND", "description": PATIENT_NOT_FOUND})
        assignee = fields.get("emr_assigned_to_id")
        if assignee and assignee not in self.config.staff_ids:
            reasons.append({"code": "ASSIGNEE_NOT_FOUND", "description": ASSIGNEE_NOT_FOUND})
        data: dict[str, Any] = {
            "document_id": record["document_id"],
            "patient_mrn": fields["patient_mrn"],
            "folder_name": fields["folder_name"],
        }
        if reasons:
            data["failure_reason"] = " ".join(r["description"] for r in reasons)
            data["reasons"] = reasons
        event_type = "document.upload_failed" if reasons else "document.uploaded"
        events = [self._new_event(event_type, data, record["job_id"], record["access_token_reference_id"])]
        if hook_faults["webhook_out_of_order"]:
            # A second event of the same document, created later but delivered first.
            later = self._new_event(event_type, dict(data), record["job_id"], record["access_token_reference_id"])
            events = [later, events[0]]
        for event in events:
            if hook_faults["webhook_never_sent"]:
                event["status"] = "failed"
                continue
            self._deliver(event, times=2 if hook_faults["webhook_twice"] else 1)

    def _new_event(
        self, event_type: str, data: dict[str, Any], job_id: str | None, reference: str | None
    ) -> dict[str, Any]:
        with self._lock:
            previous = self.events[-1]["created"] if self.events else None
            created = _now()
            if previous is not None and _iso(created) <= previous:
                created = datetime.fromisoformat(previous.replace("Z", "+00:00")) + timedelta(milliseconds=1)
            event: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "access_token_reference_id": reference,
                "object": "event",
                "created": _iso(created),
                "type": event_type,
            }
            if job_id is not None:
                event["job_id"] = job_id
            event["data"] = data
            self.events.append({"event": event, "created": event["created"], "status": "pending", "attempts": 0})
        return self.events[-1]

    def _emit_login_required(self, reference_id: str) -> None:
        data = {
            "access_token_reference_id": reference_id,
            "emr_instance_domain": "emr.example.test",
            "message": "EHR credentials are no longer valid. Please re-link the account.",
            "error_type": "login_required",
        }
        record = self._new_event("access_token.login_required", data, None, reference_id)
        threading.Thread(target=self._deliver, args=(record, 1), daemon=True).start()

    # ----- webhooks --------------------------------------------------------------------------------------------
    def _deliver(self, record: dict[str, Any], times: int = 1) -> None:
        body = js_json_stringify(record["event"]).encode("utf-8")
        with self._lock:
            urls = list(self.webhooks.values())
            secret = self.secret
        if not urls or secret is None:
            record["status"] = "failed"
            return
        outcomes: list[bool] = []
        lock = threading.Lock()

        def to_one(url: str) -> None:
            ok = self._deliver_to(url, record, body, secret)
            with lock:
                outcomes.append(ok)

        for _ in range(times):
            threads = [threading.Thread(target=to_one, args=(url,), daemon=True) for url in urls]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        record["status"] = "success" if outcomes and all(outcomes) else "failed"

    def _deliver_to(self, url: str, record: dict[str, Any], body: bytes, secret: str) -> bool:
        event = record["event"]
        for attempt, timeout in ((1, FIRST_TIMEOUT_SECONDS), (2, RETRY_TIMEOUT_SECONDS)):
            headers = {
                "Content-Type": "application/json",
                "cobalt-verification": sign_payload(secret, body),
                "webhook-id": event["id"],
                "webhook-timestamp": event["created"],
                "webhook-attempt": str(attempt),
            }
            started = time.monotonic()
            result: str
            retry = False
            try:
                answer = requests.post(url, data=body, headers=headers, timeout=timeout)
                result = str(answer.status_code)
                retry = answer.status_code >= 500 or answer.status_code == 429
            except requests.Timeout:
                result = "timeout"  # Cobalt does not retry a timeout
            except requests.RequestException:
                result = "network_error"
                retry = True
            with self._lock:
                record["attempts"] += 1
                self.deliveries.append(
                    {
                        "event_id": event["id"],
                        "type": event["type"],
                        "url": url,
                        "attempt": attempt,
                        "result": result,
                        "seconds": round(time.monotonic() - started, 3),
                    }
                )
            log.info("webhook delivery event=%s attempt=%d result=%s", event["id"], attempt, result)
            if result.startswith("2"):
                return True
            if not retry or attempt == 2:
                return False
            time.sleep(RETRY_DELAY_SECONDS)
        return False

    def _secret_body(self, secret: str) -> dict[str, Any]:
        field = self.config.webhook_secret_field
        if field == "webhook.secret":
            return {"webhook": {"secret": secret}}
        return {field: secret}

    def _register_webhook(self, body: bytes, **_: Any) -> Reply:
        try:
            url = json.loads(body or b"{}").get("webhook_url")
        except (ValueError, AttributeError):
            return _error(400, "Request body must be JSON")
        if not url:
            return _error(400, "Missing required field: webhook_url")
        if not str(url).startswith("https://") and not re.match(r"^http://(127\.0\.0\.1|localhost)(:\d+)?/", url):
            return _error(400, "webhook_url must use https")  # loopback http admitted: the sandbox is local
        with self._lock:
            if self.secret is None:
                self.secret = "whsec_" + secrets.token_hex(24)
            webhook_id = str(uuid.uuid4())
            self.webhooks[webhook_id] = url
            secret = self.secret
        return Reply(200, {"success": True, "webhook_id": webhook_id, "webhook_url": url, **self._secret_body(secret)})

    def _list_webhooks(self, **_: Any) -> Reply:
        with self._lock:
            urls = [{"id": i, "url": u} for i, u in self.webhooks.items()]
        return Reply(200, {"success": True, "webhook_urls": urls})

    def _delete_webhook(self, webhook_id: str, **_: Any) -> Reply:
        with self._lock:
            if self.webhooks.pop(webhook_id, None) is None:
                return _error(404, "Webhook not found")
        return Reply(200, {"success": True, "message": "Webhook deleted"})

    def _rotate_secret(self, webhook_id: str | None = None, **_: Any) -> Reply:
        with self._lock:
            if webhook_id is not None and webhook_id not in self.webhooks:
                return _error(404, "Webhook not found")
            if self.secret is None:
                return _error(404, "No webhook registered")
            self.previous_secret = self.secret
            self.previous_secret_until = _now() + PREVIOUS_SECRET_VALID
            self.secret = "whsec_" + secrets.token_hex(24)
            secret = self.secret
        return Reply(
            200,
            {
                "success": True,
                **self._secret_body(secret),
                "previous_secret_valid_until": _iso(self.previous_secret_until),
            },
        )

    def _list_events(self, query: dict[str, list[str]], **_: Any) -> Reply:
        def one(name: str) -> str:
            values = query.get(name)
            return values[0] if values else ""

        try:
            page = int(one("page") or 1)
            page_size = min(int(one("page_size") or 20), 100)
            start = date.fromisoformat(one("start_date")) if one("start_date") else None
            end = date.fromisoformat(one("end_date")) if one("end_date") else None
        except ValueError:
            return _error(400, "Invalid page, page_size, start_date or end_date")
        if page < 1 or page_size < 1:
            return _error(400, "page and page_size must be positive")
        status = one("delivery_status") or one("status")
        with self._lock:
            records = list(self.events)
        selected = []
        for record in records:
            event = record["event"]
            created_day = date.fromisoformat(record["created"][:10])
            if one("event_type") and event["type"] != one("event_type"):
                continue
            if status and record["status"] != status:
                continue
            if one("job_id") and str(event.get("job_id")) != one("job_id"):
                continue
            if (start and created_day < start) or (end and created_day > end):
                continue
            selected.append(record)
        selected.sort(key=lambda r: r["created"], reverse=(one("sort") or "desc").lower() != "asc")
        total_pages = max(1, -(-len(selected) // page_size))
        chunk = selected[(page - 1) * page_size : page * page_size]
        return Reply(
            200,
            {
                "success": True,
                "webhook_events": [self._event_item(r) for r in chunk],
                "pagination": {
                    "current_page": page,
                    "total_pages": total_pages,
                    "total_count": len(selected),
                    "page_size": page_size,
                },
            },
        )

    def _event_item(self, record: dict[str, Any]) -> dict[str, Any]:
        event = record["event"]
        if self.config.event_log_shape == "v2":
            return {
                "event_id": event["id"],
                "event_type": event["type"],
                "created_at": event["created"],
                "job_id": event.get("job_id"),
                "access_token_reference_id": event.get("access_token_reference_id"),
                "delivery_status": record["status"],
                "data": event["data"],
            }
        return {
            "id": event["id"],
            "type": event["type"],
            "created": event["created"],
            "job_id": event.get("job_id"),
            "access_token_reference_id": event.get("access_token_reference_id"),
            "status": record["status"],
            "delivery_attempts": record["attempts"],
            "data": event["data"],
        }

    def _list_patients(self, query: dict[str, list[str]], **_: Any) -> Reply:
        mrns = query.get("mrn")
        patients = [p for p in self.config.patients if not mrns or str(p["mrn"]) == mrns[0]]
        return Reply(200, {"success": True, "patients": patients})

    def _list_providers(self, **_: Any) -> Reply:
        return Reply(200, {"success": True, "providers": [{"id": s} for s in self.config.staff_ids]})

    def _settings(self, headers: Message, body: bytes, **_: Any) -> Reply:
        try:
            reference = json.loads(body or b"{}").get("access_token_reference_id")
        except (ValueError, AttributeError):
            return _error(400, "Request body must be JSON")
        if not reference:
            return _error(400, "Missing required field: access_token_reference_id")
        with self._lock:
            self.token_refs[headers["access_token"]] = str(reference)
        return Reply(200, {"success": True, "message": "Settings updated"})

    # ----- admin -----------------------------------------------------------------------------------------------
    def _admin_faults(self, body: bytes, **_: Any) -> Reply:
        try:
            self.set_faults(FaultSettings.from_dict(json.loads(body or b"{}")))
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return Reply(200, {"success": True, **self.faults.to_dict()})

    def _admin_reset(self, body: bytes, **_: Any) -> Reply:
        try:
            data = json.loads(body or b"{}")
            faults = FaultSettings.from_dict(data["faults"]) if "faults" in data else None
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        self.reset(faults)
        return Reply(200, {"success": True})

    def _admin_config(self, body: bytes, **_: Any) -> Reply:
        try:
            changes = json.loads(body or b"{}")
            merged = {**dataclasses.asdict(self.config), **changes}
            self.config = SandboxConfig.from_dict(merged)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return Reply(200, {"success": True})

    def _admin_token(self, reference_id: str, body: bytes, **_: Any) -> Reply:
        try:
            login_required = bool(json.loads(body or b"{}").get("login_required", True))
        except (ValueError, AttributeError):
            return _error(400, "Request body must be JSON")
        if not self.set_login_required(reference_id, login_required):
            return _error(404, "No access token has that reference id")
        return Reply(200, {"success": True, "login_required": login_required})


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str] | None, tuple[str, bytes] | None]:
    """Form fields and the `document` part (filename, bytes); (None, None) when the body is not multipart."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None, None
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None, None
    fields: dict[str, str] = {}
    document: tuple[str, bytes] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        payload = payload if isinstance(payload, bytes) else b""
        if name == "document":
            document = (part.get_filename() or "document", payload)
        elif name:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields, document


def _validate_upload(fields: dict[str, str], document: tuple[str, bytes] | None) -> str | None:
    """Cobalt's documented rules for POST /v1/documents; the message of the first one broken, or None."""
    for name in ("folder_name", "patient_mrn"):
        if not fields.get(name, "").strip():
            return f"Missing required field: {name}"
    if document is None or not document[1]:
        return "Missing required field: document"
    if len(document[1]) > MAX_DOCUMENT_BYTES:
        return "File too large. The maximum size is 5 MB."
    if sniff_content_type(document[1]) is None:
        return "Unsupported file type. Only PDF, JPEG and PNG files are allowed."
    if len(fields.get("notes", "")) > MAX_NOTES_CHARS:
        return "notes must be at most 1000 characters"
    for name in BOOLEAN_FIELDS:
        if name in fields and fields[name].strip().lower() not in ("true", "false"):
            return f"{name} must be a boolean (true or false)"
    return None


class _Handler(BaseHTTPRequestHandler):
    owner: CobaltSandbox
    protocol_version = "HTTP/1.1"
    server_version = "CobaltSandbox/1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per request is written by _dispatch, without the query string

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.owner.handle(method, parts.path, parse_qs(parts.query), self.headers, body)
        if reply.drop_connection:
            # Reset the connection without answering (SO_LINGER 0 sends RST).
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            log.info("%s %s -> dropped connection (%.0f ms)", method, parts.path, (time.monotonic() - started) * 1000)
            return
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        raw = reply.raw_body is not None
        payload = reply.raw_body if reply.raw_body is not None else json.dumps(reply.body or {}).encode("utf-8")
        try:
            self.send_response(reply.status)
            if not raw:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): the upload was still accepted, as with the real service
        log.info("%s %s -> %d (%.0f ms)", method, parts.path, reply.status, (time.monotonic() - started) * 1000)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

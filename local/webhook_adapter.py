"""Serve the webhook handler over real HTTP as API Gateway's HTTP API would (payload format 2.0): the template's routes
(`POST /webhooks/cobalt/<token>`, and the previous token's while it changes), each route's throttle, and its access-log
format. A request that matches no route is a 404 that meets no throttle and no function, as in AWS. Local only."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from local.lambda_runtime import LocalLambdaContext
from local.loopback_server import LoopbackPostServer, answer
from local.resources import WebhookStage, webhook_stage
from local.workers import FunctionTimedOut

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
UNPROTECTED_PATH = "none"  # WebhookPreviousPathToken for a stack deployed before the path token


def http_api_event(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload 2.0 event for one request (binary bodies base64-encoded, as API Gateway does)."""
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "127.0.0.1"),
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id or uuid.uuid4().hex,
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if body:
        event["body"] = text
    return event


class TokenBucket:
    """API Gateway's throttle of one route: `burst` requests at once, refilled at `rate` a second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._last = float(burst), clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class WebhookAdapter:
    """A threaded HTTP server on 127.0.0.1 in front of the webhook `handler`, routed and throttled as the template's
    API is (module docstring). `token` is the path's token (WebhookPathToken); a new one is made when none is given."""

    def __init__(
        self,
        handler: Handler,
        port: int = 0,
        timeout_seconds: float = 4.0,
        *,
        token: str | None = None,
        stage: WebhookStage | None = None,
        access_log: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.timeout_seconds = timeout_seconds
        self.stage = stage or webhook_stage()
        self.invocations = 0
        self.statuses: Counter[int] = Counter()  # every answer, by status code
        self._access_log = access_log
        self._clock = clock
        self._server = LoopbackPostServer(self._serve, "webhook-adapter", port)
        self._lock = threading.Lock()
        self._routes: dict[str, TokenBucket] = {}
        self.token = ""
        self.previous_token: str | None = None
        self.deploy(token or secrets.token_urlsafe(32))

    def deploy(self, token: str, previous: str | None = None) -> None:
        """The routes of a deploy with WebhookPathToken=token and WebhookPreviousPathToken=previous (or empty)."""
        paths = [self._path(token)] + ([self._path(previous)] if previous else [])
        with self._lock:
            self._routes = {
                p: self._routes.get(p) or TokenBucket(self.stage.rate_per_second, self.stage.burst, self._clock)
                for p in paths
            }
            self.token, self.previous_token = token, previous

    def _path(self, token: str) -> str:
        if token == UNPROTECTED_PATH:  # its route had no token
            return self.stage.path_before_token.rstrip("/")
        return self.stage.path_before_token + token

    @property
    def url(self) -> str:
        return self._server.base_url + self._path(self.token)

    @property
    def previous_url(self) -> str | None:
        return self._server.base_url + self._path(self.previous_token) if self.previous_token else None

    def start(self) -> WebhookAdapter:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        path, _, query = request.path.partition("?")
        body = request.rfile.read(int(request.headers.get("content-length") or 0))
        request_id = uuid.uuid4().hex
        with self._lock:
            bucket = self._routes.get(path) if request.command == self.stage.method else None
        if bucket is None:  # no route: API Gateway's own 404, before any throttle or function
            self._answer(request, started, request_id, path, 404, {}, b'{"message":"Not Found"}', "Not Found")
            return
        if not bucket.take():
            body_429 = b'{"message":"Too Many Requests"}'
            self._answer(request, started, request_id, path, 429, {}, body_429, "Too Many Requests")
            return
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        event = http_api_event(
            request.command, path, query, headers, body, request.client_address[0], request_id=request_id
        )
        context = LocalLambdaContext("webhook", timeout_seconds=self.timeout_seconds, memory_limit_in_mb=1024)
        with self._lock:
            self.invocations += 1
        try:
            result = self.handler(event, context)
        except FunctionTimedOut:  # the worker was killed at the function's timeout: API Gateway's 503
            self._answer(request, started, request_id, path, 503, {}, b'{"message":"Service Unavailable"}', "-")
            return
        except Exception:  # an unhandled error (or a crashed worker) is API Gateway's 500, as in AWS
            body_500 = b'{"message":"Internal Server Error"}'
            self._answer(request, started, request_id, path, 500, {}, body_500, "-")
            return
        if time.monotonic() - started > self.timeout_seconds:  # Lambda would have been stopped: API Gateway's 503
            self._answer(request, started, request_id, path, 503, {}, b'{"message":"Service Unavailable"}', "-")
            return
        payload = result.get("body") or ""
        raw = base64.b64decode(payload) if result.get("isBase64Encoded") else str(payload).encode("utf-8")
        status = int(result.get("statusCode", 200))
        self._answer(request, started, request_id, path, status, dict(result.get("headers") or {}), raw, "-")

    def _answer(
        self,
        request: BaseHTTPRequestHandler,
        started: float,
        request_id: str,
        path: str,
        status: int,
        headers: dict[str, str],
        body: bytes,
        error: str,
    ) -> None:
        answer(request, status, headers or {"content-type": "application/json"}, body)
        with self._lock:
            self.statuses[status] += 1
        if self._access_log is None:
            return
        latency = str(int((time.monotonic() - started) * 1000))
        line = access_log_line(
            self.stage.access_log_format,
            {
                "requestId": request_id,
                "requestTime": datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "identity.sourceIp": request.client_address[0],
                "httpMethod": request.command,
                "path": path,
                "routeKey": f"{request.command} {path}" if error != "Not Found" else "-",
                "stage": "$default",
                "status": str(status),
                "error.message": error,
                "responseLength": str(len(body)),
                "responseLatency": latency,
                "integrationLatency": latency if error == "-" else "-",
            },
        )
        with self._lock, self._access_log.open("a", encoding="utf-8") as log:
            log.write(line + "\n")


def access_log_line(log_format: str, context: dict[str, str]) -> str:
    """The template's access-log format with each `$context.<name>` replaced, as API Gateway does ("-" when unset)."""

    def value(match: re.Match[str]) -> str:
        return json.dumps(context.get(match.group(1), "-"))[1:-1]  # inside the format's own quotes

    return re.sub(r"\$context\.([A-Za-z][A-Za-z.]*[A-Za-z])", value, log_format)

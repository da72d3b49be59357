"""Serve the webhook handler over real HTTP as API Gateway's HTTP API would (payload format 2.0). Local only."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from local.lambda_runtime import LocalLambdaContext
from local.loopback_server import LoopbackPostServer, answer
from local.workers import FunctionTimedOut

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
ROUTE = "/webhooks/cobalt"


def http_api_event(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """An API Gateway HTTP API payload 2.0 event for one request (binary bodies base64-encoded, as API Gateway does)."""
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {ROUTE}",
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
            "requestId": uuid.uuid4().hex,
            "routeKey": f"{method} {ROUTE}",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if body:
        event["body"] = text
    return event


class WebhookAdapter:
    """A threaded HTTP server on 127.0.0.1 that passes POST /webhooks/cobalt to `handler` and returns its answer."""

    def __init__(self, handler: Handler, port: int = 0, timeout_seconds: float = 4.0) -> None:
        self.handler = handler
        self.timeout_seconds = timeout_seconds
        self.invocations = 0
        self._server = LoopbackPostServer(self._serve, "webhook-adapter", port)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._server.base_url + ROUTE

    def start(self) -> WebhookAdapter:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        path, _, query = request.path.partition("?")
        body = request.rfile.read(int(request.headers.get("content-length") or 0))
        if path != ROUTE:
            answer(request, 404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
            return
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        event = http_api_event("POST", path, query, headers, body, request.client_address[0])
        context = LocalLambdaContext("webhook", timeout_seconds=self.timeout_seconds, memory_limit_in_mb=1024)
        started = time.monotonic()
        with self._lock:
            self.invocations += 1
        try:
            result = self.handler(event, context)
        except FunctionTimedOut:  # the worker was killed at the function's timeout: API Gateway's 503
            answer(request, 503, {"content-type": "application/json"}, b'{"message":"Service Unavailable"}')
            return
        except Exception:  # an unhandled error (or a crashed worker) is API Gateway's 500, as in AWS
            answer(request, 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
            return
        if time.monotonic() - started > self.timeout_seconds:  # Lambda would have been stopped: API Gateway's 503
            answer(request, 503, {"content-type": "application/json"}, b'{"message":"Service Unavailable"}')
            return
        payload = result.get("body") or ""
        raw = base64.b64decode(payload) if result.get("isBase64Encoded") else str(payload).encode("utf-8")
        answer(request, int(result.get("statusCode", 200)), dict(result.get("headers") or {}), raw)

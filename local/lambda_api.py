"""Lambda's Invoke API (RequestResponse) for the local stack's functions, so that `docdrop reconcile` calls a local
function exactly as it calls a deployed one: boto3's `lambda.invoke` with the stack file's endpoint; and its
GetAccountSettings, with the concurrency limit the stack pretends its account has (`docdrop doctor` reports it).
Local only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from local.loopback_server import LoopbackPostServer, answer

Invoke = Callable[[dict[str, Any]], Any]
ROUTE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
ACCOUNT_SETTINGS = "/2016-08-19/account-settings/"


class LocalLambdaApi:
    """A threaded HTTP server on 127.0.0.1: POST /2015-03-31/functions/{name}/invocations runs `functions[name]`."""

    def __init__(self, functions: dict[str, Invoke], port: int = 0, concurrency_limit: int = 1000) -> None:
        self.functions = functions
        self.concurrency_limit = concurrency_limit
        self._server = LoopbackPostServer(self._serve, "lambda-api", port, serve_get=self._serve_get)

    @property
    def url(self) -> str:
        return self._server.base_url

    def start(self) -> LocalLambdaApi:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("content-length") or 0))
        match = ROUTE.match(request.path.partition("?")[0])
        function = self.functions.get(match.group("name")) if match else None
        if function is None:
            message = {"Type": "User", "message": "Function not found"}
            self._answer(request, 404, message, {"x-amzn-ErrorType": "ResourceNotFoundException"})
            return
        try:
            event = json.loads(body or b"{}")
            result = function(event)
        except Exception as exc:  # as Lambda reports an unhandled error: 200 with X-Amz-Function-Error
            self._answer(request, 200, {"errorType": type(exc).__name__}, {"X-Amz-Function-Error": "Unhandled"})
            return
        self._answer(request, 200, result, {})

    def _serve_get(self, request: BaseHTTPRequestHandler) -> None:
        if request.path.partition("?")[0].rstrip("/") != ACCOUNT_SETTINGS.rstrip("/"):
            self._answer(request, 404, {"message": "not found"}, {})
            return
        total = self.concurrency_limit
        limit = {"ConcurrentExecutions": total, "UnreservedConcurrentExecutions": total}
        usage = {"TotalCodeSize": 0, "FunctionCount": len(self.functions)}
        self._answer(request, 200, {"AccountLimit": limit, "AccountUsage": usage}, {})

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]) -> None:
        answer(request, status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode("utf-8"))

"""Lambda's Invoke API (RequestResponse) for the local stack's functions, so that `docdrop reconcile` calls a local
function exactly as it calls a deployed one: boto3's `lambda.invoke` with the stack file's endpoint. Local only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from local.loopback_server import LoopbackPostServer, answer

Invoke = Callable[[dict[str, Any]], Any]
ROUTE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


class LocalLambdaApi:
    """A threaded HTTP server on 127.0.0.1: POST /2015-03-31/functions/{name}/invocations runs `functions[name]`."""

    def __init__(self, functions: dict[str, Invoke], port: int = 0) -> None:
        self.functions = functions
        self._server = LoopbackPostServer(self._serve, "lambda-api", port)

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

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]) -> None:
        answer(request, status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode("utf-8"))

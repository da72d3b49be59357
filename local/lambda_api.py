"""Lambda's Invoke API (RequestResponse) for the local stack's functions, so that `docdrop reconcile` calls a local
function exactly as it calls a deployed one: boto3's `lambda.invoke` with the stack file's endpoint. Local only."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Invoke = Callable[[dict[str, Any]], Any]
ROUTE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


class LocalLambdaApi:
    """A threaded HTTP server on 127.0.0.1: POST /2015-03-31/functions/{name}/invocations runs `functions[name]`."""

    def __init__(self, functions: dict[str, Invoke], port: int = 0) -> None:
        api = self
        self.functions = functions

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                api._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), RequestHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="lambda-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LocalLambdaApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

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
        raw = json.dumps(payload).encode("utf-8")
        try:
            request.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(raw)))
            request.end_headers()
            request.wfile.write(raw)
        except OSError:
            pass

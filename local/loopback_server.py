"""A threaded HTTP server on 127.0.0.1 that hands each POST to one function: what the local stack's API Gateway
(`webhook_adapter`) and Lambda Invoke API (`lambda_api`) are built on. Local only."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that lets a client hang up (a timeout, a reset) without printing a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class LoopbackPostServer:
    def __init__(
        self,
        serve: Callable[[BaseHTTPRequestHandler], None],
        name: str,
        port: int = 0,
        serve_get: Callable[[BaseHTTPRequestHandler], None] | None = None,
    ) -> None:
        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else a body written after its headers waits for a delayed ACK (40 ms)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the functions log; request lines would add nothing and could carry query strings

            def do_POST(self) -> None:
                serve(self)

            def do_GET(self) -> None:
                if serve_get is None:
                    answer(self, 405, {}, b"")
                else:
                    serve_get(self)

        self._server = QuietHTTPServer(("127.0.0.1", port), RequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def answer(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
    """One response with its length; a caller that gave up (a timeout) is no error here."""
    try:
        request.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
    except OSError:
        pass

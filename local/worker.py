"""One Lambda execution environment of the local stack: `python -m local.worker FUNCTION FD`. Local only.

It imports functions/FUNCTION/app.py once (its cold start), then runs one invocation at a time for the parent
(local.workers), over the connection on file descriptor FD: the event in, the handler's answer or its error type out.
Its stdout and stderr are the function's log (the parent points them at the function's log file, as CloudWatch Logs
keeps each function's lines). It ends when the parent closes the connection, or when the parent is gone.

Crash injection (local.workers.CrashPlan) kills this process with SIGKILL at a named point of the uploader's path,
as a Lambda timeout or an out-of-memory kill would: nothing after that point runs, no finally, no log line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

from local.aws_calls import record_from_environment
from local.lambda_runtime import LocalLambdaContext, load_handler_module

PARENT_WATCH_SECONDS = 0.25


class Crasher:
    """Decides whether this process dies at a point: the invocation's one-shot point, or a seeded chance per point."""

    def __init__(self, plan: dict[str, Any], conn: Connection) -> None:
        self.points = frozenset(plan.get("points") or ())
        self.probability = float(plan.get("probability") or 0.0)
        self.in_flight_seconds = float(plan.get("in_flight_seconds") or 0.05)
        self.random = random.Random(plan.get("seed"))
        self.one_shot: str | None = None
        self.stall = False
        self._conn = conn
        self._lock = threading.Lock()

    def due(self, point: str) -> bool:
        with self._lock:
            if self.one_shot == point:
                return True
            return point in self.points and self.random.random() < self.probability

    def at(self, point: str) -> None:
        if self.due(point):
            self.die(point)

    def die(self, point: str) -> None:
        with self._lock:  # one thread of the invocation reports and dies; any other waits for the kill
            self._conn.send_bytes(json.dumps({"crashing": point, "stall": self.stall}).encode())
            if self.stall:  # hangs instead, until the invocation's timeout has the parent kill it
                while True:
                    time.sleep(60)
            os.kill(os.getpid(), signal.SIGKILL)


def install_crash_points(function: str, module: ModuleType, crasher: Crasher) -> None:
    """Wrap the uploader's collaborators (in this process only) so that it can die after the claim, with its POST in
    flight, or after Cobalt's answer and before the ledger write."""
    if function != "uploader":
        return
    uploader = module.uploader
    ledger, cobalt = uploader._ledger, uploader._cobalt
    claim, upload, post = ledger.claim, cobalt.upload_document, cobalt._session.post

    def claim_then_crash(*args: Any, **kwargs: Any) -> Any:
        claimed = claim(*args, **kwargs)
        if claimed.won:
            crasher.at("after_claim")
        return claimed

    def post_then_crash(*args: Any, **kwargs: Any) -> Any:
        if not crasher.due("post_in_flight"):
            return post(*args, **kwargs)
        threading.Thread(target=post, args=args, kwargs=kwargs, daemon=True).start()
        time.sleep(crasher.in_flight_seconds)  # the request is on its way; its answer never gets read
        crasher.die("post_in_flight")
        raise AssertionError("unreachable")

    def upload_then_crash(*args: Any, **kwargs: Any) -> Any:
        answer = upload(*args, **kwargs)
        crasher.at("after_answer")
        return answer

    ledger.claim = claim_then_crash
    cobalt._session.post = post_then_crash
    cobalt.upload_document = upload_then_crash


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:  # the stack is gone: an execution environment never outlives its service
            os._exit(137)
        time.sleep(PARENT_WATCH_SECONDS)


def _send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message, default=str).encode())


def main(argv: list[str]) -> int:
    function, fd = argv[0], int(argv[1])
    parent = int(os.environ.get("DOCDROP_WORKER_PARENT", os.getppid()))
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack decides when an invocation ends, as Lambda does
    conn = Connection(fd)
    crasher = Crasher(json.loads(os.environ.get("DOCDROP_CRASH_PLAN") or "{}"), conn)
    started = time.monotonic()
    record_from_environment(function)  # for tests/iam, when the test session asks (its cold start's calls too)
    module = load_handler_module(function)
    install_crash_points(function, module, crasher)
    _send(conn, {"ready": True, "init_ms": round((time.monotonic() - started) * 1000, 1)})
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except (EOFError, OSError):  # the parent is done with this environment
            return 0
        crasher.one_shot, crasher.stall = request.get("crash_at"), bool(request.get("stall"))
        context = LocalLambdaContext(
            function,
            timeout_seconds=float(request["timeout_seconds"]),
            memory_limit_in_mb=int(request.get("memory_mb") or 512),
            aws_request_id=str(request["request_id"]),
        )
        try:
            crasher.at("on_invoke")
            result = module.handler(request["event"], context)
        except Exception as exc:  # Lambda's runtime reports the error's type; the message could carry PHI
            print(json.dumps({"level": "ERROR", "message": "unhandled error", "errorType": type(exc).__name__}))
            _send(conn, {"error": type(exc).__name__})
        else:
            _send(conn, {"result": result})
        finally:
            metrics = getattr(module, "metrics", None)
            if metrics is not None and os.environ.get("POWERTOOLS_METRICS_DISABLED") == "true":
                metrics.clear_metrics()  # disabled metrics are not flushed, but would still pile up
            sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

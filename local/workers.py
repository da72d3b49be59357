"""Lambda's execution environments on one machine: each function runs in worker processes (local.worker). Local only.

What it keeps of Lambda: a worker is reused while warm and a new one pays its cold start (the handler module's
import); at most `max_concurrency` invocations of a function run at once; the function's timeout is enforced by
killing its worker (SIGKILL), so nothing after that moment runs; a worker that dies mid-invocation (a crash, an
injected kill) is replaced by a cold one. A caller sees FunctionTimedOut, FunctionCrashed or FunctionError instead
of an answer, and treats it as Lambda's event sources do.

Every worker carries DOCDROP_STACK_ID in its environment (so tests can find any that outlive the stack in the process
table), runs in its own session (a Ctrl-C at the terminal reaches the stack only) and ends when the stack's process
ends, killed or not.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("docdrop.local.workers")
REPOSITORY = Path(__file__).resolve().parent.parent
# Lambda gives an execution environment's init 10 s; two cores starting several at once need more.
INIT_TIMEOUT_SECONDS = 60.0
# Where the uploader can be killed (local.worker.install_crash_points), and "on_invoke" for any function.
CRASH_POINTS = ("after_claim", "post_in_flight", "after_answer")


class InvocationFailed(Exception):
    """The invocation gave no answer: its event source retries it as Lambda's would."""


class FunctionTimedOut(InvocationFailed):
    """The function ran past its timeout and its worker was killed."""


class FunctionCrashed(InvocationFailed):
    """The worker died mid-invocation (an injected crash, or a real one)."""

    def __init__(self, point: str | None, returncode: int | None) -> None:
        super().__init__(f"worker died at {point or 'an unknown point'} (exit {returncode})")
        self.point = point


class FunctionError(InvocationFailed):
    """The handler raised; only the error's type is known (its message could carry PHI)."""


@dataclasses.dataclass(frozen=True)
class CrashPlan:
    """Kill the worker at each of `points` with `probability` (seeded), e.g. CrashPlan(0.01) for 1 % per point."""

    probability: float = 0.0
    points: tuple[str, ...] = CRASH_POINTS
    seed: int = 0
    in_flight_seconds: float = 0.05  # how long a POST is on its way before the kill

    def for_worker(self, serial: int) -> str:
        plan = dataclasses.asdict(self)
        plan["seed"] = f"{self.seed}:{serial}"
        return json.dumps(plan)


@dataclasses.dataclass
class WorkerStats:
    invocations: int = 0
    cold_starts: int = 0
    init_ms: list[float] = dataclasses.field(default_factory=list)
    timeouts: int = 0
    errors: int = 0
    crashes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    peak_concurrency: int = 0
    killed_pids: list[int] = dataclasses.field(default_factory=list)  # workers ended by a timeout or a crash


class _Worker:
    """One execution environment: a process, its connection, whether it is still usable."""

    def __init__(self, function: str, environment: Mapping[str, str], log_file: IO[bytes]) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.worker", function, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env={**environment, "DOCDROP_WORKER_PARENT": str(os.getpid())},
            cwd=REPOSITORY,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        theirs.close()
        self.conn = Connection(ours.detach())

    def wait_ready(self) -> float:
        reply = self._receive(INIT_TIMEOUT_SECONDS)
        if not reply.get("ready"):
            raise FunctionCrashed("init", self.process.poll())
        return float(reply.get("init_ms") or 0.0)

    def invoke(self, request: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        try:
            self.conn.send_bytes(json.dumps(request).encode())
        except OSError as exc:
            raise FunctionCrashed(None, self.kill()) from exc
        return self._receive(timeout_seconds)

    def _receive(self, timeout_seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        point: str | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.conn.poll(remaining):
                self.kill()
                raise FunctionTimedOut(f"timed out after {timeout_seconds:g} s; the worker was killed")
            try:
                reply: dict[str, Any] = json.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                raise FunctionCrashed(point, self.kill()) from None
            if "crashing" in reply:  # the worker says where it dies, then dies (or hangs until the timeout)
                point = str(reply["crashing"])
                continue
            return reply

    def kill(self) -> int:
        self.conn.close()
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def close(self, grace_seconds: float = 5.0) -> None:
        self.conn.close()  # the worker reads EOF and exits
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class FunctionWorkers:
    """The execution environments of one function. `invoke(event)` blocks while `max_concurrency` are busy."""

    def __init__(
        self,
        function: str,
        *,
        timeout_seconds: float,
        max_concurrency: int,
        log_path: Path,
        environment: Mapping[str, str],
        memory_mb: int = 512,
        crash: CrashPlan | None = None,
    ) -> None:
        self.function = function
        self.timeout_seconds = timeout_seconds
        self.max_concurrency = max_concurrency
        self.memory_mb = memory_mb
        self.crash = crash
        self.stats = WorkerStats()
        self._environment = environment
        self._log = log_path.open("ab")
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._lock = threading.Condition()
        self._serials = itertools.count(1)
        self._one_shot: list[tuple[str, bool, str | None]] = []
        self._closed = False

    # ----- what tests and people use --------------------------------------------------------------------------------
    def crash_next(self, point: str, *, stall: bool = False, match: str | None = None) -> None:
        """The next invocation (whose event holds `match`, if given) dies at `point`, or with `stall` hangs there
        until its timeout kills it."""
        with self._lock:
            self._one_shot.append((point, stall, match))

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._busy)

    # ----- invoking --------------------------------------------------------------------------------------------------
    def invoke(self, event: dict[str, Any]) -> Any:
        with self._slots:
            worker = self._take()
            request: dict[str, Any] = {
                "event": event,
                "request_id": str(uuid.uuid4()),
                "timeout_seconds": self.timeout_seconds,
                "memory_mb": self.memory_mb,
            }
            with self._lock:
                for planned in self._one_shot:
                    point, stall, match = planned
                    if match is None or match in json.dumps(event):
                        request["crash_at"], request["stall"] = point, stall
                        self._one_shot.remove(planned)
                        break
            try:
                reply = worker.invoke(request, self.timeout_seconds)
            except FunctionTimedOut:
                self._drop(worker, timed_out=True)
                raise
            except FunctionCrashed as crashed:
                self._drop(worker, crashed=crashed.point or "unknown")
                raise
            self._give_back(worker)
        if "error" in reply:
            with self._lock:
                self.stats.errors += 1
            raise FunctionError(str(reply["error"]))
        return reply.get("result")

    def handler(self, event: dict[str, Any], context: Any = None) -> Any:
        """The pool in a handler's shape, for the event sources (the worker makes its own context)."""
        return self.invoke(event)

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise InvocationFailed(f"{self.function}: the stack is stopping")
            worker = None
            while self._idle and worker is None:
                worker = self._idle.pop()
                if worker.process.poll() is not None:  # ended while idle (killed from outside): Lambda starts anew
                    worker.kill()
                    worker = None
            if worker is not None:
                self._busy.add(worker)
                self._count_busy()
                return worker
            serial = next(self._serials)
        environment = dict(self._environment)
        if self.crash is not None:
            environment["DOCDROP_CRASH_PLAN"] = self.crash.for_worker(serial)
        worker = _Worker(self.function, environment, self._log)
        with self._lock:
            self._busy.add(worker)
            self._count_busy()
            self.stats.cold_starts += 1
        try:
            init_ms = worker.wait_ready()
        except InvocationFailed:
            self._drop(worker, crashed="init")
            raise
        with self._lock:
            self.stats.init_ms.append(init_ms)
        return worker

    def _count_busy(self) -> None:
        self.stats.invocations += 1
        self.stats.peak_concurrency = max(self.stats.peak_concurrency, len(self._busy))

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if self._closed:
                worker.close()
            else:
                self._idle.append(worker)
            self._lock.notify_all()

    def _drop(self, worker: _Worker, *, timed_out: bool = False, crashed: str | None = None) -> None:
        worker.kill()
        with self._lock:
            self.stats.killed_pids.append(worker.process.pid)
            self._busy.discard(worker)
            if timed_out:
                self.stats.timeouts += 1
            if crashed is not None:
                self.stats.crashes[crashed] += 1
            self._lock.notify_all()

    # ----- stopping --------------------------------------------------------------------------------------------------
    def drain(self, seconds: float | None = None) -> int:
        """Refuse new invocations and wait for those in flight (their timeout bounds the wait); how many remain."""
        deadline = time.monotonic() + (self.timeout_seconds + INIT_TIMEOUT_SECONDS if seconds is None else seconds)
        with self._lock:
            self._closed = True
            while self._busy and time.monotonic() < deadline:
                self._lock.wait(max(0.0, min(1.0, deadline - time.monotonic())))
            return len(self._busy)

    def stop(self) -> None:
        """Drain, then end every worker (a straggler is killed, as a timeout would)."""
        self.drain()
        with self._lock:
            workers = [*self._idle, *self._busy]
            self._idle.clear()
        for worker in workers:
            worker.close()
        self._log.close()

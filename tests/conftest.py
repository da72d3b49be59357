"""Suite-wide guards: a run that collects or passes nothing fails loudly instead of looking green."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local import aws_calls
from local.cobalt_sandbox import CobaltSandbox
from local.dynamodb_local import free_port, running_dynamodb_local
from tests.support.aws import create_ledger_table, dynamodb_client, use_local_credentials
from tests.support.cobalt import running_sandbox

AWS_CALLS = Path(__file__).resolve().parent.parent / ".docdrop" / "aws-calls.jsonl"


def pytest_configure(config: pytest.Config) -> None:
    """Every AWS call DocDrop's code makes in this run is recorded (local.aws_calls), here and in the local stack's
    workers (which inherit the variable), for tests/iam's check against the policies the template deploys."""
    AWS_CALLS.parent.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # under `-n`: the run's controller starts the file, once
    if os.environ.get("DOCDROP_AWS_CALLS_KEEP") != "1" and worker is None:  # =1: tests/iam checks the last run's calls
        AWS_CALLS.unlink(missing_ok=True)
    os.environ[aws_calls.ENVIRONMENT] = str(AWS_CALLS)
    aws_calls.record(AWS_CALLS)


# A test that starts (or shares) a local server of AWS: DynamoDB Local, moto, or a whole local stack.
SERVER_FIXTURES = frozenset({"dynamodb_endpoint", "moto_endpoint"})
STACK_NAMES = ("LocalStack", "CliStack")  # a module that imports either starts a whole local stack
# Tests that need what only `make test` gives: the calls a full run recorded, `sam build`'s output, a chaos run's stack.
FULL_RUN_ONLY = (
    "tests/iam/test_deployed_permissions.py",
    "tests/template/test_sam_build_output.py",
    "tests/local/test_chaos.py::test_a_chaos_run_of_100_documents_keeps_every_promise",
)


# The longest test files (minutes each: one long walk, a chaos run, whole stacks killed and restarted) start first under
# `make test`'s workers (xdist keeps this order with --no-loadscope-reorder), so no long one starts last and runs alone.
LONGEST_FIRST = (
    "tests/model/test_interleavings.py",
    "tests/local/test_chaos.py",
    "tests/local/test_worker_runtime.py",
    "tests/local/test_local_stack.py",
    "tests/local/test_cobalt_outage.py",
    "tests/local/test_engines.py",
    "tests/cli/test_sending_again.py",
)


def _start_order(item: pytest.Item) -> tuple[bool, int]:
    path = item.nodeid.split("::")[0]
    longest = LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    return path.startswith("tests/iam/"), longest


def needs_stack(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return (
        bool(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
        or any(hasattr(module, name) for name in STACK_NAMES)
        or item.get_closest_marker("integration") is not None
        or item.nodeid.startswith(FULL_RUN_ONLY)
    )


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """tests/iam checks what every other test's calls were: it runs last; the longest files start first. A test that
    needs a local stack (or what only `make test` gives) is marked `stack`, so that `make check` (`-m "not stack"`)
    runs the rest in seconds."""
    for item in items:
        if needs_stack(item):
            item.add_marker(pytest.mark.stack)
    items.sort(key=_start_order)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # under `-n` the controller, which sees every worker's results, decides
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter is not None else 0
    if exitstatus == 0 and passed == 0 and not session.config.option.collectonly:
        # Every test skipped or deselected: nothing was proven, so the run must not pass.
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """The real DynamoDB Local engine for the whole run, on 127.0.0.1, in memory, stopped at the end."""
    use_local_credentials()
    with running_dynamodb_local(in_memory=True) as endpoint:
        yield endpoint


@pytest.fixture
def ddb(dynamodb_endpoint: str) -> Any:
    return dynamodb_client(dynamodb_endpoint)


@pytest.fixture
def ledger_table(ddb: Any) -> str:
    return create_ledger_table(ddb)


@pytest.fixture
def sandbox() -> Iterator[CobaltSandbox]:
    """A fresh Cobalt sandbox on 127.0.0.1 whose outcomes come after 50 ms."""
    with running_sandbox() as box:
        yield box


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto server (S3, SQS, Secrets Manager, CloudWatch) on 127.0.0.1 for the whole run, stopped at the end."""
    from moto.server import ThreadedMotoServer

    use_local_credentials()
    # moto's request log names bucket and key (object keys may hold patient names): keep it out of test output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()

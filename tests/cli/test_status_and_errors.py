"""`docdrop status` (filters, summary, CSV, JSON numbers, versions) and the errors a person can act on."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import docdrop_cli.main as cli
import pytest
from botocore.exceptions import ClientError
from docdrop.ledger import DocumentView
from docdrop_cli import webhook_setup
from docdrop_cli.output import WorkProgress
from docdrop_cli.status import write_views

from local.samples import pdf_bytes
from tests.cli.conftest import CliStack

REPO = Path(__file__).resolve().parents[2]


def test_status_of_a_key_with_several_versions_shows_a_version_column_and_json_numbers(cli_stack: CliStack) -> None:
    stack = cli_stack
    first = stack.put("status/twice.pdf", pdf_bytes("first scan"))
    stack.wait_status(first, "UPLOADED")
    second = stack.put("status/twice.pdf", pdf_bytes("second scan"))
    stack.wait_status(second, "UPLOADED")

    table = stack.docdrop("status", "--key", first.key, "--show-keys")
    assert table.code == 0
    header = table.out.splitlines()[0].split()
    assert header[:3] == ["object", "version", "status"]
    assert first.version_id[:12] in table.out and second.version_id[:12] in table.out

    rows = stack.docdrop("status", "--key", first.key, "--json").json()
    assert {r["version_id"] for r in rows} == {first.version_id, second.version_id}
    assert all(isinstance(r["age_seconds"], float) for r in rows)
    attempts = [event["attempt"] for r in rows for event in r["events"]]
    assert attempts and all(type(a) is int for a in attempts)  # DynamoDB's numbers are numbers, not strings

    single = stack.docdrop("status", "--status", "UPLOADED", "--limit", "1")
    assert single.out.splitlines()[0].split()[:2] == ["object", "status"]  # no version column without several


def test_status_filters_by_age_and_writes_csv(cli_stack: CliStack) -> None:
    stack = cli_stack
    ref = stack.put("status/recent.pdf")
    stack.wait_status(ref, "UPLOADED")
    recent = stack.docdrop("status", "--status", "UPLOADED", "--since", "10m", "--csv", "--limit", "500", "--show-keys")
    rows = list(csv.DictReader(io.StringIO(recent.out)))
    assert recent.code == 0 and ref.key in {r["key"] for r in rows}
    assert set(rows[0]) == {
        "key",
        "version_id",
        "status",
        "reason",
        "document_id",
        "object_id",
        "account",
        "created_at",
        "updated_at",
    }
    assert {r["account"] for r in rows if r["key"] == ref.key} == {"main"}  # the local stack's fallback account
    older = stack.docdrop("status", "--status", "UPLOADED", "--older-than", "1h", "--json")
    assert older.code == 0 and older.json() == []  # nothing of this run is an hour old


def test_status_summary_counts_each_status_and_gives_drop_to_outcome_percentiles(cli_stack: CliStack) -> None:
    stack = cli_stack
    ref = stack.put("status/summary.pdf")
    stack.wait_status(ref, "UPLOADED")
    summary = stack.docdrop("status", "--summary", "--json").json()
    counts = summary["counts"]
    assert set(counts) >= {"UPLOADED", "SUBMITTED", "BLOCKED", "NEEDS_REVIEW"}
    assert all(isinstance(n, int) for n in counts.values()) and counts["UPLOADED"] >= 1
    latency = summary["drop_to_outcome"]
    assert latency["documents"] >= 1 and 0 < latency["p50_seconds"] <= latency["p99_seconds"] < 120
    for status, oldest in summary["oldest_open"].items():
        assert counts[status] >= 1 and isinstance(oldest["age_seconds"], float)
    text = stack.docdrop("status", "--summary")
    assert text.code == 0 and "Drop to outcome since" in text.out and "UPLOADED" in text.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--limit", "-1"], "is not a whole number of at least 1"),
        (["status", "--older-than", "soon"], "is not a duration such as 90s"),
        (["backfill", "--prefix", "inbox/", "--rate", "fast"], "is not a rate per second"),
        (["status", "--since", "yesterday-ish"], "is not a date, an ISO 8601 time or a duration"),
    ],
)
def test_a_bad_argument_value_is_a_usage_error_without_a_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_a_stale_local_stack_file_says_the_stack_is_not_running(cli_stack: CliStack, tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    info = json.loads((cli_stack.state_dir / "local-stack.json").read_text())
    (tmp_path / ".docdrop").mkdir()
    (tmp_path / ".docdrop" / "local-stack.json").write_text(json.dumps({**info, "pid": int(ended.stdout)}))
    run = subprocess.run(
        [sys.executable, "-m", "docdrop_cli", "status"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert run.returncode == 4
    assert "the local stack is not running" in run.stderr and "make demo ARGS=--keep-running" in run.stderr
    assert "Traceback" not in run.stderr


def test_docdrop_finds_the_local_stack_from_any_directory_below_it(cli_stack: CliStack, tmp_path: Path) -> None:
    below = tmp_path / "some" / "folder"
    below.mkdir(parents=True)
    (tmp_path / ".docdrop").mkdir()
    (tmp_path / ".docdrop" / "local-stack.json").write_text((cli_stack.state_dir / "local-stack.json").read_text())
    env = {k: v for k, v in os.environ.items() if k != "DOCDROP_LOCAL"}
    run = subprocess.run(
        [sys.executable, "-m", "docdrop_cli", "status", "--json"], capture_output=True, text=True, cwd=below, env=env
    )
    assert run.returncode == 0, run.stderr
    assert isinstance(json.loads(run.stdout), list)
    by_env = subprocess.run(
        [sys.executable, "-m", "docdrop_cli", "status", "--json"],
        capture_output=True,
        text=True,
        cwd="/",
        env={**env, "DOCDROP_LOCAL": str(cli_stack.state_dir)},
    )
    assert by_env.returncode == 0, by_env.stderr


def test_a_wrong_table_name_says_it_was_not_found(cli_stack: CliStack, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = cli_stack.info.dynamodb_endpoint_url
    code = cli.main(["status", "--table", "no-such-ledger", "--region", "us-east-1"])
    error = capsys.readouterr().err
    assert code == 4 and "not found" in error and "--table" in error and "Traceback" not in error


def test_a_missing_stack_says_so(cli_stack: CliStack, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", cli_stack.info.aws_endpoint_url)
    code = cli.main(["status", "--stack", "no-such-stack", "--region", "us-east-1"])
    error = capsys.readouterr().err
    assert code == 4 and "no stack named no-such-stack" in error and "Traceback" not in error


def test_no_credentials_or_no_region_say_how_to_give_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOCDROP_", "LEDGER_"))}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )

    def docdrop(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "docdrop_cli", "status", "--table", "ledger", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env={**env, **extra}, timeout=60)

    no_credentials = docdrop("--region", "us-east-1")
    assert no_credentials.returncode == 4 and "no AWS credentials found" in no_credentials.stderr
    no_region = docdrop(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    assert no_region.returncode == 4 and "no AWS region: give --region" in no_region.stderr
    assert "Traceback" not in no_credentials.stderr + no_region.stderr


def test_access_denied_names_the_call_and_the_permission(capsys: pytest.CaptureFixture[str]) -> None:
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "Query")
    args = cli.build_parser().parse_args(["status", "--table", "ledger"])
    wrapped = RuntimeError("DynamoDB query failed")
    wrapped.__cause__ = denied
    assert cli.explain(wrapped, args) == (
        "access denied to Query: the AWS identity in use needs that permission (not authorized)"
    )
    assert cli.explain(ValueError("a bug"), args) is None  # a bug keeps its traceback


def test_progress_in_a_pipe_is_plain_lines_with_counts_and_an_eta() -> None:
    out = io.StringIO()
    with WorkProgress("backfill", 4, out) as bar:
        bar._every = 0
        bar.advance("queued")
        bar.advance("already_in_ledger")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("backfill: 1/4 (1 queued), ETA")
    assert lines[1].startswith("backfill: 2/4 (1 queued, 1 already_in_ledger), ETA")


def _listed(view: DocumentView, *flags: str) -> dict[str, str]:
    """`view` as status prints it: the table, the JSON and the CSV, with `flags`."""
    shown = {}
    for shape in ("table", "json", "csv"):
        args = cli.build_parser().parse_args(["status", *flags, *([f"--{shape}"] if shape != "table" else [])])
        out = io.StringIO()
        write_views([view], args, out)
        shown[shape] = out.getvalue()
    return shown


def test_status_shows_object_ids_not_keys_and_masks_numbers_in_cobalts_reasons_unless_asked() -> None:
    view = DocumentView(
        status="FAILED",
        reason="Patient MRN 4455667788 not found in the EMR",
        object_id="0123456789abcdef0123456789abcdef",
        bucket="inbox-bucket",
        key="inbox/Jane Roe.pdf",
        version_id="v1",
        document_id="9988776655443322",
        job_id=None,
        created_at="2026-12-01T09:00:00+00:00",
        updated_at="2026-12-01T09:01:00+00:00",
        history=[{"status": "FAILED", "reason": "Cobalt: patient 4455667788 unknown"}],
        events=[{"type": "document.upload_failed", "failure_reason": "No chart for 4455667788"}],
    )
    for shape, text in _listed(view).items():
        assert "Jane Roe" not in text and "4455667788" not in text, shape
        assert "********88" in text and "0123456789abcdef" in text, shape
    for shape, text in _listed(view, "--show-keys", "--show-mrn").items():
        assert "Jane Roe" in text and "4455667788" in text, shape
    summary = json.loads(_listed(view, "--show-keys")["json"])[0]
    assert summary["history"][0]["reason"] == "Cobalt: patient ********88 unknown"  # masked without --show-mrn


@pytest.mark.parametrize("url", ["http://api.example.test/v1", "http://10.0.0.5:8080/v1", "ftp://api.example.test/v1"])
def test_the_cli_refuses_a_cobalt_url_the_credentials_would_cross_a_network_in_clear(
    cli_stack: CliStack, url: str
) -> None:
    run = cli_stack.docdrop("register-webhook", "--cobalt-url", url, "--url", "https://hooks.example.test/x", "--json")
    assert run.code == 2 and "only over https://" in run.err, run.err


@pytest.mark.parametrize(
    "url", ["https://api.usecobalt.com/v1", "http://127.0.0.1:4010/v1", "http://localhost:4010", "http://[::1]:4010"]
)
def test_https_anywhere_and_http_to_this_machine_are_accepted_as_the_cobalt_url(url: str) -> None:
    assert webhook_setup._private_enough(url)

"""Several Cobalt accounts in one stack: routed by tag or prefix, each request with its own token; an unknown account
REJECTED; a broken link blocks only its own account, without calls, until it is re-linked."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import docdrop_cli.main as cli
import pytest
from docdrop.ledger import Status

from local.samples import pdf_bytes
from local.stack import SANDBOX_ACCOUNTS
from tests.uploader.conftest import AUTH, UploaderStack, tags

ACCOUNTS = SANDBOX_ACCOUNTS  # two practices of the sandbox: main (clinic-main) and north (clinic-north)


@pytest.fixture
def two_accounts(uploader_stack: UploaderStack, monkeypatch: pytest.MonkeyPatch) -> UploaderStack:
    stack = uploader_stack
    secrets = stack.module.credentials._client
    secrets.put_secret_value(
        SecretId=stack.module.settings.cobalt_credentials_secret, SecretString=json.dumps(ACCOUNTS)
    )
    stack.module.credentials.get(refresh=True)
    monkeypatch.setattr(stack.module.uploader, "_account_prefixes", {"north-scans/": "north"})
    return stack


def _reconciler(stack: UploaderStack, cobalt: Any = None, **options: Any) -> Any:
    """The reconciler as its function builds it, over this stack, with the two accounts."""
    import logging

    from docdrop.accounts import CobaltAccounts
    from docdrop.cobalt import CobaltClient
    from docdrop.outcomes import OutcomeJoiner
    from docdrop.reconciler import Deadlines, Reconciler

    from tests.reconciler.conftest import RecordedMetrics

    metrics = RecordedMetrics()
    return Reconciler(
        stack.ledger,
        cobalt or CobaltClient(stack.sandbox.base_url, lambda refresh: ACCOUNTS),
        OutcomeJoiner(stack.ledger, metrics, logging.getLogger("test")),
        Deadlines.defaults(),
        metrics=metrics,
        logger=logging.getLogger("test"),
        accounts=lambda: CobaltAccounts.from_secret(ACCOUNTS),
        **options,
    )


def _reference_of(stack: UploaderStack, filename: str) -> list[str]:
    return [d["access_token_reference_id"] for d in stack.uploads() if d["filename"] == filename]


def test_two_accounts_are_routed_by_tag_and_by_prefix_each_request_with_its_own_token(
    two_accounts: UploaderStack,
) -> None:
    stack = two_accounts
    stack.put("by-tag.pdf", pdf_bytes("by tag"), tags(cobalt_account="north"))
    stack.put("north-scans/by-prefix.pdf", pdf_bytes("by prefix"), tags())
    stack.put("main.pdf", pdf_bytes("main"), tags(cobalt_account="main"))
    stack.drain()
    assert _reference_of(stack, "by-tag.pdf") == ["clinic-north"]
    assert _reference_of(stack, "by-prefix.pdf") == ["clinic-north"]
    assert _reference_of(stack, "main.pdf") == ["clinic-main"]
    assert stack.ledger.get_object(stack.ref("by-tag.pdf"))["account"] == "north"
    assert stack.view("north-scans/by-prefix.pdf").account == "north"


def test_an_unknown_or_missing_account_is_rejected_with_the_accounts_known(two_accounts: UploaderStack) -> None:
    stack = two_accounts
    stack.put("nowhere.pdf", pdf_bytes("nowhere"), tags(cobalt_account="south"))
    stack.put("unnamed.pdf", pdf_bytes("unnamed"), tags())  # two accounts, no tag, no prefix: which one?
    stack.drain()
    for name, why in (("nowhere.pdf", "Unknown Cobalt account 'south'"), ("unnamed.pdf", "No Cobalt account named")):
        view = stack.view(name)
        assert view.status == Status.REJECTED and why in (view.reason or "")
        assert "accounts known: main, north" in (view.reason or "")
    assert stack.uploads() == []


def test_a_broken_link_blocks_only_its_account_without_calls_and_relink_sends_its_objects_once(
    two_accounts: UploaderStack, tmp_path: Path
) -> None:
    stack = two_accounts
    stack.sandbox.set_login_required("clinic-north", True)
    stack.put("north-1.pdf", pdf_bytes("north 1"), tags(cobalt_account="north"))
    stack.drain()
    calls = len(stack.sandbox.fault_log)
    stack.put("north-2.pdf", pdf_bytes("north 2"), tags(cobalt_account="north"))
    stack.put("main-1.pdf", pdf_bytes("main 1"), tags(cobalt_account="main"))
    stack.drain()

    assert stack.view("north-1.pdf").status == Status.BLOCKED
    north_2 = stack.view("north-2.pdf")
    assert north_2.status == Status.BLOCKED and "docdrop accounts relink north" in (north_2.reason or "")
    assert len(stack.sandbox.fault_log) == calls + 1  # only main-1 called Cobalt: north's dead login was not tried
    assert stack.view("main-1.pdf").status == Status.SUBMITTED

    stack.sandbox.set_login_required("clinic-north", False)  # a person re-links it in Cobalt
    out = io.StringIO()
    assert cli.main(["accounts", "relink", "north", "--local", str(stack.stack_file(tmp_path))], out=out) == 0
    stack.drain()
    assert [stack.view(n).status for n in ("north-1.pdf", "north-2.pdf")] == [Status.SUBMITTED] * 2
    assert _reference_of(stack, "north-1.pdf") == ["clinic-north"]
    assert _reference_of(stack, "north-2.pdf") == ["clinic-north"]

    listed = io.StringIO()
    assert cli.main(["accounts", "--json", "--local", str(stack.stack_file(tmp_path))], out=listed) == 0
    links = {row["account"]: row["link"] for row in json.loads(listed.getvalue())}
    assert links == {"main": "LINKED", "north": "LINKED"}
    only_north = io.StringIO()
    args = ["status", "--account", "north", "--json", "--show-keys", "--local", str(stack.stack_file(tmp_path))]
    assert cli.main(args, out=only_north) == 0
    assert sorted(row["key"] for row in json.loads(only_north.getvalue())) == ["inbox/north-1.pdf", "inbox/north-2.pdf"]


def test_when_a_retried_objects_call_passes_the_reconciler_sends_the_accounts_other_blocked_objects_once(
    two_accounts: UploaderStack,
) -> None:

    from docdrop.s3_events import s3_notification
    from docdrop.uploader import Deadline

    stack = two_accounts
    stack.sandbox.set_login_required("clinic-north", True)
    stack.put("first.pdf", pdf_bytes("first"), tags(cobalt_account="north"))
    stack.drain()
    stack.put("second.pdf", pdf_bytes("second"), tags(cobalt_account="north"))
    stack.drain()
    assert [stack.view(n).status for n in ("first.pdf", "second.pdf")] == [Status.BLOCKED] * 2

    stack.sandbox.set_login_required("clinic-north", False)
    stack.tag("first.pdf", tags(cobalt_account="north"))  # a person retries one: its call passes
    stack.drain()
    assert stack.view("first.pdf").status == Status.SUBMITTED
    assert stack.ledger.get_account_link("clinic-north")["status"] == "LINKED"

    def resend(ref, size: int) -> None:
        stack.sqs.send_message(
            QueueUrl=stack.queues.queue_url, MessageBody=s3_notification(ref.bucket, ref.key, ref.version_id, size)
        )

    reconciler = _reconciler(stack, resend=resend)
    assert reconciler.run(Deadline(60)).relinked_resent == 1
    stack.drain()
    assert stack.view("second.pdf").status == Status.SUBMITTED
    assert _reference_of(stack, "second.pdf") == ["clinic-north"]
    assert reconciler.run(Deadline(60)).relinked_resent == 0  # once per re-link


def test_metric_dimensions_are_only_the_service_and_the_account_name(
    two_accounts: UploaderStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = two_accounts
    capsys.readouterr()
    stack.put("metrics-main.pdf", pdf_bytes("metrics main"), tags(cobalt_account="main"))
    stack.put("metrics-north.pdf", pdf_bytes("metrics north"), tags(cobalt_account="north"))
    stack.drain()
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    dimension_sets = [
        frozenset(dims) for d in documents for m in d["_aws"]["CloudWatchMetrics"] for dims in m["Dimensions"]
    ]
    assert set(dimension_sets) == {frozenset({"service"}), frozenset({"service", "account"})}
    per_account = {(d["account"], sum(d.get("DocumentsSubmitted", []))) for d in documents if "account" in d}
    assert per_account == {("main", 1.0), ("north", 1.0)}  # the operator's labels: bounded by the secret's accounts


def test_accounts_alarms_keeps_one_alarm_per_account_named_after_it_in_step_with_the_secret(
    two_accounts: UploaderStack, tmp_path: Path
) -> None:
    import boto3

    stack = two_accounts
    endpoint = stack.module.credentials._client.meta.endpoint_url  # the stack's moto server
    topic = boto3.client("sns", endpoint_url=endpoint, region_name="us-east-1").create_topic(Name="docdrop-alarms")
    stack_file = stack.stack_file(tmp_path)
    info = json.loads(stack_file.read_text())
    stack_file.write_text(json.dumps({**info, "alarm_topic_arn": topic["TopicArn"]}))

    out = io.StringIO()
    assert cli.main(["accounts", "alarms", "--json", "--local", str(stack_file)], out=out) == 0
    assert json.loads(out.getvalue()) == {"alarms": ["DocDrop-blocked-main", "DocDrop-blocked-north"], "deleted": []}
    cloudwatch = boto3.client("cloudwatch", endpoint_url=endpoint, region_name="us-east-1")
    alarm = cloudwatch.describe_alarms(AlarmNames=["DocDrop-blocked-north"])["MetricAlarms"][0]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"service": "uploader", "account": "north"}
    assert alarm["AlarmActions"] == [topic["TopicArn"]] and "docdrop accounts relink north" in alarm["AlarmDescription"]

    fewer = {**ACCOUNTS, "accounts": {"main": ACCOUNTS["accounts"]["main"]}}  # a practice leaves
    secrets = stack.module.credentials._client
    secrets.put_secret_value(SecretId=stack.module.settings.cobalt_credentials_secret, SecretString=json.dumps(fewer))
    out = io.StringIO()
    assert cli.main(["accounts", "alarms", "--json", "--local", str(stack_file)], out=out) == 0
    assert json.loads(out.getvalue()) == {"alarms": ["DocDrop-blocked-main"], "deleted": ["DocDrop-blocked-north"]}
    # moto keeps one CloudWatch per process: leave no alarm for another test's stack (its doctor counts them)
    cloudwatch.delete_alarms(AlarmNames=["DocDrop-blocked-main"])


def test_routing_takes_the_tag_then_the_longest_prefix_then_the_fallback_then_the_only_account() -> None:
    from docdrop.accounts import CobaltAccounts, parse_prefix_map, route

    two = CobaltAccounts.from_secret(ACCOUNTS)
    prefixes = parse_prefix_map("north/=north, north/main-desk/=main, *=main")
    assert route(two, "north", "inbox/main.pdf", "inbox/", prefixes).account.name == "north"  # the tag first
    assert route(two, None, "inbox/north/a.pdf", "inbox/", prefixes).account.name == "north"
    assert route(two, None, "inbox/north/main-desk/a.pdf", "inbox/", prefixes).account.name == "main"  # longest
    assert route(two, None, "inbox/elsewhere/a.pdf", "inbox/", prefixes).account.name == "main"  # the fallback
    assert route(two, None, "inbox/elsewhere/a.pdf", "inbox/", {}).problem.startswith("No Cobalt account named")
    one = CobaltAccounts.from_secret(AUTH)
    assert route(one, None, "inbox/a.pdf", "inbox/", {}).account.name == "default"  # nothing to name


def test_a_lost_webhook_of_one_account_is_recovered_from_that_accounts_event_log(two_accounts: UploaderStack) -> None:
    from datetime import UTC, datetime, timedelta

    from docdrop.cobalt import CobaltClient, EventLogPage
    from docdrop.uploader import Deadline

    from local.cobalt_sandbox import FaultSettings

    stack = two_accounts
    stack.sandbox.set_faults(FaultSettings(webhook_fault_by_filename={"lost-north.pdf": "webhook_never_sent"}))
    stack.put("lost-north.pdf", pdf_bytes("lost north"), tags(cobalt_account="north"))
    stack.drain()
    assert stack.view("lost-north.pdf").status == Status.SUBMITTED
    stack.wait_for_outcome_event(str(stack.view("lost-north.pdf").document_id))

    read_as: list[str | None] = []

    class RecordingCobalt(CobaltClient):
        def webhook_events(self, **kwargs: Any) -> EventLogPage:
            read_as.append(kwargs.get("account"))
            return super().webhook_events(**kwargs)

    class Later:
        def __call__(self) -> datetime:
            return datetime.now(UTC) + timedelta(minutes=20)  # past the outcome grace

    reconciler = _reconciler(stack, RecordingCobalt(stack.sandbox.base_url, lambda refresh: ACCOUNTS), clock=Later())
    report = reconciler.run(Deadline(60))
    assert report.recovered_from_event_log == 1
    assert set(read_as) == {"north"}  # only the account with an open submission, with its own token
    assert stack.ledger.get_object(stack.ref("lost-north.pdf"))["status"] == "UPLOADED"

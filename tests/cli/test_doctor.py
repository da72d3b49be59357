"""`docdrop doctor` on a good local stack, and on one with each fault it checks: it names the fault, says what to do,
and exits 1; once the fault is mended it passes again."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import CliStack, Run


def _doctor(stack: CliStack, state_dir: Path | None = None) -> tuple[Run, dict[str, Any]]:
    import contextlib
    import io

    import docdrop_cli.main as cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["doctor", "--json", "--local", str(state_dir or stack.state_dir)], out=out)
    run = Run(code, out.getvalue(), err.getvalue())
    return run, {c["name"]: c for c in run.json()}


def test_doctor_passes_a_good_stack_and_says_what_it_could_not_check(cli_stack: CliStack) -> None:
    run, checks = _doctor(cli_stack)
    assert run.code == 0, run.out
    assert [name for name, c in checks.items() if c["ok"] is False] == []
    assert checks["alarms reach a person"]["ok"] is None  # the local stack has no alarm topic: said, not failed
    assert all(checks[name]["ok"] for name in checks if name != "alarms reach a person")


def test_doctor_reports_a_new_accounts_concurrency_limit_and_what_it_leaves_for_uploads(cli_stack: CliStack) -> None:
    api = cli_stack.stack.lambda_api
    assert api is not None
    name = "Lambda concurrency for the functions"
    try:
        api.concurrency_limit = 10  # some new accounts start here
        run, checks = _doctor(cli_stack)
        assert checks[name]["ok"] is True
        assert "account limit 10 (10 unreserved): MaxConcurrentUploads up to 7" in checks[name]["detail"]
        assert "Service Quotas" in checks[name]["detail"]
        api.concurrency_limit = 5
        run, checks = _doctor(cli_stack)
        assert run.code == 1 and checks[name]["ok"] is False and "raise the quota" in checks[name]["detail"]
    finally:
        api.concurrency_limit = 1000
    run, checks = _doctor(cli_stack)
    assert checks[name] == {"name": name, "ok": True, "detail": "account limit 1000 (1000 unreserved)"}


@contextmanager
def _secret(stack: CliStack, which: str, value: dict[str, Any]) -> Iterator[None]:
    secrets = stack.client("secretsmanager")
    name = stack.info.secrets[which]
    saved = secrets.get_secret_value(SecretId=name)["SecretString"]
    secrets.put_secret_value(SecretId=name, SecretString=json.dumps(value))
    try:
        yield
    finally:
        secrets.put_secret_value(SecretId=name, SecretString=saved)


def placeholder_credentials(stack: CliStack) -> AbstractContextManager[None]:
    return _secret(
        stack, "cobalt_credentials", dict.fromkeys(("client_id", "client_secret", "access_token"), "REPLACE_ME")
    )


def refused_credentials(stack: CliStack) -> AbstractContextManager[None]:
    value = {"client_id": "ci_test_docdrop", "client_secret": "cs_wrong", "access_token": "at_test_clinic_main"}
    return _secret(stack, "cobalt_credentials", value)


@contextmanager
def webhook_unregistered(stack: CliStack) -> Iterator[None]:
    saved = dict(stack.sandbox.webhooks)
    stack.sandbox.webhooks.clear()
    try:
        yield
    finally:
        stack.sandbox.webhooks.update(saved)


@contextmanager
def old_path_token_still_registered(stack: CliStack) -> Iterator[None]:
    """Deployed with a new path token and the old one beside it, and Cobalt told of both: the rotation's middle."""
    old_token = stack.stack.webhook_adapter.token
    stack.info = stack.stack.deploy_webhook_path(secrets.token_urlsafe(32), previous=old_token)
    stack.sandbox.webhooks["doctor-new-path"] = stack.info.webhook_url
    try:
        yield
    finally:
        del stack.sandbox.webhooks["doctor-new-path"]
        stack.info = stack.stack.deploy_webhook_path(old_token)


@contextmanager
def signing_secret_mismatch(stack: CliStack) -> Iterator[None]:
    secrets = stack.client("secretsmanager")
    current = json.loads(secrets.get_secret_value(SecretId=stack.info.secrets["webhook_signing"])["SecretString"])
    with _secret(stack, "webhook_signing", {**current, "current": "whsec_not_cobalts", "previous": ""}):
        failed_before = sum(1 for d in stack.sandbox.deliveries if d["result"] == "401")
        # moto keeps the secret's change time to the second, and the doctor counts only failures after that second.
        time.sleep(1.1)
        ref = stack.put("doctor/unverifiable.pdf")
        stack.wait_status(ref, "SUBMITTED")
        stack.wait_for(lambda: sum(1 for d in stack.sandbox.deliveries if d["result"] == "401") > failed_before)
        stack.wait_for(lambda: all(e["status"] != "pending" for e in stack.sandbox.events))
        yield


@contextmanager
def notification_removed(stack: CliStack) -> Iterator[None]:
    s3 = stack.client("s3")
    saved = s3.get_bucket_notification_configuration(Bucket=stack.info.bucket)
    saved.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=stack.info.bucket, NotificationConfiguration={})
    try:
        yield
    finally:
        s3.put_bucket_notification_configuration(Bucket=stack.info.bucket, NotificationConfiguration=saved)


@contextmanager
def versioning_suspended(stack: CliStack) -> Iterator[None]:
    s3 = stack.client("s3")
    s3.put_bucket_versioning(Bucket=stack.info.bucket, VersioningConfiguration={"Status": "Suspended"})
    try:
        yield
    finally:
        s3.put_bucket_versioning(Bucket=stack.info.bucket, VersioningConfiguration={"Status": "Enabled"})


@contextmanager
def dead_letters_waiting(stack: CliStack) -> Iterator[None]:
    sqs = stack.client("sqs")
    sqs.send_message(QueueUrl=stack.info.dlq_url, MessageBody='{"Records": []}')
    try:
        yield
    finally:
        sqs.purge_queue(QueueUrl=stack.info.dlq_url)


def _the_trail(stack: CliStack) -> tuple[Any, str]:
    cloudtrail = stack.client("cloudtrail")
    [trail] = cloudtrail.describe_trails()["trailList"]
    return cloudtrail, trail["TrailARN"]


@contextmanager
def trail_stopped(stack: CliStack) -> Iterator[None]:
    cloudtrail, trail = _the_trail(stack)
    cloudtrail.stop_logging(Name=trail)
    try:
        yield
    finally:
        cloudtrail.start_logging(Name=trail)


@contextmanager
def trail_records_only_reads(stack: CliStack) -> Iterator[None]:
    cloudtrail, trail = _the_trail(stack)
    saved = cloudtrail.get_event_selectors(TrailName=trail)["AdvancedEventSelectors"]
    reads = [{**s, "FieldSelectors": [*s["FieldSelectors"], {"Field": "readOnly", "Equals": ["true"]}]} for s in saved]
    cloudtrail.put_event_selectors(TrailName=trail, AdvancedEventSelectors=reads)
    try:
        yield
    finally:
        cloudtrail.put_event_selectors(TrailName=trail, AdvancedEventSelectors=saved)


FAULTS: dict[str, tuple[Callable[[CliStack], AbstractContextManager[None]], str, str]] = {
    "placeholder credentials": (
        placeholder_credentials,
        "Cobalt credentials filled",
        "still the template's placeholder",
    ),
    "credentials Cobalt refuses": (refused_credentials, "Cobalt reachable with them", "refuses these credentials"),
    "webhook not registered": (webhook_unregistered, "webhook URL registered", "run docdrop register-webhook"),
    "old path token still registered": (
        old_path_token_still_registered,
        "webhook URL registered",
        "old path token's URL is registered too: run docdrop rotate-webhook-path",
    ),
    "signing secret mismatch": (
        signing_secret_mismatch,
        "webhook signing secret matches",
        "run docdrop rotate-webhook-secret",
    ),
    "bucket notification removed": (
        notification_removed,
        "bucket notification to the ingest queue",
        "new objects reach nothing",
    ),
    "versioning suspended": (versioning_suspended, "inbox bucket versioning", "Suspended: nothing is sent"),
    "dead letters waiting": (dead_letters_waiting, "dead-letter queue empty", "then docdrop redrive"),
    "access trail stopped": (trail_stopped, "a trail records who reads the documents", "is not logging: start it"),
    "access trail records only reads": (
        trail_records_only_reads,
        "a trail records who reads the documents",
        "AccessTrail=create",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_doctor_names_each_fault_and_what_to_do_then_passes_once_it_is_mended(cli_stack: CliStack, fault: str) -> None:
    breaking, name, advice = FAULTS[fault]
    with breaking(cli_stack):
        run, checks = _doctor(cli_stack)
        assert run.code == 1
        assert checks[name]["ok"] is False and advice in checks[name]["detail"], checks[name]
        failed = [n for n, c in checks.items() if c["ok"] is False]
        assert failed == [name], failed  # one fault, one line
    run, _ = _doctor(cli_stack)
    assert run.code == 0, run.out


def test_doctor_checks_the_alarm_topic_has_a_confirmed_subscriber_and_every_alarm_uses_it(
    cli_stack: CliStack, tmp_path: Path
) -> None:
    sns, cloudwatch = cli_stack.client("sns"), cli_stack.client("cloudwatch")
    topic = sns.create_topic(Name="docdrop-doctor-alarms")["TopicArn"]
    info = json.loads((cli_stack.state_dir / "local-stack.json").read_text())
    (tmp_path / "local-stack.json").write_text(json.dumps({**info, "alarm_topic_arn": topic}))

    _, checks = _doctor(cli_stack, tmp_path)
    assert checks["alarms reach a person"]["ok"] is False
    assert "nobody is subscribed" in checks["alarms reach a person"]["detail"]

    inbox = cli_stack.client("sqs").create_queue(QueueName="docdrop-doctor-inbox")["QueueUrl"]
    inbox_arn = cli_stack.client("sqs").get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn["Attributes"]["QueueArn"])
    alarm = {
        "MetricName": "DocumentsStale",
        "Namespace": "DocDrop",
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    cloudwatch.put_metric_alarm(AlarmName="docdrop-doctor-stale", AlarmActions=[topic], **alarm)
    run, checks = _doctor(cli_stack, tmp_path)
    assert checks["alarms reach a person"]["ok"] is True and run.code == 0

    cloudwatch.put_metric_alarm(AlarmName="docdrop-doctor-silent", AlarmActions=[], **alarm)
    try:
        run, checks = _doctor(cli_stack, tmp_path)
        assert run.code == 1 and checks["alarms reach a person"]["ok"] is False
        assert "docdrop-doctor-silent" in checks["alarms reach a person"]["detail"]
    finally:
        cloudwatch.delete_alarms(AlarmNames=["docdrop-doctor-stale", "docdrop-doctor-silent"])


def test_doctor_fails_a_ledger_without_the_stream_the_outcome_joiner_needs(cli_stack: CliStack, tmp_path: Path) -> None:
    dynamodb = cli_stack.client("dynamodb")
    dynamodb.create_table(
        TableName="docdrop-doctor-no-stream",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    info = json.loads((cli_stack.state_dir / "local-stack.json").read_text())
    (tmp_path / "local-stack.json").write_text(json.dumps({**info, "table": "docdrop-doctor-no-stream"}))
    run, checks = _doctor(cli_stack, tmp_path)
    assert run.code == 1
    assert checks["ledger stream for the outcome joiner"]["ok"] is False
    assert "objects would stay SUBMITTED" in checks["ledger stream for the outcome joiner"]["detail"]


@pytest.mark.parametrize(
    ("selectors", "covered"),
    [
        (
            {
                "EventSelectors": [
                    {"ReadWriteType": "All", "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}
                ]
            },
            True,
        ),
        (
            {
                "EventSelectors": [
                    {
                        "ReadWriteType": "All",
                        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::inbox/"]}],
                    }
                ]
            },
            True,
        ),
        (
            {
                "EventSelectors": [
                    {
                        "ReadWriteType": "WriteOnly",
                        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}],
                    }
                ]
            },
            False,
        ),
        (
            {
                "EventSelectors": [
                    {
                        "ReadWriteType": "All",
                        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::other/"]}],
                    }
                ]
            },
            False,
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {
                        "FieldSelectors": [
                            {"Field": "eventCategory", "Equals": ["Data"]},
                            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                        ]
                    }
                ]
            },
            True,
        ),
        (
            {"AdvancedEventSelectors": [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}]},
            False,
        ),
        ({}, False),
    ],
)
def test_a_trail_covers_the_inbox_only_when_it_records_every_read_and_write_of_its_objects(
    selectors: dict[str, Any], covered: bool
) -> None:
    from docdrop_cli.doctor import _records_objects_of

    assert _records_objects_of(selectors, "inbox") is covered

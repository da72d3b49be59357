"""The limits a deploy, or its first hour, meets on AWS, each stated with its source, held against the template as
CloudFormation deploys it (tests/iam/deployed): moto, DynamoDB Local and cfn-lint check none of them.

The account is a new one: some start with a Lambda concurrency limit of 10, and unreserved concurrency may never drop
below 10, so such an account can reserve nothing at all.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from docdrop.settings import WebhookSettings

from tests.iam.deployed import Deployed, deployed, expand

NEW_ACCOUNT_CONCURRENCY = 10  # https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html
UNRESERVED_MINIMUM = 10  # "Lambda keeps at least 100 [10 on a new account's limit] unreserved" (same page)
LONGEST_STACK_NAME = 128  # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html


def _functions(template: Deployed) -> dict[str, dict[str, Any]]:
    return {f: template.properties(f) for f in template.of_type("AWS::Lambda::Function")}


def test_a_new_account_with_a_concurrency_limit_of_10_can_deploy_the_stack() -> None:
    """Reserved concurrency is subtracted from the account's pool, and the pool's unreserved part may not drop below 10:
    on a limit of 10 any reservation fails the whole deploy. Provisioned concurrency is taken from the same pool."""
    template = deployed()
    reservable = NEW_ACCOUNT_CONCURRENCY - UNRESERVED_MINIMUM
    reserved = {f: p.get("ReservedConcurrentExecutions", 0) for f, p in _functions(template).items()}
    assert sum(reserved.values()) <= reservable, f"reserved concurrency a new account cannot give: {reserved}"
    assert not template.of_type("AWS::Lambda::Version"), "provisioned concurrency needs a version: none on day one"


def test_the_ingest_queue_hides_a_message_for_longer_than_the_uploader_may_hold_it() -> None:
    """Lambda refuses an SQS event source whose queue's visibility timeout is below the function's timeout, and advises
    at least six times the timeout (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html)."""
    template = deployed()
    for mapping in template.of_type("AWS::Lambda::EventSourceMapping"):
        properties = template.properties(mapping)
        source = str(properties["EventSourceArn"])
        if not source.startswith("arn:aws:sqs:"):
            continue
        queue = next(q for q in template.of_type("AWS::SQS::Queue") if template.arn(q) == source)
        function = str(template.resources[mapping]["Properties"]["FunctionName"]["Ref"])
        timeout = int(template.properties(function)["Timeout"])
        visibility = int(template.properties(queue)["VisibilityTimeout"])
        assert visibility >= 6 * timeout, f"{queue}: {visibility} s against {function}'s {timeout} s"
        # SQS event sources: MaximumConcurrency is 2 to 1000 (Lambda API ScalingConfig).
        maximum = template.template["Parameters"]["MaxConcurrentUploads"]
        assert 2 <= maximum["MinValue"] <= maximum["Default"] <= maximum["MaxValue"] <= 1000


def test_the_reconciler_schedule_is_within_eventbridge_schedulers_rates_and_a_pass_ends_before_the_next() -> None:
    """EventBridge Scheduler's rate expressions start at 1 minute (https://docs.aws.amazon.com/scheduler/latest/UserGuide/
    schedule-types.html); a pass must end before the next starts, or the lease turns every other pass away."""
    template = deployed()
    every = template.template["Parameters"]["ReconcileEveryMinutes"]
    assert every["MinValue"] >= 1
    assert int(template.properties("ReconcilerFunction")["Timeout"]) < 60 * every["MinValue"]


def test_each_functions_environment_fits_lambdas_4_kb_with_the_longest_stack_name() -> None:
    """Lambda refuses environment variables over 4 KB in total, keys and values
    (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)."""
    template = _with_stack_name("s" * LONGEST_STACK_NAME)
    for function, properties in _functions(template).items():
        variables = properties.get("Environment", {}).get("Variables", {})
        size = sum(len(k.encode()) + len(str(v).encode()) for k, v in variables.items())
        assert size < 4096 * 3 // 4, f"{function}'s environment is {size} bytes: too near Lambda's 4 KB"


def test_the_webhook_fits_the_http_apis_payload_and_timeout_limits() -> None:
    """An HTTP API integration times out at 30 s and carries at most 10 MB
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html); Cobalt waits 5 s."""
    template = deployed()
    webhook = template.properties("WebhookFunction")
    assert int(webhook["Timeout"]) < 5  # and so within the integration's 30 s
    body = dataclasses.fields(WebhookSettings)
    assert next(int(f.default) for f in body if f.name == "max_body_bytes") <= 10 * 1024 * 1024  # type: ignore[arg-type]


def test_every_name_the_template_sets_fits_its_services_limit_with_the_longest_stack_name() -> None:
    """Names the template builds from the stack name (CloudFormation shortens the ones it makes itself): log groups
    512, KMS aliases 256, dashboards 255, buckets 63, queues 80, functions and roles 64 (each service's quotas page)."""
    limits = {
        "AWS::Logs::LogGroup": 512,
        "AWS::KMS::Alias": 256,
        "AWS::CloudWatch::Dashboard": 255,
        "AWS::CloudWatch::Alarm": 255,
        "AWS::S3::Bucket": 63,
        "AWS::SQS::Queue": 80,
        "AWS::Lambda::Function": 64,
        "AWS::IAM::Role": 64,
        "AWS::IAM::ManagedPolicy": 128,
    }
    properties = {
        "AWS::Logs::LogGroup": "LogGroupName",
        "AWS::KMS::Alias": "AliasName",
        "AWS::CloudWatch::Dashboard": "DashboardName",
        "AWS::CloudWatch::Alarm": "AlarmName",
        "AWS::S3::Bucket": "BucketName",
        "AWS::SQS::Queue": "QueueName",
        "AWS::Lambda::Function": "FunctionName",
        "AWS::IAM::Role": "RoleName",
        "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    }
    template = _with_stack_name("s" * LONGEST_STACK_NAME)
    named = 0
    for kind, limit in limits.items():
        for logical in template.of_type(kind):
            name = template.properties(logical).get(properties[kind])
            if name is None:
                continue  # CloudFormation makes the name, within the limit
            named += 1
            assert len(str(name)) <= limit, f"{logical}'s name is {len(str(name))} characters (limit {limit})"
    assert named >= 6  # the log groups, the alias, the dashboard and the bucket at least


def _with_stack_name(name: str) -> Deployed:
    text = (Path(__file__).resolve().parent.parent.parent / "template.yaml").read_text()
    template = Deployed(expand(text), stack=name)
    json.dumps(template.template)  # resolvable as CloudFormation's JSON
    return template

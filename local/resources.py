"""Local AWS resources made from template.yaml's own definitions: the inbox bucket, the ingest queue and its DLQ,
the ledger table, and the uploader's event source settings. Local and cloud cannot drift: change the template, and
the local stack and the tests follow."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from docdrop.retry_schedule import steps_text

from local.stream_source import StreamSourceSettings
from local.template import (
    function_timeout,
    load_template,
    parameter_default,
    resolved,
    resource,
    table_create_args,
    time_to_live_attribute,
)


@dataclasses.dataclass(frozen=True)
class EventSourceSettings:
    """The uploader's SQS event source mapping and function timeout, as the template declares them."""

    batch_size: int
    batching_window_seconds: float
    function_timeout_seconds: float
    report_batch_item_failures: bool
    maximum_concurrency: int = 1  # invocations at once (ScalingConfig.MaximumConcurrency)


@dataclasses.dataclass(frozen=True)
class IngestQueues:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    visibility_timeout_seconds: int
    max_receive_count: int


def uploader_event_source(template: dict[str, Any] | None = None) -> EventSourceSettings:
    template = template or load_template()
    ingest = resource(template, "UploaderFunction")["Properties"]["Events"]["Ingest"]["Properties"]
    scaling = ingest.get("ScalingConfig") or {}
    return EventSourceSettings(
        batch_size=int(ingest.get("BatchSize", 10)),
        batching_window_seconds=float(ingest.get("MaximumBatchingWindowInSeconds", 0)),
        function_timeout_seconds=function_timeout(template, "UploaderFunction"),
        report_batch_item_failures="ReportBatchItemFailures" in (ingest.get("FunctionResponseTypes") or []),
        maximum_concurrency=int(resolved(template, scaling.get("MaximumConcurrency", 1000))),
    )


def uploader_retry_environment(
    queues: IngestQueues, time_scale: float = 1.0, template: dict[str, Any] | None = None
) -> dict[str, str]:
    """The uploader's retry settings as the template gives them, the steps divided by `time_scale` (60: an hour is a
    minute), so that a day of retries can be watched locally."""
    template = template or load_template()
    variables = resource(template, "UploaderFunction")["Properties"]["Environment"]["Variables"]
    steps = [float(step) / time_scale for step in str(variables["RETRY_STEPS_SECONDS"]).split(",")]
    breaker = {
        name: f"{float(variables[name]) / time_scale:g}"
        for name in ("BREAKER_WINDOW_SECONDS", "BREAKER_COOL_DOWN_SECONDS")
    }
    return {
        **breaker,
        "BREAKER_FAILURES": str(variables["BREAKER_FAILURES"]),
        "RETRY_STEPS_SECONDS": steps_text(steps),
        "INGEST_QUEUE_URL": queues.queue_url,
        "MAX_RECEIVE_COUNT": str(queues.max_receive_count),
    }


def outcome_joiner_stream_source(template: dict[str, Any] | None = None) -> StreamSourceSettings:
    """The outcome joiner's DynamoDB stream event: batch size, retries, filter criteria, partial failures."""
    template = template or load_template()
    stream = resource(template, "OutcomeJoinerFunction")["Properties"]["Events"]["LedgerStream"]["Properties"]
    filters = (stream.get("FilterCriteria") or {}).get("Filters") or []
    return StreamSourceSettings(
        batch_size=int(stream.get("BatchSize", 100)),
        maximum_retry_attempts=int(stream.get("MaximumRetryAttempts", 10)),
        filter_patterns=tuple(json.loads(f["Pattern"]) for f in filters),
        function_timeout_seconds=function_timeout(template, "OutcomeJoinerFunction"),
        report_batch_item_failures="ReportBatchItemFailures" in (stream.get("FunctionResponseTypes") or []),
    )


@dataclasses.dataclass(frozen=True)
class ReconcilerSchedule:
    """The reconciler's schedule, deadlines and timeout as the template declares them (its parameters' defaults)."""

    every_seconds: float
    outcome_grace_seconds: float
    stale_after_seconds: float
    tag_wait_seconds: float
    function_timeout_seconds: float
    environment: dict[str, Any]


def reconciler_schedule(template: dict[str, Any] | None = None) -> ReconcilerSchedule:
    template = template or load_template()
    props = resource(template, "ReconcilerFunction")["Properties"]
    return ReconcilerSchedule(
        every_seconds=float(parameter_default(template, "ReconcileEveryMinutes")) * 60,
        outcome_grace_seconds=float(parameter_default(template, "OutcomeGraceMinutes")) * 60,
        stale_after_seconds=float(parameter_default(template, "StaleAfterHours")) * 3600,
        tag_wait_seconds=float(parameter_default(template, "TagWaitHours")) * 3600,
        function_timeout_seconds=function_timeout(template, "ReconcilerFunction"),
        environment=dict(props["Environment"]["Variables"]),
    )


def _queue_attributes(props: dict[str, Any]) -> dict[str, str]:
    """SQS attributes from an AWS::SQS::Queue's properties (KMS settings are account features left out locally)."""
    names = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds")
    return {name: str(props[name]) for name in names if name in props}


def create_ingest_queues(sqs: Any, name_prefix: str, template: dict[str, Any] | None = None) -> IngestQueues:
    """IngestQueue and IngestDeadLetterQueue with the template's attributes and redrive policy."""
    template = template or load_template()
    dlq_props = resource(template, "IngestDeadLetterQueue")["Properties"]
    dlq_url = sqs.create_queue(QueueName=f"{name_prefix}-ingest-dlq", Attributes=_queue_attributes(dlq_props))[
        "QueueUrl"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    props = resource(template, "IngestQueue")["Properties"]
    attributes = _queue_attributes(props)
    redrive = props.get("RedrivePolicy") or {}
    max_receive = int(resolved(template, redrive.get("maxReceiveCount", 0)))
    if redrive:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive})
    queue_url = sqs.create_queue(QueueName=f"{name_prefix}-ingest", Attributes=attributes)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return IngestQueues(
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        visibility_timeout_seconds=int(props.get("VisibilityTimeout", 30)),
        max_receive_count=max_receive,
    )


def create_inbox_bucket(
    s3: Any, bucket: str, prefix: str, queue_arn: str, template: dict[str, Any] | None = None
) -> None:
    """InboxBucket: versioning and its queue notifications (events and key filters) as the template declares them."""
    template = template or load_template()
    props = resource(template, "InboxBucket")["Properties"]
    s3.create_bucket(Bucket=bucket)
    versioning = (props.get("VersioningConfiguration") or {}).get("Status")
    if versioning:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    configurations = []
    for entry in (props.get("NotificationConfiguration") or {}).get("QueueConfigurations", []):
        rules = [
            {"Name": rule["Name"], "Value": prefix if isinstance(rule["Value"], dict) else rule["Value"]}
            for rule in entry.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        ]
        configuration: dict[str, Any] = {"QueueArn": queue_arn, "Events": [entry["Event"]]}
        if rules:
            configuration["Filter"] = {"Key": {"FilterRules": rules}}
        configurations.append(configuration)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configurations}
    )


def create_access_trail(
    s3: Any, cloudtrail: Any, name: str, inbox: str, table_arn: str, template: dict[str, Any] | None = None
) -> str:
    """AccessTrailOfTheStack (AccessTrail: create): a bucket of its own, and the trail with the template's event
    selectors, the inbox's objects and the ledger's items named locally. Returns the trail's name."""
    template = template or load_template()
    props = resource(template, "AccessTrailOfTheStack")["Properties"]
    local = {"${InboxBucket.Arn}/": f"arn:aws:s3:::{inbox}/"}

    def named(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
            return local[value["Fn::Sub"]]
        if isinstance(value, dict) and value == {"Fn::GetAtt": ["LedgerTable", "Arn"]}:
            return table_arn
        if isinstance(value, dict):
            return {k: named(v) for k, v in value.items()}
        if isinstance(value, list):
            return [named(v) for v in value]
        return value

    bucket, trail = f"{name}-access-trail", f"{name}-access"
    s3.create_bucket(Bucket=bucket)
    cloudtrail.create_trail(
        Name=trail, S3BucketName=bucket, EnableLogFileValidation=bool(props.get("EnableLogFileValidation"))
    )
    cloudtrail.put_event_selectors(TrailName=trail, AdvancedEventSelectors=named(props["AdvancedEventSelectors"]))
    if props.get("IsLogging"):
        cloudtrail.start_logging(Name=trail)
    return trail


def create_ledger_table(dynamodb: Any, name: str, template: dict[str, Any] | None = None) -> str:
    """LedgerTable with its keys, indexes and time-to-live attribute."""
    template = template or load_template()
    dynamodb.create_table(**table_create_args(template, "LedgerTable", name))  # with its stream, if declared
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    ttl = time_to_live_attribute(template, "LedgerTable")
    if ttl:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})
    return name


def create_fingerprint_key(secrets_client: Any, name: str) -> str:
    """FingerprintKeySecret as the template generates it: a JSON {"key": <64 random characters>}; returns its name."""
    import secrets

    secrets_client.create_secret(Name=name, SecretString=json.dumps({"key": secrets.token_hex(32)}))
    return name


@dataclasses.dataclass(frozen=True)
class WebhookStage:
    """The webhook API as the template deploys it: each route's throttle, the access-log format, and the routes' keys
    (`POST /webhooks/cobalt/` followed by the path token)."""

    rate_per_second: float
    burst: int
    access_log_format: str
    method: str
    path_before_token: str


def webhook_stage(template: dict[str, Any] | None = None) -> WebhookStage:
    template = template or load_template()
    stage = resource(template, "WebhookApiStage")["Properties"]
    throttle = stage["DefaultRouteSettings"]
    route_key = resource(template, "WebhookRoute")["Properties"]["RouteKey"]
    text = route_key["Fn::Sub"] if isinstance(route_key, dict) else str(route_key)
    method, _, path = text.partition(" ")
    before, marker, _ = path.partition("${WebhookPathToken}")
    if not marker:
        raise ValueError("template.yaml: WebhookRoute's RouteKey has no ${WebhookPathToken}")
    return WebhookStage(
        rate_per_second=float(throttle["ThrottlingRateLimit"]),
        burst=int(throttle["ThrottlingBurstLimit"]),
        access_log_format=str(stage["AccessLogSettings"]["Format"]),
        method=method,
        path_before_token=before,
    )

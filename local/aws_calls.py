"""Every AWS call DocDrop's own code makes, recorded for tests/iam, which checks each one against the policies the
template deploys. Local only: nothing here ships, and nothing changes a call.

`record(path)` wraps botocore's one entry point for API calls in this process. Outside a worker, a call is recorded
only when shipped code made it: the frame that called the AWS SDK (past a test's wrapper that declares
AWS_CALLS_FORWARDER) is in layers/docdrop, functions/ or cli/docdrop_cli (a test's or the local stack's own calls are
not DocDrop's, even when shipped code called the test back). Whose call it is:
- in a local stack's worker (local.worker), the worker's function, for every call (a worker runs nothing else);
- elsewhere, the outermost shipped frame: functions/<name>/app.py or the domain module a handler hands its work to
  (docdrop.uploader, .webhook, .outcomes, .reconciler), or the operator CLI's command ("operator:retry"); a call
  whose outermost shipped frame is another domain module (a ledger test's) is nobody's, and left out.

Each distinct call is one JSON line: function, service, operation, and the request values IAM reads: the table, index
and partition key's kind (never the key itself), the bucket and the key's folder (never the file's name: it may carry
PHI), the queue, secret, function, log group, metric namespace, and for a transaction or batch, each item's operation
and table. The resource's ARN is derived from these by tests/iam, which also knows the template's names.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import botocore.client

ENVIRONMENT = "DOCDROP_AWS_CALLS"  # the file a worker records into (set by the test session, inherited by workers)

ROOT = Path(__file__).resolve().parent.parent
_DOMAIN = str(ROOT / "layers" / "docdrop" / "docdrop") + os.sep
_FUNCTIONS = str(ROOT / "functions") + os.sep
_CLI = str(ROOT / "cli" / "docdrop_cli") + os.sep
# The domain module each function's handler hands its work to (a test may drive it directly, or a thread of it runs).
# Keyed by the domain's top-level module or package (`docdrop.uploader` is a package of modules).
DOMAIN_ENTRIES = {
    "uploader": "UploaderFunction",
    "webhook": "WebhookFunction",
    "outcomes": "OutcomeJoinerFunction",
    "reconciler": "ReconcilerFunction",
}
FUNCTION_FOLDERS = {
    "uploader": "UploaderFunction",
    "webhook": "WebhookFunction",
    "outcome_joiner": "OutcomeJoinerFunction",
    "reconciler": "ReconcilerFunction",
}
OPERATOR = "operator"
SDK = ("botocore", "boto3", "s3transfer")
FORWARDER = "AWS_CALLS_FORWARDER"  # a test module that only passes shipped code's calls on (tests/model/world.py)

_lock = threading.Lock()
_seen: set[str] = set()
_state: dict[str, Any] = {}


def record(path: Path, function: str | None = None) -> None:
    """Record this process's calls into `path` (appended); with `function`, every shipped call is that function's."""
    with _lock:
        _state.update(path=path, function=function)
        if "original" in _state:
            return
        original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        _state["original"] = original

    def recorded(self: Any, operation_name: str, api_params: Mapping[str, Any]) -> Any:
        try:
            _note(self, operation_name, api_params)
        except Exception as exc:  # a recorder that breaks must fail the run loudly, never change what the code does
            _state["error"] = repr(exc)
        return original(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = recorded  # type: ignore[attr-defined]


def record_from_environment(function: str) -> None:
    """In a worker: record when the test session asked for it (DOCDROP_AWS_CALLS)."""
    path = os.environ.get(ENVIRONMENT)
    if path:
        record(Path(path), FUNCTION_FOLDERS.get(function, function))


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def errors() -> str | None:
    error: str | None = _state.get("error")
    return error


def whose(frame: FrameType | None) -> str | None:
    """The function a call belongs to, from the calling thread's stack (see the module docstring); None: nobody's."""
    outermost: str | None = None
    caller: str | None = None  # the first frame outside the AWS SDK: the code that made the call
    while frame is not None:
        filename = frame.f_code.co_filename
        forwards = frame.f_globals.get(FORWARDER) or any(f"{os.sep}{sdk}{os.sep}" in filename for sdk in SDK)
        if caller is None and not forwards:
            caller = filename
            if not filename.startswith((_DOMAIN, _FUNCTIONS, _CLI)):
                return None  # a test's or the local stack's own call, even when shipped code called the test back
        if filename.startswith(_FUNCTIONS):
            folder = filename[len(_FUNCTIONS) :].split(os.sep)[0]
            outermost = FUNCTION_FOLDERS.get(folder, folder)
        elif filename.startswith(_CLI):
            outermost = _command(frame) or outermost or OPERATOR
        elif filename.startswith(_DOMAIN):
            outermost = DOMAIN_ENTRIES.get(filename[len(_DOMAIN) :].split(os.sep)[0].removesuffix(".py"), "")
        frame = frame.f_back
    return outermost or None


def _command(frame: FrameType) -> str | None:
    """In the CLI's `main`: the command it runs ("operator:status", "operator:accounts relink"), which names the
    operator policy it needs (tests/iam)."""
    if frame.f_code.co_name != "main" or not frame.f_code.co_filename.endswith("main.py"):
        return None
    args = frame.f_locals.get("args")
    command = getattr(args, "command", None)
    if command is None:
        return None
    action = getattr(args, "action", None) if command == "accounts" else None
    return f"{OPERATOR}:{command}" + (f" {action}" if action and action != "list" else "")


def _note(client: Any, operation: str, params: Mapping[str, Any]) -> None:
    # A worker runs its function's code only (from the build output: its frames are not the source tree's).
    function = _state.get("function") or whose(sys._getframe(2))
    if function is None:
        return
    entry = {
        "function": function,
        "service": client.meta.service_model.service_name,
        "signing": client.meta.service_model.signing_name,
        "operation": operation,
        **request_values(operation, params),
    }
    line = json.dumps(entry, sort_keys=True)
    with _lock:
        if line in _seen:
            return
        _seen.add(line)
        with Path(_state["path"]).open("a") as out:  # one short line per distinct call: appends do not interleave
            out.write(line + "\n")


def _kind(key: Mapping[str, Any] | None) -> str | None:
    """The partition key's kind (OBJ, CDOC, FP...), never its value."""
    if not key or "pk" not in key:
        return None
    return str(next(iter(key["pk"].values()))).split("#")[0]


def _queried_kind(params: Mapping[str, Any]) -> str | None:
    """The kind of the partition key a Query on the table names (`pk = :v` in its key condition), never its value."""
    names = {"pk"} | {k for k, v in (params.get("ExpressionAttributeNames") or {}).items() if v == "pk"}
    values = params.get("ExpressionAttributeValues") or {}
    for name, placeholder in re.findall(r"(#?\w+)\s*=\s*(:\w+)", str(params.get("KeyConditionExpression") or "")):
        if name in names and placeholder in values:
            return _kind({"pk": values[placeholder]})
    return None


def _folder(key: str | None) -> str | None:
    return None if key is None else key.rsplit("/", 1)[0] + "/" if "/" in key else ""


def request_values(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("TableName", "IndexName", "Bucket", "QueueUrl", "QueueName", "SecretId", "FunctionName", "Namespace"):
        if name in params:
            values[name] = params[name]
    for name in ("logGroupName", "logGroupIdentifier", "KeyId", "StreamArn", "TopicArn", "ResourceArn", "StackName"):
        if name in params:
            values[name] = params[name]
    for name in ("SourceArn", "DestinationArn", "AlarmName", "AlarmNames", "AlarmNamePrefix", "TrailName"):
        if name in params:
            values[name] = params[name]
    if operation == "GetTrailStatus":
        values["TrailName"] = params.get("Name")
    if "Key" in params:
        values["Key"] = _folder(params["Key"]) if isinstance(params["Key"], str) else None
        values["pk"] = _kind(params["Key"]) if isinstance(params["Key"], Mapping) else None
    if "Item" in params:
        values["pk"] = _kind(params["Item"])
    if "Prefix" in params:
        values["Prefix"] = _folder(params["Prefix"] + "x")
    if params.get("VersionId"):
        values["VersionId"] = True
    if operation == "Query" and not params.get("IndexName"):
        values["pk"] = _queried_kind(params)
    if operation == "TransactWriteItems":
        values["items"] = sorted(
            {
                f"{kind}:{request['TableName']}:{_kind(request.get('Key') or request.get('Item')) or ''}"
                for item in params["TransactItems"]
                for kind, request in item.items()
            }
        )
    if operation in ("BatchGetItem", "BatchWriteItem"):
        values["tables"] = sorted(params["RequestItems"])
    return values

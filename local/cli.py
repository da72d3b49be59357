"""`docdrop`: the operator's command line, against the local stack or a deployed stack alike.

    docdrop status [--status S]... [--json] [--limit N]           recent objects, newest first
    docdrop status --key inbox/path/file.pdf [--bucket B]         every version of one key
    docdrop status --document-id 9988776655443322                 one Cobalt document
    docdrop register-webhook --url https://.../webhooks/cobalt    POST /v1/webhook, secret stored in Secrets Manager
    docdrop reconcile [--json]                                    one reconciler pass now, and what it did
    docdrop review [--json] [--show-mrn]                          open reviews and the documents that fit them
    docdrop resolve OBJECT_ID --filed DOC | --not-filed --resend | --dismiss --reason TEXT   a person's decision
    docdrop resolve --resend --key inbox/a.pdf [--version V]      send a DUPLICATE once after all
    docdrop doctor                                                bucket versioning, ledger stream: ok or FAIL

Where it looks: `--stack NAME` (a deployed CloudFormation stack's outputs), `--table NAME` (with the usual AWS
configuration), or else the local stack's `.docdrop/local-stack.json` while `make demo ARGS=--keep-running` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote_plus

import boto3
from docdrop.cobalt import CobaltClient
from docdrop.ledger import DocumentLedger, DocumentView, ObjectRef, Status
from docdrop.webhook import PREVIOUS_SECRET_LIFETIME

DEFAULT_STACK_FILE = Path(".docdrop/local-stack.json")
LOCAL_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto accepts any keys


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the ledger (and the inbox bucket, the secrets) are, and how to reach them."""

    table: str
    bucket: str | None
    region: str | None
    dynamodb_endpoint: str | None = None
    aws_endpoint: str | None = None
    credentials_secret: str | None = None
    signing_secret: str | None = None
    cobalt_base_url: str | None = None
    reconciler_function: str | None = None
    queue_url: str | None = None
    function_environment: dict[str, str] | None = None  # the local stack's: its functions run in this process
    local: bool = False

    def client(self, service: str) -> Any:
        endpoint = self.dynamodb_endpoint if service == "dynamodb" else self.aws_endpoint
        kwargs: dict[str, Any] = {"region_name": self.region} if self.region else {}
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if self.local:  # the local stack accepts any credentials; never send a real account's
            kwargs.update(LOCAL_KEYS)
        factory: Any = boto3.client  # one call for every service: boto3's per-service overloads do not fit
        return factory(service, **kwargs)


def resolve_target(args: argparse.Namespace) -> Target:
    if args.stack:
        cloudformation = boto3.client("cloudformation", **({"region_name": args.region} if args.region else {}))
        stack = cloudformation.describe_stacks(StackName=args.stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return Target(
            table=outputs["LedgerTableName"],
            bucket=args.bucket or outputs.get("InboxBucketName"),
            region=args.region,
            credentials_secret=outputs.get("CobaltCredentialsSecretArn"),
            signing_secret=outputs.get("WebhookSigningSecretArn"),
            reconciler_function=outputs.get("ReconcilerFunctionName"),
            queue_url=outputs.get("IngestQueueUrl"),
        )
    if args.table:
        return Target(table=args.table, bucket=args.bucket, region=args.region)
    if args.stack_file.exists():
        info = json.loads(args.stack_file.read_text(encoding="utf-8"))
        return Target(
            table=info["table"],
            bucket=args.bucket or info["bucket"],
            region=info.get("region", "us-east-1"),
            dynamodb_endpoint=info["dynamodb_endpoint_url"],
            aws_endpoint=info["aws_endpoint_url"],
            credentials_secret=info["secrets"]["cobalt_credentials"],
            signing_secret=info["secrets"]["webhook_signing"],
            cobalt_base_url=info.get("cobalt_base_url"),
            function_environment=info.get("function_environment"),
            queue_url=info.get("queue_url"),
            local=True,
        )
    if os.environ.get("LEDGER_TABLE"):
        return Target(table=os.environ["LEDGER_TABLE"], bucket=args.bucket, region=args.region)
    raise SystemExit(
        "docdrop: no stack to read. Give --stack NAME or --table NAME, or start the local stack "
        f"(make demo ARGS=--keep-running), which writes {args.stack_file}."
    )


def _age(view: DocumentView, now: datetime) -> float | None:
    moment = view.updated_at or view.created_at
    if not moment:
        return None
    return max(0.0, (now - datetime.fromisoformat(moment)).total_seconds())


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def recent(ledger: DocumentLedger, statuses: Sequence[Status], limit: int) -> list[DocumentView]:
    """The most recently changed object versions in `statuses`, newest first."""
    views: dict[tuple[str | None, str | None], DocumentView] = {}
    for status in statuses:
        for view in ledger.list_by_status(status, limit=limit, newest_first=True):
            views[(view.object_id, view.document_id)] = view
    return sorted(views.values(), key=lambda v: v.updated_at or "", reverse=True)[:limit]


def versions_of(target: Target, key: str) -> list[ObjectRef]:
    if not target.bucket:
        raise SystemExit("docdrop: --key needs the inbox bucket (--bucket, or a stack that names it)")
    s3 = target.client("s3")
    refs: list[ObjectRef] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=target.bucket, Prefix=key):
        refs += [ObjectRef(target.bucket, key, v["VersionId"]) for v in page.get("Versions", []) if v["Key"] == key]
    return refs


def shorten(text: str | None, limit: int) -> str:
    """One line of at most `limit` characters, `-` for nothing."""
    text = (text or "-").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _print_views(views: list[DocumentView], as_json: bool, out: TextIO) -> None:
    now = datetime.now(UTC)
    if as_json:
        rows = [{**dataclasses.asdict(v), "age_seconds": _age(v, now)} for v in views]
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
        return
    table = [("object", "status", "reason", "document id", "age")]
    for view in views:
        table.append(
            (
                view.key or f"(object {view.object_id})",
                view.status,
                shorten(view.reason, 70),
                view.document_id or "-",
                _human(_age(view, now)),
            )
        )
    out.write(format_table(table) + "\n")


def status_command(args: argparse.Namespace, out: TextIO) -> int:
    target = resolve_target(args)
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    if args.document_id:
        found = ledger.lookup_document(args.document_id)
        views = [found] if found else []
    elif args.key:
        views = [v for v in (ledger.lookup(ref) for ref in versions_of(target, args.key)) if v is not None]
    else:
        statuses = [Status(s) for s in args.status] if args.status else list(Status)
        views = recent(ledger, statuses, args.limit)
    _print_views(views, args.json, out)
    if not views and (args.document_id or args.key):
        print("docdrop: nothing recorded for that " + ("document id" if args.document_id else "key"), file=sys.stderr)
        return 1
    return 0


def register_webhook_command(args: argparse.Namespace, out: TextIO) -> int:
    """The production set-up step: register the webhook URL with Cobalt, store the signing secret it answers with."""
    target = resolve_target(args)
    if not target.credentials_secret or not target.signing_secret:
        raise SystemExit("docdrop: register-webhook needs --stack NAME (or the local stack) to find the secrets")
    secrets = target.client("secretsmanager")
    credentials = json.loads(secrets.get_secret_value(SecretId=target.credentials_secret)["SecretString"])
    base_url = args.cobalt_url or target.cobalt_base_url or "https://api.usecobalt.com/v1"
    registration = CobaltClient(base_url, lambda refresh: credentials).register_webhook(args.url)
    previous = json.loads(secrets.get_secret_value(SecretId=target.signing_secret)["SecretString"]).get("current")
    document = {"current": registration.secret, "previous": "" if previous in (None, "REPLACE_ME") else previous}
    if document["previous"]:  # Cobalt honours the old secret for 24 hours after a rotation; so does DocDrop
        document["previous_expires_at"] = (datetime.now(UTC) + PREVIOUS_SECRET_LIFETIME).isoformat(timespec="seconds")
    secrets.put_secret_value(SecretId=target.signing_secret, SecretString=json.dumps(document))
    out.write(f"Registered the webhook with Cobalt (id {registration.webhook_id or 'not given'}); secret stored.\n")
    return 0


def reconcile_command(args: argparse.Namespace, out: TextIO) -> int:
    """One reconciler pass: the deployed function invoked (--stack), or the same function run on the local stack."""
    target = resolve_target(args)
    if target.reconciler_function:
        answer = target.client("lambda").invoke(FunctionName=target.reconciler_function, Payload=b"{}")
        report = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError"):
            raise SystemExit(f"docdrop: the reconciler failed: {report.get('errorType', 'unknown error')}")
    elif target.function_environment:
        report = _reconcile_locally(target.function_environment)
    else:
        raise SystemExit("docdrop: reconcile needs --stack NAME, or the local stack (make demo ARGS=--keep-running)")
    if args.json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(_describe_pass(report) + "\n")
    return 0 if report.get("ran", False) else 3


def _reconcile_locally(environment: dict[str, str]) -> dict[str, Any]:
    from local.lambda_runtime import LocalLambdaContext, load_handler_module
    from local.resources import reconciler_schedule

    saved = {k: os.environ.get(k) for k in environment}
    os.environ.update(environment)
    try:
        module = load_handler_module("reconciler")
        result: dict[str, Any] = module.handler(
            {"source": "docdrop.cli"}, LocalLambdaContext("reconciler", reconciler_schedule().function_timeout_seconds)
        )
        return result
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _describe_pass(report: dict[str, Any]) -> str:
    if not report.get("ran"):
        return "Another reconciler pass is running; nothing was done."
    done = [
        f"{report.get(key, 0)} {label}"
        for key, label in (
            ("recovered_from_event_log", "recovered from Cobalt's event log"),
            ("joined_from_ledger", "joined to an outcome already recorded"),
            ("stale", "marked STALE"),
            ("tag_waits_expired", "REJECTED at the tag deadline"),
            ("interrupted", "interrupted uploads marked NEEDS_REVIEW"),
            ("foreign", "outcomes of documents DocDrop never sent set aside"),
        )
    ]
    still = ", ".join(f"{status} {n}" for status, n in sorted(report.get("open_objects", {}).items()) if n) or "none"
    lines = [
        "Reconciler pass "
        + ("complete" if report.get("complete") else "stopped at its time budget (resumes next pass)"),
        "  " + "; ".join(done),
        f"  event log pages read: {report.get('event_log_pages', 0)}"
        + ("; Cobalt's event log was unavailable" if report.get("event_log_unavailable") else ""),
        f"  dead-lettered PENDING_RETRY: {report.get('dead_lettered', 0)}",
        f"  still open: {still}",
    ]
    return "\n".join(lines)


def s3_notification(bucket: str, key: str, version_id: str, size: int, event: str = "ObjectCreated:Put") -> str:
    """An S3 event notification body as S3 sends it (URL-encoded key, version id, size)."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "versionId": version_id},
        },
    }
    return json.dumps({"Records": [record]})


def _decider(args: argparse.Namespace) -> str:
    import getpass

    return str(args.by or getpass.getuser())


def _find_decided(args: argparse.Namespace, ledger: DocumentLedger, target: Target, wanted: set[str]) -> dict[str, Any]:
    """The one object version the decision is about: by object id, or by key (and version) in one of `wanted`."""
    if args.object:
        item = ledger.get_object_by_id(args.object)
        if item is None or item.get("status") not in wanted:
            raise SystemExit(f"docdrop: no object {args.object} in {' or '.join(sorted(wanted))}")
        return item
    if not args.key:
        raise SystemExit("docdrop: name the object: its id (from docdrop review), or --key [--version]")
    refs = [r for r in versions_of(target, args.key) if not args.version or r.version_id == args.version]
    items = [i for i in (ledger.get_object(r) for r in refs) if i and i.get("status") in wanted]
    if len(items) != 1:
        hint = "; name one with --version" if items else ""
        raise SystemExit(f"docdrop: {len(items)} versions of that key in {' or '.join(sorted(wanted))}{hint}")
    return items[0]


def resolve_command(args: argparse.Namespace, out: TextIO) -> int:
    """One person's decision on a NEEDS_REVIEW (or DUPLICATE) object, recorded with who, when and why.

    Exit codes: 0 done; 1 someone else decided first (or the document is another object's); 2 usage.
    """
    target = resolve_target(args)
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    who, why = _decider(args), args.reason or "no reason given"
    if args.filed:
        item = _find_decided(args, ledger, target, {Status.NEEDS_REVIEW.value})
        document = ledger.get_document(args.filed) or {"document_id": args.filed}
        reason = f"Filed as Cobalt document {args.filed}: decided by {who} ({why})"
        if not ledger.link_review(item, document, reason, decided_by=who):
            out.write("Not recorded: someone else decided first, or that document belongs to another object.\n")
            return 1
        out.write(f"Recorded: object {item['object_id']} is Cobalt document {args.filed}.\n")
        return 0
    if args.dismiss:
        if not args.reason:
            raise SystemExit("docdrop: --dismiss needs --reason TEXT")
        item = _find_decided(args, ledger, target, {Status.NEEDS_REVIEW.value})
        if not ledger.dismiss_review(item, f"Dismissed by {who}: {why}", decided_by=who):
            out.write("Not recorded: someone else decided first.\n")
            return 1
        out.write(f"Recorded: object {item['object_id']} is DISMISSED; nothing is sent.\n")
        return 0
    if args.not_filed and not args.resend:
        raise SystemExit("docdrop: --not-filed takes --resend (send it once more) or, instead, use --dismiss")
    if not args.resend:
        raise SystemExit("docdrop: choose --filed DOCUMENT_ID, --not-filed --resend, --resend or --dismiss --reason")
    if not target.queue_url:
        raise SystemExit("docdrop: a resend needs --stack NAME (or the local stack) to find the ingest queue")
    wanted = {Status.NEEDS_REVIEW.value} if args.not_filed else {Status.DUPLICATE.value, Status.NEEDS_REVIEW.value}
    item = _find_decided(args, ledger, target, wanted)
    ref = ledger.item_ref(item)
    reason = f"Resend approved by {who} ({why}); it is sent once"
    if not ledger.approve_resend(ref, reason, decided_by=who, status=Status(item["status"])):
        out.write("Not recorded: someone else decided first.\n")
        return 1
    head = target.client("s3").head_object(Bucket=ref.bucket, Key=ref.key, VersionId=ref.version_id)
    body = s3_notification(ref.bucket, ref.key, ref.version_id, int(head["ContentLength"]))
    target.client("sqs").send_message(QueueUrl=target.queue_url, MessageBody=body)
    out.write(f"Approved; version {ref.version_id} is queued to be sent once.\n")
    return 0


def review_command(args: argparse.Namespace, out: TextIO) -> int:
    """Open reviews, newest first, each with the Cobalt documents that fit its evidence."""
    from docdrop.reviews import candidates_for

    target = resolve_target(args)
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    reviews = list(ledger.open_items(Status.NEEDS_REVIEW, newest_first=True, limit=args.limit))
    documents = ledger.unjoined_documents(before=datetime.now(UTC))
    fits = {str(c.review["object_id"]): c for c in candidates_for(reviews, documents)}
    rows = []
    for review in reviews:
        found = fits.get(str(review["object_id"]))
        rows.append(
            {
                "object_id": review["object_id"],
                "key": review.get("key"),
                "version_id": review.get("version_id"),
                "mrn": _mrn(target, review, args.show_mrn),
                "attempt_sent_at": review.get("attempt_sent_at"),
                "what_went_wrong": review.get("reason"),
                "candidates": [
                    {"document_id": d["document_id"], "outcome": d.get("outcome"), "created": d.get("outcome_created")}
                    for d in (found.documents if found else ())
                ],
                "why_not_automatic": (found.why_not if found else "no evidence kept for this attempt")
                if not review.get("resend_approved")
                else "a resend is approved and queued",
            }
        )
    if args.json:
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
        return 0
    table = [("object id", "key", "MRN", "sent", "what went wrong", "candidates")]
    for row in rows:
        candidates = ", ".join(f"{c['document_id']} ({c['outcome']})" for c in row["candidates"]) or "none"
        table.append(
            (
                str(row["object_id"]),
                shorten(str(row["key"]), 40),
                str(row["mrn"]),
                str(row["attempt_sent_at"] or "-")[:19],
                shorten(str(row["what_went_wrong"]), 50),
                candidates,
            )
        )
    out.write(format_table(table) + "\n")
    out.write(
        "Decide with: docdrop resolve OBJECT_ID --filed DOCUMENT_ID | --not-filed --resend | --dismiss --reason TEXT\n"
    )
    return 0


def _mrn(target: Target, review: Mapping[str, Any], show: bool) -> str:
    """The object's MRN from its own tags (the ledger never holds it), masked unless asked for."""
    from docdrop.contract import normalise_key

    if not target.bucket and not review.get("bucket"):
        return "-"
    try:
        tags = target.client("s3").get_object_tagging(
            Bucket=review["bucket"], Key=review["key"], VersionId=review["version_id"]
        )["TagSet"]
    except Exception:  # no access, or gone: the review stands without it
        return "?"
    mrn = next((t["Value"] for t in tags if normalise_key(t["Key"]) == "patient_mrn"), "")
    if not mrn:
        return "-"
    return mrn if show else "*" * max(0, len(mrn) - 2) + mrn[-2:]


def doctor_command(args: argparse.Namespace, out: TextIO) -> int:
    """Checks of what DocDrop's promises rest on in a running stack; exit 1 when any fails."""
    target = resolve_target(args)
    checks: list[tuple[str, bool, str]] = []
    if target.bucket:
        status = target.client("s3").get_bucket_versioning(Bucket=target.bucket).get("Status", "never enabled")
        checks.append(
            (
                "inbox bucket versioning",
                status == "Enabled",
                f"{status}" + ("" if status == "Enabled" else ": nothing is sent until it is Enabled again"),
            )
        )
    table = target.client("dynamodb").describe_table(TableName=target.table)["Table"]
    stream = (table.get("StreamSpecification") or {}).get("StreamViewType")
    checks.append(
        (
            "ledger stream for the outcome joiner",
            stream in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"),
            stream or "off: objects would stay SUBMITTED after their outcome",
        )
    )
    width = max(len(name) for name, _, _ in checks)
    for name, ok, detail in checks:
        out.write(f"{'ok  ' if ok else 'FAIL'}  {name:<{width}}  {detail}\n")
    return 0 if all(ok for _, ok, _ in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docdrop", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--stack", help="a deployed CloudFormation stack's name (reads its outputs)")
    where.add_argument("--table", help="the ledger table's name")
    where.add_argument("--bucket", help="the inbox bucket (for --key)")
    where.add_argument("--region", help="AWS region")
    where.add_argument("--stack-file", type=Path, default=DEFAULT_STACK_FILE, help="the local stack's endpoints")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", parents=[where], help="what happened to documents")
    status.add_argument("--status", action="append", choices=[s.value for s in Status], help="only these statuses")
    status.add_argument("--json", action="store_true", help="JSON instead of a table")
    status.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    status.add_argument("--key", help="every version of this object key")
    status.add_argument("--document-id", help="the object behind this Cobalt document id")
    register = commands.add_parser("register-webhook", parents=[where], help="register the webhook URL with Cobalt")
    register.add_argument("--url", required=True, help="the stack's WebhookUrl output")
    register.add_argument("--cobalt-url", help="Cobalt's base URL (default https://api.usecobalt.com/v1)")
    reconcile = commands.add_parser(
        "reconcile",
        parents=[where],
        help="run one reconciler pass now (recover lost webhooks, enforce deadlines); exit 3 if another pass ran",
    )
    reconcile.add_argument("--json", action="store_true", help="the pass's report as JSON")
    commands.add_parser(
        "doctor", parents=[where], help="check bucket versioning and the ledger stream; exit 1 on a failure"
    )
    review = commands.add_parser("review", parents=[where], help="open reviews with their candidate documents")
    review.add_argument("--json", action="store_true", help="JSON instead of a table")
    review.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    review.add_argument("--show-mrn", action="store_true", help="show MRNs in clear (masked by default)")
    resolve = commands.add_parser(
        "resolve",
        parents=[where],
        help="one person's decision on a NEEDS_REVIEW or DUPLICATE object (exit 1: someone decided first)",
    )
    resolve.add_argument("object", nargs="?", help="the object id (from docdrop review), or use --key")
    resolve.add_argument("--key", help="the object key")
    resolve.add_argument("--version", help="the version id, when the key has several versions to decide on")
    decision = resolve.add_mutually_exclusive_group()
    decision.add_argument("--filed", metavar="DOCUMENT_ID", help="it is in the chart as this Cobalt document")
    decision.add_argument("--not-filed", action="store_true", help="it is not in the chart (with --resend)")
    decision.add_argument("--dismiss", action="store_true", help="close it without sending (with --reason)")
    resolve.add_argument("--resend", action="store_true", help="send it once more (a DUPLICATE, or --not-filed)")
    resolve.add_argument("--reason", help="why, recorded with the decision")
    resolve.add_argument("--by", help="who decides (default: your user name)")
    return parser


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "status":
        return status_command(args, out)
    if args.command == "reconcile":
        return reconcile_command(args, out)
    if args.command == "resolve":
        return resolve_command(args, out)
    if args.command == "doctor":
        return doctor_command(args, out)
    if args.command == "review":
        return review_command(args, out)
    return register_webhook_command(args, out)


if __name__ == "__main__":
    sys.exit(main())

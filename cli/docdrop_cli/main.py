"""`docdrop`: the operator's command line for a DocDrop stack, local or deployed.

Exit codes: 0 done; 1 a check failed, something was refused or not found, or someone else decided first; 2 a usage
error; 3 another run holds the job (a reconciler pass, the same backfill); 4 the stack, AWS or Cobalt could not be
used (credentials, access, a missing stack or table, the local stack not running); 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from docdrop.ledger import Status

from docdrop_cli.accounts import accounts_command
from docdrop_cli.doctor import doctor_command
from docdrop_cli.output import OperatorError, err, parse_duration
from docdrop_cli.reconcile import reconcile_command
from docdrop_cli.reviews import resolve_command, review_command
from docdrop_cli.sending import RETRYABLE, backfill_command, redrive_command, retry_command
from docdrop_cli.status import status_command
from docdrop_cli.target import add_target_arguments
from docdrop_cli.webhook_setup import (
    register_webhook_command,
    rotate_webhook_path_command,
    rotate_webhook_secret_command,
)

Command = Callable[[argparse.Namespace, TextIO], int]
ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate per second (0 for no limit)")
    return value


def duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def moment(text: str) -> datetime:
    """A date (2026-11-01), a time (2026-11-01T08:00:00+00:00; UTC when no offset), or a duration ago (7d)."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date, an ISO 8601 time or a duration (7d)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docdrop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, run: Command) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        add_target_arguments(sub)
        sub.set_defaults(run=run)
        return sub

    status = command(
        "status", "Show what happened to documents (changes nothing). Exit 1: nothing for that --key.", status_command
    )
    status.add_argument("--status", action="append", choices=[s.value for s in Status], help="only these (repeat)")
    status.add_argument("--key", help="every version of this object key")
    status.add_argument("--document-id", help="the object behind this Cobalt document id")
    status.add_argument("--older-than", type=duration, metavar="AGE", help="in their status for longer (30m, 6h, 3d)")
    status.add_argument("--since", type=moment, metavar="WHEN", help="reached their status since (date, time or 7d)")
    status.add_argument("--limit", type=positive_int, default=50, help="at most this many (default 50)")
    status.add_argument("--summary", action="store_true", help="counts, oldest open item, drop-to-outcome p50/p99")
    status.add_argument("--account", help="only this Cobalt account's objects")
    status.add_argument("--show-keys", action="store_true", help="object keys (may hold names; ids by default)")
    status.add_argument("--show-mrn", action="store_true", help="Cobalt's reasons in clear (numbers masked by default)")
    shape = status.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="JSON instead of a table")
    shape.add_argument("--csv", action="store_true", help="CSV instead of a table")

    retry = command(
        "retry",
        "Send BLOCKED or PENDING_RETRY versions through the pipeline again (an S3 event for each exact version on the "
        "ingest queue; no re-tagging). Refuses SUBMITTED, UPLOADED, FAILED and NEEDS_REVIEW. "
        "Exit 1: something refused.",
        retry_command,
    )
    retry.add_argument("object", nargs="*", help="object ids (from docdrop status --json)")
    retry.add_argument("--status", action="append", choices=[s.value for s in RETRYABLE], help="only these (repeat)")
    retry.add_argument("--key", help="the versions of this key")
    retry.add_argument("--prefix", help="only keys under this prefix")
    retry.add_argument("--older-than", type=duration, metavar="AGE", help="in their status for longer (30m, 6h)")
    retry.add_argument("--account", help="only this Cobalt account's objects")
    retry.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    retry.add_argument("--json", action="store_true", help="JSON instead of a table")

    redrive = command(
        "redrive",
        "Move every message of the dead-letter queue back to the ingest queue (SQS StartMessageMoveTask), "
        "with progress.",
        redrive_command,
    )
    redrive.add_argument("--dry-run", action="store_true", help="count the messages; move nothing")
    redrive.add_argument("--json", action="store_true", help="the result as JSON")

    backfill = command(
        "backfill",
        "Send objects already in the bucket (or whose events were missed) through the pipeline. Versions already in "
        "the ledger are skipped; interrupted, the same command resumes. Exit 130: interrupted.",
        backfill_command,
    )
    backfill.add_argument("--prefix", required=True, help="the keys to consider (under the watched prefix)")
    backfill.add_argument("--since", type=moment, metavar="WHEN", help="only versions written since (date, time, 7d)")
    backfill.add_argument("--all-versions", action="store_true", help="every version, not only each key's latest")
    backfill.add_argument("--rate", type=rate, default=10.0, help="at most this many sends a second (default 10)")
    backfill.add_argument("--restart", action="store_true", help="start from the first key, not where it stopped")
    backfill.add_argument("--dry-run", action="store_true", help="count what would be sent; send nothing")
    backfill.add_argument("--json", action="store_true", help="the result as JSON")

    reconcile = command(
        "reconcile",
        "Run one reconciler pass now: recover lost outcomes from Cobalt's event log, enforce the deadlines. "
        "Exit 3: another pass was running.",
        reconcile_command,
    )
    reconcile.add_argument("--json", action="store_true", help="the pass's report as JSON")

    for name, text, run in (
        (
            "register-webhook",
            "Register the stack's webhook URL with Cobalt (nothing if it is already) and store the signing secret.",
            register_webhook_command,
        ),
        (
            "rotate-webhook-secret",
            "Rotate the webhook's signing secret at Cobalt and store current, previous and previous_expires_at (24 h).",
            rotate_webhook_secret_command,
        ),
        (
            "rotate-webhook-path",
            "Move Cobalt to the webhook's new path token (WebhookUrl) from the old one (PreviousWebhookUrl): register "
            "the new URL, check it takes a signed delivery, then remove the old URL. Exit 1: the check failed; the "
            "old URL stays registered.",
            rotate_webhook_path_command,
        ),
    ):
        sub = command(name, text, run)
        if run is rotate_webhook_secret_command:
            sub.add_argument(
                "--settle",
                type=float,
                default=65.0,
                metavar="SECONDS",
                help="wait after marking the rotation (the webhook re-reads its secret at most once a minute)",
            )
        if run is not rotate_webhook_path_command:  # it moves between the stack's two outputs, nothing else
            sub.add_argument("--url", help="the webhook URL (default: the stack's WebhookUrl)")
        sub.add_argument("--cobalt-url", help="Cobalt's base URL (default: the stack's CobaltBaseUrl)")
        sub.add_argument("--json", action="store_true", help="the result as JSON")

    accounts = command(
        "accounts",
        "List the Cobalt accounts: link state, since when, open objects. `accounts relink NAME` marks an account's "
        "link working again and sends its BLOCKED objects once. `accounts alarms` keeps one alarm per account, named "
        "after it, in step with the credentials secret.",
        accounts_command,
    )
    accounts.add_argument("action", nargs="?", choices=["list", "relink", "alarms"], default="list")
    accounts.add_argument("name", nargs="?", help="the account, for relink")
    accounts.add_argument("--by", help="who re-linked it (recorded)")
    accounts.add_argument("--json", action="store_true", help="JSON instead of a table")

    doctor = command(
        "doctor",
        "Check a deployment end to end (changes nothing): credentials, Cobalt, webhook and secret, bucket, stream, "
        "alarms, DLQ. Exit 1: a check failed.",
        doctor_command,
    )
    doctor.add_argument("--json", action="store_true", help="the checks as JSON")

    review = command(
        "review", "List open reviews with the Cobalt documents that fit them (changes nothing).", review_command
    )
    review.add_argument("--json", action="store_true", help="JSON instead of a table")
    review.add_argument("--limit", type=positive_int, default=50, help="at most this many (default 50)")
    review.add_argument("--show-mrn", action="store_true", help="MRNs, Cobalt's reasons in clear (masked by default)")
    review.add_argument("--show-keys", action="store_true", help="object keys (they may hold names; ids by default)")
    review.add_argument(
        "--silent-after",
        type=duration,
        default=duration("72h"),
        help="the stack's SilentAfterHours, for the time a review still waits for silence (e.g. 72h, 30s; default 72h)",
    )

    resolve = command(
        "resolve",
        "Record one person's decision on a NEEDS_REVIEW or DUPLICATE object. Exit 1: someone decided first.",
        resolve_command,
    )
    resolve.add_argument("object", nargs="?", help="the object id (from docdrop review), or use --key")
    resolve.add_argument("--key", help="the object key")
    resolve.add_argument("--version", help="the version id, when the key has several versions to decide on")
    decision = resolve.add_mutually_exclusive_group()
    decision.add_argument("--filed", metavar="DOCUMENT_ID", help="it is in the chart as this Cobalt document")
    decision.add_argument("--not-filed", action="store_true", help="it is not in the chart (with --resend)")
    decision.add_argument("--dismiss", action="store_true", help="close it without sending (with --reason)")
    decision.add_argument(
        "--silent", action="store_true", help="every review found not filed, by silence (with --resend; no object)"
    )
    resolve.add_argument("--resend", action="store_true", help="send it once more (a DUPLICATE, --not-filed, --silent)")
    resolve.add_argument("--dry-run", action="store_true", help="with --silent: list what would be sent, send nothing")
    resolve.add_argument("--reason", help="why, recorded with the decision")
    resolve.add_argument("--by", help="who decides (default: your user name)")
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        code: int = args.run(args, out)
        return code
    except OperatorError as exc:
        err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except Exception as exc:
        message = explain(exc, args)
        if message is None:
            raise
        err(message)
        return 4


def explain(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One or two lines for an expected failure anywhere in the chain of causes; None for a bug (its traceback)."""
    seen: BaseException | None = exc
    while seen is not None:
        found = _explain_one(seen, args)
        if found is not None:
            return found
        seen = seen.__cause__ or seen.__context__
    return None


def _explain_one(exc: BaseException, args: argparse.Namespace) -> str | None:
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: configure them (aws configure, AWS_PROFILE, or the AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY variables), or use --local DIR for the local stack"
        )
    if isinstance(exc, NoRegionError):
        return "no AWS region: give --region REGION or set AWS_REGION"
    if isinstance(exc, EndpointConnectionError):
        local = (
            " The local stack is not running? start it with: make demo ARGS=--keep-running" if not args.stack else ""
        )
        return f"cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}.{local}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        operation = exc.operation_name
        if code in ACCESS_DENIED or "AccessDenied" in code:
            return f"access denied to {operation}: the AWS identity in use needs that permission ({message})"
        if operation == "DescribeStacks" and "does not exist" in message:
            return f"no stack named {args.stack} in this region: check --stack and --region (or AWS_REGION)"
        if code == "ResourceNotFoundException":
            return f"not found ({operation}): {message}. Check --table/--stack, and --region"
        if code in ("NoSuchBucket", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return f"not found ({operation}): {message or code}. Check --bucket/--queue-url/--stack, and --region"
        if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"):
            return f"AWS refused the credentials ({code}): refresh them (aws sso login, or new keys)"
        return f"AWS answered {code} to {operation}: {message}"
    if isinstance(exc, BotoCoreError):
        return f"AWS call failed: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())

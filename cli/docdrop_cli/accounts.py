"""`docdrop accounts` and `docdrop accounts relink NAME`: the stack's Cobalt accounts, their links, and what waits."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from docdrop.accounts import CobaltAccounts
from docdrop.ledger import OPEN, DocumentLedger, Status

from docdrop_cli.output import OperatorError, write_json, write_table
from docdrop_cli.sending import retry_command
from docdrop_cli.target import Target, resolve_target
from docdrop_cli.webhook_setup import SecretStore


def accounts_command(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: 0 listed (or re-linked and its BLOCKED objects queued); 1 no such account."""
    target = resolve_target(args)
    accounts = CobaltAccounts.from_secret(SecretStore(target).read("credentials_secret"))
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    if args.action == "relink":
        return _relink(args, out, accounts, ledger)
    if args.action == "alarms":
        return _alarms(args, out, accounts, target)
    rows: list[dict[str, Any]] = []
    waiting: dict[str, dict[str, int]] = {a.name: {} for a in accounts.accounts}
    for status in sorted(OPEN):
        for item in ledger.open_items(status):
            name = str(item.get("account") or (accounts.names[0] if len(accounts.names) == 1 else "default"))
            counts = waiting.setdefault(name, {})
            counts[status.value] = counts.get(status.value, 0) + 1
    for account in accounts.accounts:
        link = ledger.get_account_link(account.reference_id) or {}
        rows.append(
            {
                "account": account.name,
                "reference_id": account.reference_id,
                "link": link.get("status") or "LINKED",
                "since": link.get("status_at"),
                "password_change_warning": link.get("password_warning_at"),
                "open": waiting.get(account.name, {}),
            }
        )
    if args.json:
        write_json(rows, out)
        return 0
    write_table(
        ["account", "reference id", "link", "since", "open objects"],
        [
            [
                r["account"],
                r["reference_id"],
                r["link"],
                str(r["since"] or "-")[:19],
                ", ".join(f"{s} {n}" for s, n in sorted(r["open"].items())) or "none",
            ]
            for r in rows
        ],
        out,
    )
    return 0


def _relink(args: argparse.Namespace, out: TextIO, accounts: CobaltAccounts, ledger: DocumentLedger) -> int:
    if not args.name:
        raise OperatorError("name the account: docdrop accounts relink NAME", 2)
    account = accounts.get(args.name)
    if account is None:
        raise OperatorError(f"no account {args.name!r}; accounts known: {', '.join(accounts.names) or 'none'}", 1)
    ledger.record_relink(account.reference_id, by=f"docdrop accounts relink ({args.by or 'operator'})")
    out.write(f"Account {account.name}: link marked working again; its BLOCKED objects are sent once.\n")
    # `docdrop retry --status BLOCKED --account NAME`, on the same stack
    selection = {"object": [], "status": [Status.BLOCKED.value], "key": None, "prefix": None, "older_than": None}
    code = retry_command(
        argparse.Namespace(**{**vars(args), **selection, "account": account.name, "dry_run": False}), out
    )
    relinked_at = str((ledger.get_account_link(account.reference_id) or {}).get("status_at") or "")
    ledger.mark_link_resent(account.reference_id, relinked_at)  # sent now: the reconciler need not send them again
    return 0 if code in (0, 1) else code


ALARM_PREFIX = "DocDrop-blocked-"


def _alarms(args: argparse.Namespace, out: TextIO, accounts: CobaltAccounts, target: Target) -> int:
    """One alarm per account, named after it, on its BLOCKED documents (the dimension `account`), to the alarm topic.

    CloudFormation cannot know the accounts (they live in the secret), so this command keeps the alarms in step with
    the secret: it creates or updates one per account and deletes those of accounts no longer there.
    """
    topic = target.need("alarm_topic_arn", "the alarm topic (the stack's AlarmTopicArn output)")
    cloudwatch = target.client("cloudwatch")
    prefix = ALARM_PREFIX + (f"{target.stack_name}-" if target.stack_name else "")
    wanted = {prefix + a.name: a.name for a in accounts.accounts}
    for name, account in wanted.items():
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            AlarmDescription=(
                f"Cobalt account {account}: documents BLOCKED (its EHR link broke). Re-link it in Cobalt, then "
                f"docdrop accounts relink {account}"
            ),
            Namespace="DocDrop",
            MetricName="DocumentsBlocked",
            Dimensions=[{"Name": "service", "Value": "uploader"}, {"Name": "account", "Value": account}],
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
            AlarmActions=[topic],
            OKActions=[topic],
        )
    existing = [
        a["AlarmName"]
        for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix)
        for a in page.get("MetricAlarms", [])
    ]
    stale = [name for name in existing if name not in wanted]
    if stale:
        cloudwatch.delete_alarms(AlarmNames=stale)
    if args.json:
        write_json({"alarms": sorted(wanted), "deleted": stale}, out)
    else:
        out.write(
            f"{len(wanted)} account alarms in place ({', '.join(sorted(wanted.values()))}); {len(stale)} removed.\n"
        )
    return 0

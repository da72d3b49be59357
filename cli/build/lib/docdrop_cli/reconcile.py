"""`docdrop reconcile`: one reconciler pass now, through the function itself (Lambda's Invoke, or the local stack's)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from docdrop_cli.output import OperatorError, write_json
from docdrop_cli.target import resolve_target


def reconcile_command(args: argparse.Namespace, out: TextIO) -> int:
    """One reconciler pass: the function invoked, on AWS or the local stack. Exit 3 when another pass was running."""
    target = resolve_target(args)
    function = target.need("reconciler_function", "the reconciler function")
    answer = target.client("lambda").invoke(FunctionName=function, Payload=b'{"source": "docdrop.cli"}')
    report = json.loads(answer["Payload"].read() or b"{}")
    if answer.get("FunctionError"):
        raise OperatorError(f"the reconciler failed: {report.get('errorType', 'unknown error')} (see its log)")
    if args.json:
        write_json(report, out)
    else:
        out.write(_describe_pass(report) + "\n")
    return 0 if report.get("ran", False) else 3


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

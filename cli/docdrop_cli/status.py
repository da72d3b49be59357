"""`docdrop status`: what happened to documents, one version, one Cobalt document, or a summary of them all."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from docdrop.accounts import account_of
from docdrop.ledger import OPEN, DocumentLedger, DocumentView, ObjectRef, Status, object_view, parse_moment

from docdrop_cli.output import (
    OperatorError,
    age_seconds,
    human_duration,
    mask_reasons,
    shorten,
    write_csv,
    write_json,
    write_table,
)
from docdrop_cli.target import Target, resolve_target

COLUMNS = ("key", "version_id", "status", "reason", "document_id", "object_id", "account", "created_at", "updated_at")
KEY_FIELDS = ("key",)  # object keys may hold patients' names: shown only with --show-keys
SUMMARY_SAMPLE = 10_000  # outcomes read for the drop-to-outcome percentiles, newest first


def versions_of(target: Target, key: str) -> list[ObjectRef]:
    """Every version S3 holds of exactly `key`, newest first."""
    bucket = target.need("bucket", "the inbox bucket")
    refs: list[ObjectRef] = []
    for page in target.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        refs += [ObjectRef(bucket, key, v["VersionId"]) for v in page.get("Versions", []) if v["Key"] == key]
    return refs


def select_items(
    ledger: DocumentLedger,
    statuses: list[Status],
    *,
    older_than: timedelta | None,
    since: datetime | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """Object items in `statuses` whose status is older than `older_than` and newer than `since`, newest first."""
    before = datetime.now(UTC) - older_than if older_than is not None else None
    items: list[dict[str, Any]] = []
    for status in statuses:
        items += ledger.open_items(status, before=before, since=since, limit=limit, newest_first=True)
    items.sort(key=lambda item: str(item.get("status_at") or ""), reverse=True)
    return items[:limit] if limit is not None else items


def status_command(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: 0 shown (an empty listing too); 1 nothing recorded for the --key or --document-id asked for."""
    target = resolve_target(args)
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    if args.summary:
        summary = summarise(ledger, args.since)
        if not args.show_keys:
            summary["oldest_open"] = {s: _without_keys(o) for s, o in summary["oldest_open"].items()}
        write_summary(summary, args.json, out)
        return 0
    if args.document_id:
        found = ledger.lookup_document(args.document_id)
        views = [found] if found else []
    elif args.key:
        views = [v for v in (ledger.lookup(ref) for ref in versions_of(target, args.key)) if v is not None]
    else:
        statuses = [Status(s) for s in args.status] if args.status else list(Status)
        wanted = None if args.account else args.limit  # filtered after reading: read them all, then cut
        items = select_items(ledger, statuses, older_than=args.older_than, since=args.since, limit=wanted)
        if args.account:
            items = [i for i in items if account_of(i) == args.account][: args.limit]
        views = [object_view(item) for item in items]
    write_views(views, args, out)
    if not views and (args.document_id or args.key):
        raise OperatorError("nothing recorded for that " + ("document id" if args.document_id else "key"), 1)
    return 0


def _without_keys(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in KEY_FIELDS}


def write_views(views: list[DocumentView], args: argparse.Namespace, out: TextIO) -> None:
    """Object ids, not keys, unless --show-keys; Cobalt's reasons masked as MRNs are, unless --show-mrn."""
    now = datetime.now(UTC)
    shown = [dataclasses.asdict(v) for v in views]
    if not args.show_mrn:
        shown = mask_reasons(shown)
    if not args.show_keys:
        shown = [_without_keys(v) for v in shown]
    if args.json:
        for row, view in zip(shown, views, strict=True):
            row["age_seconds"] = age_seconds(view.updated_at or view.created_at, now)
        write_json(shown, out)
        return
    columns = [c for c in COLUMNS if args.show_keys or c not in KEY_FIELDS]
    if args.csv:
        write_csv(columns, [[row[c] for c in columns] for row in shown], out)
        return
    keys = Counter(v.key for v in views)
    several = any(n > 1 for n in keys.values())  # a version column only where a key has several versions
    accounts = len({v.account or "default" for v in views}) > 1  # an account column only where there are several
    header = ["object", *(["version"] if several else []), *(["account"] if accounts else []), "status", "reason"]
    header += ["document id", "age"]
    rows = []
    for view, row in zip(views, shown, strict=True):
        version = [(view.version_id or "-")[:12] if keys[view.key] > 1 else ""] if several else []
        rows.append(
            [
                (view.key if args.show_keys else None) or str(view.object_id),
                *version,
                *([view.account or "default"] if accounts else []),
                view.status,
                shorten(row["reason"], 70),
                view.document_id or "-",
                human_duration(age_seconds(view.updated_at or view.created_at, now)),
            ]
        )
    write_table(header, rows, out)


def summarise(ledger: DocumentLedger, since: datetime | None) -> dict[str, Any]:
    """Counts by status, the oldest open item of each open status, and drop-to-outcome percentiles."""
    now = datetime.now(UTC)
    counts: dict[str, int] = {}
    oldest: dict[str, dict[str, Any]] = {}
    scanned = ledger.status_counts()  # one Scan: settled states are in no index (docs/ledger.md)
    for status in Status:
        counts[status.value] = count = scanned.get(status.value, 0)
        item = next(ledger.open_items(status, limit=1), {}) if count and status in OPEN else {}
        oldest_at = item.get("status_at")
        if oldest_at:
            oldest[status.value] = {
                "object_id": item.get("object_id"),
                "key": item.get("key"),
                "since": oldest_at,
                "age_seconds": age_seconds(oldest_at, now),
            }
    since = since or now - timedelta(days=7)
    seconds: list[float] = []
    for status in (Status.UPLOADED, Status.FAILED):
        for item in ledger.open_items(status, since=since, limit=SUMMARY_SAMPLE, newest_first=True):
            dropped = parse_moment(item.get("created_at"))
            outcome = parse_moment(item.get("outcome_created")) or parse_moment(item.get("status_at"))
            if dropped is not None and outcome is not None:
                seconds.append(max(0.0, (outcome - dropped).total_seconds()))
    return {
        "counts": counts,
        "open": sum(counts[s.value] for s in OPEN),
        "oldest_open": oldest,
        "drop_to_outcome": {
            "since": since.isoformat(timespec="seconds"),
            "documents": len(seconds),
            "p50_seconds": _percentile(seconds, 50),
            "p99_seconds": _percentile(seconds, 99),
        },
    }


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[percent - 1], 3)


def write_summary(summary: dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        write_json(summary, out)
        return
    rows = []
    for status, count in summary["counts"].items():
        oldest = summary["oldest_open"].get(status)
        rows.append(
            [
                status,
                str(count),
                human_duration(oldest["age_seconds"]) if oldest else "-",
                str(oldest["object_id"]) if oldest else "-",
            ]
        )
    write_table(["status", "objects", "oldest open", "oldest object id"], rows, out)
    latency = summary["drop_to_outcome"]
    out.write(
        f"Drop to outcome since {latency['since']}: {latency['documents']} documents, "
        f"p50 {human_duration(latency['p50_seconds'])}, p99 {human_duration(latency['p99_seconds'])}\n"
    )

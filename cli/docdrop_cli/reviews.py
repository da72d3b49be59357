"""`docdrop review` and `docdrop resolve`: the open reviews with the documents that fit them, and a person's
decision."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from docdrop.ledger import SILENCE, DocumentLedger, Status

from docdrop_cli.output import OperatorError, mask_identifiers, mask_mrn, shorten, write_json, write_table
from docdrop_cli.sending import enqueue
from docdrop_cli.status import versions_of
from docdrop_cli.target import Target, resolve_target


def _decider(args: argparse.Namespace) -> str:
    import getpass

    return str(args.by or getpass.getuser())


def _find_decided(args: argparse.Namespace, ledger: DocumentLedger, target: Target, wanted: set[str]) -> dict[str, Any]:
    """The one object version the decision is about: by object id, or by key (and version) in one of `wanted`."""
    if args.object:
        item = ledger.get_object_by_id(args.object)
        if item is None or item.get("status") not in wanted:
            raise OperatorError(f"no object {args.object} in {' or '.join(sorted(wanted))}", 1)
        return item
    if not args.key:
        raise OperatorError("name the object: its id (from docdrop review), or --key [--version]", 2)
    refs = [r for r in versions_of(target, args.key) if not args.version or r.version_id == args.version]
    items = [i for i in (ledger.get_object(r) for r in refs) if i and i.get("status") in wanted]
    if len(items) != 1:
        hint = "; name one with --version" if items else ""
        raise OperatorError(f"{len(items)} versions of that key in {' or '.join(sorted(wanted))}{hint}", 1)
    return items[0]


def resolve_command(args: argparse.Namespace, out: TextIO) -> int:
    """One person's decision on a NEEDS_REVIEW (or DUPLICATE) object, recorded with who, when and why.

    Exit codes: 0 done; 1 someone else decided first (or the document is another object's); 2 usage.
    """
    target = resolve_target(args)
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    who, why = _decider(args), args.reason or "no reason given"
    if args.silent:
        if not args.resend:
            raise OperatorError("--silent takes --resend (send every silent review once) [--dry-run]", 2)
        if args.object or args.key:
            raise OperatorError("--silent acts on every review found silent: name no object", 2)
        return _resend_silent(args, target, ledger, who, out)
    if args.dry_run:
        raise OperatorError("--dry-run goes with --silent --resend", 2)
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
            raise OperatorError("--dismiss needs --reason TEXT", 2)
        item = _find_decided(args, ledger, target, {Status.NEEDS_REVIEW.value})
        if not ledger.dismiss_review(item, f"Dismissed by {who}: {why}", decided_by=who):
            out.write("Not recorded: someone else decided first.\n")
            return 1
        out.write(f"Recorded: object {item['object_id']} is DISMISSED; nothing is sent.\n")
        return 0
    if args.not_filed and not args.resend:
        raise OperatorError("--not-filed takes --resend (send it once more) or, instead, use --dismiss", 2)
    if not args.resend:
        raise OperatorError("choose --filed DOCUMENT_ID, --not-filed --resend, --resend or --dismiss --reason", 2)
    wanted = {Status.NEEDS_REVIEW.value} if args.not_filed else {Status.DUPLICATE.value, Status.NEEDS_REVIEW.value}
    item = _find_decided(args, ledger, target, wanted)
    ref = ledger.item_ref(item)
    kept = ledger.kept_submission(str(item["object_id"])) if item["status"] == Status.NEEDS_REVIEW.value else None
    if kept is not None:  # Cobalt accepted this very version; only its own record failed: it is never sent again
        out.write(
            f"Not sent: Cobalt accepted this version as document {kept['document_id']} (its record is pending); "
            f"the reconciler records it. To say so now: docdrop resolve {item['object_id']} --filed "
            f"{kept['document_id']}\n"
        )
        return 1
    reason = f"Resend approved by {who} ({why}); it is sent once"
    if not ledger.approve_resend(ref, reason, decided_by=who, status=Status(item["status"])):
        out.write("Not recorded: someone else decided first.\n")
        return 1
    head = target.client("s3").head_object(Bucket=ref.bucket, Key=ref.key, VersionId=ref.version_id)
    enqueue(target, ref, int(head["ContentLength"]))
    out.write(f"Approved; version {ref.version_id} is queued to be sent once.\n")
    return 0


def _resend_silent(args: argparse.Namespace, target: Target, ledger: DocumentLedger, who: str, out: TextIO) -> int:
    """Every review the reconciler found not filed, by silence, sent once (docdrop.reviews.resend_silent_reviews).

    Exit codes: 0 done (or nothing to do); 1 one or more could not be sent (someone decided first)."""
    from docdrop.reviews import resend_silent_reviews

    items = {str(r["object_id"]): r for r in ledger.open_items(Status.NEEDS_REVIEW)}
    done = resend_silent_reviews(
        ledger, who, lambda ref, size: enqueue(target, ref, size), reviews=items.values(), dry_run=args.dry_run
    )
    for object_id, what in done:
        out.write(f"{object_id}: {what} (silent: {_silence_text(items[object_id])})\n")
    sent = sum(1 for _, what in done if what in ("sent", "would send"))
    skipped = sum(1 for _, what in done if what.startswith("skipped"))
    refused = sum(1 for _, what in done if what.startswith("not sent"))
    verb = "would be sent" if args.dry_run else "sent once"
    out.write(f"{sent} silent review(s) {verb}; {skipped} skipped; {refused} decided by someone else first.\n")
    return 1 if refused else 0


def _silence_text(review: Mapping[str, Any]) -> str:
    check = review.get(SILENCE) or {}
    return f"{check.get('pages')} log page(s) read at {str(check.get('checked_at'))[:19]}"


def review_command(args: argparse.Namespace, out: TextIO) -> int:
    """Open reviews, newest first, each with the Cobalt documents that fit its evidence."""
    from docdrop.reviews import Candidates, candidates_for, evidence_state

    target = resolve_target(args)
    ledger = DocumentLedger(target.client("dynamodb"), target.table)
    reviews = list(ledger.open_items(Status.NEEDS_REVIEW, newest_first=True, limit=args.limit))
    documents = ledger.unjoined_documents(before=datetime.now(UTC))
    fits = {str(c.review["object_id"]): c for c in candidates_for(reviews, documents, ledger.in_flight_items())}
    kept = {str(d.get("object_id")): d for d in ledger.unrecorded_submissions()}
    rows = []
    for review in reviews:
        found = fits.get(str(review["object_id"]))
        if str(review["object_id"]) in kept:  # Cobalt accepted this very version: its only candidate
            document = kept[str(review["object_id"])]
            found = Candidates(review, (document,), True, "Cobalt accepted this version; the reconciler records it")
        reason = review.get("reason")
        state, detail = evidence_state(found, review, args.silent_after, datetime.now(UTC))
        rows.append(
            {
                "object_id": review["object_id"],
                **({"key": review.get("key")} if args.show_keys else {}),
                "version_id": review.get("version_id"),
                "mrn": _mrn(target, review, args.show_mrn),
                "attempt_sent_at": review.get("attempt_sent_at"),
                "what_went_wrong": mask_identifiers(reason)
                if isinstance(reason, str) and not args.show_mrn
                else reason,
                "candidates": [
                    {"document_id": d["document_id"], "outcome": d.get("outcome"), "created": d.get("outcome_created")}
                    for d in (found.documents if found else ())
                ],
                "evidence": state,
                "evidence_detail": detail,
                "why_not_automatic": (found.why_not if found else "no evidence kept for this attempt")
                if not review.get("resend_approved")
                else "a resend is approved and queued",
            }
        )
    if args.json:
        write_json(rows, out)
        return 0
    table = []
    for row in rows:
        candidates = ", ".join(f"{c['document_id']} ({c['outcome']})" for c in row["candidates"]) or "none"
        table.append(
            [
                str(row["object_id"]),
                *([shorten(str(row["key"]), 40)] if args.show_keys else []),
                str(row["mrn"]),
                str(row["attempt_sent_at"] or "-")[:19],
                shorten(str(row["what_went_wrong"]), 50),
                candidates,
                f"{row['evidence']}: {shorten(str(row['evidence_detail']), 60)}",
            ]
        )
    header = [
        "object id",
        *(["key"] if args.show_keys else []),
        "MRN",
        "sent",
        "what went wrong",
        "candidates",
        "evidence",
    ]
    write_table(header, table, out)
    out.write(
        "Decide with: docdrop resolve OBJECT_ID --filed DOCUMENT_ID | --not-filed --resend | --dismiss --reason TEXT\n"
        "Every silent one at once: docdrop resolve --silent --resend [--dry-run]\n"
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
    return mrn if show else mask_mrn(mrn)

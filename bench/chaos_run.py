"""`make chaos`: the resilience suite. N documents (1,000 by default) through the whole local stack while everything
that can go wrong does, then the promises in the project's own words. Exits 1 when one breaks.

What goes wrong, seeded: Cobalt's faults at 20 % of uploads (429, 500, 503, reset connections, answers slower than
the read timeout, 502/504 after storing); 10 % duplicate S3 events; 5 % of objects tagged only later; duplicate,
early, out-of-order webhooks, and 3 % never sent; uploader workers killed after the claim, with the POST in flight
and after Cobalt's answer; the reconciler's deadlines in seconds. Cobalt answers every upload in about 300 ms.

What must hold: no document in the EMR twice; no version open once the grace period is over; no MRN, note or object
key in any log line of any function or of the sandbox. Also printed: where every document ended, the NEEDS_REVIEW
count against the ambiguous faults that can cause one, time to settle and documents per second.

Then, as a person would once the horizon (SilentAfterHours, here seconds) has passed, `docdrop resolve --silent
--resend` runs once; the resent documents settle, and the reviews are printed in three groups: matched by evidence,
resent by silence, and left for a person; with the documents linked to another object's upload (must be 0).
"""

from __future__ import annotations

import argparse
import collections
import io
import logging
import os
import random
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import boto3
import docdrop_cli.main as cli
from docdrop.ledger import OPEN, DocumentLedger, Status
from docdrop.s3_events import s3_notification

from bench.settling import status_counts, wait_until_closed
from local.cobalt_sandbox import FaultSettings
from local.samples import pdf_bytes
from local.stack import LocalStack, StackOptions
from local.workers import CRASH_POINTS, CrashPlan

# Answers that leave Cobalt's side unknown (docdrop.cobalt: AMBIGUOUS), and so may end NEEDS_REVIEW.
AMBIGUOUS_FAULTS = ("http_500", "drop_connection", "slow_after_accept", "http_502_after_store", "http_504_after_store")
# SilentAfterHours in seconds: the reconciler's passes (every 5 s) find a review silent this long after its attempt.
SILENT_AFTER_SECONDS = 30.0
WORDS = ("referral", "labs", "intake", "consent", "discharge", "imaging", "letter", "history")


@dataclass
class Drop:
    index: int
    key: str
    mrn: str
    note: str | None
    tagged_later: bool
    duplicate_event: bool


class Captured(logging.Handler):
    """Every log record of the stack's own process (the sandbox, moto, the event sources), formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # a record that cannot be formatted is still scanned by its raw parts
            self.lines.append(f"{record.msg} {record.args}")


def plan_drops(n: int, seed: int, unknown_share: float = 0.03) -> list[Drop]:
    rng = random.Random(seed)
    drops = []
    for i in range(n):
        unknown = rng.random() < unknown_share
        drops.append(
            Drop(
                index=i,
                key=f"chaos/{i:05d}/{rng.choice(WORDS)} scan {rng.randrange(10**6):06d}.pdf",
                mrn="99999999" if unknown else f"7{i:07d}",  # the sandbox's EMR knows all but 99999999
                note=f"chaos note {rng.randrange(10**9):09d}" if rng.random() < 0.2 else None,
                tagged_later=rng.random() < 0.05,
                duplicate_event=rng.random() < 0.10,
            )
        )
    return drops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", "-n", type=int, default=int(os.environ.get("N") or 1000))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--faults", type=float, default=0.20, help="share of uploads meeting one of Cobalt's faults")
    parser.add_argument("--crash", type=float, default=0.003, help="chance of a kill each time a crash point is met")
    parser.add_argument("--answer-seconds", type=float, default=0.3, help="Cobalt's time to answer an upload")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)  # the stack's own warnings (what was in flight at the stop)
    captured = Captured()
    root = logging.getLogger()
    root.handlers = [console, captured]
    root.setLevel(logging.INFO)  # every line is scanned for PHI, not only those printed

    grace, every = 20.0, 5.0
    os.environ["COBALT_READ_TIMEOUT"] = "2"  # below the sandbox's slow answers (4 s)
    share = args.faults / len(FaultSettings.HTTP_FAULTS)
    state_dir = Path(tempfile.mkdtemp(prefix="docdrop-chaos-"))
    options = StackOptions(
        state_dir=state_dir,
        faults=FaultSettings(
            seed=args.seed,
            slow_seconds=4.0,
            retry_after_seconds=1,
            webhook_twice=0.10,
            webhook_before_response=0.05,
            webhook_out_of_order=0.05,
            webhook_never_sent=0.03,
            **{name: share for name in FaultSettings.HTTP_FAULTS},
        ),
        processing_delay_seconds=0.2,
        cobalt_answer_seconds=args.answer_seconds,
        batching_window_seconds=1,
        reconcile_every_seconds=every,
        outcome_grace_seconds=grace,
        stale_after_seconds=120,
        tag_wait_seconds=60,
        silent_after_seconds=SILENT_AFTER_SECONDS,
        # Lambda's 90 s timeout and 540 s visibility, shortened: a killed batch comes back within a minute.
        uploader_timeout_seconds=20,
        visibility_timeout_seconds=30,
        time_scale=60,  # the retry schedule's minutes become seconds
        crash=CrashPlan(args.crash, CRASH_POINTS, seed=args.seed),
    )
    drops = plan_drops(args.documents, args.seed)
    print(f"Chaos: {args.documents} documents, seed {args.seed}; starting the local stack...", flush=True)
    with LocalStack(options) as stack:
        info = stack.info
        assert info is not None and stack.sandbox is not None
        s3 = boto3.client("s3", endpoint_url=info.aws_endpoint_url, region_name=info.region)
        sqs = boto3.client("sqs", endpoint_url=info.aws_endpoint_url, region_name=info.region)
        ledger = DocumentLedger(
            boto3.client("dynamodb", endpoint_url=info.dynamodb_endpoint_url, region_name=info.region), info.table
        )
        stack.sandbox.config.patients.extend({"mrn": d.mrn} for d in drops if d.mrn != "99999999")

        def drop(d: Drop) -> None:
            tags = {"patient_mrn": d.mrn, "folder_name": "MedicalRecords/Chaos"}
            if d.note:
                tags["notes"] = d.note
            body = pdf_bytes(f"chaos {d.index}")  # identical files would be DUPLICATE, as they should
            if d.tagged_later:
                put = s3.put_object(Bucket=info.bucket, Key=info.prefix + d.key, Body=body)
                time.sleep(random.Random(d.index).uniform(0.5, 3.0))
                s3.put_object_tagging(
                    Bucket=info.bucket,
                    Key=info.prefix + d.key,
                    VersionId=put["VersionId"],
                    Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]},
                )
            else:
                put = s3.put_object(Bucket=info.bucket, Key=info.prefix + d.key, Body=body, Tagging=urlencode(tags))
            if d.duplicate_event:  # S3 delivers at least once: the same event again
                sqs.send_message(
                    QueueUrl=info.queue_url,
                    MessageBody=s3_notification(info.bucket, info.prefix + d.key, put["VersionId"], len(body)),
                )

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(drop, drops))
        dropped = time.monotonic()
        print(f"Dropped {len(drops)} in {dropped - started:.1f} s; waiting for every one to close...", flush=True)
        settled_at = wait_until_closed(ledger, len(drops), started, args.timeout)
        time.sleep(2 * every)  # the passes after the last outcome: reviews resolved by evidence, late duplicates
        reviews_before = status_counts(ledger)[Status.NEEDS_REVIEW]
        # A person, once the horizon has passed and the passes after it have read Cobalt's whole log: one command.
        time.sleep(SILENT_AFTER_SECONDS + 3 * every)
        said = io.StringIO()
        cli.main(["resolve", "--silent", "--resend", "--by", "chaos", "--local", str(state_dir)], said)
        resolve_line = (said.getvalue().strip().splitlines() or ["(nothing)"])[-1]
        resent_settled = wait_until_closed(ledger, len(drops), time.monotonic(), args.timeout)
        time.sleep(2 * every)
        counts = status_counts(ledger)
        open_now = sum(counts[s] for s in OPEN)
        copies = collections.Counter(d["filename"] for d in stack.sandbox._public_documents())
        twice = sum(1 for n in copies.values() if n > 1)
        faults = collections.Counter(f["http"] for f in stack.sandbox.fault_log if f.get("http"))
        hooks = collections.Counter(
            name for fault in stack.sandbox.fault_log for name in FaultSettings.WEBHOOK_FAULTS if fault.get(name)
        )
        reviewed_ids = ledger.ever_in(Status.NEEDS_REVIEW)
        reviewed = len(reviewed_ids)
        groups, wrong = _review_groups(ledger, reviewed_ids, stack.sandbox._public_documents())
        uploader = stack.functions["uploader"].stats
        workers = {name: pool.stats for name, pool in stack.functions.items()}
    # The stack has stopped: every log file is complete.
    phi = _phi_in_logs(drops, state_dir / "logs", captured.lines)

    took = (settled_at or time.monotonic()) - started
    ambiguous = sum(faults[name] for name in AMBIGUOUS_FAULTS)
    print()
    print(f"documents dropped:                       {len(drops)}")
    print(f"  duplicate S3 events sent:              {sum(d.duplicate_event for d in drops)}")
    print(f"  tagged only later:                     {sum(d.tagged_later for d in drops)}")
    print(f"  unknown MRN (the EMR refuses):         {sum(d.mrn == '99999999' for d in drops)}")
    print("Cobalt's faults at upload:               " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
    print("webhook faults:                          " + ", ".join(f"{k} {v}" for k, v in sorted(hooks.items())))
    print(
        "uploader workers killed:                 "
        + (", ".join(f"{k} {v}" for k, v in sorted(uploader.crashes.items())) or "none")
        + f"; timeouts {uploader.timeouts}"
    )
    print("ended:                                   " + ", ".join(f"{s.value} {n}" for s, n in counts.items() if n))
    print(f"NEEDS_REVIEW at some point:              {reviewed} (now {counts[Status.NEEDS_REVIEW]})")
    print(f"  ambiguous answers injected:            {ambiguous} ({', '.join(AMBIGUOUS_FAULTS)})")
    print(f"  workers killed mid-upload:             {sum(uploader.crashes.values())} (each takes its whole batch)")
    print(f"after the horizon, docdrop resolve --silent --resend: {resolve_line}")
    print(
        f"  reviews open before it:                {reviews_before} ({100 * reviews_before / len(drops):.1f} %); "
        f"the resent ones settled {'yes' if resent_settled else 'NO'}"
    )
    print("  reviews, by how they ended:            " + ", ".join(f"{k} {v}" for k, v in groups.items() if k[0] != " "))
    for why, n in sorted((k, v) for k, v in groups.items() if k[0] == " "):
        print(f"  {why.strip()}: {n}")
    share = 100 * counts[Status.NEEDS_REVIEW] / len(drops)
    print(f"NEEDS_REVIEW at the end:                 {counts[Status.NEEDS_REVIEW]} ({share:.1f} % of documents)")
    print(f"documents linked to another's upload:    {wrong}   (must be 0)")
    print(f"documents in the EMR more than once:     {twice}   (must be 0)")
    print(f"versions open after the grace period:    {open_now}   (must be 0)")
    print(f"PHI in log lines:                        {sum(phi.values())}   (must be 0)" + _where(phi))
    print(f"time to settle (first drop to last):     {took:.1f} s" + ("" if settled_at else " (did not settle)"))
    print(f"documents per second:                    {len(drops) / took:.2f}")
    for name, stats in workers.items():
        cold = sorted(stats.init_ms)
        median = cold[len(cold) // 2] if cold else 0.0
        print(
            f"  {name:15s} invocations {stats.invocations:5d}, cold starts {stats.cold_starts:3d} "
            f"(median init {median:.0f} ms), peak at once {stats.peak_concurrency}"
        )
    broken = twice > 0 or open_now > 0 or sum(phi.values()) > 0 or settled_at is None or wrong > 0
    print("PROMISES BROKEN" if broken else "Every promise held.")
    return 1 if broken else 0


def _phi_in_logs(drops: list[Drop], logs: Path, in_process: list[str]) -> collections.Counter[str]:
    """Where an MRN, a note or an object key (whole, or its file name) appears in a log line: counts per source."""
    needles: list[str] = []
    for d in drops:
        needles.extend([d.key, d.key.rsplit("/", 1)[-1]])
        if d.note:
            needles.append(d.note)
    mrns = re.compile(r"(?<!\d)(?:7\d{7}|99999999)(?!\d)")
    literal = re.compile("|".join(re.escape(n) for n in sorted(set(needles), key=len, reverse=True)))
    found: collections.Counter[str] = collections.Counter()
    sources = {path.name: path.read_text(encoding="utf-8", errors="replace") for path in sorted(logs.glob("*.log"))}
    sources["stack process"] = "\n".join(in_process)
    known_mrns = {d.mrn for d in drops}
    for name, text in sources.items():
        found[name] += sum(1 for m in mrns.finditer(text) if m.group(0) in known_mrns)
        found[name] += sum(1 for _ in literal.finditer(text))
    return +found


def _where(found: collections.Counter[str]) -> str:
    return f" in {', '.join(f'{name} ({n})' for name, n in found.items())}" if found else ""


def _review_groups(
    ledger: DocumentLedger, reviewed: set[str], documents: list[dict[str, object]]
) -> tuple[dict[str, int], int]:
    """Every object that was NEEDS_REVIEW at some point, by how it ended: matched by evidence, resent by silence, left
    for a person, or otherwise (say, a late answer recorded); and how many hold a document Cobalt stored for another
    file (wrongly linked)."""
    filename = {str(d["document_id"]): str(d.get("filename")) for d in documents}
    groups: collections.Counter[str] = collections.Counter()
    wrong = 0
    for object_id in sorted(reviewed):
        item = ledger.get_object_by_id(object_id) or {}
        history = " ".join(str(h.get("reason")) for h in ledger.history(object_id, item))
        if item.get("status") == Status.NEEDS_REVIEW.value:
            groups["left for a person"] += 1
            check = item.get("silence")
            if "Not filed, by silence: resend approved" in history:
                why = "its resend met an ambiguous answer again"
            elif isinstance(check, dict):
                why = str(check.get("why") or check.get("verdict")).split(":")[0][:60]
            else:
                why = "not checked for silence yet"
            groups[f"  left: {why}"] += 1
        elif item.get("decided_by") == "reconciler (evidence)":
            groups["matched"] += 1
        elif "Not filed, by silence: resend approved" in history:
            groups["resent by silence"] += 1
        else:
            groups[f"otherwise ({item.get('status')})"] += 1
        document = item.get("document_id")
        if document and filename.get(str(document)) != str(item.get("key", "")).rsplit("/", 1)[-1]:
            wrong += 1
    return dict(groups), wrong


if __name__ == "__main__":
    raise SystemExit(main())

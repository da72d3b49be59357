"""`make model-reverts`: does the model-based test (tests/model) find defects 1, 2 and 6 of issue #25 by itself?

For each defect, a throwaway git worktree of HEAD gets that defect's fix taken out again (the exact lines below), and
the model walks it, with fresh random walks and no shrinking, until it reports a broken promise or the budget runs
out. Prints, per defect: found or not, after how many seconds, and the promise that broke. A fix whose lines are no
longer in the code fails loudly: this file then needs the new lines, never a silent "not found".

Figures are printed, never asserted (a walk's luck and the machine's noise both vary).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = "layers/docdrop/docdrop/ledger/documents.py"
FINGERPRINTS = "layers/docdrop/docdrop/ledger/fingerprints.py"
OBJECTS = "layers/docdrop/docdrop/ledger/objects.py"
REVIEW_MATCH = "layers/docdrop/docdrop/reconciler/reviews.py"
UPLOADER = "layers/docdrop/docdrop/uploader/core.py"
WALKS = "tests/model/test_interleavings.py"


@dataclass(frozen=True)
class Revert:
    number: int
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (file, the fixed line(s), the line(s) before the fix)


REVERTS = (
    Revert(
        1,
        "a review resolved as another upload's document",
        (
            (REVIEW_MATCH, "in_flight = p.in_flight_items()\n", "in_flight: list[dict[str, Any]] = []\n"),
            (
                REVIEW_MATCH,
                "documents = self._ledger.unjoined_documents(before=now - self._deadlines.outcome_grace)",
                "documents = self._ledger.unjoined_documents(before=now)",
            ),
            (
                DOCUMENTS,
                '" REMOVE " + removed, mine\n',  # link_document: the first object wins
                '" REMOVE " + removed, f"{mine} OR attribute_exists({e.n(\'pk\')})"\n',  # the last one does
            ),
        ),
    ),
    Revert(
        2,
        "two identical versions racing past a FAILED one both sent",
        (
            (
                FINGERPRINTS,
                '            holder, held_at = e.v(str(replacing.get("object_id"))), '
                'e.v(str(replacing.get("held_at")))\n'
                "            condition = f\"{free} OR ({e.n('object_id')} = {holder} "
                "AND {e.n('held_at')} = {held_at})\"\n",
                "            condition = f\"{free} OR attribute_exists({e.n('pk')})\"  # force=True: unconditional\n",
            ),
        ),
    ),
    Revert(
        6,
        "a resend of an already-SUBMITTED version loops to the dead-letter queue",
        (
            (OBJECTS, "if status not in RESENDABLE and RESEND_APPROVED not in removed:", "if False:"),
            (UPLOADER, "if current.get(RESEND_APPROVED) and status in RESENDABLE:", "if current.get(RESEND_APPROVED):"),
        ),
    ),
)


def _apply(tree: Path, revert: Revert) -> None:
    for file, fixed, before in revert.edits:
        path = tree / file
        text = path.read_text()
        if text.count(fixed) != 1:
            raise SystemExit(f"defect {revert.number}: its fix is no longer this line of {file}: {fixed.strip()!r}")
        path.write_text(text.replace(fixed, before))


def _walk(tree: Path, budget: float, log: Path, replay: bool = False) -> tuple[bool, float, str]:
    """Random walks on `tree` until a promise breaks or `budget` runs out; with `replay`, only the walks that broke one
    (Hypothesis keeps them in the tree's .hypothesis)."""
    env = {**os.environ, "MODEL_EXAMPLES": "1000000", "MODEL_DERANDOMIZE": "0", "MODEL_SHRINK": "0"}
    if replay:
        env["MODEL_REPLAY"] = "1"
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            # The random walks only: tests/model/test_found_walks.py replays these defects' walks step by step.
            [sys.executable, "-m", "pytest", WALKS, "-q", "-p", "no:cacheprovider", "--timeout=0", "-x"],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 15)
            process.wait()
            return False, time.monotonic() - started, ""
    elapsed = time.monotonic() - started
    text = log.read_text()
    broke = re.findall(r"^E\s+(?:AssertionError|tests\.model\.\S*Failed): (.+)$", text, re.MULTILINE)
    return code != 0, elapsed, (broke[0] if broke else f"pytest exited {code}: see {log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds of walking per defect")
    parser.add_argument("--defects", default="1,2,6")
    args = parser.parse_args(argv)
    chosen = {int(n) for n in args.defects.split(",")}
    logs = Path(tempfile.mkdtemp(prefix="model-reverts-"))
    rows = []
    for revert in (r for r in REVERTS if r.number in chosen):
        tree = logs / f"defect-{revert.number}"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), "HEAD"], cwd=ROOT, check=True)
        try:
            _apply(tree, revert)
            found, seconds, broke = _walk(tree, args.budget, logs / f"defect-{revert.number}.log")
            if found:  # the same walk, on the code with its fix: it must pass, or the find was not this defect's
                subprocess.run(["git", "checkout", "-q", "--", "layers"], cwd=tree, check=True)
                log = logs / f"defect-{revert.number}-replayed-with-the-fix.log"
                failed_again, _, again = _walk(tree, args.budget, log, replay=True)
                broke += f"; the same walk with the fix: {again if failed_again else 'every promise holds'}"
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
        rows.append((revert, found, seconds, broke))
        verdict = f"found in {seconds:.0f} s: {broke}" if found else f"not found in {seconds:.0f} s"
        print(f"defect {revert.number} ({revert.what}), fix reverted: {verdict}", flush=True)
    print(f"\nmodel-reverts: {sum(f for _, f, _, _ in rows)} of {len(rows)} found (logs in {logs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`make chaos` at 100 documents, as part of every test run, and its PHI scan shown able to fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.chaos_run import Drop, _phi_in_logs

REPO = Path(__file__).resolve().parents[2]


def test_a_chaos_run_of_100_documents_keeps_every_promise() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COBALT_", "LEDGER_", "DOCDROP_"))}
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos_run", "--documents", "100"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "documents in the EMR more than once:     0" in output
    assert "versions open after the grace period:    0" in output
    assert "PHI in log lines:                        0" in output
    assert "documents linked to another's upload:    0" in output
    assert "Every promise held." in output


def test_the_phi_scan_finds_an_mrn_a_note_and_a_key_in_any_log(tmp_path: Path) -> None:
    drops = [
        Drop(0, "chaos/00000/referral scan 123456.pdf", "70000000", "chaos note 000000001", False, False),
        Drop(1, "chaos/00001/labs scan 654321.pdf", "70000001", None, False, False),
    ]
    (tmp_path / "uploader.log").write_text('{"message": "cobalt answered", "timestamp": 1796061104195}\n')
    (tmp_path / "webhook.log").write_text('{"message": "handled", "document_id": "1700000001234567"}\n')
    assert not _phi_in_logs(drops, tmp_path, ["POST /v1/documents -> 200 (301 ms)"])  # look-alikes are no MRN

    (tmp_path / "reconciler.log").write_text('{"message": "oops", "mrn": "70000001"}\n')
    (tmp_path / "webhook.log").write_text('{"message": "oops", "notes": "chaos note 000000001"}\n')
    found = _phi_in_logs(drops, tmp_path, ["GET /inbox/chaos/00001/labs scan 654321.pdf"])
    assert found == {"reconciler.log": 1, "webhook.log": 1, "stack process": 1}

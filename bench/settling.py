"""What the runs through the local stack share: the ledger's count per status, and the wait for every document to
close, printed as it goes."""

from __future__ import annotations

import time

from docdrop.ledger import OPEN, DocumentLedger, Status


def status_counts(ledger: DocumentLedger) -> dict[Status, int]:
    """Object versions per status (one Scan of the table: settled states are in no index)."""
    counts = ledger.status_counts()
    return {status: counts.get(status.value, 0) for status in Status}


def wait_until_closed(ledger: DocumentLedger, documents: int, since: float, timeout: float) -> float | None:
    """Until `documents` versions are closed and none is open, printing the counts (seconds after `since`) whenever
    they change; the moment that happened, or None once `timeout` seconds after `since` have passed."""
    last = ""
    while time.monotonic() - since < timeout:
        counts = status_counts(ledger)
        open_now = sum(counts[s] for s in OPEN)
        closed = sum(counts[s] for s in Status if s not in OPEN)
        line = f"open {open_now}, closed {closed}"
        if line != last:
            print(f"  [{time.monotonic() - since:5.0f}s] {line}", flush=True)
            last = line
        if closed >= documents and open_now == 0:
            return time.monotonic()
        time.sleep(2)  # counting scans the table: not too often
    return None

"""How the command line prints: JSON with real numbers, tables and CSV, progress that suits a terminal or a pipe.

Tables and progress bars are rich's; JSON and CSV the standard library's.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import FrameType
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class OperatorError(Exception):
    """An expected failure: printed as `docdrop: <message>` without a traceback, with its exit code."""

    def __init__(self, message: str, exit_code: int = 4) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def plain_value(value: Any) -> Any:
    """A value as JSON should carry it: DynamoDB's Decimals as numbers, times as ISO 8601, sets as sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_value(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(plain_value(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


# A run of digits long enough to be an MRN (or a birth date, a phone number) quoted in a reason Cobalt or the EMR wrote.
_IDENTIFIER = re.compile(r"\d{4,}")
# The fields of a ledger item, history entry or Cobalt event that hold free text from Cobalt or the EMR.
REASON_FIELDS = frozenset({"reason", "failure_reason", "description", "message", "what_went_wrong", "cobalt_error"})


def mask_mrn(mrn: str | None) -> str:
    """An MRN as a person may see it by default: all but its last two characters hidden."""
    if not mrn:
        return "-"
    return "*" * max(0, len(mrn) - 2) + mrn[-2:]


def mask_identifiers(text: str) -> str:
    """`text` with every digit run of 4 or more masked as MRNs are (a reason from Cobalt may quote one)."""
    return _IDENTIFIER.sub(lambda m: mask_mrn(m.group()), text)


def mask_reasons(value: Any) -> Any:
    """`value` with its reason fields, at any depth, masked by `mask_identifiers`."""
    if isinstance(value, Mapping):
        return {
            k: mask_identifiers(v) if k in REASON_FIELDS and isinstance(v, str) else mask_reasons(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_reasons(v) for v in value]
    return value


def write_json(value: Any, out: TextIO) -> None:
    json.dump(plain_value(value), out, indent=2)
    out.write("\n")


def write_csv(header: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if cell is None else cell for cell in row] for row in rows])


def is_terminal(out: TextIO) -> bool:
    return bool(getattr(out, "isatty", lambda: False)())


def write_table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO, title: str | None = None) -> None:
    """Columns under an underlined header; on a terminal as wide as the terminal, in a pipe as wide as cells need."""
    table = Table(
        *header,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        title=title,
        title_justify="left",
    )
    for row in rows:
        table.add_row(*row)
    width = shutil.get_terminal_size().columns if is_terminal(out) else 1000
    rendered = io.StringIO()
    Console(file=rendered, width=width, highlight=False, soft_wrap=False, color_system=None).print(table)
    out.write("\n".join(line.rstrip() for line in rendered.getvalue().splitlines()) + "\n")


def shorten(text: str | None, limit: int) -> str:
    """One line of at most `limit` characters, `-` for nothing."""
    text = (text or "-").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def age_seconds(moment: str | None, now: datetime | None = None) -> float | None:
    if not moment:
        return None
    return max(0.0, ((now or datetime.now(UTC)) - datetime.fromisoformat(moment)).total_seconds())


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `6h`, `7d` (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:].lower()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or value < 0:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 6h or 7d")
    return timedelta(seconds=value * units[unit])


class WorkProgress:
    """Progress of long work: a bar with counts and ETA on a terminal, a plain line every few seconds in a pipe."""

    def __init__(self, label: str, total: int | None, out: TextIO, every_seconds: float = 5.0) -> None:
        self.label, self.total, self.out = label, total, out
        self.done = 0
        self.counts: dict[str, int] = {}
        self._every = every_seconds
        self._last = 0.0
        self._started = time.monotonic()
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> WorkProgress:
        if is_terminal(self.out):
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.out),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, counts="")
        return self

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, outcome: str, n: int = 1) -> None:
        self.done += n
        self.counts[outcome] = self.counts.get(outcome, 0) + n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, counts=self._counts())
            return
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self.out.write(self.line() + "\n")
            self.out.flush()

    def _counts(self) -> str:
        return ", ".join(f"{n} {name}" for name, n in self.counts.items())

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        of = f"/{self.total}" if self.total is not None else ""
        eta = ""
        if self.total and self.done and self.done < self.total:
            eta = f", ETA {human_duration(elapsed / self.done * (self.total - self.done))}"
        return f"{self.label}: {self.done}{of} ({self._counts() or 'nothing yet'}){eta}"

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def err(message: str) -> None:
    print(f"docdrop: {message}", file=sys.stderr)


class Interrupts:
    """Ctrl-C asks the work inside to stop between two steps instead of in the middle of one; a second Ctrl-C stops
    it at once. Outside the main thread (tests, embedding) it only offers `requested`."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ndocdrop: stopping after the current step (Ctrl-C again to stop now)", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

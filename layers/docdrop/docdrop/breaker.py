"""A circuit breaker on Cobalt, shared by every invocation of the uploader through one ledger item (promise 6).

After `failures` unavailable answers (429, 503, no connection) within `window`, Cobalt is considered down: uploads
are deferred to the queue without calling it, until `cool_down` has passed and one caller, holding a short lease, probes
with a real upload. The probe's answer closes the breaker or opens it again for twice as long (up to `max_cool_down`).
A 429's `Retry-After` holds back every upload for that long. The state is read at most every `cache_seconds` per
container, so a closed breaker costs no ledger call per document; it is written only when it changes.

An ambiguous answer (a read timeout, 500, 502, 504) counts as unavailable too, and Cobalt is trusted with many uploads
at once only while it is known to answer: `warm_until`, pushed on by its answers (written at most every half `warm`).
When it is not (a new stack, an idle hour, after an outage), one upload goes first, for every container, holding the
probe's lease; the others wait up to `cold_wait` for its answer, then go back to the queue. A first upload that gets no
answer opens the breaker at once. So a Cobalt that accepts connections and never answers makes one review per probe,
not one per upload in flight.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from docdrop.ledger import BreakerStore, parse_moment


@dataclasses.dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5
    window: timedelta = timedelta(minutes=1)
    cool_down: timedelta = timedelta(minutes=1)
    max_cool_down: timedelta = timedelta(minutes=15)
    cache_seconds: float = 2.0
    warm: timedelta = timedelta(minutes=5)  # how long an answer vouches for Cobalt: many uploads at once meanwhile
    probe_lease: timedelta = timedelta(seconds=45)  # the first upload's lease: at least its connect and read timeouts
    cold_wait: timedelta = timedelta(seconds=15)  # how long the others wait for its answer before going to the queue


@dataclasses.dataclass(frozen=True)
class Permission:
    """Whether to call Cobalt now: `defer_seconds` > 0 means not before then; `probe` marks the one trial call."""

    defer_seconds: float = 0.0
    probe: bool = False
    reason: str = ""
    wait: bool = False  # Cobalt is not known to answer and another upload is finding out: ask again shortly
    cold: bool = False  # this call is the first after a cold spell: no answer opens the breaker at once


class CobaltBreaker:
    def __init__(
        self,
        ledger: BreakerStore,
        settings: BreakerSettings | None = None,
        account: str = "default",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self.settings = settings or BreakerSettings()
        self.account = account
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self._read_at = float("-inf")

    def state(self, fresh: bool = False) -> dict[str, Any]:
        with self._lock:
            if fresh or self._monotonic() - self._read_at > self.settings.cache_seconds:
                self._state = self._ledger.breaker_state(self.account)
                self._read_at = self._monotonic()
            return dict(self._state)

    def _remember(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._state, self._read_at = state, self._monotonic()

    def before_call(self) -> Permission:
        state = self.state()
        now = self._clock()
        hold = parse_moment(state.get("hold_until"))
        if hold is not None and hold > now:
            return Permission((hold - now).total_seconds(), reason="Cobalt asked DocDrop to wait (Retry-After)")
        open_until = parse_moment(state.get("open_until"))
        if open_until is None:
            warm_until = parse_moment(state.get("warm_until"))
            if warm_until is not None and warm_until > now:
                return Permission()
            # Cold: one upload finds out whether Cobalt answers; the others wait for it (`wait_for_warmth`), and only
            # a caller that sees no live lease tries to take it (a conditional write).
            probe_until = parse_moment(state.get("probe_until"))
            lease = now + self.settings.probe_lease
            if (probe_until is None or probe_until <= now) and self._ledger.take_breaker_probe(
                self.account, now, lease
            ):
                self._remember({**state, "probe_until": lease.isoformat(timespec="microseconds")})
                return Permission(probe=True, cold=True)
            return Permission(reason=COLD_REASON, wait=True)
        if open_until > now:
            return Permission((open_until - now).total_seconds(), reason=_open_reason(state))
        # Cooled down: one caller probes; the others wait for its answer.
        if self._ledger.take_breaker_probe(self.account, now, now + self.settings.cool_down):
            return Permission(probe=True)
        return Permission(self.settings.cool_down.total_seconds(), reason=_open_reason(state))

    def wait_for_warmth(self, budget_seconds: float, sleep: Callable[[float], None] = time.sleep) -> Permission:
        """Ask again until Cobalt is known to answer, or is known not to, or `cold_wait` (within `budget_seconds`) is
        over: then the call goes back to the queue, for a little longer than the first upload's lease."""
        end = self._monotonic() + min(budget_seconds, self.settings.cold_wait.total_seconds())
        while True:
            permission = self.before_call()
            if not permission.wait:
                return permission
            if self._monotonic() >= end:
                return Permission(self.settings.probe_lease.total_seconds(), reason=COLD_REASON)
            sleep(WAIT_POLL_SECONDS)

    def after_call(
        self,
        unavailable: bool,
        retry_after_seconds: float | None = None,
        probe: bool = False,
        cold: bool = False,
        ambiguous: bool = False,
    ) -> None:
        now = self._clock()
        if unavailable:
            cool_down = self.settings.cool_down
            if probe and not cold:  # it is still down: open again, for longer
                previous = _seconds(self.state().get("cool_down_seconds")) or cool_down.total_seconds()
                cool_down = min(self.settings.max_cool_down, timedelta(seconds=previous * 2))
            state = self._ledger.record_breaker_failure(
                self.account,
                now,
                window=self.settings.window,
                # A recovery probe that fails, or a first upload that got no answer at all, opens it at once.
                threshold=1 if (probe and not cold) or (cold and ambiguous) else self.settings.failures,
                cool_down=cool_down,
                hold_until=now + timedelta(seconds=retry_after_seconds) if retry_after_seconds else None,
                probe=probe,
            )
            self._remember(state)
            return
        state = self.state()
        warm_until = parse_moment(state.get("warm_until"))
        stale = warm_until is None or warm_until - now < self.settings.warm / 2
        if stale or state.get("failures") or state.get("open_until") or state.get("hold_until"):
            # Cobalt answered: whatever it said, it is there; and it vouches for many uploads at once for a while.
            self._remember(self._ledger.close_breaker(self.account, warm_until=now + self.settings.warm))

    def open_seconds(self) -> float:
        """How long the breaker has been open (0 when closed): the reconciler's gauge and alarm."""
        state = self.state(fresh=True)
        opened = parse_moment(state.get("opened_at"))
        if opened is None or not state.get("open_until"):
            return 0.0
        return max(0.0, (self._clock() - opened).total_seconds())


def _seconds(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


COLD_REASON = "Cobalt has not answered lately: one upload finds out whether it does before the others are sent"
WAIT_POLL_SECONDS = 0.25


def _open_reason(state: dict[str, Any]) -> str:
    return (
        f"Cobalt is considered unavailable ({state.get('failures', 'several')} unavailable answers in a row): "
        "not called; DocDrop tries again when one probe succeeds"
    )

"""When a document Cobalt could not take (429, 503, no connection) is tried again: in the queue, with growing delays,
for about a day before its message reaches the dead-letter queue (promise 6).

The delay after the n-th receive of a message is the n-th step (1 min, 5 min, 15 min, 1 h by default), then the last
step again. The function sets it as the message's visibility timeout on the way out, so the waiting costs nothing.
The queue's `maxReceiveCount` is the number of receives that covers `MaxRetryHours` (the template maps one to the
other; a test holds them together).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

DEFAULT_STEPS_SECONDS = (60.0, 300.0, 900.0, 3600.0)
SQS_MAX_VISIBILITY_SECONDS = 43_200  # 12 hours


@dataclasses.dataclass(frozen=True)
class RetrySchedule:
    steps_seconds: tuple[float, ...] = DEFAULT_STEPS_SECONDS

    @classmethod
    def parse(cls, text: str | None) -> RetrySchedule:
        """`"60,300,900,3600"` (seconds); empty: the default."""
        if not text or not text.strip():
            return cls()
        steps = tuple(float(part) for part in text.split(","))
        if any(step <= 0 for step in steps):
            raise ValueError("retry steps must be positive seconds")
        return cls(steps)

    def delay_after(self, receive_count: int) -> int:
        """Seconds until the next receive, after the `receive_count`-th (1-based); whole seconds, as SQS takes them."""
        step = self.steps_seconds[min(max(receive_count, 1), len(self.steps_seconds)) - 1]
        return max(1, min(SQS_MAX_VISIBILITY_SECONDS, math.ceil(step)))

    def receives_for(self, hours: float) -> int:
        """The `maxReceiveCount` whose delays together first reach `hours`."""
        total, receives = 0.0, 0
        while total < hours * 3600:
            receives += 1
            total += self.delay_after(receives)
        return receives

    def total_seconds(self, receives: int) -> float:
        return float(sum(self.delay_after(n) for n in range(1, receives + 1)))

    @property
    def longest_seconds(self) -> int:
        return max(self.delay_after(n) for n in range(1, len(self.steps_seconds) + 1))


def steps_text(steps: Sequence[float]) -> str:
    return ",".join(f"{s:g}" for s in steps)

"""The time an invocation has left: what bounds every function's work (the uploader's batch, a reconciler pass)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Deadline:
    """The time an invocation has left, from Lambda's context."""

    def __init__(self, remaining_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + remaining_seconds

    @classmethod
    def from_context(cls, context: Any, default_seconds: float = 60.0) -> Deadline:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return cls(remaining() / 1000 if callable(remaining) else default_seconds)

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

"""The Cobalt sandbox for tests: on 127.0.0.1, fast outcomes, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from local.cobalt_sandbox import CobaltSandbox, FaultSettings, SandboxConfig


@contextmanager
def running_sandbox(processing_delay_seconds: float = 0.05, **config: Any) -> Iterator[CobaltSandbox]:
    settings = SandboxConfig.load()
    settings.processing_delay_seconds = processing_delay_seconds
    for name, value in config.items():
        setattr(settings, name, value)
    box = CobaltSandbox(settings, FaultSettings())
    box.serve(0)
    try:
        yield box
    finally:
        box.stop()

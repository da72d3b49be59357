"""Suite-wide guards: a run that collects or passes nothing fails loudly instead of looking green."""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter is not None else 0
    if exitstatus == 0 and passed == 0 and not session.config.option.collectonly:
        # Every test skipped or deselected: nothing was proven, so the run must not pass.
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED

"""Show what each fault test broke and what it counted, after the run."""

from __future__ import annotations

import pytest

from tests.reliability.harness import REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("fault injection: what was broken, what went in and came out")
        for line in REPORTS:
            terminalreporter.write_line(line)

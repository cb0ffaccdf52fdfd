"""bench.trace_account: the stage account of an upload from its spans."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bench.trace_account import stage_account

T0 = dt.datetime(2026, 12, 4, 4, 0, tzinfo=dt.UTC)


def _span(trace: str, name: str, start_ms: float, end_ms: float, parent: str | None = "p") -> dict[str, Any]:
    def at(ms: float) -> str:
        return (T0 + dt.timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")

    return {
        "name": name,
        "context": {"trace_id": trace, "span_id": f"{trace}-{name}"},
        "parent_id": parent,
        "start_time": at(start_ms),
        "end_time": at(end_ms),
    }


def test_the_account_lays_each_trace_out_against_its_request() -> None:
    spans = [
        # trace a: request 0-1000, publish 100-110, reduce 120-700 with a step inside, calibrate 710-900
        _span("a", "POST /upload", 0, 1000, parent="client"),
        _span("a", "publish", 100, 110),
        _span("a", "reduce", 120, 700),
        _span("a", "reduce.detect", 200, 400),
        _span("a", "calibrate", 710, 900),
        # trace b: the same shape 2x slower
        _span("b", "POST /upload", 5000, 7000, parent="client"),
        _span("b", "publish", 5200, 5220),
        _span("b", "reduce", 5240, 6400),
        _span("b", "calibrate", 6420, 6800),
        _span("c", "something else", 0, 10, parent=None),  # no request: not counted
    ]
    account = stage_account(spans, "POST /upload")
    assert account["traces"] == 2
    assert account["request_ms"] == 1500.0
    assert list(account["stages"]) == ["publish", "reduce", "reduce.detect", "calibrate"]
    assert account["stages"]["reduce"] == {"offset_ms": 180.0, "duration_ms": 870.0, "count": 2}
    assert account["stages"]["reduce.detect"]["count"] == 1
    # uncovered: a 1000 - (10 + 580 + 190) = 220; b 2000 - (20 + 1160 + 380) = 440; median 330
    assert account["uncovered_ms"] == 330.0

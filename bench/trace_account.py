"""Where the time of an upload goes, read from the spans the server wrote (``CPCS_OTEL_EXPORTER=file:``).

Each upload is one trace (``cpcs.tracing``): the HTTP request is its root, and the outbox publishes,
the consumers, reduce's steps and the cone lookups are its descendants. :func:`stage_account` lays
every trace out against its root's start and gives, per span name, the median start offset and
duration over the traces, plus how much of the request no span inside it covers (the HTTP answer's
own polling, parsing and writing).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def read_spans(folder: Path) -> list[dict[str, Any]]:
    """Every span in the JSON-lines files under ``folder``."""
    spans: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        spans.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return spans


def _ms(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e3


def _covered_ms(intervals: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Length of the union of ``intervals`` clipped to ``[start, end]``."""
    covered, reach = 0.0, start
    for low, high in sorted(intervals):
        low, high = max(low, reach), min(high, end)
        if high > low:
            covered += high - low
            reach = high
    return covered


def stage_account(spans: Sequence[dict[str, Any]], root_name: str) -> dict[str, Any]:
    """Per span name: median ``offset_ms`` (start after the root's) and ``duration_ms`` over the
    traces that hold a ``root_name`` span (the earliest is the root); ``uncovered_ms``: the median
    part of the root no other span of its trace covers; ``traces``: how many were read."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["context"]["trace_id"]].append(span)
    offsets: dict[str, list[float]] = defaultdict(list)
    durations: dict[str, list[float]] = defaultdict(list)
    uncovered: list[float] = []
    roots: list[float] = []
    for members in by_trace.values():
        named = [s for s in members if s["name"] == root_name]
        if not named:
            continue
        root = min(named, key=lambda s: _ms(s["start_time"]))
        start, end = _ms(root["start_time"]), _ms(root["end_time"])
        roots.append(end - start)
        inside = []
        for span in members:
            if span is root:
                continue
            low, high = _ms(span["start_time"]), _ms(span["end_time"])
            offsets[span["name"]].append(low - start)
            durations[span["name"]].append(high - low)
            inside.append((low, high))
        uncovered.append((end - start) - _covered_ms(inside, start, end))
    stages = {
        name: {
            "offset_ms": round(statistics.median(offsets[name]), 1),
            "duration_ms": round(statistics.median(durations[name]), 1),
            "count": len(durations[name]),
        }
        for name in sorted(durations, key=lambda n: statistics.median(offsets[n]))
    }
    return {
        "traces": len(roots),
        "request_ms": round(statistics.median(roots), 1) if roots else None,
        "uncovered_ms": round(statistics.median(uncovered), 1) if uncovered else None,
        "stages": stages,
    }

"""The chosen calibration as a static SVG: the picture the legacy upload page shows without scripts.

The observation page draws its plots with plotly.js; the legacy ``cgi/upload`` HTML answer (as the old
CPCS page did) shows the calibration as an image, so it must be drawn on the server. This draws the
observation page's first panel from the same payload (:func:`cpcs_api.web.calibration_plots.order_by_rank`):
catalogue against instrumental magnitude of the chosen survey/band, used stars filled, rejected ones
open, the fit line ``m_cat = m_inst + zp + colour_term * median colour`` and the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 52
USED, REJECTED, FIT, TARGET = "#1f5fbf", "#9a9a9a", "#d62728", "#ff9900"


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """About ``count`` round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    span = max(high - low, 1e-9)
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _finite_pairs(xs: Sequence[float | None], ys: Sequence[float | None], used: Sequence[bool]) -> list[Any]:
    return [
        (x, y, u)
        for x, y, u in zip(xs, ys, used, strict=True)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]


class _Frame:
    """Data coordinates to pixels."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]):
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range

    def x(self, value: float) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def _padded(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = max(0.05 * (high - low), 0.1)
    return low - pad, high + pad


def message_svg(text: str) -> str:
    """An image that says why there is no plot."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="80" viewBox="0 0 {WIDTH} 80">'
        f'<rect width="{WIDTH}" height="80" fill="#fff"/>'
        f'<text x="12" y="44" font-family="sans-serif" font-size="14" fill="#333">{escape(text[:200])}</text>'
        "</svg>"
    )


def calibration_svg(payload: dict[str, Any]) -> str:
    """The chosen survey/band's stars and fit as an SVG document (see the module docstring)."""
    chosen = next((entry for entry in payload.get("bands", []) if entry.get("chosen")), None)
    if chosen is None:
        return message_svg("No survey/band was chosen for this calibration.")
    stars = _finite_pairs(chosen["inst"], chosen["cat"], chosen["used"])
    if not stars:
        return message_svg(f"{chosen['label']}: no matched stars to show.")
    target = payload.get("target") or {}
    target_point = None
    if target.get("inst_mag") is not None and target.get("mag") is not None and not target["is_upper_limit"]:
        target_point = (float(target["inst_mag"]), float(target["mag"]))
    xs = [s[0] for s in stars] + ([target_point[0]] if target_point else [])
    ys = [s[1] for s in stars] + ([target_point[1]] if target_point else [])
    frame = _Frame(_padded(xs), _padded(ys))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(chosen['label'])} calibration</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
    ]
    for tick in nice_ticks(frame.x0, frame.x1):
        px = frame.x(tick)
        parts.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{HEIGHT - BOTTOM}" stroke="#eee"/>')
        parts.append(f'<text x="{px:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{tick:g}</text>')
    for tick in nice_ticks(frame.y0, frame.y1):
        py = frame.y(tick)
        parts.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{WIDTH - RIGHT}" y2="{py:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
        'fill="none" stroke="#888"/>'
    )
    if chosen.get("zp") is not None:
        offset = chosen["zp"] + (chosen.get("colour_term") or 0.0) * (chosen.get("median_colour") or 0.0)
        lo, hi = min(s[0] for s in stars), max(s[0] for s in stars)
        parts.append(
            f'<line class="fit" x1="{frame.x(lo):.1f}" y1="{frame.y(lo + offset):.1f}" '
            f'x2="{frame.x(hi):.1f}" y2="{frame.y(hi + offset):.1f}" stroke="{FIT}" stroke-width="1.5"/>'
        )
    for x, y, used in stars:
        style = f'fill="{USED}" fill-opacity="0.8"' if used else f'fill="none" stroke="{REJECTED}"'
        kind = "used" if used else "rejected"
        parts.append(f'<circle class="{kind}" cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3" {style}/>')
    if target_point is not None:
        tx, ty = frame.x(target_point[0]), frame.y(target_point[1])
        parts.append(
            f'<circle class="target" cx="{tx:.1f}" cy="{ty:.1f}" r="7" fill="{TARGET}" stroke="#663300"/>'
        )
    n_used = sum(1 for s in stars if s[2])
    caption = f"{chosen['label']}: {n_used} of {len(stars)} matched stars used"
    if chosen.get("scatter") is not None:
        caption += f", scatter {chosen['scatter']:.3f} mag"
    parts += [
        f'<text x="{LEFT}" y="22" font-size="14">{escape(caption)}</text>',
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 12}" text-anchor="middle">'
        "instrumental magnitude</text>",
        f'<text transform="translate(16 {(TOP + HEIGHT - BOTTOM) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(chosen["label"])} (catalogue)</text>',
        "</svg>",
    ]
    return "".join(parts)

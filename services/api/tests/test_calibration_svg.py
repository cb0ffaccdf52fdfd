"""The static calibration image: ticks, what it draws, and what it says when it cannot draw."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from cpcs_api.web.calibration_svg import HEIGHT, calibration_svg, message_svg, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(12.3, 17.8, [14, 16]), (0.0, 1.0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]), (-1.03, -0.97, [-1.02, -1.0, -0.98])],
)
def test_ticks_are_round_and_inside_the_range(low: float, high: float, expected: list[float]) -> None:
    ticks = nice_ticks(low, high, count=4 if high - low > 5 else 6)
    assert all(low <= t <= high for t in ticks)
    assert ticks[:3] == pytest.approx(expected[:3])


def _payload(inst: list[float | None], used: list[bool], zp: float = 25.0) -> dict:
    return {
        "bands": [
            {"label": "PS1/r", "chosen": False, "inst": [1.0], "cat": [2.0], "used": [True], "zp": 1.0},
            {
                "label": "APASS/V<b>",
                "chosen": True,
                "inst": inst,
                "cat": [None if m is None else m + zp for m in inst],
                "used": used,
                "zp": zp,
                "colour_term": 0.1,
                "median_colour": 0.5,
                "scatter": 0.021,
            },
        ],
        "target": {"inst_mag": -10.0, "mag": 15.05, "is_upper_limit": False},
    }


def test_the_chosen_band_is_drawn_with_its_fit_and_the_target() -> None:
    svg = calibration_svg(_payload([-12.0, -11.0, -10.5, None, -9.0], [True, True, False, True, True]))
    root = ET.fromstring(svg)  # well-formed, and the label's markup is escaped
    circles = root.findall(f"{SVG}circle")
    assert [c.get("class") for c in circles] == ["used", "used", "rejected", "used", "target"]
    assert "3 of 4 matched stars used, scatter 0.021 mag" in svg and "APASS/V&lt;b&gt;" in svg
    # The fit line m_cat = m_inst + zp + ct * median colour passes through the stars (all on zp + 0):
    # its ends are 0.05 mag above the stars at the same instrumental magnitude, i.e. higher on the page.
    [fit] = root.findall(f"{SVG}line[@class='fit']")
    first = next(c for c in circles if c.get("class") == "used")
    assert float(fit.get("x1")) == pytest.approx(float(first.get("cx")), abs=0.1)
    assert 0 < float(first.get("cy")) - float(fit.get("y1")) < 0.1 * HEIGHT
    # Brighter stars (smaller magnitudes) are further left and lower.
    xs = [float(c.get("cx")) for c in circles[:2]]
    ys = [float(c.get("cy")) for c in circles[:2]]
    assert xs[0] < xs[1] and ys[0] > ys[1]


def test_an_upper_limit_has_no_target_marker() -> None:
    payload = _payload([-12.0, -11.0], [True, True])
    payload["target"]["is_upper_limit"] = True
    assert 'class="target"' not in calibration_svg(payload)


def test_without_a_chosen_band_or_stars_the_image_says_why() -> None:
    payload = _payload([], [])
    assert "no matched stars" in calibration_svg(payload)
    payload["bands"] = payload["bands"][:1]
    assert "No survey/band was chosen" in calibration_svg(payload)
    message = message_svg("<script>alert(1)</script>")
    assert "<script>" not in message and re.search(r"&lt;script&gt;", message)
    ET.fromstring(message)

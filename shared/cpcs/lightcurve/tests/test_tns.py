"""The TNS bulk report of export rows, and its checker."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from cpcs.lightcurve.exports import export_rows
from cpcs.lightcurve.tns import TnsBot, check_tns_report, tns_marker, tns_report
from cpcs.schemas import PointOut

BOT = TnsBot(bot_id=77, bot_name="cpcs_bot", reporting_group_id=5, data_source_id=5)


def _point(pid: int, mjd: float, survey: str, band: str, *, limit: bool = False) -> PointOut:
    return PointOut(
        id=pid, alert_id=1, alert_name="ivo://AT2026abc", observation_id=pid, calibration_id=pid,
        observer="L. Hardy", observatory="pt5m", mjd=mjd, survey=survey, band=band,
        mag=19.5 if limit else 17.25, magerr=0.02, caliberr=0.03, mag_err_total=0.036,
        is_upper_limit=limit, limit_mag=19.5 if limit else 20.1, flux_ujy=None, flux_err_ujy=None,
        created_at=dt.datetime(2026, 12, 4, tzinfo=dt.UTC),
    )  # fmt: skip


def _report() -> dict:  # type: ignore[type-arg]
    rows = export_rows(
        [
            _point(3, 60003.0, "PS1", "r"),
            _point(1, 60001.0, "APASS", "V", limit=True),
            _point(2, 60002.0, "2MASS", "J"),
            _point(4, 60004.0, "APASS", "V", limit=True),
        ]
    )
    built = tns_report("ivo://AT2026abc", 150.0, -30.0, rows, BOT)
    assert built.skipped == ((2, "no TNS filter id for 2MASS J"),) and built.n_points == 3
    return built.report


def test_the_last_limit_before_the_first_detection_is_the_non_detection() -> None:
    report = _report()
    assert check_tns_report(report) == []
    at = report["at_report"]["0"]
    assert (
        at["non_detection"]["obsdate"].startswith("2023-02-26")
        and at["non_detection"]["limiting_flux"] == "19.500"
    )
    assert "flux" not in at["non_detection"]
    group = at["photometry"]["photometry_group"]
    assert [(e["filter_value"], e["flux"]) for e in group.values()] == [(57, "17.250"), (12, "")]
    assert at["discovery_datetime"].startswith("2023-02-28") and at["ra"] == {"value": 150.0}
    assert group["0"]["instrument_value"] == 0 and "pt5m" in group["0"]["comments"]


def test_limits_alone_are_no_report() -> None:
    with pytest.raises(ValueError, match="detection"):
        tns_report("ivo://x", 1.0, 1.0, export_rows([_point(1, 60001.0, "APASS", "V", limit=True)]), BOT)


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("photometry", "photometry_group", "0", "filter_value"), 9999, "filter_value"),
        (("photometry", "photometry_group", "0", "flux"), "bright", "needs flux"),
        (("photometry", "photometry_group", "0", "obsdate"), "yesterday", "obsdate"),
        (("non_detection", "limiting_flux"), "", "limiting_flux"),
        (("dec",), {"value": 95.0}, "dec.value"),
        (("reporting_group_id",), "five", "reporting_group_id"),
    ],
)
def test_the_checker_finds_each_broken_rule(path: tuple[str, ...], value: object, problem: str) -> None:
    report = copy.deepcopy(_report())
    target = report["at_report"]["0"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(problem in found for found in check_tns_report(report)), check_tns_report(report)


def test_the_marker_is_json_after_its_name() -> None:
    marker = tns_marker(BOT)
    assert marker.startswith("tns_marker") and json.loads(marker.removeprefix("tns_marker")) == {
        "tns_id": 77, "type": "bot", "name": "cpcs_bot"
    }  # fmt: skip

"""The AAVSO Extended File of export rows, checked against the format's rules."""

from __future__ import annotations

import datetime as dt

import pytest

from cpcs.lightcurve.aavso import FIELDS, aavso_filter, aavso_report, check_aavso_report
from cpcs.lightcurve.exports import export_rows
from cpcs.schemas import PointOut


def _point(pid: int, survey: str, band: str, mag: float, *, limit: bool = False) -> PointOut:
    return PointOut(
        id=pid, alert_id=1, alert_name="ivo://Gaia16aye", observation_id=pid, calibration_id=pid,
        observer="K. Rybicki", observatory="Ostrowik", mjd=57737.5 + pid, survey=survey, band=band,
        mag=mag, magerr=0.02, caliberr=0.03, mag_err_total=0.036, is_upper_limit=limit,
        limit_mag=19.2 if limit else 19.0, flux_ujy=None, flux_err_ujy=None,
        created_at=dt.datetime(2026, 12, 4, tzinfo=dt.UTC),
    )  # fmt: skip


def test_points_become_lines_that_follow_the_rules() -> None:
    rows = export_rows([_point(1, "GaiaSP", "V", 15.1234), _point(2, "APASS", "V", 18.9, limit=True)])
    report = aavso_report(rows, "RKA01", "CPCS 0.1.0")
    assert check_aavso_report(report.text) == []
    lines = report.text.splitlines()
    assert lines[:6] == [
        "#TYPE=EXTENDED", "#OBSCODE=RKA01", "#SOFTWARE=CPCS 0.1.0", "#DELIM=,", "#DATE=JD", "#OBSTYPE=CCD"
    ]  # fmt: skip
    detection = dict(zip(FIELDS, lines[7].split(","), strict=True))
    assert detection["NAME"] == "Gaia16aye" and detection["DATE"] == "2457739.00000"
    assert detection["MAG"] == "15.123" and detection["MERR"] == "0.036" and detection["FILT"] == "V"
    assert detection["MTYPE"] == "STD" and detection["CNAME"] == "ENSEMBLE" and detection["CHART"] == "GaiaSP"
    limit = dict(zip(FIELDS, lines[8].split(","), strict=True))
    assert limit["MAG"] == "<19.200" and limit["MERR"] == "na"  # the image's limit, fainter-than
    assert report.n_observations == 2 and report.skipped == ()


def test_filter_codes_come_from_the_band_registry() -> None:
    assert [aavso_filter("V", b) for b in ("B", "V", "R", "I", "g", "r", "i", "Ks")] == [
        "B", "V", "R", "I", "SG", "SR", "SI", "K"
    ]  # fmt: skip
    assert aavso_filter("Clear", "V") == "CV" and aavso_filter("Clear", "R") == "CR"
    assert aavso_filter("Clear", "r") is None and aavso_filter("V", "G") is None


def test_a_band_without_a_code_is_left_out_and_said_so() -> None:
    rows = export_rows([_point(1, "Gaia", "G", 15.0), _point(2, "APASS", "B", 16.0)])
    report = aavso_report(rows, "RKA01", "CPCS")
    assert report.n_observations == 1 and report.skipped == ((1, "no AAVSO filter code for Gaia G"),)
    assert check_aavso_report(report.text) == []


def test_text_with_the_delimiter_stays_inside_its_field() -> None:
    point = _point(1, "APASS", "V", 15.0).model_copy(update={"alert_name": "ivo://odd,name#1"})
    text = aavso_report(export_rows([point]), "RKA01", "CPCS").text
    assert check_aavso_report(text) == [] and "odd name 1" in text


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("2457739.00000", "2457739"), "DATE"),
        (("15.000", "15"), "MAG"),
        ((",V,", ",Q,"), "FILT"),
        (("ENSEMBLE", "ENSEMBLE,x"), "fields"),
        (("#TYPE=EXTENDED\n", ""), "missing parameters"),
        (("#OBSTYPE=CCD\n", "#OBSTYPE=CCD\n\n"), "blank"),
        ((",STD,", ",DIF,"), "CMAG"),
    ],
)
def test_the_checker_finds_each_broken_rule(change: tuple[str, str], problem: str) -> None:
    text = aavso_report(export_rows([_point(1, "APASS", "V", 15.0)]), "RKA01", "CPCS").text
    assert check_aavso_report(text) == []
    broken = text.replace(*change)
    assert broken != text
    assert any(problem in found for found in check_aavso_report(broken)), check_aavso_report(broken)


def test_an_observer_code_is_checked() -> None:
    with pytest.raises(ValueError, match="observer code"):
        aavso_report([], "no code!", "CPCS")

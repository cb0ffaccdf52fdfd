"""The AUTO choice says which surveys were not tried because the field is outside their sky."""

from __future__ import annotations

import pytest

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.errors import CalibrationFailed
from cpcs.science.field_calibration import calibrate_field
from cpcs.science.selection import not_tried_reason
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field


def _references(field: SimulatedField, surveys: set[str]) -> dict[str, ReferenceCatalogue]:
    return {
        ref.survey: ReferenceCatalogue(ref.survey, ref.ra_deg, ref.dec_deg, dict(ref.mags), dict(ref.magerrs))
        for ref in field.references
        if ref.survey in surveys
    }


def _calibrate(field: SimulatedField, ra: float, dec: float, surveys: set[str], **kwargs: object):  # type: ignore[no-untyped-def]
    return calibrate_field(
        field.ra_deg,
        field.dec_deg,
        field.mag,
        field.magerr,
        target_ra_deg=ra,
        target_dec_deg=dec,
        references=_references(field, surveys),
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_southern_field_records_ps1_and_sdss_as_not_tried_outside_coverage() -> None:
    field = simulate_field(31, n_stars=400, ra_deg=150.0, dec_deg=-60.0, target="bright")
    result = _calibrate(field, 150.0, -60.0, {"GaiaSP"})  # the cone service had no PS1 there
    assert result.survey == "GaiaSP"
    not_tried = {a.survey: a for a in result.alternatives if a.reason.startswith("not tried")}
    assert set(not_tried) == {"PS1", "SDSS"}  # fetchable surveys only; SkyMapper covers the field
    ps1 = not_tried["PS1"]
    assert ps1.reason == not_tried_reason("PS1", "Pan-STARRS1 3pi: dec >= -30 deg")
    assert ps1.reason.startswith("not tried: outside PS1 coverage")
    assert (ps1.band, ps1.n_stars, ps1.score) == ("*", 0, None)
    ranks = [a.rank for a in result.alternatives]
    assert ranks == list(range(1, len(ranks) + 1))  # after every band that was tried
    assert result.alternatives[0].survey == "GaiaSP" and result.alternatives[0].reason.startswith("chosen")


def test_a_northern_field_has_no_ps1_or_sdss_note_and_still_uses_ps1() -> None:
    field = simulate_field(32, n_stars=400, ra_deg=295.0, dec_deg=30.1, target="bright")
    result = _calibrate(field, 295.0, 30.1, {"GaiaSP", "PS1"})
    surveys_tried = {a.survey for a in result.alternatives if not a.reason.startswith("not tried")}
    assert "PS1" in surveys_tried
    not_tried = {a.survey for a in result.alternatives if a.reason.startswith("not tried")}
    assert not_tried == {"SkyMapper"}  # SkyMapper stops near +28
    assert all(
        "outside SkyMapper coverage" in a.reason for a in result.alternatives if a.survey == "SkyMapper"
    )


def test_forcing_a_survey_outside_its_coverage_says_so() -> None:
    field = simulate_field(33, n_stars=300, ra_deg=150.0, dec_deg=-60.0, target="bright")
    with pytest.raises(CalibrationFailed) as err:
        _calibrate(field, 150.0, -60.0, {"GaiaSP"}, force_filter="PS1/r")
    assert err.value.code == "forced_band_unavailable"
    assert "outside PS1 coverage" in err.value.message and "GaiaSP" in err.value.message
    # a survey that covers the field but has no stars keeps the ordinary answer
    with pytest.raises(CalibrationFailed) as other:
        _calibrate(field, 150.0, -60.0, {"GaiaSP"}, force_filter="SkyMapper/r")
    assert other.value.code == "forced_band_unavailable" and "coverage" not in other.value.message

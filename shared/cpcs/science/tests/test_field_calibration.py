"""The whole field calibration on simulated fields: band choice, forced modes, target, limits, colours."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.errors import CalibrationFailed
from cpcs.science.bands import band_family
from cpcs.science.field_calibration import _in_family, calibrate_field
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field

RA, DEC = 210.0, -12.0


def _references(field: SimulatedField) -> dict[str, ReferenceCatalogue]:
    return {
        ref.survey: ReferenceCatalogue(
            survey=ref.survey,
            ra_deg=ref.ra_deg,
            dec_deg=ref.dec_deg,
            mags=dict(ref.mags),
            errs=dict(ref.magerrs),
        )
        for ref in field.references
    }


def _run(field: SimulatedField, **kwargs: object):  # type: ignore[no-untyped-def]
    return calibrate_field(
        field.ra_deg,
        field.dec_deg,
        field.mag,
        field.magerr,
        target_ra_deg=RA,
        target_dec_deg=DEC,
        references=_references(field),
        **kwargs,  # type: ignore[arg-type]
    )


def test_auto_picks_the_band_closest_to_the_instrument_and_recovers_the_target() -> None:
    field = simulate_field(21, n_stars=500, ra_deg=RA, dec_deg=DEC, target="bright")
    result = _run(field)
    closest = min(field.truth.bands, key=lambda b: abs(b.colour_term))
    assert (result.survey, result.band) == (closest.survey, closest.band)
    assert result.mode == "AUTO"
    assert abs(result.fit.zp - closest.zp) < 0.02
    target = field.target
    assert target is not None and not result.target.is_upper_limit
    true_mag = target.true_inst_mag + closest.zp + closest.colour_term * target.true_colour
    assert abs(result.target.mag - true_mag) < 3 * result.target.err_total
    assert result.alternatives[0].rank == 1 and len(result.alternatives) == len(field.truth.bands)


def test_forced_modes() -> None:
    field = simulate_field(22, n_stars=400, ra_deg=RA, dec_deg=DEC)
    forced = _run(field, force_filter="PS1/g")
    assert (forced.mode, forced.survey, forced.band) == ("FORCED", "PS1", "g")
    truth = field.truth.band("PS1", "g")
    assert abs(forced.fit.colour_term - truth.colour_term) < 0.03
    any_v = _run(field, force_filter="any/V")
    assert (any_v.survey, any_v.band) == ("GaiaSP", "V")
    with pytest.raises(CalibrationFailed) as error:
        _run(field, force_filter="SDSS/u")
    assert error.value.code == "forced_band_unavailable"


def test_same_night_colour_replaces_the_default() -> None:
    field = simulate_field(23, n_stars=400, ra_deg=RA, dec_deg=DEC)
    unknown = _run(field, force_filter="GaiaSP/V")
    assert unknown.target.colour_assumed == 0.0 and unknown.target.colour_err_assumed == 0.5
    known = _run(field, force_filter="GaiaSP/V", same_night_mags={"B": (16.9, 0.02), "V": (16.3, 0.02)})
    assert known.colour_index == "B-V"
    assert known.target.colour_assumed == pytest.approx(0.6)
    assert known.target.colour_err_assumed == pytest.approx(np.hypot(0.02, 0.02))
    assert known.target.err_colour < unknown.target.err_colour


@pytest.mark.parametrize(
    ("declared", "band", "expected"),
    [
        ("r'", "r", True),
        ("sdss_r", "r", True),
        ("r", "R", True),  # Sloan r and Cousins R are one family: AUTO chooses the survey
        ("Rc", "r", True),
        ("r", "G", False),  # Gaia G is near r in wavelength, but no r band
        ("Clear", "r", False),  # Clear fixes no family: every band competes
        ("Rc", "i", False),
        ("V", "g", False),
    ],
)
def test_the_declared_filter_fixes_the_band_family(declared: str, band: str, expected: bool) -> None:
    assert _in_family(band, band_family(declared)) is expected


def test_undetected_target_gives_an_upper_limit() -> None:
    field = simulate_field(25, n_stars=500, ra_deg=RA, dec_deg=DEC, target="undetected")
    result = _run(field)
    assert result.target.is_upper_limit and result.target_inst_mag is None
    closest = field.truth.band(result.survey, result.band)
    true_limit = field.truth.limit_inst_mag_5sigma + closest.zp
    assert abs(result.target.mag - true_limit) < 0.3


def test_catalogue_off_the_references_fails_with_the_manuals_advice() -> None:
    field = simulate_field(26, n_stars=300, ra_deg=RA, dec_deg=DEC)
    shifted_ra = field.ra_deg + 20 / 3600 / np.cos(np.radians(DEC))  # off by 20": chance matches only
    with pytest.raises(CalibrationFailed) as error:
        calibrate_field(
            shifted_ra,
            field.dec_deg,
            field.mag,
            field.magerr,
            target_ra_deg=RA,
            target_dec_deg=DEC,
            references=_references(field),
        )
    assert error.value.code == "poor_calibration" and "astrometry" in error.value.message
    far_ra = field.ra_deg + 60 / 3600 / np.cos(np.radians(DEC))  # off by a whole arcminute
    with pytest.raises(CalibrationFailed) as error:
        calibrate_field(
            far_ra,
            field.dec_deg,
            field.mag,
            field.magerr,
            target_ra_deg=RA,
            target_dec_deg=DEC,
            references=_references(field),
        )
    assert error.value.code == "too_few_matches" and "matching radius" in error.value.message

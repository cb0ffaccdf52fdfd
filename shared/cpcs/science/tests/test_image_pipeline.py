"""The image path's science end to end on simulated frames: reduce, then calibrate against PS1."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.science.field_calibration import calibrate_field
from cpcs.science.image_reduction import reduce_image
from cpcs.science.imaging.header import standardise_header
from cpcs.simulation.image_simulator import SimulatedImage, simulate_image


def _reduce_and_calibrate(image: SimulatedImage, **calibration: object):  # type: ignore[no-untyped-def]
    target = image.target
    assert target is not None
    header = standardise_header(image.header)
    result = reduce_image(
        image.data,
        header,
        image.references["Gaia"],
        target_ra_deg=target.ra_deg,
        target_dec_deg=target.dec_deg,
    )
    sources = result.sources
    calibration = {"force_filter": "PS1/r", **calibration}
    field = calibrate_field(
        np.asarray(sources["RA"]),
        np.asarray(sources["DEC"]),
        np.asarray(sources["MAG_APER"]),
        np.asarray(sources["MAGERR_APER"]),
        target_ra_deg=target.ra_deg,
        target_dec_deg=target.dec_deg,
        references={"PS1": image.references["PS1"]},
        forced_target=result.forced_target(),
        **calibration,  # type: ignore[arg-type]
    )
    return result, field


def test_strong_colour_term_and_zero_point_gradient_are_corrected() -> None:
    """Colour term 0.12 and a 0.05 mag zero-point gradient: the target comes back within 0.015 mag."""
    image = simulate_image(
        31,
        shape=(2048, 2048),
        zp=27.5,
        colour_term=0.12,
        zp_gradient_mag=0.05,
        target="bright",
        target_colour=0.9,
    )
    target = image.target
    assert target is not None
    # The observer knows the target's colour from the same night (PS1 g - r here).
    g_minus_r = target.true_colour
    night = {"g": (target.true_mag + g_minus_r, 0.01), "r": (target.true_mag, 0.01)}
    _, field = _reduce_and_calibrate(image, same_night_mags=night)
    assert field.fit.spatial_order >= 1, "the 0.05 mag gradient must be fitted"
    assert abs(field.fit.colour_term - 0.12) < 0.03
    assert field.target.colour_assumed == pytest.approx(g_minus_r)
    assert abs(field.target.mag - target.true_mag) < 0.015

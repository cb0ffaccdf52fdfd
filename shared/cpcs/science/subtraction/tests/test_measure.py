"""The subtraction step as reduce runs it: both frames prepared, the target measured on the difference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs import WCS

from cpcs.science.subtraction.measure import SubtractionImpossible, measure_difference
from cpcs.simulation.transient_simulator import EpochPair, simulate_epoch_pair


@pytest.fixture(scope="module")
def pair() -> EpochPair:
    return simulate_epoch_pair(1, shape=(512, 512), star_density=3.0, transient_snr=30.0)


def _measure(pair: EpochPair, template_wcs: WCS):
    gain = pair.science.truth.gain_e_per_adu
    return measure_difference(
        pair.science.data,
        pair.science.true_wcs,
        pair.template.data,
        template_wcs,
        target_x=float(pair.transient_x[0]),
        target_y=float(pair.transient_y[0]),
        gain_e_per_adu=gain,
        saturation_adu=pair.science.truth.saturation_adu,
        template_gain_e_per_adu=pair.template.truth.gain_e_per_adu,
        template_saturation_adu=pair.template.truth.saturation_adu,
        exptime_s=None,
    )


def test_the_transient_is_measured_on_the_difference(pair: EpochPair) -> None:
    measured = _measure(pair, pair.template.true_wcs)
    to_adu = 2.5 * math.log10(pair.science.truth.gain_e_per_adu)  # magnitudes are of electrons
    error = measured.target.mag_inst + to_adu - float(pair.transient_inst_mag[0])
    # S/N 30 (0.036 mag): the injected flux within 0.05 mag (measured -0.011).
    assert abs(error) < 0.05, error
    assert 20 < measured.target.snr < 40
    assert measured.coverage > 0.9
    assert measured.template_fwhm_px < measured.science_fwhm_px  # the simulator's template is sharper
    near = [
        c
        for c in measured.candidates
        if c.accepted and math.hypot(c.x - pair.transient_x[0], c.y - pair.transient_y[0]) < 2.0
    ]
    assert len(near) == 1
    assert {"prepare_science", "prepare_template", "align", "subtract", "target", "candidates"} <= set(
        measured.timings_ms
    )


def test_a_template_elsewhere_on_the_sky_is_refused(pair: EpochPair) -> None:
    elsewhere = pair.template.true_wcs.deepcopy()
    elsewhere.wcs.crval = np.asarray(elsewhere.wcs.crval) + np.array([1.0, 0.0])
    with pytest.raises(SubtractionImpossible) as refused:
        _measure(pair, elsewhere)
    assert refused.value.code == "template_overlap_too_small"

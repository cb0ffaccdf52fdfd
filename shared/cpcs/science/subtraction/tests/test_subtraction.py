"""Subtraction of a template of other seeing, sky and pointing: transients on bright hosts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from cpcs.science.subtraction import (
    AlignedTemplate,
    SubtractionResult,
    align_template,
    difference_photometry,
    subtract_template,
)
from cpcs.science.subtraction.tests._reduction import Reduced, reduce_frame
from cpcs.simulation.transient_simulator import EpochPair, simulate_epoch_pair


@dataclass(frozen=True, eq=False)
class _Case:
    pair: EpochPair
    science: Reduced
    template: Reduced
    aligned: AlignedTemplate
    result: SubtractionResult


@pytest.fixture(scope="module")
def case() -> _Case:
    pair = simulate_epoch_pair(11, shape=(1024, 1024), n_hosts=9, transient_snr=30.0)
    sci = reduce_frame(pair.science, pair.transient_x, pair.transient_y)
    tpl = reduce_frame(pair.template, np.zeros(0), np.zeros(0))
    aligned = align_template(
        pair.template.data,
        pair.template.true_wcs,
        pair.science.true_wcs,
        pair.science.data.shape,
        template_noise=tpl.noise,
        template_mask=tpl.mask,
    )
    result = subtract_template(
        pair.science.data,
        sci.noise,
        aligned,
        science_fwhm_px=sci.psf.fwhm_px,
        template_fwhm_px=tpl.psf.fwhm_px,
        science_mask=sci.mask,
        exclude_xy=np.column_stack([pair.transient_x, pair.transient_y]),
    )
    return _Case(pair, sci, tpl, aligned, result)


def test_template_is_another_epoch(case: _Case) -> None:
    sci, tpl = case.pair.science.truth, case.pair.template.truth
    assert tpl.fwhm_arcsec < sci.fwhm_arcsec
    assert tpl.sky_e_per_pix != sci.sky_e_per_pix
    assert abs(tpl.rotation_deg - sci.rotation_deg) > 0.5
    assert (
        math.hypot(tpl.centre_ra_deg - sci.centre_ra_deg, tpl.centre_dec_deg - sci.centre_dec_deg) > 5 / 3600
    )
    # Aligned: nearly the whole science frame is covered, and the kernel keeps the flux scale.
    assert 0.95 < case.aligned.coverage < 1.0
    assert case.result.convolved == "template" and case.result.psf_of == "science"
    assert case.result.kernel_sum == pytest.approx(1.0, abs=0.05)


def test_difference_noise_map_describes_the_scatter(case: _Case) -> None:
    chi = case.result.difference / case.result.noise
    usable = np.isfinite(chi)
    # Robust scatter over the frame (stars, hosts and transients are a small fraction of pixels).
    robust = 1.4826 * float(np.median(np.abs(chi[usable] - np.median(chi[usable]))))
    assert robust == pytest.approx(1.0, abs=0.08)


def test_transients_on_bright_hosts(case: _Case) -> None:
    pair = case.pair
    gain = pair.science.truth.gain_e_per_adu
    to_adu = 2.5 * math.log10(gain)  # measured magnitudes are of electrons
    diff = [
        difference_photometry(case.result, case.science.psf, x, y, gain_e_per_adu=gain)
        for x, y in zip(pair.transient_x, pair.transient_y, strict=True)
    ]
    diff_mag = np.array([m.mag_inst + to_adu for m in diff])
    diff_err = np.array([m.magerr_inst for m in diff])
    direct_mag = np.array([m.mag_inst + to_adu for m in case.science.direct])
    # Against the true total flux, and on the flux scale of the same frame's stars measured the same
    # way (forced PSF photometry: what a zero point from the stars absorbs).
    raw = diff_mag - pair.transient_inst_mag
    offset = raw - case.science.star_offset_mag
    bias_raw, bias = float(np.mean(raw)), float(np.mean(offset))
    print(
        f"difference - truth {np.round(raw, 3)}, mean {bias_raw:+.4f} mag; stars' scale "
        f"{case.science.star_offset_mag:+.4f}, mean on it {bias:+.4f}; errors {np.round(diff_err, 3)}"
    )
    print(f"direct - truth {np.round(direct_mag - pair.transient_inst_mag, 3)}")
    assert np.all(np.array([m.snr for m in diff]) > 20)
    # Nine transients, each at S/N ~30 (error ~0.04 mag): the mean is within 0.03 mag of the truth;
    # on the stars' scale within 0.05 mag (see the report: the two scales differ by ~0.03 mag).
    assert abs(bias_raw) < 0.03
    assert abs(bias) < 0.05
    assert np.all(np.abs(raw) < 3.0 * diff_err + 0.03)
    # Errors describe the scatter.
    assert float(np.std(offset / diff_err)) < 1.6
    # The direct measurement takes the host's light: far too bright.
    assert np.all(direct_mag - pair.transient_inst_mag - case.science.star_offset_mag < -0.3)
    # The 5-sigma limit of the difference is below the transient's brightness (S/N 30 > 5).
    limits = np.array([m.limit_mag_inst_5sigma + to_adu for m in diff])
    assert np.all(limits - pair.transient_inst_mag == pytest.approx(2.5 * math.log10(30 / 5), abs=0.35))


def test_refuses_mismatched_grids(case: _Case) -> None:
    with pytest.raises(ValueError, match="shape"):
        subtract_template(
            case.pair.science.data[:512],
            case.science.noise[:512],
            case.aligned,
            science_fwhm_px=3.0,
            template_fwhm_px=2.0,
        )

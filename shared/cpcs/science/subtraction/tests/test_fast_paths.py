"""The fast paths of the subtraction: the affine pixel mapping and the kernel fitted on stamps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs import WCS

from cpcs.science.subtraction import align_template, difference_photometry, subtract_template
from cpcs.science.subtraction.align import pixel_mapping
from cpcs.science.subtraction.tests._reduction import reduce_frame
from cpcs.simulation.transient_simulator import simulate_epoch_pair


def _tan(crval: tuple[float, float], scale_deg: float, rotation_deg: float, shape: tuple[int, int]) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    wcs.wcs.cd = scale_deg * np.array([[-c, s], [s, c]])
    return wcs


def _exact_yx(template_wcs: WCS, science_wcs: WCS, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    tx, ty = template_wcs.world_to_pixel_values(*science_wcs.pixel_to_world_values(x, y))
    return np.stack([ty, tx])


def test_affine_mapping_error_is_measured_and_bounded() -> None:
    shape = (512, 512)
    science = _tan((150.0, 2.0), 0.4 / 3600, 0.0, shape)
    template = _tan((150.002, 2.001), 0.38 / 3600, 1.5, shape)
    mapping = pixel_mapping(template, science, shape)
    assert mapping.affine
    assert mapping.max_affine_error_px < 0.01
    # Every pixel (a random sample of them) is where the exact transform puts it, within the bound.
    rng = np.random.default_rng(3)
    iy, ix = rng.integers(0, 512, 2000), rng.integers(0, 512, 2000)
    exact = _exact_yx(template, science, ix.astype(float), iy.astype(float))
    error = np.hypot(*(mapping.template_yx[:, iy, ix] - exact))
    assert float(error.max()) <= max(mapping.max_affine_error_px * 1.5, 1e-6)


def test_wide_field_falls_back_to_the_exact_mapping() -> None:
    # 20 arcsec pixels, 512 px: a 2.8 degree field, where two tangent points ~1 degree apart
    # differ from an affine map by pixels.
    shape = (512, 512)
    science = _tan((150.0, 60.0), 20.0 / 3600, 0.0, shape)
    template = _tan((151.5, 60.8), 20.0 / 3600, 3.0, shape)
    mapping = pixel_mapping(template, science, shape)
    assert not mapping.affine
    assert mapping.max_affine_error_px > 0.01
    yy, xx = np.mgrid[:512:37, :512:41].astype(float)
    exact = _exact_yx(template, science, xx, yy)
    assert np.allclose(mapping.template_yx[:, ::37, ::41], exact, atol=1e-9)


def test_kernel_on_stamps_subtracts_static_stars() -> None:
    pair = simulate_epoch_pair(5, shape=(1024, 1024), n_hosts=6, transient_snr=30.0)
    sci = reduce_frame(pair.science, np.zeros(0), np.zeros(0))
    tpl = reduce_frame(pair.template, np.zeros(0), np.zeros(0))
    aligned = align_template(
        pair.template.data,
        pair.template.true_wcs,
        pair.science.true_wcs,
        pair.science.data.shape,
        template_noise=tpl.noise,
        template_mask=tpl.mask,
    )
    exact = align_template(
        pair.template.data,
        pair.template.true_wcs,
        pair.science.true_wcs,
        pair.science.data.shape,
        template_noise=tpl.noise,
        template_mask=tpl.mask,
        max_affine_error_px=0.0,
    )
    assert aligned.affine and not exact.affine
    # The affine resampling is the exact one to a tiny fraction of the noise.
    both = ~aligned.mask & ~exact.mask
    assert float(np.max(np.abs(aligned.data - exact.data)[both] / aligned.noise[both])) < 0.02
    result = subtract_template(
        pair.science.data,
        sci.noise,
        aligned,
        science_fwhm_px=sci.psf.fwhm_px,
        template_fwhm_px=tpl.psf.fwhm_px,
        science_mask=sci.mask,
        exclude_xy=np.column_stack([pair.transient_x, pair.transient_y]),
        fit_on="stamps",
    )
    assert result.fitted_on == "stamps"
    assert result.kernel_sum == pytest.approx(1.0, abs=0.05)
    # Bright static stars vanish: their difference flux is a small fraction of their flux.
    gain = pair.science.truth.gain_e_per_adu
    stars = pair.science.stars
    bright = stars[stars["in_frame"] & (stars["snr_optimal"] > 100) & ~stars["saturated"]]
    assert len(bright) >= 3
    left, chi = [], []
    for row in bright:
        on_diff = difference_photometry(
            result, sci.psf, float(row["x"]), float(row["y"]), gain_e_per_adu=gain
        )
        if not math.isfinite(on_diff.flux):
            continue
        left.append(abs(on_diff.flux) / (float(row["flux_e"]) / gain))
        chi.append(abs(on_diff.flux / on_diff.flux_err))
    print(f"static stars: |difference| / flux {np.round(left, 4)}, |S/N| {np.round(chi, 1)}")
    assert len(left) >= 3
    assert float(np.median(left)) < 0.01
    assert float(np.median(chi)) < 4.0
    # The transients are found at their S/N.
    snr = [
        difference_photometry(result, sci.psf, float(x), float(y), gain_e_per_adu=gain).snr
        for x, y in zip(pair.transient_x, pair.transient_y, strict=True)
    ]
    assert np.all(np.array(snr) > 20)


def test_stamps_refused_without_enough_sources() -> None:
    rng = np.random.default_rng(0)
    shape = (256, 256)
    science = rng.normal(100.0, 5.0, shape)
    template = rng.normal(80.0, 4.0, shape)
    wcs = _tan((10.0, 10.0), 1.0 / 3600, 0.0, shape)
    aligned = align_template(template, wcs, wcs, shape, template_noise=np.full(shape, 4.0))
    with pytest.raises(ValueError, match="too few bright isolated sources"):
        subtract_template(
            science,
            np.full(shape, 5.0),
            aligned,
            science_fwhm_px=3.0,
            template_fwhm_px=2.0,
            fit_on="stamps",
        )
    with pytest.raises(ValueError, match="kernel_poly_order"):
        subtract_template(
            science,
            np.full(shape, 5.0),
            aligned,
            science_fwhm_px=3.0,
            template_fwhm_px=2.0,
            fit_on="stamps",
            kernel_poly_order=1,
        )

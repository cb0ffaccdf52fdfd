"""Background, mask, detection, FWHM, aperture/PSF/forced photometry on small synthetic frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cpcs.science.imaging import (
    MaskBit,
    PsfModel,
    SourceFlag,
    _moffat,
    bad_pixel_mask,
    build_psf,
    detect_sources,
    estimate_background,
    forced_photometry,
    image_quality,
    instrumental_magnitude,
    limiting_magnitude_5sigma,
    measure_sources,
    pixel_mask_bits,
    psf_photometry,
)
from cpcs.science.imaging._synthetic import SyntheticImage, make_image, star_profile
from cpcs.science.imaging.noise import sky_effective_gain


def pipeline(im: SyntheticImage, **detect_kw: object):
    bkg = estimate_background(im.data)
    bits = pixel_mask_bits(im.data, saturation_adu=im.saturation_adu, background=bkg)
    det = detect_sources(im.data, bkg, bits, **detect_kw)  # type: ignore[arg-type]
    return bkg, bits, det


def match(
    det_x: np.ndarray, det_y: np.ndarray, im: SyntheticImage, radius: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    d, j = cKDTree(np.column_stack([im.x, im.y])).query(np.column_stack([det_x, det_y]))
    return d < radius, j


def isolated_truth(im: SyntheticImage, radius: float) -> np.ndarray:
    tree = cKDTree(np.column_stack([im.x, im.y]))
    d, _ = tree.query(np.column_stack([im.x, im.y]), 2)
    return d[:, 1] > radius


@pytest.fixture(scope="module")
def field() -> SyntheticImage:
    return make_image(
        11, shape=(400, 400), n_stars=200, fwhm_px=3.2, beta=3.0, cosmics=15, flux_range_e=(1.5e3, 2e5)
    )


@pytest.fixture(scope="module")
def measured(field: SyntheticImage):
    bkg, bits, det = pipeline(field)
    psf = build_psf(field.data, bkg, bits, det, gain_e_per_adu=field.gain)
    src = measure_sources(field.data, bkg, bits, det, gain_e_per_adu=field.gain, psf=psf)
    return bkg, bits, det, psf, src


def test_moffat_gradient_matches_finite_differences() -> None:
    dx = np.linspace(-3.0, 3.0, 7)[:, None] + 0.13
    dy = np.linspace(-2.0, 4.0, 7)[None, :] - 0.31
    args = [0.3, 0.25, 0.05, 2.7]
    _, grad = _moffat.profile_and_gradient(dx, dy, *args)
    eps = 1e-6
    for k, name in enumerate(["x0", "y0", "a", "b", "c", "beta"]):
        if k < 2:
            shift = (dx - eps, dy) if k == 0 else (dx, dy - eps)
            back = (dx + eps, dy) if k == 0 else (dx, dy + eps)
            numeric = (_moffat.profile(*shift, *args) - _moffat.profile(*back, *args)) / (2 * eps)
        else:
            up, down = list(args), list(args)
            up[k - 2] += eps
            down[k - 2] -= eps
            numeric = (_moffat.profile(dx, dy, *up) - _moffat.profile(dx, dy, *down)) / (2 * eps)
        np.testing.assert_allclose(grad[k], numeric, rtol=1e-4, atol=1e-9, err_msg=name)


def test_moffat_profile_integrates_to_one_and_fwhm_formula() -> None:
    yy, xx = np.mgrid[-200:201, -200:201].astype(float)
    a = 1.0 / float(_moffat.alpha_from_fwhm(3.0, 3.5)) ** 2
    assert _moffat.profile(xx, yy, a, a, 0.0, 3.5).sum() == pytest.approx(1.0, abs=2e-4)
    assert float(
        _moffat.fwhm_from_shape(np.array(a), np.array(a), np.array(0.0), np.array(3.5))
    ) == pytest.approx(3.0)


def test_background_level_and_rms() -> None:
    field = make_image(12, shape=(384, 384), n_stars=40, fwhm_px=3.2, beta=3.0)
    bkg = estimate_background(field.data)
    expected_rms = math.sqrt(field.sky_adu * field.gain + field.read_noise_e**2) / field.gain
    assert bkg.global_level == pytest.approx(field.sky_adu, abs=0.3 * expected_rms)
    assert bkg.global_rms == pytest.approx(expected_rms, rel=0.05)
    assert bkg.level.dtype == np.float32 and bkg.level.shape == field.data.shape
    assert sky_effective_gain(bkg) == pytest.approx(field.gain, rel=0.15)


def test_mask_finds_cosmics_nan_saturation_not_stars() -> None:
    for fwhm, beta in [(2.0, None), (3.0, None), (2.5, 2.5), (4.0, 4.0)]:
        im = make_image(5, shape=(200, 200), n_stars=80, fwhm_px=fwhm, beta=beta, flux_range_e=(2e3, 3e5))
        bkg = estimate_background(im.data)
        bits = pixel_mask_bits(im.data, saturation_adu=None, background=bkg)
        assert not bits.any(), f"stars masked as cosmics at FWHM {fwhm}, beta {beta}"
    im = make_image(
        6, shape=(200, 200), n_stars=40, cosmics=12, saturation_adu=3000.0, extra_stars=[(100.3, 100.6, 3e6)]
    )
    data = im.data.copy()
    data[5, 7] = np.nan
    bkg = estimate_background(data)
    bits = pixel_mask_bits(data, saturation_adu=im.saturation_adu, background=bkg)
    assert bits[5, 7] & MaskBit.NONFINITE
    assert bits[100, 100] & MaskBit.SATURATED and bits[100, 103] & MaskBit.SATURATED  # grown
    # every injected cosmic ray (single pixels far above the sky) is masked
    hits = np.argwhere((im.data - bkg.level > 400) & (bits == 0))
    for r, c in hits:  # any unmasked bright pixel must belong to a star (not a lone spike)
        assert np.min(np.hypot(im.x - c, im.y - r)) < 8
    assert np.count_nonzero(bits & MaskBit.COSMIC) >= 9 * 3
    assert bad_pixel_mask(data, saturation_adu=im.saturation_adu, background=bkg).sum() == np.count_nonzero(
        bits
    )


@pytest.mark.parametrize(("beta", "tolerance"), [(2.5, 0.03), (3.0, 0.03), (4.5, 0.03), (None, 0.05)])
def test_fwhm_recovered(beta: float | None, tolerance: float) -> None:
    im = make_image(21, shape=(320, 320), n_stars=150, fwhm_px=3.4, beta=beta)
    _, _, det = pipeline(im)
    assert det.fwhm_px == pytest.approx(3.4, rel=tolerance)
    assert det.fwhm_variation < 1.05
    if beta is not None:
        assert det.beta == pytest.approx(beta, rel=0.15)


def test_fwhm_variation_detected() -> None:
    im = make_image(22, shape=(512, 512), n_stars=420, fwhm_px=3.5, beta=3.0, fwhm_gradient=0.3)
    _, _, det = pipeline(im)
    left, right = det.fwhm_at(np.array([0.0, 511.0]), np.array([256.0, 256.0]))
    assert left == pytest.approx(3.5 * 0.85, rel=0.05)
    assert right == pytest.approx(3.5 * 1.15, rel=0.05)
    assert det.fwhm_variation == pytest.approx(1.15 / 0.85, rel=0.06)


def test_elongated_psf_ellipticity() -> None:
    im = make_image(23, shape=(300, 300), n_stars=120, fwhm_px=3.4, beta=3.0, ellipticity=0.2)
    _, _, det = pipeline(im)
    assert det.ellipticity == pytest.approx(1 - 0.8 / 1.0, abs=0.05) or det.ellipticity > 0.1


def test_detection_table(measured, field: SyntheticImage) -> None:
    _, _, det, _, _ = measured
    bright = field.flux_e > 2e4
    found, _ = match(np.asarray(det.table["x"]), np.asarray(det.table["y"]), field)
    assert found.sum() >= 0.9 * bright.sum()
    assert {"x", "y", "flux", "a", "b", "theta", "flags", "peak", "npix", "fwhm_px"} <= set(
        det.table.colnames
    )
    assert det.n_sources == len(det.table)
    assert det.segmap is not None and det.segmap.max() == det.n_sources


def pulls(measured_mag: np.ndarray, err: np.ndarray, true_mag: np.ndarray) -> np.ndarray:
    bright = err < 0.01
    zp = np.median(measured_mag[bright] - true_mag[bright])
    return (measured_mag - true_mag - zp) / err


def test_aperture_and_psf_errors_are_honest(measured, field: SyntheticImage) -> None:
    _, _, _, _, src = measured
    t = src.table
    found, j = match(np.asarray(t["x"]), np.asarray(t["y"]), field)
    clean = found & (np.asarray(t["flags"]) == 0) & isolated_truth(field, 4 * 3.2)[j]
    true_mag = -2.5 * np.log10(field.flux_e[j])
    for kind in ("aper", "psf"):
        mag, err = np.asarray(t[f"mag_{kind}"]), np.asarray(t[f"magerr_{kind}"])
        use = clean & np.isfinite(mag) & (err < 0.2)
        p = pulls(mag[use], err[use], true_mag[use])
        assert use.sum() > 40
        assert 0.8 < np.std(p) < 1.25, kind
        assert abs(np.median(p)) < 0.35, kind
    assert src.aperture_correction_mag < 0
    assert src.aperture_correction_err < 0.01
    assert src.n_psf_stars > 10


def test_psf_and_aperture_share_one_flux_scale(measured, field: SyntheticImage) -> None:
    _, _, _, psf, src = measured
    t = src.table
    good = (np.asarray(t["flags"]) == 0) & (np.asarray(t["magerr_aper"]) < 0.01) & np.isfinite(t["mag_psf"])
    diff = np.asarray(t["mag_psf"])[good] - np.asarray(t["mag_aper"])[good]
    assert abs(np.median(diff)) < 0.005
    assert 0.9 < psf.flux_scale <= 1.0
    # "total" is 2.5 FWHM: Moffat beta=3 keeps 1-(1+(2.5*FWHM/alpha)^2)^-2 of the light
    alpha = float(_moffat.alpha_from_fwhm(3.2, 3.0))
    expected = 1 - (1 + (2.5 * 3.2 / alpha) ** 2) ** -2
    assert psf.flux_scale == pytest.approx(expected, abs=0.01)


def test_magnitude_convention() -> None:
    mag, err = instrumental_magnitude(
        np.array([1000.0, -5.0]), np.array([10.0, 3.0]), gain_e_per_adu=2.0, exptime_s=20.0
    )
    assert mag[0] == pytest.approx(-2.5 * math.log10(100.0))
    assert err[0] == pytest.approx(1.0857362 * 0.01, rel=1e-5)
    assert np.isnan(mag[1]) and np.isnan(err[1])
    mag, _ = instrumental_magnitude(1000.0, 1.0, gain_e_per_adu=2.0, exptime_s=None)
    assert float(mag) == pytest.approx(-2.5 * math.log10(2000.0))


def test_flags_saturated_edge_crowded() -> None:
    im = make_image(
        31,
        shape=(200, 200),
        n_stars=30,
        saturation_adu=20000.0,
        extra_stars=[(100.0, 100.0, 5e6), (4.0, 150.0, 1e5), (50.0, 50.0, 1e5), (55.0, 50.0, 8e4)],
    )
    bkg, bits, det = pipeline(im)
    src = measure_sources(im.data, bkg, bits, det, gain_e_per_adu=im.gain, saturation_adu=im.saturation_adu)
    t = src.table

    def flag_at(x: float, y: float) -> int:
        k = int(np.argmin(np.hypot(np.asarray(t["x"]) - x, np.asarray(t["y"]) - y)))
        return int(t["flags"][k])

    assert flag_at(100, 100) & SourceFlag.SATURATED
    assert flag_at(4, 150) & SourceFlag.NEAR_EDGE
    assert flag_at(50, 50) & SourceFlag.CROWDED


def test_psf_photometry_separates_a_blend() -> None:
    fwhm = 3.0
    im = make_image(
        41,
        shape=(160, 160),
        n_stars=0,
        fwhm_px=fwhm,
        beta=3.0,
        extra_stars=[(40.2, 40.7, 5e5), (50.0, 50.0, 4e5), (110.0, 80.0, 3e4), (113.9, 81.2, 6e4)]
        + [(float(x), float(y), 3e5) for x, y in [(20, 130), (130, 130), (130, 20), (80, 140), (20, 90)]],
    )
    bkg, bits, det = pipeline(im)
    psf = build_psf(im.data, bkg, bits, det, gain_e_per_adu=im.gain)
    start = np.array([[110.5, 79.6], [113.5, 81.5]])
    table = psf_photometry(im.data, bkg, None, psf, start, gain_e_per_adu=im.gain)
    assert list(table["group_size"]) == [2, 2]
    assert all(table["fit_ok"])
    flux_e = np.asarray(table["flux"]) * im.gain / psf.flux_scale  # Moffat (infinite) flux in e-
    err_e = np.asarray(table["flux_err"]) * im.gain / psf.flux_scale
    truth = np.array([3e4, 6e4])
    assert np.all(np.abs(flux_e - truth) < 4 * err_e + 0.01 * truth)
    np.testing.assert_allclose(table["x"], [110.0, 113.9], atol=0.1)


def test_forced_photometry_blended_and_undetected_target() -> None:
    fwhm, beta, gain = 3.0, 3.0, 2.0
    stars = [(float(x), float(y), 2e5) for x in (30, 90, 150) for y in (30, 90, 150) if (x, y) != (90, 90)]
    target = (88.3, 91.6, 2e4)
    neighbour = (92.4, 92.8, 5e4)  # 1.4 FWHM away
    im = make_image(
        51,
        shape=(180, 180),
        n_stars=0,
        fwhm_px=fwhm,
        beta=beta,
        gain=gain,
        extra_stars=[*stars, target, neighbour],
    )
    bkg, bits, det = pipeline(im)
    psf = build_psf(im.data, bkg, bits, det, gain_e_per_adu=gain)
    forced = forced_photometry(
        im.data,
        bkg,
        None,
        psf,
        target[0],
        target[1],
        gain_e_per_adu=gain,
        neighbours=[(neighbour[0] + 0.2, neighbour[1] - 0.1)],
        mask=bits,
    )
    assert forced.method == "psf" and forced.n_neighbours == 1
    true_flux = target[2] / gain * psf.flux_scale
    assert forced.flux == pytest.approx(true_flux, abs=4 * forced.flux_err)
    assert forced.is_detection
    # nothing there: flux consistent with zero, a sensible limit, still measured
    empty = forced_photometry(im.data, bkg, None, psf, 60.0, 120.0, gain_e_per_adu=gain, neighbours=det)
    assert abs(empty.snr) < 4 and not empty.is_detection
    rms = math.sqrt(im.sky_adu * gain + im.read_noise_e**2)  # e-
    yy, xx = np.mgrid[-20:21, -20:21].astype(float)
    p = star_profile(xx, yy, fwhm, beta)
    optimal = 5 * rms / math.sqrt(np.sum(p**2)) * psf.flux_scale  # e-, sky-limited Cramér-Rao
    assert empty.limit_mag_inst_5sigma == pytest.approx(-2.5 * math.log10(optimal), abs=0.3)
    assert limiting_magnitude_5sigma(bkg.global_rms, psf, gain_e_per_adu=gain) == pytest.approx(
        empty.limit_mag_inst_5sigma, abs=0.1
    )


def test_forced_falls_back_to_aperture_when_masked(measured, field: SyntheticImage) -> None:
    bkg, _, _, psf, _ = measured
    mask = np.zeros(field.data.shape, dtype=bool)
    mask[150:170, 150:170] = True
    forced = forced_photometry(field.data, bkg, None, psf, 160.0, 160.0, gain_e_per_adu=field.gain, mask=mask)
    assert forced.method == "aperture"


def test_quality_summary(measured, field: SyntheticImage) -> None:
    bkg, bits, det, psf, _ = measured
    q = image_quality(
        bkg, det, psf, gain_e_per_adu=field.gain, exptime_s=30.0, pixel_scale_arcsec=0.5, mask=bits
    )
    assert q.fwhm_px == pytest.approx(3.2, rel=0.05)
    assert q.fwhm_arcsec == pytest.approx(1.6, rel=0.05)
    assert q.n_sources == det.n_sources
    assert math.isfinite(q.limit_mag_inst_5sigma)
    assert q.n_masked_pixels >= 9 * 10


def test_circular_fallback_psf() -> None:
    psf = PsfModel.circular(3.0, 3.0, (100, 100))
    assert float(psf.fwhm_at(10.0, 10.0)) == pytest.approx(3.0)
    assert psf.noise_equivalent_area(50, 50) > 4 * math.pi * (3.0 / 2.3548) ** 2 * 0.9


def test_quality_takes_facts_from_the_header(measured, field: SyntheticImage) -> None:
    from cpcs.science.imaging import ImageHeader

    bkg, bits, det, psf, _ = measured
    header = ImageHeader(
        mjd_mid=60000.0,
        exptime_s=None,
        filter_name="r",
        gain_e_per_adu=field.gain,
        saturation_adu=5e4,
        ra_deg=None,
        dec_deg=None,
        pixel_scale_arcsec=0.5,
        wcs=None,
        date_source="MJD-OBS",
        object_name=None,
    )
    q = image_quality(background=bkg, detections=det, psf=psf, header=header, mask=bits, forced=None)
    explicit = image_quality(bkg, det, psf, gain_e_per_adu=field.gain, pixel_scale_arcsec=0.5, mask=bits)
    assert q.fwhm_arcsec == explicit.fwhm_arcsec
    assert q.limit_mag_inst_5sigma == explicit.limit_mag_inst_5sigma

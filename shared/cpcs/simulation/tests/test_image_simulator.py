"""The CCD image simulator: flux conservation, geometry, noise, defects, headers, FITS files, targets."""

from __future__ import annotations

import gzip
import io
import math
import time
import warnings

import numpy as np
import pytest
from astropy.coordinates import Angle
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from numpy.polynomial.legendre import leggauss
from photutils.aperture import CircularAperture, aperture_photometry

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.science.crossmatch import tangent_plane_offsets
from cpcs.science.imaging.header import standardise_header
from cpcs.simulation._psf_render import moffat_alpha, psf_stamps, render_stars, stamp_half_size
from cpcs.simulation.image_simulator import SimulatedImage, image_to_fits_bytes, simulate_image

SMALL = (512, 512)


def _sky_adu(image: SimulatedImage) -> np.ndarray:
    ny, nx = image.data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    return image.truth.sky_e_at(xx, yy) / image.truth.gain_e_per_adu + image.truth.bias_adu


def _reference_stamp(fx: float, fy: float, alpha: float, beta: float, half: int) -> np.ndarray:
    """Pixel integrals by a 12 x 12 Gauss-Legendre rule per pixel (float64)."""
    nodes, weights = leggauss(12)
    nodes, weights = nodes / 2.0, weights / 2.0
    k = np.arange(-half, half + 1, dtype=np.float64)
    out = np.zeros((k.size, k.size))
    for ty, wy in zip(nodes, weights, strict=True):
        for tx, wx in zip(nodes, weights, strict=True):
            r2 = (k[:, None] - fy + ty) ** 2 + (k[None, :] - fx + tx) ** 2
            out += wy * wx * (1.0 + r2 / alpha**2) ** (-beta)
    return out * (beta - 1.0) / (math.pi * alpha**2)


# --------------------------------------------------------------------------------------------------
# PSF rendering


@pytest.mark.parametrize(("fwhm", "beta"), [(1.3, 3.0), (3.33, 3.0), (3.33, 2.5), (6.0, 4.5)])
def test_pixel_integration_matches_a_fine_quadrature(fwhm: float, beta: float) -> None:
    alpha = float(moffat_alpha(fwhm, beta))
    half = math.ceil(6 * fwhm)
    stamp = psf_stamps(np.array([0.31]), np.array([-0.42]), np.array([alpha]), beta, half)[0]
    reference = _reference_stamp(0.31, -0.42, alpha, beta, half)
    assert np.max(np.abs(stamp - reference)) < 2e-4 * reference.max()
    assert abs(stamp.sum() - reference.sum()) < 5e-5


def test_rendered_flux_is_conserved_per_star() -> None:
    rng = np.random.default_rng(0)
    n = 40
    image = np.zeros((400, 400), dtype=np.float32)
    x, y = rng.uniform(60, 340, n), rng.uniform(60, 340, n)
    flux = 10.0 ** rng.uniform(3.0, 7.0, n)
    alpha = moffat_alpha(rng.uniform(1.5, 5.0, n), 3.0)
    half = stamp_half_size(
        flux,
        alpha,
        3.0,
        omitted_fraction=1e-4,
        omitted_e=0.0,
        min_half_size=np.full(n, 4, dtype=np.intp),
        max_half_size=60,
    )
    stamp_flux, frame_flux = render_stars(image, x, y, flux, alpha, 3.0, half)
    np.testing.assert_allclose(stamp_flux / flux, 1.0, atol=2e-4)  # < 0.2 % asked; 1e-4 left out
    np.testing.assert_allclose(frame_flux, stamp_flux, rtol=1e-12)
    assert abs(image.sum(dtype=np.float64) / flux.sum() - 1.0) < 2e-4


def test_bright_stars_in_a_simulated_frame_carry_their_flux() -> None:
    # A sparse field of bright stars (the population ends at r = 15.5).
    image = simulate_image(
        11, shape=(2048, 2048), faint_limit_mag=14.0, target=None, fwhm_variation=0.2, keep_model=True
    )
    assert image.model_adu is not None
    stars = image.stars
    excess = image.model_adu.astype(np.float64) - _sky_adu(image)
    ny, nx = image.data.shape
    checked = 0
    for row in stars[stars["in_frame"] & (stars["snr_optimal"] > 100)]:
        x, y, flux_adu = row["x"], row["y"], row["flux_e"] / image.truth.gain_e_per_adu
        half = math.ceil(10 * row["fwhm_pix"])  # 1e-4 of a beta = 3 Moffat lies beyond
        if not (half < x < nx - 1 - half and half < y < ny - 1 - half):
            continue
        others = stars[(np.hypot(stars["x"] - x, stars["y"] - y) < 2 * half) & (stars["id"] != row["id"])]
        if np.sum(others["flux_e"]) > 1e-4 * row["flux_e"]:
            continue
        box = excess[round(y) - half : round(y) + half + 1, round(x) - half : round(x) + half + 1]
        assert abs(box.sum() / flux_adu - 1.0) < 2e-3  # within 0.2 %
        assert abs(row["rendered_fraction"] - 1.0) < 2e-3
        checked += 1
    assert checked >= 3
    # Every star well inside the frame lacks at most max(1e-4 F, 0.1 sigma_pix) (its stamp's edge).
    inner = stars[(stars["x"] > 70) & (stars["x"] < nx - 71) & (stars["y"] > 70) & (stars["y"] < ny - 71)]
    allowed = np.maximum(1e-4, 0.1 * image.truth.background_noise_e / inner["flux_e"])
    assert np.all(1.0 - inner["rendered_fraction"] <= allowed * 1.0001)


# --------------------------------------------------------------------------------------------------
# Geometry


def test_header_wcs_is_off_as_requested() -> None:
    image = simulate_image(
        5, shape=SMALL, header_offset_arcsec=(3.0, -4.0), header_rotation_deg=0.5, sip_distortion=2.0
    )
    assert image.header_wcs is not None
    assert image.true_wcs.sip is not None and image.header_wcs.sip is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        from_header = WCS(image.header)
    centre = (np.array([255.5]), np.array([255.5]))
    true_ra, true_dec = image.true_wcs.all_pix2world(*centre, 0)
    for wcs in (image.header_wcs, from_header):
        ra, dec = wcs.all_pix2world(*centre, 0)
        east, north = tangent_plane_offsets(ra, dec, float(true_ra[0]), float(true_dec[0]))
        assert abs(east[0] * 3600.0 - 3.0) < 0.01
        assert abs(north[0] * 3600.0 + 4.0) < 0.01

    def position_angle_of_y_axis(w: WCS) -> float:
        ra, dec = w.all_pix2world(np.array([255.5, 255.5]), np.array([255.5, 355.5]), 0)
        xi, eta = tangent_plane_offsets(ra[1:], dec[1:], float(ra[0]), float(dec[0]))
        return math.degrees(math.atan2(float(xi[0]), float(eta[0])))

    rotation = position_angle_of_y_axis(image.header_wcs) - position_angle_of_y_axis(image.true_wcs)
    assert abs(rotation - 0.5) < 0.05  # the SIP term tilts the true axis a little


def test_star_positions_follow_the_true_wcs_and_sip_size() -> None:
    image = simulate_image(6, shape=SMALL, sip_distortion=3.0, rotation_deg=30.0, target=None)
    stars = image.stars
    x, y = image.true_wcs.all_world2pix(stars["ra_deg"], stars["dec_deg"], 0, tolerance=1e-10, maxiter=50)
    assert np.max(np.hypot(x - stars["x"], y - stars["y"])) < 1e-5
    # SIP displacement at the corners against the same WCS without SIP.
    plain = image.true_wcs.deepcopy()
    plain.sip = None
    corners_x = np.array([-0.5, 511.5, -0.5, 511.5])
    corners_y = np.array([-0.5, -0.5, 511.5, 511.5])
    ra, dec = image.true_wcs.all_pix2world(corners_x, corners_y, 0)
    px, py = plain.wcs_world2pix(ra, dec, 0)
    assert abs(np.max(np.hypot(px - corners_x, py - corners_y)) - 3.0) < 0.05


# --------------------------------------------------------------------------------------------------
# Noise, saturation, defects


def test_noise_of_empty_sky_matches_sky_and_read_noise() -> None:
    image = simulate_image(
        7,
        shape=SMALL,
        sky_e_per_pix=400.0,
        read_noise_e=12.0,
        gain_e_per_adu=2.0,
        bias_adu=100.0,
        keep_model=True,
    )
    assert image.model_adu is not None
    sky = _sky_adu(image)
    sigma_adu = math.sqrt(400.0 + 12.0**2) / 2.0
    empty = (image.model_adu - sky) < 0.01 * sigma_adu
    defects = np.zeros(image.data.shape, dtype=bool)
    for pixels in (image.truth.cosmic_ray_pixels, image.truth.hot_pixels):
        defects[pixels[:, 1], pixels[:, 0]] = True
    empty &= ~defects
    assert empty.mean() > 0.5
    residual = (image.data - sky)[empty]
    assert abs(residual.std() / sigma_adu - 1.0) < 0.02
    assert abs(residual.mean()) < 0.02 * sigma_adu
    assert abs(np.median(image.data[empty]) - (400.0 / 2.0 + 100.0)) < 0.5
    # Everywhere (stars included), the noise is Poisson on the model plus read noise.
    variance = ((image.model_adu - 100.0) * 2.0 + 12.0**2) / 4.0
    ok = ~defects & (image.data < image.truth.saturation_adu)
    normalised = (image.data - image.model_adu)[ok] / np.sqrt(variance[ok])
    assert abs(normalised.std() - 1.0) < 0.02


def test_saturation() -> None:
    level = 3000.0
    image = simulate_image(8, shape=(1024, 1024), saturation_adu=level, star_density=3.0, keep_model=True)
    assert image.model_adu is not None
    assert float(image.data.max()) == level
    stars = image.stars
    saturated = stars[stars["saturated"]]
    assert len(saturated) >= 2
    for row in saturated:
        assert image.data[math.floor(row["y"] + 0.5), math.floor(row["x"] + 0.5)] == level
    clean = stars[stars["in_frame"] & ~stars["saturated"]]
    rows, cols = np.floor(clean["y"] + 0.5).astype(int), np.floor(clean["x"] + 0.5).astype(int)
    assert np.all(image.model_adu[rows, cols] < level)
    assert image.target is not None  # the bright target is kept below half the saturation level
    assert np.max(image.model_adu[255 + 256 : 257 + 256, 255 + 256 : 257 + 256]) < 0.5 * level + 1.0


def test_cosmic_rays_and_hot_pixels_are_there() -> None:
    image = simulate_image(9, shape=SMALL, n_cosmics=20, n_hot_pixels=15, keep_model=True)
    assert image.model_adu is not None
    cosmics, hot = image.truth.cosmic_ray_pixels, image.truth.hot_pixels
    assert 20 <= cosmics.shape[0] <= 60 and hot.shape[0] == 15
    sigma = image.truth.background_noise_e / image.truth.gain_e_per_adu
    saturation = image.truth.saturation_adu
    cr_values = image.data[cosmics[:, 1], cosmics[:, 0]]
    above_cr = cr_values - image.model_adu[cosmics[:, 1], cosmics[:, 0]]
    assert np.all((above_cr > 10 * sigma) | (cr_values == saturation))
    above_hot = image.data[hot[:, 1], hot[:, 0]] - image.model_adu[hot[:, 1], hot[:, 0]]
    expected = np.minimum(
        image.truth.hot_pixel_excess_adu, saturation - image.model_adu[hot[:, 1], hot[:, 0]]
    )
    assert np.all(np.abs(above_hot - expected) < 6 * sigma + 0.01 * expected)
    # Defects are sharp: only the listed pixels differ from the same image without them.
    blank = simulate_image(9, shape=SMALL, n_cosmics=0, n_hot_pixels=0)
    listed = {tuple(p) for p in np.concatenate((cosmics, hot)).tolist()}
    changed = np.argwhere(image.data != blank.data)
    assert {(int(x), int(y)) for y, x in changed} == listed


# --------------------------------------------------------------------------------------------------
# Headers and files


def test_header_styles_carry_their_keywords() -> None:
    expected = {
        "plain": ({"DATE-OBS", "EXPTIME", "FILTER", "GAIN", "SATURATE"}, {"JD", "MJD-OBS"}),
        "exposure_jd": ({"JD", "EXPOSURE", "FILTNAM", "EGAIN", "SATLEVEL"}, {"DATE-OBS", "EXPTIME", "GAIN"}),
        "mjd": ({"MJD-OBS", "EXPTIME", "FILTER1"}, {"DATE-OBS", "JD", "GAIN", "SATURATE"}),
    }
    for style, (present, absent) in expected.items():
        image = simulate_image(
            10,
            shape=(64, 64),
            header_style=style,  # type: ignore[arg-type]
            exptime_s=120.0,
            filter_name="rp",
        )
        header = image.header
        assert present <= set(header.keys()), style
        assert not absent & set(header.keys()), style
        assert header["OBJECT"] == "SIM-TARGET"
        facts = standardise_header(header)
        assert facts.mjd_mid is not None and abs(facts.mjd_mid - image.mjd_mid) < 1e-7
        assert facts.exptime_s == 120.0 and facts.filter_name == "rp"
        assert facts.pixel_scale_arcsec == pytest.approx(0.6, rel=1e-6) and facts.wcs is not None
        if style != "mjd":
            assert facts.gain_e_per_adu == 1.5 and facts.saturation_adu == 60000.0
    # 2016-12-15T19:40:00 UTC is MJD 57737.81944...; mid-exposure is a minute later.
    assert abs(image.mjd_mid - (57737.0 + (19 * 60 + 41) / 1440.0)) < 1e-8


def test_header_without_wcs_has_pointing_and_scale() -> None:
    image = simulate_image(12, shape=(64, 64), header_wcs=False, header_offset_arcsec=(10.0, 5.0))
    header = image.header
    assert image.header_wcs is None
    assert not {"CTYPE1", "CRVAL1", "CD1_1", "CRPIX1"} & set(header.keys())
    ra = Angle(header["RA"], unit="hourangle").degree
    dec = Angle(header["DEC"], unit="deg").degree
    east, north = tangent_plane_offsets(ra, dec, image.truth.centre_ra_deg, image.truth.centre_dec_deg)
    assert abs(east[0] * 3600 - 10.0) < 0.02 and abs(north[0] * 3600 - 5.0) < 0.02
    assert header["PIXSCALE"] == pytest.approx(0.6)
    facts = standardise_header(header)
    assert facts.wcs is None and facts.ra_deg == pytest.approx(ra) and facts.dec_deg == pytest.approx(dec)


@pytest.mark.parametrize(
    ("compression", "extension"),
    [(None, False), ("gzip", False), (None, True), ("gzip", True), ("rice", False)],
)
def test_fits_round_trip(compression: str | None, extension: bool) -> None:
    image = simulate_image(13, shape=(256, 256), sip_distortion=1.0, header_sip=True)
    raw = image_to_fits_bytes(image, compression=compression, extension=extension)  # type: ignore[arg-type]
    if compression == "gzip":
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    with fits.open(io.BytesIO(raw)) as hdus:
        if extension or compression == "rice":
            assert hdus[0].data is None and len(hdus) == 2
        if compression == "rice":
            assert isinstance(hdus[1], fits.CompImageHDU)
        hdu = next(h for h in hdus if h.data is not None)
        data = np.asarray(hdu.data, dtype=np.float32)
        header = hdu.header
        assert header["EXPTIME"] == 60.0 and header["CTYPE1"] == "RA---TAN-SIP"
        assert header["CRVAL1"] == image.header["CRVAL1"] and header["A_ORDER"] == 3
    if compression == "rice":
        sigma = image.truth.background_noise_e / image.truth.gain_e_per_adu
        assert np.max(np.abs(data - image.data)) < 0.1 * sigma  # quantised at sigma / 16
    else:
        np.testing.assert_array_equal(data, image.data)


# --------------------------------------------------------------------------------------------------
# Photometric truth


def _aperture_flux(data: np.ndarray, x: float, y: float, radius: float) -> float:
    table = aperture_photometry(data, CircularAperture((x, y), r=radius), method="exact")
    return float(table["aperture_sum"][0])


def _psf_weighted_flux(
    image: SimulatedImage, x: float, y: float, radius: float
) -> tuple[float, float, float]:
    """Optimal flux estimate with the true PSF, sky and variance: (measured, expected, sigma), ADU."""
    assert image.model_adu is not None
    truth = image.truth
    sky = _sky_adu(image)
    ny, nx = image.data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    use = np.hypot(xx - x, yy - y) <= radius
    signal = (image.model_adu - sky)[use].astype(np.float64)
    expected = signal.sum()
    profile = signal / expected
    variance = ((image.model_adu[use] - truth.bias_adu) * truth.gain_e_per_adu + truth.read_noise_e**2) / (
        truth.gain_e_per_adu**2
    )
    weights = profile / variance
    norm = np.sum(weights * profile)
    measured = np.sum(weights * (image.data[use] - sky[use])) / norm
    return float(measured), float(expected), float(1.0 / math.sqrt(norm))


def test_target_classes() -> None:
    seen = {}
    for kind in ("bright", "faint", "undetected"):
        # No stars: the target alone in the model (the cleared zone is tested below).
        image = simulate_image(
            14,
            shape=SMALL,
            target=kind,
            star_density=0.0,
            keep_model=True,
        )
        target, truth = image.target, image.truth
        assert target is not None and image.model_adu is not None
        calibrated = truth.calibrated_mag(
            target.true_inst_mag, target.true_colour, target.ra_deg, target.dec_deg
        )
        assert calibrated[0] == pytest.approx(target.true_mag, abs=1e-9)
        # PSF-weighted measurement on the pixels within 4 FWHM (nothing else there by construction).
        radius = 4.0 * truth.fwhm_pix
        measured, expected, sigma = _psf_weighted_flux(image, target.x, target.y, radius)
        enclosed = 1 - (1 + (radius / truth.moffat_alpha_pix) ** 2) ** (1 - truth.moffat_beta)
        assert abs(expected * truth.gain_e_per_adu / (enclosed * target.flux_e) - 1.0) < 0.002
        assert abs(expected / sigma / target.expected_snr_optimal - 1.0) < 0.03
        assert abs(measured - expected) < 4.0 * sigma
        # The aperture S/N, with the annulus term of the truth.
        r = truth.aperture_radius_pix
        area = math.pi * r * r
        inside = (
            _aperture_flux(image.model_adu - _sky_adu(image), target.x, target.y, r) * truth.gain_e_per_adu
        )
        background = area * truth.background_noise_e**2 * (1.0 + area / truth.sky_pixels)
        assert abs(inside / math.sqrt(inside + background) / target.expected_snr_aperture - 1.0) < 0.01
        seen[kind] = (measured / sigma, target)
    bright = seen["bright"][1]
    assert (
        seen["bright"][0] > 200 and bright.expected_snr_optimal > 200 and bright.expected_snr_aperture > 200
    )
    assert 6 < seen["faint"][0] < 14 and seen["faint"][1].expected_detected
    undetected = seen["undetected"][1]
    assert seen["undetected"][0] < 5 and not undetected.expected_detected
    depth = image.truth.limiting_inst_mag("optimal", x=undetected.x, y=undetected.y)
    assert 1.5 <= undetected.true_inst_mag - depth <= 2.5


def test_target_is_in_a_cleared_zone_and_in_no_catalogue() -> None:
    image = simulate_image(
        20, shape=SMALL, star_density=8.0, target="faint", target_offset_arcsec=(20.0, -10.0)
    )
    target, truth, stars = image.target, image.truth, image.stars
    assert target is not None
    east, north = tangent_plane_offsets(
        target.ra_deg, target.dec_deg, truth.centre_ra_deg, truth.centre_dec_deg
    )
    assert abs(east[0] * 3600 - 20.0) < 1e-6 and abs(north[0] * 3600 + 10.0) < 1e-6
    x, y = image.true_wcs.all_world2pix([target.ra_deg], [target.dec_deg], 0)
    assert abs(x[0] - target.x) < 1e-6 and abs(y[0] - target.y) < 1e-6
    distance = np.hypot(stars["x"] - target.x, stars["y"] - target.y)
    assert truth.target_clear_radius_pix == pytest.approx(4.0 * truth.fwhm_pix)
    assert np.min(distance) > truth.target_clear_radius_pix
    assert np.sum(distance < 3 * truth.target_clear_radius_pix) > 0  # the clearing is local
    for catalogue in image.references.values():
        near = tangent_plane_offsets(catalogue.ra_deg, catalogue.dec_deg, target.ra_deg, target.dec_deg)
        assert np.min(np.hypot(*near)) * 3600 > truth.target_clear_radius_pix * truth.pixel_scale_arcsec - 0.1


def test_aperture_noise_model_and_limits() -> None:
    image = simulate_image(
        15,
        shape=(1024, 1024),
        star_density=4.0,
        target=None,
        n_cosmics=0,
        n_hot_pixels=0,
        saturation_adu=1e9,  # no clipped pixels in the apertures
        keep_model=True,
    )
    assert image.model_adu is not None
    truth, stars = image.truth, image.stars
    gain = truth.gain_e_per_adu
    sky = _sky_adu(image)
    r = truth.aperture_radius_pix
    area = math.pi * r * r
    pick = stars[stars["in_frame"] & (stars["snr_aperture"] > 3) & (stars["snr_aperture"] < 100)]
    pick = pick[(pick["x"] > 20) & (pick["x"] < 1003) & (pick["y"] > 20) & (pick["y"] < 1003)]
    positions = np.column_stack([pick["x"], pick["y"]])
    aperture = CircularAperture(positions, r=r)
    measured = np.asarray(aperture_photometry(image.data - sky, aperture, method="exact")["aperture_sum"])
    expected = np.asarray(
        aperture_photometry(image.model_adu - sky, aperture, method="exact")["aperture_sum"]
    )
    total = np.asarray(
        aperture_photometry(image.model_adu - truth.bias_adu, aperture, method="exact")["aperture_sum"]
    )
    noise = np.sqrt(total * gain + area * truth.read_noise_e**2) / gain  # sky known exactly
    z = (measured - expected) / noise
    assert len(pick) > 100
    assert abs(np.std(z) - 1.0) < 0.12 and abs(np.mean(z)) < 0.2
    # The analytic aperture S/N of isolated stars agrees with the noiseless image.
    neighbours = np.array(
        [np.sum(stars["flux_e"][np.hypot(stars["x"] - x, stars["y"] - y) < 6 * r]) for x, y in positions]
    )
    isolated = neighbours < 1.001 * np.asarray(pick["flux_e"])
    noise_annulus = np.sqrt(noise**2 + (area**2 / truth.sky_pixels) * (truth.background_noise_e / gain) ** 2)
    np.testing.assert_allclose(
        (expected / noise_annulus)[isolated], np.asarray(pick["snr_aperture"])[isolated], rtol=0.02
    )
    # The limits follow their definitions.
    assert truth.limit_inst_mag_5sigma_optimal > truth.limit_inst_mag_5sigma_aperture
    flux_limit = gain * 10 ** (-0.4 * truth.limit_inst_mag_5sigma_aperture)
    ee = 1 - (1 + (r / truth.moffat_alpha_pix) ** 2) ** (1 - truth.moffat_beta)
    background = area * truth.background_noise_e**2 * (1 + area / truth.sky_pixels)
    assert flux_limit * ee / math.sqrt(flux_limit * ee + background) == pytest.approx(5.0, rel=1e-6)
    known_sky = truth.limiting_inst_mag("aperture", sky_pixels=math.inf)
    assert 0.0 < known_sky - truth.limit_inst_mag_5sigma_aperture < 0.3
    assert truth.limit_mag_5sigma_optimal == pytest.approx(truth.limit_inst_mag_5sigma_optimal + truth.zp)
    near_limit = stars["in_frame"] & (np.abs(stars["inst_mag"] - truth.limit_inst_mag_5sigma_optimal) < 0.05)
    assert np.sum(near_limit) > 5
    np.testing.assert_allclose(stars["snr_optimal"][near_limit], 5.0, rtol=0.12)


# --------------------------------------------------------------------------------------------------
# Catalogues and calibration truth


def test_reference_catalogues() -> None:
    image = simulate_image(16, shape=SMALL, zp_gradient_mag=0.1, star_density=3.0)
    assert set(image.references) == {"PS1", "GaiaSP", "Gaia"}
    for survey, catalogue in image.references.items():
        assert isinstance(catalogue, ReferenceCatalogue) and catalogue.survey == survey
        assert len(catalogue) == image.reference_index[survey].size > 0
    gaia = image.references["Gaia"]
    assert gaia.bands == ["G", "BP", "RP"]
    pmra, pmdec = image.gaia_pm_mas_yr
    assert pmra.shape == pmdec.shape == (len(gaia),)
    assert np.median(np.hypot(pmra, pmdec)) < 10.0 and np.max(np.hypot(pmra, pmdec)) < 55.0
    # Gaia positions at 2016.0 propagated to the image epoch land on the true positions.
    rows = image.stars[image.reference_index["Gaia"]]
    years = image.truth.image_epoch_jyear - 2016.0
    ra = gaia.ra_deg + pmra * years / 3.6e6 / np.cos(np.radians(gaia.dec_deg))
    dec = gaia.dec_deg + pmdec * years / 3.6e6
    separation = np.hypot((ra - rows["ra_deg"]) * np.cos(np.radians(dec)), dec - rows["dec_deg"]) * 3.6e6
    assert np.median(separation) < 2.0 and np.max(separation) < 30.0  # mas
    # PS1 r follows the true magnitudes with the quoted errors (outliers aside).
    ps1 = image.references["PS1"]
    truth_r = np.asarray(image.stars["mag_r"][image.reference_index["PS1"]])
    z = (ps1.mags["r"] - truth_r) / ps1.errs["r"]
    assert abs(np.median(np.abs(z)) / 0.6745 - 1.0) < 0.1
    # The calibration truth: r = m_inst + zp + ct (g - r) + P.
    stars = image.stars
    predicted = image.truth.calibrated_mag(
        stars["inst_mag"], stars["colour_gr"], stars["ra_deg"], stars["dec_deg"]
    )
    steady = ~np.asarray(stars["variable"])
    np.testing.assert_allclose(predicted[steady], np.asarray(stars["mag_r"])[steady], atol=1e-9)
    in_frame = np.asarray(stars["in_frame"])
    pattern = image.truth.zp_pattern(stars["ra_deg"][in_frame], stars["dec_deg"][in_frame])
    assert 0.08 < np.ptp(pattern) <= 0.1 + 1e-9
    assert image.truth.band("PS1", "g").colour_term == pytest.approx(0.12 + 1.0)


def test_same_seed_same_image() -> None:
    a = simulate_image(17, shape=(256, 256))
    b = simulate_image(17, shape=(256, 256))
    c = simulate_image(18, shape=(256, 256))
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.stars["flux_e"], b.stars["flux_e"])
    np.testing.assert_array_equal(a.references["PS1"].mags["r"], b.references["PS1"].mags["r"])
    assert not np.array_equal(a.data, c.data)
    # Streams are separate: defects do not move the stars.
    d = simulate_image(17, shape=(256, 256), n_cosmics=5, n_hot_pixels=0)
    np.testing.assert_array_equal(a.stars["x"], d.stars["x"])


def test_timing_printed() -> None:
    for shape in ((1024, 1024), (2048, 2048)):
        start = time.perf_counter()
        image = simulate_image(19, shape=shape)
        elapsed = time.perf_counter() - start
        print(f"simulate_image {shape}: {elapsed:.2f} s, {image.truth.n_stars_in_frame} stars in the frame")
        assert image.data.dtype == np.float32 and image.data.shape == shape

"""Galaxies hosting transients, and templates of the same field at another epoch (simulator).

Built on :func:`cpcs.simulation.image_simulator.simulate_image`:

* **Galaxies** are Sérsic profiles (:class:`astropy.modeling.models.Sersic2D`, truncated at
  ``truncation_reff`` effective radii in elliptical radius, so the same sky shape is cut in every
  epoch), evaluated on a grid ``oversample`` times finer than the pixels, convolved there with the
  frame's Moffat PSF, summed back into pixels and normalised to the galaxy's total flux. Their
  light is added to a simulated frame with its own Poisson noise (a sum of independent Poisson
  draws is the Poisson draw of the sum, so the frame's statistics are exactly those of one
  exposure). Galaxies are in no reference catalogue.
* **Point sources** (transients) are added the same way with the frame's pixel-integrated PSF.
* **An epoch pair** (:func:`simulate_epoch_pair`): a science frame with a host galaxy and a
  transient at a chosen offset from its nucleus, and a template of the same stars and galaxy,
  without the transient, with another seeing, sky level, noise and pointing (a shift and a
  rotation of its WCS). Stars do not vary or move between the epochs.

Fluxes follow the frame's truth: ``flux_adu = 10**(-0.4 (mag_r - zp - colour_term * (g - r)))``
(no spatial zero-point term: pairs are simulated with ``zp_gradient_mag = 0``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.modeling.models import Sersic2D
from numpy.typing import NDArray
from scipy.signal import fftconvolve
from scipy.special import gammainc

from cpcs.simulation._psf_render import moffat_alpha, psf_snr, render_stars
from cpcs.simulation.image_simulator import SimulatedImage, simulate_image

__all__ = [
    "EpochPair",
    "Galaxy",
    "add_galaxies",
    "add_point_sources",
    "point_source_flux_for_snr",
    "simulate_epoch_pair",
]

Float32Array = NDArray[np.float32]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Galaxy:
    """A Sérsic galaxy on the sky.

    Attributes
    ----------
    ra_deg, dec_deg : float
        Nucleus, degrees.
    mag_r : float
        Total PS1-like r magnitude of the (truncated) profile.
    r_eff_arcsec : float
        Half-light radius along the major axis, arcsec.
    sersic_n : float
        Sérsic index (1: exponential disc, 4: de Vaucouleurs).
    ellipticity : float
        ``1 - b/a``.
    pa_deg : float
        Position angle of the major axis, degrees east of north.
    colour_gr : float
        g - r, mag.
    truncation_reff : float
        The profile is zero beyond this many effective radii (elliptical radius).
    """

    ra_deg: float
    dec_deg: float
    mag_r: float
    r_eff_arcsec: float
    sersic_n: float = 1.0
    ellipticity: float = 0.3
    pa_deg: float = 30.0
    colour_gr: float = 0.6
    truncation_reff: float = 6.0


@dataclass(frozen=True, eq=False)
class EpochPair:
    """A science frame with a transient on a galaxy and a template of the field without it.

    Attributes
    ----------
    science, template : SimulatedImage
        The frames (``template.truth`` and ``template.true_wcs`` describe the template's epoch).
    hosts : tuple of Galaxy
    transient_x, transient_y : ndarray
        True positions of the transients (one per host) on the science frame, 0-based px.
    transient_flux_adu : ndarray
        Their total fluxes on the science frame, ADU.
    transient_mag : ndarray
        Their r magnitudes (colour ``transient_colour``).
    transient_inst_mag : ndarray
        ``-2.5 log10(transient_flux_adu)``.
    host_model_science_adu : ndarray
        The noiseless host on the science frame, ADU.
    """

    science: SimulatedImage
    template: SimulatedImage
    hosts: tuple[Galaxy, ...]
    transient_x: FloatArray
    transient_y: FloatArray
    transient_flux_adu: FloatArray
    transient_mag: FloatArray
    transient_inst_mag: FloatArray
    host_model_science_adu: Float32Array


def _flux_adu(image: SimulatedImage, mag_r: float, colour_gr: float) -> float:
    t = image.truth
    return float(10.0 ** (-0.4 * (mag_r - t.zp - t.colour_term * colour_gr)))


def _major_axis_theta(image: SimulatedImage, galaxy: Galaxy, x: float, y: float) -> float:
    """Angle of the galaxy's major axis in pixel coordinates (radians from +x towards +y)."""
    step_deg = 1.0 / 3600.0
    pa = math.radians(galaxy.pa_deg)
    ra2 = galaxy.ra_deg + step_deg * math.sin(pa) / math.cos(math.radians(galaxy.dec_deg))
    dec2 = galaxy.dec_deg + step_deg * math.cos(pa)
    x2, y2 = image.true_wcs.all_world2pix(np.array([ra2]), np.array([dec2]), 0)
    return math.atan2(float(y2[0]) - y, float(x2[0]) - x)


def _moffat_kernel(alpha_pix: float, beta: float, oversample: int, half_pix: int) -> FloatArray:
    grid = (np.arange(-half_pix * oversample, half_pix * oversample + 1)) / oversample
    xx, yy = np.meshgrid(grid, grid)
    kernel = (1.0 + (xx * xx + yy * yy) / alpha_pix**2) ** (-beta)
    return np.asarray(kernel / kernel.sum())


def galaxy_model_adu(image: SimulatedImage, galaxy: Galaxy, *, oversample: int = 7) -> Float32Array:
    """The noiseless galaxy on ``image``'s pixels (ADU), convolved with the frame's PSF.

    Parameters
    ----------
    image : SimulatedImage
        Frame whose true WCS, PSF (central FWHM, Moffat index) and zero point are used.
    galaxy : Galaxy
    oversample : int
        Sub-pixels per pixel on each axis for the profile and the convolution.

    Returns
    -------
    ndarray of float32, the frame's shape
    """
    t = image.truth
    ny, nx = t.shape
    gx, gy = image.true_wcs.all_world2pix(np.array([galaxy.ra_deg]), np.array([galaxy.dec_deg]), 0)
    cx, cy = float(gx[0]), float(gy[0])
    r_eff_pix = galaxy.r_eff_arcsec / t.pixel_scale_arcsec
    r_max = galaxy.truncation_reff * r_eff_pix
    psf_half = math.ceil(4.0 * t.fwhm_pix)
    half = math.ceil(r_max) + psf_half + 2
    x0, y0 = round(cx), round(cy)
    sub = (np.arange(-half * oversample, (half + 1) * oversample) + 0.5) / oversample - 0.5
    xx, yy = np.meshgrid(x0 + sub, y0 + sub)
    theta = _major_axis_theta(image, galaxy, cx, cy)
    profile = Sersic2D(
        amplitude=1.0,
        r_eff=r_eff_pix,
        n=galaxy.sersic_n,
        x_0=cx,
        y_0=cy,
        ellip=galaxy.ellipticity,
        theta=theta,
    )(xx, yy)
    dx, dy = xx - cx, yy - cy
    major = dx * math.cos(theta) + dy * math.sin(theta)
    minor = (-dx * math.sin(theta) + dy * math.cos(theta)) / (1.0 - galaxy.ellipticity)
    profile[major * major + minor * minor > r_max * r_max] = 0.0
    alpha = float(moffat_alpha(t.fwhm_pix, t.moffat_beta))
    blurred = fftconvolve(profile, _moffat_kernel(alpha, t.moffat_beta, oversample, psf_half), mode="same")
    size = 2 * half + 1
    pixels = blurred.reshape(size, oversample, size, oversample).sum(axis=(1, 3))
    pixels *= _flux_adu(image, galaxy.mag_r, galaxy.colour_gr) / float(profile.sum())
    out = np.zeros((ny, nx), dtype=np.float32)
    rows = slice(max(y0 - half, 0), min(y0 + half + 1, ny))
    cols = slice(max(x0 - half, 0), min(x0 + half + 1, nx))
    out[rows, cols] = pixels[
        rows.start - (y0 - half) : rows.stop - (y0 - half), cols.start - (x0 - half) : cols.stop - (x0 - half)
    ]
    return out


def _with_added_light(image: SimulatedImage, model_adu: Float32Array, seed: int) -> SimulatedImage:
    """``image`` plus Poisson-noisy light (ADU), clipped at saturation."""
    gain = image.truth.gain_e_per_adu
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(np.maximum(model_adu, 0.0).astype(np.float64) * gain).astype(np.float32) / np.float32(
        gain
    )
    data = np.minimum(image.data + noisy, np.float32(image.truth.saturation_adu)).astype(np.float32)
    model = None if image.model_adu is None else (image.model_adu + model_adu).astype(np.float32)
    return dataclasses.replace(image, data=data, model_adu=model)


def add_galaxies(
    image: SimulatedImage, galaxies: Sequence[Galaxy], *, seed: int, oversample: int = 7
) -> tuple[SimulatedImage, Float32Array]:
    """Add galaxies with their photon noise; returns the new image and the noiseless galaxy light (ADU)."""
    model = np.zeros(image.truth.shape, dtype=np.float32)
    for galaxy in galaxies:
        model += galaxy_model_adu(image, galaxy, oversample=oversample)
    return _with_added_light(image, model, seed), model


def add_point_sources(
    image: SimulatedImage, x: FloatArray, y: FloatArray, flux_adu: FloatArray, *, seed: int
) -> SimulatedImage:
    """Add point sources (the frame's central PSF, pixel-integrated) with their photon noise.

    Parameters
    ----------
    image : SimulatedImage
    x, y : ndarray
        0-based pixel positions.
    flux_adu : ndarray
        Total fluxes, ADU.
    seed : int
        Seed of the photon noise.
    """
    t = image.truth
    model_e = np.zeros(t.shape, dtype=np.float32)
    xs, ys = np.atleast_1d(np.asarray(x, dtype=np.float64)), np.atleast_1d(np.asarray(y, dtype=np.float64))
    flux_e = np.atleast_1d(np.asarray(flux_adu, dtype=np.float64)) * t.gain_e_per_adu
    alpha = np.full(xs.size, float(moffat_alpha(t.fwhm_pix, t.moffat_beta)))
    half = np.full(xs.size, max(8, math.ceil(8.0 * t.fwhm_pix)), dtype=np.intp)
    render_stars(model_e, xs, ys, flux_e, alpha, t.moffat_beta, half)
    return _with_added_light(image, model_e / np.float32(t.gain_e_per_adu), seed)


def point_source_flux_for_snr(
    image: SimulatedImage, snr: float, *, extra_background_adu: float = 0.0
) -> float:
    """Total flux (ADU) of a point source measured at optimal S/N ``snr`` (sky, read noise and a
    local extra background such as a host galaxy, ADU per pixel)."""
    t = image.truth
    variance_e2 = t.sky_e_per_pix + t.read_noise_e**2 + extra_background_adu * t.gain_e_per_adu
    alpha = np.array([float(moffat_alpha(t.fwhm_pix, t.moffat_beta))])
    lo, hi = 1.0, 1e9
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        value = float(
            psf_snr(np.array([mid]), np.zeros(1), np.zeros(1), alpha, t.moffat_beta, variance_e2)[0]
        )
        lo, hi = (mid, hi) if value < snr else (lo, mid)
    return math.sqrt(lo * hi) / t.gain_e_per_adu


def truncated_fraction(galaxy: Galaxy) -> float:
    """Fraction of an untruncated Sérsic's light inside the truncation radius."""
    n = galaxy.sersic_n
    b = 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)
    return float(gammainc(2.0 * n, b * galaxy.truncation_reff ** (1.0 / n)))


def simulate_epoch_pair(
    seed: int,
    *,
    shape: tuple[int, int] = (1024, 1024),
    science_fwhm_arcsec: float = 2.2,
    template_fwhm_arcsec: float = 1.6,
    science_sky_e: float = 1000.0,
    template_sky_e: float = 600.0,
    template_shift_arcsec: tuple[float, float] = (7.3, -4.1),
    template_rotation_deg: float = 0.7,
    template_exptime_factor: float = 1.0,
    host_mag: float = 13.0,
    host_r_eff_arcsec: float = 4.0,
    host_sersic_n: float = 1.0,
    transient_offset_arcsec: tuple[float, float] = (1.5, 1.0),
    transient_snr: float = 30.0,
    transient_colour: float = 0.0,
    n_hosts: int = 1,
    star_density: float = 1.0,
    n_cosmics: int = 30,
    n_hot_pixels: int = 50,
) -> EpochPair:
    """A science frame with transients on host galaxies, and a template without them.

    Parameters
    ----------
    seed : int
    shape : (int, int)
        Both frames, (ny, nx).
    science_fwhm_arcsec, template_fwhm_arcsec : float
        Seeing of each epoch.
    science_sky_e, template_sky_e : float
        Sky of each epoch, electrons per pixel.
    template_shift_arcsec : (float, float)
        (east, north) offset of the template's pointing from the science frame's.
    template_rotation_deg : float
        Rotation of the template's WCS relative to the science frame's.
    template_exptime_factor : float
        The template's stars and galaxy are this many times brighter in ADU (a deeper exposure:
        its zero point is larger by ``2.5 log10`` of it).
    host_mag, host_r_eff_arcsec, host_sersic_n : float
        The host galaxies (one at the science frame's centre, or ``n_hosts`` on a grid).
    transient_offset_arcsec : (float, float)
        (east, north) offset of each transient from its host's nucleus.
    n_hosts : int
        Number of hosts, each with its transient.
    transient_snr : float
        Optimal S/N of the transient against sky, read noise and the host's light under it.
    transient_colour : float
        g - r of the transient.
    star_density, n_cosmics, n_hot_pixels
        As :func:`~cpcs.simulation.image_simulator.simulate_image` (both frames).
    """
    common = {
        "shape": shape,
        "star_density": star_density,
        "n_cosmics": n_cosmics,
        "n_hot_pixels": n_hot_pixels,
        "variable_fraction": 0.0,
        "zp_gradient_mag": 0.0,
        "sky_gradient": 0.0,
    }
    science = simulate_image(
        seed,
        fwhm_arcsec=science_fwhm_arcsec,
        sky_e_per_pix=science_sky_e,
        target=None,
        keep_model=True,
        **common,  # type: ignore[arg-type]
    )
    centre_ra, centre_dec = science.truth.centre_ra_deg, science.truth.centre_dec_deg
    cos_dec = math.cos(math.radians(centre_dec))
    template_ra = centre_ra + template_shift_arcsec[0] / 3600.0 / cos_dec
    template_dec = centre_dec + template_shift_arcsec[1] / 3600.0
    template = simulate_image(
        seed + 1_000_003,
        fwhm_arcsec=template_fwhm_arcsec,
        sky_e_per_pix=template_sky_e,
        ra_deg=template_ra,
        dec_deg=template_dec,
        rotation_deg=science.truth.rotation_deg + template_rotation_deg,
        target=None,
        sky_stars=science.stars,
        zp=science.truth.zp + 2.5 * math.log10(template_exptime_factor),
        date_obs="2015-10-02T21:10:00",
        keep_model=True,
        **common,  # type: ignore[arg-type]
    )
    ny, nx = science.truth.shape
    per_side = math.ceil(math.sqrt(n_hosts))
    grid_x = (
        (np.arange(n_hosts) % per_side + 0.5) / per_side * nx - 0.5
        if n_hosts > 1
        else np.array([(nx - 1) / 2.0])
    )
    grid_y = (
        (np.arange(n_hosts) // per_side + 0.5) / per_side * ny - 0.5
        if n_hosts > 1
        else np.array([(ny - 1) / 2.0])
    )
    host_ra, host_dec = science.true_wcs.all_pix2world(grid_x, grid_y, 0)
    hosts = tuple(
        Galaxy(
            ra_deg=float(ra),
            dec_deg=float(dec),
            mag_r=host_mag,
            r_eff_arcsec=host_r_eff_arcsec,
            sersic_n=host_sersic_n,
            pa_deg=30.0 + 47.0 * i,
        )
        for i, (ra, dec) in enumerate(zip(np.atleast_1d(host_ra), np.atleast_1d(host_dec), strict=True))
    )
    science, host_science = add_galaxies(science, hosts, seed=seed + 17)
    template, _ = add_galaxies(template, hosts, seed=seed + 19)
    xs, ys, fluxes = [], [], []
    for host in hosts:
        cos_host = math.cos(math.radians(host.dec_deg))
        t_ra = host.ra_deg + transient_offset_arcsec[0] / 3600.0 / cos_host
        t_dec = host.dec_deg + transient_offset_arcsec[1] / 3600.0
        tx_arr, ty_arr = science.true_wcs.all_world2pix(np.array([t_ra]), np.array([t_dec]), 0)
        tx, ty = float(tx_arr[0]), float(ty_arr[0])
        host_here = float(host_science[round(ty), round(tx)])
        xs.append(tx)
        ys.append(ty)
        fluxes.append(point_source_flux_for_snr(science, transient_snr, extra_background_adu=host_here))
    flux = np.array(fluxes)
    science = add_point_sources(science, np.array(xs), np.array(ys), flux, seed=seed + 23)
    t = science.truth
    inst = -2.5 * np.log10(flux)
    return EpochPair(
        science=science,
        template=template,
        hosts=hosts,
        transient_x=np.array(xs),
        transient_y=np.array(ys),
        transient_flux_adu=flux,
        transient_mag=inst + t.zp + t.colour_term * transient_colour,
        transient_inst_mag=inst,
        host_model_science_adu=host_science,
    )

"""Simulated calibrated CCD images with known truth, for the image pipeline's tests, benchmarks and demo.

The sky is the star population of :mod:`cpcs.simulation.catalogue_simulator` (number counts
``dN/dm ~ 10**(0.3 m)``, two-population ``g - r`` colours, the same PS1 and GaiaSP band relations,
error model, gaps and outliers) seen through a simulated camera:

* **Stars.** ``star_density * 10,000`` stars per square degree brighter than r = 20 (so about
  3,300 stars on a 2048 x 2048 frame of 0.6 arcsec pixels), from r = ``faint_limit_mag - 12`` down
  to ``faint_limit_mag + 1.5``, uniform over the frame and a margin around it (the margin is only in
  the reference catalogues, as a catalogue cone would be). Proper motions are a few mas/yr, 1 % of
  the stars move 10-50 mas/yr; the true positions are at the image epoch. ``variable_fraction`` of
  the stars are variables whose image magnitude is off by 0.2-1.0 mag from the catalogues.
* **Photometry.** The instrumental magnitude is ``m_inst = -2.5 log10(F_adu)`` with ``F_adu`` the
  star's total flux in ADU in the exposure (not per second); the truth is
  ``r = m_inst + zp + colour_term * (g - r) + P(xi, eta)`` with ``P = gx * xi + gy * eta`` a linear
  pattern in tangent-plane offsets (degrees) from the field centre (the true CRVAL), of
  ``zp_gradient_mag`` peak-to-peak over the frame (the spatial model of
  :func:`cpcs.science.zeropoint.fit_zero_point`).
* **Point spread function.** Moffat, index ``moffat_beta``, FWHM ``fwhm_arcsec`` at the centre growing
  to ``(1 + fwhm_variation)`` times that in the corners (quadratically with radius), integrated over
  the pixels (:mod:`cpcs.simulation._psf_render`). Each star is drawn in a stamp large enough that the
  flux left out is at most ``max(1e-4 F, 0.1 sigma_pix)`` (electrons; the stamp is at least 5 FWHM in
  half-size, so apertures and sky annuli within 5 FWHM see the exact profile); ``stars["rendered_fraction"]``
  is the fraction of each star's flux actually in the frame.
* **Detector.** Sky of ``sky_e_per_pix`` electrons at the centre with a planar gradient (fractional
  peak-to-peak ``sky_gradient``), Poisson noise on sky and stars, Gaussian read noise, conversion to
  ADU with the gain plus ``bias_adu``, cosmic rays (1-3 pixel tracks of 800-40,000 electrons per
  pixel, after the Poisson draw), hot pixels (500 ADU up to saturation above the sky, fixed), and
  clipping at ``saturation_adu``. The image is a calibrated float32 frame: no quantisation.
* **Astrometry.** A true TAN WCS centred on the frame (optionally with a SIP distortion of
  ``sip_distortion`` pixels at the corner, 70 % radial cubic, 30 % quadratic) and the header WCS the
  "observatory" wrote: off by ``header_offset_arcsec`` (east, north) at the centre, rotated by
  ``header_rotation_deg``, scaled by ``1 + header_scale_error``, without SIP unless ``header_sip``;
  or no WCS at all (sexagesimal RA/DEC pointing and a PIXSCALE keyword).
* **Reference catalogues.** ``PS1`` (g, r, i, z; positions at epoch 2012.0), ``GaiaSP`` (B, V, R, I)
  and ``Gaia`` (G, BP, RP; positions at epoch 2016.0 with proper motions), as
  :class:`cpcs.catalogs.model.ReferenceCatalogue`, with noise, gaps (``missing_fraction``) and
  outliers (``ref_outlier_fraction`` of the stars off by 0.2-0.75 mag in every band of a survey).
* **Target.** A transient at the field centre (plus ``target_offset_arcsec``), in no catalogue:
  ``"bright"`` (optimal S/N 400, capped so its peak stays below half the saturation level),
  ``"faint"`` (optimal S/N 10) or ``"undetected"`` (1.5-2.5 mag fainter than the optimal 5-sigma
  limit at its position); "optimal" is the PSF-fit S/N defined below, what forced PSF photometry of
  the target approaches. Stars are cleared from around it (see ``ImageTruth.target_clear_radius_pix``).

Limiting magnitudes (``ImageTruth``)
------------------------------------
Two analytic 5-sigma limits, at the field centre, for a point source:

* **optimal**: the Cramér-Rao bound of a PSF fit of the flux alone (known position, PSF and sky),
  ``SNR**2 = F**2 sum_i p_i**2 / (sigma**2 + F p_i)`` over the pixelated PSF centred on a pixel,
  ``sigma**2 = sky + read_noise**2`` (electrons**2). No method can do better.
* **aperture**: the pipeline's reference aperture (:mod:`cpcs.science.imaging`): a circle of
  radius ``aperture_radius_fwhm`` (default 2.5) times the central FWHM, the sky taken as the mean of
  an annulus of ``annulus_fwhm`` (default 3-5) FWHM::

      SNR = F EE / sqrt(F EE + A sigma**2 (1 + A / N_sky))

  with ``A = pi r**2``, ``N_sky`` the annulus area (no stars masked) and
  ``EE = 1 - (1 + r**2/alpha**2)**(1 - beta)`` the analytic encircled energy; the limit is quoted as
  the total (aperture-corrected) flux. ``annulus_fwhm=None`` means a perfectly known sky.

Both come as instrumental magnitudes and calibrated for a colour-0 source at the centre
(``limit_mag = limit_inst + zp``); :meth:`ImageTruth.limiting_inst_mag` evaluates them anywhere, for
any S/N or aperture.
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS, FITSFixedWarning
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.science.crossmatch import tangent_plane_offsets
from cpcs.simulation._psf_render import (
    moffat_alpha,
    moffat_fraction_outside,
    psf_snr,
    psf_stamps,
    render_stars,
    stamp_half_size,
)
from cpcs.simulation.catalogue_simulator import (
    SURVEYS,
    BandRelation,
    BandTruth,
    SurveyModel,
    _from_tangent_plane,
    _sample_colours,
    _sample_counts,
)

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.intp]
SpatialModel = Callable[[FloatArray, FloatArray], FloatArray]

TargetKind = Literal["bright", "faint", "undetected"]
HeaderStyle = Literal["plain", "exposure_jd", "mjd"]
Compression = Literal["gzip", "rice"]

__all__ = [
    "GAIA_SURVEY",
    "HEADER_STYLES",
    "ImageTarget",
    "ImageTruth",
    "SimulatedImage",
    "image_to_fits_bytes",
    "simulate_image",
]

#: Header keyword sets of :func:`simulate_image` (``header_style``).
HEADER_STYLES: tuple[str, ...] = ("plain", "exposure_jd", "mjd")

#: Gaia G, BP, RP as linear functions of PS1 r and g - r (approximate; they reproduce BP - RP of
#: the Sun, 0.82, and of an M0 dwarf, 1.84). The error depth of G is that of the G band alone
#: (:data:`_GAIA_BAND_DEPTH`); 20.8 is that of BP and RP.
GAIA_SURVEY = SurveyModel(
    name="Gaia",
    bands=(
        BandRelation("G", 0.10, -0.25),
        BandRelation("BP", 0.23, 0.20),
        BandRelation("RP", -0.10, -0.92),
    ),
    selection_band="G",
    bright_mag=3.0,
    faint_mag=20.7,
    depth_mag=20.8,
)
_GAIA_BAND_DEPTH: Mapping[str, float] = MappingProxyType({"G": 23.0})
_GAIA_ERROR_FLOOR_MAG = 0.003

#: Epoch (Julian year) of the positions of each simulated survey: Gaia's J2016.0, and a typical
#: mean epoch of the Pan-STARRS1 detections.
_SURVEY_EPOCH: Mapping[str, float] = MappingProxyType({"PS1": 2012.0, "GaiaSP": 2016.0, "Gaia": 2016.0})
_PS1_POSITION_NOISE_ARCSEC = 0.02

#: Stars per square degree brighter than r = 20 for ``star_density = 1``.
_BASE_DENSITY_PER_DEG2 = 10_000.0
_DENSITY_REFERENCE_MAG = 20.0
_COUNT_SLOPE = 0.3

_MARGIN_FRACTION = 0.15  # reference-catalogue margin around the frame, fraction of its size
_MIN_MARGIN_ARCSEC = 60.0
_MIN_STAMP_FWHM = 5.0
_MAX_STAMP_FWHM = 16.0
_OMITTED_FRACTION = 1e-4
_OMITTED_NOISE_FRACTION = 0.1  # of the background noise of one pixel at the centre

_TARGET_SNR_OPTIMAL: Mapping[str, float] = MappingProxyType({"bright": 400.0, "faint": 10.0})
_UNDETECTED_MAG_RANGE = (1.5, 2.5)
_TARGET_CLEAR_FWHM = 4.0  # no star at all within this many FWHM of the target
_TARGET_BRIGHT_CLEAR_FWHM = 15.0  # no star with S/N >~ 500 within this many FWHM
_BRIGHT_STAR_MAG_ABOVE_LIMIT = 5.0

_INST_MAG_DEFINITION = "m_inst = -2.5 log10(total flux of the source in ADU in the exposure)"


# --------------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class ImageTarget:
    """The transient of a simulated image.

    Attributes
    ----------
    kind : str
        ``"bright"``, ``"faint"`` or ``"undetected"``.
    ra_deg, dec_deg : float
        True position (ICRS, image epoch), degrees.
    x, y : float
        True position, 0-based pixels.
    true_mag, true_colour : float
        PS1-like r magnitude and g - r colour, mag.
    true_inst_mag : float
        Noiseless instrumental magnitude (``-2.5 log10`` of the total ADU).
    flux_e : float
        Total flux, electrons.
    expected_snr_optimal, expected_snr_aperture : float
        Expected S/N of the optimal and of the aperture measurement (see the module docstring).
    expected_detected : bool
        Whether the optimal S/N reaches 5.
    """

    kind: str
    ra_deg: float
    dec_deg: float
    x: float
    y: float
    true_mag: float
    true_colour: float
    true_inst_mag: float
    flux_e: float
    expected_snr_optimal: float
    expected_snr_aperture: float
    expected_detected: bool


@dataclass(frozen=True, eq=False)
class ImageTruth:
    """What the image pipeline should recover.

    Attributes
    ----------
    zp, colour_term : float
        ``r = m_inst + zp + colour_term * (g - r) + P`` (PS1 r and g - r; ``m_inst`` as defined
        by ``inst_mag_definition``).
    inst_mag_definition : str
        The definition of the instrumental magnitude (total ADU in the exposure).
    zp_gradient_mag_per_deg : (float, float)
        ``(gx, gy)`` of ``P = gx * xi + gy * eta``; xi, eta in degrees from ``(centre_ra_deg,
        centre_dec_deg)`` as :func:`cpcs.science.crossmatch.tangent_plane_offsets` gives them.
    zp_gradient_mag : float
        Peak-to-peak of ``P`` over the frame's corners, mag.
    centre_ra_deg, centre_dec_deg : float
        True sky position of the frame centre (CRVAL of the true WCS), degrees.
    bands : tuple of BandTruth
        True relation of every reference band (``band = m_inst + zp_b + ct_b * (g - r) + P``).
    exptime_s, gain_e_per_adu, read_noise_e, bias_adu, saturation_adu : float
        Exposure and detector.
    sky_e_per_pix : float
        Sky at the frame centre, electrons per pixel.
    sky_gradient : float
        Fractional peak-to-peak change of the sky across the frame.
    sky_gradient_direction_deg : float
        Direction of increasing sky, degrees from the +x axis towards +y.
    background_noise_e : float
        ``sqrt(sky + read_noise**2)`` at the centre, electrons per pixel.
    pixel_scale_arcsec : float
        True pixel scale, arcsec.
    fwhm_pix, fwhm_arcsec : float
        PSF FWHM at the centre.
    fwhm_variation : float
        Fractional FWHM increase from the centre to the corners.
    moffat_beta, moffat_alpha_pix : float
        Moffat index and core width at the centre.
    aperture_radius_pix : float
        Aperture radius of the aperture limit (``aperture_radius_fwhm * fwhm_pix``).
    sky_pixels : float
        Pixels of the sky annulus of the aperture measurement (``inf``: sky known exactly).
    limit_inst_mag_5sigma_optimal, limit_mag_5sigma_optimal : float
        5-sigma limit of the optimal (PSF-weighted) measurement at the centre; the calibrated value
        is for a colour-0 source.
    limit_inst_mag_5sigma_aperture, limit_mag_5sigma_aperture : float
        The same for the aperture measurement.
    rotation_deg : float
        Position angle of the image +y axis, degrees east of north (true).
    sip_distortion_pix : float
        Largest SIP displacement at a frame corner, pixels.
    header_offset_arcsec : (float, float)
        (east, north) offset of the header WCS (or header pointing) from the truth at the centre.
    header_rotation_deg, header_scale_error : float
        Rotation and fractional scale error of the header WCS.
    cosmic_ray_pixels : ndarray of int, shape (n, 2)
        (x, y) of every pixel hit by a cosmic ray.
    hot_pixels : ndarray of int, shape (n, 2)
        (x, y) of every hot pixel.
    hot_pixel_excess_adu : ndarray
        Excess of each hot pixel above the sky, ADU (before clipping).
    target_clear_radius_pix : float
        No star within this radius of the target (and no star with S/N >~ 500 within
        ``15 * FWHM``); 0 without a target.
    image_epoch_jyear : float
        Julian epoch of mid-exposure.
    n_stars_in_frame : int
        Stars whose centre lies in the frame.
    """

    zp: float
    colour_term: float
    inst_mag_definition: str
    zp_gradient_mag_per_deg: tuple[float, float]
    zp_gradient_mag: float
    centre_ra_deg: float
    centre_dec_deg: float
    bands: tuple[BandTruth, ...]
    exptime_s: float
    gain_e_per_adu: float
    read_noise_e: float
    bias_adu: float
    saturation_adu: float
    sky_e_per_pix: float
    sky_gradient: float
    sky_gradient_direction_deg: float
    background_noise_e: float
    pixel_scale_arcsec: float
    fwhm_pix: float
    fwhm_arcsec: float
    fwhm_variation: float
    moffat_beta: float
    moffat_alpha_pix: float
    aperture_radius_pix: float
    sky_pixels: float
    limit_inst_mag_5sigma_optimal: float
    limit_mag_5sigma_optimal: float
    limit_inst_mag_5sigma_aperture: float
    limit_mag_5sigma_aperture: float
    rotation_deg: float
    sip_distortion_pix: float
    header_offset_arcsec: tuple[float, float]
    header_rotation_deg: float
    header_scale_error: float
    cosmic_ray_pixels: IntArray
    hot_pixels: IntArray
    hot_pixel_excess_adu: FloatArray
    target_clear_radius_pix: float
    image_epoch_jyear: float
    n_stars_in_frame: int
    shape: tuple[int, int]

    # -- spatial models ----------------------------------------------------------------------------

    def zp_pattern(self, ra_deg: ArrayLike, dec_deg: ArrayLike) -> FloatArray:
        """The spatial term ``P`` (mag) at sky positions (degrees)."""
        xi, eta = tangent_plane_offsets(ra_deg, dec_deg, self.centre_ra_deg, self.centre_dec_deg)
        gx, gy = self.zp_gradient_mag_per_deg
        return np.asarray(gx * xi + gy * eta, dtype=np.float64)

    def calibrated_mag(
        self, inst_mag: ArrayLike, colour_gr: ArrayLike, ra_deg: ArrayLike, dec_deg: ArrayLike
    ) -> FloatArray:
        """True PS1 r of sources of instrumental magnitude ``inst_mag`` and colour ``g - r``."""
        inst = np.asarray(inst_mag, dtype=np.float64)
        colour = np.asarray(colour_gr, dtype=np.float64)
        return inst + self.zp + self.colour_term * colour + self.zp_pattern(ra_deg, dec_deg)

    def band(self, survey: str, band: str) -> BandTruth:
        """True relation of one reference band (``KeyError`` if unknown)."""
        for truth in self.bands:
            if truth.survey == survey and truth.band == band:
                return truth
        raise KeyError(f"{survey}/{band}")

    def _centre(self) -> tuple[float, float]:
        ny, nx = self.shape
        return (nx - 1) / 2.0, (ny - 1) / 2.0

    def sky_e_at(self, x: ArrayLike, y: ArrayLike) -> FloatArray:
        """Sky level (electrons per pixel) at 0-based pixel positions."""
        return _sky_model(self.shape, self.sky_e_per_pix, self.sky_gradient, self.sky_gradient_direction_deg)(
            np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        )

    def fwhm_pix_at(self, x: ArrayLike, y: ArrayLike) -> FloatArray:
        """PSF FWHM (pixels) at 0-based pixel positions."""
        return _fwhm_model(self.shape, self.fwhm_pix, self.fwhm_variation)(
            np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        )

    def limiting_inst_mag(
        self,
        method: Literal["optimal", "aperture"] = "optimal",
        *,
        snr: float = 5.0,
        aperture_radius_pix: float | None = None,
        sky_pixels: float | None = None,
        x: float | None = None,
        y: float | None = None,
    ) -> float:
        """Instrumental magnitude of a point source measured at S/N ``snr``.

        Parameters
        ----------
        method : {"optimal", "aperture"}
            PSF-weighted (Cramér-Rao) or circular-aperture measurement (module docstring).
        snr : float
            Signal-to-noise ratio.
        aperture_radius_pix : float, optional
            Aperture radius, pixels (default :attr:`aperture_radius_pix`).
        sky_pixels : float, optional
            Pixels averaged for the sky (default :attr:`sky_pixels`; ``math.inf``: known sky).
        x, y : float, optional
            0-based pixel position; sets the local sky, the FWHM and (optimal) the pixel phase.
            Default: the frame centre's sky and FWHM with the source centred on a pixel.

        Returns
        -------
        float
        """
        cx, cy = self._centre()
        px = cx if x is None else float(x)
        py = cy if y is None else float(y)
        variance = float(self.sky_e_at(px, py)) + self.read_noise_e**2
        alpha = float(moffat_alpha(float(self.fwhm_pix_at(px, py)), self.moffat_beta))
        if method == "optimal":
            phase = (
                (0.0, 0.0)
                if x is None or y is None
                else (px - math.floor(px + 0.5), py - math.floor(py + 0.5))
            )
            flux = _limit_flux_optimal(alpha, self.moffat_beta, variance, snr, phase)
        elif method == "aperture":
            radius = self.aperture_radius_pix if aperture_radius_pix is None else float(aperture_radius_pix)
            n_sky = self.sky_pixels if sky_pixels is None else float(sky_pixels)
            flux = _limit_flux_aperture(radius, alpha, self.moffat_beta, variance, snr, n_sky)
        else:
            raise ValueError(f"unknown method {method!r}")
        return _inst_mag(flux, self.gain_e_per_adu)

    @property
    def zp_per_second(self) -> float:
        """Zero point for instrumental magnitudes per second, ``-2.5 log10(F_adu / exptime)``."""
        return self.zp - 2.5 * math.log10(self.exptime_s)


@dataclass(frozen=True, eq=False)
class SimulatedImage:
    """A simulated calibrated CCD image with its truth.

    Attributes
    ----------
    data : ndarray of float32, shape (ny, nx)
        The image, ADU.
    header : astropy.io.fits.Header
        The observatory's header (primary-HDU form), with the wrong WCS as requested.
    true_wcs : astropy.wcs.WCS
        The true pixel-to-sky mapping (TAN, with SIP when ``sip_distortion > 0``).
    header_wcs : astropy.wcs.WCS or None
        The WCS of the header (None when the header has none).
    stars : astropy.table.Table
        Every simulated star (frame and margin): ``id``, ``ra_deg``, ``dec_deg`` (image epoch),
        ``x``, ``y`` (0-based pixels), ``in_frame``, ``mag_r``, ``colour_gr``, ``inst_mag``,
        ``flux_e``, ``fwhm_pix``, ``peak_adu`` (noiseless brightest pixel with sky and neighbours),
        ``saturated``, ``snr_optimal``, ``snr_aperture``, ``rendered_fraction`` (flux in the frame /
        ``flux_e``), ``pmra_mas_yr``, ``pmdec_mas_yr`` (true; pmra includes cos dec), ``variable``,
        ``variable_offset_mag``. Quantities that need the frame are NaN (or 0) off it.
    references : mapping of str to ReferenceCatalogue
        ``"PS1"``, ``"GaiaSP"`` and ``"Gaia"``.
    reference_index : mapping of str to ndarray of int
        Row of ``stars`` of every reference star.
    gaia_pm_mas_yr : (ndarray, ndarray)
        Catalogue proper motions (pmRA incl. cos dec, pmDE; mas/yr) aligned with ``references["Gaia"]``.
    truth : ImageTruth
    target : ImageTarget or None
    mjd_mid : float
        MJD (UTC) of mid-exposure.
    model_adu : ndarray of float32 or None
        The noiseless image (sky, stars and target in ADU, with bias; no cosmics, hot pixels or
        clipping), only with ``keep_model=True``.
    """

    data: Float32Array
    header: fits.Header
    true_wcs: WCS
    header_wcs: WCS | None
    stars: Table
    references: Mapping[str, ReferenceCatalogue]
    reference_index: Mapping[str, IntArray]
    gaia_pm_mas_yr: tuple[FloatArray, FloatArray]
    truth: ImageTruth
    target: ImageTarget | None
    mjd_mid: float
    model_adu: Float32Array | None = None


# --------------------------------------------------------------------------------------------------
# Models


def _sky_model(shape: tuple[int, int], sky_e: float, gradient: float, direction_deg: float) -> SpatialModel:
    """Planar sky (electrons per pixel): ``sky_e`` at the centre, ``gradient`` peak-to-peak fraction."""
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    cos_t, sin_t = math.cos(math.radians(direction_deg)), math.sin(math.radians(direction_deg))
    span = abs(cos_t) * max(nx - 1, 1) + abs(sin_t) * max(ny - 1, 1)

    def sky(x: FloatArray, y: FloatArray) -> FloatArray:
        return np.asarray(sky_e * (1.0 + gradient * ((x - cx) * cos_t + (y - cy) * sin_t) / span))

    return sky


def _fwhm_model(shape: tuple[int, int], fwhm_pix: float, variation: float) -> SpatialModel:
    """FWHM (pixels): ``fwhm_pix`` at the centre, ``(1 + variation)`` times it in the corners."""
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    corner2 = max(cx * cx + cy * cy, 1.0)

    def fwhm(x: FloatArray, y: FloatArray) -> FloatArray:
        return np.asarray(fwhm_pix * (1.0 + variation * ((x - cx) ** 2 + (y - cy) ** 2) / corner2))

    return fwhm


def _inst_mag(flux_e: float, gain: float) -> float:
    return -2.5 * math.log10(flux_e / gain)


def _limit_flux_optimal(
    alpha: float, beta: float, variance_e2: float, snr: float, phase: tuple[float, float] = (0.0, 0.0)
) -> float:
    """Flux (electrons) of a point source with Cramér-Rao S/N ``snr``.

    ``phase`` is the source position minus its nearest pixel centre (0, 0: centred on a pixel).
    """
    fx, fy = np.array([phase[0]]), np.array([phase[1]])

    def excess(log_flux: float) -> float:
        flux = math.exp(log_flux)
        value = psf_snr(np.array([flux]), fx, fy, np.array([alpha]), beta, variance_e2)
        return float(value[0]) - snr

    return math.exp(brentq(excess, math.log(1e-6), math.log(1e15), xtol=1e-10))


def _limit_flux_aperture(
    radius: float, alpha: float, beta: float, variance_e2: float, snr: float, sky_pixels: float
) -> float:
    """Total flux (electrons) measured at S/N ``snr`` in a circular aperture, sky from ``sky_pixels``."""
    area = math.pi * radius * radius
    background = area * variance_e2 * (1.0 + area / sky_pixels)
    enclosed = 1.0 - float(moffat_fraction_outside(radius, alpha, beta))
    signal = (snr * snr + math.sqrt(snr**4 + 4.0 * snr * snr * background)) / 2.0
    return signal / enclosed


def _aperture_snr(
    flux_e: FloatArray, radius: float, alpha: FloatArray, beta: float, variance: FloatArray, sky_pixels: float
) -> FloatArray:
    area = math.pi * radius * radius
    signal = flux_e * (1.0 - moffat_fraction_outside(radius, alpha, beta))
    return np.asarray(signal / np.sqrt(np.maximum(signal, 0.0) + area * variance * (1.0 + area / sky_pixels)))


# --------------------------------------------------------------------------------------------------
# WCS


def _cd_matrix(scale_deg: float, rotation_deg: float) -> FloatArray:
    """CD matrix of an east-left image whose +y axis points at position angle ``rotation_deg``."""
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    return scale_deg * np.array([[-c, s], [s, c]])


def _sip_polynomials(
    rng: np.random.Generator, shape: tuple[int, int], corner_pix: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """SIP A, B (order 3) moving a corner by at most ``corner_pix``; AP, BP (order 4) invert them."""
    ny, nx = shape
    hx, hy = nx / 2.0, ny / 2.0
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    # Radial cubic term k r**2 (u, v); barrel or pincushion.
    k = 1.0 / (hx * hx + hy * hy) ** 1.5 * rng.choice([-1.0, 1.0])
    a[3, 0] = a[1, 2] = k
    b[2, 1] = b[0, 3] = k
    quad = rng.normal(size=6) / (hx * hx + hy * hy)
    q_a = np.zeros((4, 4))
    q_b = np.zeros((4, 4))
    q_a[2, 0], q_a[1, 1], q_a[0, 2], q_b[2, 0], q_b[1, 1], q_b[0, 2] = quad

    corners = np.array([[hx, hy], [-hx, hy], [hx, -hy], [-hx, -hy]])

    def largest(pa: FloatArray, pb: FloatArray) -> float:
        du = _poly2(pa, corners[:, 0], corners[:, 1])
        dv = _poly2(pb, corners[:, 0], corners[:, 1])
        return float(np.max(np.hypot(du, dv)))

    q_scale = 0.3 / largest(q_a, q_b)
    r_scale = 0.7 / largest(a, b)
    a, b = r_scale * a + q_scale * q_a, r_scale * b + q_scale * q_b
    total = largest(a, b)
    a *= corner_pix / total
    b *= corner_pix / total
    # Inverse polynomials by least squares on a grid covering the frame (and a little beyond).
    gu, gv = np.meshgrid(np.linspace(-1.1 * hx, 1.1 * hx, 41), np.linspace(-1.1 * hy, 1.1 * hy, 41))
    u, v = gu.ravel(), gv.ravel()
    big_u = u + _poly2(a, u, v)
    big_v = v + _poly2(b, u, v)
    order = 4
    terms = [(p, q) for p in range(order + 1) for q in range(order + 1 - p)]
    norm = max(hx, hy)
    design = np.stack([(big_u / norm) ** p * (big_v / norm) ** q for p, q in terms], axis=1)
    coef_u = np.linalg.lstsq(design, u - big_u, rcond=None)[0]
    coef_v = np.linalg.lstsq(design, v - big_v, rcond=None)[0]
    ap = np.zeros((order + 1, order + 1))
    bp = np.zeros((order + 1, order + 1))
    for (p, q), cu, cv in zip(terms, coef_u, coef_v, strict=True):
        ap[p, q] = cu / norm ** (p + q)
        bp[p, q] = cv / norm ** (p + q)
    return a, b, ap, bp


def _poly2(coef: FloatArray, u: FloatArray, v: FloatArray) -> FloatArray:
    out = np.zeros_like(u, dtype=np.float64)
    for p in range(coef.shape[0]):
        for q in range(coef.shape[1]):
            if coef[p, q] != 0.0:
                out = out + coef[p, q] * u**p * v**q
    return out


def _wcs_cards(
    shape: tuple[int, int],
    ra_deg: float,
    dec_deg: float,
    scale_deg: float,
    rotation_deg: float,
    sip: tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None,
) -> fits.Header:
    ny, nx = shape
    suffix = "-SIP" if sip is not None else ""
    cd = _cd_matrix(scale_deg, rotation_deg)
    header = fits.Header()
    header["WCSAXES"] = 2
    header["CTYPE1"] = "RA---TAN" + suffix
    header["CTYPE2"] = "DEC--TAN" + suffix
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    header["CRVAL1"] = float(np.mod(ra_deg, 360.0))
    header["CRVAL2"] = float(dec_deg)
    header["CRPIX1"] = nx / 2.0 + 0.5
    header["CRPIX2"] = ny / 2.0 + 0.5
    header["CD1_1"] = float(cd[0, 0])
    header["CD1_2"] = float(cd[0, 1])
    header["CD2_1"] = float(cd[1, 0])
    header["CD2_2"] = float(cd[1, 1])
    header["RADESYS"] = "ICRS"
    header["EQUINOX"] = 2000.0
    if sip is not None:
        for name, coef in zip(("A", "B", "AP", "BP"), sip, strict=True):
            order = coef.shape[0] - 1
            header[f"{name}_ORDER"] = order
            for p in range(order + 1):
                for q in range(order + 1 - p):
                    if coef[p, q] != 0.0:
                        header[f"{name}_{p}_{q}"] = float(coef[p, q])
    return header


def _wcs_from_cards(cards: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(cards)


def _sexagesimal(ra_deg: float, dec_deg: float, sep: str = ":") -> tuple[str, str]:
    total = round(float(np.mod(ra_deg, 360.0)) / 15.0 * 3600.0 * 1000.0)  # milliseconds of time
    total %= 24 * 3600 * 1000
    h, rem = divmod(total, 3600 * 1000)
    m, rem = divmod(rem, 60 * 1000)
    ra_text = f"{h:02d}{sep}{m:02d}{sep}{rem / 1000.0:06.3f}"
    sign = "-" if dec_deg < 0 else "+"
    total_d = round(abs(dec_deg) * 3600.0 * 100.0)  # centi-arcsec
    d, rem_d = divmod(total_d, 3600 * 100)
    dm, rem_d = divmod(rem_d, 60 * 100)
    dec_text = f"{sign}{d:02d}{sep}{dm:02d}{sep}{rem_d / 100.0:05.2f}"
    return ra_text, dec_text


# --------------------------------------------------------------------------------------------------
# Reference catalogues


def _observe(
    rng: np.random.Generator,
    truth_mag: FloatArray,
    floor_mag: float,
    depth_mag: float,
    missing_fraction: float,
) -> tuple[FloatArray, FloatArray]:
    """Catalogue magnitudes with the error model of the catalogue simulator, and gaps."""
    error = np.hypot(floor_mag, 0.2 * 10.0 ** (0.4 * (truth_mag - depth_mag)))
    observed = truth_mag + error * rng.normal(size=truth_mag.size)
    missing = rng.uniform(size=truth_mag.size) < missing_fraction
    observed[missing] = np.nan
    error[missing] = np.nan
    return observed, error


def _gaia_astrometric_noise_mas(g_mag: FloatArray) -> FloatArray:
    return np.asarray(0.02 + 0.3 * 10.0 ** (0.2 * (np.clip(g_mag, 10.0, 21.0) - 19.0)))


def _offset_positions(
    ra_deg: FloatArray, dec_deg: FloatArray, east_arcsec: FloatArray, north_arcsec: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Small offsets on the sky (arcsec east and north; exact enough below an arcminute)."""
    dec = dec_deg + north_arcsec / 3600.0
    ra = ra_deg + east_arcsec / 3600.0 / np.cos(np.radians(dec_deg))
    return np.mod(ra, 360.0), dec


def _build_references(
    rng: np.random.Generator,
    ra_deg: FloatArray,
    dec_deg: FloatArray,
    true_r: FloatArray,
    true_c: FloatArray,
    pmra: FloatArray,
    pmdec: FloatArray,
    image_epoch: float,
    *,
    ref_noise_mag: float,
    missing_fraction: float,
    outlier_fraction: float,
) -> tuple[dict[str, ReferenceCatalogue], dict[str, IntArray], tuple[FloatArray, FloatArray]]:
    n = ra_deg.size
    # Gaia astrometry (shared by Gaia and GaiaSP): positions at 2016.0 and proper motions.
    true_g = true_r + GAIA_SURVEY.bands[0].offset_mag + GAIA_SURVEY.bands[0].colour_slope * true_c
    noise_mas = _gaia_astrometric_noise_mas(true_g)
    pos_noise = noise_mas[:, None] * rng.normal(size=(n, 2))
    pm_noise = noise_mas[:, None] * rng.normal(size=(n, 2))
    positions: dict[str, tuple[FloatArray, FloatArray]] = {}
    for survey, epoch in _SURVEY_EPOCH.items():
        years = epoch - image_epoch
        if survey == "PS1":
            noise = _PS1_POSITION_NOISE_ARCSEC * rng.normal(size=(n, 2))
        else:
            noise = pos_noise / 1000.0
        positions[survey] = _offset_positions(
            ra_deg, dec_deg, pmra * years / 1000.0 + noise[:, 0], pmdec * years / 1000.0 + noise[:, 1]
        )

    references: dict[str, ReferenceCatalogue] = {}
    index: dict[str, IntArray] = {}
    gaia_pm: tuple[FloatArray, FloatArray] = (np.empty(0), np.empty(0))
    for model in (*SURVEYS, GAIA_SURVEY):
        true_band = {b.band: true_r + b.offset_mag + b.colour_slope * true_c for b in model.bands}
        selection = true_band[model.selection_band]
        listed = np.flatnonzero((selection > model.bright_mag) & (selection < model.faint_mag))
        outlier = rng.uniform(size=listed.size) < outlier_fraction
        shift = np.where(outlier, rng.uniform(0.2, 0.75, listed.size), 0.0)
        shift *= np.where(rng.uniform(size=listed.size) < 0.7, -1.0, 1.0)
        mags: dict[str, FloatArray] = {}
        errs: dict[str, FloatArray] = {}
        for relation in model.bands:
            if model is GAIA_SURVEY:
                floor = _GAIA_ERROR_FLOOR_MAG
                depth = _GAIA_BAND_DEPTH.get(relation.band, model.depth_mag)
            else:
                floor, depth = ref_noise_mag, model.depth_mag
            observed, error = _observe(rng, true_band[relation.band][listed], floor, depth, missing_fraction)
            mags[relation.band] = observed + shift
            errs[relation.band] = error
        ra, dec = positions[model.name]
        if model is GAIA_SURVEY:
            gaia_pm = (pmra[listed] + pm_noise[listed, 0], pmdec[listed] + pm_noise[listed, 1])
        references[model.name] = ReferenceCatalogue(
            model.name,
            ra[listed],
            dec[listed],
            mags,
            errs,
            pmra_mas_yr=gaia_pm[0] if model is GAIA_SURVEY else None,
            pmdec_mas_yr=gaia_pm[1] if model is GAIA_SURVEY else None,
            epoch=_SURVEY_EPOCH.get(model.name),
        )
        index[model.name] = listed.astype(np.intp)
    return references, index, gaia_pm


#: Response of a colour mosaic's red and blue sites relative to its green ones (the simulated light
#: is the green light; see :func:`_make_mosaic`).
_MOSAIC_RESPONSE = {"R": 0.6, "B": 0.4, "G": 1.0}


def _make_mosaic(data: Float32Array, pattern: str, bias_adu: float) -> None:
    """Turn a frame into a raw colour mosaic, in place: the simulated picture is what the green sites
    see; red and blue sites see the same sky and stars scaled by ``_MOSAIC_RESPONSE`` (noise
    included: those pixels are never measured, only their presence matters)."""
    for row in (0, 1):
        for col in (0, 1):
            response = _MOSAIC_RESPONSE[pattern[2 * row + col]]
            if response != 1.0:
                site = data[row::2, col::2]
                site -= np.float32(bias_adu)
                site *= np.float32(response)
                site += np.float32(bias_adu)


# --------------------------------------------------------------------------------------------------
# Header


def _observatory_header(
    *,
    style: str,
    start: Time,
    exptime_s: float,
    filter_name: str,
    gain: float,
    read_noise_e: float,
    saturation_adu: float,
    object_name: str,
    pointing: tuple[float, float],
    pixscale_arcsec: float,
    wcs_cards: fits.Header | None,
) -> fits.Header:
    header = fits.Header()
    header["OBJECT"] = (object_name, "target name")
    header["TELESCOP"] = ("CPCS-SIM", "simulated telescope")
    header["INSTRUME"] = ("SIMCCD", "simulated camera")
    if style == "plain":
        header["DATE-OBS"] = (start.isot, "UTC start of exposure")
        header["EXPTIME"] = (exptime_s, "exposure time [s]")
        header["FILTER"] = (filter_name, "filter")
        header["GAIN"] = (gain, "[e-/ADU]")
        header["RDNOISE"] = (read_noise_e, "read noise [e-]")
        header["SATURATE"] = (saturation_adu, "saturation level [ADU]")
    elif style == "exposure_jd":
        header["JD"] = (float(start.jd), "Julian date (UTC) of exposure start")
        header["EXPOSURE"] = (exptime_s, "exposure time [s]")
        header["FILTNAM"] = (filter_name, "filter")
        header["EGAIN"] = (gain, "electronic gain [e-/ADU]")
        header["SATLEVEL"] = (saturation_adu, "saturation level [ADU]")
    elif style == "mjd":
        header["MJD-OBS"] = (float(start.mjd), "MJD (UTC) of exposure start")
        header["EXPTIME"] = (exptime_s, "exposure time [s]")
        header["FILTER1"] = (filter_name, "filter wheel 1")
    else:
        raise ValueError(f"unknown header_style {style!r}; use one of {HEADER_STYLES}")
    ra_text, dec_text = _sexagesimal(*pointing)
    header["RA"] = (ra_text, "telescope pointing (J2000)")
    header["DEC"] = (dec_text, "telescope pointing (J2000)")
    header["PIXSCALE"] = (pixscale_arcsec, "pixel scale [arcsec/pixel]")
    header["BUNIT"] = "ADU"
    if wcs_cards is not None:
        header.update(wcs_cards)
    header["COMMENT"] = "Simulated image (cpcs.simulation.image_simulator)"
    return header


# --------------------------------------------------------------------------------------------------
# The simulation


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _noisy_frame(
    rng: np.random.Generator,
    model_e: Float32Array,
    cosmic_pixels: IntArray,
    cosmic_e: FloatArray,
    read_noise_e: float,
    gain: float,
    bias_adu: float,
) -> Float32Array:
    """Poisson(model) + cosmics + read noise, in ADU with bias; row chunks keep temporaries small."""
    ny, nx = model_e.shape
    data = np.empty_like(model_e)
    rows = max(1, (1 << 20) // max(nx, 1))
    for start in range(0, ny, rows):
        block = model_e[start : start + rows]
        data[start : start + rows] = rng.poisson(np.maximum(block, 0.0)).astype(np.float32)
    if cosmic_pixels.size:
        np.add.at(data, (cosmic_pixels[:, 1], cosmic_pixels[:, 0]), cosmic_e.astype(np.float32))
    scale = np.float32(1.0 / gain)
    for start in range(0, ny, rows):
        block = data[start : start + rows]
        noise = rng.standard_normal(block.shape, dtype=np.float32)
        noise *= np.float32(read_noise_e)
        block += noise
        block *= scale
        block += np.float32(bias_adu)
    return data


def _defect_positions(
    rng: np.random.Generator,
    n: int,
    shape: tuple[int, int],
    avoid_xy: tuple[float, float] | None,
    radius: float,
) -> IntArray:
    ny, nx = shape
    picked: list[IntArray] = []
    count = 0
    while count < n:
        xy = np.stack([rng.integers(0, nx, 2 * n + 8), rng.integers(0, ny, 2 * n + 8)], axis=1)
        if avoid_xy is not None:
            far = np.hypot(xy[:, 0] - avoid_xy[0], xy[:, 1] - avoid_xy[1]) > radius
            xy = xy[far]
        picked.append(xy.astype(np.intp))
        count += xy.shape[0]
    return np.concatenate(picked)[:n] if n else np.zeros((0, 2), dtype=np.intp)


def _cosmic_rays(
    rng: np.random.Generator,
    n: int,
    shape: tuple[int, int],
    avoid_xy: tuple[float, float] | None,
    radius: float,
) -> tuple[IntArray, FloatArray]:
    ny, nx = shape
    starts = _defect_positions(rng, n, shape, avoid_xy, radius)
    steps = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]])
    pixels: list[IntArray] = []
    energies: list[FloatArray] = []
    for x0, y0 in starts:
        length = int(rng.integers(1, 4))
        step = steps[int(rng.integers(0, 8))]
        track = np.array([[x0 + i * step[0], y0 + i * step[1]] for i in range(length)], dtype=np.intp)
        energy = np.exp(rng.uniform(math.log(800.0), math.log(40_000.0), length))
        inside = (track[:, 0] >= 0) & (track[:, 0] < nx) & (track[:, 1] >= 0) & (track[:, 1] < ny)
        pixels.append(track[inside])
        energies.append(energy[inside])
    if not pixels:
        return np.zeros((0, 2), dtype=np.intp), np.zeros(0)
    return np.concatenate(pixels), np.concatenate(energies)


def simulate_image(
    seed: int,
    *,
    shape: tuple[int, int] = (2048, 2048),
    pixel_scale_arcsec: float = 0.6,
    ra_deg: float = 295.00474,
    dec_deg: float = 30.13149,
    rotation_deg: float = 0.0,
    fwhm_arcsec: float = 2.0,
    moffat_beta: float = 3.0,
    fwhm_variation: float = 0.0,
    sky_e_per_pix: float = 1000.0,
    sky_gradient: float = 0.0,
    gain_e_per_adu: float = 1.5,
    read_noise_e: float = 8.0,
    saturation_adu: float = 60000.0,
    bias_adu: float = 0.0,
    exptime_s: float = 60.0,
    n_cosmics: int = 30,
    n_hot_pixels: int = 50,
    sip_distortion: float = 0.0,
    header_offset_arcsec: tuple[float, float] = (0.0, 0.0),
    header_rotation_deg: float = 0.0,
    header_wcs: bool = True,
    zp: float = 25.0,
    colour_term: float = 0.12,
    zp_gradient_mag: float = 0.0,
    star_density: float = 1.0,
    target: TargetKind | None = "bright",
    target_colour: float = 0.3,
    date_obs: str = "2016-12-15T19:40:00",
    filter_name: str = "r",
    faint_limit_mag: float = 20.0,
    header_style: HeaderStyle = "plain",
    header_sip: bool = False,
    header_scale_error: float = 0.0,
    object_name: str = "SIM-TARGET",
    target_offset_arcsec: tuple[float, float] = (0.0, 0.0),
    variable_fraction: float = 0.02,
    missing_fraction: float = 0.0,
    ref_noise_mag: float = 0.02,
    ref_outlier_fraction: float = 0.01,
    aperture_radius_fwhm: float = 2.5,
    annulus_fwhm: tuple[float, float] | None = (3.0, 5.0),
    keep_model: bool = False,
    bayer_pattern: str | None = None,
    sky_stars: Table | None = None,
) -> SimulatedImage:
    """Simulate a calibrated CCD image of a transient's field (model: see the module docstring).

    Parameters
    ----------
    seed : int
        Seed; the same seed and arguments give the same image. The star field, the references,
        the noise and the defects use separate random streams, so e.g. changing ``n_cosmics``
        leaves the stars alone. Stars are placed in pixel coordinates: the same seed with another
        WCS (rotation, distortion, centre) gives the same picture on other sky positions.
    shape : (int, int)
        ``(ny, nx)``, pixels.
    pixel_scale_arcsec : float
        True pixel scale, arcsec per pixel.
    ra_deg, dec_deg : float
        Sky position of the frame centre (and, by default, of the target), degrees.
    rotation_deg : float
        Position angle of the image +y axis, degrees east of north (0: north up, east left).
    fwhm_arcsec : float
        PSF FWHM at the centre, arcsec.
    moffat_beta : float
        Moffat index (> 1; 2.5-4.5 is typical).
    fwhm_variation : float
        Fractional FWHM increase from the centre to the corners (quadratic in radius).
    sky_e_per_pix : float
        Sky at the centre, electrons per pixel.
    sky_gradient : float
        Fractional peak-to-peak change of the sky across the frame (random direction).
    gain_e_per_adu, read_noise_e : float
        Gain (e-/ADU) and read noise (electrons).
    saturation_adu : float
        Clipping level of the image, ADU.
    bias_adu : float
        Constant added to the image (0 for a calibrated image), ADU.
    exptime_s : float
        Exposure time, s (header only: fluxes follow ``zp``).
    n_cosmics, n_hot_pixels : int
        Cosmic-ray tracks and hot pixels.
    sip_distortion : float
        Largest displacement of the true SIP distortion at a frame corner, pixels (0: pure TAN).
    header_offset_arcsec : (float, float)
        (east, north) error of the header WCS (or pointing) at the centre, arcsec.
    header_rotation_deg : float
        Rotation error of the header WCS, degrees.
    header_wcs : bool
        False: the header has no WCS, only the sexagesimal RA/DEC pointing and PIXSCALE.
    zp, colour_term : float
        ``r = m_inst + zp + colour_term * (g - r) + P`` (mag).
    zp_gradient_mag : float
        Peak-to-peak of the spatial term ``P`` over the frame, mag (random direction).
    star_density : float
        Star density multiplier (1: 10,000 per square degree brighter than r = 20; about 8 for a
        crowded field).
    target : {"bright", "faint", "undetected"} or None
        The transient (module docstring), or none.
    target_colour : float
        The target's g - r, mag.
    date_obs : str
        UTC start of the exposure (ISO).
    filter_name : str
        Filter written to the header.
    faint_limit_mag : float
        The population is simulated down to r = ``faint_limit_mag + 1.5`` (it does not set the
        image depth: that follows from ``zp`` and the noise, see ``ImageTruth``).
    header_style : {"plain", "exposure_jd", "mjd"}
        Keyword set: ``plain`` DATE-OBS, EXPTIME, FILTER, GAIN, RDNOISE, SATURATE; ``exposure_jd``
        JD, EXPOSURE, FILTNAM, EGAIN, SATLEVEL; ``mjd`` MJD-OBS, EXPTIME, FILTER1 and no gain or
        saturation keyword. All have OBJECT, RA, DEC (sexagesimal pointing) and PIXSCALE.
    header_sip : bool
        Write the true SIP polynomials into the header WCS too.
    header_scale_error : float
        Fractional pixel-scale error of the header WCS and PIXSCALE.
    object_name : str
        OBJECT keyword.
    target_offset_arcsec : (float, float)
        (east, north) offset of the target from the frame centre, arcsec.
    variable_fraction : float
        Fraction of stars whose image magnitude is off by 0.2-1.0 mag from the catalogues.
    missing_fraction : float
        Fraction of reference magnitudes that are missing, independently per band.
    ref_noise_mag : float
        Error floor of the PS1 and GaiaSP magnitudes, mag.
    ref_outlier_fraction : float
        Fraction of reference stars whose magnitudes are off by 0.2-0.75 mag in a survey.
    aperture_radius_fwhm : float
        Aperture radius, in central FWHM, of the aperture limit and ``snr_aperture``.
    annulus_fwhm : (float, float) or None
        Inner and outer radius of the sky annulus of the aperture measurement, in central FWHM
        (None: sky known exactly).
    keep_model : bool
        Also return the noiseless image (``model_adu``).
    bayer_pattern : str, optional
        Make the frame a raw colour mosaic (``"RGGB"``...; a ``BAYERPAT`` card says so): the
        simulated light is what its green sites see, the red and blue sites see it scaled (0.6,
        0.4). Undersampled frames need nothing special: give ``fwhm_arcsec`` of about one pixel.
    sky_stars : astropy.table.Table, optional
        Render these stars instead of drawing a population (columns ``ra_deg``, ``dec_deg``,
        ``mag_r``, ``colour_gr``, ``pmra_mas_yr``, ``pmdec_mas_yr``: e.g. the ``stars`` of another
        simulated image, to see the same sky at another epoch through another WCS). They are not
        variable and do not move between the epochs.

    Returns
    -------
    SimulatedImage

    Raises
    ------
    ValueError
        For arguments out of range.
    """
    ny, nx = (int(v) for v in shape)
    _check(ny >= 16 and nx >= 16, f"shape must be at least 16 x 16, got {shape}")
    _check(pixel_scale_arcsec > 0 and fwhm_arcsec > 0, "pixel scale and FWHM must be positive")
    _check(moffat_beta > 1.0, "moffat_beta must exceed 1")
    _check(fwhm_variation > -0.5, "fwhm_variation must exceed -0.5")
    _check(abs(sky_gradient) < 2.0, "sky_gradient must be within (-2, 2)")
    _check(sky_e_per_pix >= 0 and read_noise_e >= 0, "sky and read noise must not be negative")
    _check(sky_e_per_pix + read_noise_e > 0, "sky and read noise cannot both be zero")
    _check(gain_e_per_adu > 0 and exptime_s > 0, "gain and exposure time must be positive")
    _check(star_density >= 0, "star_density must not be negative")
    _check(n_cosmics >= 0 and n_hot_pixels >= 0, "defect counts must not be negative")
    _check(sip_distortion >= 0, "sip_distortion must not be negative")
    _check(target is None or target in ("bright", "faint", "undetected"), f"unknown target {target!r}")
    _check(
        header_style in HEADER_STYLES, f"unknown header_style {header_style!r}; use one of {HEADER_STYLES}"
    )
    _check(aperture_radius_fwhm > 0, "aperture_radius_fwhm must be positive")
    _check(
        annulus_fwhm is None or 0 <= annulus_fwhm[0] < annulus_fwhm[1], "annulus_fwhm must be (inner, outer)"
    )
    frame_shape = (ny, nx)

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    rng_geometry, rng_stars, rng_target, rng_refs, rng_noise, rng_cosmics, rng_hot = streams

    start = Time(date_obs, format="isot", scale="utc", precision=3)
    mid = start + TimeDelta(exptime_s / 2.0, format="sec")
    image_epoch = float(mid.tt.jyear)
    scale_deg = pixel_scale_arcsec / 3600.0

    # --- geometry: true WCS, sky, PSF, zero-point pattern -------------------------------------------
    sky_direction = float(rng_geometry.uniform(0.0, 360.0))
    zp_direction = float(rng_geometry.uniform(0.0, 2.0 * math.pi))
    sip = _sip_polynomials(rng_geometry, frame_shape, sip_distortion) if sip_distortion > 0 else None
    true_cards = _wcs_cards(frame_shape, ra_deg, dec_deg, scale_deg, rotation_deg, sip)
    true_wcs = _wcs_from_cards(true_cards)
    centre_ra, centre_dec = float(true_cards["CRVAL1"]), float(true_cards["CRVAL2"])
    sky_at = _sky_model(frame_shape, sky_e_per_pix, sky_gradient, sky_direction)
    fwhm_pix = fwhm_arcsec / pixel_scale_arcsec
    fwhm_at = _fwhm_model(frame_shape, fwhm_pix, fwhm_variation)
    alpha_centre = float(moffat_alpha(fwhm_pix, moffat_beta))
    corner_ra, corner_dec = true_wcs.all_pix2world(
        np.array([-0.5, nx - 0.5, -0.5, nx - 0.5]), np.array([-0.5, -0.5, ny - 0.5, ny - 0.5]), 0
    )
    corner_xi, corner_eta = tangent_plane_offsets(corner_ra, corner_dec, centre_ra, centre_dec)
    projection = math.cos(zp_direction) * corner_xi + math.sin(zp_direction) * corner_eta
    gradient = zp_gradient_mag / float(np.ptp(projection))
    gx, gy = gradient * math.cos(zp_direction), gradient * math.sin(zp_direction)

    variance_centre = sky_e_per_pix + read_noise_e**2
    aperture_radius = aperture_radius_fwhm * fwhm_pix
    sky_pixels = (
        math.inf
        if annulus_fwhm is None
        else math.pi * (annulus_fwhm[1] ** 2 - annulus_fwhm[0] ** 2) * fwhm_pix**2
    )
    limit_flux_opt = _limit_flux_optimal(alpha_centre, moffat_beta, variance_centre, 5.0)
    limit_flux_ap = _limit_flux_aperture(
        aperture_radius, alpha_centre, moffat_beta, variance_centre, 5.0, sky_pixels
    )
    limit_inst_opt = _inst_mag(limit_flux_opt, gain_e_per_adu)
    limit_inst_ap = _inst_mag(limit_flux_ap, gain_e_per_adu)

    # --- the star population ------------------------------------------------------------------------
    margin = max(
        math.ceil(_MARGIN_FRACTION * max(nx, ny)), math.ceil(_MIN_MARGIN_ARCSEC / pixel_scale_arcsec)
    )
    width_x, width_y = nx + 2 * margin, ny + 2 * margin
    area_deg2 = width_x * width_y * scale_deg**2
    faint_end = faint_limit_mag + 1.5
    bright_end = faint_limit_mag - 12.0
    expected = (
        star_density
        * _BASE_DENSITY_PER_DEG2
        * 10.0 ** (_COUNT_SLOPE * (faint_end - _DENSITY_REFERENCE_MAG))
        * area_deg2
    )
    n_all = int(rng_stars.poisson(expected))
    true_r = _sample_counts(rng_stars, n_all, bright_end, faint_end)
    true_c = _sample_colours(rng_stars, n_all)
    star_x = rng_stars.uniform(-0.5 - margin, nx - 0.5 + margin, n_all)
    star_y = rng_stars.uniform(-0.5 - margin, ny - 0.5 + margin, n_all)
    pmra = rng_stars.normal(-2.0, 3.0, n_all)
    pmdec = rng_stars.normal(-4.0, 3.0, n_all)
    fast = rng_stars.uniform(size=n_all) < 0.01
    speed = rng_stars.uniform(10.0, 50.0, n_all)
    angle = rng_stars.uniform(0.0, 2.0 * math.pi, n_all)
    pmra = np.where(fast, speed * np.sin(angle), pmra)
    pmdec = np.where(fast, speed * np.cos(angle), pmdec)
    variable = rng_stars.uniform(size=n_all) < variable_fraction
    variable_offset = np.where(
        variable,
        rng_stars.uniform(0.2, 1.0, n_all) * np.where(rng_stars.uniform(size=n_all) < 0.5, -1, 1),
        0.0,
    )

    if sky_stars is not None:
        given_x, given_y = true_wcs.all_world2pix(
            np.asarray(sky_stars["ra_deg"], dtype=np.float64),
            np.asarray(sky_stars["dec_deg"], dtype=np.float64),
            0,
        )
        star_x, star_y = np.asarray(given_x, dtype=np.float64), np.asarray(given_y, dtype=np.float64)
        true_r = np.asarray(sky_stars["mag_r"], dtype=np.float64)
        true_c = np.asarray(sky_stars["colour_gr"], dtype=np.float64)
        pmra = np.asarray(sky_stars["pmra_mas_yr"], dtype=np.float64)
        pmdec = np.asarray(sky_stars["pmdec_mas_yr"], dtype=np.float64)
        variable = np.zeros(true_r.size, dtype=bool)
        variable_offset = np.zeros(true_r.size)

    # --- the target and the cleared zone around it --------------------------------------------------
    simulated_target: ImageTarget | None = None
    clear_radius = 0.0
    target_row: dict[str, float] = {}
    if target is not None:
        t_ra_arr, t_dec_arr = _from_tangent_plane(
            np.array([target_offset_arcsec[0] / 3600.0]),
            np.array([target_offset_arcsec[1] / 3600.0]),
            centre_ra,
            centre_dec,
        )
        tx_arr, ty_arr = true_wcs.all_world2pix(t_ra_arr, t_dec_arr, 0, tolerance=1e-10, maxiter=50)
        tx, ty = float(tx_arr[0]), float(ty_arr[0])
        t_fwhm = float(fwhm_at(np.array(tx), np.array(ty)))
        t_alpha = float(moffat_alpha(t_fwhm, moffat_beta))
        t_var = float(sky_at(np.array(tx), np.array(ty))) + read_noise_e**2
        t_phase = (tx - math.floor(tx + 0.5), ty - math.floor(ty + 0.5))
        if target == "undetected":
            local_limit = _limit_flux_optimal(t_alpha, moffat_beta, t_var, 5.0, t_phase)
            t_flux = local_limit * 10.0 ** (-0.4 * float(rng_target.uniform(*_UNDETECTED_MAG_RANGE)))
        else:
            t_flux = _limit_flux_optimal(t_alpha, moffat_beta, t_var, _TARGET_SNR_OPTIMAL[target], t_phase)
            if target == "bright":
                frac = (np.array([t_phase[0]]), np.array([t_phase[1]]))
                peak_fraction = float(psf_stamps(*frac, np.array([t_alpha]), moffat_beta, 0)[0, 0, 0])
                peak_room_e = 0.5 * (saturation_adu - bias_adu) * gain_e_per_adu - (t_var - read_noise_e**2)
                t_flux = min(t_flux, max(peak_room_e, 0.0) / peak_fraction)
        t_inst = _inst_mag(t_flux, gain_e_per_adu)
        t_xi, t_eta = tangent_plane_offsets(t_ra_arr, t_dec_arr, centre_ra, centre_dec)
        t_pattern = float(gx * t_xi[0] + gy * t_eta[0])
        t_mag = t_inst + zp + colour_term * target_colour + t_pattern
        t_frac_x, t_frac_y = t_phase
        snr_opt = float(
            psf_snr(
                np.array([t_flux]),
                np.array([t_frac_x]),
                np.array([t_frac_y]),
                np.array([t_alpha]),
                moffat_beta,
                t_var,
            )[0]
        )
        snr_ap = float(
            _aperture_snr(
                np.array([t_flux]),
                aperture_radius,
                np.array([t_alpha]),
                moffat_beta,
                np.array([t_var]),
                sky_pixels,
            )[0]
        )
        simulated_target = ImageTarget(
            kind=target,
            ra_deg=float(t_ra_arr[0]),
            dec_deg=float(t_dec_arr[0]),
            x=tx,
            y=ty,
            true_mag=float(t_mag),
            true_colour=float(target_colour),
            true_inst_mag=float(t_inst),
            flux_e=float(t_flux),
            expected_snr_optimal=snr_opt,
            expected_snr_aperture=snr_ap,
            expected_detected=snr_opt >= 5.0,
        )
        target_row = {"x": tx, "y": ty, "flux": t_flux, "alpha": t_alpha}
        clear_radius = _TARGET_CLEAR_FWHM * t_fwhm
        distance = np.hypot(star_x - tx, star_y - ty)
        # Instrumental magnitude before the spatial term: close enough to pick bright neighbours.
        rough_inst = true_r - zp - colour_term * true_c
        keep = (distance > clear_radius) & ~(
            (distance < _TARGET_BRIGHT_CLEAR_FWHM * t_fwhm)
            & (rough_inst < limit_inst_opt - _BRIGHT_STAR_MAG_ABOVE_LIMIT)
        )
        true_r, true_c, star_x, star_y = true_r[keep], true_c[keep], star_x[keep], star_y[keep]
        pmra, pmdec, variable, variable_offset = (
            pmra[keep],
            pmdec[keep],
            variable[keep],
            variable_offset[keep],
        )

    n_stars = true_r.size
    star_ra, star_dec = true_wcs.all_pix2world(star_x, star_y, 0)
    star_ra = np.mod(np.asarray(star_ra, dtype=np.float64), 360.0)
    star_dec = np.asarray(star_dec, dtype=np.float64)
    xi, eta = tangent_plane_offsets(star_ra, star_dec, centre_ra, centre_dec)
    pattern = gx * xi + gy * eta
    inst_mag = true_r - zp - colour_term * true_c - pattern + variable_offset
    flux_e = gain_e_per_adu * 10.0 ** (-0.4 * inst_mag)
    star_fwhm = fwhm_at(star_x, star_y)
    star_alpha = moffat_alpha(star_fwhm, moffat_beta)

    # --- rendering ----------------------------------------------------------------------------------
    omitted_e = _OMITTED_NOISE_FRACTION * math.sqrt(variance_centre)
    fwhm_max = fwhm_pix * max(1.0, 1.0 + fwhm_variation)
    max_half = max(8, math.ceil(_MAX_STAMP_FWHM * fwhm_max))
    render_x, render_y, render_flux, render_alpha = star_x, star_y, flux_e, star_alpha
    if target_row:
        render_x = np.append(star_x, target_row["x"])
        render_y = np.append(star_y, target_row["y"])
        render_flux = np.append(flux_e, target_row["flux"])
        render_alpha = np.append(star_alpha, target_row["alpha"])
    render_fwhm = render_alpha * (2.0 * math.sqrt(2.0 ** (1.0 / moffat_beta) - 1.0))
    half = stamp_half_size(
        render_flux,
        render_alpha,
        moffat_beta,
        omitted_fraction=_OMITTED_FRACTION,
        omitted_e=omitted_e,
        min_half_size=np.ceil(_MIN_STAMP_FWHM * render_fwhm).astype(np.intp),
        max_half_size=max_half,
    )
    touches = (
        (render_x + half + 0.5 >= -0.5)
        & (render_x - half - 0.5 <= nx - 0.5)
        & (render_y + half + 0.5 >= -0.5)
        & (render_y - half - 0.5 <= ny - 0.5)
    )
    drawn = np.flatnonzero(touches)
    y_grid = np.arange(ny, dtype=np.float64)[:, None]
    x_grid = np.arange(nx, dtype=np.float64)[None, :]
    model_e = np.empty(frame_shape, dtype=np.float32)
    rows_per_block = max(1, (1 << 20) // nx)
    for row in range(0, ny, rows_per_block):
        model_e[row : row + rows_per_block] = sky_at(x_grid, y_grid[row : row + rows_per_block])
    frame_flux = np.zeros(render_x.size)
    _, frame_part = render_stars(
        model_e,
        render_x[drawn],
        render_y[drawn],
        render_flux[drawn],
        render_alpha[drawn],
        moffat_beta,
        half[drawn],
    )
    frame_flux[drawn] = frame_part

    # --- truth per star: peak, saturation, expected S/N ---------------------------------------------
    in_frame = (star_x >= -0.5) & (star_x < nx - 0.5) & (star_y >= -0.5) & (star_y < ny - 0.5)
    centre_col = np.clip(np.floor(star_x + 0.5).astype(np.intp), 0, nx - 1)
    centre_row = np.clip(np.floor(star_y + 0.5).astype(np.intp), 0, ny - 1)
    peak_adu = np.where(in_frame, model_e[centre_row, centre_col] / gain_e_per_adu + bias_adu, np.nan)
    saturated = in_frame & (peak_adu >= saturation_adu)
    star_var = sky_at(star_x, star_y) + read_noise_e**2
    snr_optimal = np.full(n_stars, np.nan)
    snr_aperture = np.full(n_stars, np.nan)
    inside = np.flatnonzero(in_frame)
    snr_optimal[inside] = psf_snr(
        flux_e[inside],
        star_x[inside] - centre_col[inside],
        star_y[inside] - centre_row[inside],
        star_alpha[inside],
        moffat_beta,
        star_var[inside],
    )
    snr_aperture[inside] = _aperture_snr(
        flux_e[inside], aperture_radius, star_alpha[inside], moffat_beta, star_var[inside], sky_pixels
    )

    # --- noise and defects ----------------------------------------------------------------------------
    avoid = (target_row["x"], target_row["y"]) if target_row else None
    avoid_radius = max(clear_radius, 3.0 * fwhm_pix)
    cosmic_pixels, cosmic_e = _cosmic_rays(rng_cosmics, n_cosmics, frame_shape, avoid, avoid_radius)
    hot_pixels = _defect_positions(rng_hot, n_hot_pixels, frame_shape, avoid, avoid_radius)
    hot_excess = np.exp(
        rng_hot.uniform(math.log(500.0), math.log(max(saturation_adu, 501.0)), hot_pixels.shape[0])
    )
    data = _noisy_frame(rng_noise, model_e, cosmic_pixels, cosmic_e, read_noise_e, gain_e_per_adu, bias_adu)
    if hot_pixels.size:
        data[hot_pixels[:, 1], hot_pixels[:, 0]] += hot_excess.astype(np.float32)
    if bayer_pattern is not None:
        _make_mosaic(data, bayer_pattern, bias_adu)
    np.minimum(data, np.float32(saturation_adu), out=data)
    model_adu: Float32Array | None = None
    if keep_model:
        model_e *= np.float32(1.0 / gain_e_per_adu)
        model_e += np.float32(bias_adu)
        model_adu = model_e
    del model_e

    # --- header -----------------------------------------------------------------------------------------
    header_centre_ra, header_centre_dec = _from_tangent_plane(
        np.array([header_offset_arcsec[0] / 3600.0]),
        np.array([header_offset_arcsec[1] / 3600.0]),
        centre_ra,
        centre_dec,
    )
    header_scale_deg = scale_deg * (1.0 + header_scale_error)
    wcs_cards: fits.Header | None = None
    header_wcs_obj: WCS | None = None
    if header_wcs:
        wcs_cards = _wcs_cards(
            frame_shape,
            float(header_centre_ra[0]),
            float(header_centre_dec[0]),
            header_scale_deg,
            rotation_deg + header_rotation_deg,
            sip if header_sip else None,
        )
        header_wcs_obj = _wcs_from_cards(wcs_cards)
    cards = _observatory_header(
        style=header_style,
        start=start,
        exptime_s=float(exptime_s),
        filter_name=filter_name,
        gain=float(gain_e_per_adu),
        read_noise_e=float(read_noise_e),
        saturation_adu=float(saturation_adu),
        object_name=object_name,
        pointing=(float(header_centre_ra[0]), float(header_centre_dec[0])),
        pixscale_arcsec=float(header_scale_deg * 3600.0),
        wcs_cards=wcs_cards,
    )
    if bayer_pattern is not None:
        cards["BAYERPAT"] = (bayer_pattern, "colour filter array, top-left cell")
    header = fits.PrimaryHDU(data=data, header=cards).header

    # --- reference catalogues ---------------------------------------------------------------------------
    references, reference_index, gaia_pm = _build_references(
        rng_refs,
        star_ra,
        star_dec,
        true_r,
        true_c,
        pmra,
        pmdec,
        image_epoch,
        ref_noise_mag=ref_noise_mag,
        missing_fraction=missing_fraction,
        outlier_fraction=ref_outlier_fraction,
    )

    # --- tables and truth ---------------------------------------------------------------------------------
    rendered_fraction = frame_flux[:n_stars] / flux_e
    stars = Table(
        {
            "id": np.arange(n_stars, dtype=np.intp),
            "ra_deg": star_ra,
            "dec_deg": star_dec,
            "x": star_x,
            "y": star_y,
            "in_frame": in_frame,
            "mag_r": true_r,
            "colour_gr": true_c,
            "inst_mag": inst_mag,
            "flux_e": flux_e,
            "fwhm_pix": star_fwhm,
            "peak_adu": peak_adu,
            "saturated": saturated,
            "snr_optimal": snr_optimal,
            "snr_aperture": snr_aperture,
            "rendered_fraction": rendered_fraction,
            "pmra_mas_yr": pmra,
            "pmdec_mas_yr": pmdec,
            "variable": variable,
            "variable_offset_mag": variable_offset,
        }
    )
    band_truths = tuple(
        BandTruth(model.name, relation.band, zp + relation.offset_mag, colour_term + relation.colour_slope)
        for model in (*SURVEYS, GAIA_SURVEY)
        for relation in model.bands
    )
    truth = ImageTruth(
        zp=float(zp),
        colour_term=float(colour_term),
        inst_mag_definition=_INST_MAG_DEFINITION,
        zp_gradient_mag_per_deg=(float(gx), float(gy)),
        zp_gradient_mag=float(zp_gradient_mag),
        centre_ra_deg=centre_ra,
        centre_dec_deg=centre_dec,
        bands=band_truths,
        exptime_s=float(exptime_s),
        gain_e_per_adu=float(gain_e_per_adu),
        read_noise_e=float(read_noise_e),
        bias_adu=float(bias_adu),
        saturation_adu=float(saturation_adu),
        sky_e_per_pix=float(sky_e_per_pix),
        sky_gradient=float(sky_gradient),
        sky_gradient_direction_deg=sky_direction,
        background_noise_e=math.sqrt(variance_centre),
        pixel_scale_arcsec=float(pixel_scale_arcsec),
        fwhm_pix=float(fwhm_pix),
        fwhm_arcsec=float(fwhm_arcsec),
        fwhm_variation=float(fwhm_variation),
        moffat_beta=float(moffat_beta),
        moffat_alpha_pix=alpha_centre,
        aperture_radius_pix=float(aperture_radius),
        sky_pixels=float(sky_pixels),
        limit_inst_mag_5sigma_optimal=limit_inst_opt,
        limit_mag_5sigma_optimal=limit_inst_opt + zp,
        limit_inst_mag_5sigma_aperture=limit_inst_ap,
        limit_mag_5sigma_aperture=limit_inst_ap + zp,
        rotation_deg=float(rotation_deg),
        sip_distortion_pix=float(sip_distortion),
        header_offset_arcsec=(float(header_offset_arcsec[0]), float(header_offset_arcsec[1])),
        header_rotation_deg=float(header_rotation_deg),
        header_scale_error=float(header_scale_error),
        cosmic_ray_pixels=cosmic_pixels,
        hot_pixels=hot_pixels,
        hot_pixel_excess_adu=hot_excess,
        target_clear_radius_pix=float(clear_radius),
        image_epoch_jyear=image_epoch,
        n_stars_in_frame=int(np.sum(in_frame)),
        shape=frame_shape,
    )
    return SimulatedImage(
        data=data,
        header=header,
        true_wcs=true_wcs,
        header_wcs=header_wcs_obj,
        stars=stars,
        references=MappingProxyType(references),
        reference_index=MappingProxyType(reference_index),
        gaia_pm_mas_yr=gaia_pm,
        truth=truth,
        target=simulated_target,
        mjd_mid=float(mid.utc.mjd),
        model_adu=model_adu,
    )


# --------------------------------------------------------------------------------------------------
# FITS


_STRUCTURAL = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "PCOUNT", "GCOUNT")


def image_to_fits_bytes(
    image: SimulatedImage,
    *,
    compression: Compression | None = None,
    extension: bool = False,
) -> bytes:
    """Serialise a simulated image as an uploaded FITS file.

    Parameters
    ----------
    image : SimulatedImage
    compression : {None, "gzip", "rice"}
        ``None``: a plain FITS file; ``"gzip"``: the same file gzip-compressed (``.fits.gz``);
        ``"rice"``: a tile-compressed ``.fz`` file (empty primary HDU, Rice-compressed image
        extension, floats quantised at 1/16 of the noise with subtractive dithering, as fpack does).
    extension : bool
        Put the image in the first extension of a multi-extension file with an empty primary HDU
        (implied by ``"rice"``).

    Returns
    -------
    bytes
    """
    if compression not in (None, "gzip", "rice"):
        raise ValueError(f"unknown compression {compression!r}")
    cards = image.header.copy()
    for key in _STRUCTURAL:
        cards.remove(key, ignore_missing=True, remove_all=True)
    data = np.ascontiguousarray(image.data, dtype=np.float32)
    hdus: fits.HDUList
    if compression == "rice":
        hdus = fits.HDUList(
            [
                fits.PrimaryHDU(),
                fits.CompImageHDU(data=data, header=cards, compression_type="RICE_1", dither_seed=1),
            ]
        )
    elif extension:
        hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data=data, header=cards)])
    else:
        hdus = fits.HDUList([fits.PrimaryHDU(data=data, header=cards)])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdus.writeto(buffer, output_verify="silentfix")
    raw = buffer.getvalue()
    if compression == "gzip":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    return raw

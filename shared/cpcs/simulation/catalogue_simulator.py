"""Simulated uploaded catalogues and reference catalogues with known truth.

Used by the science tests, the benchmarks and the demo. The model is deliberately simple but has the
features that matter for calibration:

* **Stars.** ``n_stars`` stars brighter than ``faint_limit_mag`` plus fainter ones down to
  ``faint_limit_mag + 1.5``, with differential number counts ``dN/dm ~ 10**(0.3 m)`` from
  ``faint_limit_mag - 8`` on, uniformly spread over a disc of ``radius_arcmin``. Every star has a true
  PS1-like ``r`` magnitude and a true colour ``c = g - r`` from a two-population mixture (blue
  disc dwarfs around 0.6, red M dwarfs around 1.25; range -0.2..1.7).
* **Reference catalogues.** Each survey band is a linear function of the truth,
  ``band = r + offset + slope * c`` (Lupton 2005-like transformations for the Johnson-Cousins bands).
  ``"PS1"`` has bands g, r, i, z (stars 14 < r < 23.5, 5-sigma depth 22); ``"GaiaSP"`` (a Gaia
  synthetic-photometry-like, bright survey) has B, V, R, I for stars with V < 17.5. Reference errors
  are ``hypot(ref_noise_mag, 0.2 * 10**(0.4 (m - depth)))``, quoted honestly and drawn as Gaussian
  noise; ``missing_fraction`` of the values of each band are NaN (gaps). Positions carry 0.02 arcsec noise.
* **Instrument.** The uploaded band is r-like: ``r = m_inst + zp + colour_term * c + P`` with
  ``P = gx * xi + gy * eta - radial_zp_drop_mag * (rho / radius)**2`` (``xi``, ``eta`` tangent-plane
  offsets in degrees from the field centre, ``rho`` the distance from it: a vignetting-like drop of the
  zero point towards the edge), so against a reference band
  ``b`` the true relation is ``b = m_inst + (zp + offset_b) + (colour_term + slope_b) * c + P``
  (see :class:`BandTruth`). Fluxes (electrons) have Poisson plus sky noise,
  ``var = F + sky_variance_e``, scaled so that a colour-0 star at the centre with ``r = faint_limit_mag``
  has S/N = 5 exactly (the true 5-sigma limit); the sky variance of each source's aperture scatters
  by 20 % (log-normal) about ``sky_variance_e``. A source is detected when its measured S/N >= 3;
  ``magerr = 1.0857 / (measured S/N)`` as SExtractor reports it. Positions carry
  ``astrometric_noise_arcsec`` noise per axis.
* **Outliers.** A fraction ``outlier_fraction`` of the stars have an image magnitude offset of 0.2 to
  1.0 mag (70 % brighter: blends; 30 % fainter: variables), seen against every reference catalogue.
  ``extra_scatter_mag`` adds unreported Gaussian scatter to the image magnitudes (an intrinsic scatter).
* **Target.** A transient at the field centre with a true ``r`` of ``faint_limit_mag - 4`` ("bright"),
  ``faint_limit_mag - 0.75`` ("faint", S/N about 10) or ``faint_limit_mag + 2.5`` ("undetected": not in
  the upload), colour ``target_colour``. It is not in any reference catalogue.

The instrumental magnitudes follow ``m_inst = -2.5 log10(flux) + constant`` with the constant chosen so
that the zero point is ``zp``.

Further reference catalogues (a shallow APASS-like survey, a single-band Gaia G table) can be made from
the truth of any simulated star list with :func:`reference_from_truth`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cpcs.catalogs.model import ReferenceCatalogue as CatalogueReference
from cpcs.science.crossmatch import match_catalogues, tangent_plane_offsets

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

TargetKind = Literal["bright", "faint", "undetected"]

__all__ = [
    "APASS_LIKE",
    "DETECTION_SNR",
    "GAIA_G_ONLY",
    "SURVEYS",
    "BandRelation",
    "BandTruth",
    "FieldTruth",
    "MatchedPhotometry",
    "ReferenceCatalogue",
    "SimulatedField",
    "SimulatedTarget",
    "SurveyModel",
    "match_field",
    "reference_from_truth",
    "simulate_field",
    "to_sextractor_ascii",
]

#: Minimum measured S/N for a source to appear in the uploaded catalogue.
DETECTION_SNR = 3.0
_MAGERR_PER_INVERSE_SNR = 2.5 / np.log(10.0)
_TARGET_OFFSET_MAG: Mapping[str, float] = MappingProxyType(
    {"bright": -4.0, "faint": -0.75, "undetected": 2.5}
)


@dataclass(frozen=True)
class BandRelation:
    """A catalogue band as a function of the true star: ``band = r + offset_mag + slope * (g - r)``."""

    band: str
    offset_mag: float
    colour_slope: float


@dataclass(frozen=True)
class SurveyModel:
    """A simulated reference survey.

    Stars are listed when ``bright_mag < selection band < faint_mag``; ``depth_mag`` is the 5-sigma
    depth used for the error model of every band.
    """

    name: str
    bands: tuple[BandRelation, ...]
    selection_band: str
    bright_mag: float
    faint_mag: float
    depth_mag: float


SURVEYS: tuple[SurveyModel, ...] = (
    SurveyModel(
        name="PS1",
        bands=(
            BandRelation("g", 0.0, 1.0),
            BandRelation("r", 0.0, 0.0),
            BandRelation("i", 0.05, -0.45),
            BandRelation("z", 0.08, -0.65),
        ),
        selection_band="r",
        bright_mag=14.0,
        faint_mag=23.5,
        depth_mag=22.0,
    ),
    SurveyModel(
        name="GaiaSP",
        bands=(
            BandRelation("B", 0.2271, 1.3130),
            BandRelation("V", -0.0038, 0.4216),
            BandRelation("R", -0.0971, -0.1837),
            BandRelation("I", -0.3198, -0.5600),
        ),
        selection_band="V",
        bright_mag=6.0,
        faint_mag=17.5,
        depth_mag=19.5,
    ),
)


#: A shallow APASS-like survey (g', r' on the PS1-like system of the simulation, 10 < r < 16.5),
#: for :func:`reference_from_truth` with a 0.03 mag error floor.
APASS_LIKE = SurveyModel(
    name="APASS",
    bands=(BandRelation("g", 0.0, 1.0), BandRelation("r", 0.0, 0.0)),
    selection_band="r",
    bright_mag=10.0,
    faint_mag=16.5,
    depth_mag=18.0,
)
#: A Gaia table with the G band alone (no BP, RP: no colour), as a cache may hold one.
GAIA_G_ONLY = SurveyModel(
    name="Gaia",
    bands=(BandRelation("G", 0.10, -0.25),),
    selection_band="G",
    bright_mag=3.0,
    faint_mag=20.7,
    depth_mag=23.0,
)


@dataclass(frozen=True)
class BandTruth:
    """True relation ``band = m_inst + zp + colour_term * (g - r)_true + P(xi, eta)`` for one band."""

    survey: str
    band: str
    zp: float
    colour_term: float


@dataclass(frozen=True)
class FieldTruth:
    """The true calibration of a simulated field.

    Attributes
    ----------
    zp, colour_term : float
        Relation to PS1 r: ``r = m_inst + zp + colour_term * (g - r) + P``.
    spatial_gradient_mag_per_deg : tuple of float
        ``(gx, gy)`` of the linear part of ``P`` (xi, eta in degrees).
    radial_zp_drop_mag : float
        Drop of the zero point from the centre to the field's edge (quadratic in radius), mag.
    limit_inst_mag_5sigma : float
        Instrumental magnitude with a true S/N of 5.
    limit_mag_5sigma : float
        The same, calibrated for a colour-0 source at the centre (= ``faint_limit_mag``).
    extra_scatter_mag : float
        Unreported scatter added to the image magnitudes, mag.
    outlier_fraction : float
        Realised fraction of outliers among the detected stars.
    bands : tuple of BandTruth
        True relation of every reference band.
    """

    zp: float
    colour_term: float
    spatial_gradient_mag_per_deg: tuple[float, float]
    radial_zp_drop_mag: float
    limit_inst_mag_5sigma: float
    limit_mag_5sigma: float
    extra_scatter_mag: float
    outlier_fraction: float
    bands: tuple[BandTruth, ...]

    def band(self, survey: str, band: str) -> BandTruth:
        """Truth for one survey band (``KeyError`` if unknown)."""
        for truth in self.bands:
            if truth.survey == survey and truth.band == band:
                return truth
        raise KeyError(f"{survey}/{band}")


@dataclass(frozen=True, eq=False)
class ReferenceCatalogue:
    """A simulated reference catalogue: positions, magnitudes and errors per band (NaN = missing).

    ``star_id`` identifies the simulated star, the same identifier as ``SimulatedField.star_id``.
    """

    survey: str
    bands: tuple[str, ...]
    ra_deg: FloatArray
    dec_deg: FloatArray
    star_id: IntArray
    mags: Mapping[str, FloatArray]
    magerrs: Mapping[str, FloatArray]

    def mag(self, band: str) -> FloatArray:
        """Magnitudes in ``band`` (NaN where missing)."""
        return self.mags[band]

    def magerr(self, band: str) -> FloatArray:
        """Magnitude errors in ``band`` (NaN where missing)."""
        return self.magerrs[band]

    def colour(self, blue: str, red: str) -> tuple[FloatArray, FloatArray]:
        """Colour ``blue - red`` and its error (errors of the two bands in quadrature)."""
        return self.mags[blue] - self.mags[red], np.hypot(self.magerrs[blue], self.magerrs[red])


@dataclass(frozen=True)
class SimulatedTarget:
    """The transient placed at the field centre.

    ``true_mag`` is its PS1-r magnitude; ``true_inst_mag`` its noiseless instrumental magnitude;
    ``source_index`` its row in the uploaded catalogue (None when undetected).
    """

    kind: str
    ra_deg: float
    dec_deg: float
    true_mag: float
    true_colour: float
    true_inst_mag: float
    detected: bool
    source_index: int | None


@dataclass(frozen=True, eq=False)
class SimulatedField:
    """A simulated observation: the uploaded catalogue, the reference catalogues and the truth.

    The uploaded catalogue is ``ra_deg``, ``dec_deg``, ``mag`` (instrumental, mag) and ``magerr``.
    The per-source truth arrays are ``star_id`` (-1 for the target), ``true_mag`` (PS1 r),
    ``true_colour`` (g - r) and ``is_outlier``.
    """

    centre_ra_deg: float
    centre_dec_deg: float
    radius_arcmin: float
    ra_deg: FloatArray
    dec_deg: FloatArray
    mag: FloatArray
    magerr: FloatArray
    star_id: IntArray
    true_mag: FloatArray
    true_colour: FloatArray
    is_outlier: BoolArray
    references: tuple[ReferenceCatalogue, ...]
    truth: FieldTruth
    target: SimulatedTarget | None

    def reference(self, survey: str) -> ReferenceCatalogue:
        """The reference catalogue of ``survey`` (``KeyError`` if unknown)."""
        for catalogue in self.references:
            if catalogue.survey == survey:
                return catalogue
        raise KeyError(survey)

    def to_sextractor_ascii(self) -> str:
        """The uploaded catalogue as SExtractor ``ASCII_HEAD`` text (see :func:`to_sextractor_ascii`)."""
        return to_sextractor_ascii(self.ra_deg, self.dec_deg, self.mag, self.magerr)


def to_sextractor_ascii(ra_deg: FloatArray, dec_deg: FloatArray, mag: FloatArray, magerr: FloatArray) -> str:
    """Format a catalogue as SExtractor ``ASCII_HEAD`` text.

    Columns: MAG_AUTO, MAGERR_AUTO (mag), ALPHA_J2000, DELTA_J2000 (deg). NaN magnitudes are written
    as 99.0 as SExtractor does for undefined magnitudes.
    """
    header = (
        "#   1 MAG_AUTO               Kron-like elliptical aperture magnitude                    [mag]\n"
        "#   2 MAGERR_AUTO            RMS error for AUTO magnitude                               [mag]\n"
        "#   3 ALPHA_J2000            Right ascension of barycenter (J2000)                      [deg]\n"
        "#   4 DELTA_J2000            Declination of barycenter (J2000)                          [deg]\n"
    )
    m = np.where(np.isfinite(mag), mag, 99.0)
    e = np.where(np.isfinite(magerr), magerr, 99.0)
    rows = [
        f"{mi:11.4f} {ei:9.4f} {ri:11.7f} {di:+11.7f}\n"
        for mi, ei, ri, di in zip(m, e, np.mod(ra_deg, 360.0), dec_deg, strict=True)
    ]
    return header + "".join(rows)


def _from_tangent_plane(
    xi_deg: FloatArray, eta_deg: FloatArray, ra0_deg: float, dec0_deg: float
) -> tuple[FloatArray, FloatArray]:
    """Inverse gnomonic projection, degrees in and out."""
    xi = np.radians(xi_deg)
    eta = np.radians(eta_deg)
    dec0 = np.radians(dec0_deg)
    denominator = np.cos(dec0) - eta * np.sin(dec0)
    ra = np.radians(ra0_deg) + np.arctan2(xi, denominator)
    dec = np.arctan2(np.sin(dec0) + eta * np.cos(dec0), np.hypot(xi, denominator))
    return np.mod(np.degrees(ra), 360.0), np.degrees(dec)


def _sample_counts(rng: np.random.Generator, n: int, bright: float, faint: float) -> FloatArray:
    """Magnitudes with dN/dm ~ 10**(0.3 m) on [bright, faint] (inverse CDF)."""
    low, high = 10.0 ** (0.3 * bright), 10.0 ** (0.3 * faint)
    return np.log10(low + rng.uniform(size=n) * (high - low)) / 0.3


def _sample_colours(rng: np.random.Generator, n: int) -> FloatArray:
    red = rng.uniform(size=n) < 0.35
    colour = np.where(red, rng.normal(1.25, 0.15, n), rng.normal(0.6, 0.18, n))
    return np.clip(colour, -0.2, 1.7)


def simulate_field(
    seed: int,
    *,
    n_stars: int = 300,
    ra_deg: float = 150.0,
    dec_deg: float = 2.0,
    radius_arcmin: float = 10.0,
    zp: float = 25.0,
    colour_term: float = 0.12,
    spatial_gradient_mag_per_deg: tuple[float, float] = (0.0, 0.0),
    radial_zp_drop_mag: float = 0.0,
    outlier_fraction: float = 0.05,
    missing_fraction: float = 0.0,
    ref_noise_mag: float = 0.02,
    faint_limit_mag: float = 20.0,
    target: TargetKind | None = "bright",
    target_mag: float | None = None,
    target_colour: float = 0.3,
    extra_scatter_mag: float = 0.0,
    astrometric_noise_arcsec: float = 0.2,
    sky_variance_e: float = 4.0e4,
) -> SimulatedField:
    """Simulate one observed field (see the module docstring for the model).

    Parameters
    ----------
    seed : int
        Seed of the random generator; the same seed gives the same field.
    n_stars : int
        Number of stars brighter than ``faint_limit_mag`` (about 1.8 times as many fainter ones are
        simulated too; a part of them is detected).
    ra_deg, dec_deg : float
        Field centre, degrees.
    radius_arcmin : float
        Field radius, arcmin.
    zp, colour_term : float
        True zero point and colour term (vs PS1 g - r) of the instrumental band against PS1 r:
        ``r = m_inst + zp + colour_term * (g - r) + P``.
    spatial_gradient_mag_per_deg : (float, float)
        ``(gx, gy)`` of the linear part of ``P``, mag per degree.
    radial_zp_drop_mag : float
        The zero point is this much lower at the field's edge than at its centre (quadratic in
        radius: ``P`` gains ``-radial_zp_drop_mag * (rho / radius)**2``), mag.
    outlier_fraction : float
        Fraction of stars whose image magnitude is off by 0.2-1.0 mag.
    missing_fraction : float
        Fraction of reference magnitudes set to NaN, independently per band.
    ref_noise_mag : float
        Error floor of the reference magnitudes, mag.
    faint_limit_mag : float
        True 5-sigma limit (calibrated, colour 0, field centre), mag.
    target : {"bright", "faint", "undetected"} or None
        Kind of transient at the centre, or no target.
    target_mag : float, optional
        The target's true PS1 r, overriding the kind's default (e.g. to draw a light curve).
    target_colour : float
        True g - r of the target, mag.
    extra_scatter_mag : float
        Unreported Gaussian scatter of the image magnitudes, mag.
    astrometric_noise_arcsec : float
        Position noise of the uploaded sources per axis, arcsec.
    sky_variance_e : float
        Sky + read noise variance in the measurement aperture, electrons**2 (sets how sky-dominated
        the faint sources are).

    Returns
    -------
    SimulatedField
    """
    rng = np.random.default_rng(seed)
    gx, gy = (float(g) for g in spatial_gradient_mag_per_deg)

    n_faint = round(n_stars * (10.0 ** (0.3 * 1.5) - 1.0))
    true_r = np.concatenate(
        (
            _sample_counts(rng, n_stars, faint_limit_mag - 8.0, faint_limit_mag),
            _sample_counts(rng, n_faint, faint_limit_mag, faint_limit_mag + 1.5),
        )
    )
    n_total = true_r.size
    true_c = _sample_colours(rng, n_total)
    radius_deg = radius_arcmin / 60.0
    rho = radius_deg * np.sqrt(rng.uniform(size=n_total))
    theta = rng.uniform(0.0, 2.0 * np.pi, n_total)
    xi, eta = rho * np.cos(theta), rho * np.sin(theta)

    # --- reference catalogues -------------------------------------------------------------------
    references: list[ReferenceCatalogue] = []
    band_truths: list[BandTruth] = []
    for survey in SURVEYS:
        true_band = {b.band: true_r + b.offset_mag + b.colour_slope * true_c for b in survey.bands}
        listed = np.flatnonzero(
            (true_band[survey.selection_band] > survey.bright_mag)
            & (true_band[survey.selection_band] < survey.faint_mag)
        )
        mags: dict[str, FloatArray] = {}
        magerrs: dict[str, FloatArray] = {}
        for relation in survey.bands:
            truth_mag = true_band[relation.band][listed]
            error = np.hypot(ref_noise_mag, 0.2 * 10.0 ** (0.4 * (truth_mag - survey.depth_mag)))
            observed = truth_mag + error * rng.normal(size=listed.size)
            missing = rng.uniform(size=listed.size) < missing_fraction
            observed[missing] = np.nan
            error[missing] = np.nan
            mags[relation.band] = observed
            magerrs[relation.band] = error
            band_truths.append(
                BandTruth(
                    survey.name, relation.band, zp + relation.offset_mag, colour_term + relation.colour_slope
                )
            )
        ref_noise_deg = 0.02 / 3600.0
        ref_xi = xi[listed] + ref_noise_deg * rng.normal(size=listed.size)
        ref_eta = eta[listed] + ref_noise_deg * rng.normal(size=listed.size)
        ref_ra, ref_dec = _from_tangent_plane(ref_xi, ref_eta, ra_deg, dec_deg)
        references.append(
            ReferenceCatalogue(
                survey=survey.name,
                bands=tuple(b.band for b in survey.bands),
                ra_deg=ref_ra,
                dec_deg=ref_dec,
                star_id=listed.astype(np.intp),
                mags=MappingProxyType(mags),
                magerrs=MappingProxyType(magerrs),
            )
        )

    # --- the image ------------------------------------------------------------------------------
    # Flux scale: a source with instrumental magnitude limit_inst has S/N = 5 with var = F + sky.
    flux_limit = (25.0 + np.sqrt(625.0 + 100.0 * sky_variance_e)) / 2.0
    limit_inst = faint_limit_mag - zp

    def measure(inst_true: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        flux = flux_limit * 10.0 ** (-0.4 * (inst_true - limit_inst))
        # Apertures (and so the sky noise in them) vary from source to source by about 20 %.
        sky = sky_variance_e * rng.lognormal(0.0, 0.2, flux.size)
        measured = flux + np.sqrt(flux + sky) * rng.normal(size=flux.size)
        snr = measured / np.sqrt(np.clip(measured, 0.0, None) + sky)
        with np.errstate(invalid="ignore", divide="ignore"):
            inst = limit_inst - 2.5 * np.log10(measured / flux_limit)
            magerr = _MAGERR_PER_INVERSE_SNR / snr
        return inst, magerr, snr

    is_outlier_all = rng.uniform(size=n_total) < outlier_fraction
    offsets = rng.uniform(0.2, 1.0, n_total) * np.where(rng.uniform(size=n_total) < 0.7, -1.0, 1.0)
    pattern = gx * xi + gy * eta - radial_zp_drop_mag * (rho / radius_deg) ** 2
    inst_true = true_r - zp - colour_term * true_c - pattern
    inst_true = (
        inst_true + np.where(is_outlier_all, offsets, 0.0) + extra_scatter_mag * rng.normal(size=n_total)
    )
    inst, magerr, snr = measure(inst_true)
    detected = snr >= DETECTION_SNR
    position_noise_deg = astrometric_noise_arcsec / 3600.0
    obs_ra, obs_dec = _from_tangent_plane(
        xi + position_noise_deg * rng.normal(size=n_total),
        eta + position_noise_deg * rng.normal(size=n_total),
        ra_deg,
        dec_deg,
    )
    keep = np.flatnonzero(detected)
    up_ra, up_dec = obs_ra[keep], obs_dec[keep]
    up_mag, up_err = inst[keep], magerr[keep]
    up_id = keep.astype(np.intp)
    up_true_r, up_true_c, up_outlier = true_r[keep], true_c[keep], is_outlier_all[keep]

    simulated_target: SimulatedTarget | None = None
    if target is not None:
        target_r = faint_limit_mag + _TARGET_OFFSET_MAG[target] if target_mag is None else target_mag
        target_inst_true = target_r - zp - colour_term * target_colour
        t_inst, t_err, _ = measure(np.array([target_inst_true]))
        t_ra, t_dec = _from_tangent_plane(
            position_noise_deg * rng.normal(size=1), position_noise_deg * rng.normal(size=1), ra_deg, dec_deg
        )
        is_detected = target != "undetected"
        if is_detected:
            up_ra = np.append(up_ra, t_ra)
            up_dec = np.append(up_dec, t_dec)
            up_mag = np.append(up_mag, t_inst)
            up_err = np.append(up_err, t_err)
            up_id = np.append(up_id, -1).astype(np.intp)
            up_true_r = np.append(up_true_r, target_r)
            up_true_c = np.append(up_true_c, target_colour)
            up_outlier = np.append(up_outlier, False)
        simulated_target = SimulatedTarget(
            kind=target,
            ra_deg=float(ra_deg),
            dec_deg=float(dec_deg),
            true_mag=float(target_r),
            true_colour=float(target_colour),
            true_inst_mag=float(target_inst_true),
            detected=is_detected,
            source_index=None,
        )

    order = rng.permutation(up_mag.size)
    up_ra, up_dec, up_mag, up_err = up_ra[order], up_dec[order], up_mag[order], up_err[order]
    up_id, up_true_r, up_true_c, up_outlier = (
        up_id[order],
        up_true_r[order],
        up_true_c[order],
        up_outlier[order],
    )
    if simulated_target is not None and simulated_target.detected:
        simulated_target = replace(simulated_target, source_index=int(np.flatnonzero(up_id == -1)[0]))

    stars = up_id >= 0
    truth = FieldTruth(
        zp=float(zp),
        colour_term=float(colour_term),
        spatial_gradient_mag_per_deg=(gx, gy),
        radial_zp_drop_mag=float(radial_zp_drop_mag),
        limit_inst_mag_5sigma=float(limit_inst),
        limit_mag_5sigma=float(faint_limit_mag),
        extra_scatter_mag=float(extra_scatter_mag),
        outlier_fraction=float(np.mean(up_outlier[stars])) if np.any(stars) else 0.0,
        bands=tuple(band_truths),
    )
    return SimulatedField(
        centre_ra_deg=float(ra_deg),
        centre_dec_deg=float(dec_deg),
        radius_arcmin=float(radius_arcmin),
        ra_deg=up_ra,
        dec_deg=up_dec,
        mag=up_mag,
        magerr=up_err,
        star_id=up_id,
        true_mag=up_true_r,
        true_colour=up_true_c,
        is_outlier=up_outlier,
        references=tuple(references),
        truth=truth,
        target=simulated_target,
    )


@dataclass(frozen=True, eq=False)
class MatchedPhotometry:
    """The uploaded catalogue cross-matched with one reference band, ready for a zero-point fit.

    ``x_deg``, ``y_deg`` are tangent-plane offsets from the field centre; ``colour`` is the reference
    colour (NaN where a band is missing); indices point into the upload and the reference catalogue.
    """

    inst_mag: FloatArray
    inst_err: FloatArray
    cat_mag: FloatArray
    cat_err: FloatArray
    colour: FloatArray
    x_deg: FloatArray
    y_deg: FloatArray
    source_index: IntArray
    reference_index: IntArray


def match_field(
    field: SimulatedField,
    survey: str,
    band: str,
    colour_bands: tuple[str, str] = ("g", "r"),
    *,
    radius_arcsec: float = 1.5,
) -> MatchedPhotometry:
    """Cross-match the upload of ``field`` with ``survey`` and collect the photometry of ``band``.

    ``colour_bands`` ``(blue, red)`` must be bands of the same survey.
    """
    reference = field.reference(survey)
    match = match_catalogues(field.ra_deg, field.dec_deg, reference.ra_deg, reference.dec_deg, radius_arcsec)
    src, ref = match.source_index, match.reference_index
    colour, _ = reference.colour(*colour_bands)
    x_deg, y_deg = tangent_plane_offsets(
        field.ra_deg[src], field.dec_deg[src], field.centre_ra_deg, field.centre_dec_deg
    )
    return MatchedPhotometry(
        inst_mag=field.mag[src],
        inst_err=field.magerr[src],
        cat_mag=reference.mag(band)[ref],
        cat_err=reference.magerr(band)[ref],
        colour=colour[ref],
        x_deg=x_deg,
        y_deg=y_deg,
        source_index=src,
        reference_index=ref,
    )


def reference_from_truth(
    model: SurveyModel,
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    true_r: ArrayLike,
    true_colour: ArrayLike,
    *,
    seed: int,
    floor_mag: float,
    position_noise_arcsec: float = 0.05,
) -> CatalogueReference:
    """A reference catalogue of ``model`` made from the truth of simulated stars.

    Stars with ``bright_mag < selection band < faint_mag`` are listed; each band is
    ``r + offset + slope * (g - r)`` observed with the simulator's error model
    ``hypot(floor_mag, 0.2 * 10**(0.4 (m - depth_mag)))`` (quoted honestly, drawn as noise), and
    positions get ``position_noise_arcsec`` of noise per axis.

    Parameters
    ----------
    model : SurveyModel
        The survey (e.g. :data:`APASS_LIKE`, :data:`GAIA_G_ONLY`).
    ra_deg, dec_deg, true_r, true_colour : array_like
        True positions (deg), PS1-like r and g - r of the stars (mag).
    seed : int
        Seed of the noise.
    floor_mag : float
        Error floor of the magnitudes, mag.
    position_noise_arcsec : float, optional
        Position noise per axis, arcsec.

    Returns
    -------
    cpcs.catalogs.model.ReferenceCatalogue
        What :func:`cpcs.science.field_calibration.calibrate_field` takes.
    """
    rng = np.random.default_rng(seed)
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    r = np.asarray(true_r, dtype=np.float64)
    c = np.asarray(true_colour, dtype=np.float64)
    true_band = {b.band: r + b.offset_mag + b.colour_slope * c for b in model.bands}
    selection = true_band[model.selection_band]
    listed = (selection > model.bright_mag) & (selection < model.faint_mag)
    mags: dict[str, FloatArray] = {}
    errs: dict[str, FloatArray] = {}
    for band, values in true_band.items():
        truth = values[listed]
        error = np.hypot(floor_mag, 0.2 * 10.0 ** (0.4 * (truth - model.depth_mag)))
        mags[band] = truth + error * rng.normal(size=truth.size)
        errs[band] = error
    noise_deg = position_noise_arcsec / 3600.0
    n = int(np.count_nonzero(listed))
    north = dec[listed] + noise_deg * rng.normal(size=n)
    east = ra[listed] + noise_deg * rng.normal(size=n) / np.cos(np.radians(dec[listed]))
    return CatalogueReference(model.name, np.mod(east, 360.0), north, mags, errs)

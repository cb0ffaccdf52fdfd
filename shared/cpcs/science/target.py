"""Calibrated magnitude, error budget and upper limit of the target.

The error budget of a detection has four independent parts, added in quadrature:

* ``err_measurement``: the target's own instrumental error (from the uploaded catalogue);
* ``err_zero_point``: the error of the fitted transformation at the target's colour and position,
  propagated from the full covariance of the fit (zero point, colour term, spatial terms), with any
  zero-point pattern of the frame that the fit does not model (``unmodelled_spatial``) in quadrature;
* ``err_scatter``: the fit's intrinsic scatter, a systematic error of any single star's calibration
  not explained by the catalogue errors -- counted only when it is significant (the chi-square of
  the kept stars with their quoted errors alone has a p-value below ``SCATTER_SIGNIFICANCE``). The
  target is one star: a genuine star-to-star scatter applies to it, but a chance excess of the
  chi-square (on ~25 stars the fitted scatter is non-zero in about half the frames even when the
  errors are exact) is noise of the fit, already in its zero-point error, not the target's;
* ``err_colour``: ``hypot(colour_term, colour_term_err) * colour_err``, the effect of the target's
  colour uncertainty (the colour term's own uncertainty counts too: a poorly constrained colour term
  is no better than a large one). A transient's colour is usually unknown: it is then assumed to be
  0 with an uncertainty of ``DEFAULT_COLOUR_ERR_MAG`` (a typical spread of stellar colours). When
  no colour term could be fitted (no colours, too few stars with one), the colour term is *unknown*,
  not zero: ``UNFITTED_COLOUR_TERM`` stands in for it, so ``err_colour = UNFITTED_COLOUR_TERM *
  colour_err``.

:func:`calibration_budget` is this budget without the measurement error: what a calibration would
add to any target of that colour and position. The choice of the reference band ranks candidate
fits by it (:mod:`cpcs.science.selection`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import nnls

from cpcs.errors import CalibrationFailed
from cpcs.science._helpers import MAD_TO_SIGMA, MAG_ERR_PER_INVERSE_SNR, as_float_array
from cpcs.science.zeropoint import ZeroPointFit

__all__ = [
    "DEFAULT_COLOUR_ERR_MAG",
    "LIMIT_FIT_MAX_SNR",
    "LIMIT_SNR",
    "MAX_LIMIT_EXTRAPOLATION_MAG",
    "SCATTER_SIGNIFICANCE",
    "UNFITTED_COLOUR_TERM",
    "CalibrationBudget",
    "TargetMagnitude",
    "calibrate_target",
    "calibration_budget",
    "limiting_magnitude",
    "significant_scatter",
    "upper_limit",
]

#: Colour uncertainty (mag) assumed for a target of unknown colour: a typical spread of stellar colours.
DEFAULT_COLOUR_ERR_MAG = 0.5
#: Colour term (mag per mag of colour) assumed for a calibration whose colour term could not be
#: fitted: the scale of the colour terms met in practice (a filtered CCD against the nearest
#: catalogue band 0.03-0.15, an unfiltered one against Gaia G or r 0.1-0.3), taken at its
#: conservative end so that an unknown colour term never looks better than a measured, moderate one.
UNFITTED_COLOUR_TERM = 0.25
#: The intrinsic scatter is part of the target's error when the quoted errors alone leave a
#: chi-square this improbable (a 1 % test: a chance excess passes it in 1 frame of 100).
SCATTER_SIGNIFICANCE = 0.01
#: Signal-to-noise ratio defining the limiting magnitude.
LIMIT_SNR = 5.0
#: Only catalogue sources fainter than this S/N enter the S/N-magnitude relation of the limit.
LIMIT_FIT_MAX_SNR = 100.0
#: The limiting magnitude may be extrapolated at most this far (mag) beyond the faintest source.
MAX_LIMIT_EXTRAPOLATION_MAG = 1.5
#: Fewest faint sources with which a limiting magnitude is estimated.
MIN_LIMIT_SOURCES = 10


@dataclass(frozen=True)
class TargetMagnitude:
    """Calibrated magnitude of the target (or its upper limit) with its error budget.

    Attributes
    ----------
    mag : float
        Calibrated magnitude, or the calibrated limiting magnitude for an upper limit.
    err_measurement : float
        Instrumental (photon-noise) error of the target, mag; 0 for an upper limit.
    err_zero_point : float
        Error of the transformation at the target's assumed colour and position, mag.
    err_scatter : float
        Intrinsic scatter of the fit when significant (:func:`significant_scatter`), else 0, mag.
    err_colour : float
        ``hypot(colour_term, colour_term_err) * colour_err_assumed`` (``UNFITTED_COLOUR_TERM`` in
        place of the colour term when none was fitted), mag.
    err_total : float
        Quadrature sum of the four parts above, mag.
    colour_assumed, colour_err_assumed : float
        Colour used for the calibration and its uncertainty, mag.
    is_upper_limit : bool
        True when ``mag`` is an upper limit (the target is not detected).
    limit_mag : float or None
        Calibrated limiting magnitude of the image at the target (S/N given by ``limit_snr`` of the
        call, 5 by default), when it could be estimated.
    snr : float
        Signal-to-noise ratio of the detection (``1.0857 / inst_err``), or the S/N defining the
        limit for an upper limit.
    """

    mag: float
    err_measurement: float
    err_zero_point: float
    err_scatter: float
    err_colour: float
    err_total: float
    colour_assumed: float
    colour_err_assumed: float
    is_upper_limit: bool
    limit_mag: float | None
    snr: float


@dataclass(frozen=True)
class CalibrationBudget:
    """The calibration part of a target's error budget (mag), see the module docstring.

    Attributes
    ----------
    zero_point : float
        Error of the zero point at the target's colour and position: the fitted transformation's
        (full covariance), and the spatial structure the fit could not model (``unmodelled_spatial``)
        in quadrature.
    scatter : float
        The fit's intrinsic scatter when significant, else 0 (:func:`significant_scatter`).
    colour : float
        ``hypot(colour_term, colour_term_err) * colour_err``, or ``UNFITTED_COLOUR_TERM * colour_err``
        without a fitted colour term.
    total : float
        Quadrature sum of the three.
    colour_assumed, colour_err_assumed : float
        The target colour and its uncertainty used (the defaults for an unknown colour).
    unmodelled_spatial : float
        Part of ``zero_point``: the zero-point pattern the frame shows (seen by a better-constrained
        fit) that this fit has no spatial term for, at the target's position (0 when modelled).
    """

    zero_point: float
    scatter: float
    colour: float
    colour_assumed: float
    colour_err_assumed: float
    unmodelled_spatial: float = 0.0

    @property
    def total(self) -> float:
        return math.sqrt(self.zero_point**2 + self.scatter**2 + self.colour**2)


def significant_scatter(fit: ZeroPointFit) -> float:
    """The fit's intrinsic scatter when significant (p-value below ``SCATTER_SIGNIFICANCE``), else 0."""
    if fit.scatter_p_value < SCATTER_SIGNIFICANCE:
        return float(fit.intrinsic_scatter)
    return 0.0


def _colour_and_error(colour: float, colour_err: float) -> tuple[float, float]:
    if not math.isfinite(colour):
        return 0.0, DEFAULT_COLOUR_ERR_MAG
    if not math.isfinite(colour_err) or colour_err < 0.0:
        return float(colour), DEFAULT_COLOUR_ERR_MAG
    return float(colour), float(colour_err)


def _check_position(fit: ZeroPointFit, x: float, y: float) -> None:
    if fit.spatial_order > 0 and not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError("the fit has a spatial term: the target position x, y must be finite")


def calibration_budget(
    fit: ZeroPointFit,
    *,
    colour: float = math.nan,
    colour_err: float = math.nan,
    x: float = 0.0,
    y: float = 0.0,
    unmodelled_spatial: float = 0.0,
) -> CalibrationBudget:
    """The calibration error a target of this colour, at this position, would carry with ``fit``.

    Parameters
    ----------
    fit : ZeroPointFit
        A zero-point fit.
    colour, colour_err : float, optional
        Target colour in the fit's colour system and its uncertainty, mag; NaN (the default) means
        unknown: colour 0 with ``DEFAULT_COLOUR_ERR_MAG``.
    x, y : float, optional
        Target position in the fit's spatial coordinates.
    unmodelled_spatial : float, optional
        Zero-point structure at the target's position that the fit does not model, mag (see
        :func:`cpcs.science.selection.unmodelled_spatial_error`); added to the zero-point part.

    Returns
    -------
    CalibrationBudget
    """
    colour, colour_err = _colour_and_error(colour, colour_err)
    _check_position(fit, x, y)
    if fit.colour_fitted:
        colour_part = math.hypot(fit.colour_term, fit.colour_term_err) * colour_err
    else:
        colour_part = UNFITTED_COLOUR_TERM * colour_err
    return CalibrationBudget(
        zero_point=math.hypot(fit.transformation_error(colour, x, y), unmodelled_spatial),
        scatter=significant_scatter(fit),
        colour=float(colour_part),
        colour_assumed=colour,
        colour_err_assumed=colour_err,
        unmodelled_spatial=float(unmodelled_spatial),
    )


def calibrate_target(
    fit: ZeroPointFit,
    inst_mag: float,
    inst_err: float,
    *,
    colour: float = 0.0,
    colour_err: float = DEFAULT_COLOUR_ERR_MAG,
    x: float = 0.0,
    y: float = 0.0,
    limit_inst_mag: float | None = None,
    unmodelled_spatial: float = 0.0,
) -> TargetMagnitude:
    """Calibrate the target's instrumental magnitude with a zero-point fit.

    Parameters
    ----------
    fit : ZeroPointFit
        The chosen calibration.
    inst_mag, inst_err : float
        Instrumental magnitude and error of the target, mag (``inst_err > 0``).
    colour, colour_err : float, optional
        Target colour in the fit's colour system and its uncertainty, mag. Unknown colour (the
        default, or NaN): colour 0 with ``DEFAULT_COLOUR_ERR_MAG``. A NaN ``colour_err`` also means
        the default uncertainty.
    x, y : float, optional
        Target position in the fit's spatial coordinates (e.g. tangent-plane offsets, degrees).
    limit_inst_mag : float, optional
        Instrumental limiting magnitude (from :func:`limiting_magnitude`), calibrated into
        ``limit_mag`` at the target's colour and position. None/NaN leaves ``limit_mag`` None.
    unmodelled_spatial : float, optional
        Zero-point structure at the target the fit does not model (:func:`calibration_budget`), mag.

    Returns
    -------
    TargetMagnitude
        ``is_upper_limit`` is False: deciding that a weak detection should be reported as a limit
        (e.g. ``snr < 3``) is the caller's choice, via :func:`upper_limit`.

    Raises
    ------
    CalibrationFailed
        ``invalid_target_photometry`` when ``inst_mag`` is not finite or ``inst_err`` not a
        positive finite number.
    """
    if not (math.isfinite(inst_mag) and math.isfinite(inst_err) and inst_err > 0.0):
        raise CalibrationFailed(
            f"the target's photometry is unusable (mag={inst_mag}, magerr={inst_err})",
            code="invalid_target_photometry",
        )
    budget = calibration_budget(
        fit, colour=colour, colour_err=colour_err, x=x, y=y, unmodelled_spatial=unmodelled_spatial
    )
    colour, colour_err = budget.colour_assumed, budget.colour_err_assumed
    err_zero_point, err_scatter, err_colour = budget.zero_point, budget.scatter, budget.colour
    err_total = math.hypot(inst_err, budget.total)
    limit_mag = None
    if limit_inst_mag is not None and math.isfinite(limit_inst_mag):
        limit_mag = float(fit.predict(limit_inst_mag, colour, x, y))
    return TargetMagnitude(
        mag=float(fit.predict(inst_mag, colour, x, y)),
        err_measurement=float(inst_err),
        err_zero_point=err_zero_point,
        err_scatter=err_scatter,
        err_colour=err_colour,
        err_total=err_total,
        colour_assumed=colour,
        colour_err_assumed=colour_err,
        is_upper_limit=False,
        limit_mag=limit_mag,
        snr=float(MAG_ERR_PER_INVERSE_SNR / inst_err),
    )


def upper_limit(
    fit: ZeroPointFit,
    limit_inst_mag: float,
    *,
    colour: float = 0.0,
    colour_err: float = DEFAULT_COLOUR_ERR_MAG,
    x: float = 0.0,
    y: float = 0.0,
    snr: float = LIMIT_SNR,
    unmodelled_spatial: float = 0.0,
) -> TargetMagnitude:
    """Calibrated upper limit for an undetected (or too weak) target.

    Parameters
    ----------
    fit : ZeroPointFit
        The chosen calibration.
    limit_inst_mag : float
        Instrumental limiting magnitude, e.g. from :func:`limiting_magnitude`.
    colour, colour_err, x, y, unmodelled_spatial : float, optional
        As for :func:`calibrate_target`.
    snr : float, optional
        The S/N that defines the limit (recorded in the result).

    Returns
    -------
    TargetMagnitude
        ``is_upper_limit=True``, ``mag = limit_mag`` = calibrated limit; ``err_measurement = 0`` and
        ``err_total`` the calibration error of the limit (zero point, scatter, colour).

    Raises
    ------
    CalibrationFailed
        ``no_limiting_magnitude`` when ``limit_inst_mag`` is not finite.
    """
    if limit_inst_mag is None or not math.isfinite(limit_inst_mag):
        raise CalibrationFailed(
            "the target is not detected and the image's limiting magnitude cannot be estimated",
            code="no_limiting_magnitude",
        )
    budget = calibration_budget(
        fit, colour=colour, colour_err=colour_err, x=x, y=y, unmodelled_spatial=unmodelled_spatial
    )
    colour, colour_err = budget.colour_assumed, budget.colour_err_assumed
    err_zero_point, err_scatter, err_colour = budget.zero_point, budget.scatter, budget.colour
    limit_mag = float(fit.predict(limit_inst_mag, colour, x, y))
    return TargetMagnitude(
        mag=limit_mag,
        err_measurement=0.0,
        err_zero_point=err_zero_point,
        err_scatter=err_scatter,
        err_colour=err_colour,
        err_total=budget.total,
        colour_assumed=colour,
        colour_err_assumed=colour_err,
        is_upper_limit=True,
        limit_mag=limit_mag,
        snr=float(snr),
    )


def limiting_magnitude(inst_mag: ArrayLike, inst_err: ArrayLike, *, snr: float = LIMIT_SNR) -> float | None:
    """Instrumental magnitude at which the catalogue's own S/N reaches ``snr``.

    Each source's S/N is ``1.0857 / magerr``. For aperture photometry the flux variance is
    ``sky + flux / gain (+ a floor proportional to flux**2)``, so with ``u = 10**(0.4 (m - m_ref))``
    (proportional to 1 / flux)::

        1 / (S/N)**2 = c + a * u + b * u**2,     a, b, c >= 0

    (``b``: sky and read noise, ``a``: source photon noise, ``c``: any error floor). The three
    coefficients are fitted by non-negative least squares to the sources fainter than
    ``LIMIT_FIT_MAX_SNR`` (relative residuals, iterative 3-sigma MAD clipping, so odd sources such as
    blends or saturated stars do not matter), and the relation is solved for ``snr``. This is a
    robust version of fitting ``log10(S/N)`` against magnitude whose curvature is physical, so the
    limit interpolates within the catalogue when it reaches ``snr`` and extrapolates correctly
    otherwise, though never by more than ``MAX_LIMIT_EXTRAPOLATION_MAG`` beyond the faintest source.

    Parameters
    ----------
    inst_mag, inst_err : array_like
        Instrumental magnitudes and errors of all the catalogue's sources, mag. Sources with NaN,
        infinite or non-positive errors are ignored.
    snr : float, optional
        Signal-to-noise ratio defining the limit.

    Returns
    -------
    float or None
        Instrumental limiting magnitude, or None when fewer than ``MIN_LIMIT_SOURCES`` faint
        sources are available, the relation does not reach ``snr`` (e.g. an error floor above
        ``1 / snr``), or the extrapolation would be too long.
    """
    mag = as_float_array(inst_mag, "inst_mag")
    err = as_float_array(inst_err, "inst_err", size=mag.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = np.isfinite(mag) & np.isfinite(err) & (err > 0.0)
        source_snr = MAG_ERR_PER_INVERSE_SNR / err
    if not np.any(usable) or not (math.isfinite(snr) and snr > 0.0):
        return None
    faintest = float(np.max(mag[usable]))
    faint = usable & (source_snr < LIMIT_FIT_MAX_SNR)
    if np.count_nonzero(faint) < MIN_LIMIT_SOURCES:
        return None
    m = mag[faint]
    snr2 = source_snr[faint] ** 2
    m_ref = float(np.median(m))
    u = 10.0 ** (0.4 * (m - m_ref))
    # Rows scaled by (S/N)**2: the model predicts 1 and residuals are relative.
    design = snr2[:, None] * np.column_stack((np.ones_like(u), u, u * u))
    column_scale = np.sqrt(np.sum(design**2, axis=0))
    design = design / column_scale
    kept = np.ones(m.size, dtype=bool)
    coefficients = np.zeros(3)
    for _ in range(5):
        coefficients, _ = nnls(design[kept], np.ones(np.count_nonzero(kept)))
        residual = design @ coefficients - 1.0
        scale = MAD_TO_SIGMA * float(np.median(np.abs(residual[kept] - np.median(residual[kept]))))
        if not scale > 0.0:
            break
        new_kept = np.abs(residual) <= 3.0 * scale
        if np.count_nonzero(new_kept) < MIN_LIMIT_SOURCES or np.array_equal(new_kept, kept):
            break
        kept = new_kept
    c, a, b = coefficients / column_scale
    level = 1.0 / snr**2 - c
    if not level > 0.0:
        return None
    if b > 0.0:
        u_limit = (-a + math.sqrt(a * a + 4.0 * b * level)) / (2.0 * b)
    elif a > 0.0:
        u_limit = level / a
    else:
        return None
    if not (math.isfinite(u_limit) and u_limit > 0.0):
        return None
    limit = m_ref + 2.5 * math.log10(u_limit)
    if limit > faintest + MAX_LIMIT_EXTRAPOLATION_MAG:
        return None
    return float(limit)

"""An instrument's behaviour over time: extinction per night, its changes, and the limit to expect.

Pure: arrays in, frozen dataclasses out. The frames are those of one instrument calibrated to one
reference band (one filter); the caller groups them.

**Extinction.** A frame's zero point (``m_cat = m_inst + zp``) falls with the airmass ``X`` it was
taken at: the atmosphere dims the stars by ``k`` magnitudes per airmass, so

    zp = zp0 − k·X

where ``zp0`` is the zero point above the atmosphere. Each night with at least
:data:`MIN_FRAMES_PER_NIGHT` frames spanning at least :data:`MIN_AIRMASS_SPAN` in airmass gets a
weighted least-squares fit of ``zp0`` and ``k`` (weights ``1/zp_err²``; the errors are scaled up
by the square root of the reduced chi-square when the frames scatter more than their errors say —
thin cloud, a changing sky). A *night* is the local noon-to-noon day, ``floor(MJD + lon/360 − 0.5)``
(``lon`` east-positive, degrees), named by that integer MJD. Zero points are compared as stored:
images measure instrumental magnitudes per second, so their zero points do not depend on the
exposure time; a catalogue sent with its own instrumental scale keeps it.

**Night to night.** The nightly ``k`` are combined into a weighted mean with the night-to-night
spread beyond their errors (the same estimator as the learned colour terms,
:func:`cpcs.science.colour_terms.weighted_mean_with_spread`); each night's ``zp0`` is compared with
the previous fitted night's (``delta_zp0`` and its error): a drop means dirt on the optics, a new
filter, a changed camera.

**Expected limit.** For a background-limited point source the signal grows as ``t`` and the sky
noise as ``√t``, so the flux reached at a fixed S/N falls as ``t^-1/2`` and the limiting magnitude
grows as

    m_lim(t) = m_lim(t0) + 1.25·log10(t/t0)

Each frame's 5σ limit is moved to ``t0`` (:data:`REFERENCE_EXPTIME_S`) and to airmass 1 (with the
mean ``k`` when known: ``+ k·(X − 1)``); their median is ``m_lim(t0)`` with a robust scatter, and
:meth:`LimitModel.expected` gives the limit for any exposure. Frames limited by read noise (very
short) or saturation-free bright skies break the model; its scatter says how well it holds.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cpcs.science._helpers import MAD_TO_SIGMA, as_float_array
from cpcs.science.colour_terms import weighted_mean_with_spread

__all__ = [
    "MIN_AIRMASS_SPAN",
    "MIN_FRAMES_PER_NIGHT",
    "REFERENCE_EXPTIME_S",
    "BandTrends",
    "LimitModel",
    "NightExtinction",
    "band_trends",
    "limit_model",
    "night_extinction",
    "night_of",
]

#: Fewest frames of one night for an extinction fit.
MIN_FRAMES_PER_NIGHT = 3
#: Smallest airmass range of one night for an extinction fit.
MIN_AIRMASS_SPAN = 0.15
#: The exposure time the limit model is quoted at, s.
REFERENCE_EXPTIME_S = 60.0
#: Limiting magnitude per decade of exposure time for a background-limited point source.
LIMIT_SLOPE_PER_DEX = 1.25


def night_of(mjd: ArrayLike, lon_deg: float | None = None) -> NDArray[np.int64]:
    """The night of each MJD: the integer MJD of the local noon that starts it."""
    local = np.asarray(mjd, dtype=np.float64) + (lon_deg or 0.0) / 360.0
    return np.floor(local - 0.5).astype(np.int64)


@dataclass(frozen=True)
class NightExtinction:
    """One night of one band.

    Attributes
    ----------
    night : int
        The integer MJD of the local noon starting the night.
    n_frames : int
    airmass_min, airmass_max : float
    zp_median : float
        Median zero point of the night's frames.
    zp0, zp0_err, k, k_err : float or None
        The fit ``zp = zp0 − k·X`` and its errors; ``None`` when the night has too few frames or
        too small an airmass range (``why_not`` says which).
    rms : float or None
        Residual rms of the fit, mag.
    why_not : str or None
    """

    night: int
    n_frames: int
    airmass_min: float
    airmass_max: float
    zp_median: float
    zp0: float | None
    zp0_err: float | None
    k: float | None
    k_err: float | None
    rms: float | None
    why_not: str | None = None


def night_extinction(night: int, airmass: ArrayLike, zp: ArrayLike, zp_err: ArrayLike) -> NightExtinction:
    """Fit ``zp = zp0 − k·X`` to one night's frames (finite values, positive errors)."""
    x = as_float_array(airmass, "airmass")
    y = as_float_array(zp, "zp", size=x.size)
    e = as_float_array(zp_err, "zp_err", size=x.size)
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(e) & (e > 0)
    x, y, e = x[good], y[good], e[good]
    if x.size == 0:
        raise ValueError("no frame with a finite airmass, zero point and error")

    def night_of_frames(**fit: float | str | None) -> NightExtinction:
        return NightExtinction(
            night=int(night),
            n_frames=int(x.size),
            airmass_min=float(x.min()),
            airmass_max=float(x.max()),
            zp_median=float(np.median(y)),
            **fit,  # type: ignore[arg-type]
        )

    none: dict[str, float | str | None] = dict(zp0=None, zp0_err=None, k=None, k_err=None, rms=None)
    if x.size < MIN_FRAMES_PER_NIGHT:
        return night_of_frames(
            **none, why_not=f"{x.size} frames; an extinction fit needs {MIN_FRAMES_PER_NIGHT}"
        )
    if float(x.max() - x.min()) < MIN_AIRMASS_SPAN:
        span = float(x.max() - x.min())
        return night_of_frames(
            **none, why_not=f"airmass range {span:.2f}; an extinction fit needs {MIN_AIRMASS_SPAN}"
        )
    w = 1.0 / e**2
    design = np.column_stack([np.ones_like(x), -x])  # zp = zp0 - k X
    normal = design.T @ (design * w[:, None])
    covariance = np.linalg.inv(normal)
    zp0, k = covariance @ (design.T @ (w * y))
    residual = y - (zp0 - k * x)
    dof = x.size - 2
    chi2 = float(np.sum(w * residual**2))
    scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
    errors = np.sqrt(np.diag(covariance) * scale)
    return night_of_frames(
        zp0=float(zp0),
        zp0_err=float(errors[0]),
        k=float(k),
        k_err=float(errors[1]),
        rms=float(np.sqrt(np.mean(residual**2))),
    )


@dataclass(frozen=True)
class LimitModel:
    """``m_lim(t) = m_lim(t0) + 1.25·log10(t/t0)`` at airmass 1 (see the module docstring).

    Attributes
    ----------
    reference_exptime_s : float
        ``t0``.
    limit_at_reference : float
        ``m_lim(t0)``, the median of the frames moved to ``t0`` and airmass 1.
    scatter : float
        Robust scatter of those frames about it, mag (how well the model holds).
    n_frames : int
    """

    reference_exptime_s: float
    limit_at_reference: float
    scatter: float
    n_frames: int

    def expected(
        self, exptime_s: ArrayLike, airmass: ArrayLike = 1.0, k: float | None = None
    ) -> NDArray[np.float64]:
        """The 5σ limit expected for exposures of ``exptime_s`` (at ``airmass``, with extinction ``k``)."""
        t = np.asarray(exptime_s, dtype=np.float64)
        if np.any(~(t > 0)):
            raise ValueError("exposure times must be positive")
        limit = self.limit_at_reference + LIMIT_SLOPE_PER_DEX * np.log10(t / self.reference_exptime_s)
        if k is not None:
            limit = limit - k * (np.asarray(airmass, dtype=np.float64) - 1.0)
        return np.asarray(limit, dtype=np.float64)


def limit_model(
    limit_mag: ArrayLike,
    exptime_s: ArrayLike,
    airmass: ArrayLike | None = None,
    *,
    k: float | None = None,
    reference_exptime_s: float = REFERENCE_EXPTIME_S,
) -> LimitModel | None:
    """The limit model from frames' 5σ limits and exposure times; ``None`` without a usable frame."""
    m = as_float_array(limit_mag, "limit_mag")
    t = as_float_array(exptime_s, "exptime_s", size=m.size)
    x = np.ones(m.size) if airmass is None else as_float_array(airmass, "airmass", size=m.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.isfinite(m) & np.isfinite(t) & (t > 0)
        at_reference = m - LIMIT_SLOPE_PER_DEX * np.log10(t / reference_exptime_s)
    if k is not None:
        known = np.isfinite(x)
        at_reference = np.where(known, at_reference + k * (x - 1.0), at_reference)
    values = at_reference[good]
    if values.size == 0:
        return None
    centre = float(np.median(values))
    scatter = MAD_TO_SIGMA * float(np.median(np.abs(values - centre))) if values.size > 1 else 0.0
    return LimitModel(reference_exptime_s, centre, scatter, int(values.size))


@dataclass(frozen=True)
class BandTrends:
    """What one band's frames say about the instrument and the sky.

    Attributes
    ----------
    nights : tuple of NightExtinction
        In time order.
    k_mean, k_mean_err, k_spread : float or None
        Weighted mean extinction coefficient over the fitted nights, its error, and the
        night-to-night spread beyond the nightly errors (mag per airmass); ``None`` without a
        fitted night (a spread needs two).
    delta_zp0 : tuple of (night, delta, error)
        Each fitted night's ``zp0`` minus the previous fitted night's.
    limit : LimitModel or None
    """

    nights: tuple[NightExtinction, ...]
    k_mean: float | None
    k_mean_err: float | None
    k_spread: float | None
    delta_zp0: tuple[tuple[int, float, float], ...]
    limit: LimitModel | None


def band_trends(
    mjd: ArrayLike,
    airmass: ArrayLike,
    zp: ArrayLike,
    zp_err: ArrayLike,
    limit_mag: ArrayLike,
    exptime_s: ArrayLike,
    *,
    lon_deg: float | None = None,
) -> BandTrends:
    """Nightly extinction, its night-to-night changes and the limit model of one band's frames.

    Frames without an airmass still count for the limit (taken at airmass 1).
    """
    t_mjd = as_float_array(mjd, "mjd")
    size = t_mjd.size
    x = as_float_array(airmass, "airmass", size=size)
    y = as_float_array(zp, "zp", size=size)
    e = as_float_array(zp_err, "zp_err", size=size)
    nights_of = night_of(t_mjd, lon_deg)
    usable = np.isfinite(t_mjd) & np.isfinite(x) & np.isfinite(y) & np.isfinite(e) & (e > 0)
    nights: list[NightExtinction] = []
    for night in np.unique(nights_of[usable]):
        chosen = usable & (nights_of == night)
        nights.append(night_extinction(int(night), x[chosen], y[chosen], e[chosen]))
    fitted = [n for n in nights if n.k is not None and n.k_err is not None and n.k_err > 0]
    k_mean = k_err = k_spread = None
    if fitted:
        ks = np.array([n.k for n in fitted], dtype=float)
        variance = np.array([n.k_err for n in fitted], dtype=float) ** 2
        mean, error, spread = weighted_mean_with_spread(ks, variance)
        k_mean, k_err = mean, error
        k_spread = spread if len(fitted) > 1 else None
    deltas = []
    for before, after in itertools.pairwise(fitted):
        assert before.zp0 is not None and after.zp0 is not None
        assert before.zp0_err is not None and after.zp0_err is not None
        deltas.append((after.night, after.zp0 - before.zp0, math.hypot(after.zp0_err, before.zp0_err)))
    limit = limit_model(limit_mag, exptime_s, x, k=k_mean)
    return BandTrends(tuple(nights), k_mean, k_err, k_spread, tuple(deltas), limit)

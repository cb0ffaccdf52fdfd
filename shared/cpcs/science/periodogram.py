"""Periods in a light curve: astropy's Lomb-Scargle periodogram, the best period, its uncertainty and
false-alarm probability. Pure: arrays in, a frozen dataclass out.

* **Frequency grid**: from one cycle over the time baseline, ``1 / T``, to half the inverse of the
  short spacings between points (the 5th percentile of the gaps: follow-up comes in clusters, and
  clusters see periods far shorter than ``N / (2 T)``), capped at :data:`MAX_FREQUENCY_PER_DAY`, in
  steps of ``1 / (OVERSAMPLING T)``; at most :data:`MAX_FREQUENCIES` (the step grows for long, dense
  series). Daily sampling leaves aliases at ``f ± 1`` cycle a day: the highest peak is reported,
  its frequency refined on two finer grids around it (each step 1/100 of the one before).
* **Best period**: the highest peak. Its uncertainty is Horne & Baliunas's (1986) width of a peak,
  ``sigma_f = 3 sigma_N / (4 sqrt(N) T A)``, with ``A`` the fitted semi-amplitude and ``sigma_N`` the
  rms of the residuals about the fitted sinusoid, with the finest grid's step / sqrt(12) added in
  quadrature; ``sigma_P = P**2 sigma_f``.
* **False-alarm probability**: Baluev's (2008) bound for the highest peak over the grid's range
  (astropy ``LombScargle.false_alarm_probability(method="baluev")``), with the measurement errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.timeseries import LombScargle

__all__ = ["MAX_FREQUENCIES", "MIN_POINTS", "Periodogram", "fold", "lomb_scargle"]

#: Fewest points a periodogram is computed from.
MIN_POINTS = 8
#: Grid points a baseline is sampled with per unit of frequency resolution 1/T.
OVERSAMPLING = 10
#: Most frequencies on the grid.
MAX_FREQUENCIES = 20_000
#: Highest frequency searched (cycles a day): periods shorter than ~15 minutes are not looked for.
MAX_FREQUENCY_PER_DAY = 100.0


@dataclass(frozen=True)
class Periodogram:
    """A Lomb-Scargle periodogram and its highest peak.

    Attributes
    ----------
    frequency_per_day, power : ndarray
        The grid (cycles a day) and the normalised power (``standard``: 0 to 1).
    best_period_d, best_period_err_d : float
        Period of the highest peak and its 1-sigma uncertainty (days).
    false_alarm_probability : float
        Probability that noise alone gives so high a peak somewhere on the grid.
    amplitude_mag : float
        Semi-amplitude of the sinusoid fitted at the best period.
    epoch_mjd : float
        Time of the fitted sinusoid's maximum brightness (phase 0 of :func:`fold`).
    n_points, baseline_d : int, float
        Points used and their time span.
    """

    frequency_per_day: np.ndarray
    power: np.ndarray
    best_period_d: float
    best_period_err_d: float
    false_alarm_probability: float
    amplitude_mag: float
    epoch_mjd: float
    n_points: int
    baseline_d: float


def lomb_scargle(mjd: np.ndarray, mag: np.ndarray, magerr: np.ndarray | None = None) -> Periodogram:
    """The periodogram of a light curve in one band (detections only).

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_POINTS` finite points, a zero time baseline, or errors not positive.
    """
    t = np.asarray(mjd, dtype=float)
    y = np.asarray(mag, dtype=float)
    dy = None if magerr is None else np.asarray(magerr, dtype=float)
    good = np.isfinite(t) & np.isfinite(y) & (np.isfinite(dy) if dy is not None else True)
    t, y = t[good], y[good]
    if dy is not None:
        dy = dy[good]
        if np.any(dy <= 0):
            raise ValueError("magnitude errors must be positive")
    if t.size < MIN_POINTS:
        raise ValueError(f"a periodogram needs at least {MIN_POINTS} points with a date, {t.size} given")
    baseline = float(t.max() - t.min())
    if baseline <= 0:
        raise ValueError("the points span no time: all at one date")
    f_min = 1.0 / baseline
    gaps = np.diff(np.sort(t))
    gaps = gaps[gaps > 0]
    short_gap = float(np.percentile(gaps, 5))
    f_max = max(min(0.5 / short_gap, MAX_FREQUENCY_PER_DAY), 2.0 * f_min)
    step = max(1.0 / (OVERSAMPLING * baseline), (f_max - f_min) / (MAX_FREQUENCIES - 1))
    frequency = np.arange(f_min, f_max + 0.5 * step, step)
    model = LombScargle(t, y, dy)
    power = np.asarray(model.power(frequency))
    best = int(np.argmax(power))
    # The grid may be coarser than the peak: look again around it, twice, each time 100 times finer.
    f_best, half_width = float(frequency[best]), step
    for _ in range(2):
        fine = np.linspace(max(f_best - half_width, f_min), f_best + half_width, 201)
        fine_power = np.asarray(model.power(fine))
        f_best, peak = float(fine[np.argmax(fine_power)]), float(fine_power.max())
        half_width = float(fine[1] - fine[0])
    fap = float(
        model.false_alarm_probability(peak, method="baluev", minimum_frequency=f_min, maximum_frequency=f_max)
    )
    offset, a, b = model.model_parameters(f_best)
    amplitude = float(math.hypot(a, b))
    residuals = y - model.model(t, f_best)
    sigma_n = float(np.sqrt(np.mean(residuals**2)))
    sigma_f = 3.0 * sigma_n / (4.0 * math.sqrt(t.size) * baseline * max(amplitude, 1e-12))
    sigma_f = math.hypot(sigma_f, half_width / math.sqrt(12.0))  # and the last grid's resolution
    period = 1.0 / f_best
    # Magnitudes: brightest where the sinusoid is lowest, a sin + b cos = -A at 2 pi f t = atan2(-a, -b).
    epoch = float(math.atan2(-a, -b) / (2.0 * math.pi * f_best))
    epoch = float(t.min() + ((epoch - t.min()) % period))
    del offset
    return Periodogram(
        frequency_per_day=frequency,
        power=power,
        best_period_d=period,
        best_period_err_d=period**2 * sigma_f,
        false_alarm_probability=min(max(fap, 0.0), 1.0),
        amplitude_mag=amplitude,
        epoch_mjd=epoch,
        n_points=int(t.size),
        baseline_d=baseline,
    )


def fold(mjd: np.ndarray, period_d: float, epoch_mjd: float) -> np.ndarray:
    """Phases in [0, 1) of ``mjd`` folded on ``period_d`` from ``epoch_mjd``."""
    return np.mod((np.asarray(mjd, dtype=float) - epoch_mjd) / period_d, 1.0)

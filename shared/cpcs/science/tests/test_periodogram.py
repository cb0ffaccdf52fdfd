"""Lomb-Scargle periods by injection and recovery: a sinusoid sampled like follow-up, and noise alone."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.science.periodogram import MAX_FREQUENCIES, fold, lomb_scargle


def _nightly(rng: np.random.Generator, n: int, nights: float) -> np.ndarray:
    """Uneven follow-up sampling: a random night, then a random hour of it."""
    night = rng.integers(0, int(nights), n).astype(float)
    return np.sort(60000.0 + night + rng.uniform(0.0, 0.3, n))


@pytest.mark.parametrize(("period", "seed"), [(0.37, 1), (2.9, 2), (11.3, 3)])
def test_an_injected_sinusoid_is_recovered_within_its_uncertainty(period: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = _nightly(rng, 120, 60)
    sigma, amplitude, epoch = 0.03, 0.25, 60001.2
    mag = 15.0 - amplitude * np.cos(2 * np.pi * (t - epoch) / period) + rng.normal(0, sigma, t.size)
    result = lomb_scargle(t, mag, np.full(t.size, sigma))
    # 4 sigma: the pulls' spread is ~1.1 (below), so 3 sigma would fail about once in 200 series.
    assert abs(result.best_period_d - period) < 4 * result.best_period_err_d, (result.best_period_d, period)
    assert result.best_period_err_d < 0.01 * period  # a sharp peak: 120 points, 0.03 mag noise
    assert result.false_alarm_probability < 1e-10
    assert result.amplitude_mag == pytest.approx(amplitude, abs=3 * sigma / np.sqrt(t.size / 2) + 0.01)
    phase_of_maximum = fold(np.array([epoch]), result.best_period_d, result.epoch_mjd)[0]
    assert min(phase_of_maximum, 1 - phase_of_maximum) < 0.05  # phase 0 is the brightest


def test_the_period_uncertainty_is_calibrated() -> None:
    """Over many series the pulls (found - true) / uncertainty spread like a unit Gaussian.

    Measured over 150 series each (0.37, 2.9, 11.3 d): spreads 1.10, 1.09, 0.96, no alias chosen.
    """
    pulls = []
    for seed in range(30):
        rng = np.random.default_rng(1000 + seed)
        t = _nightly(rng, 120, 60)
        mag = 15.0 - 0.25 * np.cos(2 * np.pi * (t - 60001.2) / 2.9) + rng.normal(0, 0.03, t.size)
        result = lomb_scargle(t, mag, np.full(t.size, 0.03))
        pulls.append((result.best_period_d - 2.9) / result.best_period_err_d)
    assert 0.7 < float(np.std(pulls)) < 1.5 and abs(float(np.mean(pulls))) < 0.6, pulls


def test_noise_alone_has_a_large_false_alarm_probability() -> None:
    """For noise the false-alarm probability spreads over [0, 1] (Baluev's bound: towards 1), so in 20
    series a 1 % false alarm comes at most once, and the typical one is large."""
    faps = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        t = _nightly(rng, 60, 40)
        mag = 15.0 + rng.normal(0, 0.03, t.size)
        faps.append(lomb_scargle(t, mag, np.full(t.size, 0.03)).false_alarm_probability)
    assert sum(fap < 0.01 for fap in faps) <= 1 and np.median(faps) > 0.3, faps


def test_the_grid_follows_the_baseline_and_is_bounded() -> None:
    rng = np.random.default_rng(7)
    t = _nightly(rng, 40, 20)
    result = lomb_scargle(t, rng.normal(15, 0.05, t.size), None)
    step = np.diff(result.frequency_per_day)
    assert result.frequency_per_day[0] == pytest.approx(1 / result.baseline_d)
    assert step[0] == pytest.approx(1 / (10 * result.baseline_d))
    long = np.linspace(50000, 60000, 5000)
    assert lomb_scargle(long, rng.normal(15, 0.05, long.size)).frequency_per_day.size <= MAX_FREQUENCIES + 1


@pytest.mark.parametrize(
    ("t", "errors", "message"),
    [
        (np.arange(5.0), None, "at least 8"),
        (np.full(10, 60000.0), None, "no time"),
        (np.arange(10.0), np.zeros(10), "positive"),
    ],
)
def test_what_cannot_make_a_periodogram_is_said(
    t: np.ndarray, errors: np.ndarray | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        lomb_scargle(t, np.full(t.size, 15.0), errors)

"""Instrument trends recovered from simulated frames: extinction per night, its changes, the limit law."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.science.trends import (
    LIMIT_SLOPE_PER_DEX,
    MIN_FRAMES_PER_NIGHT,
    band_trends,
    limit_model,
    night_extinction,
    night_of,
)

#: Per night: (zp above the atmosphere, extinction k).
NIGHTS = {60100: (22.50, 0.12), 60101: (22.48, 0.18), 60104: (22.35, 0.15), 60110: (22.52, 0.13)}
LON_DEG = 21.42  # Ostrowik: local noon at about 10:34 UTC
ZP_NOISE = 0.01


def _simulated_frames(seed: int = 3) -> dict[str, np.ndarray]:
    """Frames over four nights, each from dusk to dawn with the target rising and setting."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {k: [] for k in ("mjd", "airmass", "zp", "zp_err", "limit", "exptime")}
    for night, (zp0, k) in NIGHTS.items():
        # 18:00 to 04:00 UTC of that night (all after local noon of ``night``)
        hours = np.linspace(18.0, 28.0, 14)
        mjd = night + hours / 24.0
        airmass = 1.0 + 1.3 * ((hours - 23.0) / 5.0) ** 2  # transit at 23 h, X from 1.0 to 2.3
        zp = zp0 - k * airmass + rng.normal(0, ZP_NOISE, hours.size)
        exptime = rng.choice([30.0, 60.0, 120.0, 300.0], hours.size)
        # 5 sigma limit: 19.0 at 60 s and airmass 1, background-limited, dimmed by extinction
        limit = 19.0 + LIMIT_SLOPE_PER_DEX * np.log10(exptime / 60.0) - k * (airmass - 1.0)
        limit = limit + rng.normal(0, 0.03, hours.size)
        for key, values in (
            ("mjd", mjd), ("airmass", airmass), ("zp", zp), ("zp_err", np.full(hours.size, ZP_NOISE)),
            ("limit", limit), ("exptime", exptime),
        ):  # fmt: skip
            rows[key].extend(values.tolist())
    return {key: np.asarray(values) for key, values in rows.items()}


def test_nightly_extinction_is_recovered_within_its_errors() -> None:
    frames = _simulated_frames()
    trends = band_trends(
        frames["mjd"], frames["airmass"], frames["zp"], frames["zp_err"], frames["limit"], frames["exptime"],
        lon_deg=LON_DEG,
    )  # fmt: skip
    assert [n.night for n in trends.nights] == list(NIGHTS)
    for night in trends.nights:
        zp0, k = NIGHTS[night.night]
        assert night.n_frames == 14 and night.why_not is None
        assert night.k is not None and night.k_err is not None and night.zp0 is not None
        assert night.zp0_err is not None and night.rms is not None
        assert 0.003 < night.k_err < 0.03  # 14 frames of 0.01 mag over 1.3 airmasses
        assert abs(night.k - k) < 3.5 * night.k_err and abs(night.k - k) < 0.03
        assert abs(night.zp0 - zp0) < 3.5 * night.zp0_err
        assert night.rms == pytest.approx(ZP_NOISE, rel=0.5)
    # night to night: the weighted mean k and a real spread (0.12 ... 0.18)
    assert trends.k_mean is not None and trends.k_mean_err is not None and trends.k_spread is not None
    assert abs(trends.k_mean - np.mean([k for _, k in NIGHTS.values()])) < 0.02
    assert 0.015 < trends.k_spread < 0.05
    # the zero point above the atmosphere dropped by 0.13 on night 60104, and came back
    [(n1, d1, e1), (n2, d2, e2), (n3, d3, e3)] = trends.delta_zp0
    assert (n1, n2, n3) == (60101, 60104, 60110)
    assert abs(d1 - (-0.02)) < 3.5 * e1 and abs(d2 - (-0.13)) < 3.5 * e2 and abs(d3 - 0.17) < 3.5 * e3
    assert d2 < -0.08 and d3 > 0.12
    # the limit law: 19.0 at 60 s and airmass 1, recovered to the noise of the frames
    assert trends.limit is not None and trends.limit.n_frames == 56
    assert trends.limit.limit_at_reference == pytest.approx(19.0, abs=0.02)
    assert trends.limit.scatter == pytest.approx(0.03, abs=0.015)
    expected = trends.limit.expected([60.0, 600.0, 6.0])
    np.testing.assert_allclose(expected, [19.0, 20.25, 17.75], atol=0.02)
    at_two = trends.limit.expected(300.0, airmass=2.0, k=0.15)
    assert float(at_two) == pytest.approx(19.0 + 1.25 * np.log10(5.0) - 0.15, abs=0.02)


def test_nights_that_cannot_be_fitted_say_why() -> None:
    short = night_extinction(1, [1.1, 1.2], [22.0, 21.99], [0.01, 0.01])
    assert short.k is None and short.zp0 is None and f"needs {MIN_FRAMES_PER_NIGHT}" in (short.why_not or "")
    flat = night_extinction(2, [1.20, 1.22, 1.25, 1.21], [22.0, 22.01, 21.99, 22.0], [0.01] * 4)
    assert (
        flat.k is None and "airmass range" in (flat.why_not or "") and flat.zp_median == pytest.approx(22.0)
    )
    with pytest.raises(ValueError, match="no frame"):
        night_extinction(3, [np.nan], [22.0], [0.01])
    assert limit_model([np.nan], [60.0]) is None
    with pytest.raises(ValueError, match="positive"):
        limit_model([19.0], [60.0]).expected(0.0)  # type: ignore[union-attr]


def test_cloud_inflates_the_errors_instead_of_hiding_in_them() -> None:
    rng = np.random.default_rng(5)
    airmass = np.linspace(1.0, 2.0, 12)
    zp = 22.5 - 0.15 * airmass + rng.normal(0, 0.08, airmass.size)  # 0.08 mag of passing cloud
    night = night_extinction(7, airmass, zp, np.full(airmass.size, 0.005))  # errors claim 5 mmag
    assert night.k is not None and night.k_err is not None
    assert night.k_err > 0.05  # scaled by the reduced chi-square, not the 5 mmag claimed
    assert abs(night.k - 0.15) < 3 * night.k_err


def test_the_night_starts_at_local_noon() -> None:
    # 23:00 UTC and 03:00 UTC the next day are one night in Europe; 11:00 UTC starts the next one
    np.testing.assert_array_equal(night_of([60100.958, 60101.125, 60101.46], 21.42), [60100, 60100, 60101])
    # at Mauna Kea (-155.5) 11:00 UTC is 01:00 local time, still the night that began on the day before
    np.testing.assert_array_equal(night_of([60101.46], -155.5), [60100])

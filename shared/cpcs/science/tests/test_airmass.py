"""Airmass: Kasten & Young near the horizon, None with a note below it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpcs.science.airmass import airmass_at, airmasses

# Apache Point Observatory and M2 on the night of the SDSS frames in ../shared/realdata/sdss_m2
APO = {"lon_deg": -105.8203, "lat_deg": 32.7803, "elevation_m": 2788.0}
M2 = (323.3626, -0.8233)


def test_the_sdss_frame_of_m2_has_an_ordinary_airmass() -> None:
    seen = airmass_at(*M2, 52172.2674, **APO)  # 2001-09-20 06:25 UTC, from DATE-OBS + TAIHMS
    assert seen.value is not None and 1.0 < seen.value < 1.6
    assert seen.note is None
    assert seen.value == pytest.approx(1 / math.sin(math.radians(seen.altitude_deg)), rel=0.01)


def test_a_target_below_the_horizon_has_no_airmass_and_a_note() -> None:
    # the same date at 00:00 UTC (a DATE-OBS without its time): M2 is still below APO's horizon
    seen = airmass_at(*M2, 52172.0 - 0.2, **APO)
    assert seen.altitude_deg < 0
    assert seen.value is None
    assert seen.note is not None and "below the observatory's horizon" in seen.note


def test_near_the_horizon_the_airmass_stays_finite_and_is_flagged() -> None:
    # find a time when M2 is 1-3 degrees up: sec z would be 20-57, Kasten & Young stays under 30
    for step in range(400):
        seen = airmass_at(*M2, 52172.0 - 0.2 + step * 0.001, **APO)
        if 1.0 < seen.altitude_deg < 3.0:
            break
    else:
        pytest.fail("M2 never rose between 1 and 3 degrees")
    assert seen.value is not None and 10 < seen.value < 30
    assert seen.note is not None and "above the horizon" in seen.note


def test_many_frames_at_once_agree_with_one_at_a_time() -> None:
    times = [52172.2674, 52172.0 - 0.2, 52172.30]
    many = airmasses([M2[0]] * 3, [M2[1]] * 3, times, **APO)
    for time, value in zip(times, many, strict=True):
        one = airmass_at(*M2, time, **APO).value
        if one is None:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(one, rel=1e-9)
    assert np.isnan(many[1]) and np.isfinite(many[0])

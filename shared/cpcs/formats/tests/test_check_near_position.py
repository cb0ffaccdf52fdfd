"""The catalogue must cover the alert position."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.errors import InputError
from cpcs.formats.source_catalogue import SourceCatalogue, check_near_position


def catalogue(ra: list[float] | np.ndarray, dec: list[float] | np.ndarray) -> SourceCatalogue:
    ra_arr = np.asarray(ra, dtype=np.float64)
    n = ra_arr.size
    return SourceCatalogue(
        ra_deg=ra_arr,
        dec_deg=np.asarray(dec, dtype=np.float64),
        mag=np.full(n, 15.0),
        magerr=np.full(n, 0.01),
        flags=None,
        format="sextractor_ascii",
        magnitude_column="MAG_AUTO",
        n_rows=n,
        n_rejected=0,
        header={},
    )


def grid(ra0: float, dec0: float, half_width_deg: float = 0.1, n: int = 7) -> SourceCatalogue:
    """Stars on an n x n grid centred on (ra0, dec0)."""
    offsets = np.linspace(-half_width_deg, half_width_deg, n)
    dra, ddec = np.meshgrid(offsets, offsets)
    ra = (ra0 + dra.ravel() / np.cos(np.radians(dec0))) % 360
    return catalogue(ra, dec0 + ddec.ravel())


def test_target_inside_the_field_passes() -> None:
    check_near_position(grid(150.1, 2.2), 150.1234, 2.2111)


def test_target_just_outside_the_field_within_margin_passes() -> None:
    # Field edge at Dec 2.3; target 3 arcmin beyond it.
    check_near_position(grid(150.1, 2.2), 150.1, 2.35)


def test_target_far_away_fails_with_distance_and_advice() -> None:
    with pytest.raises(InputError) as info:
        check_near_position(grid(150.1, 2.2), 150.1, 2.5)
    error = info.value
    assert error.code == "catalogue_not_near_target"
    assert "12.0 arcmin" in error.message
    assert "EventID" in error.message
    assert "astrometry" in error.message


def test_wrong_event_degrees_away_reports_degrees() -> None:
    with pytest.raises(InputError, match=r"is 53\.[0-9]+ degrees from the alert") as info:
        check_near_position(grid(150.1, 2.2), 200.0, -20.0)
    assert info.value.code == "catalogue_not_near_target"


def test_field_straddling_ra_zero() -> None:
    cat = grid(0.02, -30.0)
    assert cat.ra_deg.max() > 359  # the grid wraps
    check_near_position(cat, 359.99, -30.01)
    check_near_position(cat, 0.05, -29.95)


def test_field_at_the_pole() -> None:
    cat = catalogue(np.arange(0, 360, 30), np.full(12, 89.95))
    check_near_position(cat, 123.0, 90.0)


def test_margin_is_configurable() -> None:
    cat = grid(150.1, 2.2)
    check_near_position(cat, 150.1, 2.5, margin_arcmin=13)
    with pytest.raises(InputError):
        check_near_position(cat, 150.1, 2.35, margin_arcmin=1)


def test_gap_inside_a_sparse_field_farther_than_margin_fails() -> None:
    # Two clumps 1 degree apart: the midpoint is inside the bounding cone but ~30' from any star.
    cat = catalogue([150.0, 150.001, 151.0, 151.001], [2.0, 2.001, 2.0, 2.001])
    with pytest.raises(InputError, match=r"29\.9 arcmin"):
        check_near_position(cat, 150.5, 2.0)


def test_empty_catalogue() -> None:
    with pytest.raises(InputError) as info:
        check_near_position(catalogue([], []), 10.0, 10.0)
    assert info.value.code == "catalogue_not_near_target"


def test_non_finite_target_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="finite"):
        check_near_position(grid(150.1, 2.2), float("nan"), 2.2)

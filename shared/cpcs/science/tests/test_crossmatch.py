"""Cross-matching: correctness against the simulator's truth, one-to-one, geometry edge cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from cpcs.science.crossmatch import (
    match_catalogues,
    nearest_neighbours,
    nearest_source,
    tangent_plane_offsets,
)
from cpcs.simulation import simulate_field


def test_matches_recover_true_pairs_one_to_one() -> None:
    field = simulate_field(3, n_stars=400)
    reference = field.reference("PS1")
    match = match_catalogues(field.ra_deg, field.dec_deg, reference.ra_deg, reference.dec_deg, 1.5)

    assert len(match) > 300
    # Every reference star and every source is used at most once; sources come sorted.
    assert np.unique(match.reference_index).size == len(match)
    assert np.all(np.diff(match.source_index) > 0)
    assert np.all(match.separation_arcsec <= 1.5)
    # 0.2 arcsec astrometric noise: nearly all pairs are the true star.
    same_star = field.star_id[match.source_index] == reference.star_id[match.reference_index]
    assert same_star.mean() > 0.99
    # Every detected star that is in the reference catalogue is found.
    detected_in_ref = np.isin(field.star_id, reference.star_id)
    assert len(match) >= 0.99 * detected_in_ref.sum()
    # The transient at the centre is not in the reference catalogue and stays unmatched.
    assert field.target is not None and field.target.source_index is not None
    assert field.target.source_index not in set(match.source_index.tolist())


def test_separations_agree_with_astropy() -> None:
    rng = np.random.default_rng(5)
    ref_ra = rng.uniform(10.0, 10.1, 200)
    ref_dec = rng.uniform(-30.05, -30.0, 200)
    src_ra = ref_ra + rng.normal(0.0, 0.3 / 3600.0, 200) / np.cos(np.radians(ref_dec))
    src_dec = ref_dec + rng.normal(0.0, 0.3 / 3600.0, 200)
    match = match_catalogues(src_ra, src_dec, ref_ra, ref_dec, 2.0)
    expected = (
        SkyCoord(src_ra[match.source_index] * u.deg, src_dec[match.source_index] * u.deg)
        .separation(SkyCoord(ref_ra[match.reference_index] * u.deg, ref_dec[match.reference_index] * u.deg))
        .arcsec
    )
    np.testing.assert_allclose(match.separation_arcsec, expected, atol=1e-6)


def test_two_sources_claiming_one_star_keep_the_closer() -> None:
    ref_ra, ref_dec = np.array([50.0, 50.01]), np.array([20.0, 20.0])
    # Sources 0 and 1 are both nearest to reference star 0; source 1 is closer.
    src_dec = np.array([20.0 + 1.0 / 3600.0, 20.0 - 0.4 / 3600.0, 20.0])
    src_ra = np.array([50.0, 50.0, 50.01])
    match = match_catalogues(src_ra, src_dec, ref_ra, ref_dec, 2.0)
    assert match.source_index.tolist() == [1, 2]
    assert match.reference_index.tolist() == [0, 1]
    np.testing.assert_allclose(match.separation_arcsec, [0.4, 0.0], atol=1e-6)


def test_radius_is_respected() -> None:
    ref_ra, ref_dec = np.array([120.0]), np.array([-5.0])
    src_ra, src_dec = np.array([120.0]), np.array([-5.0 + 2.0 / 3600.0])
    assert len(match_catalogues(src_ra, src_dec, ref_ra, ref_dec, 1.5)) == 0
    assert len(match_catalogues(src_ra, src_dec, ref_ra, ref_dec, 2.5)) == 1


def test_ra_wrap_and_pole() -> None:
    # Across RA = 0/360 at the equator: 0.72 arcsec apart.
    wrap = match_catalogues(np.array([359.9999]), np.array([0.0]), np.array([0.0001]), np.array([0.0]), 1.0)
    assert len(wrap) == 1
    assert wrap.separation_arcsec[0] == pytest.approx(0.72, abs=1e-4)
    # Near the pole, very different RAs can be close.
    pole = match_catalogues(
        np.array([10.0]), np.array([89.9999]), np.array([190.0]), np.array([89.9999]), 1.0
    )
    assert len(pole) == 1
    assert pole.separation_arcsec[0] == pytest.approx(0.72, abs=1e-3)


def test_nan_positions_and_empty_inputs() -> None:
    src_ra = np.array([np.nan, 30.0, 30.001])
    src_dec = np.array([1.0, np.nan, 1.0])
    ref_ra = np.array([30.001, np.nan])
    ref_dec = np.array([1.0, 1.0])
    match = match_catalogues(src_ra, src_dec, ref_ra, ref_dec, 1.0)
    assert match.source_index.tolist() == [2]
    assert match.reference_index.tolist() == [0]
    empty = match_catalogues(np.array([]), np.array([]), ref_ra, ref_dec, 1.0)
    assert len(empty) == 0 and empty.source_index.dtype == np.intp
    with pytest.raises(ValueError):
        match_catalogues(src_ra, src_dec, ref_ra, ref_dec, 0.0)


def test_tangent_plane_offsets_match_a_tan_wcs() -> None:
    centre_ra, centre_dec = 210.0, 54.0
    rng = np.random.default_rng(2)
    ra = centre_ra + rng.uniform(-1.0, 1.0, 50)
    dec = centre_dec + rng.uniform(-0.6, 0.6, 50)
    xi, eta = tangent_plane_offsets(ra, dec, centre_ra, centre_dec)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [centre_ra, centre_dec]
    wcs.wcs.crpix = [1.0, 1.0]  # FITS pixels are 1-based; origin=0 below puts crval at 0, 0
    wcs.wcs.cdelt = [1.0, 1.0]
    x_ref, y_ref = wcs.wcs_world2pix(ra, dec, 0)
    np.testing.assert_allclose(xi, x_ref, atol=1e-9)
    np.testing.assert_allclose(eta, y_ref, atol=1e-9)
    # East is +xi, north is +eta; the centre is the origin; the far side is NaN.
    xi0, eta0 = tangent_plane_offsets(
        [centre_ra, centre_ra + 0.1, centre_ra + 180.0],
        [centre_dec, centre_dec, -centre_dec],
        centre_ra,
        centre_dec,
    )
    assert xi0[0] == pytest.approx(0.0, abs=1e-12) and eta0[0] == pytest.approx(0.0, abs=1e-12)
    assert xi0[1] > 0.0
    assert np.isnan(xi0[2]) and np.isnan(eta0[2])


def test_nearest_source() -> None:
    src_ra = np.array([100.0, 100.0 + 0.5 / 3600.0, 100.0 + 3.0 / 3600.0, np.nan])
    src_dec = np.array([-20.0 + 1.0 / 3600.0, -20.0, -20.0, -20.0])
    assert nearest_source(src_ra, src_dec, 100.0, -20.0, 2.0) == 1
    assert nearest_source(src_ra[[0, 2]], src_dec[[0, 2]], 100.0, -20.0, 0.5) is None
    assert nearest_source(np.array([]), np.array([]), 100.0, -20.0, 2.0) is None


def test_crossmatch_is_fast() -> None:
    rng = np.random.default_rng(0)
    ref_ra, ref_dec = rng.uniform(0.0, 0.5, 10_000), rng.uniform(0.0, 0.5, 10_000)
    src_ra, src_dec = rng.uniform(0.0, 0.5, 2_000), rng.uniform(0.0, 0.5, 2_000)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        match_catalogues(src_ra, src_dec, ref_ra, ref_dec, 1.5)
        timings.append(time.perf_counter() - start)
    # About 2 ms on a small machine; the bound leaves room for a loaded CI runner.
    assert min(timings) < 0.02


def test_the_field_cone_holds_every_source_within_its_cap() -> None:
    from cpcs.science.crossmatch import FIELD_CONE_MARGIN_DEG, FIELD_CONE_MAX_DEG, field_cone_radius_deg

    ra = np.array([150.0, 150.2, 149.9])
    dec = np.array([2.0, 2.0, 2.1])
    radius = field_cone_radius_deg(ra, dec, 150.0, 2.0)
    farthest = np.hypot(0.2 * np.cos(np.radians(2.0)), 0.0)
    assert radius == pytest.approx(
        max(farthest, np.hypot(0.1 * np.cos(np.radians(2.0)), 0.1)) + FIELD_CONE_MARGIN_DEG, abs=1e-4
    )
    assert field_cone_radius_deg(np.array([160.0]), np.array([2.0]), 150.0, 2.0) == FIELD_CONE_MAX_DEG
    assert field_cone_radius_deg(np.array([]), np.array([]), 150.0, 2.0) == FIELD_CONE_MARGIN_DEG


def test_nearest_neighbours_lets_sources_share_a_star_and_says_none_beyond_the_radius() -> None:
    ref_ra, ref_dec = np.array([10.0, 10.01]), np.array([-30.0, -30.0])
    # two sources 0.5" and 1" from the first star, one 1.5" from the second, one far, one invalid
    offset = 1.0 / 3600.0 / np.cos(np.radians(30.0))
    src_ra = np.array([10.0 + 0.5 * offset, 10.0 - offset, 10.01 + 1.5 * offset, 10.5, np.nan])
    src_dec = np.array([-30.0, -30.0, -30.0, -30.0, -30.0])
    index, separation = nearest_neighbours(src_ra, src_dec, ref_ra, ref_dec, 2.0)
    assert index.tolist() == [0, 0, 1, -1, -1]
    assert separation[:3] == pytest.approx([0.5, 1.0, 1.5], abs=1e-3)
    assert np.isinf(separation[3:]).all()
    empty_index, _ = nearest_neighbours(src_ra, src_dec, np.array([]), np.array([]), 2.0)
    assert (empty_index == -1).all()

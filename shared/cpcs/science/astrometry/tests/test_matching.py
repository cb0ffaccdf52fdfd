"""Pattern matching on planar point sets: nearest matching, the offset vote, the triangle matcher."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cpcs.science.astrometry._geometry import rotation_matrix
from cpcs.science.astrometry.matching import (
    Similarity,
    match_nearest,
    triangle_candidates,
    vote_rotation_offset,
)


def _point_sets(
    seed: int, transform: Similarity, *, n: int = 300, noise: float = 0.05, half: float = 1024.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """References over a wide area; sources = a subset on the image, mapped by the inverse of
    ``transform``, with noise, 20 % missing and 20 % spurious. Returns sources, references and the
    reference index of every source (-1 for spurious)."""
    rng = np.random.default_rng(seed)
    reference = rng.uniform(-1.6 * half, 1.6 * half, (int(n * 2.56), 2))
    inverse = np.linalg.inv(transform.matrix)
    on_image = (reference - transform.offset) @ inverse.T
    inside = np.flatnonzero(np.all(np.abs(on_image) < half, axis=1))
    kept = inside[rng.uniform(size=inside.size) > 0.2]
    sources = on_image[kept] + rng.normal(0.0, noise, (kept.size, 2))
    n_spurious = kept.size // 5
    sources = np.vstack((sources, rng.uniform(-half, half, (n_spurious, 2))))
    truth = np.concatenate((kept, np.full(n_spurious, -1)))
    order = rng.permutation(truth.size)
    return sources[order], reference, truth[order]


def test_match_nearest_is_one_to_one_and_keeps_the_closest() -> None:
    reference = np.array([[0.0, 0.0], [10.0, 0.0]])
    points = np.array([[0.5, 0.0], [0.2, 0.0], [9.0, 0.0], [50.0, 50.0]])
    index, ref_index, distance = match_nearest(points, cKDTree(reference), 2.0)
    assert index.tolist() == [1, 2]
    assert ref_index.tolist() == [0, 1]
    np.testing.assert_allclose(distance, [0.2, 1.0])
    empty = match_nearest(np.empty((0, 2)), cKDTree(reference), 2.0)
    assert all(part.size == 0 for part in empty)


def test_similarity_apply() -> None:
    transform = Similarity(scale=2.0, rotation_rad=np.pi / 2, parity=-1, offset=np.array([1.0, 1.0]))
    # Mirror x, rotate by 90 degrees, double, shift.
    np.testing.assert_allclose(
        transform.apply(np.array([[1.0, 0.0], [0.0, 1.0]])), [[1.0, -1.0], [-1.0, 1.0]]
    )


@pytest.mark.parametrize(
    ("rotation_deg", "offset"), [(0.0, (0.0, 0.0)), (1.7, (35.0, -52.0)), (-2.9, (-110.0, 80.0))]
)
def test_vote_recovers_small_rotation_and_offset(rotation_deg: float, offset: tuple[float, float]) -> None:
    transform = Similarity(
        scale=1.0, rotation_rad=np.radians(rotation_deg), parity=1, offset=np.array(offset)
    )
    sources, reference, _ = _point_sets(3, transform)
    vote = vote_rotation_offset(
        sources[:150], reference, max_offset=120.0, max_rotation_rad=np.radians(3.0), bin_size=3.0
    )
    assert vote is not None
    assert abs(np.degrees(vote.rotation_rad) - rotation_deg) < 0.2
    np.testing.assert_allclose(vote.offset, offset, atol=4.0)
    assert vote.peak > 20 * max(vote.background, 1.0)
    assert vote.log10_false_alarm < -10


def test_vote_finds_nothing_in_random_points() -> None:
    rng = np.random.default_rng(4)
    sources = rng.uniform(-1024, 1024, (150, 2))
    reference = rng.uniform(-1200, 1200, (300, 2))
    vote = vote_rotation_offset(
        sources, reference, max_offset=120.0, max_rotation_rad=np.radians(3.0), bin_size=3.0
    )
    assert vote is None


@pytest.mark.parametrize(
    ("rotation_deg", "parity", "scale"),
    [(0.0, 1, 1.0), (137.0, 1, 1.02), (-75.0, -1, 0.98), (180.0, -1, 1.0)],
)
def test_triangles_recover_rotation_parity_and_scale(rotation_deg: float, parity: int, scale: float) -> None:
    truth = Similarity(
        scale=scale, rotation_rad=np.radians(rotation_deg), parity=parity, offset=np.array([150.0, -90.0])
    )
    sources, reference, _ = _point_sets(5, truth, n=150)
    # The brightest: here simply the first ones (random order), as the solver takes the brightest.
    candidates = triangle_candidates(
        sources[:30], reference[:100], min_side=160.0, max_side=1536.0, cluster_radius=30.0
    )
    assert candidates
    best = candidates[0].transform
    assert best.parity == parity
    assert abs((np.degrees(best.rotation_rad - truth.rotation_rad) + 180.0) % 360.0 - 180.0) < 0.3
    assert best.scale == pytest.approx(scale, rel=0.005)
    # The transform brings sources onto their references within a pixel or two over the image.
    sample = np.array([[-1000.0, -1000.0], [1000.0, 1000.0], [0.0, 0.0], [-1000.0, 1000.0]])
    np.testing.assert_allclose(best.apply(sample), truth.apply(sample), atol=3.0)


def test_triangle_matcher_on_random_points_is_fast_and_weak() -> None:
    rng = np.random.default_rng(6)
    candidates = triangle_candidates(
        rng.uniform(-1024, 1024, (50, 2)),
        rng.uniform(-1700, 1700, (160, 2)),
        min_side=160.0,
        max_side=1536.0,
        cluster_radius=30.0,
    )
    # Chance agreements exist, but far fewer than the hundreds a true match gets.
    assert all(candidate.votes < 60 for candidate in candidates)


def test_rotation_matrix_is_counter_clockwise() -> None:
    np.testing.assert_allclose(rotation_matrix(np.pi / 2) @ np.array([1.0, 0.0]), [0.0, 1.0], atol=1e-15)

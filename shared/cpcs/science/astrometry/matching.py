"""Pattern matching of detected sources with reference stars, before any fit.

Three tools, all working on planar coordinates (pixels, arcsec in the tangent plane, or "nominal
pixels" = arcsec divided by the expected pixel scale):

* :func:`match_nearest` pairs each point with its nearest reference within a radius, one-to-one;
* :func:`vote_rotation_offset` finds a small rotation (and scale change) and a translation between two
  point sets when the scale is nearly right (refining a header WCS): every source-reference pair
  within the largest allowed offset votes, on a grid of trial rotations and scales, for the offset it
  implies; the true offset piles up in one cell of the 2-D histogram while chance pairs spread over
  all cells;
* :func:`triangle_candidates` finds a similarity transform with any rotation and either parity when
  the scale is known to a few per cent (blind solving around a pointing): triangles of the brightest
  points are described by their side ratios (invariant to rotation, reflection and scale) and by their
  longest side (the scale check); similar triangles vote for the rotation and parity they imply, and
  the winning rotation's votes are clustered in translation.

Everything is vectorised with KD-trees (:class:`scipy.spatial.cKDTree`); no step is quadratic in the
number of stars except the triangle enumeration of the few brightest ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import poisson

from cpcs.science.astrometry._geometry import FloatArray, IntArray, rotation_matrix

__all__ = [
    "OffsetVote",
    "Similarity",
    "TriangleCandidate",
    "match_nearest",
    "triangle_candidates",
    "vote_rotation_offset",
]


def match_nearest(points: FloatArray, tree: cKDTree, radius: float) -> tuple[IntArray, IntArray, FloatArray]:
    """Pair each point with its nearest reference within ``radius``, one-to-one.

    When several points claim the same reference, only the closest pair is kept.

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Positions to match, in the units of the tree.
    tree : cKDTree
        KD-tree of the reference positions (same units).
    radius : float
        Largest accepted distance (same units).

    Returns
    -------
    point_index, reference_index : ndarray of int
        Matched pairs, sorted by ``point_index``.
    distance : ndarray of float
        Distance of each pair (same units).
    """
    if points.shape[0] == 0 or tree.n == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty.copy(), np.empty(0)
    distance, reference = tree.query(points, k=1, distance_upper_bound=radius)
    found = np.flatnonzero(np.isfinite(distance))
    distance, reference = distance[found], reference[found]
    order = np.argsort(distance, kind="stable")
    _, first = np.unique(reference[order], return_index=True)
    keep = np.sort(order[first])
    return found[keep].astype(np.intp), reference[keep].astype(np.intp), distance[keep]


# ----------------------------------------------------------------------------------------------------
# Refine mode: rotation + offset vote
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OffsetVote:
    """Outcome of :func:`vote_rotation_offset`: ``reference ≈ scale * R(rotation) @ source + offset``.

    Attributes
    ----------
    rotation_rad : float
        Rotation of the source points about the origin (counter-clockwise), radians.
    scale : float
        Scale factor applied with the rotation (1 when no scale error was searched).
    offset : ndarray, shape (2,)
        Translation applied after the rotation, in the units of the inputs.
    peak : int
        Number of pairs in the winning cell.
    background : float
        Expected number of chance pairs in a cell.
    log10_false_alarm : float
        Decimal logarithm of the probability that chance pairs alone make a peak this high anywhere in
        the histogram (Poisson tail times the number of cells tried).
    source_index, reference_index : ndarray of int
        The pairs in the winning cell (a source may appear more than once).
    """

    rotation_rad: float
    scale: float
    offset: FloatArray
    peak: int
    background: float
    log10_false_alarm: float
    source_index: IntArray
    reference_index: IntArray


def _box_sum_3x3(counts: np.ndarray) -> np.ndarray:
    """Sum of each cell and its 8 neighbours over the last two axes (zero outside)."""
    padded = np.pad(counts, [(0, 0), (1, 1), (1, 1)])
    n_x, n_y = counts.shape[1], counts.shape[2]
    total = np.zeros_like(counts)
    for dx in range(3):
        for dy in range(3):
            total += padded[:, dx : dx + n_x, dy : dy + n_y]
    return total


#: Largest number of (transform, pair) offsets, or of (transform, cell) counts, held at once by the vote.
_VOTE_CHUNK = 2_000_000


def vote_rotation_offset(
    source_xy: FloatArray,
    reference_xy: FloatArray,
    *,
    max_offset: float,
    max_rotation_rad: float,
    bin_size: float,
    max_scale_error: float = 0.0,
    max_false_alarm: float = 1e-3,
    min_peak: int = 6,
) -> OffsetVote | None:
    """Find the small rotation (and scale change) and the translation that bring ``source_xy`` onto
    ``reference_xy``.

    Every pair of a source and a reference closer than the largest possible displacement votes, for each
    trial rotation and scale about the origin, for the offset it implies; votes are counted in a 2-D
    histogram of ``bin_size`` cells and summed over 3 x 3 cells, so a peak split between cells is not
    lost. Trial rotations and scales are spaced so that half a step moves the farthest source by at
    most half a cell.

    Parameters
    ----------
    source_xy, reference_xy : ndarray, shape (n, 2) and (m, 2)
        Planar positions in the same units and frame (e.g. tangent-plane arcsec about the image centre).
        Use the brightest ~100-300 of each; both should cover about the same area.
    max_offset : float
        Largest translation searched, per axis (same units).
    max_rotation_rad : float
        Largest rotation searched, either way, radians.
    bin_size : float
        Histogram cell (same units): a few times the positional error of the inputs.
    max_scale_error : float
        Largest relative scale error searched, either way (0: the scales agree).
    max_false_alarm : float
        Largest accepted chance probability of the peak.
    min_peak : int
        Smallest accepted number of pairs in the winning 3 x 3 cells.

    Returns
    -------
    OffsetVote or None
        ``None`` when no significant peak is found.
    """
    if source_xy.shape[0] == 0 or reference_xy.shape[0] == 0:
        return None
    radius_max = float(np.max(np.hypot(source_xy[:, 0], source_xy[:, 1])))
    step = min(bin_size / max(radius_max, bin_size), np.radians(1.0))
    n_rot = int(np.ceil(max_rotation_rad / step)) if max_rotation_rad > 0 else 0
    n_scale = int(np.ceil(max_scale_error / step)) if max_scale_error > 0 else 0
    angle_grid, scale_grid = np.meshgrid(
        np.arange(-n_rot, n_rot + 1) * step, 1.0 + np.arange(-n_scale, n_scale + 1) * step, indexing="ij"
    )
    angles, scales = angle_grid.ravel(), scale_grid.ravel()
    n_transforms = angles.size

    reach = (
        max_offset * np.sqrt(2.0) + radius_max * (min(max_rotation_rad, np.pi) + max_scale_error) + bin_size
    )
    pairs = cKDTree(source_xy).sparse_distance_matrix(cKDTree(reference_xy), reach, output_type="ndarray")
    if pairs.size == 0:
        return None
    i_src = pairs["i"].astype(np.intp)
    j_ref = pairs["j"].astype(np.intp)
    sx, sy = source_xy[i_src, 0], source_xy[i_src, 1]
    rx, ry = reference_xy[j_ref, 0], reference_xy[j_ref, 1]
    n_bins = max(int(np.ceil(2.0 * max_offset / bin_size)), 3)

    def offsets(index: IntArray) -> tuple[np.ndarray, np.ndarray]:
        a = (scales[index] * np.cos(angles[index]))[:, None]
        b = (scales[index] * np.sin(angles[index]))[:, None]
        return rx[None, :] - (a * sx - b * sy), ry[None, :] - (b * sx + a * sy)

    def cells(dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ix = np.floor((dx + max_offset) / bin_size).astype(np.intp)
        iy = np.floor((dy + max_offset) / bin_size).astype(np.intp)
        return ix, iy, (ix >= 0) & (ix < n_bins) & (iy >= 0) & (iy < n_bins)

    mean_counts = np.zeros(n_transforms)
    best = (-1, 0, 0, 0)  # peak, transform, x cell, y cell
    chunk = max(1, min(_VOTE_CHUNK // max(i_src.size, 1), _VOTE_CHUNK // (n_bins * n_bins)))
    for first in range(0, n_transforms, chunk):
        index = np.arange(first, min(first + chunk, n_transforms))
        ix, iy, inside = cells(*offsets(index))
        local = np.broadcast_to(np.arange(index.size)[:, None], ix.shape)
        flat = (local * n_bins + ix) * n_bins + iy
        counts = np.bincount(flat[inside], minlength=index.size * n_bins * n_bins)
        counts = counts.reshape(index.size, n_bins, n_bins)
        mean_counts[index] = counts.reshape(index.size, -1).mean(axis=1)
        boxed = _box_sum_3x3(counts)
        k, x_cell, y_cell = np.unravel_index(int(np.argmax(boxed)), boxed.shape)
        if boxed[k, x_cell, y_cell] > best[0]:
            best = (int(boxed[k, x_cell, y_cell]), int(index[k]), int(x_cell), int(y_cell))
    peak, k_best, x_best, y_best = best
    # Chance pairs per 3 x 3 box: the median over transforms of the mean count per cell, times 9 (the
    # true peak adds little to the mean of the many cells).
    background = 9.0 * float(np.median(mean_counts))
    n_trials = n_transforms * n_bins * n_bins
    tail = float(poisson.sf(peak - 1, max(background, 1e-3)))
    log10_fap = float(np.log10(max(tail, 1e-300)) + np.log10(n_trials))
    if peak < min_peak or log10_fap > np.log10(max_false_alarm):
        return None

    dx, dy = offsets(np.array([k_best]))
    ix, iy, inside = cells(dx, dy)
    in_box = inside[0] & (np.abs(ix[0] - x_best) <= 1) & (np.abs(iy[0] - y_best) <= 1)
    return OffsetVote(
        rotation_rad=float(angles[k_best]),
        scale=float(scales[k_best]),
        offset=np.array([np.median(dx[0][in_box]), np.median(dy[0][in_box])]),
        peak=peak,
        background=background,
        log10_false_alarm=log10_fap,
        source_index=i_src[in_box],
        reference_index=j_ref[in_box],
    )


# ----------------------------------------------------------------------------------------------------
# Blind mode: triangles
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Similarity:
    """A similarity transform of the plane, possibly with a reflection.

    ``apply(p) = scale * R(rotation_rad) @ diag(parity, 1) @ p + offset``: the x axis is mirrored first
    when ``parity`` is -1.
    """

    scale: float
    rotation_rad: float
    parity: int
    offset: FloatArray = field(default_factory=lambda: np.zeros(2))

    @property
    def matrix(self) -> FloatArray:
        """The linear part, shape (2, 2)."""
        return self.scale * rotation_matrix(self.rotation_rad) @ np.diag([float(self.parity), 1.0])

    def apply(self, xy: FloatArray) -> FloatArray:
        """Transform points of shape (n, 2)."""
        return np.asarray(xy @ self.matrix.T + self.offset, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class TriangleCandidate:
    """A similarity transform voted for by ``votes`` matched triangles."""

    transform: Similarity
    votes: int


@dataclass(frozen=True, eq=False)
class _Triangles:
    vertices: IntArray  # (m, 3): vertex opposite the longest, middle and shortest side
    descriptor: FloatArray  # (m, 2): middle / longest and shortest / longest side
    longest: FloatArray  # (m,)
    orientation: FloatArray  # (m,): +1 counter-clockwise A -> B -> C, -1 clockwise


def _triangles(xy: FloatArray, *, min_side: float, max_side: float, min_gap: float) -> _Triangles:
    """All well-shaped triangles of the points ``xy`` with the longest side within the given bounds.

    Triangles with two sides of nearly equal length (relative gap below ``min_gap``) are dropped: their
    vertex labelling, hence the implied rotation, would be ambiguous; so are very flat ones.
    """
    n = xy.shape[0]
    distance = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    short = distance <= max_side
    index = np.arange(n)
    # i < j < k with every side short enough and at least one side long enough.
    mask = (index[:, None, None] < index[None, :, None]) & (index[None, :, None] < index[None, None, :])
    mask &= short[:, :, None] & short[None, :, :] & short[:, None, :]
    mask &= (
        (distance[:, :, None] >= min_side)
        | (distance[None, :, :] >= min_side)
        | (distance[:, None, :] >= min_side)
    )
    combos = np.column_stack(np.nonzero(mask)).astype(np.intp)
    p0, p1, p2 = combos[:, 0], combos[:, 1], combos[:, 2]
    # Side opposite each vertex.
    sides = np.column_stack((distance[p1, p2], distance[p0, p2], distance[p0, p1]))
    order = np.argsort(-sides, axis=1)
    sorted_sides = np.take_along_axis(sides, order, axis=1)
    a, b, c = sorted_sides[:, 0], sorted_sides[:, 1], sorted_sides[:, 2]
    keep = ((a - b) >= min_gap * a) & ((b - c) >= min_gap * a) & (c >= 0.05 * a)
    vertices = np.take_along_axis(combos, order, axis=1)[keep]
    a, b, c = a[keep], b[keep], c[keep]
    va, vb, vc = xy[vertices[:, 0]], xy[vertices[:, 1]], xy[vertices[:, 2]]
    cross = (vb[:, 0] - va[:, 0]) * (vc[:, 1] - va[:, 1]) - (vb[:, 1] - va[:, 1]) * (vc[:, 0] - va[:, 0])
    return _Triangles(
        vertices=vertices,
        descriptor=np.column_stack((b / a, c / a)),
        longest=a,
        orientation=np.sign(cross),
    )


def triangle_candidates(
    source_xy: FloatArray,
    reference_xy: FloatArray,
    *,
    scale_tolerance: float = 0.04,
    shape_tolerance: float = 0.006,
    min_side: float,
    max_side: float,
    rotation_bin_deg: float = 1.0,
    cluster_radius: float,
    max_candidates: int = 3,
    min_votes: int = 4,
) -> list[TriangleCandidate]:
    """Similarity transforms (any rotation, either parity, scale near 1) mapping sources onto references.

    Parameters
    ----------
    source_xy : ndarray, shape (n, 2)
        The brightest sources (~30-50), pixels relative to the image centre.
    reference_xy : ndarray, shape (m, 2)
        The brightest references in the search area (~50-150), in nominal pixels (tangent-plane arcsec
        divided by the expected pixel scale), so that the expected scale of the transform is 1.
    scale_tolerance : float
        Largest accepted relative scale difference (e.g. 0.04 for a scale known to 2 % plus distortion).
    shape_tolerance : float
        Largest accepted difference of the side ratios of two similar triangles.
    min_side, max_side : float
        Range of the longest side of the triangles used (pixels): small triangles give poor angles,
        large ones cannot fit in the image.
    rotation_bin_deg : float
        Width of the rotation histogram bins, degrees.
    cluster_radius : float
        Radius (pixels) within which the translations of triangles voting for one rotation must agree.
    max_candidates : int
        Number of best rotation peaks returned.
    min_votes : int
        Smallest number of agreeing triangles for a candidate.

    Returns
    -------
    list of TriangleCandidate
        Best first; empty when no consistent set of triangles is found.
    """
    if source_xy.shape[0] < 3 or reference_xy.shape[0] < 3:
        return []
    gap = 2.0 * shape_tolerance
    src = _triangles(source_xy, min_side=min_side, max_side=max_side, min_gap=gap)
    ref = _triangles(
        reference_xy,
        min_side=min_side * (1 - scale_tolerance),
        max_side=max_side * (1 + scale_tolerance),
        min_gap=gap,
    )
    if src.longest.size == 0 or ref.longest.size == 0:
        return []
    # Chebyshev distance in (shape, shape, scaled log-length): one query checks both shape and scale.
    weight = shape_tolerance / np.log1p(scale_tolerance)
    src_key = np.column_stack((src.descriptor, weight * np.log(src.longest)))
    ref_key = np.column_stack((ref.descriptor, weight * np.log(ref.longest)))
    pairs = cKDTree(src_key).sparse_distance_matrix(
        cKDTree(ref_key), shape_tolerance, p=np.inf, output_type="ndarray"
    )
    if pairs.size == 0:
        return []
    i_src = pairs["i"].astype(np.intp)
    j_ref = pairs["j"].astype(np.intp)

    parity = (src.orientation[i_src] * ref.orientation[j_ref]).astype(np.int8)
    s_vert = src.vertices[i_src]
    r_vert = ref.vertices[j_ref]
    # Rotation from the longest side (vertex B to vertex C), after mirroring x for negative parity.
    s_side = source_xy[s_vert[:, 2]] - source_xy[s_vert[:, 1]]
    s_side[:, 0] *= parity
    r_side = reference_xy[r_vert[:, 2]] - reference_xy[r_vert[:, 1]]
    rotation = (np.arctan2(r_side[:, 1], r_side[:, 0]) - np.arctan2(s_side[:, 1], s_side[:, 0])) % (2 * np.pi)
    scale = ref.longest[j_ref] / src.longest[i_src]

    n_rot = max(round(360.0 / rotation_bin_deg), 4)
    bin_rad = 2 * np.pi / n_rot
    rot_bin = np.minimum((rotation / bin_rad).astype(np.intp), n_rot - 1)
    par_bin = (parity > 0).astype(np.intp)
    counts = np.bincount(par_bin * n_rot + rot_bin, minlength=2 * n_rot).reshape(2, n_rot).astype(float)
    smoothed = counts + np.roll(counts, 1, axis=1) + np.roll(counts, -1, axis=1)

    s_centroid = source_xy[s_vert].mean(axis=1)
    s_centroid[:, 0] *= parity
    r_centroid = reference_xy[r_vert].mean(axis=1)

    candidates: list[TriangleCandidate] = []
    for _ in range(max_candidates):
        best = int(np.argmax(smoothed))
        if smoothed.flat[best] < min_votes:
            break
        p_best, k_best = divmod(best, n_rot)
        # Blank this peak (and its neighbours) for the next round.
        for dk in range(-2, 3):
            smoothed[p_best, (k_best + dk) % n_rot] = 0.0
        centre_angle = (k_best + 0.5) * bin_rad
        delta = (rotation - centre_angle + np.pi) % (2 * np.pi) - np.pi
        selected = np.flatnonzero((par_bin == p_best) & (np.abs(delta) <= 1.5 * bin_rad))
        if selected.size < min_votes:
            continue
        cos_r, sin_r = np.cos(rotation[selected]), np.sin(rotation[selected])
        sc = scale[selected]
        cx, cy = s_centroid[selected, 0], s_centroid[selected, 1]
        translation = r_centroid[selected] - np.column_stack(
            (sc * (cos_r * cx - sin_r * cy), sc * (sin_r * cx + cos_r * cy))
        )
        neighbour_count = cKDTree(translation).query_ball_point(
            translation, cluster_radius, return_length=True
        )
        centre = translation[int(np.argmax(neighbour_count))]
        members = np.hypot(*(translation - centre).T) <= cluster_radius
        n_members = int(members.sum())
        if n_members < min_votes:
            continue
        angle = float((centre_angle + np.median(delta[selected][members])) % (2 * np.pi))
        transform = Similarity(
            scale=float(np.median(sc[members])),
            rotation_rad=angle,
            parity=1 if p_best == 1 else -1,
            offset=np.median(translation[members], axis=0),
        )
        candidates.append(TriangleCandidate(transform=transform, votes=n_members))
    candidates.sort(key=lambda item: -item.votes)
    return candidates

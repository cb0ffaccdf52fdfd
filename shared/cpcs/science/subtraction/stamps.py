"""Stamps around bright isolated sources, packed into a small mosaic for a fast kernel fit.

sfft's cost grows with the size of the image it fits on, not with the number of useful pixels.
With one kernel over the frame (no spatial variation), the fit only needs pixels where the two
frames carry signal: static stars and galaxies. :func:`stamp_mosaic` cuts square stamps, sized
to each source's extent, around the brightest isolated, unmasked sources of the sharper frame and
packs them with a blank gutter between stamps, so that no convolution of one stamp reaches
another; sfft then fits on a mosaic of a few hundred pixels a side instead of the whole frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep
from numpy.typing import NDArray
from scipy.spatial import cKDTree

__all__ = ["StampMosaic", "stamp_mosaic"]


@dataclass(frozen=True, eq=False)
class StampMosaic:
    """Two mosaics of the same stamps, ``[y, x]``, blank (zero) between the stamps.

    Attributes
    ----------
    image_i, image_j : ndarray of float64
        Stamps of the frame to convolve and of the other frame.
    centres : ndarray, shape (n, 2)
        (x, y) of the stamps' centres on the frame.
    half_sizes : ndarray of int
        Each stamp is ``2 * half_size + 1`` pixels a side.
    """

    image_i: NDArray[np.float64]
    image_j: NDArray[np.float64]
    centres: NDArray[np.float64]
    half_sizes: NDArray[np.int_]


def stamp_mosaic(
    image_i: NDArray[np.float64],
    image_j: NDArray[np.float64],
    excluded: NDArray[np.bool_],
    *,
    rms: float,
    fwhm_px: float,
    kernel_half_width: int,
    max_stamps: int = 64,
    min_stamps: int = 8,
    max_half_size: int = 96,
    min_snr: float = 20.0,
) -> StampMosaic | None:
    """Cut stamps around bright isolated sources of ``image_i`` and pack both frames' stamps.

    Parameters
    ----------
    image_i, image_j : ndarray
        Sky-subtracted frames on the same grid, ``[y, x]`` (masked pixels zero).
    excluded : ndarray of bool
        Pixels kept out of the fit (masked, near a mask, near an excluded target): zero in the
        stamps, and no stamp is centred within 1 FWHM of one.
    rms : float
        Typical pixel noise of ``image_i``, ADU (detection threshold).
    fwhm_px : float
        FWHM of the broader frame, px: stamps reach 3 FWHM plus the kernel from a centre.
    kernel_half_width : int
        Half-width of the matching kernel, px: the gutter between stamps is twice it.
    max_stamps : int
        The brightest this many isolated sources are used.
    min_stamps : int
        Fewer usable sources than this: no mosaic.
    max_half_size : int
        Sources whose light reaches farther than this (px, with the kernel) are not used.
    min_snr : float
        Sources fainter than this (peak over ``rms``) are not used.

    Returns
    -------
    StampMosaic or None
        None when fewer than ``min_stamps`` usable sources are found (fit on the whole frame instead).
    """
    ny, nx = image_i.shape
    data = np.ascontiguousarray(image_i, dtype=np.float32)
    sources = sep.extract(data, 5.0, err=float(rms), mask=excluded, minarea=5)
    if len(sources) < min_stamps:
        return None
    x = np.asarray(sources["x"], dtype=np.float64)
    y = np.asarray(sources["y"], dtype=np.float64)
    xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
    # Reach of each source's light: 3 FWHM for a star, 1.5 isophotal radii for a galaxy.
    reach = np.maximum(3.0 * fwhm_px, 1.5 * np.sqrt(np.asarray(sources["npix"], dtype=np.float64) / math.pi))
    halves = np.ceil(reach).astype(int) + kernel_half_width
    usable = (
        (halves <= max_half_size)
        & (xi >= halves)
        & (xi < nx - halves)
        & (yi >= halves)
        & (yi < ny - halves)
        & (sources["flag"] == 0)
        & (np.asarray(sources["peak"], dtype=np.float64) >= min_snr * rms)
    )
    tree = cKDTree(np.column_stack([x, y]))
    order = np.argsort(-np.asarray(sources["flux"], dtype=np.float64))
    core = math.ceil(fwhm_px)
    chosen: list[int] = []
    boxes: list[tuple[int, int, int]] = []
    for index in order:
        if not usable[index]:
            continue
        h = int(halves[index])
        cx, cy = int(xi[index]), int(yi[index])
        if excluded[cy - core : cy + core + 1, cx - core : cx + core + 1].any():
            continue
        # Isolated: no other source's light (half its reach) crosses the stamp's edge.
        near = tree.query_ball_point([x[index], y[index]], r=float(h + halves.max()), p=np.inf)
        crossing = False
        for other in near:
            if other == index:
                continue
            gap = max(abs(x[other] - cx), abs(y[other] - cy))
            if abs(gap - h) < 0.5 * reach[other]:
                crossing = True
                break
        # Not on a stamp already taken (its pixels would be fitted twice).
        if crossing or any(abs(cx - bx) <= bh + h and abs(cy - by) <= bh + h for bx, by, bh in boxes):
            continue
        chosen.append(int(index))
        boxes.append((cx, cy, h))
        if len(chosen) == max_stamps:
            break
    if len(chosen) < min_stamps:
        return None
    # Shelf packing, biggest first, with a gutter of 2 kernel half-widths around every stamp.
    gutter = 2 * kernel_half_width
    boxes.sort(key=lambda box: -box[2])
    width = max(
        math.ceil(math.sqrt(sum((2 * h + 1 + gutter) ** 2 for _, _, h in boxes))),
        2 * boxes[0][2] + 1 + gutter,
    )
    placed: list[tuple[int, int, int, int, int]] = []  # (ox, oy, cx, cy, h)
    shelf_y, shelf_height, cursor = gutter, 0, gutter
    for cx, cy, h in boxes:
        side = 2 * h + 1
        if cursor + side + gutter > width + gutter:
            shelf_y += shelf_height + gutter
            shelf_height, cursor = 0, gutter
        placed.append((cursor, shelf_y, cx, cy, h))
        cursor += side + gutter
        shelf_height = max(shelf_height, side)
    # A square of a multiple of 128 px: sfft compiles its functions per image size, so few sizes recur.
    square = 128 * math.ceil(max(shelf_y + shelf_height + gutter, width + gutter) / 128)
    mosaic_i = np.zeros((square, square))
    mosaic_j = np.zeros_like(mosaic_i)
    for ox, oy, cx, cy, h in placed:
        side = 2 * h + 1
        src = (slice(cy - h, cy + h + 1), slice(cx - h, cx + h + 1))
        keep = ~excluded[src]
        mosaic_i[oy : oy + side, ox : ox + side] = np.where(keep, image_i[src], 0.0)
        mosaic_j[oy : oy + side, ox : ox + side] = np.where(keep, image_j[src], 0.0)
    return StampMosaic(
        image_i=mosaic_i,
        image_j=mosaic_j,
        centres=np.array([[cx, cy] for _, _, cx, cy, _ in placed], dtype=np.float64),
        half_sizes=np.array([h for *_, h in placed]),
    )

"""Pictures of an image observation as PNG: a thumbnail of the frame and cutouts around a position.

Pure: pixel arrays and positions in, PNG bytes out; the reading and the access rules are in
:mod:`cpcs_api.image_views`. Pixel positions are 0-based FITS pixel centres (x along a row, y along a
column, as numpy's ``data[y, x]``); north-up FITS frames are shown with y upwards, as ds9 does.

Direct images (science, template) get a zscale window and an asinh stretch, so that a faint star and
a galaxy's core are both visible; a difference image gets a linear window symmetric about zero, so
that a residual's sign reads at a glance (negative dark, positive bright, zero mid-grey). NaN pixels
(off the template, padding beyond the frame's edge) are drawn in a flat dark blue.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.visualization import AsinhStretch, ZScaleInterval
from numpy.typing import NDArray
from PIL import Image, ImageDraw

__all__ = [
    "MAX_THUMBNAIL_PX",
    "Marks",
    "cutout",
    "cutout_png",
    "downsample",
    "grey_levels",
    "thumbnail_png",
]

MAX_THUMBNAIL_PX = 600
#: Pixels where there is no data (NaN), RGB.
NO_DATA = (20, 30, 70)
TARGET = (255, 60, 60)
USED_STAR = (60, 220, 90)
OTHER_STAR = (170, 170, 170)
CANDIDATE = (0, 200, 255)
#: Above this many pixels a zscale window is computed on a regular subsample of them.
ZSCALE_SAMPLES = 200_000


@dataclass(frozen=True)
class Marks:
    """What a thumbnail marks, in pixel coordinates of the full frame."""

    target_xy: tuple[float, float] | None = None
    #: The calibration stars (used by the chosen fit) and the matched ones it rejected.
    used_stars_xy: Sequence[tuple[float, float]] = ()
    other_stars_xy: Sequence[tuple[float, float]] = ()
    candidates_xy: Sequence[tuple[float, float]] = ()


def downsample(data: NDArray[np.floating], max_px: int) -> tuple[NDArray[np.float64], int]:
    """Block means of ``factor`` × ``factor`` pixels so that neither side exceeds ``max_px``.

    The factor is the smallest integer that fits, rounded up to an even number when above 1 so that
    a Bayer mosaic's colour pattern averages out. NaN pixels are left out of a block's mean (a block
    of NaN only stays NaN). Returns the reduced image and the factor.
    """
    if max_px < 1:
        raise ValueError("max_px must be at least 1")
    image = np.asarray(data, dtype=np.float64)
    ny, nx = image.shape
    factor = max(1, math.ceil(max(ny, nx) / max_px))
    if factor > 1 and factor % 2:
        factor += 1
    if factor == 1:
        return image, 1
    out_y, out_x = math.ceil(ny / factor), math.ceil(nx / factor)
    padded = np.full((out_y * factor, out_x * factor), np.nan)
    padded[:ny, :nx] = image
    blocks = padded.reshape(out_y, factor, out_x, factor)
    finite = np.isfinite(blocks)
    counts = finite.sum(axis=(1, 3))
    sums = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means, factor


def cutout(data: NDArray[np.floating], x: float, y: float, size: int) -> NDArray[np.float64]:
    """The ``size`` × ``size`` pixels centred on the pixel nearest (x, y); NaN beyond the frame."""
    if size < 1:
        raise ValueError("size must be at least 1")
    image = np.asarray(data)
    ny, nx = image.shape
    x0 = math.floor(float(x) + 0.5) - size // 2
    y0 = math.floor(float(y) + 0.5) - size // 2
    out = np.full((size, size), np.nan)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + size, nx), min(y0 + size, ny)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def _sample(values: NDArray[np.float64]) -> NDArray[np.float64]:
    finite = values[np.isfinite(values)]
    if finite.size > ZSCALE_SAMPLES:
        finite = finite[:: finite.size // ZSCALE_SAMPLES + 1]
    return finite


def grey_levels(data: NDArray[np.floating], *, difference: bool = False) -> NDArray[np.float64]:
    """Display levels in [0, 1] (NaN stays NaN): zscale + asinh, or symmetric linear for a difference."""
    image = np.asarray(data, dtype=np.float64)
    finite = _sample(image)
    if finite.size == 0:
        return np.full(image.shape, np.nan)
    if difference:
        median = float(np.median(finite))
        sigma = 1.4826 * float(np.median(np.abs(finite - median)))
        peak = float(np.max(np.abs(finite)))
        # Wide enough that a real residual is not one white blob, narrow enough that noise shows.
        half = max(5.0 * sigma, 0.25 * peak, 1e-12)
        return np.clip((image + half) / (2.0 * half), 0.0, 1.0)
    low, high = ZScaleInterval().get_limits(finite)
    if not high > low:
        high = low + 1.0
    scaled = np.clip((image - low) / (high - low), 0.0, 1.0)
    stretched: NDArray[np.float64] = AsinhStretch(a=0.1)(scaled, clip=True)
    return np.where(np.isfinite(image), stretched, np.nan)


def _rgb(levels: NDArray[np.float64]) -> Image.Image:
    """An RGB picture of display levels, y upwards (row 0 of the array at the bottom)."""
    grey = np.round(np.nan_to_num(levels, nan=0.0) * 255.0).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[~np.isfinite(levels)] = NO_DATA
    return Image.fromarray(np.ascontiguousarray(rgb[::-1]), mode="RGB")


def _png(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return out.getvalue()


def cutout_png(data: NDArray[np.floating], *, difference: bool = False) -> bytes:
    """A cutout as a PNG of exactly its own size (browsers enlarge it; no marks over the pixels)."""
    return _png(_rgb(grey_levels(data, difference=difference)))


def thumbnail_png(data: NDArray[np.floating], marks: Marks, *, max_px: int = MAX_THUMBNAIL_PX) -> bytes:
    """The frame reduced to at most ``max_px`` on a side, with the target, stars and candidates marked.

    The target is a red cross with a gap at its centre, calibration stars green circles (rejected
    matched stars grey), candidates cyan squares.
    """
    reduced, factor = downsample(data, max_px)
    picture = _rgb(grey_levels(reduced))
    height = picture.height
    draw = ImageDraw.Draw(picture)

    def at(x: float, y: float) -> tuple[float, float]:
        # Frame pixel centre -> the picture's continuous coordinates (y flipped).
        return (x + 0.5) / factor, height - (y + 0.5) / factor

    radius = max(3.0, 0.012 * max(picture.size))
    for stars, colour in ((marks.other_stars_xy, OTHER_STAR), (marks.used_stars_xy, USED_STAR)):
        for x, y in stars:
            px, py = at(x, y)
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), outline=colour, width=1)
    for x, y in marks.candidates_xy:
        px, py = at(x, y)
        side = radius * 1.2
        draw.rectangle((px - side, py - side, px + side, py + side), outline=CANDIDATE, width=1)
    if marks.target_xy is not None:
        px, py = at(*marks.target_xy)
        gap, arm = radius * 0.8, radius * 2.6
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            draw.line((px + dx * gap, py + dy * gap, px + dx * arm, py + dy * arm), fill=TARGET, width=2)
    return _png(picture)

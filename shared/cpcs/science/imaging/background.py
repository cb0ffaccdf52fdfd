"""Sky background, noise map and bad-pixel mask (sep-based, float32 throughout).

Mask bits
---------
:func:`pixel_mask_bits` returns a ``uint8`` image whose bits say why a pixel is bad
(:class:`MaskBit`); :func:`bad_pixel_mask` is the boolean ``bits != 0``. Photometry accepts either,
and tells saturated pixels apart only when given the bits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import sep
from numpy.typing import NDArray
from scipy import ndimage

__all__ = [
    "ImageBackground",
    "MaskBit",
    "bad_pixel_mask",
    "cosmic_contrast_for_psf",
    "estimate_background",
    "pixel_mask_bits",
]

BoolImage = NDArray[np.bool_]
FloatImage = NDArray[np.float32]

#: Contrast of the cosmic-ray test for well-sampled stars (FWHM ≥ 2 px); see :func:`pixel_mask_bits`.
DEFAULT_COSMIC_CONTRAST = 5.0
#: A pixel counts as sharper than any star when its neighbours hold less than this fraction of the
#: least a star of the image's PSF can leave them (noise and a PSF narrower than measured).
COSMIC_STAR_MARGIN = 0.5
#: Largest contrast used: beyond it a single frame cannot tell a cosmic ray from a star.
MAX_COSMIC_CONTRAST = 1000.0
#: A sharp pixel lies in a trough when, beyond one of its two lowest edge neighbours (itself
#: ``cosmic_sigma`` sky rms above the sky), the next pixel out is brighter than that neighbour by
#: this fraction and by ``cosmic_sigma`` sky rms (:func:`pixel_mask_bits`).
TROUGH_FRACTION = 0.05
#: Ring (inner, outer radius, px) whose median light tells how bright the star under a sharp pixel is.
REPAIRED_RING_PX = (2.5, 4.5)


class MaskBit(enum.IntFlag):
    """Why a pixel is bad (bits of :func:`pixel_mask_bits`)."""

    SATURATED = 1  #: at or above the saturation level, next to such a pixel, or a repaired core
    NONFINITE = 2  #: NaN or infinite
    COSMIC = 4  #: sharp positive outlier (cosmic ray or hot pixel), and its 8 neighbours


@dataclass(frozen=True)
class ImageBackground:
    """Smooth sky level and its noise.

    Attributes
    ----------
    level : ndarray (float32, image shape)
        Sky level, ADU per pixel.
    rms : ndarray (float32, image shape)
        Standard deviation of the sky pixel noise (read noise + sky photon noise), ADU.
    global_level, global_rms : float
        Image-wide values, ADU.
    box : int
        Mesh size used, px.
    """

    level: FloatImage
    rms: FloatImage
    global_level: float
    global_rms: float
    box: int = 64

    def subtract(self, data: NDArray[np.floating]) -> FloatImage:
        """``data - level`` as float32, with non-finite pixels set to 0 (they must be masked)."""
        out = np.asarray(data, dtype=np.float32) - self.level
        out[~np.isfinite(out)] = 0.0
        return out


def _as_float32(data: NDArray[np.floating]) -> FloatImage:
    array = np.ascontiguousarray(data, dtype=np.float32)
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def estimate_background(
    data: NDArray[np.floating],
    mask: BoolImage | None = None,
    *,
    box: int = 64,
    filter_size: int = 3,
) -> ImageBackground:
    """Estimate the sky level and noise maps with sep (SExtractor's mode estimator on a mesh).

    Parameters
    ----------
    data : ndarray (2-D)
        Image, ADU (bias, dark and flat corrected; the sky still in it).
    mask : ndarray of bool, optional
        Pixels to ignore (NaN and infinite pixels are always ignored).
    box : int
        Mesh size, px. It is shrunk for small images so that at least 4 meshes fit on each axis.
    filter_size : int
        Median filter applied to the mesh values, in meshes.

    Returns
    -------
    ImageBackground
        Maps are float32 of the image shape. Masked pixels get the interpolated value.
    """
    array = _as_float32(data)
    bad = ~np.isfinite(array)
    if mask is not None:
        bad |= mask.astype(bool)
    if bad.any():
        array = array.copy()
        array[bad] = 0.0
    box = int(max(8, min(box, min(array.shape) // 4)))
    bkg = sep.Background(
        array, mask=bad if bad.any() else None, bw=box, bh=box, fw=filter_size, fh=filter_size
    )
    level = bkg.back(dtype=np.float32)
    rms = bkg.rms(dtype=np.float32)
    floor = float(bkg.globalrms) * 1e-3 if bkg.globalrms > 0 else 1e-6
    np.maximum(rms, max(floor, 1e-12), out=rms)
    return ImageBackground(
        level=level,
        rms=rms,
        global_level=float(bkg.globalback),
        global_rms=float(bkg.globalrms),
        box=box,
    )


def cosmic_contrast_for_psf(fwhm_px: float, beta: float | None = None) -> float:
    """The ``cosmic_contrast`` of :func:`pixel_mask_bits` that spares every star of this PSF.

    For a star of the given profile (Moffat of index ``beta``, a Gaussian when ``beta`` is None or
    not finite), integrated over pixels and centred anywhere within its brightest pixel, the least
    ratio of the mean of the two lowest edge neighbours to the peak is found on a sub-pixel grid;
    the contrast is ``1 / (COSMIC_STAR_MARGIN × ratio)``, never below ``DEFAULT_COSMIC_CONTRAST``
    (the stars of a well-sampled image are spared by it already) nor above
    ``MAX_COSMIC_CONTRAST``. At FWHM 2 px it is near the default; at 1 px 20-100 (Moffat to Gaussian).
    """
    if not np.isfinite(fwhm_px) or fwhm_px <= 0:
        return DEFAULT_COSMIC_CONTRAST
    sub = 10
    grid = (np.arange(3 * sub) + 0.5) / sub - 1.5  # sub-pixel centres over the 3 x 3 pixels
    worst = 1.0
    for cx in np.linspace(0.0, 0.5, 6):
        for cy in np.linspace(0.0, cx, max(round(cx / 0.1) + 1, 1)):
            r2 = (grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2
            if beta is not None and np.isfinite(beta) and beta > 0:
                alpha2 = (fwhm_px / 2.0) ** 2 / (2.0 ** (1.0 / beta) - 1.0)
                profile = (1.0 + r2 / alpha2) ** -beta
            else:
                profile = np.exp(-4.0 * np.log(2.0) * r2 / fwhm_px**2)
            pixels = profile.reshape(3, sub, 3, sub).sum(axis=(1, 3))
            four = np.sort([pixels[0, 1], pixels[2, 1], pixels[1, 0], pixels[1, 2]])
            if pixels[1, 1] >= four[3]:
                worst = min(worst, float((four[0] + four[1]) / 2.0 / pixels[1, 1]))
    contrast = 1.0 / (COSMIC_STAR_MARGIN * max(worst, 1e-12))
    return float(np.clip(contrast, DEFAULT_COSMIC_CONTRAST, MAX_COSMIC_CONTRAST))


def _low_neighbours(
    image: FloatImage, rows: NDArray[np.intp], cols: NDArray[np.intp]
) -> tuple[FloatImage, FloatImage]:
    """Mean of the 2 lowest and the highest of the 4 edge neighbours of the given pixels.

    The two lowest ignore the other pixels of a short cosmic-ray track, while a star's peak keeps
    bright neighbours on all sides. Edges are clamped.
    """
    ny, nx = image.shape
    four = np.stack(
        [
            image[np.maximum(rows - 1, 0), cols],
            image[np.minimum(rows + 1, ny - 1), cols],
            image[rows, np.maximum(cols - 1, 0)],
            image[rows, np.minimum(cols + 1, nx - 1)],
        ]
    )
    four.sort(axis=0)
    return np.asarray((four[0] + four[1]) / 2.0, dtype=np.float32), four[3]


def _in_trough(
    image: FloatImage, rows: NDArray[np.intp], cols: NDArray[np.intp], threshold: NDArray[np.float32]
) -> NDArray[np.bool_]:
    """Whether each given pixel sits in a trough: beyond one of its two lowest edge neighbours, the
    next pixel out is brighter than that neighbour by ``TROUGH_FRACTION`` and by ``threshold``.

    Light that only adds (a cosmic ray or hot pixel on the sky, a star or a blend of them) never
    does this: the two lowest neighbours point away from any star, where the light falls further.
    A star core whose saturated pixels were replaced by the frame's producer does (a spike left in
    a band of interpolated pixels fainter than the star's wings around it). Edges are clamped.
    """
    ny, nx = image.shape
    steps = ((-1, 0), (1, 0), (0, -1), (0, 1))
    near = np.stack([image[np.clip(rows + dy, 0, ny - 1), np.clip(cols + dx, 0, nx - 1)] for dy, dx in steps])
    far = np.stack(
        [image[np.clip(rows + 2 * dy, 0, ny - 1), np.clip(cols + 2 * dx, 0, nx - 1)] for dy, dx in steps]
    )
    lowest_two = np.argsort(near, axis=0)[:2]
    near_low = np.take_along_axis(near, lowest_two, axis=0)
    far_low = np.take_along_axis(far, lowest_two, axis=0)
    rise = far_low - near_low
    inside_a_source = near_low > threshold[None, :]
    trough = inside_a_source & (rise > threshold[None, :]) & (rise > TROUGH_FRACTION * near_low)
    return np.asarray(trough.any(axis=0))


def _grow(mask: BoolImage, rows: NDArray[np.intp], cols: NDArray[np.intp], radius: int) -> None:
    """Set the (2r+1)² box around each given pixel in ``mask`` (in place; cheap for sparse pixels)."""
    ny, nx = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            mask[np.clip(rows + dy, 0, ny - 1), np.clip(cols + dx, 0, nx - 1)] = True


def pixel_mask_bits(
    data: NDArray[np.floating],
    *,
    saturation_adu: float | None,
    background: ImageBackground,
    cosmic_sigma: float = 6.0,
    cosmic_contrast: float = DEFAULT_COSMIC_CONTRAST,
    saturation_grow: int = 2,
) -> NDArray[np.uint8]:
    """Bits (:class:`MaskBit`) of the bad pixels of an image.

    Cosmic rays and hot pixels are told from stars by their sharpness: a pixel is flagged when it is
    a local maximum (not below any of its four edge neighbours; a star's steep wings are never
    flagged), ``cosmic_sigma`` above the sky *and* above the mean of the two lowest of its four edge
    neighbours, and those neighbours (sky subtracted) hold less than ``1 / cosmic_contrast`` of its
    value (taking the two lowest catches 2-3 pixel tracks). A star of FWHM ≥ 2 px never does,
    wherever its centre falls in the pixel (its two faintest neighbours hold ≥ 35 % of the peak);
    undersampled images (FWHM < 2 px) must pass a larger ``cosmic_contrast``, the one
    :func:`cosmic_contrast_for_psf` gives for their measured PSF.
    The flagged pixel and its eight neighbours are masked. Saturated pixels are grown by
    ``saturation_grow`` px (bleed and the
    non-linear halo). Only pixels above threshold are examined, so the cost is a few full-image
    array operations.

    **Repaired saturated cores.** Frames from other pipelines may have had their saturated pixels
    replaced (SDSS corrected frames: no SATURATE card, no plateau; the core of a star brighter than
    r ≈ 15 in 0.75" seeing is a band of interpolated pixels fainter than the star's wings, with a
    few spikes left in it). Those spikes pass the sharpness test, and masking them as cosmic rays
    split each such star into two detections. A sharp pixel whose lowest neighbours (inside a
    source) are fainter than the pixels beyond them cannot be light added to a smooth image, which
    only falls away from every star in those directions: its group of flagged pixels, and any other
    group lying on a star at least as bright (:func:`_repaired_cores`), is masked as SATURATED
    (grown by ``saturation_grow``) instead of COSMIC, so the star is detected whole and flagged.

    Parameters
    ----------
    data : ndarray (2-D)
        Image, ADU (sky not subtracted).
    saturation_adu : float or None
        Saturation level on the scale of ``data``; None: no saturation masking.
    background : ImageBackground
        Sky level and noise.
    """
    array = np.asarray(data, dtype=np.float32)
    bits = np.zeros(array.shape, dtype=np.uint8)
    nonfinite = ~np.isfinite(array)
    bits[nonfinite] |= np.uint8(MaskBit.NONFINITE)
    sub = background.subtract(array)
    if saturation_adu is not None:
        with np.errstate(invalid="ignore"):
            saturated = array >= saturation_adu
        rows, cols = np.nonzero(saturated)
        if rows.size:
            grown = np.zeros(array.shape, dtype=bool)
            _grow(grown, rows, cols, saturation_grow)
            bits[grown] |= np.uint8(MaskBit.SATURATED)
    with np.errstate(invalid="ignore"):
        candidates = sub > cosmic_sigma * background.rms
    rows, cols = np.nonzero(candidates)
    if rows.size:
        value = sub[rows, cols]
        neighbours, highest = _low_neighbours(sub, rows, cols)
        noise = background.rms[rows, cols]
        sharp = (
            (value >= highest)
            & (value - neighbours > cosmic_sigma * noise)
            & (neighbours * cosmic_contrast < value)
        )
        if saturation_adu is not None:
            sharp &= (bits[rows, cols] & MaskBit.SATURATED) == 0
        if sharp.any():
            rows, cols = rows[sharp], cols[sharp]
            grown = np.zeros(array.shape, dtype=bool)
            _grow(grown, rows, cols, 1)
            repaired = _repaired_cores(sub, background.rms, rows, cols, grown, cosmic_sigma)
            if repaired is not None:
                grown &= ~repaired
                core_rows, core_cols = np.nonzero(repaired)
                _grow(repaired, core_rows, core_cols, saturation_grow)
                bits[repaired] |= np.uint8(MaskBit.SATURATED)
            bits[grown] |= np.uint8(MaskBit.COSMIC)
    return bits


def _ring_offsets(inner: float, outer: float) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    reach = int(np.ceil(outer))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    r = np.hypot(dy, dx)
    ring = (r > inner) & (r <= outer)
    return dy[ring], dx[ring]


def _repaired_cores(
    sub: FloatImage,
    rms: FloatImage,
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    grown: BoolImage,
    cosmic_sigma: float,
) -> BoolImage | None:
    """The groups of sharp pixels that are repaired saturated cores, or None (see
    :func:`pixel_mask_bits`).

    A group is one when one of its pixels sits in a trough (:func:`_in_trough`), or when it lies on
    a star at least as bright as such a core's: the median light of the ring
    ``REPAIRED_RING_PX`` around it reaches the least ring light of the cores found by their trough
    (stars of one PSF saturate above one brightness).
    """
    threshold = cosmic_sigma * rms[rows, cols]
    in_trough = _in_trough(sub, rows, cols, threshold)
    if not in_trough.any():
        return None
    ny, nx = sub.shape
    dy, dx = _ring_offsets(*REPAIRED_RING_PX)
    ring = np.median(
        sub[np.clip(rows[None, :] + dy[:, None], 0, ny - 1), np.clip(cols[None, :] + dx[:, None], 0, nx - 1)],
        axis=0,
    )
    groups, _ = ndimage.label(grown, structure=np.ones((3, 3), dtype=bool))
    group_of = groups[rows, cols]
    level = float(np.min(ring[in_trough]))
    core = in_trough | ((ring >= level) & (ring > threshold))
    return np.asarray(np.isin(groups, np.unique(group_of[core])))


def bad_pixel_mask(
    data: NDArray[np.floating],
    *,
    saturation_adu: float | None,
    background: ImageBackground,
    cosmic_sigma: float = 6.0,
    cosmic_contrast: float = 5.0,
) -> BoolImage:
    """Boolean mask (True = bad): saturated (grown), non-finite, cosmic rays and hot pixels.

    See :func:`pixel_mask_bits` for the criteria; this is ``pixel_mask_bits(...) != 0``.
    """
    bits = pixel_mask_bits(
        data,
        saturation_adu=saturation_adu,
        background=background,
        cosmic_sigma=cosmic_sigma,
        cosmic_contrast=cosmic_contrast,
    )
    return np.asarray(bits != 0)

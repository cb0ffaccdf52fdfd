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


class MaskBit(enum.IntFlag):
    """Why a pixel is bad (bits of :func:`pixel_mask_bits`)."""

    SATURATED = 1  #: at or above the saturation level, or next to such a pixel
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
            grown = np.zeros(array.shape, dtype=bool)
            _grow(grown, rows[sharp], cols[sharp], 1)
            bits[grown] |= np.uint8(MaskBit.COSMIC)
    return bits


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

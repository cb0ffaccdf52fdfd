"""Raw colour-mosaic (Bayer) frames of DSLR and one-shot colour cameras: measured in their green pixels.

Which frames are mosaics
------------------------
A frame is a Bayer mosaic when its header says so: ``BAYERPAT`` (MaxIm DL, N.I.N.A., SharpCap,
ASCOM drivers; also ``CFA-PAT``/``COLORTYP``) or a ``FILTER`` value that is itself a colour-filter
pattern (``RGGB``, ``BGGR``, ``GRBG``, ``GBRG``, as PANOPTES writes it). A debayered colour image
has three axes and is refused at the door, so only raw mosaics get here.

How it is measured
------------------
Only the green pixels are used: each 2 × 2 cell gives one "superpixel" holding the sum of its two
green pixels (the AAVSO DSLR practice: no interpolation, independent noise per superpixel, the
green passband alone). The superpixel image has half the size and twice the pixel scale; its
pixel ``(i, j)`` is centred on the frame's pixel ``(2i + 0.5, 2j + 0.5)`` (0-based), which
:class:`GreenPlane` converts both ways so that positions, the WCS and the source table stay in the
uploaded frame's pixels. A DSLR's green channel is close to Johnson V (AAVSO transforms DSLR green
to V with a small colour term), so a mosaic without another filter is calibrated as ``V``.

The pattern's name says where red is in the *first row as the camera read it*; FITS writers
disagree on whether that row is the first or the last (``ROWORDER``), and crops may start on an
odd row. The green diagonal is therefore read from the data: the two green sites of a 2 × 2 cell
see the same sky, so the diagonal whose two sites have the closer median level is green (the
pattern's own diagonal wins a tie within the noise).

A superpixel is saturated when either of its green pixels is: it is set to twice the raw
saturation level, which is the saturation level of the green image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["CFA_PATTERNS", "DSLR_GREEN_BAND", "GreenPlane", "bayer_pattern_from_cards", "green_plane"]

#: Colour-filter patterns, named by the colours of the top-left 2 × 2 cell, row by row.
CFA_PATTERNS = frozenset({"RGGB", "BGGR", "GRBG", "GBRG"})
#: The standard band a mosaic's green pixels are calibrated as when no other filter is named.
DSLR_GREEN_BAND = "V"
_PATTERN_KEYS = ("BAYERPAT", "CFA-PAT", "COLORTYP", "FILTER")


def bayer_pattern_from_cards(cards: Mapping[str, object]) -> str | None:
    """The colour-filter pattern a header names (``"RGGB"``...), or None (see the module docstring)."""
    for key in _PATTERN_KEYS:
        value = cards.get(key)
        if isinstance(value, str) and value.strip().upper() in CFA_PATTERNS:
            return value.strip().upper()
    return None


@dataclass(frozen=True)
class GreenPlane:
    """The green superpixels of a mosaic and how their pixels map onto the frame's.

    Attributes
    ----------
    data : ndarray (float32)
        Sum of the two green pixels of each 2 × 2 cell, ADU; shape ``(ny // 2, nx // 2)``.
    frame_shape : tuple of int
        Shape of the uploaded mosaic.
    green_offset : int
        Column of the green pixel in the cell's first row (0 for ``GRBG``/``GBRG``-like data,
        1 for ``RGGB``/``BGGR``-like), as found in the data.
    saturation_adu : float or None
        Saturation level of :attr:`data` (twice the raw level).
    """

    data: NDArray[np.float32]
    frame_shape: tuple[int, int]
    green_offset: int
    saturation_adu: float | None

    def to_frame(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Superpixel coordinates (0-based) to the mosaic's pixel coordinates."""
        return 2.0 * np.asarray(x, dtype=np.float64) + 0.5, 2.0 * np.asarray(y, dtype=np.float64) + 0.5

    def from_frame(self, x: float, y: float) -> tuple[float, float]:
        """The mosaic's pixel coordinates (0-based) to superpixel coordinates."""
        return (float(x) - 0.5) / 2.0, (float(y) - 0.5) / 2.0


def green_plane(data: NDArray[np.floating], pattern: str, *, saturation_adu: float | None) -> GreenPlane:
    """Sum the two green pixels of every 2 × 2 cell of a raw mosaic.

    Parameters
    ----------
    data : ndarray (2-D)
        The raw mosaic, ADU. An odd last row or column is dropped.
    pattern : str
        The pattern the header names (one of :data:`CFA_PATTERNS`); the data decide between the two
        diagonals (module docstring).
    saturation_adu : float or None
        Raw saturation level; superpixels with a green pixel at or above it are set to twice it.
    """
    array = np.asarray(data, dtype=np.float32)
    ny, nx = (array.shape[0] // 2) * 2, (array.shape[1] // 2) * 2
    array = array[:ny, :nx]
    sites = {(r, c): array[r::2, c::2] for r in (0, 1) for c in (0, 1)}
    named = 1 if pattern.upper() in ("RGGB", "BGGR") else 0

    def disagreement(offset: int) -> float:
        first, second = sites[(0, offset)], sites[(1, 1 - offset)]
        return abs(float(np.nanmedian(first)) - float(np.nanmedian(second)))

    spread = float(np.nanstd(sites[(0, named)] - sites[(1, 1 - named)]))
    noise = spread / np.sqrt(max(sites[(0, 0)].size, 1))
    offset = named
    if disagreement(1 - named) + 3.0 * noise < disagreement(named):
        offset = 1 - named
    first, second = sites[(0, offset)], sites[(1, 1 - offset)]
    green = np.asarray(first + second, dtype=np.float32)
    level = None if saturation_adu is None else 2.0 * float(saturation_adu)
    if saturation_adu is not None and level is not None:
        with np.errstate(invalid="ignore"):
            saturated = (first >= saturation_adu) | (second >= saturation_adu)
        green[saturated] = level
    return GreenPlane(
        data=green,
        frame_shape=(int(data.shape[0]), int(data.shape[1])),
        green_offset=offset,
        saturation_adu=level,
    )

"""Small numerical helpers shared by the science modules (private)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

#: Factor turning a median absolute deviation into a Gaussian standard deviation.
MAD_TO_SIGMA = 1.482602218505602

#: 2.5 / ln(10): converts a relative flux error into a magnitude error (magerr = 1.0857 / S/N).
MAG_ERR_PER_INVERSE_SNR = 2.5 / np.log(10.0)


def as_float_array(values: Any, name: str, *, size: int | None = None) -> FloatArray:
    """Return ``values`` as a 1-D float64 array, checking its length against ``size``.

    Raises ``ValueError`` (a programming error, not a user error) on a wrong shape.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if size is not None and array.size != size:
        raise ValueError(f"{name} has {array.size} elements, expected {size}")
    return array


def fast_median(values: FloatArray) -> float:
    """Median of a non-empty array without NaN (a few times faster than ``np.median`` for small arrays)."""
    n = values.size
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    low_high = np.partition(values, (half - 1, half))
    return float(0.5 * (low_high[half - 1] + low_high[half]))


def robust_sigma(values: FloatArray) -> float:
    """Gaussian-equivalent standard deviation from the median absolute deviation about the median.

    NaN values are ignored; returns NaN for an empty input.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan")
    centre = np.median(finite)
    return float(MAD_TO_SIGMA * np.median(np.abs(finite - centre)))

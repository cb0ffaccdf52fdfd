"""Low-order 2-D polynomial surfaces over an image, with robust fitting and degree choice (private)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def _design(u: FloatArray, v: FloatArray, degree: int) -> FloatArray:
    columns = [u**i * v**j for total in range(degree + 1) for j in range(total + 1) for i in [total - j]]
    return np.stack(columns, axis=-1)


def n_terms(degree: int) -> int:
    return (degree + 1) * (degree + 2) // 2


# Candidate surfaces, simplest first: (name, degree, columns), a column being a list of
# (weight, index into the full design of that degree). "radial" is c0 + c1 (u² + v²), the usual
# shape of focus/field-curvature seeing variation, with 2 terms where a full quadratic needs 6.
_Column = list[tuple[float, int]]
_CANDIDATES: list[tuple[str, int, list[_Column]]] = [
    ("constant", 0, [[(1.0, 0)]]),
    ("radial", 2, [[(1.0, 0)], [(1.0, 3), (1.0, 5)]]),
    ("linear", 1, [[(1.0, 0)], [(1.0, 1)], [(1.0, 2)]]),
    ("linear+radial", 2, [[(1.0, 0)], [(1.0, 1)], [(1.0, 2)], [(1.0, 3), (1.0, 5)]]),
    ("quadratic", 2, [[(1.0, i)] for i in range(6)]),
]


def _reduced(full: FloatArray, columns: list[_Column]) -> FloatArray:
    return np.stack([sum(w * full[:, i] for w, i in col) for col in columns], axis=-1)


def _expand(coeffs: NDArray[np.floating], columns: list[_Column], degree: int) -> tuple[float, ...]:
    out = np.zeros(n_terms(degree))
    for c, col in zip(coeffs, columns, strict=True):
        for w, i in col:
            out[i] += w * c
    return tuple(float(v) for v in out)


@dataclass(frozen=True)
class Poly2D:
    """A polynomial in normalised image coordinates ``u = (x - xc) / hx``, ``v = (y - yc) / hy``.

    Callable: ``surface(x, y)`` with pixel coordinates (0-based) returns float64 values of the
    broadcast shape. ``degree`` 0 is a constant.
    """

    coeffs: tuple[float, ...]
    degree: int
    centre: tuple[float, float]
    half_size: tuple[float, float]

    @classmethod
    def constant(cls, value: float, shape: tuple[int, int]) -> Poly2D:
        return cls(
            (float(value),), 0, ((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0), (shape[1] / 2.0, shape[0] / 2.0)
        )

    def __call__(self, x: ArrayLike, y: ArrayLike) -> FloatArray:
        u = (np.asarray(x, dtype=np.float64) - self.centre[0]) / self.half_size[0]
        v = (np.asarray(y, dtype=np.float64) - self.centre[1]) / self.half_size[1]
        u, v = np.broadcast_arrays(u, v)
        return np.asarray(_design(u, v, self.degree) @ np.asarray(self.coeffs))

    def extremes(self, shape: tuple[int, int], n: int = 9) -> tuple[float, float]:
        """Minimum and maximum over an n×n grid covering the image."""
        if self.degree == 0:
            return self.coeffs[0], self.coeffs[0]
        yy, xx = np.meshgrid(np.linspace(0, shape[0] - 1, n), np.linspace(0, shape[1] - 1, n), indexing="ij")
        values = self(xx, yy)
        return float(values.min()), float(values.max())


def fit_surface(
    x: FloatArray,
    y: FloatArray,
    values: FloatArray,
    shape: tuple[int, int],
    *,
    weights: FloatArray | None = None,
    max_degree: int = 2,
    clip_sigma: float = 3.0,
    min_points_per_term: int = 5,
    bic_margin: float = 6.0,
) -> tuple[Poly2D, NDArray[np.bool_]]:
    """Fit the surface of lowest BIC among constant, radial, linear, linear+radial and quadratic
    forms (up to ``max_degree``), clipping outliers.

    Each form is fitted (weighted least squares) with its own clipping; the forms are then compared
    on the points that none of them clipped, and a richer form must lower the BIC by
    ``bic_margin`` to be chosen (guarding against spurious variation from noisy points).

    Returns the surface and the mask of points kept by the chosen form. Forms needing more than
    ``len(values) / min_points_per_term`` terms are not tried.
    """
    centre = ((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)
    half = (shape[1] / 2.0, shape[0] / 2.0)
    u = (x - centre[0]) / half[0]
    v = (y - centre[1]) / half[1]
    finite = np.isfinite(values) & np.isfinite(u) & np.isfinite(v)
    w = np.ones_like(values, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    finite &= np.isfinite(w) & (w > 0)
    sw = np.sqrt(np.where(finite, w, 0.0))
    fits: list[tuple[int, Poly2D, NDArray[np.bool_], NDArray[np.floating]]] = []
    for _name, degree, columns in _CANDIDATES:
        if degree > max_degree:
            continue
        k = len(columns)
        if k > 1 and finite.sum() < k * min_points_per_term:
            continue
        design_all = _reduced(_design(u, v, degree), columns)
        keep = finite.copy()
        coeffs: NDArray[np.floating] = np.zeros(k)
        resid: NDArray[np.floating] = np.zeros_like(values)
        for _ in range(5):
            if keep.sum() < k:
                break
            coeffs = np.linalg.lstsq(design_all[keep] * sw[keep, None], values[keep] * sw[keep], rcond=None)[
                0
            ]
            resid = (values - design_all @ coeffs) * sw
            sigma = 1.4826 * np.median(np.abs(resid[keep])) + 1e-12
            new_keep = finite & (np.abs(resid) < clip_sigma * sigma)
            if np.array_equal(new_keep, keep) or new_keep.sum() < k + 1:
                break
            keep = new_keep
        fits.append((k, Poly2D(_expand(coeffs, columns, degree), degree, centre, half), keep, resid))
    if not fits:
        median = float(np.nanmedian(values)) if finite.any() else float("nan")
        return Poly2D.constant(median, shape), finite
    common = np.logical_and.reduce([keep for _, _, keep, _ in fits])
    n = int(common.sum())
    if n < 2:
        return fits[0][1], fits[0][2]
    best: tuple[float, Poly2D, NDArray[np.bool_]] | None = None
    for k, surface, keep, resid in fits:
        rss = float(np.sum(resid[common] ** 2)) + 1e-30
        bic = n * np.log(rss / n) + k * np.log(n)
        if best is None or bic < best[0] - bic_margin:
            best = (bic, surface, keep)
    assert best is not None
    return best[1], best[2]

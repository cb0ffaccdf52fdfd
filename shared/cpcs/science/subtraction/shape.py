"""A shape classifier for difference-image candidates: does this look like the frame's PSF?

Five numbers describe a candidate's stamp (all ratios, so independent of its brightness):

* ``size_ratio``: size from Gaussian-weighted second moments (weight of the PSF's sigma), over the
  same measure of an ideal Gaussian of the PSF's FWHM (≈ 1 for a star, → 0 for a hot pixel);
* ``elongation``: square root of the moment matrix's eigenvalue ratio (trails, bleeding edges);
* ``sharpness``: the brightest pixel near the centre over the flux within one FWHM (cosmic rays);
* ``negative_fraction``: flux of the pixels below -3 sigma within two FWHM over the positive flux
  there (dipoles left by a misaligned or mis-matched star);
* ``concentration``: flux within half a FWHM over the flux within two FWHM.

Training: scikit-learn's IsolationForest, per frame, on *simulated good transients*: the frame's
own PSF model added to stamps of its own difference image (away from every detection) at S/N
drawn log-uniformly over the range candidates have. The frame's stars cannot be the training set:
on the difference they are subtracted away, and on the science frame they are bright, on another
background and another noise. The injections have exactly what a real transient of that frame has
(its PSF, its pixel sampling, its difference noise and residuals), at the S/N where candidates
live, so the forest learns what "a point source on this difference image" looks like and a score
below its threshold (``contamination`` of the training set falls below it) marks an outlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import IsolationForest

from cpcs.science.imaging.psf import PsfModel

__all__ = [
    "SHAPE_FEATURES",
    "ShapeClassifier",
    "shape_features",
    "stamp_features",
    "train_shape_classifier",
]

SHAPE_FEATURES = ("size_ratio", "elongation", "sharpness", "negative_fraction", "concentration")
_SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: S/N range of the simulated transients the classifier is trained on.
TRAINING_SNR = (5.0, 200.0)
#: Simulated transients per frame.
N_TRAINING = 400
#: Fraction of the simulated good transients that fall below the outlier threshold.
CONTAMINATION = 0.01

FloatArray = NDArray[np.float64]


def _half_width(fwhm_px: float) -> int:
    return max(4, math.ceil(2.5 * fwhm_px))


def stamp_features(
    stamps: FloatArray, noise: FloatArray, dx0: FloatArray, dy0: FloatArray, fwhm_px: float
) -> FloatArray:
    """The shape features of stamps centred near their sources.

    Parameters
    ----------
    stamps, noise : ndarray, shape (n, k, k)
        Difference pixels (masked ones 0) and their noise, ``k = 2 h + 1``.
    dx0, dy0 : ndarray, shape (n,)
        The source's offset from each stamp's central pixel, px (refined here by two
        Gaussian-weighted centroid steps, at most one pixel).
    fwhm_px : float

    Returns
    -------
    ndarray, shape (n, 5)
        Columns in the order of ``SHAPE_FEATURES``.
    """
    k = stamps.shape[1]
    h = k // 2
    grid = np.arange(-h, h + 1, dtype=np.float64)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    sigma = fwhm_px * _SIGMA_PER_FWHM
    cx, cy = np.asarray(dx0, dtype=np.float64).copy(), np.asarray(dy0, dtype=np.float64).copy()
    for _ in range(2):
        rx, ry = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
        weight = np.exp(-(rx**2 + ry**2) / (2 * sigma**2)) * np.maximum(stamps, 0.0)
        total = weight.sum(axis=(1, 2))
        safe = np.where(total > 0, total, 1.0)
        step_x = np.where(total > 0, (weight * rx).sum(axis=(1, 2)) / safe, 0.0)
        step_y = np.where(total > 0, (weight * ry).sum(axis=(1, 2)) / safe, 0.0)
        cx = np.clip(cx + step_x, dx0 - 1.0, dx0 + 1.0)
        cy = np.clip(cy + step_y, dy0 - 1.0, dy0 + 1.0)
    rx, ry = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    r2 = rx**2 + ry**2
    weighted = np.exp(-r2 / (2 * sigma**2)) * stamps
    total = weighted.sum(axis=(1, 2))
    safe = np.where(total > 0, total, np.nan)
    mxx = (weighted * rx**2).sum(axis=(1, 2)) / safe
    myy = (weighted * ry**2).sum(axis=(1, 2)) / safe
    mxy = (weighted * rx * ry).sum(axis=(1, 2)) / safe
    trace, det = mxx + myy, mxx * myy - mxy**2
    root = np.sqrt(np.maximum(trace**2 / 4 - det, 0.0))
    major, minor = trace / 2 + root, np.maximum(trace / 2 - root, 1e-6)
    # A Gaussian of sigma s measured with weight sigma w: moments s² w² / (s² + w²), here w²/2.
    size_ratio = np.sqrt(np.sqrt(np.maximum(det, 1e-12))) / (sigma / math.sqrt(2.0))
    elongation = np.sqrt(np.maximum(major, 1e-6) / minor)
    within = r2 <= fwhm_px**2
    near = r2 <= 2.0
    flux_fwhm = np.where(within, stamps, 0.0).sum(axis=(1, 2))
    peak = np.where(near, stamps, -np.inf).max(axis=(1, 2))
    sharpness = peak / np.where(flux_fwhm > 0, flux_fwhm, np.nan)
    wide = r2 <= (2.0 * fwhm_px) ** 2
    negative = np.where(wide & (stamps < -3.0 * noise), -stamps, 0.0).sum(axis=(1, 2))
    positive = np.where(wide & (stamps > 0), stamps, 0.0).sum(axis=(1, 2))
    negative_fraction = negative / np.where(positive > 0, positive, np.nan)
    core = np.where(r2 <= (0.5 * fwhm_px) ** 2, stamps, 0.0).sum(axis=(1, 2))
    outer = np.where(wide, stamps, 0.0).sum(axis=(1, 2))
    concentration = core / np.where(outer > 0, outer, np.nan)
    features = np.column_stack([size_ratio, elongation, sharpness, negative_fraction, concentration])
    # A stamp without positive light has no shape: give it values no point source has.
    return np.where(np.isfinite(features), features, np.array([0.0, 10.0, 1.0, 10.0, 1.0]))


def _stamps(
    difference: FloatArray, noise: FloatArray, mask: NDArray[np.bool_], x: FloatArray, y: FloatArray, h: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Stamps (masked pixels 0, noise filled with the median) around positions, and the offsets."""
    fill = float(np.nanmedian(noise[~mask])) if (~mask).any() else 1.0
    data = np.pad(np.where(mask, 0.0, difference), h, constant_values=0.0)
    sigma = np.pad(np.where(mask | ~np.isfinite(noise), fill, noise), h, constant_values=fill)
    ix, iy = np.rint(x).astype(np.intp), np.rint(y).astype(np.intp)
    offsets = np.arange(-h, h + 1)
    rows = (iy[:, None] + h + offsets[None, :])[:, :, None]
    cols = (ix[:, None] + h + offsets[None, :])[:, None, :]
    return data[rows, cols], sigma[rows, cols], x - ix, y - iy


def shape_features(
    difference: NDArray[np.floating],
    noise: NDArray[np.floating],
    mask: NDArray[np.bool_],
    x: NDArray[np.floating],
    y: NDArray[np.floating],
    fwhm_px: float,
) -> FloatArray:
    """The shape features (``SHAPE_FEATURES``) of sources at 0-based pixel positions of a difference."""
    bad = mask | ~np.isfinite(difference)
    xs, ys = np.atleast_1d(np.asarray(x, dtype=np.float64)), np.atleast_1d(np.asarray(y, dtype=np.float64))
    stamps, sigma, dx, dy = _stamps(
        np.asarray(difference, dtype=np.float64),
        np.asarray(noise, dtype=np.float64),
        bad,
        xs,
        ys,
        _half_width(fwhm_px),
    )
    return stamp_features(stamps, sigma, dx, dy, fwhm_px)


@dataclass(frozen=True, eq=False)
class ShapeClassifier:
    """An IsolationForest trained on one frame's simulated transients.

    ``score`` is the forest's decision function: positive for shapes like the training set's,
    negative for outliers (``CONTAMINATION`` of the training set is below 0).
    """

    forest: IsolationForest
    n_training: int
    fwhm_px: float

    def score(self, features: FloatArray) -> FloatArray:
        if len(features) == 0:
            return np.zeros(0)
        return np.asarray(self.forest.decision_function(features), dtype=np.float64)


def train_shape_classifier(
    difference: NDArray[np.floating],
    noise: NDArray[np.floating],
    mask: NDArray[np.bool_],
    psf: PsfModel,
    *,
    avoid_x: NDArray[np.floating],
    avoid_y: NDArray[np.floating],
    n_training: int = N_TRAINING,
    seed: int = 0,
) -> ShapeClassifier | None:
    """Train the classifier on the frame's PSF injected into its own difference image.

    Injection sites are drawn where a stamp has no masked pixel and no detection (``avoid_x/y``)
    within two stamp widths; the PSF is the model's at each site, at a random sub-pixel offset.
    Returns None when fewer than 50 sites are free (a frame that is almost all masked).
    """
    fwhm = float(psf.fwhm_px)
    h = _half_width(fwhm)
    diff = np.asarray(difference, dtype=np.float64)
    sigma_map = np.asarray(noise, dtype=np.float64)
    bad = mask | ~np.isfinite(diff) | ~np.isfinite(sigma_map)
    ny, nx = diff.shape
    if ny <= 4 * h or nx <= 4 * h:
        return None
    rng = np.random.default_rng(seed)
    tries = 3 * n_training  # most of a difference image is free: a few tries per site suffice
    x = rng.uniform(2 * h, nx - 2 * h - 1, tries)
    y = rng.uniform(2 * h, ny - 2 * h - 1, tries)
    ax, ay = np.asarray(avoid_x, dtype=np.float64), np.asarray(avoid_y, dtype=np.float64)
    free = np.ones(tries, dtype=bool)
    if ax.size:
        for start in range(0, tries, 512):
            part = slice(start, start + 512)
            distance = np.hypot(x[part, None] - ax[None, :], y[part, None] - ay[None, :]).min(axis=1)
            free[part] = distance > 4 * h
    x, y = x[free], y[free]
    stamps, sigma, dx, dy = _stamps(diff, sigma_map, bad, x, y, h)
    ix, iy = np.rint(x).astype(np.intp), np.rint(y).astype(np.intp)
    offsets = np.arange(-h, h + 1)
    masked = bad[
        np.clip(iy[:, None] + offsets, 0, ny - 1)[:, :, None],
        np.clip(ix[:, None] + offsets, 0, nx - 1)[:, None, :],
    ]
    clean = ~masked.any(axis=(1, 2))
    stamps, sigma, dx, dy = (
        stamps[clean][:n_training],
        sigma[clean][:n_training],
        dx[clean][:n_training],
        dy[clean][:n_training],
    )
    x, y = x[clean][:n_training], y[clean][:n_training]
    if len(stamps) < 50:
        return None
    snr = np.exp(rng.uniform(math.log(TRAINING_SNR[0]), math.log(TRAINING_SNR[1]), len(stamps)))
    grid = np.arange(-h, h + 1, dtype=np.float64)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    injected = stamps.copy()
    for i in range(len(stamps)):
        profile = psf.profile(xx - dx[i], yy - dy[i], float(x[i]), float(y[i]))
        profile = profile / profile.sum()
        local = float(np.median(sigma[i]))
        # optimal S/N of a known profile on uniform noise: F / (sigma sqrt(1 / sum P²))
        flux = snr[i] * local / math.sqrt(float(np.sum(profile**2)))
        injected[i] += flux * profile
    features = stamp_features(injected, sigma, dx, dy, fwhm)
    forest = IsolationForest(n_estimators=200, contamination=CONTAMINATION, random_state=seed)
    forest.fit(features)
    return ShapeClassifier(forest=forest, n_training=len(features), fwhm_px=fwhm)

"""Transient candidates on a difference image, with the reasons for rejecting artefacts.

Sources are found with sep on the difference image with its noise map (``threshold_sigma`` per
pixel after a matched Gaussian filter of the PSF's FWHM), then measured in a circular aperture of
one FWHM radius (S/N from the noise map). A candidate is kept when its S/N reaches ``min_snr`` and
none of these artefact tests fires (all that fire are recorded):

* ``"masked"``: more than a quarter of the pixels within one FWHM are masked (saturated,
  cosmic ray, bad column, off the template), or the peak pixel is;
* ``"dipole"``: the negative flux (pixels below -3 sigma) within two FWHM is at least half the
  positive flux: a misaligned or mis-matched star, not a new source;
* ``"sharp"``: the second-moment size is below half that of the PSF: a cosmic ray or hot pixel
  that escaped the mask;
* ``"elongated"``: axis ratio above 3 (satellite trails, bleeding edges);
* ``"shape_outlier"``: given the frame's PSF model, the shape classifier (:mod:`shape`, an
  IsolationForest trained on the frame's PSF injected into its own difference image) scores the
  candidate below its threshold; the score is kept either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep
from numpy.typing import NDArray

from cpcs.science.imaging.psf import PsfModel
from cpcs.science.subtraction.difference import SubtractionResult
from cpcs.science.subtraction.shape import SHAPE_FEATURES, shape_features, train_shape_classifier

__all__ = ["TransientCandidate", "find_candidates"]

_SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass(frozen=True)
class TransientCandidate:
    """A source on the difference image.

    Attributes
    ----------
    x, y : float
        Position, 0-based px (sep's windowless barycentre).
    flux, flux_err : float
        Flux in a one-FWHM aperture, science ADU (``/ flux_scale``), not aperture-corrected.
    snr : float
    size_px : float
        ``sqrt(a b)`` of the second moments, px.
    axis_ratio : float
        ``a / b``.
    negative_fraction : float
        Negative over positive flux within two FWHM.
    reasons : tuple of str
        Artefact tests that fired (empty: a real candidate).
    accepted : bool
        ``snr >= min_snr`` and no reason.
    shape_score : float or None
        The shape classifier's score (positive: like the frame's point sources; negative: an
        outlier); None when no classifier was trained (no PSF given, or too few free pixels).
    shape_outlier : bool or None
        ``shape_score < 0`` (the ``"shape_outlier"`` reason).
    shape : dict or None
        The classifier's features (``SHAPE_FEATURES``), rounded.
    """

    x: float
    y: float
    flux: float
    flux_err: float
    snr: float
    size_px: float
    axis_ratio: float
    negative_fraction: float
    reasons: tuple[str, ...]
    accepted: bool
    shape_score: float | None = None
    shape_outlier: bool | None = None
    shape: dict[str, float] | None = None


def _gaussian_filter(fwhm_px: float) -> NDArray[np.float64]:
    sigma = fwhm_px * _SIGMA_PER_FWHM
    half = max(1, math.ceil(2.0 * sigma))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    kernel = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    return np.asarray(kernel / kernel.sum())


def find_candidates(
    subtraction: SubtractionResult,
    fwhm_px: float,
    *,
    threshold_sigma: float = 3.0,
    min_snr: float = 5.0,
    minarea: int = 5,
    psf: PsfModel | None = None,
) -> tuple[TransientCandidate, ...]:
    """Detect and vet the sources of a difference image.

    Parameters
    ----------
    subtraction : SubtractionResult
    fwhm_px : float
        PSF FWHM of the difference image, px.
    threshold_sigma : float
        Detection threshold per (filtered) pixel, in units of the noise map.
    min_snr : float
        Smallest aperture S/N of an accepted candidate.
    minarea : int
        Smallest number of pixels above the threshold.
    psf : PsfModel, optional
        The difference image's PSF: trains the shape classifier (without it, no shape scores).

    Returns
    -------
    tuple of TransientCandidate
        Every detection, accepted or not, brightest S/N first.
    """
    mask = subtraction.mask | ~np.isfinite(subtraction.difference) | ~np.isfinite(subtraction.noise)
    noise_fill = float(np.nanmedian(subtraction.noise))
    data = np.ascontiguousarray(np.where(mask, 0.0, subtraction.difference), dtype=np.float64)
    noise = np.ascontiguousarray(np.where(mask, noise_fill, subtraction.noise), dtype=np.float64)
    objects = sep.extract(
        data,
        threshold_sigma,
        err=noise,
        mask=mask,
        minarea=minarea,
        filter_kernel=_gaussian_filter(fwhm_px),
        deblend_cont=0.01,
    )
    if len(objects) == 0:
        return ()
    x, y = np.asarray(objects["x"], dtype=np.float64), np.asarray(objects["y"], dtype=np.float64)
    flux, flux_err, _ = sep.sum_circle(data, x, y, fwhm_px, err=noise)
    masked_near, _, _ = sep.sum_circle(mask.astype(np.float64), x, y, fwhm_px)
    negative = np.ascontiguousarray(np.where(data < -3.0 * noise, -data, 0.0))
    positive = np.ascontiguousarray(np.where(data > 0.0, data, 0.0))
    neg_flux, _, _ = sep.sum_circle(negative, x, y, 2.0 * fwhm_px)
    pos_flux, _, _ = sep.sum_circle(positive, x, y, 2.0 * fwhm_px)
    a, b = np.asarray(objects["a"], dtype=np.float64), np.asarray(objects["b"], dtype=np.float64)
    size = np.sqrt(a * b)
    psf_sigma = fwhm_px * _SIGMA_PER_FWHM
    scale = subtraction.flux_scale
    scores: list[float | None] = [None] * len(objects)
    features = np.zeros((len(objects), len(SHAPE_FEATURES)))
    if psf is not None:
        classifier = train_shape_classifier(data, noise, mask, psf, avoid_x=x, avoid_y=y)
        if classifier is not None:
            features = shape_features(data, noise, mask, x, y, fwhm_px)
            scores = [float(s) for s in classifier.score(features)]
    out = []
    for i in range(len(objects)):
        reasons = []
        peak_masked = bool(mask[int(objects["ycpeak"][i]), int(objects["xcpeak"][i])])
        if peak_masked or masked_near[i] > 0.25 * math.pi * fwhm_px * fwhm_px:
            reasons.append("masked")
        negative_fraction = float(neg_flux[i] / pos_flux[i]) if pos_flux[i] > 0 else math.inf
        if negative_fraction >= 0.5:
            reasons.append("dipole")
        if size[i] < 0.5 * psf_sigma:
            reasons.append("sharp")
        ratio = float(a[i] / b[i]) if b[i] > 0 else math.inf
        if ratio > 3.0:
            reasons.append("elongated")
        score = scores[i]
        if score is not None and score < 0:
            reasons.append("shape_outlier")
        snr = float(flux[i] / flux_err[i]) if flux_err[i] > 0 else float("nan")
        out.append(
            TransientCandidate(
                x=float(x[i]),
                y=float(y[i]),
                flux=float(flux[i]) / scale,
                flux_err=float(flux_err[i]) / scale,
                snr=snr,
                size_px=float(size[i]),
                axis_ratio=ratio,
                negative_fraction=negative_fraction,
                reasons=tuple(reasons),
                accepted=bool(np.isfinite(snr) and snr >= min_snr and not reasons),
                shape_score=None if score is None else round(score, 4),
                shape_outlier=None if score is None else score < 0,
                shape=None
                if score is None
                else {name: round(float(v), 4) for name, v in zip(SHAPE_FEATURES, features[i], strict=True)},
            )
        )
    out.sort(key=lambda c: -c.snr if math.isfinite(c.snr) else math.inf)
    return tuple(out)

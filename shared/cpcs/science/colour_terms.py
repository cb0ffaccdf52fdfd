"""An instrument's colour term learned from its calibrated frames, to be used as a prior.

A colour term is a property of the instrument, its filter and the reference band, not of one night:
fitted afresh on the 20-30 reference stars of a small field, it adds noise that the data do not
need (a light curve of a constant star scatters by the colour-term error times the spread of the
comparison stars' colours, frame after frame). :func:`learn_colour_term` combines the colour terms
fitted on earlier frames of one (instrument, filter, reference survey/band) into one value with its
uncertainty:

* a weighted mean with weights ``1 / (colour_term_err**2 + spread**2)``, where ``spread`` is the
  frame-to-frame scatter beyond the quoted errors (airmass, season, a filter change), solved for so
  that the reduced chi-square of the kept frames is 1, as the intrinsic scatter of a zero-point fit;
* robust: frames further than ``clip_sigma`` robust sigmas from the mean (a wrong band, a bad frame)
  are left out, iteratively;
* its ``prior`` for a new frame is ``(value, hypot(value_err, spread))``: what the next frame's colour
  term is expected to be. :func:`cpcs.science.zeropoint.fit_zero_point` takes it as
  ``colour_term_prior``; a frame whose own stars constrain the colour term well moves away from it,
  one with few stars or a narrow colour range keeps it.

Pure: arrays in, a frozen dataclass out; storing, versioning and updating it as frames arrive is the
calibrate service's business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cpcs.errors import CalibrationFailed
from cpcs.science._helpers import MAD_TO_SIGMA, as_float_array

__all__ = ["MIN_FRAMES", "LearnedColourTerm", "learn_colour_term", "weighted_mean_with_spread"]

#: Fewest frames with a fitted colour term from which one is learned.
MIN_FRAMES = 5


@dataclass(frozen=True)
class LearnedColourTerm:
    """A colour term learned from earlier frames.

    Attributes
    ----------
    value, value_err : float
        The weighted mean colour term (mag per mag of colour) and its error.
    spread : float
        Frame-to-frame scatter of the colour term beyond the quoted errors (0 when they explain it).
    n_frames : int
        Frames given (with finite values and positive errors).
    n_used : int
        Frames kept after clipping.
    """

    value: float
    value_err: float
    spread: float
    n_frames: int
    n_used: int

    @property
    def prior(self) -> tuple[float, float]:
        """``(mean, sigma)`` of the colour term expected on a new frame, for ``fit_zero_point``."""
        return self.value, math.hypot(self.value_err, self.spread)


def weighted_mean_with_spread(values: np.ndarray, variance: np.ndarray) -> tuple[float, float, float]:
    """Weighted mean, its error and the extra spread making the reduced chi-square 1 (also used by
    :mod:`cpcs.science.trends` for the nightly extinction coefficients)."""
    spread2 = 0.0
    for _ in range(50):
        weight = 1.0 / (variance + spread2)
        mean = float(np.sum(weight * values) / np.sum(weight))
        residual2 = (values - mean) ** 2
        dof = values.size - 1
        if dof <= 0 or float(np.sum(residual2 / variance)) <= dof:
            updated = 0.0
        else:
            terms = residual2 * weight
            updated = max(spread2 + (float(terms.sum()) - dof) / float(terms @ weight), 0.0)
        if abs(updated - spread2) <= 1e-12 + 1e-4 * updated:
            spread2 = updated
            break
        spread2 = updated
    weight = 1.0 / (variance + spread2)
    mean = float(np.sum(weight * values) / np.sum(weight))
    return mean, float(1.0 / math.sqrt(float(np.sum(weight)))), math.sqrt(spread2)


def learn_colour_term(
    colour_terms: ArrayLike,
    colour_term_errs: ArrayLike,
    *,
    clip_sigma: float = 4.0,
    min_frames: int = MIN_FRAMES,
) -> LearnedColourTerm:
    """Learn one colour term from the colour terms fitted on earlier frames.

    Parameters
    ----------
    colour_terms, colour_term_errs : array_like
        The colour terms fitted on each frame (of one instrument, filter and reference band) and
        their errors. Frames with a NaN value or a non-positive error are ignored.
    clip_sigma : float, optional
        Frames further than this many robust sigmas (of the normalised residuals) from the mean
        are left out.
    min_frames : int, optional
        Fewest usable frames.

    Returns
    -------
    LearnedColourTerm

    Raises
    ------
    CalibrationFailed
        ``too_few_frames`` with fewer than ``min_frames`` usable frames.
    """
    values = as_float_array(colour_terms, "colour_terms")
    errors = as_float_array(colour_term_errs, "colour_term_errs", size=values.size)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(values) & np.isfinite(errors) & (errors > 0.0)
    values, variance = values[usable], errors[usable] ** 2
    if values.size < min_frames:
        raise CalibrationFailed(
            f"only {values.size} frames with a fitted colour term; at least {min_frames} are needed",
            code="too_few_frames",
        )
    # Clip about the median with the spread of the frames kept so far (none at first), so that bad
    # frames cannot hide in a spread they inflate themselves.
    kept = np.ones(values.size, dtype=bool)
    spread = 0.0
    for _ in range(10):
        normalised = (values - float(np.median(values[kept]))) / np.sqrt(variance + spread**2)
        centre = float(np.median(normalised[kept]))
        scale = MAD_TO_SIGMA * float(np.median(np.abs(normalised[kept] - centre)))
        new_kept = np.abs(normalised - centre) <= clip_sigma * max(scale, 1.0)
        if np.count_nonzero(new_kept) < min_frames:
            break
        _, _, spread = weighted_mean_with_spread(values[new_kept], variance[new_kept])
        if np.array_equal(new_kept, kept):
            break
        kept = new_kept
    mean, mean_err, spread = weighted_mean_with_spread(values[kept], variance[kept])
    return LearnedColourTerm(
        value=mean,
        value_err=mean_err,
        spread=spread,
        n_frames=int(values.size),
        n_used=int(np.count_nonzero(kept)),
    )

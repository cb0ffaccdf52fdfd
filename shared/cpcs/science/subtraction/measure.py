"""The subtraction step of an image's reduction: template in, difference and the target on it out.

Pure: the science frame and a template (pixels and WCS each) in, a frozen result out. Both frames
get the same treatment as a reduction gives them (background, pixel mask, PSF model, a noise map
of sky plus the sources' own photon noise); the template is then aligned, PSF-matched and
subtracted (:mod:`align`, :mod:`difference`), the target measured at its position with the PSF
of the difference image, and candidates searched for on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray

from cpcs.science.imaging import PsfError, build_psf, detect_sources, estimate_background, pixel_mask_bits
from cpcs.science.imaging.forced import ForcedMeasurement
from cpcs.science.imaging.psf import PsfModel
from cpcs.science.subtraction.align import AlignedTemplate, align_template
from cpcs.science.subtraction.candidates import TransientCandidate, find_candidates
from cpcs.science.subtraction.difference import SubtractionResult, subtract_template
from cpcs.science.subtraction.photometry import difference_photometry

T = TypeVar("T")
#: The least fraction of the science frame the aligned template must cover.
MIN_COVERAGE = 0.25


class SubtractionImpossible(ValueError):
    """The pair cannot be subtracted (too little overlap, no stars on one of them); says why."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, eq=False)
class PreparedFrame:
    """A frame ready for subtraction: its pixels, noise map (ADU), bad-pixel mask and PSF model."""

    data: NDArray[np.float32]
    noise: NDArray[np.float64]
    mask: NDArray[np.bool_]
    psf: PsfModel


@dataclass(frozen=True, eq=False)
class DifferenceMeasurement:
    subtraction: SubtractionResult
    target: ForcedMeasurement  # instrumental, the same units as the direct forced measurement
    candidates: tuple[TransientCandidate, ...]
    coverage: float
    science_fwhm_px: float
    template_fwhm_px: float
    timings_ms: dict[str, float] = field(default_factory=dict)


def prepare_frame(
    data: NDArray[np.floating], *, gain_e_per_adu: float | None, saturation_adu: float | None
) -> PreparedFrame:
    """Background, mask, PSF and noise map of one frame (raises ``SubtractionImpossible``)."""
    image = np.asarray(data, dtype=np.float32)
    background = estimate_background(image)
    bits = pixel_mask_bits(image, saturation_adu=saturation_adu, background=background)
    detections = detect_sources(image, background, bits, saturation_adu=saturation_adu)
    try:
        psf = build_psf(image, background, bits, detections, gain_e_per_adu=gain_e_per_adu)
    except PsfError:
        raise SubtractionImpossible(
            f"only {len(detections.table)} sources, too few to model the PSF", code="too_few_stars"
        ) from None
    sky_var = background.rms.astype(np.float64) ** 2
    source_var = np.maximum(image - background.level, 0.0) / gain_e_per_adu if gain_e_per_adu else 0.0
    return PreparedFrame(image, np.sqrt(sky_var + source_var), ~np.isfinite(image) | (bits > 0), psf)


def measure_difference(
    science: NDArray[np.floating],
    science_wcs: WCS,
    template: NDArray[np.floating],
    template_wcs: WCS,
    *,
    target_x: float,
    target_y: float,
    gain_e_per_adu: float | None,
    saturation_adu: float | None,
    template_gain_e_per_adu: float | None,
    template_saturation_adu: float | None,
    exptime_s: float | None,
) -> DifferenceMeasurement:
    """Subtract the template from the science frame and measure the target on the difference."""
    timings: dict[str, float] = {}

    def timed(name: str, step: Callable[[], T]) -> T:
        started = time.perf_counter()
        value = step()
        timings[name] = round(1e3 * (time.perf_counter() - started), 1)
        return value

    sci = timed(
        "prepare_science",
        lambda: prepare_frame(science, gain_e_per_adu=gain_e_per_adu, saturation_adu=saturation_adu),
    )
    try:
        tpl = timed(
            "prepare_template",
            lambda: prepare_frame(
                template, gain_e_per_adu=template_gain_e_per_adu, saturation_adu=template_saturation_adu
            ),
        )
    except SubtractionImpossible as error:
        raise SubtractionImpossible(f"template: {error}", code=error.code) from None
    aligned = timed(
        "align",
        lambda: align_template(
            tpl.data,
            template_wcs.celestial,
            science_wcs.celestial,
            sci.data.shape,
            template_noise=tpl.noise,
            template_mask=tpl.mask,
        ),
    )
    if aligned.coverage < MIN_COVERAGE:
        raise SubtractionImpossible(
            f"the template covers {aligned.coverage:.0%} of the frame (at least {MIN_COVERAGE:.0%} needed)",
            code="template_overlap_too_small",
        )
    try:
        result = _subtract(timed, sci, aligned, target_x, target_y, tpl.psf.fwhm_px)
    except ValueError as error:  # too few usable pixels
        raise SubtractionImpossible(str(error), code="subtraction_failed") from None
    # The difference has the PSF of the frame that was not convolved: the science frame's, or (when
    # the science frame was the sharper and was convolved) the template's, measured after alignment.
    psf = (
        sci.psf
        if result.psf_of == "science"
        else _aligned_psf(aligned.data, sci.psf, template_gain_e_per_adu)
    )
    target = timed(
        "target",
        lambda: difference_photometry(
            result, psf, target_x, target_y, gain_e_per_adu=gain_e_per_adu, exptime_s=exptime_s
        ),
    )
    candidates = timed("candidates", lambda: tuple(find_candidates(result, fwhm_px=psf.fwhm_px, psf=psf)))
    return DifferenceMeasurement(
        subtraction=result,
        target=target,
        candidates=candidates,
        coverage=float(aligned.coverage),
        science_fwhm_px=float(sci.psf.fwhm_px),
        template_fwhm_px=float(tpl.psf.fwhm_px),
        timings_ms=timings,
    )


def _subtract(
    timed: Callable[[str, Callable[[], SubtractionResult]], SubtractionResult],
    sci: PreparedFrame,
    aligned: AlignedTemplate,
    target_x: float,
    target_y: float,
    template_fwhm_px: float,
) -> SubtractionResult:
    return timed(
        "subtract",
        lambda: subtract_template(
            sci.data,
            sci.noise,
            aligned,
            science_fwhm_px=sci.psf.fwhm_px,
            template_fwhm_px=template_fwhm_px,
            science_mask=sci.mask,
            exclude_xy=np.array([[target_x, target_y]]),
        ),
    )


def _aligned_psf(aligned: NDArray[np.floating], fallback: PsfModel, gain: float | None) -> PsfModel:
    """The PSF of the aligned template on the science grid (the science PSF if it cannot be built)."""
    try:
        return prepare_frame(np.nan_to_num(aligned, nan=0.0), gain_e_per_adu=gain, saturation_adu=None).psf
    except SubtractionImpossible:
        return fallback

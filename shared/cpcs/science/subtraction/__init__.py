"""Image subtraction: align a template on the science frame, match the PSFs, subtract, measure.

Order of use::

    aligned = align_template(template, template_wcs, science_wcs, science.shape,
                             template_noise=..., template_mask=...)
    sub = subtract_template(science, science_noise, aligned, science_mask=...,
                            science_fwhm_px=..., template_fwhm_px=...)
    target = difference_photometry(sub, psf, x, y, gain_e_per_adu=gain)
    candidates = find_candidates(sub, fwhm_px=psf.fwhm_px)
"""

from cpcs.science.subtraction.align import AlignedTemplate, align_template
from cpcs.science.subtraction.candidates import TransientCandidate, find_candidates
from cpcs.science.subtraction.difference import SubtractionResult, subtract_template
from cpcs.science.subtraction.photometry import difference_photometry

__all__ = [
    "AlignedTemplate",
    "SubtractionResult",
    "TransientCandidate",
    "align_template",
    "difference_photometry",
    "find_candidates",
    "subtract_template",
]

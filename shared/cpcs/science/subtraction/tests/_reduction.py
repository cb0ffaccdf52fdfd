"""Reduction of simulated frames for the subtraction tests (background, mask, PSF, noise)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cpcs.science.imaging import (
    ForcedMeasurement,
    build_psf,
    detect_sources,
    estimate_background,
    forced_photometry,
    pixel_mask_bits,
)
from cpcs.science.imaging.psf import PsfModel
from cpcs.simulation.image_simulator import SimulatedImage


@dataclass(frozen=True, eq=False)
class Reduced:
    psf: PsfModel
    noise: NDArray[np.float64]
    mask: NDArray[np.bool_]
    direct: list[ForcedMeasurement]
    star_offset_mag: float  # median measured - true inst. mag of bright stars: what the zero point absorbs


def reduce_frame(image: SimulatedImage, xs: NDArray[np.float64], ys: NDArray[np.float64]) -> Reduced:
    gain = image.truth.gain_e_per_adu
    bkg = estimate_background(image.data)
    bits = pixel_mask_bits(image.data, saturation_adu=image.truth.saturation_adu, background=bkg)
    det = detect_sources(image.data, bkg, bits)
    psf = build_psf(image.data, bkg, bits, det, gain_e_per_adu=gain)
    noise = np.sqrt(bkg.rms.astype(np.float64) ** 2 + np.maximum(image.data - bkg.level, 0.0) / gain)
    direct = [
        forced_photometry(
            image.data,
            bkg,
            None,
            psf,
            x,
            y,
            gain_e_per_adu=gain,
            neighbours=det,
            mask=bits,
            segmap=det.segmap,
        )
        for x, y in zip(xs, ys, strict=True)
    ]
    stars = image.stars[
        image.stars["in_frame"] & (image.stars["snr_optimal"] > 100) & ~image.stars["saturated"]
    ]
    to_adu = 2.5 * math.log10(gain)
    offsets = [
        forced_photometry(
            image.data, bkg, None, psf, r["x"], r["y"], gain_e_per_adu=gain, neighbours=det, mask=bits
        ).mag_inst
        + to_adu
        - r["inst_mag"]
        for r in stars[:40]
    ]
    return Reduced(psf, noise, bits > 0, direct, float(np.nanmedian(offsets)))

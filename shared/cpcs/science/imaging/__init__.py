"""Measurement science of uploaded CCD images: pure functions, arrays in, frozen results out.

Order of use (what ``reduce`` does)::

    hdr = standardise_header(header, instrument=defaults)
    bkg = estimate_background(data)
    bits = pixel_mask_bits(data, saturation_adu=..., background=bkg)     # or bad_pixel_mask
    det = detect_sources(data, bkg, bits)
    gain = choose_noise_model(hdr, bkg).gain_e_per_adu                   # None: background-only noise
    psf = build_psf(data, bkg, bits, det, gain_e_per_adu=gain)
    src = measure_sources(data, bkg, bits, det, gain_e_per_adu=gain, exptime_s=hdr.exptime_s)
    tgt = forced_photometry(data, bkg, None, psf, x, y, gain_e_per_adu=gain, exptime_s=..., neighbours=det,
                            mask=bits, segmap=det.segmap)
    q = image_quality(bkg, det, psf, gain_e_per_adu=gain, exptime_s=..., pixel_scale_arcsec=...)

Instrumental magnitudes everywhere are ``-2.5 log10(electrons / s)`` (per exposure without an
exposure time), on one "total" flux scale for aperture and PSF fluxes.
"""

from cpcs.science.imaging.background import (
    ImageBackground,
    MaskBit,
    bad_pixel_mask,
    estimate_background,
    pixel_mask_bits,
)
from cpcs.science.imaging.detection import Detections, detect_sources
from cpcs.science.imaging.forced import ForcedMeasurement, forced_photometry, limiting_magnitude_5sigma
from cpcs.science.imaging.header import (
    ImageHeader,
    InstrumentDefaults,
    estimate_saturation_level,
    standardise_header,
)
from cpcs.science.imaging.noise import NoiseModel, choose_noise_model
from cpcs.science.imaging.photometry import (
    SourceFlag,
    SourceMeasurements,
    instrumental_magnitude,
    measure_sources,
)
from cpcs.science.imaging.psf import PsfError, PsfModel, build_psf, psf_photometry
from cpcs.science.imaging.quality import ImageQuality, image_quality

__all__ = [
    "Detections",
    "ForcedMeasurement",
    "ImageBackground",
    "ImageHeader",
    "ImageQuality",
    "InstrumentDefaults",
    "MaskBit",
    "NoiseModel",
    "PsfError",
    "PsfModel",
    "SourceFlag",
    "SourceMeasurements",
    "bad_pixel_mask",
    "build_psf",
    "choose_noise_model",
    "detect_sources",
    "estimate_background",
    "estimate_saturation_level",
    "forced_photometry",
    "image_quality",
    "instrumental_magnitude",
    "limiting_magnitude_5sigma",
    "measure_sources",
    "pixel_mask_bits",
    "psf_photometry",
    "standardise_header",
]

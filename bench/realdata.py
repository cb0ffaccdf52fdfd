"""Real frames through the image path (``python -m bench.realdata``), figures in bench/results/realdata.json.

The frames are ``../shared/realdata`` next to the repository (read in place):

* ``sdss_m2``: five SDSS frames (u, g, r, i, z) in nanomaggies, so that ``mag = 22.5 - 2.5 log10(flux)``
  holds by construction. Each frame goes through :func:`~cpcs.science.image_reduction.reduce_image`
  with the target at the frame's centre. No Gaia cone of the field is on this machine, so the
  astrometric reference is the detections of the *neighbouring band's* frame placed on the sky with
  that frame's own SDSS WCS (a separate exposure, 72 s earlier or later through another filter, with
  its own astrometric calibration): the astrometric rms is the agreement of two SDSS frames' stars,
  an upper limit of the solution's error. Figures: the noise model chosen, S/N of the field's stars
  against magnitude and the magnitude where it falls to 5 (against SDSS's published depths), the 5σ
  limit, the zero point of the aperture magnitudes against the nanomaggy scale (22.5 minus the light
  outside the package's total-flux circle, measured by the stars' curve of growth), astrometry and
  time per frame.
* ``panoptes``: a DSLR frame with an astrometry.net WCS (``solved``) and the same field without one
  (``unsolved``). The reference is the solved frame's own detections through its WCS (for ``solved``
  a consistency check only; for ``unsolved`` a real blind solve, scored by the offset of its solution
  from ``solved``'s WCS). Whatever the pipeline does with them today is recorded, failures included.

Time is wall time of the reduction in this process; for a ratio that holds across machines it is
also given against bare ``sep.Background`` + ``sep.extract`` on the same frame.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import sep
from astropy.wcs import WCS, FITSFixedWarning

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.errors import CalibrationFailed
from cpcs.offline import configure_astropy_offline
from cpcs.science.image_reduction import ImageReductionResult, ReductionFailed, reduce_image
from cpcs.science.imaging.background import estimate_background
from cpcs.science.imaging.header import ImageHeader, standardise_header
from cpcs.science.imaging.noise import choose_noise_model
from cpcs.science.imaging.photometry import MAG_ERR_PER_INVERSE_SNR
from cpcs.testing.realdata import REALDATA_DIR, detections_as_reference, read_image

REALDATA = REALDATA_DIR
RESULTS = Path(__file__).with_name("results") / "realdata.json"
SDSS_FRAME = "sdss_m2/frame-{band}-002583-2-0136.fits.bz2"
NANOMAGGY_ZP = 22.5
#: SDSS single-epoch point-source depths: 5-sigma, and 95 % completeness (the README's known answers).
SDSS_5SIGMA_DEPTH = {"u": 22.15, "g": 23.13, "r": 22.70, "i": 22.20, "z": 20.71}
SDSS_95_COMPLETENESS = {"u": 22.0, "g": 22.2, "r": 22.2, "i": 21.3, "z": 20.5}
#: The astrometric reference of each SDSS band: the frame of the neighbouring band.
SDSS_REFERENCE_BAND = {"u": "g", "g": "r", "r": "g", "i": "r", "z": "i"}
#: The cluster's core fills x < ~600 px of the SDSS frames: field stars are beyond.
SDSS_FIELD_X_MIN = 700.0
#: An alert on the PANOPTES crops (a blank spot near their centre): the frames' own target,
#: KIC 8462852 at the mount position, lies ~2 degrees off these 2-degree crops.
PANOPTES_TARGET = (303.0, 46.1)
SNR_BINS = (17.0, 18.0, 19.0, 20.0, 21.0, 22.0)


def sep_baseline_ms(data: np.ndarray) -> float:
    """Bare sep background + extraction of the same frame, ms (the unit of the time ratio)."""
    started = time.perf_counter()
    array = np.ascontiguousarray(data, dtype=np.float32)
    background = sep.Background(array)
    sep.set_extract_pixstack(max(3_000_000, array.size // 4))
    sep.extract(array - background.back(), 3.0, err=background.rms(), minarea=5)
    return 1e3 * (time.perf_counter() - started)


def _reduce(
    data: np.ndarray, header: ImageHeader, reference: ReferenceCatalogue, target: tuple[float, float]
) -> tuple[ImageReductionResult | None, dict[str, Any], float]:
    started = time.perf_counter()
    try:
        result = reduce_image(data, header, reference, target_ra_deg=target[0], target_dec_deg=target[1])
        failure: dict[str, Any] = {}
    except ReductionFailed as failed:
        result = None
        failure = {
            "error_code": failed.error.code,
            "error": failed.error.message,
            "n_detections": None if failed.partial.detections is None else len(failed.partial.detections),
            "timings_ms": failed.partial.timings_ms,
        }
    except CalibrationFailed as error:
        result, failure = None, {"error_code": error.code, "error": error.message}
    return result, failure, round(1e3 * (time.perf_counter() - started), 1)


def _nanomaggy_offset(result: ImageReductionResult) -> float:
    """Add to an instrumental magnitude to get the frame's own (nanomaggy) magnitude."""
    exptime = result.header.exptime_s or 1.0
    return NANOMAGGY_ZP + 2.5 * math.log10((result.noise.gain_e_per_adu or 1.0) / exptime)


def _snr_figures(result: ImageReductionResult, offset: float) -> dict[str, Any]:
    sources = result.sources
    mag = np.asarray(sources["MAG_APER"], dtype=float) + offset
    snr = MAG_ERR_PER_INVERSE_SNR / np.asarray(sources["MAGERR_APER"], dtype=float)
    field = (np.asarray(sources["FLAGS"]) == 0) & (np.asarray(sources["X"]) > SDSS_FIELD_X_MIN)
    by_mag: dict[str, Any] = {}
    for centre in SNR_BINS:
        chosen = field & (np.abs(mag - centre) < 0.25)
        by_mag[f"{centre:g}"] = {
            "n": int(chosen.sum()),
            "median_snr": round(float(np.median(snr[chosen])), 1) if chosen.any() else None,
        }
    # where the median S/N of the field's stars falls to 5 (0.1 mag bins)
    below = []
    for lo in np.arange(18.0, 25.0, 0.1):
        in_bin = field & (mag >= lo) & (mag < lo + 0.1)
        if in_bin.sum() >= 5 and np.median(snr[in_bin]) < 5.0:
            below.append(lo + 0.05)
    return {
        "snr_by_mag": by_mag,
        "mag_at_snr5_of_stars": round(float(below[0]), 2) if below else None,
        "n_fit_usable": int((field & (snr > MAG_ERR_PER_INVERSE_SNR / 0.1)).sum()),
    }


def _zero_point(
    data: np.ndarray, result: ImageReductionResult, offset: float
) -> dict[str, float | int | None]:
    """The aperture magnitudes' zero point against the nanomaggy scale, and the aperture loss.

    Bright isolated field stars: ``22.5 - 2.5 log10(F)`` with F in a 6-FWHM aperture (local sky
    from a far annulus) is their magnitude; the loss is the light between the package's total-flux
    circle (2.5 FWHM) and 6 FWHM, from the same stars.
    """
    sources = result.sources
    fwhm = result.quality.fwhm_px
    x, y = np.asarray(sources["X"], dtype=float), np.asarray(sources["Y"], dtype=float)
    snr = MAG_ERR_PER_INVERSE_SNR / np.asarray(sources["MAGERR_APER"], dtype=float)
    chosen = (np.asarray(sources["FLAGS"]) == 0) & (x > SDSS_FIELD_X_MIN) & (snr > 100) & (snr < 2000)
    wide = 6.0 * fwhm
    for k in np.flatnonzero(chosen):
        chosen[k] = np.count_nonzero(np.hypot(x - x[k], y - y[k]) < wide + 4.0 * fwhm) == 1
    if chosen.sum() < 5:
        return {"n_stars": int(chosen.sum()), "zp": None, "aperture_loss_mag": None}
    image = np.ascontiguousarray(data, dtype=np.float32)
    image = image - sep.Background(image).back()
    annulus = (wide + 3.0 * fwhm, wide + 5.0 * fwhm)
    big, _, _ = sep.sum_circle(image, x[chosen], y[chosen], wide, bkgann=annulus, subpix=5)
    total, _, _ = sep.sum_circle(image, x[chosen], y[chosen], 2.5 * fwhm, bkgann=annulus, subpix=5)
    ok = (big > 0) & (total > 0)
    mag_inst = np.asarray(sources["MAG_APER"], dtype=float)[chosen][ok] + offset - NANOMAGGY_ZP
    zp = float(np.median(NANOMAGGY_ZP - 2.5 * np.log10(big[ok]) - mag_inst))
    loss = float(np.median(2.5 * np.log10(big[ok] / total[ok])))
    return {
        "n_stars": int(ok.sum()),
        "zp": round(zp, 4),
        "aperture_loss_mag": round(loss, 4),
        "zp_minus_expected": round(zp - (NANOMAGGY_ZP - loss), 4),
    }


def _common(result: ImageReductionResult, offset: float) -> dict[str, Any]:
    quality = result.quality
    return {
        "noise_model": result.noise.kind,
        "noise_gain": result.noise.gain_e_per_adu,
        "noise_note": result.noise.note,
        "n_sources": quality.n_sources,
        "fwhm_px": round(quality.fwhm_px, 3),
        "fwhm_arcsec": None if quality.fwhm_arcsec is None else round(quality.fwhm_arcsec, 3),
        "limit_5sigma_centre": round(quality.limit_mag_inst_5sigma + offset, 3),
        "limit_5sigma_target": round(result.forced.limit_mag_inst_5sigma + offset, 3),
        "astrometry": {
            "method": result.astrometry.method,
            "rms_arcsec": round(result.astrometry.rms_arcsec, 4),
            "n_matched": result.astrometry.n_matched,
        },
        "timings_ms": result.timings_ms,
    }


def run_sdss(band: str) -> dict[str, Any]:
    path = REALDATA / SDSS_FRAME.format(band=band)
    started = time.perf_counter()
    data, cards = read_image(path)
    read_ms = round(1e3 * (time.perf_counter() - started), 1)
    header = standardise_header(cards)
    reference_band = SDSS_REFERENCE_BAND[band]
    reference = detections_as_reference(
        REALDATA / SDSS_FRAME.format(band=reference_band),
        f"SDSS {reference_band} frame",
        zero_point=NANOMAGGY_ZP,
    )
    assert header.wcs is not None
    ny, nx = data.shape
    centre = header.wcs.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
    result, failure, reduce_ms = _reduce(
        data, header, reference, (float(centre.ra.deg), float(centre.dec.deg))
    )
    record: dict[str, Any] = {
        "frame": f"sdss_m2 {band}",
        "astrometric_reference": f"{reference_band}-band frame's detections through its SDSS WCS",
        "read_ms": read_ms,
        "reduce_ms": reduce_ms,
        "sep_baseline_ms": round(sep_baseline_ms(data), 1),
        "sdss_5sigma_depth": SDSS_5SIGMA_DEPTH[band],
        "sdss_95_completeness": SDSS_95_COMPLETENESS[band],
        "date_source": header.date_source,
        "mjd_mid": header.mjd_mid,
    }
    if result is None:
        return record | failure
    offset = _nanomaggy_offset(result)
    return (
        record
        | _common(result, offset)
        | _snr_figures(result, offset)
        | {"zero_point": _zero_point(data, result, offset)}
    )


def run_panoptes(name: str, solved: ReferenceCatalogue, solved_wcs: WCS) -> dict[str, Any]:
    path = REALDATA / "panoptes" / name
    started = time.perf_counter()
    data, cards = read_image(path)
    read_ms = round(1e3 * (time.perf_counter() - started), 1)
    header = standardise_header(cards)
    result, failure, reduce_ms = _reduce(data, header, solved, PANOPTES_TARGET)
    noise = choose_noise_model(header, estimate_background(data))  # recorded even when reduce fails
    record: dict[str, Any] = {
        "frame": f"panoptes {name}",
        "noise_model": noise.kind,
        "noise_gain": noise.gain_e_per_adu,
        "noise_note": noise.note,
        "astrometric_reference": "solved.fits' detections through its astrometry.net WCS",
        "read_ms": read_ms,
        "reduce_ms": reduce_ms,
        "sep_baseline_ms": round(sep_baseline_ms(data), 1),
        "header_wcs": header.wcs is not None,
    }
    if result is None:
        return record | failure
    ny, nx = data.shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 7), np.linspace(0, ny - 1, 7))
    offsets = result.astrometry.wcs.pixel_to_world(gx, gy).separation(solved_wcs.pixel_to_world(gx, gy))
    return (
        record
        | _common(result, 0.0)
        | {
            "offset_from_solved_wcs_arcsec": {
                "median": round(float(np.median(offsets.arcsec)), 2),
                "max": round(float(np.max(offsets.arcsec)), 2),
            },
            "target_snr": round(result.forced.snr, 1),
        }
    )


def run(bands: str) -> list[dict[str, Any]]:
    configure_astropy_offline()
    records = [run_sdss(band) for band in bands]
    solved_path = REALDATA / "panoptes" / "solved.fits.fz"
    solved = detections_as_reference(solved_path, "PANOPTES solved frame")
    _, cards = read_image(solved_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        solved_wcs = WCS(cards, naxis=2, relax=True).celestial
    records += [run_panoptes(name, solved, solved_wcs) for name in ("solved.fits.fz", "unsolved.fits")]
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bands", default="ugriz", help="SDSS bands to run (default: ugriz)")
    args = parser.parse_args()
    if not REALDATA.is_dir():
        raise SystemExit(f"{REALDATA} is missing: the real frames live in ../shared/realdata")
    records = run(args.bands)
    for record in records:
        print(json.dumps(record))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "frames": records}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()

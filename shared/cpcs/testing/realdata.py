"""The real frames of ``../shared/realdata`` (next to the repository) for tests and benchmarks.

They are read in place and never copied into the repository. :func:`realdata_file` fails with a
clear message when the folder is missing (CI has it, so a test using it fails rather than skips).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.science.imaging.background import estimate_background
from cpcs.science.imaging.detection import detect_sources

__all__ = ["REALDATA_DIR", "detections_as_reference", "read_image", "realdata_file"]

REALDATA_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "realdata"


def realdata_file(relative: str) -> Path:
    """Path of a real frame, e.g. ``"sdss_m2/frame-r-002583-2-0136.fits.bz2"``."""
    path = REALDATA_DIR / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the real frames live in ../shared/realdata next to the repository"
        )
    return path


def read_image(path: Path) -> tuple[np.ndarray, fits.Header]:
    """Pixels (float32) and header of the first HDU holding a 2-D image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        with fits.open(path, memmap=False) as hdus:
            hdu = next(h for h in hdus if h.data is not None and h.data.ndim == 2)
            return np.asarray(hdu.data, dtype=np.float32), hdu.header.copy()


def detections_as_reference(
    path: Path, survey: str, *, band: str = "G", zero_point: float = 0.0
) -> ReferenceCatalogue:
    """A frame's detections placed on the sky with its own header WCS, as a reference catalogue.

    For astrometry where no Gaia cone of the field is at hand: another exposure's stars, with that
    frame's astrometric calibration. Magnitudes are ``zero_point - 2.5 log10(flux)`` in the frame's
    units (22.5 for SDSS frames in nanomaggies gives their magnitudes; importers refuse negative
    magnitudes).
    """
    data, header = read_image(path)
    table = detect_sources(data, estimate_background(data), None).table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, naxis=2, relax=True).celestial
    flux = np.asarray(table["flux"], dtype=float)
    keep = flux > 0
    sky = wcs.pixel_to_world(np.asarray(table["x"])[keep], np.asarray(table["y"])[keep])
    mag = zero_point - 2.5 * np.log10(flux[keep])
    return ReferenceCatalogue(
        survey=survey,
        ra_deg=np.asarray(sky.ra.deg, dtype=float) % 360.0,
        dec_deg=np.asarray(sky.dec.deg, dtype=float),
        mags={band: mag},
        errs={band: np.full(mag.size, 0.01)},
    )

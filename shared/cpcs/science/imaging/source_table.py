"""The measured-source table of an image: written by reduce, read by calibrate and by the plots.

Its columns are declared here once (SExtractor-like names, so that observers who download it with
``/sources`` recognise them), and :func:`calibrators` is the one reading of it that the calibration
and its plots share: the plots always show the stars the stored fit was given.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from cpcs.science.imaging.photometry import SourceFlag

NUMBER = "NUMBER"
RA, DEC = "RA", "DEC"  # degrees, ICRS, through the solved WCS
X, Y = "X", "Y"  # pixels of the uploaded frame, 0-based
MAG_PSF, MAGERR_PSF = "MAG_PSF", "MAGERR_PSF"  # instrumental, NaN where no PSF fit was made
MAG_APER, MAGERR_APER = "MAG_APER", "MAGERR_APER"  # instrumental, what the calibration uses
FLAGS = "FLAGS"  # cpcs.science.imaging.photometry.SourceFlag bits
FWHM = "FWHM"  # pixels of the uploaded frame
FLUX = "FLUX"  # detection flux (the partial table of a frame that could not be solved)

#: Flags that keep a measured star out of the calibration (it still serves the astrometry).
NOT_A_CALIBRATOR = SourceFlag.SATURATED


class Calibrators(NamedTuple):
    """Positions (deg) and instrumental magnitudes of the stars a calibration may use."""

    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    mag: NDArray[np.float64]
    magerr: NDArray[np.float64]


def calibrators(table: Table) -> Calibrators:
    """The rows of a measured-source table that calibrate: every star but the saturated ones."""
    usable = (np.asarray(table[FLAGS], np.int64) & int(NOT_A_CALIBRATOR)) == 0
    return Calibrators(
        *(np.asarray(table[name], dtype=float)[usable] for name in (RA, DEC, MAG_APER, MAGERR_APER))
    )

"""The measured-source table's one reading for calibration (calibrate and the plots share it)."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from cpcs.science.imaging import source_table as columns
from cpcs.science.imaging.photometry import SourceFlag


def test_saturated_stars_are_no_calibrators_and_other_flags_stay() -> None:
    table = Table(
        {
            columns.RA: [10.0, 10.1, 10.2],
            columns.DEC: [-5.0, -5.1, -5.2],
            columns.MAG_APER: [-9.0, -12.5, -8.0],
            columns.MAGERR_APER: [0.01, 0.001, 0.02],
            columns.FLAGS: np.array(
                [0, int(SourceFlag.SATURATED | SourceFlag.CROWDED), int(SourceFlag.CROWDED)], dtype=np.int32
            ),
        }
    )
    chosen = columns.calibrators(table)
    assert list(chosen.ra_deg) == [10.0, 10.2] and list(chosen.mag) == [-9.0, -8.0]
    assert list(chosen.magerr) == [0.01, 0.02] and list(chosen.dec_deg) == [-5.0, -5.2]

"""Candidates of an image without a difference image: its measured sources against the references.

When reduce could not subtract a template (none for the alert, instrument and band, or the pair
could not be subtracted), calibrate compares the measured-source table with the reference cone it
has just calibrated on (:func:`cpcs.science.catalogue_candidates.catalogue_candidates`), on the
chosen survey/band's zero point, and keeps the candidates in the calibration's result
(``catalogue_candidates``), in the record shape of the difference candidates with
``mode="catalogue"``. A recalibration computes them again on its own zero point.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.catalogs.solar_system import check_candidates
from cpcs.science.catalogue_candidates import catalogue_candidates
from cpcs.science.field_calibration import FieldCalibration
from cpcs.science.imaging import source_table as columns
from cpcs.science.imaging.photometry import SourceFlag
from cpcs.settings import Settings

#: Most candidates kept per calibration.
MAX_CANDIDATES = 200
#: Flags that make a candidate doubtful (recorded as its reasons, so it is not accepted).
_DOUBTS = {SourceFlag.CROWDED: "crowded", SourceFlag.BAD_PIXELS: "masked", SourceFlag.POOR_SKY: "poor_sky"}
_SIGMA_PER_FWHM = 1.0 / 2.354820045


def catalogue_candidates_record(
    settings: Settings,
    sources_path: Path,
    references: Mapping[str, ReferenceCatalogue],
    calibrated: FieldCalibration,
    *,
    cone: tuple[float, float, float],
    match_radius_arcsec: float,
    mjd: float | None,
) -> dict[str, Any]:
    """The ``catalogue_candidates`` record of a calibration: settings, depth, candidates, SkyBoT."""
    table = Table.read(sources_path)  # the whole measured table: flags, positions, FWHM
    chosen = references[calibrated.survey]
    ra0, dec0, radius = cone
    flags = np.asarray(table[columns.FLAGS], dtype=np.int64)
    found, depth = catalogue_candidates(
        np.asarray(table[columns.RA], dtype=float),
        np.asarray(table[columns.DEC], dtype=float),
        np.asarray(table[columns.MAG_APER], dtype=float),
        np.asarray(table[columns.MAGERR_APER], dtype=float),
        flags,
        zp=float(calibrated.fit.zp),
        cone_ra_deg=ra0,
        cone_dec_deg=dec0,
        cone_radius_deg=radius,
        catalogue_positions=[(c.ra_deg, c.dec_deg) for c in references.values()],
        band_ra_deg=chosen.ra_deg,
        band_dec_deg=chosen.dec_deg,
        band_mag=chosen.mags[calibrated.band],
        band_magerr=chosen.errs[calibrated.band],
        match_radius_arcsec=match_radius_arcsec,
        margin_mag=settings.catalogue_candidate_margin_mag,
    )
    fwhm = np.asarray(table[columns.FWHM], dtype=float) if columns.FWHM in table.colnames else None
    records = []
    for candidate in found[:MAX_CANDIDATES]:
        row = candidate.index
        reasons = [name for flag, name in _DOUBTS.items() if flags[row] & int(flag)]
        size = float(fwhm[row]) * _SIGMA_PER_FWHM if fwhm is not None and np.isfinite(fwhm[row]) else None
        records.append(
            {
                "mode": "catalogue",
                "found_by": candidate.reason,
                "x": round(float(table[columns.X][row]), 3),
                "y": round(float(table[columns.Y][row]), 3),
                "ra_deg": round(candidate.ra_deg, 7),
                "dec_deg": round(candidate.dec_deg, 7),
                "snr": round(candidate.snr, 2),
                "mag_inst": round(candidate.mag - float(calibrated.fit.zp), 4),
                "magerr_inst": round(candidate.mag_err, 4),
                "size_px": None if size is None else round(size, 3),
                "catalogue_mag": None
                if candidate.catalogue_mag is None
                else round(candidate.catalogue_mag, 4),
                "brighter_by": candidate.brighter_by,
                "reasons": reasons,
                "accepted": not reasons,
            }
        )
    solar_system = check_candidates(
        records,
        cone,
        mjd,
        online=settings.catalog_online,
        timeout_s=settings.solar_system_timeout_s,
        url=settings.skybot_url,
    )
    return {
        "mode": "catalogue",
        "catalogue": {
            "survey": calibrated.survey,
            "band": calibrated.band,
            "surveys": sorted(references),
            "margin_mag": settings.catalogue_candidate_margin_mag,
            "depth_mag": None if depth is None else round(depth, 3),
            "match_radius_arcsec": match_radius_arcsec,
        },
        "candidates": records,
        "solar_system": solar_system,
    }

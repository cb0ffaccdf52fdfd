"""Write simulated reference catalogues as Vizier-style tables for ``cpcs catalog import``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
from astropy.table import Table

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.catalogs.surveys import find_survey
from cpcs.simulation.catalogue_simulator import SimulatedField


class _SimulatedReference(Protocol):
    survey: str
    bands: tuple[str, ...]
    ra_deg: np.ndarray
    dec_deg: np.ndarray


def _table(
    survey: str,
    ra: np.ndarray,
    dec: np.ndarray,
    mags: dict[str, np.ndarray],
    errs: dict[str, np.ndarray],
    pm: tuple[np.ndarray, np.ndarray] | None,
) -> Table:
    definition = find_survey(survey)
    ra_name, dec_name = (
        ("RAJ2000", "DEJ2000") if definition is None else (definition.ra_column, definition.dec_column)
    )
    table = Table()
    table[ra_name] = ra
    table[dec_name] = dec
    for band, values in mags.items():
        table[f"{band}mag"] = values
        table[f"e_{band}mag"] = errs[band]
    if pm is not None:
        table["pmRA"], table["pmDE"] = pm
        table["pmRA"].unit = table["pmDE"].unit = "mas / yr"
    return table


def write_reference_tables(
    field: SimulatedField | Iterable[ReferenceCatalogue], folder: Path, *, fmt: str = "ecsv"
) -> dict[str, Path]:
    """One table per survey with the survey's Vizier position columns and ``<band>mag``/``e_<band>mag``.

    Accepts a simulated catalogue field or reference catalogues (e.g. an image simulator's), whose
    proper motions are written as ``pmRA``/``pmDE``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    references = field.references if isinstance(field, SimulatedField) else field
    for reference in references:
        if isinstance(reference, ReferenceCatalogue):
            pm = None
            if reference.pmra_mas_yr is not None and reference.pmdec_mas_yr is not None:
                pm = (reference.pmra_mas_yr, reference.pmdec_mas_yr)
            table = _table(
                reference.survey, reference.ra_deg, reference.dec_deg, reference.mags, reference.errs, pm
            )
        else:
            table = _table(
                reference.survey,
                reference.ra_deg,
                reference.dec_deg,
                {b: reference.mags[b] for b in reference.bands},
                {b: reference.magerrs[b] for b in reference.bands},
                None,
            )
        path = folder / f"{reference.survey}.{fmt}"
        table.write(path, format="ascii.ecsv" if fmt == "ecsv" else fmt, overwrite=True)
        written[reference.survey] = path
    return written

"""Write a simulated field's reference catalogues as Vizier-style tables for ``cpcs catalog import``."""

from __future__ import annotations

from pathlib import Path

from astropy.table import Table

from cpcs.testing.catalogue_simulator import SimulatedField


def write_reference_tables(field: SimulatedField, folder: Path, *, fmt: str = "ecsv") -> dict[str, Path]:
    """One table per survey with ``RAJ2000``/``DEJ2000`` and ``<band>mag``/``e_<band>mag`` columns."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for reference in field.references:
        table = Table()
        table["RAJ2000"] = reference.ra_deg
        table["DEJ2000"] = reference.dec_deg
        for band in reference.bands:
            table[f"{band}mag"] = reference.mags[band]
            table[f"e_{band}mag"] = reference.magerrs[band]
        path = folder / f"{reference.survey}.{fmt}"
        table.write(path, format="ascii.ecsv" if fmt == "ecsv" else fmt, overwrite=True)
        written[reference.survey] = path
    return written

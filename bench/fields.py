"""The benchmark's field: about 2,000 sources against two surveys with five and six bands."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cpcs.simulation.catalogue_simulator import (
    ReferenceCatalogue,
    SimulatedField,
    simulate_field,
    to_sextractor_ascii,
)
from cpcs.simulation.reference_files import write_reference_tables

RA_DEG, DEC_DEG = 295.00474, 30.13149


def _with_bands(reference: ReferenceCatalogue, extra: dict[str, np.ndarray]) -> ReferenceCatalogue:
    mags = dict(reference.mags)
    errs = dict(reference.magerrs)
    for band, values in extra.items():
        mags[band] = values
        errs[band] = np.hypot(0.02, 0.5 * errs[reference.bands[0]])
    return replace(reference, bands=(*reference.bands, *extra), mags=mags, magerrs=errs)


def bench_field(seed: int = 1) -> SimulatedField:
    """~2,000 detected sources; PS1 g r i z (+ y) and GaiaSP B V R I (+ g r) as reference bands."""
    field = simulate_field(
        seed, n_stars=1200, ra_deg=RA_DEG, dec_deg=DEC_DEG, radius_arcmin=12, target="bright"
    )
    ps1, gaia_sp = field.references
    ps1 = _with_bands(ps1, {"y": ps1.mags["z"] - 0.3 * (ps1.mags["i"] - ps1.mags["z"])})
    bv = gaia_sp.mags["B"] - gaia_sp.mags["V"]
    gaia_sp = _with_bands(
        gaia_sp, {"g": gaia_sp.mags["V"] + 0.6 * bv - 0.12, "r": gaia_sp.mags["V"] - 0.42 * bv + 0.11}
    )
    return replace(field, references=(ps1, gaia_sp))


def catalogue_bytes(field: SimulatedField, variant: int = 0) -> bytes:
    """The upload; ``variant`` nudges one magnitude so that every upload is new bytes."""
    mag = field.mag.copy()
    if variant:
        mag[variant % mag.size] += 1e-4 * variant
    return to_sextractor_ascii(field.ra_deg, field.dec_deg, mag, field.magerr).encode()


def write_references(field: SimulatedField, folder: Path) -> dict[str, Path]:
    return write_reference_tables(field, folder)

"""Simulated data: source catalogues, CCD frames, hosts with transients, reference tables.

The demo, the benchmarks and the tests make their fields here; no calibration code depends on it.
"""

from cpcs.simulation.catalogue_simulator import (
    APASS_LIKE,
    GAIA_G_ONLY,
    SURVEYS,
    BandTruth,
    FieldTruth,
    MatchedPhotometry,
    ReferenceCatalogue,
    SimulatedField,
    SimulatedTarget,
    match_field,
    reference_from_truth,
    simulate_field,
    to_sextractor_ascii,
)

__all__ = [
    "APASS_LIKE",
    "GAIA_G_ONLY",
    "SURVEYS",
    "BandTruth",
    "FieldTruth",
    "MatchedPhotometry",
    "ReferenceCatalogue",
    "SimulatedField",
    "SimulatedTarget",
    "match_field",
    "reference_from_truth",
    "simulate_field",
    "to_sextractor_ascii",
]

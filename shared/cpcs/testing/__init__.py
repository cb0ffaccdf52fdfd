"""Test helpers shared by the test suites, the benchmarks and the demo (no production code uses them)."""

from cpcs.testing.catalogue_simulator import (
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

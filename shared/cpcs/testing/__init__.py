"""Test helpers shared by the test suites, the benchmarks and the demo (no production code uses them)."""

from cpcs.testing.catalogue_simulator import (
    SURVEYS,
    BandTruth,
    FieldTruth,
    MatchedPhotometry,
    ReferenceCatalogue,
    SimulatedField,
    SimulatedTarget,
    match_field,
    simulate_field,
    to_sextractor_ascii,
)

__all__ = [
    "SURVEYS",
    "BandTruth",
    "FieldTruth",
    "MatchedPhotometry",
    "ReferenceCatalogue",
    "SimulatedField",
    "SimulatedTarget",
    "match_field",
    "simulate_field",
    "to_sextractor_ascii",
]

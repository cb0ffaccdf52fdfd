"""Test infrastructure: the real servers, process runners, fault injection, the real frames.

Only the test suites and the benchmarks use it; the simulated data live in :mod:`cpcs.simulation`.
"""

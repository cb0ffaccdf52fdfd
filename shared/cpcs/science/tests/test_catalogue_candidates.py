"""Catalogue-mode candidates: new sources and brightened stars found, the rest left alone."""

from __future__ import annotations

import numpy as np

from cpcs.science.catalogue_candidates import catalogue_candidates
from cpcs.science.imaging.photometry import SourceFlag

RA0, DEC0, ZP = 150.0, 2.0, 24.5


def test_new_and_brightened_sources_are_found_and_nothing_else() -> None:
    rng = np.random.default_rng(3)
    n = 300
    ra = RA0 + rng.uniform(-0.1, 0.1, n) / np.cos(np.radians(DEC0))
    dec = DEC0 + rng.uniform(-0.1, 0.1, n)
    cat_mag = rng.uniform(13.0, 20.5, n)
    cat_err = np.full(n, 0.02)
    measured_err = np.clip(0.005 * 10 ** (0.2 * (cat_mag - 15.0)), 0.003, 0.15)
    src_ra, src_dec = ra + rng.normal(0, 0.2, n) / 3600, dec + rng.normal(0, 0.2, n) / 3600
    src_mag = cat_mag + rng.normal(0, measured_err) - ZP
    brightened = [10, 20]  # 1.5 mag brighter: candidates
    src_mag[brightened] -= 1.5
    src_mag[30] -= 0.3  # within the margin: not one
    flags = np.zeros(n, dtype=np.int64)
    # Not in any catalogue: three at 16-18 mag (candidates), one at 21.5 (below the catalogue's
    # depth), one saturated, one outside the references' cone.
    extra_ra = np.array([RA0 + 0.01, RA0 - 0.02, RA0 + 0.03, RA0 + 0.04, RA0 - 0.05, RA0 + 0.3])
    extra_dec = np.array([DEC0 + 0.01, DEC0 + 0.02, DEC0 - 0.03, DEC0 - 0.04, DEC0 + 0.05, DEC0])
    extra_mag = np.array([16.0, 17.0, 18.0, 21.5, 15.0, 16.0]) - ZP
    extra_flags = np.array([0, 0, 0, 0, int(SourceFlag.SATURATED), 0])
    found, depth = catalogue_candidates(
        np.concatenate([src_ra, extra_ra]),
        np.concatenate([src_dec, extra_dec]),
        np.concatenate([src_mag, extra_mag]),
        np.concatenate([measured_err, np.full(6, 0.02)]),
        np.concatenate([flags, extra_flags]),
        zp=ZP,
        cone_ra_deg=RA0,
        cone_dec_deg=DEC0,
        cone_radius_deg=0.2,
        catalogue_positions=[(ra, dec), (ra[::2], dec[::2])],
        band_ra_deg=ra,
        band_dec_deg=dec,
        band_mag=cat_mag,
        band_magerr=cat_err,
        match_radius_arcsec=2.0,
        margin_mag=1.0,
    )
    assert depth is not None and 20.0 < depth < 20.5
    by_row = {c.index: c for c in found}
    assert set(by_row) == {10, 20, n, n + 1, n + 2}, [(c.index, c.reason, c.mag) for c in found]
    for row in brightened:
        assert by_row[row].reason == "brighter_than_catalogue"
        assert abs(by_row[row].brighter_by - 1.5) < 0.2
        assert by_row[row].catalogue_mag == cat_mag[row]
    for row, truth in zip((n, n + 1, n + 2), (16.0, 17.0, 18.0), strict=True):
        assert by_row[row].reason == "not_in_catalogue" and by_row[row].catalogue_mag is None
        assert abs(by_row[row].mag - truth) < 1e-9
    assert [c.snr for c in found] == sorted((c.snr for c in found), reverse=True)

"""The catalogue simulator itself: realism checks and the SExtractor text format."""

from __future__ import annotations

import numpy as np
from astropy.io import ascii as astropy_ascii
from scipy.stats import spearmanr

from cpcs.science.crossmatch import tangent_plane_offsets
from cpcs.simulation import SURVEYS, simulate_field


def test_same_seed_same_field() -> None:
    a, b, c = simulate_field(1), simulate_field(1), simulate_field(2)
    np.testing.assert_array_equal(a.mag, b.mag)
    np.testing.assert_array_equal(a.reference("PS1").mag("r"), b.reference("PS1").mag("r"))
    assert a.mag.size != c.mag.size or not np.array_equal(a.mag, c.mag)


def test_uploaded_catalogue_is_realistic() -> None:
    field = simulate_field(3, n_stars=500, radius_arcmin=12.0)
    stars = field.star_id >= 0
    # n_stars brighter than the 5-sigma limit, plus detections down to S/N 3.
    assert np.sum(field.true_mag[stars] < field.truth.limit_mag_5sigma) > 0.9 * 500
    assert np.all(field.magerr > 0.0)
    assert np.max(field.magerr) < 1.0857 / 3.0 + 1e-9
    assert spearmanr(field.mag, field.magerr).statistic > 0.95  # errors grow with magnitude
    # Number counts rise by about 10**0.3 per magnitude.
    counts, _ = np.histogram(field.true_mag[stars], bins=[15.0, 16.0, 17.0, 18.0, 19.0])
    slopes = np.log10(counts[1:] / counts[:-1])
    assert 0.15 < np.mean(slopes) < 0.45
    colours = field.true_colour[stars]
    assert colours.min() >= -0.2 and colours.max() <= 1.7
    assert 0.6 < np.median(colours) < 1.0
    xi, eta = tangent_plane_offsets(field.ra_deg, field.dec_deg, field.centre_ra_deg, field.centre_dec_deg)
    assert np.max(np.hypot(xi, eta)) * 60.0 < 12.0 + 0.01


def test_truth_outliers_and_gaps() -> None:
    field = simulate_field(4, n_stars=800, outlier_fraction=0.15, missing_fraction=0.25)
    assert abs(field.truth.outlier_fraction - 0.15) < 0.04
    assert field.truth.outlier_fraction == field.is_outlier[field.star_id >= 0].mean()
    for catalogue in field.references:
        for band in catalogue.bands:
            missing = np.isnan(catalogue.mag(band))
            assert abs(missing.mean() - 0.25) < 4.0 * np.sqrt(0.25 * 0.75 / missing.size)
            np.testing.assert_array_equal(missing, np.isnan(catalogue.magerr(band)))
    assert {c.survey for c in field.references} == {s.name for s in SURVEYS}
    assert field.truth.band("PS1", "r").zp == 25.0
    assert field.truth.band("PS1", "g").colour_term == 0.12 + 1.0


def test_targets() -> None:
    bright = simulate_field(5, target="bright")
    assert bright.target is not None and bright.target.detected
    index = bright.target.source_index
    assert index is not None and bright.star_id[index] == -1
    assert abs(bright.mag[index] - bright.target.true_inst_mag) < 0.05
    undetected = simulate_field(5, target="undetected")
    assert undetected.target is not None and not undetected.target.detected
    assert undetected.target.source_index is None and not np.any(undetected.star_id == -1)
    assert simulate_field(5, target=None).target is None


def test_sextractor_ascii_round_trip() -> None:
    field = simulate_field(6, n_stars=100)
    text = field.to_sextractor_ascii()
    lines = text.splitlines()
    assert lines[0].startswith("#   1 MAG_AUTO") and lines[0].endswith("[mag]")
    assert lines[1].startswith("#   2 MAGERR_AUTO")
    assert lines[2].startswith("#   3 ALPHA_J2000") and lines[2].endswith("[deg]")
    assert lines[3].startswith("#   4 DELTA_J2000")
    assert len(lines) == 4 + field.mag.size
    table = astropy_ascii.read(text, format="sextractor")
    assert table.colnames == ["MAG_AUTO", "MAGERR_AUTO", "ALPHA_J2000", "DELTA_J2000"]
    np.testing.assert_allclose(table["MAG_AUTO"], field.mag, atol=6e-5)
    np.testing.assert_allclose(table["MAGERR_AUTO"], field.magerr, atol=6e-5)
    np.testing.assert_allclose(table["ALPHA_J2000"], field.ra_deg, atol=6e-8)
    np.testing.assert_allclose(table["DELTA_J2000"], field.dec_deg, atol=6e-8)

"""ReferenceCatalogue, column helpers and the wire format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import MaskedColumn

from cpcs.catalogs.model import (
    ReferenceCatalogue,
    angular_separation_deg,
    column_to_float,
    concatenate,
    cone_mask,
    from_wire,
    parse_coordinates,
    to_wire,
)
from cpcs.errors import InputError


def make_cat() -> ReferenceCatalogue:
    return ReferenceCatalogue(
        "APASS",
        [10.0, 10.1, 10.2],
        [-5.0, -5.1, -5.2],
        {"V": [12.0, np.nan, 14.0], "B": [12.5, 13.5, np.nan]},
        {"V": [0.01, np.nan, 0.03]},
    )


def test_construction_coerces_and_fills_errors() -> None:
    cat = make_cat()
    assert len(cat) == 3
    assert cat.ra_deg.dtype == np.float64
    assert cat.bands == ["V", "B"]
    assert np.isnan(cat.errs["B"]).all()  # no errors given for B
    assert "n=3" in repr(cat)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ra_deg": [1.0, 2.0], "dec_deg": [1.0]},
        {"ra_deg": [1.0], "dec_deg": [1.0], "mags": {"V": [1.0, 2.0]}},
        {"ra_deg": [1.0], "dec_deg": [1.0], "mags": {"V": [1.0]}, "errs": {"B": [0.1]}},
        {"ra_deg": [[1.0]], "dec_deg": [[1.0]]},
    ],
)
def test_construction_rejects_inconsistent_columns(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ReferenceCatalogue("X", **kwargs)


def test_select_mask_index_slice() -> None:
    cat = make_cat()
    by_mask = cat.select(np.array([True, False, True]))
    assert by_mask.ra_deg.tolist() == [10.0, 10.2]
    assert by_mask.mags["V"].tolist() == [12.0, 14.0]
    by_index = cat.select([2, 0])
    assert by_index.dec_deg.tolist() == [-5.2, -5.0]
    assert len(cat.select([])) == 0
    assert len(cat.select(slice(1, None))) == 2
    with pytest.raises(ValueError):
        cat.select(np.array([True, False]))
    with pytest.raises(TypeError):
        cat.select(np.array([0.5]))


def test_concatenate_fills_missing_bands() -> None:
    a = make_cat()
    b = ReferenceCatalogue("APASS", [1.0], [2.0], {"g": [15.0]}, {"g": [0.02]})
    both = concatenate([a, b])
    assert len(both) == 4
    assert both.bands == ["V", "B", "g"]
    assert np.isnan(both.mags["g"][:3]).all() and both.mags["g"][3] == 15.0
    assert np.isnan(both.mags["V"][3])
    assert len(concatenate([], survey="X")) == 0
    with pytest.raises(ValueError):
        concatenate([])


def test_wire_round_trip_with_missing_values() -> None:
    cat = make_cat()
    wire = to_wire(cat)
    text = json.dumps(wire, allow_nan=False)  # strict JSON: NaN became null
    assert wire["bands"]["V"]["mag"] == [12.0, None, 14.0]
    back = from_wire(json.loads(text))
    assert back.survey == "APASS"
    np.testing.assert_array_equal(back.ra_deg, cat.ra_deg)
    for band in cat.bands:
        np.testing.assert_allclose(back.mags[band], cat.mags[band], equal_nan=True)
        np.testing.assert_allclose(back.errs[band], cat.errs[band], equal_nan=True)


def test_wire_empty_catalogue() -> None:
    back = from_wire(to_wire(ReferenceCatalogue.empty("PS1", ["g", "r"])))
    assert len(back) == 0 and back.bands == ["g", "r"]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"ra": [1.0], "dec": [1.0]},
        {"survey": "X", "ra": [1.0], "dec": [1.0, 2.0]},
        {"survey": "X", "ra": [1.0], "dec": ["a"]},
        {"survey": "X", "ra": [1.0], "dec": [1.0], "n": 2},
        {"survey": "X", "ra": [1.0], "dec": [1.0], "bands": {"V": {"mag": [1.0, 2.0]}}},
        {"survey": "X", "ra": [1.0], "dec": [1.0], "version": 99},
    ],
)
def test_from_wire_rejects_malformed(payload: object) -> None:
    with pytest.raises(InputError) as err:
        from_wire(payload)  # type: ignore[arg-type]
    assert err.value.code == "invalid_catalogue"


def test_column_to_float_handles_masks_text_and_sentinels() -> None:
    masked = MaskedColumn([1.0, 2.0, 3.0], mask=[False, True, False])
    assert np.isnan(column_to_float(masked)[1])
    text = np.array(["12.5", "", "--", "nan", "abc", " 7 "])
    values = column_to_float(text)
    assert values[0] == 12.5 and values[5] == 7.0
    assert np.isnan(values[1:5]).all()
    assert column_to_float(np.array([b"1.5", b""], dtype=object))[0] == 1.5
    assert np.isnan(column_to_float(np.array([np.inf]))).all()


def test_parse_coordinates_sexagesimal_and_degrees() -> None:
    ra, dec = parse_coordinates(
        np.array(["19:40:01.1376", "19h40m01.1376s", "295.00474", "", "19 40 01.1376"]),
        np.array(["+30:07:53.364", "30d07m53.364s", "30.13149", "10", "+30 07 53.364"]),
    )
    np.testing.assert_allclose(ra[[0, 1, 2, 4]], 295.00474, atol=1e-6)
    np.testing.assert_allclose(dec[[0, 1, 2, 4]], 30.13149, atol=1e-6)
    assert np.isnan(ra[3])
    ra_h, dec_n = parse_coordinates(np.array([19.6669827, 24.0]), np.array([30.0, 95.0]), ra_unit="h")
    assert ra_h[0] == pytest.approx(295.00474, abs=1e-5)
    assert ra_h[1] == 0.0  # 24h wraps to 0
    assert np.isnan(dec_n[1])  # |dec| > 90 is invalid


def test_angular_separation_and_cone_mask() -> None:
    assert angular_separation_deg(359.9, 0.0, 0.1, 0.0) == pytest.approx(0.2)
    assert angular_separation_deg(0.0, 89.9, 180.0, 89.9) == pytest.approx(0.2)
    assert angular_separation_deg(10.0, 20.0, 10.0, 20.0) == 0.0
    cat = ReferenceCatalogue("X", [359.95, 0.05, 1.0], [0.0, 0.0, 0.0])
    assert cone_mask(cat, 0.0, 0.0, 0.1).tolist() == [True, True, False]
    assert cone_mask(ReferenceCatalogue.empty("X"), 0, 0, 1).shape == (0,)

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
    proper_motion_columns,
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


# --------------------------------------------------------------------------------------------------
# Proper motions and epochs


def make_gaia() -> ReferenceCatalogue:
    return ReferenceCatalogue(
        "Gaia",
        [295.0, 295.01, 295.02],
        [30.1, 30.11, 30.12],
        {"G": [14.0, 15.0, np.nan]},
        {"G": [0.001, 0.002, np.nan]},
        pmra_mas_yr=[-3.1, np.nan, 120.0],
        pmdec_mas_yr=[-5.2, np.nan, -80.0],
        epoch=2016.0,
    )


def test_old_keyword_and_positional_calls_still_work() -> None:
    by_keyword = ReferenceCatalogue(
        survey="APASS", ra_deg=[1.0], dec_deg=[2.0], mags={"V": [12.0]}, errs={"V": [0.1]}
    )
    by_position = ReferenceCatalogue("APASS", [1.0], [2.0], {"V": [12.0]}, {"V": [0.1]})
    for cat in (by_keyword, by_position):
        assert cat.pmra_mas_yr is None and cat.pmdec_mas_yr is None and cat.epoch is None
        assert not cat.has_proper_motions
    assert "epoch" not in repr(by_keyword)


def test_proper_motion_columns_are_validated_and_coerced() -> None:
    cat = make_gaia()
    assert cat.has_proper_motions and cat.epoch == 2016.0
    assert cat.pmra_mas_yr is not None and cat.pmra_mas_yr.dtype == np.float64
    assert "epoch=2016" in repr(cat) and "proper_motions=True" in repr(cat)
    assert ReferenceCatalogue("X", [1.0], [1.0], epoch=2016).epoch == 2016.0
    assert isinstance(ReferenceCatalogue("X", [1.0], [1.0], epoch=np.float32(2000.0)).epoch, float)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pmra_mas_yr": [1.0, 2.0], "pmdec_mas_yr": [1.0]},  # wrong length
        {"pmra_mas_yr": [1.0], "pmdec_mas_yr": [1.0, 2.0]},
        {"pmra_mas_yr": [1.0]},  # only one component
        {"pmdec_mas_yr": [1.0]},
        {"pmra_mas_yr": [[1.0]], "pmdec_mas_yr": [[1.0]]},
        {"epoch": float("nan")},
        {"epoch": "2016.0"},
        {"epoch": True},
    ],
)
def test_construction_rejects_bad_proper_motions_and_epochs(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ReferenceCatalogue("X", [1.0], [1.0], **kwargs)


def test_select_and_with_survey_keep_proper_motions_and_epoch() -> None:
    cat = make_gaia()
    for picked, rows in (
        (cat.select(np.array([True, False, True])), [0, 2]),
        (cat.select([2, 0]), [2, 0]),
        (cat.select(slice(1, None)), [1, 2]),
    ):
        assert picked.epoch == 2016.0
        assert picked.pmra_mas_yr is not None and picked.pmdec_mas_yr is not None
        np.testing.assert_array_equal(picked.pmra_mas_yr, np.asarray(cat.pmra_mas_yr)[rows])
        np.testing.assert_array_equal(picked.pmdec_mas_yr, np.asarray(cat.pmdec_mas_yr)[rows])
    empty = cat.select([])
    assert len(empty) == 0 and empty.pmra_mas_yr is not None and len(empty.pmra_mas_yr) == 0
    renamed = cat.with_survey("GaiaDR3")
    assert renamed.survey == "GaiaDR3" and renamed.epoch == 2016.0
    assert renamed.pmdec_mas_yr is cat.pmdec_mas_yr
    assert ReferenceCatalogue.empty("Gaia", ["G"], epoch=2016.0).epoch == 2016.0
    assert make_cat().select([0]).pmra_mas_yr is None


def test_concatenate_fills_missing_proper_motions_with_nan() -> None:
    gaia = make_gaia()
    old = ReferenceCatalogue("Gaia", [295.03], [30.13], {"G": [13.0]})  # e.g. a tile from before pm
    both = concatenate([old, gaia])
    assert len(both) == 4 and both.epoch == 2016.0  # the known epoch wins over an unknown one
    assert both.pmra_mas_yr is not None and both.pmdec_mas_yr is not None
    assert np.isnan(both.pmra_mas_yr[0]) and np.isnan(both.pmdec_mas_yr[0])
    np.testing.assert_array_equal(both.pmra_mas_yr[1:], gaia.pmra_mas_yr)
    np.testing.assert_array_equal(both.ra_deg[1:], gaia.ra_deg)  # no propagation needed
    plain = concatenate([make_cat(), make_cat()])
    assert plain.pmra_mas_yr is None and plain.epoch is None
    assert concatenate([gaia]) is gaia and concatenate([gaia], "Other").pmra_mas_yr is gaia.pmra_mas_yr


def test_concatenate_moves_parts_to_the_first_known_epoch() -> None:
    gaia = make_gaia()
    earlier = gaia.at_epoch(2000.0)
    both = concatenate([gaia, earlier])
    assert both.epoch == 2016.0
    back_mas = angular_separation_deg(both.ra_deg[3:], both.dec_deg[3:], gaia.ra_deg, gaia.dec_deg) * 3.6e6
    assert back_mas.max() < 1e-6  # moved back to 2016.0: the original positions
    assert both.ra_deg[4] == gaia.ra_deg[1]  # the star without proper motion did not move


def test_positions_at_matches_astropy_space_motion() -> None:
    import warnings

    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    rng = np.random.default_rng(3)
    n = 200
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-0.999, 0.999, n)))
    pmra = rng.normal(0.0, 300.0, n)
    pmdec = rng.normal(0.0, 300.0, n)
    cat = ReferenceCatalogue("Gaia", ra, dec, {}, {}, pmra, pmdec, epoch=2016.0)
    new_ra, new_dec = cat.positions_at(2024.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no distance given: astropy assumes a large one
        coord = SkyCoord(
            ra=ra * u.deg,
            dec=dec * u.deg,
            pm_ra_cosdec=pmra * u.mas / u.yr,
            pm_dec=pmdec * u.mas / u.yr,
            obstime=Time(2016.0, format="jyear"),
            frame="icrs",
        )
        moved = coord.apply_space_motion(new_obstime=Time(2024.5, format="jyear"))
    sep = angular_separation_deg(new_ra, new_dec, moved.ra.deg, moved.dec.deg) * 3.6e6  # mas
    assert sep.max() < 1e-4
    later = cat.at_epoch(2024.5)
    np.testing.assert_allclose(later.pmra_mas_yr, moved.pm_ra_cosdec.to_value(u.mas / u.yr), atol=1e-6)
    np.testing.assert_allclose(later.pmdec_mas_yr, moved.pm_dec.to_value(u.mas / u.yr), atol=1e-6)
    shift = angular_separation_deg(ra, dec, new_ra, new_dec) * 3.6e6
    np.testing.assert_allclose(shift, np.hypot(pmra, pmdec) * 8.5, rtol=1e-6)
    assert np.all((new_ra >= 0.0) & (new_ra < 360.0))


def test_positions_at_edge_cases() -> None:
    gaia = make_gaia()
    ra, dec = gaia.positions_at(2026.0)
    assert ra[1] == gaia.ra_deg[1] and dec[1] == gaia.dec_deg[1]  # no proper motion: not moved
    assert dec[0] == pytest.approx(gaia.dec_deg[0] - 52.0 / 3.6e6, abs=1e-12)
    ra_back, dec_back = gaia.at_epoch(2026.0).positions_at(2016.0)
    assert (angular_separation_deg(ra_back, dec_back, gaia.ra_deg, gaia.dec_deg) * 3.6e6).max() < 0.01
    assert gaia.at_epoch(2016.0) is gaia
    moved = gaia.at_epoch(2030)
    assert moved.epoch == 2030.0 and moved.pmra_mas_yr is not None and moved.pmdec_mas_yr is not None
    # the proper motion turns a little with the star (sub-micro-arcsecond per year here)
    np.testing.assert_allclose(moved.pmra_mas_yr, gaia.pmra_mas_yr, atol=1e-3, equal_nan=True)
    np.testing.assert_allclose(moved.pmdec_mas_yr, gaia.pmdec_mas_yr, atol=1e-3, equal_nan=True)
    there_and_back = moved.at_epoch(2016.0)
    sep_mas = angular_separation_deg(there_and_back.ra_deg, there_and_back.dec_deg, gaia.ra_deg, gaia.dec_deg)
    assert (sep_mas * 3.6e6).max() < 1e-6
    np.testing.assert_allclose(there_and_back.pmra_mas_yr, gaia.pmra_mas_yr, rtol=1e-9, equal_nan=True)
    plain = make_cat()  # no proper motions: positions kept, label changes
    relabelled = plain.at_epoch(2016.0)
    assert relabelled.epoch == 2016.0
    np.testing.assert_array_equal(relabelled.ra_deg, plain.ra_deg)
    unknown = ReferenceCatalogue("Gaia", [1.0], [2.0], {}, {}, [5.0], [5.0])  # epoch None
    with pytest.raises(ValueError, match="no epoch"):
        unknown.positions_at(2020.0)
    with pytest.raises(ValueError):
        gaia.positions_at(float("inf"))
    # across RA = 0 and over the pole
    wrap = ReferenceCatalogue(
        "Gaia", [359.9999999, 10.0], [0.0, 89.9999999], {}, {}, [1e3, 0.0], [0.0, 1e3], 2016.0
    )
    w_ra, w_dec = wrap.positions_at(2017.0)
    assert 0.0 <= w_ra[0] < 0.001 and w_dec[1] < 90.0 and abs(w_ra[1] - 190.0) < 1e-6


def test_proper_motion_columns_convert_units_and_pair_gaps() -> None:
    from astropy import units as u
    from astropy.table import Column

    pmra, pmdec = proper_motion_columns(
        MaskedColumn([1.5, 2.0, 3.0, 25_000.0], mask=[False, True, False, False]),
        np.array([-1.0, 1.0, np.nan, 0.0]),
    )
    assert pmra[0] == 1.5 and pmdec[0] == -1.0
    assert np.isnan(pmra[1:]).all() and np.isnan(pmdec[1:]).all()  # masked, gap, sentinel
    fast, slow = proper_motion_columns(Column([0.5], unit=u.arcsec / u.yr), Column([2.0], unit="mas / yr"))
    assert fast[0] == pytest.approx(500.0) and slow[0] == 2.0
    with pytest.raises(ValueError):
        proper_motion_columns(Column([1.0], unit="s"), Column([1.0], unit="mas/yr"))
    with pytest.raises(ValueError):
        proper_motion_columns([1.0, 2.0], [1.0])


def test_wire_round_trip_with_proper_motions_and_epoch() -> None:
    cat = make_gaia()
    wire = to_wire(cat)
    text = json.dumps(wire, allow_nan=False)
    assert wire["epoch"] == 2016.0
    assert wire["pmra"] == [-3.1, None, 120.0] and wire["pmdec"] == [-5.2, None, -80.0]
    assert wire["version"] == 1
    back = from_wire(json.loads(text))
    assert back.epoch == 2016.0 and back.has_proper_motions
    np.testing.assert_allclose(back.pmra_mas_yr, cat.pmra_mas_yr, equal_nan=True)
    np.testing.assert_allclose(back.pmdec_mas_yr, cat.pmdec_mas_yr, equal_nan=True)
    np.testing.assert_array_equal(back.ra_deg, cat.ra_deg)
    plain = to_wire(make_cat())
    assert "pmra" not in plain and "pmdec" not in plain and "epoch" not in plain


def test_wire_payload_without_proper_motions_still_loads() -> None:
    old = {  # what writers from before proper motions send
        "version": 1,
        "survey": "Gaia",
        "n": 2,
        "ra": [295.0, 295.1],
        "dec": [30.0, 30.1],
        "bands": {"G": {"mag": [14.0, None], "err": [0.001, None]}},
    }
    cat = from_wire(old)
    assert len(cat) == 2 and cat.epoch is None and cat.pmra_mas_yr is None and cat.pmdec_mas_yr is None
    assert from_wire({**old, "epoch": None}).epoch is None
    assert from_wire({**old, "epoch": 2016}).epoch == 2016.0


@pytest.mark.parametrize(
    "extra",
    [
        {"pmra": [1.0, 2.0]},
        {"pmdec": [1.0, 2.0]},
        {"pmra": [1.0], "pmdec": [1.0, 2.0]},
        {"pmra": [1.0, "x"], "pmdec": [1.0, 2.0]},
        {"pmra": "1,2", "pmdec": [1.0, 2.0]},
        {"epoch": "J2016"},
        {"epoch": True},
    ],
)
def test_from_wire_rejects_malformed_proper_motions(extra: dict) -> None:
    payload = {"survey": "Gaia", "ra": [1.0, 2.0], "dec": [1.0, 2.0], **extra}
    with pytest.raises(InputError) as err:
        from_wire(payload)
    assert err.value.code == "invalid_catalogue"

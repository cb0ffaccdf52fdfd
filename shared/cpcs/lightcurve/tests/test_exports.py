"""Light-curve exports: every format read back, legacy arrays, SkyPortal photometry field by field."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.io import ascii as astropy_ascii
from astropy.io.votable import parse as parse_votable
from astropy.table import MaskedColumn, Table

from cpcs.lightcurve.exports import (
    COLUMNS,
    FORMATS,
    ExportRow,
    PointDetails,
    SkyPortalOptions,
    export_rows,
    legacy_arrays,
    neutralise_formula,
    render,
    skyportal_obj_id,
    skyportal_photometry,
    to_csv,
    to_ecsv,
    to_json,
    to_table,
    to_votable,
)
from cpcs.schemas import AlertOut, CalibrationOut, PointOut, TargetOut
from cpcs.science.bands import emitted_sncosmo_names

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
ALERT = AlertOut(id=7, name="ivo://Gaia16aye", ra_deg=295.00474, dec_deg=30.13149, url=None, created_at=NOW)

# SkyPortal's schema facts (see the docstring of cpcs.lightcurve.exports).
MAG_REQUIRED = {"obj_id", "instrument_id", "mjd", "filter", "magsys", "limiting_mag"}
MAG_ALLOWED = MAG_REQUIRED | {"mag", "magerr", "limiting_mag_nsigma", "origin", "altdata", "group_ids"}
FLUX_REQUIRED = {"obj_id", "instrument_id", "mjd", "filter", "magsys", "fluxerr", "zp"}
FLUX_ALLOWED = FLUX_REQUIRED | {"flux", "origin", "altdata", "group_ids"}
MAGSYSTEMS = {"ab", "vega"}


def _point(
    point_id: int,
    survey: str,
    band: str,
    mag: float,
    *,
    upper_limit: bool = False,
    limit_mag: float | None = None,
    flux: float | None = 1.0,
    flux_err: float | None = 0.05,
    mjd: float | None = 57737.81755,
    observer: str = "K. Rybicki",
) -> PointOut:
    return PointOut(
        id=point_id,
        alert_id=ALERT.id,
        alert_name=ALERT.name,
        observation_id=100 + point_id,
        calibration_id=200 + point_id,
        observer=observer,
        observatory="Ostrowik 0.6m",
        mjd=mjd,
        survey=survey,
        band=band,
        mag=mag,
        magerr=0.0 if upper_limit else 0.021,
        caliberr=0.032,
        mag_err_total=0.032 if upper_limit else math.hypot(0.021, 0.032),
        is_upper_limit=upper_limit,
        limit_mag=limit_mag,
        flux_ujy=None if upper_limit else flux,
        flux_err_ujy=flux_err,
        created_at=NOW,
    )


def _calibration(point: PointOut) -> CalibrationOut:
    return CalibrationOut(
        id=point.calibration_id,
        observation_id=point.observation_id,
        version=2,
        pipeline_version="0.1.0",
        mode="AUTO",
        params={},
        survey=point.survey,
        band=point.band,
        catalogue_release="test release",
        colour_index="BP-RP",
        zp=22.31,
        zp_err=0.004,
        colour_term=0.05,
        colour_term_err=0.01,
        spatial_order=0,
        scatter=0.03,
        intrinsic_scatter=0.01,
        n_stars=120,
        n_matched=140,
        outlier_fraction=0.02,
        alternatives=[],
        target=TargetOut(
            mag=point.mag,
            err_measurement=point.magerr,
            err_zero_point=0.01,
            err_scatter=0.03,
            err_colour=0.005,
            err_total=point.mag_err_total,
            colour_assumed=0.0,
            colour_err_assumed=0.5,
            colour_index="BP-RP",
            is_upper_limit=point.is_upper_limit,
            limit_mag=point.limit_mag,
            snr=50.0,
        ),
        created_at=NOW,
    )


POINTS = [
    _point(1, "PS1", "r", 15.234, limit_mag=19.61, flux=2970.1, flux_err=69.8),
    _point(2, "Gaia", "G", 15.871, flux=1899.5, flux_err=55.1),  # Clear, no image limit
    _point(3, "GaiaSP", "V", 19.02, upper_limit=True, limit_mag=19.02, flux_err=18.8),
    _point(4, "APASS", "g", 16.5, limit_mag=19.0, flux=912.0, flux_err=30.0),
    _point(5, "SiteStandards", "Halpha", 14.0, flux=None, flux_err=None),  # no sncosmo name
    _point(6, "PS1", "i", 15.0, mjd=None, observer="Ostrowik 0.6m"),  # no MJD
]
DETAILS = {
    1: PointDetails("Clear", _calibration(POINTS[0])),
    2: PointDetails("Clear", _calibration(POINTS[1])),
    3: PointDetails("V", _calibration(POINTS[2])),
    4: PointDetails("g'", None),
}
BASE = "https://cpcs.example.org/"


@pytest.fixture
def rows() -> list[ExportRow]:
    return export_rows(POINTS, DETAILS, base_url=BASE)


def test_rows_carry_the_names_errors_and_link(rows: list[ExportRow]) -> None:
    clear_ps1, clear_gaia, limit, apass, site, no_mjd = rows
    assert clear_ps1.calibration_url == "https://cpcs.example.org/api/v1/observations/101"
    assert (clear_ps1.filter_declared, clear_ps1.sncosmo_filter, clear_ps1.magsys) == (
        "Clear",
        "ps1::r",
        "ab",
    )
    assert (clear_gaia.sncosmo_filter, clear_gaia.magsys) == ("gaia::g", "vega")
    assert clear_gaia.filter_note == "unfiltered (Clear), calibrated to Gaia G (Gaia DR3)"
    assert (limit.sncosmo_filter, limit.magsys, limit.is_upper_limit) == ("bessellv", "vega", True)
    assert (apass.sncosmo_filter, apass.magsys, apass.filter_declared) == ("sdssg", "ab", "g'")
    assert site.sncosmo_filter is None and site.magsys is None
    assert no_mjd.mjd is None and no_mjd.filter_declared is None
    assert (clear_ps1.magerr, clear_ps1.caliberr) == (0.021, 0.032)
    assert export_rows(POINTS[:1])[0].calibration_url == "/api/v1/observations/101"


def _assert_same_values(table: Table, rows: list[ExportRow], *, masked_strings_empty: bool = False) -> None:
    assert list(table.colnames) == list(COLUMNS)
    assert len(table) == len(rows)
    for name, spec in COLUMNS.items():
        column = table[name]
        for k, row in enumerate(rows):
            expected = getattr(row, name)
            value = column[k]
            is_masked = bool(np.ma.is_masked(value))
            if expected is None:
                assert is_masked or (masked_strings_empty and value == ""), (name, k, value)
                continue
            assert not is_masked, (name, k)
            if spec.kind == "float":
                assert float(value) == expected, (name, k)
            elif spec.kind == "bool":
                assert bool(value) is expected, (name, k)
            elif spec.kind == "int":
                assert int(value) == expected, (name, k)
            else:
                assert str(value) == expected, (name, k)


def test_csv_reads_back_with_the_same_values(rows: list[ExportRow]) -> None:
    text = to_csv(to_table(ALERT, rows))
    assert text.splitlines()[0].split(",") == list(COLUMNS)
    table = Table.read(
        text,
        format="ascii.csv",
        converters={"is_upper_limit": [astropy_ascii.convert_numpy(bool)]},
    )
    _assert_same_values(table, rows)


def test_ecsv_reads_back_with_values_units_and_metadata(rows: list[ExportRow]) -> None:
    table = Table.read(to_ecsv(to_table(ALERT, rows)), format="ascii.ecsv")
    _assert_same_values(table, rows)
    assert table["mag"].unit == u.mag and table["limit_mag"].unit == u.mag
    assert table["flux_ujy"].unit == u.uJy and table["flux_err_ujy"].unit == u.uJy
    assert table["mjd"].unit == u.d and table["point_id"].unit is None
    assert table["is_upper_limit"].dtype == np.bool_
    assert "calibration error" in table["caliberr"].description.lower()
    assert table.meta["alert_name"] == ALERT.name and table.meta["upper_limit_nsigma"] == 5.0
    assert (table["flux_ujy"].quantity[0]).to(u.mJy).value == pytest.approx(2.9701)


def test_votable_reads_back_with_values_units_and_the_alert(rows: list[ExportRow]) -> None:
    body = to_votable(to_table(ALERT, rows))
    table = Table.read(io.BytesIO(body), format="votable")
    _assert_same_values(table, rows, masked_strings_empty=True)
    assert table["mag"].unit == u.mag and table["flux_ujy"].unit == u.uJy and table["mjd"].unit == u.d
    assert table["mag"].meta.get("ucd") == "phot.mag"
    params = {p.name: p for p in parse_votable(io.BytesIO(body)).get_first_table().params}
    assert params["alert_name"].value == ALERT.name and params["alert_id"].value == ALERT.id
    assert params["ra_deg"].value == pytest.approx(ALERT.ra_deg) and params["ra_deg"].unit == u.deg


def test_an_empty_light_curve_still_has_its_columns() -> None:
    table = to_table(ALERT, [])
    assert len(table) == 0 and list(table.colnames) == list(COLUMNS)
    assert len(Table.read(io.BytesIO(to_votable(table)), format="votable")) == 0
    assert len(Table.read(to_ecsv(table), format="ascii.ecsv")) == 0
    for fmt in FORMATS:
        rendered = render(fmt, ALERT, [], skyportal=SkyPortalOptions(instrument_id=1))
        assert rendered.body


def test_json_has_every_point_with_its_calibration(rows: list[ExportRow]) -> None:
    body = json.loads(json.dumps(to_json(ALERT, rows), allow_nan=False))
    assert body["alert"]["name"] == ALERT.name
    assert body["units"] == {
        "mjd": "d",
        "mag": "mag",
        "magerr": "mag",
        "caliberr": "mag",
        "mag_err_total": "mag",
        "limit_mag": "mag",
        "flux_ujy": "uJy",
        "flux_err_ujy": "uJy",
    }
    first = body["points"][0]
    assert set(first) == set(COLUMNS) | {"calibration"}
    assert first["calibration"]["zp"] == 22.31 and first["calibration"]["n_stars"] == 120
    assert first["calibration"]["survey"] == "PS1" and first["calibration"]["magsys"] == "ab"
    assert body["points"][3]["calibration"] == {"survey": "APASS", "band": "g", "magsys": "ab"}
    assert [p["point_id"] for p in body["points"]] == [1, 2, 3, 4, 5, 6]


def test_legacy_arrays_are_parallel_with_minus_one_for_limits() -> None:
    arrays = legacy_arrays(ALERT.name, POINTS)
    assert arrays["alert_name"] == ALERT.name
    keys = ("mjd", "mag", "magerr", "caliberr", "observatory", "catalog", "filter", "id")
    assert set(arrays) == {*keys, "alert_name"}
    assert all(len(arrays[key]) == len(POINTS) for key in keys)
    assert arrays["magerr"][2] == -1.0 and arrays["magerr"][0] == 0.021
    assert arrays["observatory"][0] == "Ostrowik 0.6m, K. Rybicki"
    assert arrays["observatory"][5] == "Ostrowik 0.6m"  # observer named as the observatory
    assert arrays["catalog"][:2] == ["PS1", "Gaia"] and arrays["filter"][:2] == ["r", "G"]
    assert arrays["id"] == [1, 2, 3, 4, 5, 6] and arrays["mjd"][5] is None


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_common(packet: dict[str, Any]) -> None:
    assert isinstance(packet["obj_id"], str) and packet["obj_id"]
    assert isinstance(packet["instrument_id"], int)
    assert _finite_number(packet["mjd"])
    assert packet["filter"] in emitted_sncosmo_names()
    assert packet["magsys"] in MAGSYSTEMS
    altdata = packet["altdata"]
    assert isinstance(altdata, dict)
    assert all(v is None or isinstance(v, str | int | float | bool) for v in altdata.values()), altdata
    assert altdata["calibration_url"].endswith(f"/api/v1/observations/{altdata['cpcs_observation_id']}")


def check_mag_packet(packet: dict[str, Any]) -> None:
    """SkyPortal's PhotMagFlexible / PhotometryMag facts, field by field."""
    assert MAG_REQUIRED <= set(packet) <= MAG_ALLOWED, set(packet) ^ MAG_ALLOWED
    assert all(packet[key] is not None for key in MAG_REQUIRED)
    _check_common(packet)
    assert _finite_number(packet["limiting_mag"])
    assert (packet["mag"] is None) == (packet["magerr"] is None)
    if packet["mag"] is not None:
        assert _finite_number(packet["mag"]) and _finite_number(packet["magerr"]) and packet["magerr"] > 0
    assert packet["limiting_mag_nsigma"] == 5.0


def check_flux_packet(packet: dict[str, Any]) -> None:
    """SkyPortal's PhotFluxFlexible / PhotometryFlux facts, field by field."""
    assert FLUX_REQUIRED <= set(packet) <= FLUX_ALLOWED, set(packet) ^ FLUX_ALLOWED
    assert all(packet[key] is not None for key in FLUX_REQUIRED)
    _check_common(packet)
    assert packet["magsys"] == "ab" and packet["zp"] == 23.9
    assert _finite_number(packet["fluxerr"]) and packet["fluxerr"] > 0
    assert packet["flux"] is None or _finite_number(packet["flux"])


def test_skyportal_mag_packets(rows: list[ExportRow]) -> None:
    options = SkyPortalOptions(instrument_id=3, origin="CPCS test", group_ids=[1, 2])
    photometry = skyportal_photometry(rows, "mag", options)
    for packet in photometry.packets:
        check_mag_packet(packet)
    by_point = {p["altdata"]["cpcs_point_id"]: p for p in photometry.packets}
    assert sorted(by_point) == [1, 2, 3, 4]
    assert [(s.point_id, s.reason) for s in photometry.skipped] == [(5, "no_sncosmo_bandpass"), (6, "no_mjd")]

    detection = by_point[1]
    assert detection["obj_id"] == "Gaia16aye" and detection["instrument_id"] == 3
    assert (detection["filter"], detection["magsys"]) == ("ps1::r", "ab")
    assert detection["mag"] == 15.234 and detection["magerr"] == pytest.approx(math.hypot(0.021, 0.032))
    assert detection["limiting_mag"] == 19.61 and detection["altdata"]["limiting_mag_source"] == "image"
    assert detection["origin"] == "CPCS test" and detection["group_ids"] == [1, 2]
    assert detection["altdata"]["calibration_zp"] == 22.31
    assert detection["altdata"]["magerr_measurement"] == 0.021
    assert detection["altdata"]["magerr_calibration"] == 0.032

    limit = by_point[3]
    assert limit["mag"] is None and limit["magerr"] is None and limit["limiting_mag"] == 19.02
    assert (limit["filter"], limit["magsys"]) == ("bessellv", "vega")
    assert limit["altdata"]["is_upper_limit"] is True

    # No image limit: the 5-sigma limit implied by the target's own noise (S/N = 1.0857 / magerr).
    no_limit = by_point[2]
    snr = 2.5 / math.log(10) / 0.021
    assert no_limit["limiting_mag"] == pytest.approx(15.871 + 2.5 * math.log10(snr / 5))
    assert no_limit["altdata"]["limiting_mag_source"] == "target_noise"


def test_clear_calibrated_to_gaia_g_is_a_gaia_g_point(rows: list[ExportRow]) -> None:
    packet = next(
        p
        for p in skyportal_photometry(rows, "mag", SkyPortalOptions(1)).packets
        if p["altdata"]["cpcs_point_id"] == 2
    )
    assert (packet["filter"], packet["magsys"]) == ("gaia::g", "vega")
    assert packet["altdata"]["instrument_filter"] == "Clear" and packet["altdata"]["unfiltered"] is True
    assert packet["altdata"]["filter_note"] == "unfiltered (Clear), calibrated to Gaia G (Gaia DR3)"
    for kind in ("mag", "flux"):
        emitted = {p["filter"] for p in skyportal_photometry(rows, kind, SkyPortalOptions(1)).packets}
        assert not any("clear" in name for name in emitted)


def test_skyportal_flux_packets(rows: list[ExportRow]) -> None:
    photometry = skyportal_photometry(rows, "flux", SkyPortalOptions(instrument_id=3))
    for packet in photometry.packets:
        check_flux_packet(packet)
    by_point = {p["altdata"]["cpcs_point_id"]: p for p in photometry.packets}
    assert by_point[1]["flux"] == 2970.1 and by_point[1]["fluxerr"] == 69.8
    # A Vega band leaves as AB microjansky: magsys "ab" for the flux, the Vega magnitude in altdata.
    assert by_point[2]["filter"] == "gaia::g" and by_point[2]["magsys"] == "ab"
    assert by_point[2]["altdata"]["calibration_magsys"] == "vega" and by_point[2]["altdata"]["mag"] == 15.871
    assert by_point[3]["flux"] is None and by_point[3]["fluxerr"] == 18.8
    assert "group_ids" not in by_point[1]
    assert {s.point_id for s in photometry.skipped} == {5, 6}


def test_the_columnar_body_has_one_entry_a_point(rows: list[ExportRow]) -> None:
    for kind in ("mag", "flux"):
        photometry = skyportal_photometry(rows, kind, SkyPortalOptions(3, group_ids=[4]))
        body = photometry.flexible()
        assert body["group_ids"] == [4]
        columns = {key: value for key, value in body.items() if key != "group_ids"}
        assert all(isinstance(value, list) and len(value) == 4 for value in columns.values())
        allowed = MAG_ALLOWED if kind == "mag" else FLUX_ALLOWED
        assert (MAG_REQUIRED if kind == "mag" else FLUX_REQUIRED) <= set(body) <= allowed
        for k in range(4):  # each column entry is the packet's value
            packet = {key: value[k] for key, value in columns.items()}
            (check_mag_packet if kind == "mag" else check_flux_packet)({**packet, "group_ids": [4]})
        json.dumps(body, allow_nan=False)


@pytest.mark.parametrize(
    ("name", "obj_id"),
    [
        ("ivo://Gaia16aye", "Gaia16aye"),
        ("ivo://nasa.gsfc.gcn/Fermi#GBM_Trigger_1", "GBM_Trigger_1"),
        ("AT 2024abc", "AT_2024abc"),
    ],
)
def test_skyportal_obj_id_from_the_alert_name(name: str, obj_id: str) -> None:
    assert skyportal_obj_id(name) == obj_id


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_render_names_the_file_and_its_media_type(fmt: str) -> None:
    rendered = render(fmt, ALERT, POINTS, DETAILS, base_url=BASE, skyportal=SkyPortalOptions(instrument_id=3))
    spec = FORMATS[fmt]
    assert rendered.media_type == spec.media_type
    assert rendered.filename.startswith("cpcs-Gaia16aye-lightcurve") and rendered.filename.endswith(
        f".{spec.extension}"
    )
    if fmt.startswith("skyportal"):
        assert rendered.headers == {"X-CPCS-Skipped-Points": "5:no_sncosmo_bandpass,6:no_mjd"}
        assert json.loads(rendered.body)["obj_id"][0] == "Gaia16aye"
    if spec.media_type == "application/json":
        json.loads(rendered.body)


def test_render_refuses_unknown_formats_and_skyportal_without_an_instrument() -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        render("fits", ALERT, POINTS)
    with pytest.raises(ValueError, match="instrument"):
        render("skyportal-mag", ALERT, POINTS)


def test_a_non_finite_value_never_reaches_json() -> None:
    odd = _point(9, "PS1", "r", 15.0).model_copy(update={"caliberr": float("nan")})
    body = json.loads(render("json", ALERT, [odd]).body)
    assert body["points"][0]["caliberr"] is None


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("  =1", "'  =1"),
        ("-1.5", "-1.5"),
        ("+3e2", "+3e2"),
        ("-", "'-"),
        ("V", "V"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise_formula(text: str, written: str) -> None:
    assert neutralise_formula(text) == written


def test_csv_neutralises_text_cells_but_not_numbers() -> None:
    table = Table(
        {
            "mag": [-1.5, 15.2],
            "filter_declared": ["=1+2", "-1.5"],
            "comment": MaskedColumn(["@x", ""], mask=[False, True]),
        }
    )
    lines = to_csv(table).splitlines()
    assert lines[1] == "-1.5,'=1+2,'@x"
    assert lines[2] == "15.2,-1.5,"
    assert str(table["filter_declared"][0]) == "=1+2"  # the table itself is untouched

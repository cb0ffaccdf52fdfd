"""GET /api/v1/alerts/{id}/export and /api/v1/filters against the embedded system.

Three real uploads of a simulated field around Gaia16aye: a Clear frame calibrated to PS1 r, a V frame
calibrated to GaiaSP V, and a V frame without the target (an upper limit).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.io import ascii as astropy_ascii
from astropy.table import Table

from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import simulate_field, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

ALERT = "ivo://Gaia16aye"
FORMAT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "ecsv": "text/plain; charset=utf-8",
    "votable": "application/x-votable+xml",
    "legacy": "application/json",
    "skyportal-mag": "application/json",
    "skyportal-flux": "application/json",
}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Curve:
    system: System
    alert_id: int
    points: list[dict[str, Any]]  # /api/v1/alerts/{id}/lightcurve, the reference

    def export(self, fmt: str, token: str | None = None, **params: Any) -> Any:
        headers = _auth(token or self.system.observer_token)
        return self.system.client.get(
            f"/api/v1/alerts/{self.alert_id}/export", params={"format": fmt, **params}, headers=headers
        )


@pytest.fixture(scope="module")
def curve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Curve]:
    tmp_path: Path = tmp_path_factory.mktemp("exports")
    settings = Settings(data_dir=tmp_path / "data", retry_base_s=0.05, outbox_poll_s=0.05, legacy_wait_s=30)
    system = start_system(settings)
    try:
        field = simulate_field(7, n_stars=400, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
        system.import_field(field, tmp_path / "refs")
        created = system.client.post(
            "/api/v1/alerts",
            json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
            headers=_auth(system.observer_token),
        )
        assert created.status_code == 201, created.text
        alert_id = created.json()["id"]
        everything = np.arange(field.ra_deg.size)
        assert field.target is not None and field.target.source_index is not None
        system.calibrate_rows(ALERT, field, everything, mjd="57737.5", filter="Clear", force_filter="PS1/r")
        system.calibrate_rows(
            ALERT, field, everything[::-1], mjd="57738.5", filter="V", force_filter="GaiaSP/V"
        )
        without_target = everything[everything != field.target.source_index]
        system.calibrate_rows(
            ALERT, field, without_target, mjd="57739.5", filter="V", force_filter="GaiaSP/V"
        )
        reference = system.client.get(
            f"/api/v1/alerts/{alert_id}/lightcurve", headers=_auth(system.observer_token)
        )
        assert reference.status_code == 200
        yield Curve(system, alert_id, reference.json()["points"])
    finally:
        system.client.close()
        system.assembly.stop()


def test_the_three_points_are_what_the_exports_describe(curve: Curve) -> None:
    assert [(p["survey"], p["band"], p["is_upper_limit"]) for p in curve.points] == [
        ("PS1", "r", False),
        ("GaiaSP", "V", False),
        ("GaiaSP", "V", True),
    ]


def test_downloads_need_a_token(curve: Curve) -> None:
    client = curve.system.client
    for fmt in FORMAT_TYPES:
        anonymous = client.get(f"/api/v1/alerts/{curve.alert_id}/export", params={"format": fmt})
        assert anonymous.status_code == 401 and anonymous.json()["error"]
        assert curve.export(fmt, token="not-a-token").status_code == 401


@pytest.mark.parametrize("fmt", list(FORMAT_TYPES))
def test_every_format_has_its_media_type_and_a_file_name(curve: Curve, fmt: str) -> None:
    response = curve.export(fmt, instrument_id=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FORMAT_TYPES[fmt]
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="cpcs-Gaia16aye-lightcurve')


def _check_table(curve: Curve, table: Table) -> None:
    assert list(table["point_id"]) == [p["id"] for p in curve.points]
    for k, point in enumerate(curve.points):
        assert table["mag"][k] == point["mag"] and table["magerr"][k] == point["magerr"]
        assert (
            table["caliberr"][k] == point["caliberr"] and table["mag_err_total"][k] == point["mag_err_total"]
        )
        assert table["mjd"][k] == point["mjd"] and bool(table["is_upper_limit"][k]) is point["is_upper_limit"]
        assert str(table["observer"][k]) == point["observer"] == "K. Rybicki"
        assert str(table["observatory"][k]) == point["observatory"]
        if point["flux_ujy"] is None:
            assert np.ma.is_masked(table["flux_ujy"][k])
        else:
            assert table["flux_ujy"][k] == point["flux_ujy"]
        assert (
            str(table["calibration_url"][k])
            == f"{curve.system.context.settings.public_base_url}api/v1/observations/{point['observation_id']}"
        )
    assert [str(v) for v in table["filter_declared"]] == ["Clear", "V", "V"]
    assert [str(v) for v in table["sncosmo_filter"]] == ["ps1::r", "bessellv", "bessellv"]
    assert [str(v) for v in table["magsys"]] == ["ab", "vega", "vega"]
    assert str(table["filter_note"][0]) == "unfiltered (Clear), calibrated to r (Pan-STARRS1)"


def test_csv_reads_back(curve: Curve) -> None:
    text = curve.export("csv").text
    table = Table.read(
        text, format="ascii.csv", converters={"is_upper_limit": [astropy_ascii.convert_numpy(bool)]}
    )
    _check_table(curve, table)


def test_ecsv_reads_back_with_units(curve: Curve) -> None:
    table = Table.read(curve.export("ecsv").text, format="ascii.ecsv")
    _check_table(curve, table)
    assert table["mag"].unit == u.mag and table["flux_ujy"].unit == u.uJy and table["mjd"].unit == u.d
    assert table.meta["alert_name"] == ALERT and table.meta["alert_id"] == curve.alert_id


def test_votable_reads_back_with_units(curve: Curve) -> None:
    table = Table.read(io.BytesIO(curve.export("votable").content), format="votable")
    _check_table(curve, table)
    assert table["mag"].unit == u.mag and table["flux_err_ujy"].unit == u.uJy and table["mjd"].unit == u.d


def test_json_points_link_to_their_calibration_records(curve: Curve) -> None:
    body = curve.export("json").json()
    assert body["alert"]["name"] == ALERT and len(body["points"]) == 3
    for point, reference in zip(body["points"], curve.points, strict=True):
        assert point["point_id"] == reference["id"] and point["mag"] == reference["mag"]
        assert point["calibration"]["n_stars"] >= 5 and point["calibration"]["version"] >= 1
        record = curve.system.client.get(point["calibration_url"], headers=_auth(curve.system.other_token))
        assert record.status_code == 200 and record.json()["id"] == reference["observation_id"]
        assert record.json()["calibration"]["id"] == point["calibration_id"]


def test_legacy_format_is_the_legacy_endpoint(curve: Curve) -> None:
    exported = curve.export("legacy").json()
    legacy = curve.system.client.get(
        "/followup/get_alert_lc_data",
        params={"alert_id": curve.alert_id, "hashtag": curve.system.other_token},
    ).json()
    assert exported == legacy
    assert exported["magerr"][2] == -1.0 and exported["catalog"] == ["PS1", "GaiaSP", "GaiaSP"]


def test_skyportal_needs_the_destination_instrument(curve: Curve) -> None:
    for fmt in ("skyportal-mag", "skyportal-flux"):
        response = curve.export(fmt)
        assert response.status_code == 422 and response.json()["error"] == "missing_instrument_id"
    bad = curve.export("skyportal-mag", instrument_id=3, obj_id="no spaces please")
    assert bad.status_code == 422


def test_skyportal_mag_body(curve: Curve) -> None:
    response = curve.export("skyportal-mag", instrument_id=3, obj_id="ZTF16aaaaaaa", group_ids=[2, 5])
    assert "x-cpcs-skipped-points" not in response.headers
    body = response.json()
    assert body["group_ids"] == [2, 5]
    assert set(body) == {
        "obj_id",
        "instrument_id",
        "mjd",
        "filter",
        "magsys",
        "origin",
        "mag",
        "magerr",
        "limiting_mag",
        "limiting_mag_nsigma",
        "altdata",
        "group_ids",
    }
    assert body["obj_id"] == ["ZTF16aaaaaaa"] * 3 and body["instrument_id"] == [3] * 3
    assert body["filter"] == ["ps1::r", "bessellv", "bessellv"] and body["magsys"] == ["ab", "vega", "vega"]
    assert body["mjd"] == [57737.5, 57738.5, 57739.5] and body["origin"] == ["cpcs"] * 3
    assert body["mag"][:2] == [p["mag"] for p in curve.points[:2]] and body["mag"][2] is None
    assert body["magerr"][:2] == [p["mag_err_total"] for p in curve.points[:2]] and body["magerr"][2] is None
    assert body["limiting_mag"][2] == curve.points[2]["limit_mag"]
    assert all(isinstance(v, float) for v in body["limiting_mag"])
    clear = body["altdata"][0]
    assert clear["instrument_filter"] == "Clear" and clear["unfiltered"] is True
    assert clear["cpcs_point_id"] == curve.points[0]["id"] and clear["calibration_survey"] == "PS1"
    base = curve.system.context.settings.public_base_url
    assert clear["calibration_url"] == f"{base}api/v1/observations/{curve.points[0]['observation_id']}"
    assert all(not isinstance(v, dict | list) for altdata in body["altdata"] for v in altdata.values())


def test_skyportal_flux_body(curve: Curve) -> None:
    body = curve.export("skyportal-flux", instrument_id=3).json()
    assert body["obj_id"] == ["Gaia16aye"] * 3 and "group_ids" not in body
    assert body["magsys"] == ["ab"] * 3 and body["zp"] == [23.9] * 3
    assert body["flux"][:2] == [p["flux_ujy"] for p in curve.points[:2]] and body["flux"][2] is None
    assert body["fluxerr"] == [p["flux_err_ujy"] for p in curve.points]
    json.dumps(body, allow_nan=False)


def test_unknown_alerts_and_formats(curve: Curve) -> None:
    client, token = curve.system.client, curve.system.observer_token
    assert client.get("/api/v1/alerts/9999/export", headers=_auth(token)).status_code == 404
    assert curve.export("fits").status_code == 422


def test_the_filter_registry(curve: Curve) -> None:
    client = curve.system.client
    registry = client.get("/api/v1/filters").json()
    standard = {b["name"]: b for b in registry["standard_bands"]}
    assert standard["V"]["sncosmo"] == "bessellv" and standard["Clear"]["sncosmo"] is None
    survey = {(b["survey"], b["band"]): b for b in registry["survey_bands"]}
    assert survey[("PS1", "r")]["sncosmo"] == "ps1::r" and survey[("Gaia", "G")]["sncosmo"] == "gaia::g"
    assert registry["aliases"]["rc"] == "R"
    resolved = client.get("/api/v1/filters", params={"name": "Rc"}).json()["resolved"]
    assert resolved["name"] == "R" and resolved["sncosmo"] == "bessellr" and resolved["magsys"] == "vega"
    unknown = client.get("/api/v1/filters", params={"name": "Halpha"})
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_filter"


def test_the_openapi_document_lists_every_media_type(curve: Curve) -> None:
    document = curve.system.client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/alerts/{alert_id}/export"]["get"]
    documented = set(operation["responses"]["200"]["content"])
    assert {media_type.split(";")[0] for media_type in FORMAT_TYPES.values()} == documented
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    # aavso (text/plain, one observer's own points) is tested in test_community.py.
    assert set(parameters["format"]["schema"]["enum"]) == set(FORMAT_TYPES) | {"aavso"}
    assert parameters["instrument_id"]["required"] is False


def test_csv_cells_that_would_run_as_formulas_are_neutralised(curve: Curve) -> None:
    """An observer named like a formula uploads with a formula for a filter: the CSV defuses both."""
    system = curve.system
    added = system.client.post(
        "/api/v1/users",
        json={
            "name": '=HYPERLINK("http://evil.example")',
            "observatory": "@SUM(1+1)",
            "lon_deg": 1,
            "lat_deg": 2,
        },
        headers=_auth(system.admin_token),
    )
    assert added.status_code == 201, added.text
    field = simulate_field(7, n_stars=400, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
    # (a comment makes these bytes a new file, not a copy of the first upload)
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr) + "# frame 4\n"
    accepted = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "exptime_s": "60", "mjd": "57740.5", "filter": "-2+3", "force_filter": "PS1/r"},
        files={"file": ("frame.cat", catalogue.encode())},
        headers=_auth(added.json()["token"]),
    )
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 60
    while system.client.get(accepted.json()["status_url"], headers=_auth(system.observer_token)).json()[
        "status"
    ] not in ("calibrated", "failed", "error"):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    final = system.client.get(accepted.json()["status_url"], headers=_auth(system.observer_token)).json()
    assert final["status"] == "calibrated", final
    table = Table.read(curve.export("csv").text, format="ascii.csv")
    row = table[list(table["mjd"]).index(57740.5)]
    assert str(row["observer"]) == '\'=HYPERLINK("http://evil.example")'
    assert str(row["observatory"]) == "'@SUM(1+1)"
    assert str(row["filter_declared"]) == "'-2+3"
    assert str(row["filter_note"]).startswith("'-2+3")
    assert float(row["mag"]) > 0 and table["mag"].dtype.kind == "f"  # numbers stay numbers
    # ECSV and JSON carry the values as sent.
    ecsv = Table.read(curve.export("ecsv").text, format="ascii.ecsv")
    assert str(ecsv[list(ecsv["mjd"]).index(57740.5)]["filter_declared"]) == "-2+3"

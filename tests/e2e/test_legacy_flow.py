"""The CPCS manual's flow, through the legacy endpoints of the embedded system (all services, one process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cpcs.db.models import Observation, Point, Upload
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System

ALERT = "ivo://Gaia16aye"


def _catalogue(field: SimulatedField) -> bytes:
    return to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()


def _upload(system: System, data: bytes, token: str, **fields: str):
    form = {
        "matchDist": "2",
        "MJD": "57737.81755",
        "expTime": "120",
        "EventID": ALERT,
        "forceFilter": "no",
        "hashtag": token,
        "outputFormat": "json",
        "noPlot": "1",
        "dryRun": "0",
        **fields,
    }
    return system.client.post("/followup/cgi/upload", data=form, files={"sexCat": ("frame_V.cat", data)})


def _counts(system: System) -> tuple[int, int, int]:
    with system.context.db.transaction() as session:
        return (
            session.scalar(select(func.count(Observation.id))) or 0,
            session.scalar(select(func.count(Point.id)).where(Point.deleted_at.is_(None))) or 0,
            session.scalar(select(func.count(Upload.id))) or 0,
        )


@pytest.fixture
def with_field(embedded: System, gaia16aye_field: SimulatedField, tmp_path: Path) -> System:
    """The embedded system with the alert created and the field's reference stars imported."""
    _new_event(embedded)
    embedded.import_field(gaia16aye_field, tmp_path / "refs")
    return embedded


def _new_event(system: System) -> None:
    response = system.client.post(
        "/followup/newevent",
        data={
            "ivorn": ALERT,
            "ra": str(FIELD_RA_DEG),
            "dec": str(FIELD_DEC_DEG),
            "hashtag": system.observer_token,
        },
    )
    assert response.status_code == 201, response.text


def test_manual_flow(with_field: System, gaia16aye_field: SimulatedField) -> None:
    system, field = with_field, gaia16aye_field

    response = _upload(system, _catalogue(field), system.observer_token)
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) >= {
        "mag",
        "mag_err",
        "ra",
        "dec",
        "zeropoint",
        "outlier_fraction",
        "scatter",
        "npoints",
        "followup_id",
        "filter",
        "survey",
        "image_link",
    }
    # AUTO picks the band closest to the instrument's: the smallest true colour term (R). PS1's R,
    # derived from g, r, i (Tonry et al. 2012), is nearly the instrument's band too (colour term
    # 0.12 - 0.11 on g - r) and may win it by the target's calibration error.
    closest = min(field.truth.bands, key=lambda b: abs(b.colour_term))
    assert result["filter"] == closest.band and result["survey"] in (closest.survey, "PS1")
    target = field.target
    assert target is not None
    true_mag = target.true_inst_mag + closest.zp + closest.colour_term * target.true_colour
    assert abs(result["mag"] - true_mag) < 0.05
    assert 0 < result["mag_err"] < 0.1
    assert abs(-result["zeropoint"] - closest.zp) < 0.05  # legacy sign: instrumental minus catalogue
    assert result["npoints"] >= 50
    point_id = result["followup_id"]
    assert isinstance(point_id, int)

    lc = system.client.get(
        "/followup/get_alert_lc_data", params={"alert_name": ALERT, "hashtag": system.other_token}
    )
    assert lc.status_code == 200
    data = lc.json()
    assert data["id"] == [point_id] and data["alert_name"] == ALERT
    assert data["filter"] == [closest.band] and data["catalog"] == [result["survey"]]
    assert data["mjd"] == [57737.81755]
    assert data["magerr"][0] > 0 and data["caliberr"][0] > 0

    # The same bytes again: the existing result, no second point.
    again = _upload(system, _catalogue(field), system.observer_token)
    assert again.status_code == 200 and again.json()["followup_id"] == point_id
    assert _counts(system)[1] == 1

    # A dry run calibrates but adds no point.
    dry = _upload(system, _catalogue(field), system.observer_token, dryRun="1")
    assert dry.status_code == 200 and dry.json()["followup_id"] is None
    assert _counts(system)[1] == 1

    listing = system.client.get("/followup/list_of_alerts", params={"format": "json", "observed_only": 1})
    assert [a["ivorn"] for a in listing.json()["alerts"]] == [ALERT]
    assert listing.json()["alerts"][0]["nfollowup"] == 1

    # Only the uploader deletes a point.
    denied = system.client.post(
        "/followup/cgi/delpoint", data={"followupid": point_id, "hashtag": system.other_token}
    )
    assert denied.status_code == 403
    deleted = system.client.post(
        "/followup/cgi/delpoint", data={"followupid": point_id, "hashtag": system.observer_token}
    )
    assert deleted.status_code == 200
    lc = system.client.get(
        "/followup/get_alert_lc_data", params={"alert_name": ALERT, "hashtag": system.observer_token}
    )
    assert lc.json()["id"] == []


def test_forced_filter_and_match_radius(with_field: System, gaia16aye_field: SimulatedField) -> None:
    system, field = with_field, gaia16aye_field
    response = _upload(
        system, _catalogue(field), system.observer_token, forceFilter="GaiaSP/V", matchDist="4"
    )
    assert response.status_code == 200, response.text
    assert (response.json()["survey"], response.json()["filter"]) == ("GaiaSP", "V")
    anyr = _upload(system, _catalogue(field), system.observer_token, forceFilter="any/i")
    assert anyr.status_code == 200 and anyr.json()["filter"] == "i"
    # Same bytes, other parameters: new calibration versions of one observation, still one point.
    assert _counts(system)[:2] == (1, 1)
    missing = _upload(system, _catalogue(field), system.observer_token, forceFilter="SDSS/u")
    assert missing.status_code == 422
    assert missing.json()["error"] == "forced_band_unavailable"


def test_upper_limit_when_target_not_detected(embedded: System, tmp_path: Path) -> None:
    system = embedded
    field = simulate_field(11, n_stars=400, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="undetected")
    _new_event(system)
    system.import_field(field, tmp_path / "refs")
    response = _upload(system, _catalogue(field), system.observer_token)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["mag_err"] == -1
    assert abs(result["mag"] - field.truth.limit_mag_5sigma) < 0.3
    lc = system.client.get(
        "/followup/get_alert_lc_data", params={"alert_id": 1, "hashtag": system.observer_token}
    )
    assert lc.json()["magerr"] == [-1.0]


def test_bad_uploads_get_4xx_and_store_nothing(with_field: System, gaia16aye_field: SimulatedField) -> None:
    system, field = with_field, gaia16aye_field
    good = _catalogue(field)
    far = simulate_field(3, ra_deg=10.0, dec_deg=-40.0)
    cases = {
        "no token": (good, "", {}, 401),
        "wrong token": (good, "not-a-token", {}, 401),
        "unknown alert": (good, None, {"EventID": "ivo://Gaia99zzz"}, 404),
        "missing columns": (b"# 1 MAG_AUTO\n# 2 MAGERR_AUTO\n12.0 0.01\n", None, {}, 422),
        "empty file": (b"", None, {}, 422),
        "binary junk": (bytes(range(256)) * 10, None, {}, 422),
        "too few stars": (b"\n".join(good.splitlines()[:7]), None, {}, 422),
        "not near the alert": (_catalogue(far), None, {}, 422),
        "JD instead of MJD": (good, None, {"MJD": "2457737.5"}, 422),
        "bad match radius": (good, None, {"matchDist": "abc"}, 422),
        "bad force filter": (good, None, {"forceFilter": "APASS"}, 422),
        "bad output format": (good, None, {"outputFormat": "xml"}, 422),
    }
    for name, (data, token, fields, status) in cases.items():
        response = _upload(system, data, system.observer_token if token is None else token, **fields)
        assert response.status_code == status, (name, response.status_code, response.text)
        body = response.json()
        assert body["error"] and body["message"], name
        assert "Traceback" not in response.text
    assert _counts(system) == (0, 0, 0)
    assert not any((system.context.settings.uploads_dir).rglob("*")) or not any(
        p.is_file() for p in system.context.settings.uploads_dir.rglob("*")
    )


def test_the_same_upload_sent_at_once_makes_one_point(
    with_field: System, gaia16aye_field: SimulatedField
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    system, field = with_field, gaia16aye_field
    data = _catalogue(field)
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: _upload(system, data, system.observer_token), range(4)))
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert len({r.json()["followup_id"] for r in responses}) == 1
    assert _counts(system) == (1, 1, 1)


def test_dry_runs_expire(with_field: System, gaia16aye_field: SimulatedField) -> None:
    import datetime as dt

    from cpcs.domain.observations import purge_expired_dry_runs

    system, field = with_field, gaia16aye_field
    assert _upload(system, _catalogue(field), system.observer_token, dryRun="1").status_code == 200
    assert _upload(system, _catalogue(field), system.observer_token).status_code == 200
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=system.context.settings.dry_run_ttl_hours + 1)
    with system.context.db.transaction() as session:
        assert purge_expired_dry_runs(session) == 0  # not expired yet
        assert purge_expired_dry_runs(session, later) == 1
    assert _counts(system)[:2] == (1, 1)  # the stored observation and its point stay


def test_fits_table_and_ldac_uploads(with_field: System, gaia16aye_field: SimulatedField) -> None:
    from cpcs.simulation.catalogue_files import to_fits_ldac, to_fits_table

    system, field = with_field, gaia16aye_field
    table = to_fits_table(field.ra_deg, field.dec_deg, field.mag, field.magerr)
    header = {"DATE-OBS": "2016-12-15T19:40:00", "EXPTIME": 120.0, "FILTER": "V"}
    ldac = to_fits_ldac(field.ra_deg, field.dec_deg, field.mag + 0.001, field.magerr, header)
    ascii_result = _upload(system, _catalogue(field), system.observer_token).json()
    table_result = _upload(system, table, system.observer_token, dryRun="1").json()
    assert abs(table_result["mag"] - ascii_result["mag"]) < 0.005
    ldac_response = _upload(system, ldac, system.observer_token, MJD="")
    assert ldac_response.status_code == 200, ldac_response.text
    observation = system.client.get(
        ldac_response.json()["image_link"], headers={"Authorization": f"Bearer {system.observer_token}"}
    ).json()
    # MJD, exposure and filter came from the LDAC image header (mid-exposure).
    assert abs(observation["mjd"] - (57737.81944 + 60 / 86400)) < 1e-4
    assert observation["exptime_s"] == 120.0 and observation["filter_declared"] == "V"
    assert observation["source_summary"]["format"] == "fits_ldac"

"""Known Solar System bodies: SkyBoT's answer parsed (recorded, served over a real local socket),
offline and a service that does not answer in time give a note, never a hang or an exception."""

from __future__ import annotations

import time
from pathlib import Path

from astropy.wcs import WCS

from cpcs.catalogs.solar_system import check_candidates, frame_cone, known_bodies, nearest_body
from cpcs.testing.recorded_http import RecordedAnswer, recorded_http

RECORDED = (Path(__file__).parent / "data" / "skybot_conesearch.xml").read_bytes()
MJD = 61000.0


def test_the_recorded_answer_is_read_and_matched() -> None:
    answer = RecordedAnswer(RECORDED, "application/x-votable+xml")
    with recorded_http({"/skybot": answer}) as server:
        check = known_bodies(150.1, 2.2, 0.1, MJD, online=True, timeout_s=5, url=f"{server.url}/skybot")
    assert check.status == "checked" and check.note is None, check.note
    ((path, query),) = server.requests
    assert path == "/skybot"
    assert float(query["-ra"]) == 150.1 and float(query["-dec"]) == 2.2
    assert float(query["-rd"]) == 0.1 and float(query["-ep"]) == MJD + 2400000.5
    numbered, unnumbered = check.bodies
    assert (numbered.name, numbered.number, numbered.kind) == ("1997 XK4", 48213, "MB>Middle")
    assert abs(numbered.ra_deg - 150.1) < 1e-6 and abs(numbered.dec_deg - 2.21) < 1e-6
    assert numbered.v_mag == 18.7 and unnumbered.number is None
    # 1.8" from the numbered body: that one; 20" off: nothing (its 0.21" error gives a 5" radius).
    match = nearest_body(check.bodies, 150.1 + 0.0005, 2.21)
    assert match is not None and match[0].name == "1997 XK4" and abs(match[1] - 1.8) < 0.05
    assert nearest_body(check.bodies, 150.1, 2.21 + 20 / 3600) is None
    # The faint one's 12.5" uncertainty widens its radius to 37.5".
    near_faint = nearest_body(check.bodies, 150.13, 2.15 + 30 / 3600)
    assert near_faint is not None and near_faint[0].name == "2019 QE14"
    assert check.record()["bodies"][0]["name"] == "1997 XK4"


def test_offline_is_a_note_without_a_request() -> None:
    with recorded_http({}) as server:
        check = known_bodies(150.1, 2.2, 0.1, MJD, online=False, timeout_s=5, url=f"{server.url}/skybot")
    assert server.requests == []
    assert check.status == "offline" and check.bodies == ()
    assert check.note is not None and "offline" in check.note and "CPCS_CATALOG_ONLINE" in check.note


def test_a_service_that_does_not_answer_in_time_is_a_note() -> None:
    slow = RecordedAnswer(RECORDED, "application/x-votable+xml", delay_s=5.0)
    with recorded_http({"/skybot": slow}) as server:
        started = time.perf_counter()
        check = known_bodies(150.1, 2.2, 0.1, MJD, online=True, timeout_s=0.5, url=f"{server.url}/skybot")
        waited = time.perf_counter() - started
    assert waited < 2.0, waited
    assert check.status == "unavailable" and check.bodies == ()
    assert check.note is not None and "did not answer" in check.note and "timed out" in check.note.lower()


def test_a_service_error_and_no_time_are_notes() -> None:
    broken = RecordedAnswer(b"<html>maintenance</html>", "text/html", status=503)
    with recorded_http({"/skybot": broken}) as server:
        check = known_bodies(150.1, 2.2, 0.1, MJD, online=True, timeout_s=2, url=f"{server.url}/skybot")
    assert check.status == "unavailable" and "HTTPError" in (check.note or "")
    untimed = known_bodies(150.1, 2.2, 0.1, None, online=True, timeout_s=2, url="http://127.0.0.1:9/")
    assert untimed.status == "unavailable" and "no time" in (untimed.note or "")


def test_candidates_on_a_known_body_are_marked_and_refused() -> None:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [512.5, 512.5]
    wcs.wcs.cdelt = [-0.4 / 3600, 0.4 / 3600]
    cone = frame_cone(wcs, (1024, 1024))
    assert abs(cone[0] - 150.1) < 1e-6 and abs(cone[2] - 0.4 * 512 * 2**0.5 / 3600) < 1e-3
    on_body = {"ra_deg": 150.1 + 1 / 3600, "dec_deg": 2.21, "reasons": [], "accepted": True}
    elsewhere = {"ra_deg": 150.08, "dec_deg": 2.19, "reasons": [], "accepted": True}
    answer = RecordedAnswer(RECORDED, "application/x-votable+xml")
    with recorded_http({"/skybot": answer}) as server:
        record = check_candidates(
            [on_body, elsewhere], cone, MJD, online=True, timeout_s=5, url=f"{server.url}/skybot"
        )
    assert record is not None and record["status"] == "checked" and len(record["bodies"]) == 2
    assert on_body["reasons"] == ["known_solar_system_object"] and on_body["accepted"] is False
    assert on_body["known_object"]["name"] == "1997 XK4" and on_body["known_object"]["distance_arcsec"] < 1.5
    assert elsewhere["reasons"] == [] and elsewhere["accepted"] is True and "known_object" not in elsewhere
    assert check_candidates([], cone, MJD, online=True, timeout_s=5, url=f"{server.url}/skybot") is None

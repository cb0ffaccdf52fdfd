"""Every malformed upload of the corpus gets a 4xx that says what to fix, and leaves nothing behind.

Each file of :mod:`tests.badinput.corpus` goes through both doors (the legacy ``/followup/cgi/upload``
and ``POST /api/v1/uploads``), each bad form field through its own. Every answer must be the
expected 4xx with a JSON body ``{"error": code, "message": ...}`` and no stack trace; after the
whole corpus there is no observation, upload or calibration request, no file in the upload store
(its staging folder empty), and nothing new or changed outside the data folder.

What the door cannot see is tested after it: a frame of NaN or infinite pixels passes the door
(which reads headers only) and its observation ends ``failed`` with ``no_valid_pixels``.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import func, select

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.db.models import Alert, CalibrationRequest, Observation, Upload
from cpcs.settings import Settings
from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from tests.badinput.corpus import (
    ALERT,
    BAD_ALERT_NAMES,
    ESCAPE_NAME,
    FULL_WIDTH_ALERT,
    MAX_IMAGE_PIXELS,
    MAX_UPLOAD_BYTES,
    FileCase,
    FormCase,
    Interface,
    file_cases,
    good_catalogue,
    legacy_form_cases,
    v1_form_cases,
)
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

LEGACY_FIELD = {"catalogue": "sexCat", "image": "fitsFile"}
STACK_TRACE_MARKS = ("Traceback", 'File "', "site-packages", "/work/")


def door_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        retry_base_s=0.05,
        outbox_poll_s=0.05,
        legacy_wait_s=5,
        max_image_pixels=MAX_IMAGE_PIXELS,
        max_upload_bytes=MAX_UPLOAD_BYTES,
        # The corpus sends one token again and again; failed-token throttling is tested elsewhere.
        auth_failures_per_token=0,
        auth_failures_per_client=0,
    )


def _new_alert(system: System) -> None:
    created = system.client.post(
        "/followup/newevent",
        data={"ivorn": ALERT, "ra": FIELD_RA_DEG, "dec": FIELD_DEC_DEG, "hashtag": system.observer_token},
    )
    assert created.status_code == 201, created.text


@pytest.fixture
def door(tmp_path: Path) -> Iterator[System]:
    system = start_system(door_settings(tmp_path / "data"))
    try:
        _new_alert(system)
        yield system
    finally:
        system.client.close()
        system.assembly.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _send_file(system: System, case: FileCase, interface: Interface) -> httpx.Response:
    if interface == "legacy":
        form = {"EventID": ALERT, "hashtag": system.observer_token, "outputFormat": "json", "MJD": "57737.8"}
        if case.field == "image":
            del form["MJD"]  # the header's time is what several cases are about
        files = {LEGACY_FIELD[case.field]: (case.filename, case.data)}
        return system.client.post("/followup/cgi/upload", data=form, files=files)
    return system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT} if case.field == "image" else {"alert": ALERT, "mjd": "57737.8"},
        files={"file": (case.filename, case.data)},
        headers=_bearer(system.observer_token),
    )


def _problems(response: httpx.Response, status: int | tuple[int, ...], code: str | None) -> list[str]:
    """What is wrong with an error answer (empty: it is right)."""
    statuses = status if isinstance(status, tuple) else (status,)
    found: list[str] = []
    if response.status_code not in statuses:
        found.append(f"status {response.status_code}, expected {status}")
    if not 400 <= response.status_code < 500:
        found.append("not a 4xx")
    if any(mark in response.text for mark in STACK_TRACE_MARKS):
        found.append("a stack trace or a server path in the body")
    try:
        body: Any = response.json()
    except ValueError:
        return [*found, f"not JSON: {response.text[:120]!r}"]
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return [*found, f"no error code: {body!r}"[:200]]
    if not isinstance(body.get("message"), str) or len(body["message"]) < 15:
        found.append(f"no useful message: {body.get('message')!r}")
    if code is not None and body["error"] != code:
        found.append(f"code {body['error']!r}, expected {code!r} ({body.get('message')!r})"[:300])
    return found


def _stored(system: System) -> dict[str, int]:
    with system.context.db.transaction() as session:
        counts = {
            "observations": session.scalar(select(func.count(Observation.id))) or 0,
            "uploads": session.scalar(select(func.count(Upload.id))) or 0,
            "calibration requests": session.scalar(select(func.count(CalibrationRequest.id))) or 0,
        }
    uploads = system.context.settings.uploads_dir
    counts["files in the upload store"] = (
        sum(1 for p in uploads.rglob("*") if p.is_file()) if uploads.exists() else 0
    )
    products = system.context.settings.data_dir / "products"
    counts["product files"] = sum(1 for p in products.rglob("*") if p.is_file()) if products.exists() else 0
    return counts


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` but those under ``skip``, with its size and modification time."""
    seen: dict[str, tuple[int, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and skip not in path.parents:
            stat = path.stat()
            seen[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return seen


def _escaped(roots: list[Path]) -> list[Path]:
    """Files named like the corpus's traversal targets, anywhere they could have landed."""
    found = []
    for root in roots:
        if root.exists():
            found += [p for p in root.rglob(f"*{ESCAPE_NAME}*")] if root.is_dir() else []
    return found


def _outside_roots(system: System) -> tuple[Path, list[Path]]:
    """The folder holding the data folder (watched whole) and the shallow places a path could reach."""
    data_dir = system.context.settings.data_dir.resolve()
    watched = data_dir.parent.parent  # pytest's folder of this test run: all our temporary folders
    shallow = [Path("/tmp"), Path.cwd()]
    return watched, shallow


def _escaped_shallow(places: list[Path]) -> list[Path]:
    return [p for place in places for p in place.glob(f"*{ESCAPE_NAME}*")]


def test_the_file_corpus_through_both_doors(door: System) -> None:
    system = door
    cases = file_cases()
    assert len(cases) >= 50
    watched, _ = _outside_roots(system)
    before = _snapshot(watched, skip=system.context.settings.data_dir.resolve())
    failures: list[str] = []
    sent = 0
    for case in cases:
        for interface in case.interfaces:
            response = _send_file(system, case, interface)
            sent += 1
            problems = _problems(response, *case.expected(interface))
            if problems:
                failures.append(f"{interface} / {case.field} / {case.name}: {'; '.join(problems)}")
    assert not failures, f"{len(failures)} of {sent} answers were wrong:\n" + "\n".join(failures)
    _assert_nothing_left(system, before)


def _assert_nothing_left(system: System, before: dict[str, tuple[int, int]]) -> None:
    """No row, no stored file, an empty staging folder, nothing changed outside the data folder."""
    stored = _stored(system)
    assert stored == dict.fromkeys(stored, 0), stored
    staging = system.context.settings.uploads_dir / ".staging"
    assert not staging.exists() or not any(staging.iterdir())
    watched, shallow = _outside_roots(system)
    data_dir = system.context.settings.data_dir.resolve()
    assert _snapshot(watched, skip=data_dir) == before, "a file was written outside the data folder"
    assert not _escaped([watched]) and not _escaped_shallow(shallow)


def _legacy_form(system: System, case: FormCase) -> httpx.Response:
    form: dict[str, Any] = {
        "matchDist": "2",
        "MJD": "57737.81755",
        "expTime": "120",
        "EventID": ALERT,
        "forceFilter": "no",
        "hashtag": system.observer_token,
        "outputFormat": "json",
        "noPlot": "1",
        "dryRun": "0",
    }
    return _post_form(system, "/followup/cgi/upload", form, case, "sexCat", {})


def _v1_form(system: System, case: FormCase) -> httpx.Response:
    form: dict[str, Any] = {"alert": ALERT, "mjd": "57737.81755", "exptime_s": "120", "filter": "V"}
    return _post_form(system, "/api/v1/uploads", form, case, "file", _bearer(system.observer_token))


def _post_form(
    system: System, url: str, form: dict[str, Any], case: FormCase, file_field: str, headers: dict[str, str]
) -> httpx.Response:
    for key, value in case.fields.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    for key, value in case.extra:
        form.setdefault(key, [])
        form[key].append(value)
    files = case.files if case.files is not None else [(file_field, ("frame.cat", good_catalogue()))]
    return system.client.post(url, data=form, files=files or None, headers=headers)


def test_bad_form_fields_through_both_doors(door: System) -> None:
    system = door
    watched, _ = _outside_roots(system)
    before = _snapshot(watched, skip=system.context.settings.data_dir.resolve())
    failures: list[str] = []
    legacy, v1 = legacy_form_cases(), v1_form_cases()
    for case in legacy:
        problems = _problems(_legacy_form(system, case), case.status, case.code)
        failures += [f"legacy / {case.name}: {'; '.join(problems)}"] if problems else []
    for case in v1:
        problems = _problems(_v1_form(system, case), case.status, case.code)
        failures += [f"v1 / {case.name}: {'; '.join(problems)}"] if problems else []
    sent = len(legacy) + len(v1)
    assert not failures, f"{len(failures)} of {sent} answers were wrong:\n" + "\n".join(failures)
    _assert_nothing_left(system, before)


def test_bad_alert_names_are_refused_where_alerts_are_made(
    door: System, caplog: pytest.LogCaptureFixture
) -> None:
    system = door
    failures: list[str] = []
    for what, name in BAD_ALERT_NAMES:
        legacy = system.client.post(
            "/followup/newevent",
            data={"ivorn": name, "ra": "1.5", "dec": "2.5", "hashtag": system.observer_token},
        )
        v1 = system.client.post(
            "/api/v1/alerts",
            json={"name": name, "ra_deg": 1.5, "dec_deg": 2.5},
            headers=_bearer(system.observer_token),
        )
        for door_name, response in (("newevent", legacy), ("v1", v1)):
            problems = _problems(response, 422, "invalid_alert_name")
            failures += [f"{door_name} / {what}: {'; '.join(problems)}"] if problems else []
    assert not failures, "\n".join(failures)
    with system.context.db.transaction() as session:
        names = session.scalars(select(Alert.name)).all()
    assert names == [ALERT]  # nothing was made

    # A full-width look-alike is the same alert: refused as a copy, found for an upload.
    copy = system.client.post(
        "/api/v1/alerts",
        json={"name": FULL_WIDTH_ALERT, "ra_deg": 1.5, "dec_deg": 2.5},
        headers=_bearer(system.observer_token),
    )
    assert copy.status_code == 409 and copy.json()["error"] == "alert_exists"
    found = system.client.get("/api/v1/alerts", params={"search": "Gaia16aye"})
    assert found.status_code == 200 and [a["name"] for a in found.json()["items"]] == [ALERT]


def test_a_path_in_a_filename_is_never_used_as_one(door: System) -> None:
    """A good catalogue under a climbing filename is accepted; the name is kept as its last part
    (for display) and the bytes live at their content address in the store, nowhere else."""
    system = door
    data_dir = system.context.settings.data_dir.resolve()
    watched, shallow = _outside_roots(system)
    before = _snapshot(watched, skip=data_dir)
    names = [f"../../../{ESCAPE_NAME}.cat", f"..\\..\\{ESCAPE_NAME}.cat", f"/tmp/{ESCAPE_NAME}.cat"]
    for i, name in enumerate(names):
        data = good_catalogue() + f"# copy {i}\n".encode()
        accepted = system.client.post(
            "/api/v1/uploads",
            data={"alert": ALERT, "mjd": "57737.8", "dry_run": "true"},
            files={"file": (name, data)},
            headers=_bearer(system.observer_token),
        )
        assert accepted.status_code == 202, accepted.text
        digest = hashlib.sha256(data).hexdigest()
        with system.context.db.transaction() as session:
            upload = session.scalar(select(Upload).where(Upload.sha256 == digest))
            assert upload is not None and upload.filename == f"{ESCAPE_NAME}.cat"
        assert system.context.files.path_for(digest).read_bytes() == data
    assert _snapshot(watched, skip=data_dir) == before
    assert not _escaped([watched]) and not _escaped_shallow(shallow)


def _wait_final(system: System, status_url: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        observation: dict[str, Any] = system.client.get(
            status_url, headers=_bearer(system.observer_token)
        ).json()
        if observation["status"] != "received" or time.monotonic() > deadline:
            return observation
        time.sleep(0.05)


def test_what_the_door_cannot_see_fails_later_with_a_code(door: System, tmp_path: Path) -> None:
    """The door reads headers only: pixels that are all NaN or infinite, or a blank frame, are found by
    reduce, which ends the observation ``failed`` with a code (never ``error``, never a retry loop)."""
    system = door
    image = simulate_image(5, shape=(256, 256), target="bright")
    store = TileStore(system.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(image.references.values(), tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)
    frames = {
        "every pixel NaN": (np.full(image.data.shape, np.nan, np.float32), "no_valid_pixels"),
        "every pixel infinite": (np.full(image.data.shape, np.inf, np.float32), "no_valid_pixels"),
        "a blank frame": (np.zeros(image.data.shape, np.float32), "too_few_stars"),
    }
    for name, (pixels, code) in frames.items():
        object.__setattr__(image, "data", pixels)
        accepted = system.client.post(
            "/api/v1/uploads",
            data={"alert": ALERT},
            files={"file": ("frame.fits", image_to_fits_bytes(image))},
            headers=_bearer(system.observer_token),
        )
        assert accepted.status_code == 202, (name, accepted.text)
        observation = _wait_final(system, accepted.json()["status_url"])
        assert (observation["status"], observation["error_code"]) == ("failed", code), (name, observation)
        assert len(observation["error_message"]) > 20


def test_an_unusable_wcs_beside_a_pointing_is_set_aside(door: System) -> None:
    """A singular CD matrix with RA/DEC and a pixel scale: the door accepts the image for blind solving
    from the pointing, and says the header WCS was not used."""
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRVAL1"], header["CRVAL2"], header["CRPIX1"], header["CRPIX2"] = (
        FIELD_RA_DEG,
        FIELD_DEC_DEG,
        64,
        64,
    )
    header["CD1_1"], header["CD1_2"], header["CD2_1"], header["CD2_2"] = 0.0, 0.0, 0.0, 0.0
    header["RA"], header["DEC"], header["PIXSCALE"] = FIELD_RA_DEG, FIELD_DEC_DEG, 0.6
    header["DATE-OBS"], header["EXPTIME"] = "2016-12-15T19:40:00", 60.0
    data = np.random.default_rng(3).normal(1000, 10, (128, 128)).astype(np.float32)
    buffer = fits.PrimaryHDU(data, header=header)
    raw = _fits_bytes(buffer)
    accepted = door.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT},
        files={"file": ("frame.fits", raw)},
        headers=_bearer(door.observer_token),
    )
    assert accepted.status_code == 202, accepted.text
    observation = door.client.get(accepted.json()["status_url"], headers=_bearer(door.observer_token)).json()
    assert observation["source_summary"]["has_wcs"] is False


def _fits_bytes(hdu: fits.PrimaryHDU) -> bytes:
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def test_ids_beyond_the_key_range_are_refused(door: System) -> None:
    """Ids and offsets past the database's integer range (or digits that are not ASCII) are a 4xx,
    never an overflow in the database."""
    huge = "9" * 20
    token = door.observer_token
    auth = _bearer(token)
    client = door.client
    answers = {
        "web alert page": client.get(f"/alerts/{huge}"),
        "web observation page": client.get(f"/observations/{huge}"),
        "v1 alert": client.get(f"/api/v1/alerts/{huge}"),
        "v1 observation": client.get(f"/api/v1/observations/{huge}", headers=auth),
        "v1 points filter": client.get("/api/v1/points", params={"alert_id": huge}, headers=auth),
        "v1 alerts offset": client.get("/api/v1/alerts", params={"offset": huge}),
        "legacy light curve": client.get(
            "/followup/get_alert_lc_data", params={"alert_id": huge, "hashtag": token}
        ),
        "legacy list offset": client.get("/followup/list_of_alerts", params={"offset": huge}),
        "legacy delpoint, superscript digit": client.post(
            "/followup/cgi/delpoint", data={"followupid": "²", "hashtag": token}
        ),
        "v1 upload to alert id": client.post(
            "/api/v1/uploads",
            data={"alert": huge},
            files={"file": ("frame.cat", good_catalogue())},
            headers=auth,
        ),
        "legacy upload to alert ²": client.post(
            "/followup/cgi/upload",
            data={"EventID": "²", "hashtag": token},
            files={"sexCat": ("frame.cat", good_catalogue())},
        ),
    }
    wrong = {
        name: (r.status_code, r.text[:120]) for name, r in answers.items() if not 400 <= r.status_code < 500
    }
    assert not wrong, wrong
    assert _stored(door) == dict.fromkeys(_stored(door), 0)

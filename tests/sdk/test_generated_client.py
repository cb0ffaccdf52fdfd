"""A Python SDK generated from the live OpenAPI document (openapi-python-client) drives the real system.

The generator must accept the document without a warning; the SDK then creates an alert, uploads a
catalogue (the multipart body model with a binary file), polls the observation, reads the light
curve and recalibrates, and every answer comes back as a typed model.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from cpcs.client.tests.live_server import ServerThread
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import simulate_field, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

PACKAGE = "cpcs_sdk"


@dataclass
class Served:
    system: System
    url: str
    document: dict[str, Any]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("sdk-system")
    listener = ServerThread()
    system = start_system(
        Settings(data_dir=folder / "data", retry_base_s=0.05, outbox_poll_s=0.05, public_url=listener.url)
    )
    field = simulate_field(7, n_stars=300, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
    system.import_field(field, folder / "refs")
    (folder / "frame.cat").write_text(
        to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr)
    )
    assert system.assembly.app is not None
    try:
        with listener.serve(system.assembly.app):
            url = listener.url
            document = httpx.get(f"{url}/openapi.json").json()
            yield Served(system, url, document)
    finally:
        system.client.close()
        system.assembly.stop()


@pytest.fixture(scope="module")
def sdk(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Generate the client from the served document and import it."""
    folder = tmp_path_factory.mktemp("sdk")
    (folder / "openapi.json").write_text(json.dumps(served.document))
    # No formatter run (nothing to check there); the pictures (image/png) come as bytes, like FITS.
    (folder / "config.yaml").write_text(
        "post_hooks: []\ncontent_type_overrides:\n  image/png: application/octet-stream\n"
    )
    generator = Path(sys.executable).with_name("openapi-python-client")
    command = [str(generator), "generate", "--path", "openapi.json", "--output-path", PACKAGE]
    command += ["--meta", "none", "--config", "config.yaml", "--fail-on-warning"]
    run = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower() and "unsupported" not in output.lower(), output
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_the_generated_sdk_uploads_and_reads_the_light_curve(
    served: Served, sdk: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> None:
    models = _module("models")
    types = _module("types")
    create_alert = _module("api.alerts.create_alert")
    light_curve = _module("api.alerts.light_curve")
    upload = _module("api.uploads.upload")
    get_observation = _module("api.observations.get_observation")
    calibrations = _module("api.observations.calibrations")
    recalibrate = _module("api.recalibration.recalibrate_observation")
    get_request = _module("api.recalibration.get_calibration_request")

    client = sdk.AuthenticatedClient(base_url=served.url, token=served.system.observer_token)
    alert = create_alert.sync(
        client=client, body=models.AlertIn(name="ivo://Gaia16aye", ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG)
    )
    assert isinstance(alert, models.AlertOut) and alert.name == "ivo://Gaia16aye"
    again = create_alert.sync(
        client=client, body=models.AlertIn(name="ivo://Gaia16aye", ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG)
    )
    assert isinstance(again, models.ErrorBody) and again.error == "alert_exists"

    catalogue = (served.system.context.settings.data_dir.parent / "frame.cat").read_bytes()
    body = models.BodyUpload(
        alert=alert.name,
        file=types.File(payload=io.BytesIO(catalogue), file_name="frame.cat"),
        mjd=57737.5,
        exptime_s=60.0,
        filter_="r",
    )
    accepted = upload.sync(client=client, body=body)
    assert isinstance(accepted, models.UploadAccepted), accepted
    assert accepted.duplicate is False

    deadline = time.monotonic() + 30
    while True:
        observation = get_observation.sync(accepted.observation_id, client=client)
        assert isinstance(observation, models.ObservationOut)
        if observation.status != models.ObservationOutStatus.RECEIVED or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert observation.status == models.ObservationOutStatus.CALIBRATED
    assert isinstance(observation.calibration, models.CalibrationOut)
    assert isinstance(observation.calibration.target, models.TargetOut)
    assert all(isinstance(a, models.AlternativeOut) for a in observation.calibration.alternatives)
    assert isinstance(observation.point, models.PointOut) and observation.filter_declared == "r"

    curve = light_curve.sync(alert.id, client=client)
    assert isinstance(curve, models.LightCurve) and isinstance(curve.alert, models.AlertOut)
    assert [p.id for p in curve.points] == [observation.point.id]
    assert isinstance(curve.points[0], models.PointOut) and curve.points[0].mag == observation.point.mag

    # A dry-run recalibration through the SDK: a typed acceptance, a typed request, the history.
    queued = recalibrate.sync(
        accepted.observation_id, client=client, body=models.RecalibrateIn(force_filter="any/i", dry_run=True)
    )
    assert isinstance(queued, models.RecalibrationAccepted)
    deadline = time.monotonic() + 30
    while True:
        request = get_request.sync(queued.request_id, client=client)
        assert isinstance(request, models.CalibrationRequestOut)
        if request.status != models.CalibrationRequestOutStatus.RECEIVED or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert request.status == models.CalibrationRequestOutStatus.CALIBRATED and request.dry_run
    assert isinstance(request.calibration, models.CalibrationOut) and request.calibration.band == "i"
    history = calibrations.sync(accepted.observation_id, client=client)
    assert [c.version for c in history] == [1, 2] and all(
        isinstance(c, models.CalibrationOut) for c in history
    )

    # Errors are typed too.
    missing = get_observation.sync(999_999, client=client)
    assert isinstance(missing, models.ErrorBody) and missing.error == "unknown_observation"
    anonymous = sdk.Client(base_url=served.url)
    response = light_curve.sync_detailed(alert.id, client=anonymous)  # type: ignore[arg-type]
    assert response.status_code == 401 and isinstance(response.parsed, models.ErrorBody)


def test_openapi_document_is_typed(served: Served) -> None:
    """Every operation has a unique id, a typed success body and ErrorBody errors; uploads are binary."""
    document = served.document
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "description": "Your token (the CPCS hashtag)",
        "scheme": "bearer",
    }
    seen: dict[str, str] = {}
    problems = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            operation_id = operation["operationId"]
            if operation_id in seen:
                problems.append(f"{where}: operationId {operation_id} also used by {seen[operation_id]}")
            seen[operation_id] = where
            for status, answer in operation["responses"].items():
                for media_type, content in answer.get("content", {}).items():
                    schema = content.get("schema") or {}
                    typed = bool({"$ref", "type", "items", "anyOf"} & set(schema))
                    if status.startswith("2") and media_type == "application/json" and not typed:
                        problems.append(f"{where}: {status} {media_type} has no schema")
                    if int(status) >= 400 and schema.get("$ref") != "#/components/schemas/ErrorBody":
                        problems.append(f"{where}: {status} is not an ErrorBody")
    assert problems == []
    upload = document["components"]["schemas"]["Body_upload"]["properties"]["file"]
    assert upload["format"] == "binary"
    recalibrate = document["paths"]["/api/v1/observations/{observation_id}/recalibrate"]["post"]
    assert {"202", "401", "403", "404", "409", "422"} <= set(recalibrate["responses"])
    assert recalibrate["security"] == [{"HTTPBearer": []}]

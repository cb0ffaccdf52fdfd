"""Schemathesis against the live OpenAPI document of the embedded system, in process (ASGI).

Every operation of ``/openapi.json`` is called with generated requests, valid and invalid, with an
admin token, and every answer must pass three checks: no 5xx (``not_a_server_error``), a body that
matches the schema documented for its status and media type (``response_schema_conformance``), and
a status the operation documents (``status_code_conformance``).

Budget: ``MAX_EXAMPLES`` generated cases per operation and generation mode (valid data, and data
that breaks the schema), derandomized so that a failure repeats; the whole run stays well under
two minutes. (schemathesis' own pytest plugin is not used: its lazy loader does not run under the
pytest this project pins; the Hypothesis strategies it exposes per operation are used directly.)

Nothing is excluded. The web pages and the API documents are not in the OpenAPI document
(``include_in_schema=False``), so schemathesis never sees them: ``tests/web`` and
``tests/access`` call those. Binary answers (``/sources`` as FITS, the VOTable export) are checked
for status and media type; schemathesis does not validate a binary body against a schema.

The system is seeded first (an alert with a calibrated catalogue observation and its point, an
image observation with its reduction) so that small ids reach real data; the delivery senders are
stopped, so a generated webhook or SkyPortal URL is never contacted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

#: Cases per operation and mode; ``CPCS_FUZZ_EXAMPLES=200`` for a deeper run by hand.
MAX_EXAMPLES = int(os.environ.get("CPCS_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
IMAGE_ALERT_POSITION = (297.0, 31.0)


def _seed(system: System, field: SimulatedField, folder: Path) -> None:
    """An alert with a calibrated catalogue observation, and one with a reduced image."""
    auth = {"Authorization": f"Bearer {system.observer_token}"}
    image = simulate_image(
        5, shape=(512, 512), ra_deg=IMAGE_ALERT_POSITION[0], dec_deg=IMAGE_ALERT_POSITION[1]
    )
    for name, (ra, dec) in {
        "ivo://Gaia16aye": (FIELD_RA_DEG, FIELD_DEC_DEG),
        "ivo://CPCS-fuzz-image": IMAGE_ALERT_POSITION,
    }.items():
        created = system.client.post(
            "/api/v1/alerts", json={"name": name, "ra_deg": ra, "dec_deg": dec}, headers=auth
        )
        assert created.status_code == 201, created.text
    system.import_field(field, folder / "refs")
    store = TileStore(system.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(image.references.values(), folder / "image-refs").items():
        import_catalogue_file(store, survey, path, path.name)
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    for alert, name, data in (
        ("ivo://Gaia16aye", "frame.cat", catalogue),
        ("ivo://CPCS-fuzz-image", "frame.fits", image_to_fits_bytes(image)),
    ):
        accepted = system.client.post(
            "/api/v1/uploads",
            data={"alert": alert, "mjd": "57737.8"},
            files={"file": (name, data)},
            headers=auth,
        )
        assert accepted.status_code == 202, accepted.text
        deadline = time.monotonic() + 60
        while (status := system.client.get(accepted.json()["status_url"], headers=auth).json()["status"]) == (
            "received"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status == "calibrated", status


@pytest.fixture
def fuzz_system(tmp_path: Path, gaia16aye_field: SimulatedField) -> Iterator[System]:
    settings_ = Settings(
        data_dir=tmp_path / "data",
        retry_base_s=0.05,
        outbox_poll_s=0.05,
        legacy_wait_s=1,
        max_upload_bytes=4 * 1024 * 1024,
        # Generated requests send many wrong tokens; the 429 of throttling is tested elsewhere.
        auth_failures_per_token=0,
        auth_failures_per_client=0,
    )
    system = start_system(settings_)
    assert system.assembly.outbound is not None
    system.assembly.outbound.stop()
    try:
        _seed(system, gaia16aye_field, tmp_path)
        yield system
    finally:
        system.client.close()
        system.assembly.stop()


def _check_operation(operation: Any, mode: GenerationMode, token: str) -> str | None:
    """Run the generated cases of one operation; the first failure found (shrunk), or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=os.environ.get("CPCS_FUZZ_RANDOM") is None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        # The legacy routes read the token from their 'hashtag' field before the header.
        for part in (case.body, case.query):
            if isinstance(part, dict) and "hashtag" in part:
                part["hashtag"] = token
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        return None  # nothing to generate in this mode (an operation without parameters has no invalid case)
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports a group of failures
        lines = [line for line in str(exc).splitlines() if line.strip()][:14]
        return f"{operation.label} ({mode.value}): {type(exc).__name__}: " + "\n    ".join(lines)
    return None


def test_every_operation_answers_within_its_schema(fuzz_system: System) -> None:
    assert fuzz_system.assembly.app is not None
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_system.assembly.app)
    failures: list[str] = []
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # an operation schemathesis cannot read is a failure too
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _check_operation(operation, mode, fuzz_system.admin_token)
            if failure is not None:
                failures.append(failure)
    assert operations >= 40, operations
    assert not failures, f"{len(failures)} operations failed:\n" + "\n\n".join(failures)
    assert time.monotonic() - started < 150 or MAX_EXAMPLES > 25

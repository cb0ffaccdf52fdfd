"""kill -9 a calibrate worker in the middle of a batch of uploads, then start it again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cpcs.db.models import ImageReduction
from cpcs.simulation.catalogue_simulator import SimulatedField
from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.testing.faults import frozen, kill_service, restart_service
from tests.reliability.harness import (
    Uploader,
    assert_exactly_once,
    fault_stack,
    report,
    tally,
    wait_for,
    wait_until_settled,
)

N = 30


def test_calibrate_worker_killed_mid_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """Two calibrate workers. A backlog builds up while they are paused; once they are draining it,
    calibrate-0 is SIGKILLed (with its prefetch window full, so it dies holding unacknowledged
    deliveries) and started again while uploads keep coming."""
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field, calibrate_workers=2) as stack:
        uploader = Uploader(stack, gaia16aye_field, range(N), interval_s=0.05).start()
        with frozen(stack.system, "calibrate-0", "calibrate-1"):
            wait_for(lambda: uploader.sent >= 2 * N // 3, 60, "a backlog of uploads")
        wait_for(
            lambda: tally(stack.engine, stack.alert_id).calibrated >= 2,
            60,
            "the first calibrations",
            poll_s=0.05,
        )
        backlog = stack.broker.ready("calibrate")
        pid = kill_service(stack.system, "calibrate-0")
        at_kill = tally(stack.engine, stack.alert_id)
        restart_service(stack.system, "calibrate-0")
        uploader.join()
        outcome = wait_until_settled(stack, N)

    sent = len(uploader.accepted)
    redelivered = stack.log_count("calibrate", "redelivered by the broker")
    line = report(
        f"kill -9 of calibrate-0 (pid {pid}) with {backlog} messages queued and "
        f"{at_kill.calibrated}/{at_kill.observations} calibrated; {redelivered} deliveries came back",
        sent,
        outcome,
    )
    assert backlog > 0, "the worker must die while work is waiting, or nothing was broken"
    assert uploader.errors == [] and sent == N, (uploader.errors, line)
    assert len({r.sha256 for r in uploader.accepted}) == N
    assert_exactly_once(N, outcome)
    # What the dead worker held unacknowledged came back from the broker and was handled again.
    assert redelivered >= 1


IMAGES = 6
IMAGE_ALERT = "ivo://Gaia17img"


def test_reduce_worker_killed_mid_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """Images go through reduce, then calibrate. reduce is paused while the batch arrives, let go, and
    SIGKILLed once it has finished one image (so it dies holding the next), then started again."""
    image = simulate_image(9, shape=(512, 512), zp=27.5, ra_deg=150.1, dec_deg=2.2, target="bright")
    frames = []
    for index in range(IMAGES):
        frame = replace(image, header=image.header.copy())
        frame.header["FRAMENO"] = (index, "distinct bytes per upload")
        frames.append(image_to_fits_bytes(frame))
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field) as stack:
        for survey, path in write_reference_tables(
            image.references.values(), tmp_path / "image-refs"
        ).items():
            stack.system.cli("catalog", "import", "--survey", survey, str(path))
        created = httpx.post(
            f"{stack.system.api_url}/api/v1/alerts",
            json={"name": IMAGE_ALERT, "ra_deg": 150.1, "dec_deg": 2.2},
            headers=stack.headers,
        )
        assert created.status_code == 201, created.text
        alert_id = int(created.json()["id"])
        with frozen(stack.system, "reduce"), httpx.Client(timeout=60) as client:
            answers = [
                client.post(
                    f"{stack.system.ingest_url}/api/v1/uploads",
                    headers=stack.headers,
                    data={"alert": IMAGE_ALERT, "force_filter": "PS1/r"},
                    files={"file": (f"frame-{index}.fits", data)},
                )
                for index, data in enumerate(frames)
            ]
        wait_for(lambda: stack.log_count("reduce", "reduced in") >= 1, 120, "the first reduction")
        backlog = stack.broker.ready("reduce")
        pid = kill_service(stack.system, "reduce")
        at_kill = tally(stack.engine, alert_id)
        restart_service(stack.system, "reduce")
        outcome = wait_until_settled(replace(stack, alert_id=alert_id), IMAGES, timeout_s=180)
        with Session(stack.engine) as session:
            reductions = session.scalar(
                select(func.count()).select_from(ImageReduction).where(ImageReduction.status == "reduced")
            )

    redelivered = stack.log_count("reduce", "redelivered by the broker")
    report(
        f"kill -9 of reduce (pid {pid}) with {backlog} images queued and "
        f"{at_kill.calibrated}/{at_kill.observations} calibrated; {redelivered} deliveries came back",
        IMAGES,
        outcome,
    )
    assert [answer.status_code for answer in answers] == [202] * IMAGES, [a.text for a in answers]
    assert backlog > 0
    assert reductions == IMAGES
    assert_exactly_once(IMAGES, outcome)
    assert redelivered >= 1

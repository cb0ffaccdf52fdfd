"""kill -9 of ingest and api in the middle of a request, and of the broker, in the middle of a stream.

Whatever was accepted (a 202) ends calibrated exactly once: nothing lost, nothing doubled. A client
whose request died with the process sends it again (the Uploader does, like the real client), and
the server recognises the repeated bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cpcs.simulation.catalogue_simulator import SimulatedField
from cpcs.testing.faults import frozen, kill_service, restart_service
from tests.reliability.harness import (
    Stack,
    Uploader,
    UploadResult,
    assert_exactly_once,
    fault_stack,
    report,
    tally,
    wait_for,
    wait_until_settled,
)

N = 20


def _only_dropped_connections(uploader: Uploader) -> list[str]:
    """The uploader's errors other than connections refused or dropped by the killed process."""
    transport = ("ConnectError", "ReadError", "RemoteProtocolError", "ConnectTimeout", "ReadTimeout")
    return [error for error in uploader.errors if not any(kind in error for kind in transport)]


def _request_in_flight(send: Callable[[], None], wait_s: float = 1.0) -> threading.Thread:
    """Start ``send`` in a thread and give it ``wait_s`` to reach the (frozen) server."""
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    time.sleep(wait_s)
    return thread


def _kill_frozen_mid_request(
    stack: Stack, name: str, send: Callable[[], None]
) -> tuple[int, threading.Thread]:
    """Freeze ``name``, let a request reach it, kill -9 it with the request unanswered, start it again."""
    with frozen(stack.system, name):
        thread = _request_in_flight(send)
        assert thread.is_alive(), "the request was answered although the server was frozen"
        pid = kill_service(stack.system, name)
    restart_service(stack.system, name)
    return pid, thread


def test_ingest_killed_mid_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field) as stack:
        uploader = Uploader(stack, gaia16aye_field, range(N), interval_s=0.1).start()
        wait_for(lambda: uploader.sent >= N // 3, 60, "a third of the uploads")
        in_flight: list[UploadResult] = []

        def upload_while_frozen() -> None:  # one more upload, the one the kill cuts; it is resent
            with httpx.Client(timeout=30) as client:
                in_flight.append(uploader.upload_one(client, N + 1000, 58000.0))

        pid, sender = _kill_frozen_mid_request(stack, "ingest", upload_while_frozen)
        uploader.join()
        sender.join(120)
        outcome = wait_until_settled(stack, N + 1)

    accepted = [*uploader.accepted, *(r for r in in_flight if r.observation_id is not None)]
    sent = len(accepted)
    resent = sum(1 for r in accepted if r.duplicate)
    report(
        f"kill -9 of ingest (pid {pid}) with an upload in flight; {len(uploader.errors)} dropped "
        f"connections retried, {resent} uploads answered as already received",
        sent,
        outcome,
    )
    assert uploader.errors, "no request was cut by the kill: nothing was broken"
    assert _only_dropped_connections(uploader) == []
    assert sent == N + 1 and len({r.sha256 for r in accepted}) == N + 1
    assert_exactly_once(N + 1, outcome)


def test_api_killed_mid_request_and_mid_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """api answers reads and consumes point.calibrated (announcements); it dies with a read unanswered
    while calibrations keep coming, and is started again."""
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field) as stack:
        uploader = Uploader(stack, gaia16aye_field, range(N), interval_s=0.1).start()
        wait_for(lambda: tally(stack.engine, stack.alert_id).calibrated >= 3, 60, "the first calibrations")
        cut: list[str] = []

        def read_alerts() -> None:
            try:
                httpx.get(f"{stack.system.api_url}/api/v1/alerts", headers=stack.headers, timeout=30)
            except httpx.TransportError as exc:
                cut.append(type(exc).__name__)

        pid, reader = _kill_frozen_mid_request(stack, "api", read_alerts)
        reader.join(30)
        uploader.join()
        outcome = wait_until_settled(stack, N)
        after = httpx.get(f"{stack.system.api_url}/api/v1/alerts", headers=stack.headers, timeout=30)

    sent = len(uploader.accepted)
    report(f"kill -9 of api (pid {pid}) with a read in flight ({cut})", sent, outcome)
    assert cut, "the read in flight should have been cut by the kill"
    assert after.status_code == 200, after.text
    assert _only_dropped_connections(uploader) == [] and sent == N
    assert_exactly_once(N, outcome)


def test_broker_killed_mid_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """RabbitMQ is SIGKILLed (no clean shutdown) holding a backlog of confirmed messages that calibrate
    (paused) has not taken yet, and started again; uploads keep coming meanwhile."""
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field) as stack:
        uploader = Uploader(stack, gaia16aye_field, range(N), interval_s=0.1).start()
        with frozen(stack.system, "calibrate-0"):
            wait_for(lambda: stack.broker.ready("calibrate") >= 3, 60, "a backlog in the calibrate queue")
            backlog = stack.broker.ready("calibrate")
            at_kill = tally(stack.engine, stack.alert_id)
            stack.broker.kill()
            time.sleep(2.0)
            stack.broker.start()
        uploader.join()
        outcome = wait_until_settled(stack, N, timeout_s=180)

    sent = len(uploader.accepted)
    report(
        f"kill -9 of RabbitMQ with {backlog} messages queued for calibrate and "
        f"{at_kill.calibrated}/{at_kill.observations} calibrated",
        sent,
        outcome,
    )
    assert backlog >= 3 and at_kill.calibrated < N, "the broker must die holding work"
    assert uploader.errors == [] and sent == N, uploader.errors  # the door never needs the broker
    assert_exactly_once(N, outcome)

"""Restart RabbitMQ in the middle of a stream of uploads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cpcs.simulation.catalogue_simulator import SimulatedField
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
DOWN_S = 5.0


def test_rabbitmq_restart_mid_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """The broker is stopped (cleanly, as an upgrade or a reboot would) a third of the way through the
    batch and stays away for a while; uploads keep coming. Nobody is restarted but the broker."""
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field) as stack:
        pids = {name: process.pid for name, process in stack.system.processes.items()}
        uploader = Uploader(stack, gaia16aye_field, range(N), interval_s=0.15).start()
        wait_for(lambda: uploader.sent >= N // 3, 60, "a third of the uploads")
        stack.broker.stop()
        down_at = time.monotonic()
        accepted_before = len(uploader.accepted)
        held = 0
        while time.monotonic() - down_at < DOWN_S:
            held = max(held, tally(stack.engine, stack.alert_id).outbox_unpublished)
            time.sleep(0.2)
        accepted_while_down = len(uploader.accepted) - accepted_before
        stack.broker.start()
        outage_s = time.monotonic() - down_at
        uploader.join()
        outcome = wait_until_settled(stack, N)
        recovered_s = time.monotonic() - down_at
        alive = {name: process.poll() is None for name, process in stack.system.processes.items()}
        same_pids = {name: process.pid for name, process in stack.system.processes.items()} == pids

    sent = len(uploader.accepted)
    line = report(
        f"RabbitMQ (stopped {outage_s:.1f} s; {accepted_while_down} uploads accepted meanwhile, "
        f"up to {held} outbox rows held; all settled {recovered_s:.0f} s after the stop)",
        sent,
        outcome,
    )
    assert uploader.errors == [] and sent == N, (uploader.errors, line)
    assert set(uploader.statuses) == {202}, uploader.statuses  # the door never needs the broker
    assert accepted_while_down > 0 and held > 0, (
        "the outbox should have held messages while the broker was away"
    )
    assert outcome.outbox_retried > 0, "some outbox rows should have needed more than one publish attempt"
    assert_exactly_once(N, outcome)
    # Every process reconnected by itself: none died, none was restarted.
    assert all(alive.values()) and same_pids, alive
    for service in ("ingest", "api", "catalog-cache", "calibrate", "reduce"):
        assert stack.log_count(service, "consumer connected (session 2)") >= 1, service

"""A message that always fails: bounded attempts, the dead-letter queue, the reason in the API, a replay."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from cpcs.messaging.rabbitmq import RabbitMqBus
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField
from cpcs.storage import FileStore
from cpcs.testing.faults import frozen
from tests.reliability.harness import (
    Uploader,
    assert_exactly_once,
    fault_stack,
    observation,
    report,
    wait_for,
    wait_until_settled,
)

N = 8
POISON_VARIANT = 999


def test_poison_message_is_dead_lettered_then_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """The stored bytes of one accepted upload are deleted before calibrate reads them (calibrate is
    paused meanwhile, so the deletion surely comes first): reading them raises FileNotFoundError on
    every attempt, a genuine internal error, not a user fault. Good uploads flow around it. Then the
    file is restored from a copy and an admin replays the dead letters."""
    max_attempts = Settings().max_delivery_attempts
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field) as stack:
        store = FileStore(stack.data_dir / "uploads")
        uploader = Uploader(stack, gaia16aye_field, range(N), interval_s=0.1)
        with frozen(stack.system, "calibrate-0"), httpx.Client(timeout=30) as client:
            poison = uploader.upload_one(client, POISON_VARIANT, 58000.0)
            assert poison.observation_id is not None, poison.statuses
            poison_id = poison.observation_id
            stored = store.path_for(poison.sha256)
            backup = stored.read_bytes()
            stored.unlink()
        uploader.start().join()

        wait_for(
            lambda: observation(stack, poison_id)["status"] == "error",
            60,
            "the poisoned observation to show its error",
        )
        shown = observation(stack, poison_id)
        wait_for(lambda: stack.broker.queue_depths().get("calibrate.dead", 0) == 1, 30, "one dead letter")
        dead = RabbitMqBus(stack.broker.url).dead_letters("calibrate")
        listed = stack.system.cli("dead-letters", "list", "calibrate")
        during = wait_until_settled(stack, N + 1)

        attempts_logged = len(
            re.findall(
                rf"message {dead[0].message_id} on calibrate failed attempt", stack.log_text("calibrate")
            )
        )
        stored.write_bytes(backup)  # the repair
        replayed = stack.system.cli("dead-letters", "replay", "calibrate")
        wait_for(
            lambda: observation(stack, poison_id)["status"] == "calibrated",
            60,
            "the replayed observation to be calibrated",
        )
        outcome = wait_until_settled(stack, N + 1)
        after = observation(stack, poison_id)
        dead_after = stack.broker.queue_depths().get("calibrate.dead", 0)

    sent = len(uploader.accepted) + 1
    report(
        f"the stored file of observation {poison_id} (FileNotFoundError on every attempt; "
        f"{attempts_logged} attempts, then calibrate.dead; replayed after the file came back)",
        sent,
        outcome,
    )
    # Bounded attempts, then the dead-letter queue, with the reason.
    assert len(dead) == 1 and dead[0].routing_key == "catalogue.received"
    assert dead[0].attempt == max_attempts == attempts_logged
    assert "FileNotFoundError" in dead[0].headers["x-cpcs-error"]
    assert dead[0].message_id in listed and "FileNotFoundError" in listed
    # The observer sees the error and its reason; the rest of the batch was not held up.
    assert shown["status"] == "error" and shown["error_code"] == "internal_error", shown
    assert "FileNotFoundError" in str(shown["error_message"]), shown
    assert during.calibrated == N and during.by_status.get("error") == 1, during
    # After the fix and the admin's replay: calibrated, the error cleared, the dead-letter queue empty.
    assert replayed.strip() == "replayed 1 messages", replayed
    assert after["status"] == "calibrated" and after["error_code"] is None and after["point"], after
    assert dead_after == 0
    assert uploader.errors == [] and sent == N + 1
    assert_exactly_once(N + 1, outcome)

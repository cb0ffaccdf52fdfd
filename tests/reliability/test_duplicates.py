"""The same message delivered more than once, and the same file uploaded more than once: one point."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cpcs.simulation.catalogue_simulator import SimulatedField
from cpcs.testing.faults import frozen
from tests.reliability.harness import (
    Uploader,
    assert_exactly_once,
    fault_stack,
    outbox_messages,
    publish_raw,
    report,
    wait_for,
    wait_until_settled,
)

N = 10


def test_duplicate_messages_and_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """Every file is uploaded twice at once (two clients racing), and every ``catalogue.received`` is
    published twice more behind the relay's back while both calibrate workers are paused, so the
    copies race each other; after the batch has settled, each message and each file come once more."""
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field, calibrate_workers=2) as stack:
        uploader = Uploader(stack, gaia16aye_field, range(N))
        with frozen(stack.system, "calibrate-0", "calibrate-1"), httpx.Client(timeout=30) as client:
            with ThreadPoolExecutor(max_workers=2) as pool:
                pairs = []
                for variant in range(N):
                    racing = [
                        pool.submit(uploader.upload_one, client, variant, 57000.0 + variant) for _ in "ab"
                    ]
                    pairs.append([future.result() for future in racing])
            wait_for(
                lambda: (
                    len(outbox_messages(stack.engine, "catalogue.received")) == N
                    and stack.broker.queue_depths()["calibrate"] == N
                ),
                30,
                "the relay to publish every upload once",
            )
            originals = outbox_messages(stack.engine, "catalogue.received")
            publish_raw(stack.broker.url, originals * 2)  # same message ids: a redelivery
            queued = stack.broker.queue_depths()["calibrate"]
        first = wait_until_settled(stack, N)
        # Late copies of everything, after every request is final.
        publish_raw(stack.broker.url, originals)
        with httpx.Client(timeout=30) as client:
            late = [uploader.upload_one(client, variant, 57000.0 + variant) for variant in range(N)]
        outcome = wait_until_settled(stack, N)

    repeated = stack.log_count("calibrate", "acknowledging the repeated message")
    uploads = [result for pair in pairs for result in pair] + late
    report(
        f"'once only': {len(uploads)} uploads of {N} files ({2 * N} of them racing in pairs), "
        f"{3 * N} extra copies of catalogue.received ({queued} deliveries queued at once behind paused "
        f"workers); {repeated} copies acknowledged without work",
        N,
        outcome,
    )
    assert all(result.observation_id is not None for result in uploads), [r.statuses for r in uploads]
    for variant, pair in enumerate(pairs):
        assert pair[0].observation_id == pair[1].observation_id, pair
        assert sorted(result.duplicate for result in pair) == [False, True], (variant, pair)
    assert [result.observation_id for result in late] == [pair[0].observation_id for pair in pairs]
    assert all(result.duplicate for result in late)
    assert queued == 3 * N
    assert first == outcome, "late copies must change nothing"
    assert_exactly_once(N, outcome)
    # The late copies at least were recognised as done before any work (racing ones may lose later,
    # at the final check under the row lock, which writes nothing).
    assert repeated >= N

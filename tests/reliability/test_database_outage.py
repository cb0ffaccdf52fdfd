"""Stop PostgreSQL for a while in the middle of a batch."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from cpcs.messaging.bus import retry_delay
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField
from cpcs.testing.faults import frozen
from tests.reliability.harness import (
    ALERT,
    Stack,
    Uploader,
    assert_exactly_once,
    catalogue_variant,
    fault_stack,
    report,
    wait_for,
    wait_until_settled,
)

N = 20
OUTAGE_S = 6.0
RETRY_BASE_S = 1.0


def _probe(stack: Stack, client: httpx.Client, catalogue: bytes) -> list[tuple[str, int, str | None]]:
    """Reads and uploads on api and ingest while the database is away: (what, status, Retry-After)."""
    api, ingest, token = stack.system.api_url, stack.system.ingest_url, stack.token
    legacy_form = {"EventID": ALERT, "MJD": "58000", "hashtag": token, "outputFormat": "json", "noPlot": "1"}
    requests = {
        "GET /api/v1/alerts": lambda: client.get(f"{api}/api/v1/alerts", headers=stack.headers),
        "GET /api/v1/observations/1": lambda: client.get(
            f"{api}/api/v1/observations/1", headers=stack.headers
        ),
        "GET /followup/get_alert_lc_data": lambda: client.get(
            f"{api}/followup/get_alert_lc_data", params={"alert_name": ALERT, "hashtag": token}
        ),
        "GET /alerts (page)": lambda: client.get(f"{api}/alerts"),
        "GET api /readyz": lambda: client.get(f"{api}/readyz"),
        "POST /api/v1/uploads": lambda: client.post(
            f"{ingest}/api/v1/uploads",
            headers=stack.headers,
            data={"alert": ALERT, "mjd": "58000"},
            files={"file": ("probe.cat", catalogue)},
        ),
        "POST /followup/cgi/upload": lambda: client.post(
            f"{ingest}/followup/cgi/upload", data=legacy_form, files={"sexCat": ("probe.cat", catalogue)}
        ),
    }
    answers = []
    for what, send in requests.items():
        response = send()
        answers.append((what, response.status_code, response.headers.get("Retry-After")))
    return answers


def test_postgres_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """PostgreSQL is stopped (fast shutdown: every connection dropped) for a few seconds while calibrate
    has a backlog to work on and uploads keep coming; then it is started again."""
    attempts = Settings().max_delivery_attempts
    budget_s = sum(retry_delay(attempt, RETRY_BASE_S, 30.0) for attempt in range(1, attempts))
    assert budget_s >= 2 * OUTAGE_S, "the consumers' retries must outlast the outage we simulate"

    with fault_stack(
        tmp_path, monkeypatch, gaia16aye_field, env={"CPCS_RETRY_BASE_S": str(RETRY_BASE_S)}
    ) as stack:
        uploader = Uploader(stack, gaia16aye_field, range(N), interval_s=0.2).start()
        answers: list[tuple[str, int, str | None]] = []
        probe = catalogue_variant(gaia16aye_field, 10_000)  # never accepted: the database is away
        with frozen(stack.system, "calibrate-0"):
            # calibrate sits on a backlog, so it has work to fail at while the database is away
            wait_for(lambda: uploader.sent >= N // 2, 60, "half of the uploads")
            stack.postgres.stop("fast")
        down_at = time.monotonic()
        with httpx.Client(timeout=30) as client:
            while time.monotonic() - down_at < OUTAGE_S:
                answers += _probe(stack, client, probe)
                time.sleep(0.3)
        stack.postgres.start()
        outage_s = time.monotonic() - down_at
        uploader.join()
        outcome = wait_until_settled(stack, N)
        recovered_s = time.monotonic() - down_at
        dead = stack.broker.queue_depths().get("calibrate.dead", 0)

    sent = len(uploader.accepted)
    answered = Counter(
        f"{status}{'+Retry-After' if retry_after else ''}" for _, status, retry_after in answers
    )
    retried = re.findall(
        r"(?:failed attempt \d+/\d+, retrying in|attempt \d+/\d+ not counted, waiting) ([0-9.]+)s",
        stack.log_text("calibrate"),
    )
    delays = Counter(float(delay) for delay in retried)
    report(
        f"PostgreSQL (down {outage_s:.1f} s; {len(answers)} requests to {len({a[0] for a in answers})} "
        f"endpoints answered {dict(answered)}; the uploader saw {dict(uploader.statuses)}; calibrate "
        f"retried with back-offs {dict(sorted(delays.items()))} (seconds: times); "
        f"all settled {recovered_s:.0f} s after the stop)",
        sent,
        outcome,
    )
    # The HTTP services said "come back later", never "I broke".
    assert answers, "no request was made during the outage"
    bad = [answer for answer in answers if answer[1] != 503 or answer[2] is None]
    assert bad == [], f"expected 503 with Retry-After during the outage, got {bad}"
    assert 500 not in uploader.statuses, uploader.statuses
    assert uploader.statuses[503] >= 1 and uploader.retry_after_missing == 0, uploader.statuses
    # The consumers retried, backing off further each time, and gave up on nothing.
    assert delays and max(delays) >= 2 * RETRY_BASE_S, delays
    assert stack.log_count("calibrate", "dead-lettered") == 0
    assert dead == 0
    # Everything that was accepted ended calibrated exactly once.
    assert uploader.errors == [] and sent == N, uploader.errors
    assert_exactly_once(N, outcome)


LONG_OUTAGE_S = 8.0


def test_postgres_outage_longer_than_the_retry_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaia16aye_field: SimulatedField
) -> None:
    """With a retry budget far shorter than the outage (2 attempts, 0.2 s apart), nothing is dead-lettered:
    failures because the database is away are waited out and do not count as attempts."""
    attempts, retry_base_s = 2, 0.2
    budget_s = sum(retry_delay(attempt, retry_base_s, 30.0) for attempt in range(1, attempts))
    assert budget_s * 10 < LONG_OUTAGE_S, "the outage must outlast the retry budget by far"
    env = {"CPCS_RETRY_BASE_S": str(retry_base_s), "CPCS_MAX_DELIVERY_ATTEMPTS": str(attempts)}
    with fault_stack(tmp_path, monkeypatch, gaia16aye_field, env=env) as stack:
        uploader = Uploader(stack, gaia16aye_field, range(N), interval_s=0.2).start()
        with frozen(stack.system, "calibrate-0"):
            wait_for(lambda: uploader.sent >= N // 2, 60, "half of the uploads")
            stack.postgres.stop("fast")
        down_at = time.monotonic()
        time.sleep(LONG_OUTAGE_S)
        stack.postgres.start()
        outage_s = time.monotonic() - down_at
        uploader.join()
        outcome = wait_until_settled(stack, N)
        recovered_s = time.monotonic() - down_at
        dead = stack.broker.queue_depths().get("calibrate.dead", 0)

    waited = stack.log_count("calibrate", "not counted")
    sent = len(uploader.accepted)
    report(
        f"PostgreSQL longer than the retry budget (down {outage_s:.1f} s, budget {budget_s:.1f} s; calibrate "
        f"waited out {waited} outage failures uncounted; all settled {recovered_s:.0f} s after the stop)",
        sent,
        outcome,
    )
    assert waited >= 1, "calibrate never met the outage"
    assert stack.log_count("calibrate", "dead-lettered") == 0
    assert dead == 0
    assert uploader.errors == [] and sent == N, uploader.errors
    assert_exactly_once(N, outcome)

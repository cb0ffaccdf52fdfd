"""What every fault test shares: its own broker and database, the five services as processes, a
user, reference stars and an alert; a paced batch of distinct uploads; and a ledger that counts in
the database what came out against what went in."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from cpcs.db.models import Calibration, CalibrationRequest, Observation, OutboxMessage, Point
from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.testing.faults import (
    PostgresCluster,
    RabbitMqNode,
    private_postgres,
    private_rabbitmq,
)
from cpcs.testing.processes import RunningSystem, distributed_processes
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG

ALERT = "ivo://Gaia16aye"
FINAL = ("calibrated", "failed", "error")
#: Every test's one-line account (shown in the terminal summary, see conftest.py).
REPORTS: list[str] = []
#: Settings every service process of a fault test gets: quick retries and outbox polling.
FAST_ENV = {"CPCS_RETRY_BASE_S": "0.2", "CPCS_OUTBOX_POLL_S": "0.1", "CPCS_LOG_LEVEL": "INFO"}


def catalogue_variant(field: SimulatedField, variant: int) -> bytes:
    """The field's catalogue with one star nudged by ``variant`` × 0.1 mmag: new bytes, same science."""
    mag = field.mag.copy()
    mag[variant % mag.size] += 1e-4 * (variant + 1)
    return to_sextractor_ascii(field.ra_deg, field.dec_deg, mag, field.magerr).encode()


# --- the system under test ------------------------------------------------------------------------


@dataclass
class Stack:
    """A private RabbitMQ node and PostgreSQL cluster with CPCS running on them as processes."""

    broker: RabbitMqNode
    postgres: PostgresCluster
    system: RunningSystem
    database_url: str
    engine: Engine
    token: str
    alert_id: int
    data_dir: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def log_text(self, service: str) -> str:
        return (self.data_dir / f"{service}.log").read_text(errors="replace")

    def log_count(self, service: str, needle: str) -> int:
        return self.log_text(service).count(needle)


@contextlib.contextmanager
def fault_stack(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    field: SimulatedField,
    *,
    calibrate_workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Start everything the fault tests need; tear it down (services first) at exit."""
    for key, value in {**FAST_ENV, **(env or {})}.items():
        monkeypatch.setenv(key, value)  # distributed_processes passes os.environ to every process
    data = tmp_path / "data"
    with (
        _log_tails_on_failure(data),
        private_rabbitmq(tmp_path / "rabbitmq") as broker,
        private_postgres(keep_log_in=tmp_path) as postgres,
    ):
        database_url = postgres.create_database("cpcs")
        with distributed_processes(
            data, database_url, broker.url, calibrate_workers=calibrate_workers
        ) as system:
            token = system.cli(
                "users", "add", "K. Rybicki", "--observatory", "Ostrowik", "--lon", "21.4", "--lat", "52.1"
            ).strip()
            for survey, path in write_reference_tables(field, tmp_path / "refs").items():
                assert "stars in" in system.cli("catalog", "import", "--survey", survey, str(path))
            created = httpx.post(
                f"{system.api_url}/api/v1/alerts",
                json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert created.status_code == 201, created.text
            engine = create_engine(database_url, pool_pre_ping=True)
            try:
                yield Stack(
                    broker, postgres, system, database_url, engine, token, int(created.json()["id"]), data
                )
            finally:
                engine.dispose()


@contextlib.contextmanager
def _log_tails_on_failure(folder: Path, lines: int = 15) -> Iterator[None]:
    """If the block fails, print the end of every service log (pytest shows it with the failure)."""
    try:
        yield
    except BaseException:
        for log in sorted(folder.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {log.name} (last {len(tail)} lines)", *tail, sep="\n")
        raise


# --- uploads --------------------------------------------------------------------------------------


@dataclass
class UploadResult:
    variant: int
    sha256: str
    observation_id: int | None = None
    duplicate: bool = False
    statuses: list[int] = field(default_factory=list)


class Uploader:
    """Sends distinct catalogues through ``POST /api/v1/uploads``, one every ``interval_s``, in a thread.

    It behaves like a careful client: a 503 is retried after its ``Retry-After`` (capped at
    ``max_wait_s``), a refused or dropped connection after a short pause; it gives up on an upload
    only at ``deadline_s``. Every answer's status is kept; a 500 is never retried (it is a bug).
    """

    def __init__(
        self,
        stack: Stack,
        field: SimulatedField,
        variants: range,
        *,
        interval_s: float = 0.1,
        max_wait_s: float = 5.0,
        deadline_s: float = 120.0,
    ) -> None:
        self.stack = stack
        self.field = field
        self.variants = variants
        self.interval_s = interval_s
        self.max_wait_s = max_wait_s
        self.deadline_s = deadline_s
        self.results: list[UploadResult] = []
        self.statuses: Counter[int] = Counter()
        self.retry_after_missing = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> Uploader:
        self._thread.start()
        return self

    def join(self, timeout_s: float = 180) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the uploader did not finish"

    @property
    def sent(self) -> int:
        with self._lock:
            return len(self.results)

    @property
    def accepted(self) -> list[UploadResult]:
        with self._lock:
            return [r for r in self.results if r.observation_id is not None]

    def upload_one(self, client: httpx.Client, variant: int, mjd: float) -> UploadResult:
        data = catalogue_variant(self.field, variant)
        result = UploadResult(variant, hashlib.sha256(data).hexdigest())
        deadline = time.monotonic() + self.deadline_s
        while time.monotonic() < deadline:
            try:
                response = client.post(
                    f"{self.stack.system.ingest_url}/api/v1/uploads",
                    headers=self.stack.headers,
                    data={"alert": ALERT, "mjd": str(mjd), "exptime_s": "120"},
                    files={"file": (f"frame-{variant}.cat", data)},
                )
            except httpx.TransportError as exc:
                self.errors.append(f"variant {variant}: {exc!r}")
                time.sleep(0.5)
                continue
            result.statuses.append(response.status_code)
            with self._lock:
                self.statuses[response.status_code] += 1
            if response.status_code == 202:
                body = response.json()
                result.observation_id = int(body["observation_id"])
                result.duplicate = bool(body["duplicate"])
                return result
            if response.status_code == 503:
                retry_after = response.headers.get("Retry-After")
                if retry_after is None:
                    self.retry_after_missing += 1
                time.sleep(min(float(retry_after or 1), self.max_wait_s))
                continue
            self.errors.append(f"variant {variant}: {response.status_code} {response.text[:300]}")
            return result
        self.errors.append(f"variant {variant}: gave up at the deadline")
        return result

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            for index, variant in enumerate(self.variants):
                result = self.upload_one(client, variant, 57000.0 + index)
                with self._lock:
                    self.results.append(result)
                time.sleep(self.interval_s)


def observation(stack: Stack, observation_id: int) -> dict[str, object]:
    """``GET /api/v1/observations/{id}`` as JSON (the observer's view)."""
    response = httpx.get(
        f"{stack.system.api_url}/api/v1/observations/{observation_id}", headers=stack.headers, timeout=30
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def publish_raw(broker_url: str, messages: list[tuple[str, bytes, str]]) -> None:
    """Publish ``(routing_key, body, message_id)`` to the ``cpcs`` exchange with pika, confirmed,
    persistent: exactly what the outbox relay sends, sent again behind its back."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for routing_key, body, message_id in messages:
            channel.basic_publish(
                "cpcs",
                routing_key,
                body,
                pika.BasicProperties(message_id=message_id, delivery_mode=2, headers={}),
                mandatory=True,
            )
    finally:
        connection.close()


def outbox_messages(engine: Engine, routing_key: str) -> list[tuple[str, bytes, str]]:
    """The outbox rows with ``routing_key`` as ``(routing_key, body, message_id)``, oldest first."""
    with Session(engine) as session:
        rows = session.execute(
            select(OutboxMessage.routing_key, OutboxMessage.body, OutboxMessage.message_id)
            .where(OutboxMessage.routing_key == routing_key)
            .order_by(OutboxMessage.id)
        ).all()
    return [(key, body.encode(), message_id) for key, body, message_id in rows]


# --- counting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """What the database holds for the alert (and the outbox as a whole)."""

    observations: int
    by_status: dict[str, int]
    points: int
    observations_with_point: int
    calibrations: int
    observations_with_calibration: int
    most_calibrations_per_observation: int
    requests: int
    outbox_rows: int
    outbox_unpublished: int
    outbox_retried: int
    points_announced: int

    @property
    def final(self) -> int:
        return sum(self.by_status.get(status, 0) for status in FINAL)

    @property
    def calibrated(self) -> int:
        return self.by_status.get("calibrated", 0)

    @property
    def stuck(self) -> int:
        return self.observations - self.final

    @property
    def duplicates(self) -> int:
        """Calibrations beyond one per observation, plus points beyond one per observation."""
        return (self.calibrations - self.observations_with_calibration) + (
            self.points - self.observations_with_point
        )


def tally(engine: Engine, alert_id: int) -> Tally:
    with Session(engine) as session:
        statuses = dict(
            session.execute(
                select(Observation.status, func.count())
                .where(Observation.alert_id == alert_id)
                .group_by(Observation.status)
            ).all()
        )
        per_observation = (
            select(Calibration.observation_id, func.count().label("n"))
            .join(Observation, Observation.id == Calibration.observation_id)
            .where(Observation.alert_id == alert_id)
            .group_by(Calibration.observation_id)
            .subquery()
        )
        calibrations, most, calibrated_observations = session.execute(
            select(
                func.coalesce(func.sum(per_observation.c.n), 0), func.max(per_observation.c.n), func.count()
            )
        ).one()
        points, with_point = session.execute(
            select(func.count(), func.count(func.distinct(Point.observation_id))).where(
                Point.alert_id == alert_id, Point.deleted_at.is_(None)
            )
        ).one()
        requests = session.scalar(
            select(func.count())
            .select_from(CalibrationRequest)
            .join(Observation, Observation.id == CalibrationRequest.observation_id)
            .where(Observation.alert_id == alert_id)
        )
        outbox_rows, unpublished, retried = session.execute(
            select(
                func.count(),
                func.count().filter(OutboxMessage.published_at.is_(None)),
                func.count().filter(OutboxMessage.attempts > 1),
            )
        ).one()
        announced = session.scalar(
            select(func.count()).where(OutboxMessage.routing_key == "point.calibrated")
        )
    return Tally(
        observations=sum(statuses.values()),
        by_status={str(k): int(v) for k, v in statuses.items()},
        points=int(points),
        observations_with_point=int(with_point),
        calibrations=int(calibrations),
        observations_with_calibration=int(calibrated_observations),
        most_calibrations_per_observation=int(most or 0),
        requests=int(requests or 0),
        outbox_rows=int(outbox_rows),
        outbox_unpublished=int(unpublished),
        outbox_retried=int(retried),
        points_announced=int(announced or 0),
    )


def wait_for(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    poll_s: float = 0.25,
    detail: Callable[[], str] | None = None,
) -> float:
    """Poll ``condition`` until true; returns the seconds waited; fails the test at ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f": {detail()}" if detail else ""))


def wait_until_settled(stack: Stack, expected: int, timeout_s: float = 120) -> Tally:
    """Wait until ``expected`` observations are final, the outbox is empty and no queue holds work."""

    def settled() -> bool:
        current = tally(stack.engine, stack.alert_id)
        if current.observations < expected or current.stuck or current.outbox_unpublished:
            return False
        depths = stack.broker.queue_depths()
        return all(count == 0 for name, count in depths.items() if not name.endswith(".dead"))

    def describe() -> str:
        return f"{tally(stack.engine, stack.alert_id)}; queues {stack.broker.queue_depths()}"

    wait_for(settled, timeout_s, f"{expected} final observations and drained queues", detail=describe)
    return tally(stack.engine, stack.alert_id)


def report(broke: str, sent: int, outcome: Tally) -> str:
    """One line for the test log: what was broken and what went in against what came out."""
    line = (
        f"broke {broke}; sent {sent}, calibrated {outcome.calibrated}, points {outcome.points}, "
        f"duplicates {outcome.duplicates}, stuck {outcome.stuck}, "
        f"outbox {outcome.outbox_rows - outcome.outbox_unpublished}/{outcome.outbox_rows} published"
    )
    print(line)
    REPORTS.append(line)
    return line


def assert_exactly_once(sent: int, outcome: Tally) -> None:
    """Every upload that went in ended calibrated, with one calibration and one point, nothing left over."""
    assert outcome.observations == sent, outcome
    assert outcome.calibrated == sent, outcome
    assert outcome.stuck == 0, outcome
    assert outcome.requests == sent, outcome
    assert outcome.points == sent and outcome.observations_with_point == sent, outcome
    assert outcome.calibrations == sent and outcome.most_calibrations_per_observation == 1, outcome
    assert outcome.points_announced == sent, outcome
    assert outcome.duplicates == 0, outcome
    assert outcome.outbox_unpublished == 0, outcome

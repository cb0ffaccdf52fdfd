"""Load: catalogue uploads at a steady rate through the distributed system, audited in the database.

``python -m bench.load`` (``--quick`` for 30 s instead of 300 s). Not part of ``make test``.

Every service runs as its own process on the machine's PostgreSQL and RabbitMQ (a fresh database and
virtual host each time). Two parts:

1. **sustained**: ``--rate`` (20) distinct catalogue uploads a second to ``POST /api/v1/uploads`` for
   ``--duration`` seconds, with ``--workers`` (2) calibrate processes. Each upload is scheduled at
   its own time (open loop: a slow server does not slow the sender down, it makes it late, and the
   lateness is reported). A transport error is retried (3 tries, as ``cpcs upload`` does: resending
   is safe) and counted. Then the run waits for every observation to be final and counts, in
   PostgreSQL, against what was sent: observations, calibration requests, calibrations and points,
   exactly one each. Latency: from the upload's 202 (client clock) to its point's ``created_at``
   (written by the calibrate process; same machine, same clock).
2. **throughput**, on the same system afterwards: every calibrate worker is paused (SIGSTOP),
   ``--burst`` (400) uploads are queued as fast as the door takes them, then 1 worker (or both) is
   resumed (SIGCONT); points per second from the resume to the 90th percent point (a paused worker
   keeps the couple of messages it had prefetched until it is resumed too). ``--rounds`` (2)
   alternations of 1 and 2 workers, so that both see the same machine.

The machine's load average is sampled every 5 s and reported with each figure: on a shared machine
other jobs show up as latency.

The catalogue (``--stars``, 250 simulated stars): 415 detected sources in SExtractor ASCII_HEAD (19 KB),
against PS1 g r i z and GaiaSP B V R I references. Results: ``bench/results/load.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.fields import DEC_DEG, RA_DEG
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field, to_sextractor_ascii
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.testing.processes import RunningSystem, distributed_processes
from cpcs.testing.servers import temporary_postgres_database, temporary_rabbitmq_vhost

RESULTS = Path(__file__).with_name("results")
ALERT = "ivo://Gaia16aye"
FINAL = ("calibrated", "failed", "error")
ATTEMPTS = 3


@dataclass
class Sent:
    """One upload as the client saw it (epoch seconds)."""

    index: int
    scheduled: float
    started: float = 0.0
    answered: float = 0.0
    status: int = 0
    observation_id: int | None = None
    duplicate: bool = False
    error: str = ""
    retries: int = 0


@dataclass
class Prepared:
    system: RunningSystem
    token: str
    database_url: str
    field: SimulatedField


def load_field(stars: int) -> SimulatedField:
    return simulate_field(
        11, n_stars=stars, ra_deg=RA_DEG, dec_deg=DEC_DEG, radius_arcmin=12, target="bright"
    )


def upload_bytes(field: SimulatedField, variant: int) -> bytes:
    """The field's catalogue with one source nudged: new bytes for every ``variant`` (one source by
    ``1e-4 * (1 + variant // n)`` mag, so no magnitude moves by more than a few thousandths)."""
    mag = field.mag.copy()
    mag[variant % mag.size] += 1e-4 * (1 + variant // mag.size)
    return to_sextractor_ascii(field.ra_deg, field.dec_deg, mag, field.magerr).encode()


@contextmanager
def prepared_system(folder: Path, workers: int, field: SimulatedField) -> Iterator[Prepared]:
    """The distributed system with ``workers`` calibrate processes, a user, references and the alert."""
    with (
        temporary_rabbitmq_vhost() as broker_url,
        temporary_postgres_database() as database_url,
        distributed_processes(
            folder / "data",
            database_url,
            broker_url,
            calibrate_workers=workers,
        ) as system,
    ):
        token = system.cli("users", "add", "load", "--observatory", "load site").strip()
        for survey, path in write_reference_tables(field, folder / "refs").items():
            system.cli("catalog", "import", "--survey", survey, str(path))
        created = httpx.post(
            f"{system.api_url}/api/v1/alerts",
            json={"name": ALERT, "ra_deg": RA_DEG, "dec_deg": DEC_DEG},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        created.raise_for_status()
        yield Prepared(system, token, database_url, field)


def _psycopg_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


class Uploader:
    """Sends uploads from a pool of threads, each with its own HTTP connection."""

    def __init__(self, prepared: Prepared, threads: int, first_variant: int):
        self.prepared = prepared
        self.url = f"{prepared.system.ingest_url}/api/v1/uploads"
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="upload")
        self.local = threading.local()
        self.first_variant = first_variant

    def _client(self) -> httpx.Client:
        client = getattr(self.local, "client", None)
        if client is None:
            # Pooled connections expire before the server's keep-alive (5 s) can close them under us.
            client = httpx.Client(
                timeout=120,
                headers={"Authorization": f"Bearer {self.prepared.token}"},
                limits=httpx.Limits(keepalive_expiry=2.0),
            )
            self.local.client = client
        return client

    def _send(self, sent: Sent) -> Sent:
        variant = self.first_variant + sent.index
        data = upload_bytes(self.prepared.field, variant)
        form = {"alert": ALERT, "mjd": f"{57700 + variant / 1e4:.5f}", "exptime_s": "60", "filter": "r"}
        sent.started = time.time()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._client().post(self.url, data=form, files={"file": (f"{variant}.cat", data)})
            except httpx.TransportError as exc:
                # As the upload client does: resending is safe (identical bytes are recognised).
                sent.error = f"{type(exc).__name__}: {exc}"
                if attempt < ATTEMPTS:
                    sent.retries += 1
                    time.sleep(0.2)
                    continue
                sent.answered = time.time()
                return sent
            sent.answered = time.time()
            sent.status = response.status_code
            if response.status_code == 202:
                body = response.json()
                sent.observation_id = int(body["observation_id"])
                sent.duplicate = bool(body["duplicate"])
            else:
                sent.error = response.text[:200]
            return sent
        return sent

    def run(self, count: int, rate: float | None) -> list[Sent]:
        """``count`` uploads, one every ``1/rate`` s (open loop), or all at once when ``rate`` is None."""
        futures: list[Future[Sent]] = []
        start = time.time() + 0.5
        for index in range(count):
            scheduled = start + index / rate if rate else time.time()
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            futures.append(self.pool.submit(self._send, Sent(index, scheduled)))
        return [f.result() for f in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def wait_final(database_url: str, ids: list[int], patience_s: float = 120.0) -> float:
    """Wait until every observation is final (or nothing moved for ``patience_s``); returns the wait."""
    started = last_progress = time.time()
    pending_before = -1
    with psycopg.connect(_psycopg_url(database_url), autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT count(*) FROM observation WHERE id = ANY(%s) AND status <> ALL(%s)",
                (ids, list(FINAL)),
            ).fetchone()
            pending = int(row[0]) if row else 0
            if pending == 0:
                return time.time() - started
            if pending != pending_before:
                pending_before, last_progress = pending, time.time()
            elif time.time() - last_progress > patience_s:
                return time.time() - started
            time.sleep(0.5)


def audit(database_url: str, sent: list[Sent]) -> dict[str, Any]:
    """Count in the database, against what was sent: one observation, request, calibration, point each."""
    accepted = [s for s in sent if s.observation_id is not None]
    ids = [s.observation_id for s in accepted]
    with psycopg.connect(_psycopg_url(database_url), autocommit=True) as connection:
        rows = connection.execute(
            """
            SELECT o.id, o.status,
                   (SELECT count(*) FROM calibration_request r WHERE r.observation_id = o.id),
                   (SELECT count(*) FROM calibration c WHERE c.observation_id = o.id),
                   (SELECT count(*) FROM point p WHERE p.observation_id = o.id),
                   (SELECT min(p.created_at) FROM point p WHERE p.observation_id = o.id)
            FROM observation o WHERE o.id = ANY(%s)
            """,
            (ids,),
        ).fetchall()
        totals = {
            table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("upload", "observation", "calibration_request", "calibration", "point")
        }
        announced = connection.execute(
            "SELECT count(*), count(DISTINCT body) FROM outbox WHERE routing_key = 'point.calibrated'"
        ).fetchone()
    found = {int(r[0]): r for r in rows}
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r[1]] = statuses.get(r[1], 0) + 1
    points_at: dict[int, dt.datetime] = {int(r[0]): r[5] for r in rows if r[5] is not None}
    lost = [i for i in ids if i not in found or int(found[i][4]) == 0]
    duplicated = [i for i in ids if i in found and (int(found[i][2]) > 1 or int(found[i][3]) > 1)]
    latencies = [
        points_at[s.observation_id].timestamp() - s.answered
        for s in accepted
        if s.observation_id in points_at
    ]
    return {
        "sent": len(sent),
        "accepted_202": len(accepted),
        "refused": {str(k): v for k, v in _count(s.status for s in sent if s.status != 202).items()},
        "transport_errors": sum(1 for s in sent if s.status == 0),
        "client_retries": sum(s.retries for s in sent),
        "retried_because": sorted({s.error.split(":")[0] for s in sent if s.retries}),
        "answered_duplicate": sum(1 for s in accepted if s.duplicate),
        "distinct_observation_ids": len(set(ids)),
        "statuses": statuses,
        "in_database": totals,
        "point_calibrated_messages": {"rows": announced[0], "distinct": announced[1]} if announced else {},
        "lost": len(lost),
        "duplicated": len(duplicated) + (len(ids) - len(set(ids))),
        "latency_upload_to_point_s": _percentiles(latencies),
        "points_at": {i: at.timestamp() for i, at in points_at.items()},
    }


def _count(values: Iterator[int] | Any) -> dict[int, int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot(system: RunningSystem) -> dict[str, float]:
    return {name: _cpu_s(process.pid) for name, process in system.processes.items()}


def _cpu_per_upload(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU milliseconds each service spent per upload between two snapshots (PostgreSQL and RabbitMQ
    not included: they are shared by the machine)."""
    spent = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in before}
    per = {name: round(1e3 * s / max(n, 1), 1) for name, s in sorted(spent.items())}
    per["all services"] = round(1e3 * sum(spent.values()) / max(n, 1), 1)
    return per


def _door(sent: list[Sent]) -> dict[str, Any]:
    answered = [s for s in sent if s.status == 202]
    starts = sorted(s.started for s in sent)
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    return {
        "upload_request_s": _percentiles([s.answered - s.started for s in answered]),
        "send_lateness_s": _percentiles([s.started - s.scheduled for s in sent]),
        "achieved_rate_per_s": round((len(starts) - 1) / span, 2) if span else None,
    }


class LoadSampler:
    """The machine's 1-minute load average every few seconds (the machine may be shared)."""

    def __init__(self, every_s: float = 5.0):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), os.getloadavg()[0]))
            self._stop.wait(every_s)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[float]:
        return [load for at, load in self.samples if start <= at <= end]

    def summary(self, start: float = 0.0, end: float = float("inf")) -> dict[str, float]:
        loads = self.between(start, end) or [os.getloadavg()[0]]
        return {
            "min": round(min(loads), 2),
            "mean": round(statistics.fmean(loads), 2),
            "max": round(max(loads), 2),
        }


def _windows(sent: list[Sent], points_at: dict[int, float], load: LoadSampler, width_s: float) -> list[Any]:
    """Latency percentiles and the machine's load per ``width_s`` of sending time."""
    begin = min(s.scheduled for s in sent)
    rows = []
    for k in range(max(1, math.ceil((max(s.scheduled for s in sent) - begin) / width_s))):
        lo, hi = begin + k * width_s, begin + (k + 1) * width_s
        latencies = [
            points_at[s.observation_id] - s.answered
            for s in sent
            if lo <= s.scheduled < hi and s.observation_id in points_at
        ]
        stats = _percentiles(latencies)
        rows.append(
            {
                "from_s": round(k * width_s),
                "p50": stats.get("p50"),
                "p99": stats.get("p99"),
                "load_mean": load.summary(lo, hi)["mean"],
            }
        )
    return rows


def sustained(
    prepared: Prepared, rate: float, duration_s: float, threads: int, load: LoadSampler
) -> dict[str, Any]:
    count = int(rate * duration_s)
    uploader = Uploader(prepared, threads, first_variant=1)
    cpu_before = _cpu_snapshot(prepared.system)
    began = time.time()
    try:
        sent = uploader.run(count, rate)
    finally:
        uploader.close()
    sending_s = time.time() - began
    ids = [s.observation_id for s in sent if s.observation_id is not None]
    waited = wait_final(prepared.database_url, [i for i in ids if i is not None])
    result = audit(prepared.database_url, sent)
    points_at = result.pop("points_at")
    result.update(_door(sent))
    result["cpu_ms_per_upload"] = _cpu_per_upload(cpu_before, _cpu_snapshot(prepared.system), len(sent))
    result.update({"rate_per_s": rate, "duration_s": duration_s, "sending_s": round(sending_s, 1)})
    result["drained_after_last_send_s"] = round(waited, 1)
    result["machine_load"] = load.summary(began, time.time())
    result["per_30s"] = _windows(sent, points_at, load, 30.0)
    if points_at:
        first = min(s.started for s in sent)
        result["points_per_s_overall"] = round(len(points_at) / (max(points_at.values()) - first), 2)
    return result


def _calibrate_processes(prepared: Prepared) -> list[Any]:
    return [p for name, p in sorted(prepared.system.processes.items()) if name.startswith("calibrate-")]


def burst(
    prepared: Prepared, count: int, active: int, first_variant: int, load: LoadSampler
) -> dict[str, Any]:
    """Every calibrate worker paused, ``count`` uploads queued, ``active`` workers resumed: how fast
    they turn the queue into points is the throughput (to the 90th percent point, since a paused
    worker keeps the few messages it had prefetched until it is resumed too, at the end)."""
    workers = _calibrate_processes(prepared)
    for process in workers:
        os.kill(process.pid, signal.SIGSTOP)
    uploader = Uploader(prepared, 8, first_variant=first_variant)
    try:
        sent = uploader.run(count, None)
        ids = [s.observation_id for s in sent if s.observation_id is not None]
        resumed = time.time()
        cpu_resumed = _cpu_snapshot(prepared.system)
        for process in workers[:active]:
            os.kill(process.pid, signal.SIGCONT)
        ninety = _wait_points(prepared.database_url, ids, int(0.9 * len(ids)))
        cpu_ninety = _cpu_snapshot(prepared.system)
    finally:
        uploader.close()
        for process in workers:
            os.kill(process.pid, signal.SIGCONT)
    wait_final(prepared.database_url, ids)
    result = audit(prepared.database_url, sent)
    points = sorted(result.pop("points_at").values())
    n90 = int(0.9 * len(ids))
    result.update(_door(sent))
    result["active_workers"] = active
    result["points_per_s"] = round(n90 / (points[n90 - 1] - resumed), 2) if len(points) >= n90 > 0 else None
    result["reached_90_percent_after_s"] = round(ninety - resumed, 2)
    result["cpu_ms_per_point"] = _cpu_per_upload(cpu_resumed, cpu_ninety, n90)
    result["machine_load"] = load.summary(resumed, ninety)
    return result


def _wait_points(database_url: str, ids: list[int], target: int, patience_s: float = 300.0) -> float:
    """When ``target`` of the observations have their point (or the patience ran out)."""
    deadline = time.time() + patience_s
    with psycopg.connect(_psycopg_url(database_url), autocommit=True) as connection:
        while time.time() < deadline:
            row = connection.execute(
                "SELECT count(*) FROM point WHERE observation_id = ANY(%s)", (ids,)
            ).fetchone()
            if row and int(row[0]) >= target:
                return time.time()
            time.sleep(0.1)
    return time.time()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="30 s instead of --duration")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of sustained load")
    parser.add_argument("--rate", type=float, default=20.0, help="uploads per second")
    parser.add_argument("--workers", type=int, default=2, help="calibrate processes")
    parser.add_argument("--burst", type=int, default=400, help="uploads per throughput round (0: none)")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds with 1, then 2 workers")
    parser.add_argument("--threads", type=int, default=16, help="sending threads of the sustained load")
    parser.add_argument("--stars", type=int, default=250, help="simulated stars of the field")
    parser.add_argument("--skip-sustained", action="store_true")
    args = parser.parse_args()
    duration = 30.0 if args.quick else args.duration
    field = load_field(args.stars)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "catalogue": {"sources": int(field.mag.size), "bytes": len(upload_bytes(field, 1))},
        "throughput": [],
    }
    with (
        LoadSampler() as load,
        tempfile.TemporaryDirectory() as folder,
        prepared_system(Path(folder), args.workers, field) as prepared,
    ):
        if not args.skip_sustained:
            report["sustained"] = {
                "workers": args.workers,
                **sustained(prepared, args.rate, duration, args.threads, load),
            }
            print("sustained", json.dumps(report["sustained"], indent=1), flush=True)
        first_variant = 1_000_000
        for _ in range(args.rounds if args.burst else 0):
            for active in range(1, args.workers + 1):
                result = burst(prepared, args.burst, active, first_variant, load)
                first_variant += args.burst
                report["throughput"].append(result)
                keys = ("active_workers", "points_per_s", "lost", "duplicated", "machine_load")
                print("burst", json.dumps({k: result[k] for k in keys}), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

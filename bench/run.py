"""CPCS benchmarks: ``make bench`` (or ``python -m bench.run [--quick]``). Results go to bench/results/.

1. calibration work in process: parse the upload, warm cone from the tile store, cross-match,
   fit every survey/band, choose, calibrate the target (the calibrate worker's science, no DB);
2. the same as the calibrate consumer does it, with the SQLite commit of the calibration and point;
3. an upload through the legacy HTTP endpoint of ``cpcs up`` (embedded), upload to answer;
4. the same with every service as its own process on RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from bench.fields import DEC_DEG, RA_DEG, bench_field, catalogue_bytes, write_references
from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.science.field_calibration import FieldCalibration, calibrate_field
from cpcs.testing.processes import RunningSystem

RESULTS = Path(__file__).with_name("results")


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - started))
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "min_ms": round(ordered[0], 2),
        "n": len(ordered),
    }


def bench_calibration(repeats: int) -> dict[str, Any]:
    from cpcs.catalogs.cone import ConeService
    from cpcs.catalogs.importer import import_catalogue_file
    from cpcs.catalogs.tiles import TileStore
    from cpcs.formats.source_catalogue import read_source_catalogue

    field = bench_field()
    data = catalogue_bytes(field)
    with tempfile.TemporaryDirectory() as folder:
        store = TileStore(Path(folder) / "catalogs")
        for survey, path in write_references(field, Path(folder) / "refs").items():
            import_catalogue_file(store, survey, path, path.name)
        cones = ConeService(store, online=False)
        catalogue = read_source_catalogue(data)
        references = cones.get_cone(RA_DEG, DEC_DEG, 0.22)  # warm the cache

        def fit(refs: Mapping[str, ReferenceCatalogue] = references) -> FieldCalibration:
            return calibrate_field(
                catalogue.ra_deg,
                catalogue.dec_deg,
                catalogue.mag,
                catalogue.magerr,
                target_ra_deg=RA_DEG,
                target_dec_deg=DEC_DEG,
                references=refs,
            )

        def whole() -> FieldCalibration:
            read_source_catalogue(data)
            return fit(cones.get_cone(RA_DEG, DEC_DEG, 0.22))

        parse = _timed(lambda: read_source_catalogue(data), repeats)
        cone = _timed(lambda: cones.get_cone(RA_DEG, DEC_DEG, 0.22), repeats)
        fits = _timed(fit, repeats)
        total = _timed(whole, repeats)
        result = fit()
    bands = {name: list(ref.bands) for name, ref in references.items()}
    return {
        "sources": len(catalogue.mag),
        "reference_bands": bands,
        "parse": _summary(parse),
        "cone": _summary(cone),
        "match_fit_choose_target": _summary(fits),
        "total": _summary(total),
        "chosen": f"{result.survey}/{result.band}",
    }


def _legacy_uploads(system: RunningSystem, token: str, field: Any, repeats: int) -> list[float]:
    """Create the alert, then time ``repeats`` uploads of new bytes (after one to warm up)."""
    httpx.post(
        f"{system.api_url}/followup/newevent",
        data={"ivorn": "ivo://Gaia16aye", "ra": RA_DEG, "dec": DEC_DEG, "hashtag": token},
    ).raise_for_status()
    url = system.ingest_url
    times = []
    with httpx.Client(timeout=120) as client:
        for variant in range(1, repeats + 2):
            form = {
                "EventID": "ivo://Gaia16aye",
                "MJD": str(57700 + variant / 100),
                "expTime": "60",
                "matchDist": "2",
                "forceFilter": "no",
                "hashtag": token,
                "outputFormat": "json",
                "noPlot": "1",
                "dryRun": "0",
            }
            started = time.perf_counter()
            response = client.post(
                f"{url}/followup/cgi/upload",
                data=form,
                files={"sexCat": ("b.cat", catalogue_bytes(field, variant))},
            )
            elapsed = 1e3 * (time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"upload failed: {response.status_code} {response.text[:300]}")
            if variant > 1:  # the first upload warms caches
                times.append(elapsed)
    return times


def _prepare(system_cli: Callable[..., str], field: Any, folder: Path) -> str:
    token = system_cli("users", "add", "bench", "--observatory", "bench site").strip()
    for survey, path in write_references(field, folder / "refs").items():
        system_cli("catalog", "import", "--survey", survey, str(path))
    return token


def bench_embedded(repeats: int) -> dict[str, Any]:
    from cpcs.testing.processes import embedded_process, run_cli

    field = bench_field()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        env = {**os.environ, "CPCS_DATA_DIR": str(data_dir), "CPCS_LOG_LEVEL": "WARNING"}
        data_dir.mkdir(parents=True)
        run_cli(["db", "upgrade"], env)
        token = _prepare(lambda *a: run_cli(list(a), env), field, Path(folder))
        with embedded_process(data_dir, extra_env={"CPCS_LOG_LEVEL": "WARNING"}) as system:
            times = _legacy_uploads(system, token, field, repeats)
    return {"legacy_upload": _summary(times)}


def bench_distributed(repeats: int) -> dict[str, Any]:
    from cpcs.testing.processes import distributed_processes
    from cpcs.testing.servers import temporary_postgres_database, temporary_rabbitmq_vhost

    field = bench_field()
    with (
        tempfile.TemporaryDirectory() as folder,
        temporary_rabbitmq_vhost() as broker_url,
        temporary_postgres_database() as database_url,
        distributed_processes(Path(folder) / "data", database_url, broker_url) as system,
    ):
        token = _prepare(system.cli, field, Path(folder))
        times = _legacy_uploads(system, token, field, repeats)
    return {"legacy_upload": _summary(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", choices=["calibration", "embedded", "distributed"], action="append")
    args = parser.parse_args()
    repeats = 10 if args.quick else 40
    chosen = args.only or ["calibration", "embedded", "distributed"]
    runners = {"calibration": bench_calibration, "embedded": bench_embedded, "distributed": bench_distributed}
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
    }
    for name in chosen:
        report[name] = runners[name](repeats)
        print(name, json.dumps(report[name], indent=1))
    RESULTS.mkdir(exist_ok=True)
    latest = RESULTS / "latest.json"
    recorded = json.loads(latest.read_text()) if latest.exists() else {}
    recorded.update(report)  # a partial run (--only) keeps the other benchmarks' last figures
    latest.write_text(json.dumps(recorded, indent=2) + "\n")


if __name__ == "__main__":
    main()

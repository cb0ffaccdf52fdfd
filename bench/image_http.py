"""An image through the server, in process, and under bare SEP, on the same frame in one run.

    python -m bench.image_http [--size N] [--repeat K] [--zp Z]

Three figures for one simulated frame (the frame of ``bench.images``: header WCS off by 36" and
0.5 degrees, warm catalogue cache):

* **http**: the legacy ``/followup/cgi/upload`` of the FITS file (``fitsFile``, JSON answer) to a
  running embedded server (``cpcs up`` on a new data folder), from the request to the calibrated
  answer; the first upload warms the server and is not counted. Each upload adds a header card so
  that its bytes are new (a repeat of the same bytes would be answered as a duplicate).
* **in_process**: ``bench.images`` on the same frame (read, reduce, calibrate), in its own process.
* **sep_floor**: ``sep.Background`` + ``sep.extract`` (1.5 sigma) of the frame: what no pipeline
  that finds the stars can beat.

The ratios http / sep_floor and in_process / sep_floor are the issue's yardsticks. The server runs
with traces written to files (``CPCS_OTEL_EXPORTER=file:``), and ``http_stages`` says where the time
of the counted uploads went, span by span (:mod:`bench.trace_account`). Results go to
``bench/results/latest.json`` under ``image_http``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.trace_account import read_spans, stage_account
from cpcs.offline import configure_astropy_offline

ALERT = "ivo://BenchImage"
_TOKEN_LINE = re.compile(r"shown only this once:\s*\n\s*(\S+)")


def _frame(size: int, zp: float) -> tuple[Any, float, float]:
    from cpcs.simulation.image_simulator import simulate_image

    image = simulate_image(
        1, shape=(size, size), zp=zp, header_offset_arcsec=(30.0, -20.0), header_rotation_deg=0.5
    )
    assert image.target is not None
    return image, image.target.ra_deg, image.target.dec_deg


def sep_floor_ms(data: np.ndarray, repeat: int) -> float:
    """Median time of a bare SEP background and extraction of ``data``."""
    import sep

    frame = np.ascontiguousarray(data, dtype=np.float32)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        background = sep.Background(frame)
        sep.extract(frame - background, 1.5, err=background.globalrms)
        times.append(1e3 * (time.perf_counter() - started))
    return statistics.median(times)


def in_process(size: int, zp: float, repeat: int) -> dict[str, Any]:
    """``bench.images`` on the same frame, in a process of its own."""
    command = [sys.executable, "-m", "bench.images", "--child", "--size", str(size)]
    command += ["--repeat", str(repeat), "--zp", str(zp)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def _cli(env: dict[str, str], *args: str) -> str:
    command = [str(Path(sys.executable).with_name("cpcs")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout


def through_http(image: Any, ra: float, dec: float, repeat: int, folder: Path) -> dict[str, Any]:
    """Upload the frame ``repeat + 1`` times to a fresh embedded server; the first one warms it."""
    from astropy.io import fits

    from cpcs.simulation.image_simulator import image_to_fits_bytes
    from cpcs.simulation.reference_files import write_reference_tables
    from cpcs.testing.processes import free_port, wait_ready

    port = free_port()
    spans = folder / "spans"
    env = {
        **os.environ,
        "CPCS_DATA_DIR": str(folder / "data"),
        "CPCS_PORT": str(port),
        "CPCS_OTEL_EXPORTER": f"file:{spans}/{{service}}-{{pid}}.jsonl",
    }
    host = f"http://127.0.0.1:{port}"
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("cpcs")), "up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(host, [server], timeout_s=120)
        match = _TOKEN_LINE.search(log_path.read_text())
        if match is None:
            raise RuntimeError(f"no admin token in the server's start log {log_path}")
        admin = match.group(1)
        token = _cli(env, "users", "add", "Bench Observer", "--observatory", "Bench 0.6m",
                     "--lon", "21.42", "--lat", "52.09").strip()  # fmt: skip
        for survey, path in write_reference_tables(image.references.values(), folder / "refs").items():
            _cli(env, "catalog", "import", "--survey", survey, str(path))
        with httpx.Client(base_url=host, timeout=120) as client:
            answer = client.post(
                "/followup/newevent", data={"ivorn": ALERT, "ra": ra, "dec": dec, "hashtag": admin}
            )
            answer.raise_for_status()
            base = image_to_fits_bytes(image)
            times: list[float] = []
            counted: set[str] = set()  # trace ids of the counted uploads (the bench names them)
            for run in range(repeat + 1):
                with fits.open(io.BytesIO(base)) as hdus:
                    hdus[0].header["BENCHRUN"] = (run, "makes each upload's bytes new")
                    buffer = io.BytesIO()
                    hdus.writeto(buffer)
                form = {"EventID": ALERT, "hashtag": token, "outputFormat": "json"}
                trace_id = secrets.token_hex(16)
                started = time.perf_counter()
                answer = client.post(
                    "/followup/cgi/upload",
                    data=form,
                    files={"fitsFile": ("frame.fits", buffer.getvalue())},
                    headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                )
                elapsed = 1e3 * (time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"upload {run} answered {answer.status_code}: {answer.text[:500]}")
                if run:
                    times.append(elapsed)
                    counted.add(f"0x{trace_id}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    recorded = [s for s in read_spans(spans) if s["context"]["trace_id"] in counted]
    return {
        "median_ms": round(statistics.median(times), 1),
        "runs_ms": [round(t, 1) for t in times],
        "stages": stage_account(recorded, "POST /followup/cgi/upload"),
    }


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--zp", type=float, default=25.0, help="25: shallow field, 27.5: deep field")
    args = parser.parse_args()
    configure_astropy_offline()
    image, ra, dec = _frame(args.size, args.zp)
    floor = sep_floor_ms(image.data, args.repeat)
    local = in_process(args.size, args.zp, args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        http = through_http(image, ra, dec, args.repeat, Path(folder))
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": args.size,
        "zp": args.zp,
        "sources": local["sources"],
        "sep_floor_ms": round(floor, 1),
        "in_process_ms": local["median_total_ms"],
        "in_process_stages_ms": local["stages_median_ms"],
        "http_ms": http["median_ms"],
        "http_runs_ms": http["runs_ms"],
        "ratio_http_to_sep": round(http["median_ms"] / floor, 2),
        "ratio_in_process_to_sep": round(local["median_total_ms"] / floor, 2),
        "http_overhead_ms": round(http["median_ms"] - local["median_total_ms"], 1),
        "http_stages": http["stages"],
    }
    print(json.dumps(report, indent=2))
    results = Path(__file__).with_name("results") / "latest.json"
    recorded = json.loads(results.read_text()) if results.exists() else {}
    recorded.setdefault("image_http", {})[f"{args.size}_zp{args.zp:g}"] = report
    results.write_text(json.dumps(recorded, indent=2) + "\n")


if __name__ == "__main__":
    main()

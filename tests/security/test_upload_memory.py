"""A small compressed catalogue that expands to millions of rows is refused fast, in little memory.

The server runs in its own process so that its peak resident memory (``VmHWM``) can be read; the
bounds are generous (timings belong to the benchmarks) but far below what parsing the whole file
cost (27.6 s and 3 GB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy.io import fits

from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG
from tests.security.conftest import ALERT, bearer

ROOT = Path(__file__).resolve().parents[2]
HEADER = b"#   1 ALPHA_J2000\n#   2 DELTA_J2000\n#   3 MAG_AUTO\n#   4 MAGERR_AUTO\n"
ROW = f"{FIELD_RA_DEG:.6f} {FIELD_DEC_DEG:.6f} 15.1234 0.0123\n".encode()
MIB = 2**20
IMAGE_PIXELS = 1000 * 1000


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def gzip_rows(count: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(HEADER)]
    parts += [packer.compress(ROW * 100_000) for _ in range(count // 100_000)]
    return b"".join([*parts, packer.compress(ROW * (count % 100_000)), packer.flush()])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[httpx.Client, int, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.security.memory_server", str(tmp_path / "data")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CPCS_MAX_IMAGE_PIXELS": str(IMAGE_PIXELS)},
        text=True,
    )
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        client = httpx.Client(base_url=f"http://127.0.0.1:{started['port']}", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield client, process.pid, started["token"]
        client.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def gzip_image_bomb(zeros: int) -> bytes:
    """A 1000 x 1000 float image header followed by ``zeros`` zero bytes, gzip-compressed."""
    header = fits.PrimaryHDU(data=np.zeros((1, 1), dtype=np.float32)).header
    header["NAXIS1"] = header["NAXIS2"] = 1000
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(header.tostring().encode())]
    parts += [packer.compress(bytes(16 * MIB)) for _ in range(zeros // (16 * MIB))]
    return b"".join([*parts, packer.flush()])


def upload(
    client: httpx.Client, token: str, data: bytes, filename: str = "frame.cat.gz"
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57737.8", "dry_run": "true"},
        files={"file": (filename, data)},
        headers=bearer(token),
    )
    return response, time.monotonic() - started


def test_five_million_rows_in_a_small_gzip_are_refused_fast_and_cheaply(
    server: tuple[httpx.Client, int, str],
) -> None:
    client, pid, token = server
    created = client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=bearer(token),
    )
    assert created.status_code == 201, created.text
    # A normal upload first, so that the baseline includes what any upload costs.
    normal, _ = upload(client, token, gzip_rows(2_000))
    assert normal.status_code in (200, 201, 202), normal.text
    baseline = peak_rss_bytes(pid)

    bomb = gzip_rows(5_000_000)
    assert len(bomb) < 600_000
    refused, elapsed = upload(client, token, bomb)
    growth = peak_rss_bytes(pid) - baseline
    print(f"bomb of {len(bomb)} bytes refused in {elapsed:.3f} s, peak RSS growth {growth / MIB:.1f} MiB")
    assert refused.status_code in (413, 422), refused.text
    assert refused.json()["error"] == "too_many_rows"
    assert elapsed < 5.0
    assert growth < 200 * MIB
    health_started = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - health_started < 1.0

    # An image that inflates to 256 MiB is refused once it passes what the largest image may hold.
    image_bomb = gzip_image_bomb(256 * MIB)
    assert len(image_bomb) < MIB
    baseline = peak_rss_bytes(pid)
    refused, elapsed = upload(client, token, image_bomb, "frame.fits.gz")
    growth = peak_rss_bytes(pid) - baseline
    print(
        f"image bomb of {len(image_bomb)} bytes refused in {elapsed:.3f} s, "
        f"peak RSS growth {growth / MIB:.1f} MiB"
    )
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"] == "decompressed_too_large"
    assert elapsed < 5.0
    assert growth < 200 * MIB

"""Subtraction with every service as its own process, on the machine's RabbitMQ and PostgreSQL."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from cpcs.simulation.image_simulator import image_to_fits_bytes
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.simulation.transient_simulator import simulate_epoch_pair
from cpcs.testing.processes import distributed_processes
from cpcs.testing.servers import temporary_postgres_database, temporary_rabbitmq_vhost


def test_template_and_difference_across_processes(tmp_path: Path) -> None:
    pair = simulate_epoch_pair(1, shape=(512, 512), star_density=3.0, transient_snr=30.0)
    where = pair.science.true_wcs.pixel_to_world(pair.transient_x[0], pair.transient_y[0])
    with (
        temporary_rabbitmq_vhost() as broker_url,
        temporary_postgres_database() as database_url,
        distributed_processes(tmp_path / "data", database_url, broker_url) as system,
    ):
        token = system.cli("users", "add", "K. Rybicki", "--observatory", "Ostrowik").strip()
        bearer = {"Authorization": f"Bearer {token}"}
        for survey, path in write_reference_tables(
            pair.science.references.values(), tmp_path / "refs"
        ).items():
            system.cli("catalog", "import", "--survey", survey, str(path))
        created = httpx.post(
            f"{system.api_url}/api/v1/alerts",
            json={
                "name": "ivo://CPCS-sn-distributed",
                "ra_deg": float(where.ra.deg),
                "dec_deg": float(where.dec.deg),
            },
            headers=bearer,
        )
        assert created.status_code == 201, created.text
        template = httpx.post(
            f"{system.api_url}/api/v1/alerts/{created.json()['id']}/templates",
            data={"filter": "r"},
            files={"file": ("template.fits", image_to_fits_bytes(pair.template))},
            headers=bearer,
            timeout=60,
        )
        assert template.status_code == 201, template.text
        accepted = httpx.post(
            f"{system.ingest_url}/api/v1/uploads",
            data={"alert": "ivo://CPCS-sn-distributed", "force_filter": "PS1/r"},
            files={"file": ("science.fits", image_to_fits_bytes(pair.science))},
            headers=bearer,
            timeout=60,
        )
        assert accepted.status_code == 202, accepted.text
        url = accepted.json()["status_url"]
        deadline = time.monotonic() + 300
        while (observation := httpx.get(url, headers=bearer).json())["status"] == "received":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert observation["status"] == "calibrated", observation
        difference = observation["point"]["difference"]
        assert difference["template"]["id"] == template.json()["id"]
        assert abs(difference["mag"] - float(pair.transient_mag[0])) < 0.06
        assert observation["point"]["mag"] < float(pair.transient_mag[0]) - 0.3
        product = httpx.get(f"{url}/difference", params={"product": "noise"}, headers=bearer)
        assert product.status_code == 200 and product.content.startswith(b"SIMPLE")
        # The api process draws the pictures from what reduce stored, the stars through catalog-cache.
        thumbnail = httpx.get(f"{url}/thumbnail.png", headers=bearer, timeout=60)
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/png"
        frame = np.asarray(Image.open(io.BytesIO(thumbnail.content)).convert("RGB"))
        assert frame.shape[:2] == pair.science.data.shape  # 512 px: not reduced
        assert np.all(frame == np.array((60, 220, 90), dtype=np.uint8), axis=2).sum() > 200  # stars circled
        for image in ("science", "template", "difference"):
            cutout = httpx.get(
                f"{url}/cutout.png", params={"image": image, "size": 40}, headers=bearer, timeout=60
            )
            assert cutout.status_code == 200, cutout.text
            assert Image.open(io.BytesIO(cutout.content)).size == (40, 40)

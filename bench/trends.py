"""How long an instrument's trends take (the API and the page compute them on each request).

A SQLite store with one instrument's frames (catalogue uploads: no measured airmass, so every
airmass is computed from the time and the observatory's position), ``FRAMES_PER_NIGHT`` a night
over as many nights as needed; ``cpcs.domain.trends.instrument_trends`` is timed on it.

    .venv/bin/python -m bench.trends [--frames 1000 5000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cpcs.db.engine import Database
from cpcs.db.models import Alert, Base, Calibration, Instrument, Observation, Observatory, Point, Upload, User
from cpcs.db.secret_box import SecretBox, new_key
from cpcs.domain.trends import instrument_trends

FRAMES_PER_NIGHT = 10
RA_DEG, DEC_DEG = 295.00474, 30.13149


def seed(database: Database, n_frames: int) -> int:
    """``n_frames`` calibrated frames of one instrument; returns its id."""
    rng = np.random.default_rng(1)
    with database.transaction() as session:
        site = Observatory(name="Ostrowik 0.6m", lon_deg=21.42, lat_deg=52.09, elevation_m=138.0)
        session.add(site)
        session.flush()
        instrument = Instrument(observatory_id=site.id, name="Andor iKon", filters={})
        user = User(name="K. Rybicki", observatory_id=site.id)
        alert = Alert(name="ivo://Gaia16aye", ra_deg=RA_DEG, dec_deg=DEC_DEG)
        session.add_all([instrument, user, alert])
        session.flush()
        for index in range(n_frames):
            night, visit = divmod(index, FRAMES_PER_NIGHT)
            mjd = 60100.0 + 2 * night + 0.8 + 0.03 * visit
            upload = Upload(sha256=f"{index:064d}", size_bytes=1, kind="catalogue", stored_path="x")
            session.add(upload)
            session.flush()
            observation = Observation(
                alert_id=alert.id, user_id=user.id, upload_id=upload.id, instrument_id=instrument.id,
                mjd=mjd, exptime_s=float(rng.choice([30.0, 60.0, 120.0])), filter_declared="V",
                status="calibrated",
            )  # fmt: skip
            session.add(observation)
            session.flush()
            calibration = Calibration(
                observation_id=observation.id, version=1, pipeline_version="bench", mode="AUTO",
                survey="GaiaSP", band="V", zp=22.5 + rng.normal(0, 0.05), zp_err=0.01, colour_term=0.05,
                colour_term_err=0.01, scatter=0.02, intrinsic_scatter=0.0, n_stars=50, n_matched=60,
                outlier_fraction=0.0,
            )  # fmt: skip
            session.add(calibration)
            session.flush()
            session.add(
                Point(
                    observation_id=observation.id,
                    alert_id=alert.id,
                    user_id=user.id,
                    calibration_id=calibration.id,
                    mjd=mjd,
                    survey="GaiaSP",
                    band="V",
                    mag=15.0,
                    magerr=0.01,
                    caliberr=0.02,
                    mag_err_total=0.022,
                    limit_mag=19.0 + rng.normal(0, 0.1),
                )
            )
        return instrument.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| frames | nights | median | max |")
    print("|---|---|---|---|")
    for n_frames in args.frames:
        with tempfile.TemporaryDirectory() as folder:
            database = Database(
                f"sqlite:///{Path(folder) / 'bench.sqlite3'}", secret_box=SecretBox([new_key()])
            )
            Base.metadata.create_all(database.engine)
            instrument_id = seed(database, n_frames)
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                with database.transaction() as session:
                    trends = instrument_trends(session, instrument_id)
                times.append(time.perf_counter() - started)
            assert trends.n_frames == n_frames
            nights = len(trends.series[0].nights)
            median, worst = 1e3 * statistics.median(times), 1e3 * max(times)
            print(f"| {n_frames} | {nights} | {median:.0f} ms | {worst:.0f} ms |")
            database.dispose()


if __name__ == "__main__":
    main()

"""The image path, stage by stage, in process (python -m bench.images [--size N] [--repeat K]).

Each size runs in a fresh subprocess so that its peak memory (max RSS) is its own. Warm catalogue
cache: the field's reference stars are in the tile store and the cone is read once before timing.
Stages: read the FITS file, the reduction steps (background, mask, detection + FWHM, PSF model,
astrometry, photometry, forced photometry), then the calibration of the measured table.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cpcs.offline import configure_astropy_offline


def run_one(size: int, repeat: int, zp: float) -> dict[str, Any]:
    from astropy.io import fits

    from cpcs.catalogs.cone import ConeService
    from cpcs.catalogs.importer import import_catalogue_file
    from cpcs.catalogs.tiles import TileStore
    from cpcs.science.field_calibration import calibrate_field
    from cpcs.science.image_reduction import reduce_image
    from cpcs.science.imaging.header import standardise_header
    from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
    from cpcs.simulation.reference_files import write_reference_tables

    configure_astropy_offline()
    image = simulate_image(
        1, shape=(size, size), zp=zp, header_offset_arcsec=(30.0, -20.0), header_rotation_deg=0.5
    )
    assert image.target is not None
    ra, dec = image.target.ra_deg, image.target.dec_deg
    stages: dict[str, list[float]] = {}
    totals: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.fits"
        path.write_bytes(image_to_fits_bytes(image))
        del image
        store = TileStore(Path(folder) / "catalogs")
        import_from = Path(folder) / "refs"
        reference_image = simulate_image(1, shape=(size, size), zp=zp)
        for survey, table in write_reference_tables(reference_image.references.values(), import_from).items():
            import_catalogue_file(store, survey, table, table.name)
        del reference_image
        cones = ConeService(store, online=False)
        radius = size * 0.6 / 3600 * 0.75
        cones.get_cone(ra, dec, radius)  # warm
        for _ in range(repeat):
            started = time.perf_counter()
            t0 = time.perf_counter()
            with fits.open(path, memmap=False) as hdus:
                data = np.asarray(hdus[0].data, dtype=np.float32)
                header = standardise_header(hdus[0].header)
            read_ms = 1e3 * (time.perf_counter() - t0)
            gaia = cones.get_cone(ra, dec, radius, surveys=["Gaia"])["Gaia"]
            result = reduce_image(data, header, gaia, target_ra_deg=ra, target_dec_deg=dec)
            t0 = time.perf_counter()
            references = cones.get_cone(ra, dec, radius)
            sources = result.sources
            calibrate_field(
                np.asarray(sources["RA"]),
                np.asarray(sources["DEC"]),
                np.asarray(sources["MAG_APER"]),
                np.asarray(sources["MAGERR_APER"]),
                target_ra_deg=ra,
                target_dec_deg=dec,
                references=references,
                forced_target=result.forced_target(),
            )
            calibrate_ms = 1e3 * (time.perf_counter() - t0)
            totals.append(1e3 * (time.perf_counter() - started))
            for name, value in {"read": read_ms, **result.timings_ms, "calibrate": calibrate_ms}.items():
                stages.setdefault(name, []).append(value)
            n_sources = len(sources)
    return {
        "size": size,
        "zp": zp,
        "sources": n_sources,
        "median_total_ms": round(statistics.median(totals), 1),
        "stages_median_ms": {k: round(statistics.median(v), 1) for k, v in stages.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "repeats": repeat,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, action="append")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--zp", type=float, action="append", help="simulated zero points (25: shallow, 27.5: deep field)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.size[0], args.repeat, args.zp[0])))
        return
    report = []
    for zp in args.zp or [25.0, 27.5]:
        for size in args.size or [2048, 4096]:
            command = [sys.executable, "-m", "bench.images", "--child", "--size", str(size)]
            command += ["--repeat", str(args.repeat), "--zp", str(zp)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            report.append(json.loads(output.strip().splitlines()[-1]))
            print(json.dumps(report[-1]))
    results = Path(__file__).with_name("results") / "latest.json"
    recorded = json.loads(results.read_text()) if results.exists() else {}
    recorded["images"] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": report}
    results.write_text(json.dumps(recorded, indent=2) + "\n")


if __name__ == "__main__":
    main()

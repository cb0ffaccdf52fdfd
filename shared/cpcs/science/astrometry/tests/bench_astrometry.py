"""Accuracy, robustness and speed of the astrometric solver on synthetic fields (not a pytest module).

Run from the repository root::

    .venv/bin/python shared/cpcs/science/astrometry/tests/bench_astrometry.py [n_trials]

Each trial draws a random field (scale 0.3-1.5 arcsec/px, image 1k-4k px, 150-3000 stars on the image,
any sky position, rotation and parity, SIP distortion 0-6 px at the corners (0-100 % radial),
magnitudes scattered by 0.3-0.7 mag, 20 % of the stars missed, 20 % spurious detections, 0.05 px
centroid noise) and solves it in refine mode (header off by up to 1 arcmin and 2 degrees, scale by up
to 1.5 %) and in blind mode (pointing off by up to 4 arcmin, scale known to 2 %). Reported: failures,
wrong solutions (fewer than 99 % of the matches right), the largest difference between the solved and
the true WCS over a grid on the image (arcsec; noise-limited, so larger at coarse scales with few
stars: cases above 0.1 arcsec are listed) and the solve times. Then the fixed speed case (~2,000
sources, ~3,000 references, 0.6 arcsec/px) and random point sets (must fail fast).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from cpcs.errors import CalibrationFailed
from cpcs.science.astrometry import solve_astrometry

_spec = importlib.util.spec_from_file_location(
    "astrometry_synthetic", Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
synthetic = importlib.util.module_from_spec(_spec)
sys.modules["astrometry_synthetic"] = synthetic
_spec.loader.exec_module(synthetic)


def _timed(function, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    try:
        result = function(*args, **kwargs)
    except CalibrationFailed as error:
        result = error
    return result, time.perf_counter() - start


def _random_field(seed: int) -> synthetic.SyntheticField:
    rng = np.random.default_rng(10_000 + seed)
    side = int(rng.choice([1024, 2048, 3000, 4096]))
    other = int(rng.choice([side, int(side * 0.7)]))
    angle = rng.uniform(0, 2 * np.pi)
    radius = 60.0 * np.sqrt(rng.uniform())
    return synthetic.make_field(
        seed,
        shape=(other, side),
        scale_arcsec=float(rng.uniform(0.3, 1.5)),
        centre=(float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-0.95, 0.95))))),
        rotation_deg=float(rng.uniform(-180, 180)),
        flipped=bool(rng.uniform() < 0.3),
        distortion_px=float(rng.uniform(0, 6)) if rng.uniform() < 0.7 else 0.0,
        radial_fraction=float(rng.uniform(0.0, 1.0)),
        n_stars_on_image=int(np.exp(rng.uniform(np.log(150), np.log(3000)))),
        margin_arcmin=6.0,
        mag_scatter=float(rng.uniform(0.3, 0.7)),
        header_offset_arcsec=(radius * np.cos(angle), radius * np.sin(angle)),
        header_rotation_deg=float(rng.uniform(-2, 2)),
        header_scale_error=float(rng.uniform(-0.015, 0.015)),
    )


def _summary(name: str, rows: list[tuple[float, float, int, float, float]], failures: list[str]) -> None:
    """rows: (max error arcsec, scale, sip order, time, fraction of right matches)."""
    data = np.array(rows) if rows else np.full((1, 5), np.nan)
    worst, scale, order, elapsed, right = data.T
    n_wrong = int(np.sum(right < 0.99))
    print(
        f"{name:>7}: {len(rows)} solved ({n_wrong} wrong), {len(failures)} failed; grid max error median "
        f"{np.median(worst):.3f}, 95 % {np.percentile(worst, 95):.3f}, worst {np.max(worst):.3f} arcsec "
        f"(worst {np.max(worst / scale):.3f} px); SIP orders {np.bincount(order.astype(int)).tolist()}; "
        f"time median {1000 * np.median(elapsed):.0f} ms, max {1000 * np.max(elapsed):.0f} ms"
    )
    above = np.flatnonzero(worst > 0.1)
    for index in above:
        pixels = worst[index] / scale[index]
        print(
            f"          max error {worst[index]:.3f} arcsec = {pixels:.3f} px at {scale[index]:.2f} arcsec/px"
        )
    for failure in failures:
        print("          failed:", failure)


def main(n_trials: int = 40) -> None:
    results: dict[str, tuple[list[tuple[float, float, int, float, float]], list[str]]] = {
        "refine": ([], []),
        "blind": ([], []),
    }
    for seed in range(n_trials):
        field = _random_field(seed)
        rng = np.random.default_rng(20_000 + seed)
        common = (field.x, field.y, field.flux, field.ref_ra, field.ref_dec, field.ref_mag)
        refine, t_refine = _timed(
            solve_astrometry, *common, image_shape=field.shape, initial_wcs=field.header_wcs
        )
        angle, radius = rng.uniform(0, 2 * np.pi), 4.0 * np.sqrt(rng.uniform())
        pointing = (
            field.centre[0] + radius / 60 * np.cos(angle) / np.cos(np.radians(field.centre[1])),
            field.centre[1] + radius / 60 * np.sin(angle),
        )
        blind, t_blind = _timed(
            solve_astrometry,
            *common,
            image_shape=field.shape,
            pointing=pointing,
            pixel_scale_arcsec=field.pixel_scale_arcsec * (1 + rng.uniform(-0.02, 0.02)),
        )
        for name, result, elapsed in (("refine", refine, t_refine), ("blind", blind, t_blind)):
            rows, failures = results[name]
            if isinstance(result, CalibrationFailed):
                failures.append(f"seed {seed} {field.shape} {field.x.size} sources: {result}")
                continue
            worst, _ = synthetic.wcs_difference(result.wcs, field.true_wcs, field.shape)
            right = field.star_of_source[result.match_source_index] == result.match_reference_index
            rows.append((worst, field.pixel_scale_arcsec, result.sip_order, elapsed, float(np.mean(right))))
    for name, (rows, failures) in results.items():
        _summary(name, rows, failures)

    # Speed case: ~2,000 sources, ~3,000 references.
    field = synthetic.make_field(
        7,
        n_stars_on_image=2300,
        margin_arcmin=1.5,
        detection_limit=20.5,
        distortion_px=4.0,
        header_offset_arcsec=(40.0, -35.0),
        header_rotation_deg=1.7,
        rotation_deg=33.0,
    )
    common = (field.x, field.y, field.flux, field.ref_ra, field.ref_dec, field.ref_mag)
    solve_astrometry(*common, image_shape=field.shape, initial_wcs=field.header_wcs)  # warm-up
    refine_times, blind_times = [], []
    for _ in range(5):
        solution, elapsed = _timed(
            solve_astrometry, *common, image_shape=field.shape, initial_wcs=field.header_wcs
        )
        refine_times.append(elapsed)
        _, elapsed = _timed(
            solve_astrometry,
            *common,
            image_shape=field.shape,
            pointing=(field.centre[0] + 0.04, field.centre[1] - 0.03),
            pixel_scale_arcsec=0.6 * 1.015,
        )
        blind_times.append(elapsed)
    worst, rms = synthetic.wcs_difference(solution.wcs, field.true_wcs, field.shape)
    print(
        f"  speed: {field.x.size} sources, {field.ref_ra.size} references: refine median "
        f"{1000 * np.median(refine_times):.0f} ms, blind median {1000 * np.median(blind_times):.0f} ms; "
        f"order {solution.sip_order}, n={solution.n_matched}, rms {solution.rms_arcsec:.3f}, "
        f"grid max/rms error {worst:.3f}/{rms:.3f} arcsec"
    )

    # Random point sets: must fail, fast.
    rng = np.random.default_rng(3)
    fail_times = []
    for trial in range(5):
        x, y = rng.uniform(0, 2047, 1500), rng.uniform(0, 2047, 1500)
        ra = 150.0 + rng.uniform(-0.25, 0.25, 2500) / np.cos(np.radians(30.0))
        dec = 30.0 + rng.uniform(-0.25, 0.25, 2500)
        kwargs: dict = (
            {"initial_wcs": field.header_wcs}
            if trial % 2 == 0
            else {"pointing": (150.0, 30.0), "pixel_scale_arcsec": 0.6}
        )
        result, elapsed = _timed(
            solve_astrometry,
            x,
            y,
            rng.uniform(1, 100, 1500),
            ra,
            dec,
            rng.uniform(12, 20, 2500),
            image_shape=(2048, 2048),
            **kwargs,
        )
        assert isinstance(result, CalibrationFailed), "a random point set was solved"
        fail_times.append(elapsed)
    print(f" random: 5/5 rejected, time max {1000 * max(fail_times):.0f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)

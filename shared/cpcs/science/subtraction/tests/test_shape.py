"""The shape classifier: injected PSF transients score as normal, cosmic rays, hot pixels and dipoles
as outliers, on a difference image with the noise of a real one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpcs.science.imaging.psf import PsfModel
from cpcs.science.subtraction import find_candidates
from cpcs.science.subtraction.candidates import TransientCandidate
from cpcs.science.subtraction.difference import SubtractionResult

SHAPE = (1024, 1024)
NOISE_ADU = 10.0
FWHM_PX = 3.6


def _sites(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sites on a jittered grid, each kind in its own cells (no two sources blend)."""
    grid = np.arange(40, SHAPE[0] - 40, 64, dtype=np.float64)
    gx, gy = np.meshgrid(grid, grid)
    order = rng.permutation(gx.size)[:n]
    return gx.ravel()[order] + rng.uniform(-10, 10, n), gy.ravel()[order] + rng.uniform(-10, 10, n)


def _add_psf(image: np.ndarray, psf: PsfModel, x: float, y: float, flux: float) -> None:
    ix, iy = round(x), round(y)
    h = 12
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1].astype(np.float64)
    profile = psf.profile(xx - (x - ix), yy - (y - iy), x, y)
    image[iy - h : iy + h + 1, ix - h : ix + h + 1] += flux * profile / profile.sum()


def _flux_for_snr(psf: PsfModel, snr: float) -> float:
    h = 12
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1].astype(np.float64)
    profile = psf.profile(xx, yy, 512.0, 512.0)
    profile /= profile.sum()
    return snr * NOISE_ADU / math.sqrt(float(np.sum(profile**2)))


def _difference(data: np.ndarray) -> SubtractionResult:
    return SubtractionResult(
        difference=data.astype(np.float32),
        noise=np.full(SHAPE, NOISE_ADU, dtype=np.float32),
        mask=np.zeros(SHAPE, dtype=bool),
        psf_of="science",
        flux_scale=1.0,
        kernel=np.ones((1, 1)),
        kernel_sum=1.0,
        convolved="template",
        seconds_background=0.0,
        seconds_fit=0.0,
        seconds_noise=0.0,
        seconds_total=0.0,
    )


def _nearest(candidates: tuple[TransientCandidate, ...], x: float, y: float) -> TransientCandidate | None:
    best = min(candidates, key=lambda c: math.hypot(c.x - x, c.y - y))
    return best if math.hypot(best.x - x, best.y - y) < 4.0 else None


@pytest.fixture(scope="module")
def injected() -> dict[str, list[TransientCandidate | None]]:
    rng = np.random.default_rng(11)
    psf = PsfModel.circular(FWHM_PX, 3.0, SHAPE)
    data = rng.normal(0.0, NOISE_ADU, SHAPE)
    xs, ys = _sites(rng, 220)
    kinds: dict[str, list[tuple[float, float]]] = {"transient": [], "cosmic": [], "hot": [], "dipole": []}
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        kind = ("transient", "transient", "cosmic", "hot", "dipole")[i % 5]
        if kind == "transient":
            snr = float(rng.uniform(8.0, 60.0))
            flux = _flux_for_snr(psf, snr)
            _add_psf(data, psf, x, y, flux)
        elif kind == "hot":  # one pixel, 20-200 sigma
            data[round(y), round(x)] += rng.uniform(20.0, 200.0) * NOISE_ADU
        elif kind == "cosmic":  # a short track of 2-4 pixels, each 10-80 sigma
            length = int(rng.integers(2, 5))
            step = [(1, 0), (0, 1), (1, 1)][int(rng.integers(0, 3))]
            for j in range(length):
                data[round(y) + j * step[1], round(x) + j * step[0]] += rng.uniform(10.0, 80.0) * NOISE_ADU
        else:  # a star misaligned by 1-2 px: a positive and a negative PSF side by side
            flux = _flux_for_snr(psf, float(rng.uniform(20.0, 80.0)))
            angle = rng.uniform(0, 2 * math.pi)
            shift = rng.uniform(1.0, 2.0)
            _add_psf(data, psf, x + 0.5 * shift * math.cos(angle), y + 0.5 * shift * math.sin(angle), flux)
            _add_psf(data, psf, x - 0.5 * shift * math.cos(angle), y - 0.5 * shift * math.sin(angle), -flux)
        kinds[kind].append((x, y))
    candidates = find_candidates(_difference(data), FWHM_PX, psf=psf)
    assert all(c.shape_score is not None for c in candidates)
    return {kind: [_nearest(candidates, x, y) for x, y in sites] for kind, sites in kinds.items()}


def test_injected_point_sources_score_as_normal(injected: dict[str, list[TransientCandidate | None]]) -> None:
    found = [c for c in injected["transient"] if c is not None]
    normal = [c for c in found if not c.shape_outlier]
    rate = len(normal) / len(found)
    print(f"transients: {len(found)}/{len(injected['transient'])} detected, {rate:.3f} scored normal")
    assert len(found) >= 0.97 * len(injected["transient"])
    assert rate >= 0.95
    assert sum(c.accepted for c in found) >= 0.95 * len(found)


@pytest.mark.parametrize("kind", ["cosmic", "hot", "dipole"])
def test_artefacts_score_as_outliers(injected: dict[str, list[TransientCandidate | None]], kind: str) -> None:
    found = [c for c in injected[kind] if c is not None]
    outliers = [c for c in found if c.shape_outlier]
    rate = len(outliers) / len(found)
    print(f"{kind}: {len(found)}/{len(injected[kind])} detected, {rate:.3f} scored as outliers")
    assert len(found) >= 0.8 * len(injected[kind])
    assert rate >= 0.9
    assert sum(c.accepted for c in found) <= 0.05 * len(found)  # rejected, by this test or another

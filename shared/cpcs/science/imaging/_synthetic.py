"""A small synthetic CCD frame maker for the tests and benchmarks of this package (private).

Stars are circular or elliptical Moffat profiles (or Gaussians), integrated over pixels by 5×5
sub-sampling, on a flat sky with Poisson noise (at the given gain) and Gaussian read noise. The
FWHM may vary linearly across the field. Fluxes are in electrons; the image is in ADU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

_SUB = 5


@dataclass(frozen=True)
class SyntheticImage:
    data: NDArray[np.float32]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    flux_e: NDArray[np.float64]
    gain: float
    sky_adu: float
    read_noise_e: float
    fwhm_px: float
    beta: float
    saturation_adu: float


def star_profile(
    dx: NDArray[np.float64],
    dy: NDArray[np.float64],
    fwhm: float,
    beta: float | None,
    ellipticity: float = 0.0,
) -> NDArray[np.float64]:
    """Unit-flux pixel-integrated profile (Moffat of index beta, or Gaussian when beta is None)."""
    offsets = (np.arange(_SUB) + 0.5) / _SUB - 0.5
    q = 1.0 - ellipticity
    out = np.zeros(np.broadcast_shapes(dx.shape, dy.shape))
    for ox in offsets:
        for oy in offsets:
            u = (dx + ox) / math.sqrt(q)
            v = (dy + oy) * math.sqrt(q)
            r2 = u * u + v * v
            if beta is None:
                sigma = fwhm / 2.3548200450309493
                out += np.exp(-r2 / (2 * sigma**2)) / (2 * math.pi * sigma**2)
            else:
                alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
                out += (beta - 1.0) / (math.pi * alpha**2) * (1.0 + r2 / alpha**2) ** (-beta)
    return out / _SUB**2


def make_image(
    seed: int,
    *,
    shape: tuple[int, int] = (256, 256),
    n_stars: int = 60,
    fwhm_px: float = 3.0,
    beta: float | None = 3.0,
    fwhm_gradient: float = 0.0,
    ellipticity: float = 0.0,
    sky_adu: float = 200.0,
    gain: float = 2.0,
    read_noise_e: float = 6.0,
    flux_range_e: tuple[float, float] = (2e3, 5e5),
    saturation_adu: float = 60000.0,
    extra_stars: list[tuple[float, float, float]] | None = None,
    margin: float = 8.0,
    cosmics: int = 0,
) -> SyntheticImage:
    """Noisy frame with ``n_stars`` random stars (log-uniform fluxes) plus ``extra_stars`` (x, y, flux_e).

    ``fwhm_gradient``: relative FWHM change from the left to the right edge (0.2 = +20 %).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    x = rng.uniform(margin, nx - 1 - margin, n_stars)
    y = rng.uniform(margin, ny - 1 - margin, n_stars)
    flux = np.exp(rng.uniform(np.log(flux_range_e[0]), np.log(flux_range_e[1]), n_stars))
    if extra_stars:
        ex = np.asarray(extra_stars, dtype=np.float64)
        x, y, flux = (
            np.concatenate([x, ex[:, 0]]),
            np.concatenate([y, ex[:, 1]]),
            np.concatenate([flux, ex[:, 2]]),
        )
    image_e = np.full(shape, sky_adu * gain, dtype=np.float64)
    radius = math.ceil(8 * fwhm_px * (1 + abs(fwhm_gradient)))
    for xs, ys, fs in zip(x, y, flux, strict=True):
        fwhm = fwhm_px * (1.0 + fwhm_gradient * (xs / (nx - 1) - 0.5))
        x0, x1 = max(int(xs) - radius, 0), min(int(xs) + radius + 1, nx)
        y0, y1 = max(int(ys) - radius, 0), min(int(ys) + radius + 1, ny)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        image_e[y0:y1, x0:x1] += fs * star_profile(xx - xs, yy - ys, fwhm, beta, ellipticity)
    noisy = rng.poisson(image_e).astype(np.float64) + rng.normal(0.0, read_noise_e, shape)
    data = noisy / gain
    for _ in range(cosmics):
        cy, cx = rng.integers(2, ny - 2), rng.integers(2, nx - 2)
        data[cy, cx] += rng.uniform(500, 5000)
    data = np.minimum(data, saturation_adu)
    return SyntheticImage(
        data=data.astype(np.float32),
        x=x,
        y=y,
        flux_e=flux,
        gain=gain,
        sky_adu=sky_adu,
        read_noise_e=read_noise_e,
        fwhm_px=fwhm_px,
        beta=beta if beta is not None else float("inf"),
        saturation_adu=saturation_adu,
    )

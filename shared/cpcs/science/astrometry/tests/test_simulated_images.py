"""End to end on simulated CCD images: sep detections, Gaia references moved to the image epoch.

The image simulator (:mod:`cpcs.simulation.image_simulator`) renders stars with a Moffat PSF, noise,
cosmic rays and hot pixels through a true TAN-SIP WCS, writes a header WCS that is off (or only a
pointing and a pixel scale), and gives Gaia references at epoch 2016.0 with proper motions. Sources
come from ``sep`` (background, 3-sigma extraction, windowed centroids), as a simple stand-in for the
pipeline's detection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sep
from astropy import units as u
from astropy.coordinates import SkyCoord

from cpcs.science.astrometry import propagate_gaia, solve_astrometry
from cpcs.simulation import image_simulator


def _detect(image: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = np.ascontiguousarray(image.data, dtype=np.float64)
    background = sep.Background(data)
    subtracted = data - background
    objects = sep.extract(subtracted, 3.0, err=background.globalrms, minarea=5)
    sigma = np.full(len(objects), image.truth.fwhm_pix / 2.3548)
    x, y, _ = sep.winpos(subtracted, objects["x"], objects["y"], sigma)
    return np.asarray(x), np.asarray(y), np.asarray(objects["flux"])


_CASES: dict[str, tuple[int, dict[str, Any]]] = {
    "refine": (
        1,
        {
            "rotation_deg": 20.0,
            "sip_distortion": 3.0,
            "header_offset_arcsec": (40.0, -30.0),
            "header_rotation_deg": 1.5,
        },
    ),
    "refine-crowded": (
        2,
        {
            "rotation_deg": -70.0,
            "star_density": 3.0,
            "sip_distortion": 5.0,
            "header_offset_arcsec": (-55.0, 25.0),
            "header_rotation_deg": -2.0,
        },
    ),
    "blind": (
        3,
        {
            "rotation_deg": 137.0,
            "sip_distortion": 2.0,
            "header_wcs": False,
            "header_offset_arcsec": (120.0, -100.0),
        },
    ),
    "blind-fine-pixels": (
        5,
        {
            "rotation_deg": -100.0,
            "pixel_scale_arcsec": 0.4,
            "fwhm_arcsec": 1.5,
            "zp": 27.0,
            "sip_distortion": 4.0,
            "header_wcs": False,
            "header_offset_arcsec": (-150.0, 60.0),
        },
    ),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_simulated_image(case: str, wcs_difference: Callable[..., Any]) -> None:
    seed, options = _CASES[case]
    image = image_simulator.simulate_image(seed, **options)
    x, y, flux = _detect(image)
    gaia = image.references["Gaia"]
    ra, dec = propagate_gaia(gaia.ra_deg, gaia.dec_deg, *image.gaia_pm_mas_yr, to_mjd=image.mjd_mid)
    if image.header_wcs is not None:
        kwargs: dict[str, Any] = {"initial_wcs": image.header_wcs}
    else:
        pointing = SkyCoord(image.header["RA"], image.header["DEC"], unit=(u.hourangle, u.deg))
        kwargs = {
            "pointing": (pointing.ra.deg, pointing.dec.deg),
            "pixel_scale_arcsec": float(image.header["PIXSCALE"]),
        }
    solution = solve_astrometry(x, y, flux, ra, dec, gaia.mags["G"], image_shape=image.data.shape, **kwargs)

    assert solution.method == ("refine" if image.header_wcs is not None else "blind-pointing")
    worst, rms = wcs_difference(solution.wcs, image.true_wcs, image.data.shape)
    assert worst < 0.1, worst
    assert rms < 0.03, rms
    assert solution.sip_order >= 2
    assert solution.rotation_deg == pytest.approx(options["rotation_deg"], abs=0.02)
    # Every match is the right star: the matched Gaia star's true position is on the source.
    star = image.reference_index["Gaia"][solution.match_reference_index]
    offset = np.hypot(
        np.asarray(image.stars["x"])[star] - x[solution.match_source_index],
        np.asarray(image.stars["y"])[star] - y[solution.match_source_index],
    )
    assert np.mean(offset < 1.0) > 0.99
    assert solution.n_matched > 100

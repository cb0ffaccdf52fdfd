"""The galaxy and epoch-pair simulator: fluxes, shapes and the geometry of the template."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpcs.simulation.image_simulator import SimulatedImage, simulate_image
from cpcs.simulation.transient_simulator import (
    Galaxy,
    add_point_sources,
    galaxy_model_adu,
    simulate_epoch_pair,
)


def _frame(*, keep_model: bool = False) -> SimulatedImage:
    return simulate_image(
        3, shape=(256, 256), target=None, star_density=0.0, n_cosmics=0, n_hot_pixels=0, keep_model=keep_model
    )


@pytest.mark.parametrize("sersic_n", [1.0, 4.0])
def test_galaxy_carries_its_flux_and_shape(sersic_n: float) -> None:
    image = _frame()
    t = image.truth
    galaxy = Galaxy(
        t.centre_ra_deg,
        t.centre_dec_deg,
        mag_r=15.0,
        r_eff_arcsec=3.0,
        sersic_n=sersic_n,
        ellipticity=0.5,
        pa_deg=0.0,
    )
    model = galaxy_model_adu(image, galaxy)
    expected = 10.0 ** (-0.4 * (15.0 - t.zp - t.colour_term * galaxy.colour_gr))
    assert float(model.sum()) == pytest.approx(expected, rel=2e-3)
    # North-south major axis (PA 0, north up): longer along y than along x.
    cy, cx = np.unravel_index(np.argmax(model), model.shape)
    assert model[cy + 8, cx] > 1.5 * model[cy, cx + 8]
    assert abs(cx - 127.5) <= 1 and abs(cy - 127.5) <= 1


def test_point_sources_are_added_with_their_flux() -> None:
    image = _frame(keep_model=True)
    assert image.model_adu is not None
    before = image.model_adu.copy()
    after = add_point_sources(image, np.array([100.3]), np.array([140.7]), np.array([5000.0]), seed=1)
    assert after.model_adu is not None
    assert float(after.model_adu.sum() - before.sum()) == pytest.approx(5000.0, rel=1e-3)
    # Photon noise is drawn: the data differ from data + model by a noisy amount.
    added = after.data - image.data
    assert float(added.sum()) == pytest.approx(5000.0, rel=0.05)


def test_epoch_pair_sees_the_same_sky_through_another_pointing() -> None:
    pair = simulate_epoch_pair(5, shape=(512, 512), transient_snr=30.0)
    sci, tpl = pair.science, pair.template
    assert tpl.truth.fwhm_arcsec != sci.truth.fwhm_arcsec
    assert tpl.truth.sky_e_per_pix != sci.truth.sky_e_per_pix
    assert tpl.truth.rotation_deg == pytest.approx(sci.truth.rotation_deg + 0.7)
    # The same stars at the same sky positions, at other pixels.
    assert len(tpl.stars) == len(sci.stars)
    np.testing.assert_allclose(tpl.stars["ra_deg"], sci.stars["ra_deg"])
    moved = np.hypot(tpl.stars["x"] - sci.stars["x"], tpl.stars["y"] - sci.stars["y"])
    assert float(np.median(moved)) > 5.0
    x, y = tpl.true_wcs.all_world2pix(sci.stars["ra_deg"], sci.stars["dec_deg"], 0)
    np.testing.assert_allclose(x, tpl.stars["x"], atol=1e-6)
    np.testing.assert_allclose(y, tpl.stars["y"], atol=1e-6)
    # The transient is in the science frame only, near its host's nucleus.
    tx, ty = float(pair.transient_x[0]), float(pair.transient_y[0])
    assert math.hypot(tx - 255.5, ty - 255.5) == pytest.approx(math.hypot(1.5, 1.0) / 0.6, abs=0.05)
    assert sci.model_adu is not None and tpl.model_adu is not None
    assert pair.transient_flux_adu[0] > 0
    assert float(pair.host_model_science_adu.sum()) > 10 * float(pair.transient_flux_adu[0])

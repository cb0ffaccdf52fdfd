"""Choosing the noise model: a real gain, an effective gain from the sky, or background only."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from cpcs.science.imaging._synthetic import make_image
from cpcs.science.imaging.background import estimate_background, pixel_mask_bits
from cpcs.science.imaging.bayer import green_plane
from cpcs.science.imaging.detection import detect_sources
from cpcs.science.imaging.header import InstrumentDefaults, standardise_header
from cpcs.science.imaging.noise import choose_noise_model, pixel_unit_kind
from cpcs.science.imaging.photometry import measure_sources
from cpcs.testing.realdata import read_image, realdata_file


def _header(**cards: object) -> fits.Header:
    header = fits.Header()
    header["EXPTIME"] = 60.0
    for key, value in cards.items():
        header[key] = value
    return header


@pytest.mark.parametrize(
    ("bunit", "kind"),
    [
        (None, "counts"),
        ("ADU", "counts"),
        ("counts", "counts"),
        ("DN/s", "counts_per_second"),
        ("electrons", "electrons"),
        ("e-/s", "electrons_per_second"),
        ("nanomaggy", "physical"),
        ("MJy/sr", "physical"),
        ("Jy/beam", "physical"),
    ],
)
def test_pixel_units(bunit: str | None, kind: str) -> None:
    assert pixel_unit_kind(bunit) == kind


def test_each_rule_of_the_noise_model() -> None:
    field = make_image(21, shape=(256, 256), n_stars=30, sky_adu=400.0, gain=2.5, read_noise_e=4.0)
    sky = estimate_background(field.data)
    flat = estimate_background(field.data - sky.level)  # the same frame with its sky subtracted

    def model(background, **cards):  # type: ignore[no-untyped-def]
        return choose_noise_model(standardise_header(_header(**cards)), background)

    assert (model(sky, GAIN=1.7).kind, model(sky, GAIN=1.7).gain_e_per_adu) == ("gain", 1.7)
    recorded = standardise_header(_header(), instrument=InstrumentDefaults(gain=2.2))
    assert choose_noise_model(recorded, sky).source == "instrument record"
    assert model(flat, BUNIT="electrons").gain_e_per_adu == 1.0
    assert model(flat, BUNIT="e-/s").gain_e_per_adu == 60.0  # electrons = value × exposure
    assert model(flat, BUNIT="ADU/s", GAIN=2.0).gain_e_per_adu == 120.0
    # no gain card, the sky still in: level / variance gives the gain (read noise lowers it a little)
    effective = model(sky)
    assert effective.kind == "effective_gain"
    assert effective.gain_e_per_adu == pytest.approx(field.gain, rel=0.1)
    # scaled to physical units the same frame gives the gain per physical unit
    scaled = estimate_background(field.data * 1e-3)
    physical = model(scaled, BUNIT="mJy", GAIN=2.5)
    assert physical.kind == "effective_gain"
    assert physical.gain_e_per_adu == pytest.approx(field.gain * 1e3, rel=0.1)
    assert "GAIN 2.5 ignored" in physical.note
    # sky subtracted and no gain: the background rms alone
    alone = model(flat, BUNIT="nanomaggy")
    assert (alone.kind, alone.gain_e_per_adu) == ("background_only", None)
    assert model(flat).kind == "background_only"
    # a raw colour mosaic without a gain: the sky holds a pedestal, so no gain from it
    mosaic = model(sky, BAYERPAT="RGGB")
    assert (mosaic.kind, mosaic.gain_e_per_adu) == ("background_only", None)
    assert "pedestal" in mosaic.note
    assert model(sky, BAYERPAT="RGGB", GAIN=2.4).gain_e_per_adu == 2.4  # a known gain still wins


def test_errors_with_the_effective_gain_match_the_true_gain() -> None:
    field = make_image(22, shape=(384, 384), n_stars=60, sky_adu=300.0, gain=3.0, read_noise_e=5.0)
    background = estimate_background(field.data)
    bits = pixel_mask_bits(field.data, saturation_adu=field.saturation_adu, background=background)
    detections = detect_sources(field.data, background, bits)
    effective = choose_noise_model(standardise_header(_header()), background)
    assert effective.kind == "effective_gain" and effective.gain_e_per_adu is not None

    def errors(gain: float | None) -> np.ndarray:
        table = measure_sources(field.data, background, bits, detections, gain_e_per_adu=gain).table
        return np.asarray(table["flux_aper_err"])  # ADU

    true, measured, alone = errors(field.gain), errors(effective.gain_e_per_adu), errors(None)
    ok = np.isfinite(true) & (true > 0)
    assert np.median(measured[ok] / true[ok]) == pytest.approx(1.0, abs=0.1)
    # background-only errors are smaller, most for the bright stars
    assert np.all(alone[ok] <= true[ok] * (1 + 1e-9))


@pytest.mark.parametrize("name", ["solved.fits.fz", "unsolved.fits"])
def test_a_raw_dslr_frame_without_a_gain_gets_an_honest_noise_model(name: str) -> None:
    """The PANOPTES Canon frames (ISO 100, 14 bit, raw RGGB) carry no gain and no black-level card.
    Their green superpixels' sky is ~4450 ADU, of which 4096 is the two pixels' 2048 ADU pedestal:
    ``level / rms²`` would give 4.5 e-/ADU (pedestal in) or 0.36 (pedestal out, the sky being
    read-noise dominated), neither the camera's ~2-3. The record says background only and why."""
    data, cards = read_image(realdata_file(f"panoptes/{name}"))
    header = standardise_header(cards)
    assert header.bayer_pattern == "RGGB" and header.gain_e_per_adu is None
    plane = green_plane(np.asarray(data, dtype=np.float32), header.bayer_pattern, saturation_adu=None)
    background = estimate_background(plane.data)
    pedestal = 2 * 2048.0  # two green pixels
    assert 4000.0 < background.global_level < 5000.0
    with_pedestal = background.global_level / background.global_rms**2
    without = (background.global_level - pedestal) / background.global_rms**2
    assert with_pedestal > 3.5 and without < 0.6  # both far from a Canon's ~2-3 e-/ADU at ISO 100
    noise = choose_noise_model(header, background)
    assert (noise.kind, noise.gain_e_per_adu) == ("background_only", None)
    assert "pedestal" in noise.note and "RGGB" in noise.note

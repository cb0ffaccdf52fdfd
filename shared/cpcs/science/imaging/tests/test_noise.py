"""Choosing the noise model: a real gain, an effective gain from the sky, or background only."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from cpcs.science.imaging._synthetic import make_image
from cpcs.science.imaging.background import estimate_background, pixel_mask_bits
from cpcs.science.imaging.detection import detect_sources
from cpcs.science.imaging.header import InstrumentDefaults, standardise_header
from cpcs.science.imaging.noise import choose_noise_model, pixel_unit_kind
from cpcs.science.imaging.photometry import measure_sources


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

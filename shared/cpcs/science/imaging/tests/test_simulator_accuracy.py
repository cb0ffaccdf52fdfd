"""Acceptance figures on frames of cpcs.simulation.image_simulator (explicit tolerances).

* bright isolated target within 0.01 mag of the truth, differentially (zero point from the stars'
  aperture magnitudes against their true instrumental magnitudes);
* crowded field (8× star density): target within 0.02 mag;
* honest errors: pulls of aperture and PSF magnitudes have a standard deviation in [0.8, 1.25];
* undetectable target: 5-sigma limit within 0.3 mag of the simulator's optimal limit;
* FWHM within 5 %; a spatial FWHM variation is found when present and not when absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cpcs.science.imaging import (
    Detections,
    ForcedMeasurement,
    ImageBackground,
    PsfModel,
    SourceMeasurements,
    build_psf,
    detect_sources,
    estimate_background,
    forced_photometry,
    instrumental_magnitude,
    measure_sources,
    pixel_mask_bits,
    psf_photometry,
    standardise_header,
)
from cpcs.simulation import image_simulator as sim_module


@dataclass
class Run:
    sim: object
    bkg: ImageBackground
    bits: np.ndarray
    det: Detections
    psf: PsfModel
    src: SourceMeasurements
    forced: ForcedMeasurement
    gain: float
    exptime: float | None
    offset: float  # my instrumental magnitude minus the simulator's (a constant)
    zp: float  # median(mag_aper - true) over bright clean stars
    matched: np.ndarray  # row -> index into the simulator's in-frame stars, -1 when unmatched


def run_pipeline(**kwargs: object) -> Run:
    sim = sim_module.simulate_image(**kwargs)
    hdr = standardise_header(sim.header)
    gain = hdr.gain_e_per_adu
    assert gain is not None
    data = sim.data
    bkg = estimate_background(data)
    bits = pixel_mask_bits(data, saturation_adu=hdr.saturation_adu, background=bkg)
    det = detect_sources(data, bkg, bits, saturation_adu=hdr.saturation_adu)
    psf = build_psf(data, bkg, bits, det, gain_e_per_adu=gain)
    src = measure_sources(
        data, bkg, bits, det, gain_e_per_adu=gain, exptime_s=hdr.exptime_s, saturation_adu=hdr.saturation_adu
    )
    forced = forced_photometry(
        data,
        bkg,
        None,
        psf,
        sim.target.x,
        sim.target.y,
        gain_e_per_adu=gain,
        exptime_s=hdr.exptime_s,
        neighbours=det,
        mask=bits,
        segmap=det.segmap,
    )
    stars = sim.stars
    t = src.table
    d, j = cKDTree(np.column_stack([stars["x"], stars["y"]])).query(np.column_stack([t["x"], t["y"]]))
    matched = np.where(
        (d < 1.0) & np.asarray(stars["in_frame"])[j] & ~np.asarray(stars["variable"])[j], j, -1
    )
    offset = -2.5 * np.log10(gain / hdr.exptime_s) if hdr.exptime_s else -2.5 * np.log10(gain)
    true_mag = np.asarray(stars["inst_mag"])[np.maximum(matched, 0)] + offset
    bright = (matched >= 0) & (np.asarray(t["flags"]) == 0) & (np.asarray(t["magerr_aper"]) < 0.01)
    assert bright.sum() >= 5
    zp = float(np.median(np.asarray(t["mag_aper"])[bright] - true_mag[bright]))
    return Run(sim, bkg, bits, det, psf, src, forced, gain, hdr.exptime_s, offset, zp, matched)


def true_inst(run: Run, idx: np.ndarray) -> np.ndarray:
    return np.asarray(run.sim.stars["inst_mag"])[idx] + run.offset


def isolated(run: Run, idx: np.ndarray, radius: float) -> np.ndarray:
    """True stars with no other star brighter than 3 mag fainter within ``radius`` px."""
    stars = run.sim.stars
    xy = np.column_stack([stars["x"], stars["y"]])
    mags = np.asarray(stars["inst_mag"])
    tree = cKDTree(xy)
    result = np.ones(idx.size, dtype=bool)
    for k, i in enumerate(idx):
        for j in tree.query_ball_point(xy[i], radius):
            if j != i and mags[j] < mags[i] + 3.0:
                result[k] = False
                break
    return result


@pytest.fixture(scope="module")
def standard() -> Run:
    return run_pipeline(seed=101, shape=(2048, 2048), target="bright")


@pytest.fixture(scope="module")
def crowded() -> Run:
    return run_pipeline(seed=102, shape=(1024, 1024), target="bright", star_density=8.0)


def test_bright_target_within_0p01(standard: Run) -> None:
    f = standard.forced
    truth = standard.sim.target.true_inst_mag + standard.offset
    assert f.is_detection and f.method == "psf"
    assert abs(f.mag_inst - standard.zp - truth) < 0.01
    assert abs(f.mag_inst - standard.zp - truth) < 3 * f.magerr_inst + 0.003


def test_crowded_target_within_0p02(crowded: Run) -> None:
    f = crowded.forced
    truth = crowded.sim.target.true_inst_mag + crowded.offset
    assert abs(f.mag_inst - crowded.zp - truth) < 0.02


def pull_std(measured: np.ndarray, err: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    bright = err < 0.01
    zp = np.median(measured[bright] - truth[bright])
    pulls = (measured - truth - zp) / err
    return float(np.std(pulls)), float(np.median(pulls))


def test_error_bars_are_honest(standard: Run) -> None:
    t = standard.src.table
    fwhm = standard.det.fwhm_px
    rows = np.nonzero(
        (standard.matched >= 0) & (np.asarray(t["flags"]) == 0) & (np.asarray(t["magerr_aper"]) < 0.2)
    )[0]
    rows = rows[isolated(standard, standard.matched[rows], 5.0 * fwhm)]
    assert rows.size > 100
    truth = true_inst(standard, standard.matched[rows])
    std, median = pull_std(np.asarray(t["mag_aper"])[rows], np.asarray(t["magerr_aper"])[rows], truth)
    assert 0.8 <= std <= 1.25
    assert abs(median) < 0.4
    fitted = psf_photometry(
        standard.sim.data,
        standard.bkg,
        None,
        standard.psf,
        np.column_stack([t["x"][rows], t["y"][rows]]),
        gain_e_per_adu=standard.gain,
        mask=standard.bits,
    )
    mag, err = instrumental_magnitude(
        fitted["flux"], fitted["flux_err"], gain_e_per_adu=standard.gain, exptime_s=standard.exptime
    )
    ok = np.asarray(fitted["fit_ok"]) & np.isfinite(mag)
    std, median = pull_std(mag[ok], err[ok], truth[ok])
    assert 0.8 <= std <= 1.25
    assert abs(median) < 0.4


def test_fwhm_within_5_percent(standard: Run) -> None:
    truth = standard.sim.truth.fwhm_pix
    ny, nx = standard.det.shape
    assert float(standard.det.fwhm_at((nx - 1) / 2, (ny - 1) / 2)) == pytest.approx(truth, rel=0.05)
    assert standard.det.fwhm_px == pytest.approx(truth, rel=0.05)
    assert standard.det.fwhm_variation < 1.05


def test_fwhm_variation_found() -> None:
    run = run_pipeline(seed=103, shape=(1024, 1024), target="faint", fwhm_variation=0.3, star_density=4.0)
    truth = run.sim.truth
    ny, nx = run.det.shape
    assert float(run.det.fwhm_at((nx - 1) / 2, (ny - 1) / 2)) == pytest.approx(truth.fwhm_pix, rel=0.05)
    corner = float(run.det.fwhm_at(0.0, 0.0))
    assert corner == pytest.approx(truth.fwhm_pix * 1.3, rel=0.07)
    assert run.det.fwhm_variation == pytest.approx(1.3, abs=0.08)


def test_undetected_target_limit_within_0p3() -> None:
    run = run_pipeline(seed=104, shape=(1024, 1024), target="undetected")
    target = run.sim.target
    f = run.forced
    assert not f.is_detection
    assert np.isfinite(f.flux) and np.isfinite(f.flux_err)
    truth = run.sim.truth.limiting_inst_mag("optimal", x=target.x, y=target.y) + run.offset
    assert abs(f.limit_mag_inst_5sigma - run.zp - truth) < 0.3

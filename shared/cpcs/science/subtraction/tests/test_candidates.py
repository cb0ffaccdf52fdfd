"""Transient candidates: injected point sources recovered, artefacts and clean frames."""

from __future__ import annotations

import numpy as np

from cpcs.science.subtraction import align_template, find_candidates, subtract_template
from cpcs.science.subtraction.tests._reduction import reduce_frame
from cpcs.simulation.transient_simulator import (
    add_point_sources,
    point_source_flux_for_snr,
    simulate_epoch_pair,
)

_N_INJECTED = 120


def test_injected_transients_are_recovered_with_few_false_candidates() -> None:
    pair = simulate_epoch_pair(21, shape=(1024, 1024), n_hosts=4, transient_snr=30.0)
    science = pair.science
    rng = np.random.default_rng(4)
    assert science.model_adu is not None
    sky_adu = science.truth.sky_e_per_pix / science.truth.gain_e_per_adu
    # Injection sites on a jittered grid, off the stars' cores (where nothing is measurable) and the edge.
    grid = np.arange(60, 1000, 80, dtype=np.float64)
    gx, gy = np.meshgrid(grid, grid)
    xs = gx.ravel() + rng.uniform(-20, 20, gx.size)
    ys = gy.ravel() + rng.uniform(-20, 20, gy.size)
    light = science.model_adu - sky_adu
    free = np.array(
        [
            float(light[int(y) - 6 : int(y) + 7, int(x) - 6 : int(x) + 7].max()) < 50.0
            for x, y in zip(xs, ys, strict=True)
        ]
    )
    xs, ys = xs[free][:_N_INJECTED], ys[free][:_N_INJECTED]
    snr = rng.uniform(10.0, 15.0, xs.size)
    flux = np.array([point_source_flux_for_snr(science, s) for s in snr])
    injected = add_point_sources(science, xs, ys, flux, seed=8)
    sci = reduce_frame(injected, np.zeros(0), np.zeros(0))
    tpl = reduce_frame(pair.template, np.zeros(0), np.zeros(0))
    aligned = align_template(
        pair.template.data,
        pair.template.true_wcs,
        injected.true_wcs,
        injected.data.shape,
        template_noise=tpl.noise,
        template_mask=tpl.mask,
    )
    result = subtract_template(
        injected.data,
        sci.noise,
        aligned,
        science_fwhm_px=sci.psf.fwhm_px,
        template_fwhm_px=tpl.psf.fwhm_px,
        science_mask=sci.mask,
        exclude_xy=np.column_stack([pair.transient_x, pair.transient_y]),
    )
    every = find_candidates(result, sci.psf.fwhm_px, psf=sci.psf)  # as reduce runs it: shape scores too
    candidates = [c for c in every if c.accepted]
    cx = np.array([c.x for c in candidates])
    cy = np.array([c.y for c in candidates])
    truth_x = np.concatenate([xs, pair.transient_x])
    truth_y = np.concatenate([ys, pair.transient_y])
    found = np.array([np.min(np.hypot(cx - x, cy - y)) < 1.5 for x, y in zip(xs, ys, strict=True)])
    false = [c for c in candidates if np.min(np.hypot(truth_x - c.x, truth_y - c.y)) >= 1.5]
    recovered = float(np.mean(found))
    print(
        f"{xs.size} injected at S/N 10-15: recovered {recovered:.3f}; {len(false)} false candidates on 1024²"
    )
    for c in false:
        print(f"  false: ({c.x:.1f}, {c.y:.1f}) S/N {c.snr:.1f} size {c.size_px:.2f}")
    for x, y in zip(xs[~found], ys[~found], strict=True):
        near = [c for c in every if np.hypot(c.x - x, c.y - y) < 3]
        masked = int(result.mask[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4].sum())
        print(
            f"  missed ({x:.1f}, {y:.1f}) {masked} masked px:",
            [(round(c.snr, 1), c.reasons, round(c.size_px, 2)) for c in near],
        )
    assert xs.size >= 100
    assert recovered >= 0.95
    assert len(false) <= 5
    # The hosts' transients are found too.
    host_found = [
        np.min(np.hypot(cx - x, cy - y)) < 1.5
        for x, y in zip(pair.transient_x, pair.transient_y, strict=True)
    ]
    assert all(host_found)

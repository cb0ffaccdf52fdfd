"""Step timings and accuracy of the image measurement on simulated frames (not a test; run by hand).

.venv/bin/python shared/cpcs/science/imaging/tests/bench_imaging.py [--size 2048] [--seed 1] [--density 1]
    [--target bright|faint|undetected] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.spatial import cKDTree

from cpcs.science.imaging import (
    build_psf,
    detect_sources,
    estimate_background,
    forced_photometry,
    image_quality,
    measure_sources,
    pixel_mask_bits,
    standardise_header,
)
from cpcs.simulation.image_simulator import simulate_image


def run(sim, *, verbose: bool = True, psf_neighbours: int = 300) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str, start: float) -> float:
        now = time.perf_counter()
        times[name] = now - start
        return now

    t = t0
    hdr = standardise_header(sim.header)
    t = lap("header", t)
    data = sim.data
    bkg = estimate_background(data)
    t = lap("background", t)
    bits = pixel_mask_bits(data, saturation_adu=hdr.saturation_adu, background=bkg)
    t = lap("mask", t)
    det = detect_sources(data, bkg, bits, saturation_adu=hdr.saturation_adu)
    t = lap("detection+fwhm", t)
    gain = hdr.gain_e_per_adu or 1.0
    src = measure_sources(
        data, bkg, bits, det, gain_e_per_adu=gain, exptime_s=hdr.exptime_s, saturation_adu=hdr.saturation_adu
    )
    t = lap("aperture", t)
    psf = build_psf(data, bkg, bits, det, gain_e_per_adu=gain)
    t = lap("psf_build", t)
    tx, ty = (
        (sim.target.x, sim.target.y) if sim.target is not None else (data.shape[1] / 2, data.shape[0] / 2)
    )
    forced = forced_photometry(
        data,
        bkg,
        None,
        psf,
        tx,
        ty,
        gain_e_per_adu=gain,
        exptime_s=hdr.exptime_s,
        neighbours=det,
        mask=bits,
        segmap=det.segmap,
    )
    t = lap("forced(target+neighbours)", t)
    quality = image_quality(
        bkg,
        det,
        psf,
        gain_e_per_adu=gain,
        exptime_s=hdr.exptime_s,
        pixel_scale_arcsec=hdr.pixel_scale_arcsec,
        mask=bits,
        saturation_adu=hdr.saturation_adu,
    )
    t = lap("quality", t)
    times["total"] = t - t0
    if verbose:
        print("  ".join(f"{k}={v * 1000:.0f}ms" for k, v in times.items()))
        print(
            f"n_sources={det.n_sources} fwhm={det.fwhm_px:.3f} (true {sim.truth.fwhm_pix:.3f}) "
            f"variation={det.fwhm_variation:.3f} (true {1 + sim.truth.fwhm_variation:.3f}) beta={psf.beta:.2f} "  # noqa: E501
            f"apcorr={src.aperture_correction_mag:.4f}±{src.aperture_correction_err:.4f} "
            f"n_ap={src.n_aperture_correction_stars} psf_stars={psf.n_stars} scale={psf.flux_scale:.4f}"
            f"±{psf.flux_scale_err:.4f}"
        )
    accuracy(sim, det, src, psf, forced, gain, hdr.exptime_s, data, bkg, bits, psf_neighbours)
    print(quality)
    return times


def accuracy(sim, det, src, psf, forced, gain, exptime, data, bkg, bits, n_psf) -> None:
    stars = sim.stars[np.asarray(sim.stars["in_frame"])]
    true_xy = np.column_stack([stars["x"], stars["y"]])
    tree = cKDTree(true_xy)
    meas = src.table
    d, j = tree.query(np.column_stack([meas["x"], meas["y"]]))
    # a measured source is matched when its nearest true star is within 1 px and no other star
    # brighter than 1 % of it lies within 3 FWHM (so truth = one star)
    matched = d < 1.0
    offset = -2.5 * np.log10(gain / exptime) if exptime else -2.5 * np.log10(gain)
    true_mag = np.asarray(stars["inst_mag"])[j] + offset
    variable = np.asarray(stars["variable"])[j]
    good = matched & ~variable & (np.asarray(meas["flags"]) == 0) & np.isfinite(meas["mag_aper"])
    res = np.asarray(meas["mag_aper"]) - true_mag
    err = np.asarray(meas["magerr_aper"])
    bright = good & (err < 0.01)
    zp = np.median(res[bright])
    pull = (res - zp) / err
    sel = good & (err < 0.2)
    print(
        f"aperture: n={sel.sum()} pull std={np.std(pull[sel]):.3f} robust={1.4826 * np.median(np.abs(pull[sel] - np.median(pull[sel]))):.3f} "  # noqa: E501
        f"median={np.median(pull[sel]):+.3f}; bright scatter={np.std(res[bright] - zp):.4f} mag (n={bright.sum()})"  # noqa: E501
    )
    for lo, hi in [(0, 0.005), (0.005, 0.02), (0.02, 0.05), (0.05, 0.2)]:
        s = sel & (err >= lo) & (err < hi)
        if s.sum() > 3:
            print(f"   err {lo}-{hi}: n={s.sum()} std={np.std(pull[s]):.2f} median={np.median(pull[s]):+.2f}")
    # PSF photometry of a sample of stars (the brightest n_psf clean + random)
    from cpcs.science.imaging import psf_photometry

    idx = np.nonzero(sel)[0]
    rng = np.random.default_rng(0)
    idx = rng.choice(idx, min(n_psf, idx.size), replace=False)
    # include the neighbours of each chosen star so blends are fitted together
    t = time.perf_counter()
    fitted = psf_photometry(
        data,
        bkg,
        None,
        psf,
        np.column_stack([meas["x"][idx], meas["y"][idx]]),
        gain_e_per_adu=gain,
        mask=bits,
    )
    dt = time.perf_counter() - t
    from cpcs.science.imaging.photometry import instrumental_magnitude

    mag_psf, err_psf = instrumental_magnitude(
        fitted["flux"], fitted["flux_err"], gain_e_per_adu=gain, exptime_s=exptime
    )
    ok = np.asarray(fitted["fit_ok"]) & np.isfinite(mag_psf)
    res_p = mag_psf - true_mag[idx]
    zp_p = np.median(res_p[ok & (err_psf < 0.01)])
    pull_p = (res_p - zp_p) / err_psf
    print(
        f"psf ({idx.size} stars, {dt * 1000 / max(idx.size, 1):.1f} ms/star): pull std={np.std(pull_p[ok]):.3f} "  # noqa: E501
        f"robust={1.4826 * np.median(np.abs(pull_p[ok] - np.median(pull_p[ok]))):.3f} median={np.median(pull_p[ok]):+.3f}"  # noqa: E501
        f"  zp_psf - zp_aper = {zp_p - zp:+.4f}"
    )
    if sim.target is not None:
        tgt = sim.target
        true_t = tgt.true_inst_mag + offset
        lim_true = sim.truth.limiting_inst_mag("optimal", x=tgt.x, y=tgt.y) + offset
        print(
            f"target {tgt.kind}: mag={forced.mag_inst - zp:.4f} true={true_t:.4f} diff={forced.mag_inst - zp - true_t:+.4f} "  # noqa: E501
            f"± {forced.magerr_inst:.4f} snr={forced.snr:.1f} (expected optimal {tgt.expected_snr_optimal:.1f}) "  # noqa: E501
            f"limit={forced.limit_mag_inst_5sigma - zp:.3f} true-optimal={lim_true:.3f} "
            f"diff={forced.limit_mag_inst_5sigma - zp - lim_true:+.3f} method={forced.method} nb={forced.n_neighbours}"  # noqa: E501
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--density", type=float, default=1.0)
    parser.add_argument("--target", default="bright")
    parser.add_argument("--variation", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sim = simulate_image(
        args.seed,
        shape=(args.size, args.size),
        star_density=args.density,
        target=args.target,
        fwhm_variation=args.variation,
    )
    all_times = [run(sim, verbose=True) for _ in range(args.repeat)]
    if args.repeat > 1:
        print("median:", {k: round(float(np.median([t[k] for t in all_times])) * 1000) for k in all_times[0]})


if __name__ == "__main__":
    main()

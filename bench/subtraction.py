"""Template subtraction of one frame, step by step (python -m bench.subtraction [--size N] [--repeat K]).

A simulated epoch pair (a science frame with a transient on a host galaxy, a template with other
seeing, sky and pointing) is reduced untimed (background, mask, PSF, noise); then the subtraction
steps are timed: alignment (one pixel mapping, map_coordinates), the sfft kernel fit (on stamps by
default, ``--fit-on frame`` for sfft's full-frame fit) and difference, the difference noise map,
forced photometry of the target and the candidate search (with the shape classifier, as reduce
runs it; the counts of candidates, false ones and shape outliers are reported). The first sfft
call of a process compiles (or loads from numba's cache) its functions: it is reported apart
(``cold_first_subtraction_s``). Machines differ: the bare ``sep.Background`` + ``sep.extract`` time
of the same frame is recorded as the yardstick.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np


def run(size: int, repeat: int, fit_on: str = "auto") -> dict[str, Any]:
    import sep

    from cpcs.science.subtraction import (
        align_template,
        difference_photometry,
        find_candidates,
        subtract_template,
    )
    from cpcs.science.subtraction.tests._reduction import reduce_frame
    from cpcs.simulation.transient_simulator import simulate_epoch_pair

    pair = simulate_epoch_pair(1, shape=(size, size), n_hosts=4)
    sci = reduce_frame(pair.science, np.zeros(0), np.zeros(0))
    tpl = reduce_frame(pair.template, np.zeros(0), np.zeros(0))
    gain = pair.science.truth.gain_e_per_adu
    exclude = np.column_stack([pair.transient_x, pair.transient_y])

    facts: dict[str, Any] = {}

    def once() -> dict[str, float]:
        start = time.perf_counter()
        aligned = align_template(
            pair.template.data,
            pair.template.true_wcs,
            pair.science.true_wcs,
            pair.science.data.shape,
            template_noise=tpl.noise,
            template_mask=tpl.mask,
        )
        result = subtract_template(
            pair.science.data,
            sci.noise,
            aligned,
            science_fwhm_px=sci.psf.fwhm_px,
            template_fwhm_px=tpl.psf.fwhm_px,
            science_mask=sci.mask,
            exclude_xy=exclude,
            fit_on=fit_on,  # type: ignore[arg-type]
        )
        facts.update(
            fitted_on=result.fitted_on,
            affine_alignment=aligned.affine,
            max_affine_error_px=aligned.max_affine_error_px,
        )
        t_phot = time.perf_counter()
        for x, y in exclude:
            difference_photometry(result, sci.psf, float(x), float(y), gain_e_per_adu=gain)
        t_cand = time.perf_counter()
        found = find_candidates(result, sci.psf.fwhm_px, psf=sci.psf)  # as reduce: shape scores too
        end = time.perf_counter()
        accepted = [c for c in found if c.accepted]
        at_transient = [
            c for c in accepted if np.min(np.hypot(exclude[:, 0] - c.x, exclude[:, 1] - c.y)) < 2.0
        ]
        facts.update(
            detections=len(found),
            accepted=len(accepted),
            transients_found=len({(round(c.x), round(c.y)) for c in at_transient}),
            transients_injected=len(exclude),
            false_candidates=len(accepted) - len(at_transient),
            shape_outliers=sum(bool(c.shape_outlier) for c in found),
            rejected_only_by_shape=sum(c.reasons == ("shape_outlier",) for c in found),
        )
        return {
            "align_s": aligned.seconds,
            "background_s": result.seconds_background,
            "sfft_fit_and_difference_s": result.seconds_fit,
            "noise_map_s": result.seconds_noise,
            "forced_photometry_s": t_cand - t_phot,
            "candidates_s": end - t_cand,
            "total_s": end - start,
        }

    cold_start = time.perf_counter()
    once()
    cold = time.perf_counter() - cold_start
    runs = [once() for _ in range(repeat)]
    data = np.ascontiguousarray(pair.science.data, dtype=np.float32)
    sep_times = []
    for _ in range(3):
        start = time.perf_counter()
        background = sep.Background(data)
        sep.extract(data - background, 1.5, err=background.globalrms)
        sep_times.append(time.perf_counter() - start)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    sep_s = statistics.median(sep_times)
    return {
        "size": size,
        "repeat": repeat,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        **facts,
        "cold_first_subtraction_s": cold,
        "median": medians,
        "sep_background_extract_s": sep_s,
        "total_over_sep": medians["total_s"] / sep_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fit-on", choices=["auto", "stamps", "frame"], default="auto")
    args = parser.parse_args()
    from cpcs.offline import configure_astropy_offline

    configure_astropy_offline()
    print(json.dumps(run(args.size, args.repeat, args.fit_on), indent=2))


if __name__ == "__main__":
    main()

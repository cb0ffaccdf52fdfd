"""Source detection (sep) and the FWHM of the image, with its variation across the field.

The FWHM is measured by fitting an elliptical Moffat profile (pixel-integrated, free index beta)
to up to ``max_fit_stars`` bright, isolated, unmasked stars at once (a vectorised
Levenberg-Marquardt fit, ~10-30 ms for 150 stars). The per-star FWHM is the geometric mean of
the major- and minor-axis FWHM; a polynomial surface of degree 0, 1 or 2 (chosen by BIC, with
clipping) gives ``fwhm_at(x, y)``. Sources not fitted get a FWHM from their half-light radius,
converted with the fitted beta.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sep
from astropy.table import Table
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from cpcs.science.imaging import _moffat
from cpcs.science.imaging._poly import Poly2D, fit_surface
from cpcs.science.imaging.background import ImageBackground

__all__ = ["Detections", "PsfStars", "detect_sources", "select_isolated"]

#: sep flags that disqualify a source as a PSF/FWHM star: deblended, truncated, singular moments.
_BAD_SHAPE_FLAGS = sep.OBJ_MERGED | sep.OBJ_TRUNC | sep.OBJ_SINGU
#: Smoothing kernel of the detection (SExtractor's default 3×3 pyramid) and the factor by which it
#: lowers white pixel noise: the threshold is given in units of the *smoothed* image's noise
#: (as a matched filter would), i.e. ``threshold_sigma × 0.375`` per-pixel rms.
_KERNEL = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)
_KERNEL_NOISE_FACTOR = float(np.sqrt(np.sum(_KERNEL**2)) / np.sum(_KERNEL))
#: Default sep pixel stack; raised for large crowded frames.
_PIXSTACK = 3_000_000


@dataclass(frozen=True)
class PsfStars:
    """Moffat fits of the bright isolated stars (image coordinates, 0-based).

    ``params`` columns: flux (ADU), x, y, A, B, C (px⁻²), beta, background (ADU);
    ``index`` points into :attr:`Detections.table`.
    """

    index: NDArray[np.intp]
    params: NDArray[np.float64]
    fwhm_px: NDArray[np.float64]
    chi2_red: NDArray[np.float64]
    stamp_half_size: int


@dataclass(frozen=True)
class Detections:
    """Sources found in an image.

    Attributes
    ----------
    table : astropy.table.Table
        One row per source: ``x, y`` (px, 0-based, barycentre), ``flux`` (isophotal, ADU above
        sky), ``a, b`` (px), ``theta`` (rad), ``flags`` (sep bits), ``peak`` (ADU above sky),
        ``npix``, ``snr_peak`` (peak / local rms), ``fwhm_px`` (fitted for the FWHM stars, from
        the half-light radius for the others; NaN when neither worked), ``fwhm_star`` (bool, used
        for the FWHM map).
    fwhm_px : float
        Median FWHM of the good stars, px (NaN when no star could be fitted).
    fwhm_map : Poly2D
        FWHM surface, px; call ``fwhm_at(x, y)``.
    n_sources : int
    beta : float
        Median Moffat index of the FWHM stars (NaN when none).
    ellipticity : float
        Median ``1 - b/a`` of the FWHM stars.
    psf_stars : PsfStars or None
        The individual fits, reused by :func:`~cpcs.science.imaging.psf.build_psf`.
    segmap : ndarray of int32 or None
        sep segmentation map (0 = sky, k = row k-1 of ``table``).
    shape : tuple of int
        Image shape (ny, nx).
    """

    table: Table
    fwhm_px: float
    fwhm_map: Poly2D
    n_sources: int
    beta: float
    ellipticity: float
    psf_stars: PsfStars | None
    shape: tuple[int, int]
    segmap: NDArray[np.int32] | None = field(default=None, repr=False)

    def fwhm_at(
        self, x: NDArray[np.floating] | float, y: NDArray[np.floating] | float
    ) -> NDArray[np.float64]:
        """FWHM (px) of the PSF at image position(s) (x, y), 0-based."""
        return self.fwhm_map(x, y)

    @property
    def fwhm_variation(self) -> float:
        """Largest over smallest FWHM of the map across the image (1.0 when uniform)."""
        low, high = self.fwhm_map.extremes(self.shape)
        return high / low if low > 0 else float("nan")


def select_isolated(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    flux: NDArray[np.float64],
    candidates: NDArray[np.bool_],
    *,
    radius: float,
    outer_radius: float,
    faint_ratio: float = 0.03,
) -> NDArray[np.bool_]:
    """Candidates with no neighbour within ``radius`` px, nor one brighter than
    ``faint_ratio × flux`` within ``outer_radius`` px."""
    result = candidates.copy()
    if x.size < 2 or not candidates.any():
        return result
    tree = cKDTree(np.column_stack([x, y]))
    pairs = tree.query_pairs(max(radius, outer_radius), output_type="ndarray")
    if pairs.size == 0:
        return result
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.hypot(x[i] - x[j], y[i] - y[j])
    close = d < radius
    within = d < outer_radius
    spoil_i = close | (within & (flux[j] > faint_ratio * flux[i]))
    spoil_j = close | (within & (flux[i] > faint_ratio * flux[j]))
    spoiled = np.zeros(x.size, dtype=bool)
    spoiled[i[spoil_i]] = True
    spoiled[j[spoil_j]] = True
    return result & ~spoiled
    tree = cKDTree(np.column_stack([x, y]))
    idx = np.nonzero(candidates)[0]
    pairs = tree.query_ball_point(np.column_stack([x[idx], y[idx]]), max(radius, outer_radius))
    for k, neighbours in zip(idx, pairs, strict=True):
        for j in neighbours:
            if j == k:
                continue
            d = np.hypot(x[j] - x[k], y[j] - y[k])
            if d < radius or (d < outer_radius and flux[j] > faint_ratio * flux[k]):
                result[k] = False
                break
    return result


def _cutouts(
    image: NDArray[np.floating] | NDArray[np.bool_], xc: NDArray[np.intp], yc: NDArray[np.intp], half: int
) -> NDArray[np.float64]:
    offsets = np.arange(-half, half + 1)
    rows = yc[:, None, None] + offsets[None, :, None]
    cols = xc[:, None, None] + offsets[None, None, :]
    return np.asarray(image[rows, cols], dtype=np.float64)


def fit_psf_stars(
    data_sub: NDArray[np.float32],
    rms: NDArray[np.float32],
    mask: NDArray[np.bool_] | None,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    index: NDArray[np.intp],
    fwhm_guess: float,
) -> PsfStars:
    """Fit elliptical Moffat profiles to the stars ``index`` (already selected, inside the image)."""
    half = int(np.clip(np.ceil(1.6 * fwhm_guess), 4, 20))
    xs, ys = x[index], y[index]
    xc = np.rint(xs).astype(np.intp)
    yc = np.rint(ys).astype(np.intp)
    stamps = _cutouts(data_sub, xc, yc, half)
    weights = 1.0 / _cutouts(rms, xc, yc, half) ** 2
    if mask is not None:
        weights[_cutouts(mask, xc, yc, half) > 0] = 0.0
    params, chi2, ok = _moffat.fit_stamps(stamps, weights, xs - xc + half, ys - yc + half, fwhm_guess)
    if ok.sum() >= 3:
        # second pass with the median beta: the shape coefficients of single stars become far less noisy
        beta = float(np.median(params[ok, 6]))
        params, chi2, ok = _moffat.fit_stamps(
            stamps, weights, xs - xc + half, ys - yc + half, fwhm_guess, beta=beta, start=params
        )
    params[:, 1] += xc - half
    params[:, 2] += yc - half
    fwhm = _moffat.fwhm_from_shape(params[:, 3], params[:, 4], params[:, 5], params[:, 6])
    good = ok & np.isfinite(chi2)
    if good.sum() >= 5:
        # drop double stars, galaxies and failed fits: FWHM and chi² outliers
        med = np.median(fwhm[good])
        mad = 1.4826 * np.median(np.abs(fwhm[good] - med)) + 0.01 * med
        good &= np.abs(fwhm - med) < 4.0 * mad
        chi_med = np.median(chi2[good])
        good &= chi2 < 4.0 * chi_med + 1.0
    return PsfStars(index[good], params[good], fwhm[good], chi2[good], half)


def detect_sources(
    data: NDArray[np.floating],
    background: ImageBackground,
    mask: NDArray[np.bool_] | NDArray[np.uint8] | None,
    *,
    threshold_sigma: float = 3.0,
    minarea: int = 5,
    deblend_cont: float = 0.005,
    max_fit_stars: int = 150,
    saturation_adu: float | None = None,
    keep_segmap: bool = True,
) -> Detections:
    """Detect sources with sep and measure the FWHM and its variation over the field.

    Parameters
    ----------
    data : ndarray (2-D)
        Image, ADU (sky not subtracted; ``background`` is subtracted here).
    background : ImageBackground
        Sky level and noise maps; the threshold is ``threshold_sigma × rms`` per pixel.
    mask : ndarray of bool or uint8, optional
        Bad pixels (True / non-zero), ignored by detection and by the FWHM fits.
    threshold_sigma : float
        Detection threshold in units of the noise of the smoothed image (3×3 pyramid kernel,
        ``0.375 ×`` the pixel rms): 3 finds point sources of S/N ≈ 5 and some noise peaks. sep's
        plain convolution is used with the rms map (its "matched" filter with a noise map costs
        2.5× the time for the same depth).
    minarea : int
        Fewest connected pixels above threshold.
    deblend_cont : float
        sep deblending contrast (deblending is on).
    max_fit_stars : int
        Most stars fitted for the FWHM map (the brightest isolated unsaturated ones).
    saturation_adu : float, optional
        Stars whose peak (with sky) exceeds half of it are not used for the FWHM.
    keep_segmap : bool
        Keep sep's segmentation map (used to exclude sources from local sky annuli).

    Returns
    -------
    Detections
        With ``fwhm_px`` NaN and a NaN surface when no star could be fitted.
    """
    data_sub = background.subtract(data)
    mask_bool = None if mask is None else np.ascontiguousarray(mask != 0)
    sep.set_extract_pixstack(max(_PIXSTACK, data_sub.size // 4))
    sep.set_sub_object_limit(4096)
    objects, segmap = sep.extract(
        data_sub,
        threshold_sigma * _KERNEL_NOISE_FACTOR,
        err=background.rms,
        mask=mask_bool,
        minarea=minarea,
        filter_kernel=_KERNEL,
        filter_type="conv",
        deblend_cont=deblend_cont,
        segmentation_map=True,
    )
    shape = (int(data_sub.shape[0]), int(data_sub.shape[1]))
    n = len(objects)
    x = np.asarray(objects["x"], dtype=np.float64)
    y = np.asarray(objects["y"], dtype=np.float64)
    flux = np.asarray(objects["flux"], dtype=np.float64)
    peak = np.asarray(objects["peak"], dtype=np.float64)
    flags = np.asarray(objects["flag"], dtype=np.int32)
    a = np.asarray(objects["a"], dtype=np.float64)
    b = np.asarray(objects["b"], dtype=np.float64)
    ix = np.clip(np.rint(x).astype(np.intp), 0, shape[1] - 1)
    iy = np.clip(np.rint(y).astype(np.intp), 0, shape[0] - 1)
    snr_peak = peak / background.rms[iy, ix] if n else np.zeros(0)
    # half-light radius of every source (cheap, in C), for a first FWHM guess and unfitted sources
    if n:
        rmax = np.clip(4.0 * np.sqrt(a * b), 3.0, 50.0)
        r_half, _ = sep.flux_radius(data_sub, x, y, rmax, 0.5, mask=mask_bool, subpix=5)
        r_half = np.asarray(r_half, dtype=np.float64)
    else:
        r_half = np.zeros(0)
    good_shape = ((flags & _BAD_SHAPE_FLAGS) == 0) & (snr_peak > 20) & np.isfinite(r_half) & (r_half > 0)
    if saturation_adu is not None:
        good_shape &= peak + background.level[iy, ix] < 0.5 * saturation_adu
    fwhm_guess = float(np.median(2.0 * r_half[good_shape])) if good_shape.sum() >= 3 else 3.0
    if not np.isfinite(fwhm_guess) or fwhm_guess <= 0:
        fwhm_guess = 3.0
    half = int(np.clip(np.ceil(1.6 * fwhm_guess), 4, 20))
    inside = (ix >= half + 1) & (ix < shape[1] - half - 1) & (iy >= half + 1) & (iy < shape[0] - half - 1)
    candidates = good_shape & inside
    if mask_bool is not None and candidates.any():
        idx = np.nonzero(candidates)[0]
        masked = _cutouts(mask_bool, ix[idx], iy[idx], half).reshape(idx.size, -1).any(axis=1)
        candidates[idx[masked]] = False
    candidates = select_isolated(
        x, y, flux, candidates, radius=half + fwhm_guess, outer_radius=half + 3.0 * fwhm_guess
    )
    order = np.nonzero(candidates)[0]
    order = order[np.argsort(-flux[order])][:max_fit_stars]
    psf_stars: PsfStars | None = None
    beta = float("nan")
    ellipticity = float("nan")
    fwhm_col = np.full(n, np.nan)
    star_col = np.zeros(n, dtype=bool)
    fwhm_map = Poly2D.constant(float("nan"), shape)
    fwhm = float("nan")
    if order.size >= 3:
        psf_stars = fit_psf_stars(data_sub, background.rms, mask_bool, x, y, order, fwhm_guess)
        if psf_stars.index.size >= 3:
            p = psf_stars.params
            beta = float(np.median(p[:, 6]))
            ellipticity = float(np.median(1.0 - _moffat.axis_ratio(p[:, 3], p[:, 4], p[:, 5])))
            fwhm_map, keep = fit_surface(p[:, 1], p[:, 2], psf_stars.fwhm_px, shape)
            fwhm = float(np.median(psf_stars.fwhm_px[keep]))
            # unfitted sources: FWHM from the half-light radius of a Moffat of the same beta
            fwhm_col = 2.0 * r_half / _moffat.half_light_ratio(beta)
            fwhm_col[psf_stars.index] = psf_stars.fwhm_px
            star_col[psf_stars.index[keep]] = True
    table = Table(
        {
            "x": x,
            "y": y,
            "flux": flux,
            "a": a,
            "b": b,
            "theta": np.asarray(objects["theta"], dtype=np.float64),
            "flags": flags,
            "peak": peak,
            "npix": np.asarray(objects["npix"], dtype=np.int32),
            "snr_peak": snr_peak,
            "fwhm_px": fwhm_col,
            "fwhm_star": star_col,
        }
    )
    return Detections(
        table=table,
        fwhm_px=fwhm,
        fwhm_map=fwhm_map,
        n_sources=n,
        beta=beta,
        ellipticity=ellipticity,
        psf_stars=psf_stars,
        shape=shape,
        segmap=np.asarray(segmap, dtype=np.int32) if keep_segmap else None,
    )

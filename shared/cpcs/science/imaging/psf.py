"""PSF model and PSF-fitting photometry of a few sources (the target and its neighbours).

Model
-----
An elliptical Moffat profile (pixel-integrated) whose shape coefficients A, B, C vary over the
field as polynomial surfaces (degree 0-2, chosen by BIC) fitted to the individual Moffat fits of
the bright isolated stars found by :func:`~cpcs.science.imaging.detection.detect_sources`;
the index beta is their median. The analytic profile integrates to 1 over the plane; to put PSF
fluxes on the *same scale as the aperture magnitudes* (the flux in a circle of radius
``REFERENCE_RADIUS_FWHM`` × FWHM with a local sky annulus, see
:mod:`~cpcs.science.imaging.photometry`), the model stars are PSF-fitted and
``flux_scale`` = clipped inverse-variance mean of ``F_reference / F_moffat`` is applied to every
PSF flux. Its relative error (``flux_scale_err``) is a systematic common to all PSF fluxes of the
image; forced photometry of the target adds it to the target's error since the zero point comes
from aperture magnitudes.

Fitting
-------
Sources closer than ``group_radius_fwhm`` × FWHM are fitted simultaneously (fluxes, and positions
unless fixed) on the pixels within ``fit_radius_fwhm`` × FWHM of any member, after removing the
residual local sky: the clipped mean of a ring 3-5 FWHM from the members, away from every listed
source (in the second pass, of the ring cleaned of every source's first-pass model); the sky's
error is propagated to the fluxes. Sources of other groups that reach into a group's pixels are
subtracted with their first-pass fit in the second pass. Pixels are weighted by the sky variance
only (the same weighting for faint and bright stars keeps the flux scale independent of
brightness); the error of each flux is the sandwich estimate with the full variance
``rms² + model/gain``, so it includes the source's photon noise, the sky noise, the local-sky
error and the covariance with the positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cpcs.science.imaging import _moffat
from cpcs.science.imaging._aperture import (
    ANNULUS_FWHM,
    REFERENCE_RADIUS_FWHM,
    aperture_scale_px,
    stamp_aperture_flux,
)
from cpcs.science.imaging._poly import Poly2D, fit_surface
from cpcs.science.imaging.background import ImageBackground
from cpcs.science.imaging.detection import Detections

__all__ = ["PsfError", "PsfModel", "build_psf", "psf_photometry"]

FloatArray = NDArray[np.float64]

#: Default radius (in FWHM) of the pixels used in a PSF fit.
FIT_RADIUS_FWHM = 1.5
#: Most Gauss-Newton iterations of a group fit.
MAX_ITERATIONS = 20
#: A fitted position may not move further than this (in FWHM) from its start.
MAX_SHIFT_FWHM = 1.0


class PsfError(ValueError):
    """No PSF model can be built (too few usable stars)."""


@dataclass(frozen=True)
class PsfModel:
    """Elliptical Moffat PSF with shape varying over the field.

    Attributes
    ----------
    wx_map, wy_map, rho_map : Poly2D
        The shape ``Q = A dx² + B dy² + C dx dy`` as surfaces over the image, in the form that
        varies most simply with seeing: ``wx = A^-1/2``, ``wy = B^-1/2`` (px, proportional to the
        FWHM) and ``rho = C / sqrt(A B)`` (dimensionless, |rho| < 2).
    beta : float
        Moffat index.
    fwhm_px : float
        Median FWHM of the model stars, px.
    flux_scale : float
        Reference-aperture flux per unit Moffat flux (≈ 0.95-1.0): multiplies fitted Moffat fluxes.
    flux_scale_err : float
        Relative error of ``flux_scale`` (inverse-variance mean over the stars, scaled up by
        √χ²ᵣ when the stars scatter more than their errors).
    n_stars : int
        Stars the model was built from.
    shape : tuple of int
        Image shape (ny, nx).
    fit_radius_fwhm : float
        Radius (FWHM) of the pixels used in fits.
    """

    wx_map: Poly2D
    wy_map: Poly2D
    rho_map: Poly2D
    beta: float
    fwhm_px: float
    flux_scale: float
    flux_scale_err: float
    n_stars: int
    shape: tuple[int, int]
    fit_radius_fwhm: float = FIT_RADIUS_FWHM

    @classmethod
    def circular(
        cls, fwhm_px: float, beta: float, shape: tuple[int, int], *, flux_scale: float = 1.0
    ) -> PsfModel:
        """A uniform circular Moffat (the fallback when too few stars exist)."""
        alpha = float(_moffat.alpha_from_fwhm(fwhm_px, beta))
        return cls(
            Poly2D.constant(alpha, shape),
            Poly2D.constant(alpha, shape),
            Poly2D.constant(0.0, shape),
            float(beta),
            float(fwhm_px),
            flux_scale,
            0.0,
            0,
            shape,
        )

    def shape_at(self, x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(A, B, C) at image positions, with the quadratic form kept positive definite."""
        a = 1.0 / np.maximum(self.wx_map(x, y), 0.05) ** 2
        b = 1.0 / np.maximum(self.wy_map(x, y), 0.05) ** 2
        c = np.clip(self.rho_map(x, y), -1.9, 1.9) * np.sqrt(a * b)
        return a, b, c

    def fwhm_at(self, x: ArrayLike, y: ArrayLike) -> FloatArray:
        """FWHM (px, geometric mean of the axes) at image positions."""
        a, b, c = self.shape_at(x, y)
        return _moffat.fwhm_from_shape(a, b, c, np.asarray(self.beta))

    def profile(self, dx: ArrayLike, dy: ArrayLike, x: float, y: float) -> FloatArray:
        """Unit-Moffat-flux pixel values at offsets (dx, dy) from a star at (x, y)."""
        a, b, c = (float(v) for v in self.shape_at(x, y))
        return _moffat.profile(
            np.asarray(dx, dtype=np.float64), np.asarray(dy, dtype=np.float64), a, b, c, self.beta
        )

    def noise_equivalent_area(self, x: float, y: float) -> float:
        """``1 / Σ P²`` (px²) of the profile normalised to unit *reference* flux, at (x, y)."""
        half = math.ceil(4.0 * float(self.fwhm_at(x, y))) + 1
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
        p = self.profile(xx, yy, x, y) / self.flux_scale
        return float(1.0 / np.sum(p**2))


def build_psf(
    data: NDArray[np.floating],
    background: ImageBackground,
    mask: NDArray[np.bool_] | NDArray[np.uint8] | None,
    detections: Detections,
    *,
    max_stars: int = 80,
    gain_e_per_adu: float | None = None,
) -> PsfModel:
    """Build the PSF model from the bright isolated stars already fitted by detection.

    Parameters
    ----------
    data : ndarray
        Image, ADU (sky not subtracted).
    background : ImageBackground
    mask : ndarray of bool or uint8, optional
        Bad pixels, excluded from the fits and the reference apertures.
    detections : Detections
        From :func:`detect_sources` (its ``psf_stars`` are the candidates).
    max_stars : int
        The brightest ``max_stars`` fitted stars make the model (all of them for the shape
        surfaces when fewer).
    gain_e_per_adu : float, optional
        Only used for the weights of the reference-flux comparison.

    Raises
    ------
    PsfError
        When fewer than 3 stars were fitted and the detections give no FWHM either.
    """
    stars = detections.psf_stars
    shape = detections.shape
    if stars is None or stars.index.size < 3:
        if np.isfinite(detections.fwhm_px):
            return PsfModel.circular(detections.fwhm_px, 3.0, shape)
        fwhm_col = np.asarray(detections.table["fwhm_px"], dtype=np.float64)
        fwhm_col = fwhm_col[np.isfinite(fwhm_col)]
        if fwhm_col.size >= 3:
            return PsfModel.circular(float(np.median(fwhm_col)), 3.0, shape)
        raise PsfError("too few stars to build a PSF model")
    order = np.argsort(-stars.params[:, 0])[:max_stars]
    params = stars.params[order]
    x, y = params[:, 1], params[:, 2]
    # brighter stars measure the shape better: weight by (peak S/N)², capped where the profile
    # mismatch rather than the noise dominates
    snr = np.asarray(detections.table["snr_peak"], dtype=np.float64)[stars.index[order]]
    weights = np.clip(snr, 5.0, 200.0) ** 2
    wx_map, _ = fit_surface(x, y, params[:, 3] ** -0.5, shape, weights=weights)
    wy_map, _ = fit_surface(x, y, params[:, 4] ** -0.5, shape, weights=weights)
    rho_map, _ = fit_surface(
        x, y, params[:, 5] / np.sqrt(params[:, 3] * params[:, 4]), shape, weights=weights
    )
    beta = float(np.median(params[:, 6]))
    fwhm = float(np.median(stars.fwhm_px[order]))
    model = PsfModel(wx_map, wy_map, rho_map, beta, fwhm, 1.0, 0.0, int(order.size), shape)
    # flux scale: PSF fit of the model stars against their reference-aperture flux
    fitted = psf_photometry(
        data,
        background,
        background.rms,
        model,
        np.column_stack([x, y]),
        mask=mask,
        gain_e_per_adu=gain_e_per_adu,
    )
    fwhm_local = aperture_scale_px(model.fwhm_at(fitted["x"], fitted["y"]))
    ref = stamp_aperture_flux(
        data,
        background,
        mask,
        detections.segmap,
        np.asarray(fitted["x"]),
        np.asarray(fitted["y"]),
        REFERENCE_RADIUS_FWHM * fwhm_local,
        (ANNULUS_FWHM[0] * fwhm_local, ANNULUS_FWHM[1] * fwhm_local),
        gain_e_per_adu,
    )
    psf_flux = np.asarray(fitted["flux"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ref.flux / psf_flux
        ratio_err = ratio * np.hypot(ref.flux_err / ref.flux, np.asarray(fitted["flux_err"]) / psf_flux)
    good = (
        np.isfinite(ratio)
        & (ratio > 0)
        & np.isfinite(ratio_err)
        & (ratio_err > 0)
        & np.asarray(fitted["fit_ok"])
        & (ref.masked_frac == 0)
    )
    scale, scale_err = 1.0, 0.0
    if good.sum() >= 3:
        r, e = ratio[good], ratio_err[good]
        keep = np.ones(r.size, dtype=bool)
        for _ in range(5):  # inverse-variance mean, clipping 4-sigma outliers (blends, bad pixels)
            w = 1.0 / e[keep] ** 2
            scale = float(np.sum(w * r[keep]) / np.sum(w))
            new_keep = np.abs(r - scale) < 4.0 * np.hypot(e, 0.002 * scale)
            if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
                break
            keep = new_keep
        w = 1.0 / e[keep] ** 2
        chi2 = float(np.sum(w * (r[keep] - scale) ** 2)) / max(int(keep.sum()) - 1, 1)
        scale_err = float(np.sqrt(max(chi2, 1.0) / np.sum(w))) / scale
    return PsfModel(wx_map, wy_map, rho_map, beta, fwhm, scale, scale_err, int(order.size), shape)


@dataclass
class _Source:
    x: float
    y: float
    fixed: bool
    a: float
    b: float
    c: float
    fwhm: float
    flux: float = 0.0


def _groups(x: FloatArray, y: FloatArray, link: FloatArray) -> NDArray[np.intp]:
    n = x.size
    if n == 1:
        return np.zeros(1, dtype=np.intp)
    tree = cKDTree(np.column_stack([x, y]))
    pairs = np.array(sorted(tree.query_pairs(float(np.max(link)))), dtype=np.intp).reshape(-1, 2)
    if pairs.size:
        d = np.hypot(x[pairs[:, 0]] - x[pairs[:, 1]], y[pairs[:, 0]] - y[pairs[:, 1]])
        pairs = pairs[d < np.maximum(link[pairs[:, 0]], link[pairs[:, 1]])]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.intp)


def _render(sources: list[_Source], xx: FloatArray, yy: FloatArray, beta: float) -> FloatArray:
    total = np.zeros(xx.shape)
    for s in sources:
        total += s.flux * _moffat.profile(xx - s.x, yy - s.y, s.a, s.b, s.c, beta)
    return total


@dataclass
class _GroupResult:
    flux: FloatArray
    flux_err: FloatArray
    x: FloatArray
    y: FloatArray
    x_err: FloatArray
    y_err: FloatArray
    sky: float
    chi2_red: float
    npix: int
    ok: bool


def _fit_group(
    members: list[_Source],
    sub: FloatArray,
    var_sky: FloatArray,
    good: NDArray[np.bool_],
    xx: FloatArray,
    yy: FloatArray,
    beta: float,
    gain: float | None,
    radius_fwhm: float,
    sky_err: float,
) -> _GroupResult:
    """Fit one group on the pixels (xx, yy) of a box.

    ``sub`` has the local sky and the other groups removed already; ``sky_err`` (ADU/px) is the
    error of that local sky, propagated to the fluxes.
    """
    m = len(members)
    use = np.zeros(xx.shape, dtype=bool)
    for s in members:
        use |= (xx - s.x) ** 2 + (yy - s.y) ** 2 <= (radius_fwhm * s.fwhm) ** 2
    use &= good
    d = sub[use]
    px, py = xx[use], yy[use]
    w = 1.0 / var_sky[use]
    start = [(s.x, s.y) for s in members]
    free = [k for k, s in enumerate(members) if not s.fixed]
    n_par = m + 2 * len(free)
    npix = int(d.size)
    nan = np.full(m, np.nan)
    if npix <= n_par:
        return _GroupResult(nan, nan, nan, nan, nan, nan, float("nan"), float("nan"), npix, False)
    pos = np.array(start, dtype=np.float64)
    flux = np.array([max(s.flux, 0.0) for s in members])

    def jacobian(pos: FloatArray, flux: FloatArray) -> tuple[FloatArray, FloatArray]:
        jac = np.empty((n_par, npix))
        model = np.zeros(npix)
        col = m
        for k, s in enumerate(members):
            p, g = _moffat.profile_and_gradient(px - pos[k, 0], py - pos[k, 1], s.a, s.b, s.c, beta)
            jac[k] = p
            model += flux[k] * p
            if not s.fixed:
                jac[col] = flux[k] * g[0]
                jac[col + 1] = flux[k] * g[1]
                col += 2
        return jac, model

    ok = True
    for iteration in range(MAX_ITERATIONS):
        jac, model = jacobian(pos, flux)
        resid = d - model
        hess = (jac * w) @ jac.T
        grad = (jac * w) @ resid
        try:
            step = np.linalg.solve(hess + 1e-9 * np.diag(np.diag(hess)), grad)
        except np.linalg.LinAlgError:
            ok = False
            break
        flux = flux + step[:m]
        if not free:
            break  # linear problem: one step is exact
        shifts = step[m:].reshape(-1, 2)
        biggest = float(np.max(np.abs(shifts))) if shifts.size else 0.0
        if biggest > 0.5:
            shifts *= 0.5 / biggest
        for j, k in enumerate(free):
            pos[k] += shifts[j]
        if biggest < 1e-3 and iteration > 0:
            break
    for k in free:
        if math.hypot(pos[k, 0] - start[k][0], pos[k, 1] - start[k][1]) > MAX_SHIFT_FWHM * members[k].fwhm:
            ok = False
    jac, model = jacobian(pos, flux)
    # one last linear update of the fluxes at the final positions
    lin = jac[:m]
    try:
        flux = np.linalg.solve((lin * w) @ lin.T, (lin * w) @ d)
    except np.linalg.LinAlgError:
        ok = False
    jac, model = jacobian(pos, flux)
    variance = var_sky[use] + (np.maximum(model, 0.0) / gain if gain else 0.0)
    hess = (jac * w) @ jac.T
    try:
        inv = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return _GroupResult(flux, nan, pos[:, 0], pos[:, 1], nan, nan, 0.0, float("nan"), npix, False)
    meat = (jac * (w * w * variance)) @ jac.T
    cov = inv @ meat @ inv
    # a sky error δ shifts the parameters by -inv @ (J w) summed over pixels × δ
    sky_lever = inv @ (jac * w).sum(axis=1)
    cov += np.outer(sky_lever, sky_lever) * sky_err**2
    err = np.sqrt(np.maximum(np.diag(cov), 0.0))
    chi2 = float(np.sum((d - model) ** 2 / variance)) / max(npix - n_par, 1)
    x_err = np.full(m, 0.0)
    y_err = np.full(m, 0.0)
    for j, k in enumerate(free):
        x_err[k] = err[m + 2 * j]
        y_err[k] = err[m + 2 * j + 1]
    return _GroupResult(flux, err[:m], pos[:, 0], pos[:, 1], x_err, y_err, 0.0, chi2, npix, ok)


def _ring_sky(
    data: NDArray[np.floating],
    background: ImageBackground,
    rms_map: NDArray[np.floating],
    mask: NDArray[np.bool_] | NDArray[np.uint8] | None,
    pos: FloatArray,
    fwhm: FloatArray,
    idx: NDArray[np.intp],
    models: list[_Source] | None,
    beta: float,
) -> tuple[float, float]:
    """Residual local sky (ADU/px) around a group and its error: clipped mean of the pixels
    3-5 FWHM from the members and ≥ 3 FWHM from every listed source, after removing the
    current models of all sources (``models``; their wings are not sky)."""
    ny, nx = np.shape(data)
    f = float(aperture_scale_px(np.max(fwhm[idx])))
    rin, rout = ANNULUS_FWHM[0] * f, ANNULUS_FWHM[1] * f
    x0 = int(max(np.floor(np.min(pos[idx, 0]) - rout), 0))
    x1 = int(min(np.ceil(np.max(pos[idx, 0]) + rout) + 1, nx))
    y0 = int(max(np.floor(np.min(pos[idx, 1]) - rout), 0))
    y1 = int(min(np.ceil(np.max(pos[idx, 1]) + rout) + 1, ny))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    d2 = np.full(xx.shape, np.inf)
    for k in idx:
        d2 = np.minimum(d2, (xx - pos[k, 0]) ** 2 + (yy - pos[k, 1]) ** 2)
    ring = (d2 >= rin**2) & (d2 <= rout**2)
    near = (pos[:, 0] > x0 - rin) & (pos[:, 0] < x1 + rin) & (pos[:, 1] > y0 - rin) & (pos[:, 1] < y1 + rin)
    for k in np.nonzero(near)[0]:
        ring &= (xx - pos[k, 0]) ** 2 + (yy - pos[k, 1]) ** 2 >= rin**2
    sub = np.asarray(data[y0:y1, x0:x1], dtype=np.float64) - background.level[y0:y1, x0:x1]
    if models:
        reach = 6.0 * f
        close = [s for s in models if x0 - reach < s.x < x1 + reach and y0 - reach < s.y < y1 + reach]
        sub = sub - _render(close, xx, yy, beta)
    ring &= np.isfinite(sub)
    if mask is not None:
        ring &= np.asarray(mask[y0:y1, x0:x1]) == 0
    values = sub[ring]
    noise = np.asarray(rms_map[y0:y1, x0:x1], dtype=np.float64)[ring]
    if values.size < 20:
        local = float(np.median(rms_map[y0:y1, x0:x1]))
        return 0.0, local / 10.0  # mesh sky kept; its error as for a mean of ~100 pixels
    keep = np.ones(values.size, dtype=bool)
    for _ in range(3):
        centre = float(np.mean(values[keep]))
        keep = np.abs(values - centre) < 3.0 * noise
    n = int(keep.sum())
    if n < 20:
        return 0.0, float(np.median(noise)) / 10.0
    return float(np.mean(values[keep])), float(np.sqrt(np.mean(noise[keep] ** 2) / n))


def psf_photometry(
    data: NDArray[np.floating],
    background: ImageBackground,
    rms: NDArray[np.floating] | None,
    psf: PsfModel,
    positions: ArrayLike,
    *,
    fit_positions: bool = True,
    fixed: ArrayLike | None = None,
    group_radius_fwhm: float = 2.0,
    gain_e_per_adu: float | None = None,
    mask: NDArray[np.bool_] | NDArray[np.uint8] | None = None,
    initial_flux: ArrayLike | None = None,
) -> Table:
    """PSF-fitting photometry of a few sources, neighbours fitted together.

    Parameters
    ----------
    data : ndarray
        Image, ADU (sky not subtracted; ``background.level`` is removed locally).
    background : ImageBackground
    rms : ndarray, optional
        Sky noise map (ADU); ``background.rms`` when None.
    psf : PsfModel
    positions : array (N, 2)
        Starting (x, y), px, 0-based.
    fit_positions : bool
        Fit the positions (else all are fixed).
    fixed : array of bool (N,), optional
        Per-source override: True keeps that position fixed (e.g. the target at its alert position).
    group_radius_fwhm : float
        Sources closer than this (in FWHM) are fitted simultaneously.
    gain_e_per_adu : float, optional
        For the photon noise of the sources in the errors (omitted when None).
    mask : ndarray of bool or uint8, optional
        Bad pixels, given zero weight.
    initial_flux : array (N,), optional
        Starting fluxes (ADU); estimated from the peak pixel otherwise.

    Returns
    -------
    astropy.table.Table
        ``x, y, x_err, y_err`` (px), ``flux, flux_err`` (ADU, on the reference-aperture scale:
        Moffat flux × ``psf.flux_scale``), ``sky`` (ADU/px, residual local sky of the group
        from a 3-5 FWHM ring, subtracted before the fit), ``chi2_red``,
        ``npix``, ``group_id``, ``group_size``, ``fit_ok``. A failed fit keeps NaN errors and
        ``fit_ok`` False; sources whose fit pixels are all masked get NaN flux.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    n = pos.shape[0]
    rms_map = background.rms if rms is None else np.asarray(rms)
    ny, nx = np.shape(data)
    fixed_arr = np.zeros(n, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool).copy()
    if not fit_positions:
        fixed_arr[:] = True
    fwhm = np.asarray(psf.fwhm_at(pos[:, 0], pos[:, 1]), dtype=np.float64).reshape(n)
    a, b, c = (np.asarray(v, dtype=np.float64).reshape(n) for v in psf.shape_at(pos[:, 0], pos[:, 1]))
    sources = [
        _Source(
            float(pos[k, 0]),
            float(pos[k, 1]),
            bool(fixed_arr[k]),
            float(a[k]),
            float(b[k]),
            float(c[k]),
            float(fwhm[k]),
        )
        for k in range(n)
    ]
    labels = _groups(pos[:, 0], pos[:, 1], group_radius_fwhm * fwhm) if n else np.zeros(0, np.intp)
    radius_fwhm = psf.fit_radius_fwhm
    wing = np.ceil(np.maximum(radius_fwhm * fwhm, 2.0) + 1).astype(int) if n else np.zeros(0, int)
    reach = 4.0 * fwhm  # how far a source's light matters for other groups
    for k, s in enumerate(sources):
        if initial_flux is not None:
            s.flux = float(np.asarray(initial_flux, dtype=np.float64)[k])
        else:
            ix = int(np.clip(round(s.x), 0, nx - 1))
            iy = int(np.clip(round(s.y), 0, ny - 1))
            peak = float(data[iy, ix]) - float(background.level[iy, ix])
            p0 = float(_moffat.profile(np.zeros(1), np.zeros(1), s.a, s.b, s.c, psf.beta)[0])
            s.flux = max(peak / p0, 0.0) if math.isfinite(peak) else 0.0
    group_ids = np.unique(labels)
    members_of = {int(g): np.nonzero(labels == g)[0] for g in group_ids}
    boxes: dict[int, tuple[int, int, int, int]] = {}
    for g, idx in members_of.items():
        x0 = int(max(np.floor(np.min(pos[idx, 0] - wing[idx])), 0))
        x1 = int(min(np.ceil(np.max(pos[idx, 0] + wing[idx])) + 1, nx))
        y0 = int(max(np.floor(np.min(pos[idx, 1] - wing[idx])), 0))
        y1 = int(min(np.ceil(np.max(pos[idx, 1] + wing[idx])) + 1, ny))
        boxes[g] = (x0, x1, y0, y1)
    others: dict[int, NDArray[np.intp]] = {}
    if n > 1:
        for g, (x0, x1, y0, y1) in boxes.items():
            near = (
                (pos[:, 0] + reach > x0)
                & (pos[:, 0] - reach < x1)
                & (pos[:, 1] + reach > y0)
                & (pos[:, 1] - reach < y1)
            )
            near &= labels != g
            others[g] = np.nonzero(near)[0]
    n_pass = 2
    results: dict[int, _GroupResult] = {}
    for n_done in range(n_pass):
        # pass 1: sky from the raw ring; pass 2: ring and fit pixels cleaned of every first-pass model
        skies = {
            g: _ring_sky(
                data, background, rms_map, mask, pos, fwhm, idx, sources if n_done else None, psf.beta
            )
            for g, idx in members_of.items()
        }
        for g, idx in members_of.items():
            x0, x1, y0, y1 = boxes[g]
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
            sub = np.asarray(data[y0:y1, x0:x1], dtype=np.float64) - background.level[y0:y1, x0:x1]
            good = np.isfinite(sub)
            if mask is not None:
                good &= np.asarray(mask[y0:y1, x0:x1]) == 0
            sky, sky_err = skies[g]
            sub = np.where(good, sub - sky, 0.0)
            if others.get(g) is not None and len(others[g]):
                sub = sub - _render([sources[j] for j in others[g]], xx, yy, psf.beta)
            var_sky = np.asarray(rms_map[y0:y1, x0:x1], dtype=np.float64) ** 2
            members = [sources[k] for k in idx]
            res = _fit_group(
                members, sub, var_sky, good, xx, yy, psf.beta, gain_e_per_adu, radius_fwhm, sky_err
            )
            res.sky = sky
            results[g] = res
            if res.ok:
                for j, k in enumerate(idx.tolist()):
                    sources[k].flux = float(res.flux[j])
                    sources[k].x = float(res.x[j])
                    sources[k].y = float(res.y[j])
    out = {
        name: np.full(n, np.nan)
        for name in ("x", "y", "x_err", "y_err", "flux", "flux_err", "sky", "chi2_red")
    }
    npix = np.zeros(n, dtype=np.int32)
    size = np.zeros(n, dtype=np.int32)
    ok = np.zeros(n, dtype=bool)
    for g, idx in members_of.items():
        res = results[g]
        out["x"][idx] = res.x
        out["y"][idx] = res.y
        out["x_err"][idx] = res.x_err
        out["y_err"][idx] = res.y_err
        out["flux"][idx] = res.flux * psf.flux_scale
        out["flux_err"][idx] = res.flux_err * psf.flux_scale
        out["sky"][idx] = res.sky
        out["chi2_red"][idx] = res.chi2_red
        npix[idx] = res.npix
        size[idx] = idx.size
        ok[idx] = res.ok
    table = Table(out)
    table["npix"] = npix
    table["group_id"] = labels.astype(np.int32)
    table["group_size"] = size
    table["fit_ok"] = ok
    return table

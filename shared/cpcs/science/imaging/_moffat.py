"""Elliptical Moffat profile: evaluation, derivatives and a vectorised least-squares fitter (private).

The profile of unit total flux centred on (x0, y0) is::

    P(dx, dy) = (beta - 1) * sqrt(D) / pi * (1 + Q) ** -beta,
    Q = A dx² + B dy² + C dx dy,   D = A B - C² / 4 > 0,   beta > 1

so that its integral over the plane is exactly 1. Pixel values are the mean of the profile over
``OVERSAMPLE``² points inside each pixel, which captures the flattening of the core by the pixel
(the point-sampled profile would bias a fitted FWHM high by a few per cent at FWHM ≈ 2-3 px).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Number = FloatArray | float

#: Sub-samples per pixel and axis used to integrate the profile over a pixel.
OVERSAMPLE = 3
_OFFSETS = (np.arange(OVERSAMPLE) + 0.5) / OVERSAMPLE - 0.5
#: Allowed range of the Moffat index (a Gaussian core ends near the upper bound).
BETA_RANGE = (1.3, 25.0)
#: Parameters of one star in the batched fit: flux, x0, y0, A, B, C, beta, background.
N_PARAMS = 8


def alpha_from_fwhm(fwhm: float | FloatArray, beta: float | FloatArray) -> FloatArray:
    """Moffat core width alpha (px) with the given FWHM (px) and index beta."""
    return np.asarray(fwhm) / (2.0 * np.sqrt(2.0 ** (1.0 / np.asarray(beta)) - 1.0))


def fwhm_from_shape(a: FloatArray, b: FloatArray, c: FloatArray, beta: FloatArray) -> FloatArray:
    """Geometric-mean FWHM (px) of the profile: sqrt(FWHM_major * FWHM_minor)."""
    det = np.asarray(a) * b - np.asarray(c) ** 2 / 4.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(2.0 * np.sqrt(2.0 ** (1.0 / np.asarray(beta)) - 1.0) / det**0.25)


def axis_ratio(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
    """Minor/major axis ratio (b/a of the isophotes) of the quadratic form."""
    mean = (np.asarray(a) + b) / 2.0
    half = np.sqrt(((np.asarray(a) - b) / 2.0) ** 2 + (np.asarray(c) / 2.0) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.sqrt((mean - half) / (mean + half)))


def half_light_ratio(beta: float) -> float:
    """Half-light radius over half the FWHM for a circular Moffat of index beta (1 for a Gaussian limit)."""
    if beta >= BETA_RANGE[1]:
        return 1.0
    return math.sqrt((2.0 ** (1.0 / (beta - 1.0)) - 1.0) / (2.0 ** (1.0 / beta) - 1.0))


def profile(dx: Number, dy: Number, a: Number, b: Number, c: Number, beta: Number) -> FloatArray:
    """Pixel-integrated unit-flux profile at offsets ``dx, dy`` (pixel centre minus star centre).

    Shapes broadcast; ``a, b, c, beta`` broadcast against ``dx``. Result has the shape of ``dx``.
    """
    norm = (beta - 1.0) * np.sqrt(np.maximum(a * b - c * c / 4.0, 1e-30)) / math.pi
    total = np.zeros(np.broadcast_shapes(*(np.shape(v) for v in (dx, dy, a, b, c, beta))), dtype=np.float64)
    for ox in _OFFSETS:
        for oy in _OFFSETS:
            u = dx + ox
            v = dy + oy
            total += (1.0 + a * u * u + b * v * v + c * u * v) ** (-beta)
    return np.asarray(norm * total / OVERSAMPLE**2)


def profile_and_gradient(
    dx: Number, dy: Number, a: Number, b: Number, c: Number, beta: Number
) -> tuple[FloatArray, FloatArray]:
    """Profile and its derivatives with respect to (x0, y0, A, B, C, beta).

    Returns ``(p, grad)`` with ``grad`` of shape ``(6,) + p.shape``.
    """
    det = np.maximum(a * b - c * c / 4.0, 1e-30)
    norm = (beta - 1.0) * np.sqrt(det) / math.pi
    shape = np.broadcast_shapes(*(np.shape(v) for v in (dx, dy, a, b, c, beta)))
    p = np.zeros(shape)
    g = np.zeros((6, *shape))
    for ox in _OFFSETS:
        for oy in _OFFSETS:
            u = dx + ox
            v = dy + oy
            q1 = 1.0 + a * u * u + b * v * v + c * u * v
            base = q1 ** (-beta)
            inner = -beta * base / q1  # d base / dQ
            p += base
            g[0] += inner * -(2.0 * a * u + c * v)
            g[1] += inner * -(2.0 * b * v + c * u)
            g[2] += inner * u * u
            g[3] += inner * v * v
            g[4] += inner * u * v
            g[5] += -base * np.log(q1)
    scale = norm / OVERSAMPLE**2
    p *= scale
    g *= scale
    # derivatives of the normalisation
    g[2] += p * (0.5 * b / det)
    g[3] += p * (0.5 * a / det)
    g[4] += p * (-c / (4.0 * det))
    g[5] += p / (beta - 1.0)
    return p, g


def fit_stamps(
    stamps: FloatArray,
    weights: FloatArray,
    x0: FloatArray,
    y0: FloatArray,
    fwhm_guess: float,
    *,
    n_iter: int = 30,
    beta: float | None = None,
    start: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Fit one elliptical Moffat (+ constant) to each of N stamps at once (Levenberg-Marquardt).

    Parameters
    ----------
    stamps : ndarray (N, S, S)
        Background-subtracted cut-outs; pixel (j, i) of stamp k has offset (i, j) from its corner.
    weights : ndarray (N, S, S)
        Inverse variances; 0 for masked pixels.
    x0, y0 : ndarray (N,)
        Starting centres in stamp coordinates (px).
    fwhm_guess : float
        Starting FWHM (px).
    beta : float, optional
        Fix the Moffat index to this value (A, beta and the stamp size are strongly correlated in
        a single star's fit; a common beta makes the shape coefficients much less noisy).
    start : ndarray (N, 8), optional
        Starting parameters (stamp coordinates), overriding the guesses.

    Returns
    -------
    params : ndarray (N, 8)
        flux, x0, y0, A, B, C, beta, background (stamp coordinates).
    chi2_red : ndarray (N,)
        Reduced chi-square of each fit.
    ok : ndarray (N,) of bool
        False where the fit did not give a sensible profile.
    """
    n, size, _ = stamps.shape
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    xx = xx.reshape(1, -1)
    yy = yy.reshape(1, -1)
    data = stamps.reshape(n, -1)
    w = weights.reshape(n, -1)
    beta0 = 3.0
    a0 = 1.0 / float(alpha_from_fwhm(fwhm_guess, beta0)) ** 2
    params = np.zeros((n, N_PARAMS))
    params[:, 0] = np.maximum(np.sum(data, axis=1), 1.0)
    params[:, 1] = x0
    params[:, 2] = y0
    params[:, 3] = a0
    params[:, 4] = a0
    params[:, 6] = beta0 if beta is None else beta
    if start is not None:
        params[:] = start
        if beta is not None:
            params[:, 6] = beta
    lam = np.full(n, 1e-2)

    def evaluate(par: FloatArray, rows: NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        col = [par[:, k : k + 1] for k in range(N_PARAMS)]
        p, g = profile_and_gradient(xx - col[1], yy - col[2], col[3], col[4], col[5], col[6])
        model = col[0] * p + col[7]
        jac = np.empty((N_PARAMS, rows.size, xx.shape[1]))
        jac[0] = p
        jac[1:7] = col[0][None] * g
        jac[7] = 1.0
        return model, jac

    def chi2_of(model: FloatArray, rows: NDArray[np.intp]) -> FloatArray:
        return np.asarray(np.sum(w[rows] * (data[rows] - model) ** 2, axis=1))

    every = np.arange(n)
    model, jac = evaluate(params, every)
    chi2 = chi2_of(model, every)
    active = np.ones(n, dtype=bool)
    for _ in range(n_iter):
        rows = np.nonzero(active)[0]
        if rows.size == 0:
            break
        wa = w[rows]
        ja = jac[:, rows]
        resid = (data[rows] - model[rows]) * wa
        jtj = np.einsum("pnk,qnk->npq", ja * wa[None], ja)
        jtr = np.einsum("pnk,nk->np", ja, resid)
        if beta is not None:
            jtj[:, 6, :] = 0.0
            jtj[:, :, 6] = 0.0
            jtj[:, 6, 6] = 1.0
            jtr[:, 6] = 0.0
        diag = np.einsum("npp->np", jtj)
        damped = jtj + (lam[rows, None] * np.maximum(diag, 1e-30))[:, :, None] * np.eye(N_PARAMS)[None]
        try:
            step = np.linalg.solve(damped, jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.zeros_like(jtr)
            for k in range(rows.size):
                step[k] = np.linalg.lstsq(damped[k], jtr[k], rcond=None)[0]
        trial = params[rows] + step
        trial[:, 6] = np.clip(trial[:, 6], *BETA_RANGE)
        trial[:, 3] = np.maximum(trial[:, 3], 1e-4)
        trial[:, 4] = np.maximum(trial[:, 4], 1e-4)
        limit = 1.98 * np.sqrt(trial[:, 3] * trial[:, 4])
        trial[:, 5] = np.clip(trial[:, 5], -limit, limit)
        trial_model, trial_jac = evaluate(trial, rows)
        trial_chi2 = chi2_of(trial_model, rows)
        better = trial_chi2 <= chi2[rows]
        converged = better & ((chi2[rows] - trial_chi2) < 1e-6 * chi2[rows] + 1e-3)
        upd = rows[better]
        params[upd] = trial[better]
        model[upd] = trial_model[better]
        jac[:, upd] = trial_jac[:, better]
        chi2[upd] = trial_chi2[better]
        lam[rows] = np.where(better, lam[rows] / 5.0, lam[rows] * 10.0)
        active[rows[converged]] = False
        active &= lam < 1e8
    dof = np.maximum(np.sum(w > 0, axis=1) - N_PARAMS, 1)
    chi2_red = chi2 / dof
    fwhm = fwhm_from_shape(params[:, 3], params[:, 4], params[:, 5], params[:, 6])
    ok = (
        np.all(np.isfinite(params), axis=1)
        & (params[:, 0] > 0)
        & np.isfinite(fwhm)
        & (fwhm > 0.5)
        & (fwhm < size)
        & (np.abs(params[:, 1] - x0) < 2.0)
        & (np.abs(params[:, 2] - y0) < 2.0)
    )
    return params, chi2_red, ok

"""Locating a phase transition from a scalar read off each configuration.

The scalar is a latent coordinate (or, as the baseline, the first principal component).
For every value of the control parameter (temperature, or kappa for phi^4) we take the
mean of its absolute value, its susceptibility N * Var(|v|) (/ T for a temperature) and
its Binder cumulant U = 1 - <v^4> / (3 <v^2>^2), as one would for the magnetisation.
Three finite-size estimates of the critical point follow: the peak of the susceptibility
(a parabola through log chi around the maximum), the inflection of <|v|> (a tanh fit),
and the temperature where U equals its universal value at criticality (0.61069 for the
2D Ising class on a periodic square lattice; U does not depend on the scale of v, and
its finite-size shift is far smaller than the susceptibility peak's). `binder_crossing`
gives the point where the cumulants of two sizes cross, and `extrapolate` takes
estimates at several L to L -> oo with Tc(L) = Tc + a * L^(-1/nu) (nu = 1 for 2D Ising).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from betavae_core import DataError

from .montecarlo import TC_ISING  # noqa: F401  (re-exported: the exact Tc estimates aim at)

#: Binder cumulant at criticality, 2D Ising class, square lattice, periodic boundaries
#: (Kamieniarz and Bloete 1993).
BINDER_ISING = 0.61069


@dataclass
class Curves:
    """Per control value: <|v|>, its standard error, the susceptibility and the Binder
    cumulant."""

    control: np.ndarray
    mean_abs: np.ndarray
    sem_abs: np.ndarray
    susceptibility: np.ndarray
    binder: np.ndarray


def curves(values: np.ndarray, control: np.ndarray, n_sites: int,
           per_temperature: bool = True) -> Curves:
    """Group values (centred on the symmetric point) by control value: <|v|>,
    chi = n_sites * Var(|v|) (/ control if a temperature) and U = 1 - <v^4>/(3 <v^2>^2)."""
    signed = np.asarray(values, dtype=np.float64)
    values = np.abs(signed)
    control = np.asarray(control, dtype=np.float64)
    grid = np.unique(control)
    if len(grid) < 3:
        raise DataError(f"locating a transition needs at least 3 distinct control values; "
                        f"the data has {len(grid)}.")
    mean, sem, chi, binder = (np.empty(len(grid)) for _ in range(4))
    for i, c in enumerate(grid):
        v = values[control == c]
        mean[i] = v.mean()
        sem[i] = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else np.nan
        chi[i] = n_sites * v.var() / (c if per_temperature else 1.0)
        second = np.mean(v**2)
        binder[i] = 1.0 - np.mean(v**4) / (3.0 * second**2) if second > 0 else np.nan
    return Curves(grid, mean, sem, chi, binder)


def susceptibility_peak(c: Curves) -> float:
    """Control value of the susceptibility maximum, refined by a parabola through log chi
    at the maximum and its neighbours (two on each side where the grid allows)."""
    chi = np.maximum(c.susceptibility, 1e-300)
    i = int(np.argmax(chi))
    lo, hi = max(0, i - 2), min(len(chi), i + 3)
    if hi - lo < 3:
        return float(c.control[i])
    a, b, _ = np.polyfit(c.control[lo:hi], np.log(chi[lo:hi]), 2)
    if a >= 0:
        return float(c.control[i])
    vertex = -b / (2 * a)
    return float(np.clip(vertex, c.control[lo], c.control[hi - 1]))


def _step(t, lo, hi, t0, width):
    return lo + (hi - lo) * 0.5 * (1.0 - np.tanh((t - t0) / width))


def _fit_step(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Least-squares tanh step through (t, y); also the steepest finite difference."""
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    slopes = np.diff(y) / np.diff(t)
    k = int(np.argmax(np.abs(slopes)))
    guess_t0 = 0.5 * (t[k] + t[k + 1])
    p0 = [y[-1], y[0], guess_t0, (t[-1] - t[0]) / 10]
    try:
        with warnings.catch_warnings():  # a flat curve leaves the covariance undefined
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(_step, t, y, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError):
        return None, float(guess_t0)
    return params, float(guess_t0)


def inflection(c: Curves) -> float:
    """Control value where <|v|> changes fastest: the centre of a fitted tanh step
    (falling or rising), or the steepest finite difference if the fit fails."""
    params, guess = _fit_step(c.control, c.mean_abs)
    if params is None:
        return guess
    t0 = float(params[2])
    return t0 if c.control[0] <= t0 <= c.control[-1] else guess


def _local_root(t: np.ndarray, y: np.ndarray, half_width: int = 3) -> float:
    """Where y (noisy, one sign change expected) crosses zero: a straight line fitted to the
    points around the sign change closest to the middle of the grid (NaN if none)."""
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    idx = np.flatnonzero(np.sign(y[:-1]) * np.sign(y[1:]) < 0)
    if not len(idx):
        return float("nan")
    k = int(idx[np.argmin(np.abs(idx - len(t) // 2))])
    lo, hi = max(0, k - half_width + 1), min(len(t), k + half_width + 1)
    slope, intercept = np.polyfit(t[lo:hi], y[lo:hi], 1)
    if slope == 0:
        return float("nan")
    return float(np.clip(-intercept / slope, t[lo], t[hi - 1]))


def binder_point(c: Curves, critical_value: float = BINDER_ISING) -> float:
    """Control value where the Binder cumulant falls through its critical value (a line
    through the neighbouring points; NaN if it never does)."""
    return _local_root(c.control, c.binder - critical_value)


def binder_crossing(a: Curves, b: Curves) -> float:
    """Control value where the Binder cumulants of two sizes cross, on their common grid."""
    common, ia, ib = np.intersect1d(a.control, b.control, return_indices=True)
    return _local_root(common, a.binder[ia] - b.binder[ib])


@dataclass
class Extrapolation:
    """Tc(L) = tc + slope * L^(-1/nu), fitted by least squares."""

    tc: float
    slope: float
    tc_stderr: float | None


def extrapolate(sizes: list[int], estimates: list[float], nu: float = 1.0) -> Extrapolation:
    """Infinite-size critical point from finite-size estimates at two or more sizes L."""
    if len(sizes) != len(estimates) or len(set(sizes)) < 2:
        raise DataError(f"extrapolation needs estimates at two or more distinct L; got "
                        f"sizes {sizes} with {len(estimates)} estimates.")
    x = np.asarray(sizes, dtype=np.float64) ** (-1.0 / nu)
    y = np.asarray(estimates, dtype=np.float64)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    stderr = None
    if len(x) > 2:
        resid = y - design @ coef
        sigma2 = float(resid @ resid) / (len(x) - 2)
        stderr = float(math.sqrt(sigma2 * np.linalg.inv(design.T @ design)[0, 0]))
    return Extrapolation(float(coef[0]), float(coef[1]), stderr)

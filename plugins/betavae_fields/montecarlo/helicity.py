"""The helicity modulus (spin stiffness) of 2D XY configurations, with bootstrap errors.

The helicity modulus is the free energy's curvature under a twist of the boundary
conditions: twisting every x-bond by delta / L adds, to second order, (N / 2) Y delta^2 / L^2
to F. For the XY model with J = 1 it is an equilibrium average over untwisted
configurations (Teitel and Jayaprakash 1983; Weber and Minnhagen 1988):

    Y_mu = (1/N) [ < sum_mu cos(theta_i - theta_j) > - (1/T) < (sum_mu sin(theta_i - theta_j))^2 > ]

the sums over the N bonds (i, j = i + mu) in direction mu; the reported Y averages x and
y. It is 1 when all spins are aligned, 1 - T/4 + O(T^2) in spin-wave theory and 0 in
the disordered phase; at T_BKT it jumps from 2 T_BKT / pi to 0 (Nelson and Kosterlitz
1977), which `betavae_fields.bkt` uses to locate the transition. (< sum sin > vanishes
by symmetry and is not subtracted: the standard estimator.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from betavae_core import ConfigError

from .observables import _as_lattices


@dataclass
class HelicityCurve:
    """Y per control value of one lattice size: the estimate, its bootstrap standard
    error and `n_boot` bootstrap replicates (n_boot, n_control) for derived errors."""

    L: int
    control: np.ndarray
    value: np.ndarray
    error: np.ndarray
    replicates: np.ndarray


def bond_terms(angles: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per configuration and direction (x, y): the bond sums of cos(theta_i - theta_j)
    and of sin(theta_i - theta_j), each (n, 2), periodic, float64."""
    a = _as_lattices(angles, "angles").astype(np.float64, copy=False)
    dx = a - np.roll(a, -1, axis=2)
    dy = a - np.roll(a, -1, axis=1)
    cos = np.stack([np.cos(dx).sum(axis=(1, 2)), np.cos(dy).sum(axis=(1, 2))], axis=1)
    sin = np.stack([np.sin(dx).sum(axis=(1, 2)), np.sin(dy).sum(axis=(1, 2))], axis=1)
    return cos, sin


def _stiffness(cos: np.ndarray, sin: np.ndarray, temperature: float, n_sites: int
               ) -> np.ndarray:
    """Y over the leading axis (configurations), for arrays (..., n, 2)."""
    per_dir = cos.mean(axis=-2) - (sin ** 2).mean(axis=-2) / temperature
    return per_dir.mean(axis=-1) / n_sites


def helicity_modulus(angles: Any, temperature: float) -> float:
    """Y of an ensemble of configurations (n, L, L) at one temperature (J = 1)."""
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ConfigError(f"helicity_modulus needs a temperature > 0; got {temperature!r}.")
    cos, sin = bond_terms(angles)
    n_sites = int(np.asarray(angles).shape[-1] * np.asarray(angles).shape[-2])
    return float(_stiffness(cos, sin, t, n_sites))


def helicity_curve(angles: Any, temperature: Any, *, n_boot: int = 200, seed: int = 0
                   ) -> HelicityCurve:
    """Y(T) of configurations (n, L, L) labelled by temperature (n,), with bootstrap
    errors: configurations are resampled within each temperature (the samplers thin
    their chains to about one autocorrelation time, so samples are near-independent)."""
    a = _as_lattices(angles, "angles")
    t = np.asarray(temperature, dtype=np.float64)
    if t.shape != (a.shape[0],):
        raise ConfigError(f"temperature must have one value per configuration, shape "
                          f"({a.shape[0]},); got {t.shape}.")
    if not np.all(np.isfinite(t) & (t > 0)):
        raise ConfigError("temperature must be finite and > 0 for every configuration.")
    cos, sin = bond_terms(a)
    n_sites = a.shape[1] * a.shape[2]
    rng = np.random.default_rng(seed)
    grid = np.unique(t)
    value, reps = np.empty(grid.size), np.empty((int(n_boot), grid.size))
    for k, temp in enumerate(grid):
        rows = np.flatnonzero(t == temp)
        value[k] = _stiffness(cos[rows], sin[rows], temp, n_sites)
        draw = rows[rng.integers(0, rows.size, size=(int(n_boot), rows.size))]
        reps[:, k] = _stiffness(cos[draw], sin[draw], temp, n_sites)
    return HelicityCurve(L=int(a.shape[-1]), control=grid, value=value,
                         error=reps.std(axis=0, ddof=1) if n_boot > 1 else np.zeros(grid.size),
                         replicates=reps)

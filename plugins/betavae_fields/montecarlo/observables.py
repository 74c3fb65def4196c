"""Energies and magnetisations of Ising, XY and phi^4 configurations.

Public: the samplers record them, and generated configurations are judged by them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from betavae_core import ConfigError, DataError

from . import checks


def _as_lattices(x: Any, name: str) -> np.ndarray:
    """x as an (n, Lx, Ly) array (a single (Lx, Ly) lattice becomes n = 1), finite."""
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape[1:]) < 2:
        raise DataError(f"{name} must have shape (n, L, L) or (L, L) with L >= 2; got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains NaN or infinite values")
    return arr


def _bond_sum(x: np.ndarray, op) -> np.ndarray:
    """Sum over the 2N nearest-neighbour bonds of op(x_i, x_j), per lattice, periodic."""
    right = op(x, np.roll(x, -1, axis=2))
    down = op(x, np.roll(x, -1, axis=1))
    return right.sum(axis=(1, 2), dtype=np.float64) + down.sum(axis=(1, 2), dtype=np.float64)


def _ising_obs(spins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_sites = spins.shape[1] * spins.shape[2]
    energy = -_bond_sum(spins, np.multiply) / n_sites
    return energy, spins.mean(axis=(1, 2), dtype=np.float64)


def ising_observables(configs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Energy per site and signed magnetisation per site of Ising configurations.

    Periodic boundaries, J = 1: E = -(1/N) sum over bonds s_i s_j. Accepts int or float
    arrays of exactly +-1 (so generated configurations can be judged the same way).
    """
    spins = _as_lattices(configs, "configs")
    if not np.all((spins == 1) | (spins == -1)):
        raise DataError(
            "Ising configs must hold only -1 and +1; threshold generated values first "
            "(e.g. np.where(x > 0, 1, -1))"
        )
    return _ising_obs(spins)


def _xy_obs(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = angles.astype(np.float64, copy=False)
    n_sites = a.shape[1] * a.shape[2]
    energy = -_bond_sum(a, lambda u, v: np.cos(u - v)) / n_sites
    mx = np.cos(a).mean(axis=(1, 2))
    my = np.sin(a).mean(axis=(1, 2))
    return energy, np.hypot(mx, my)


def xy_observables(angles: Any) -> tuple[np.ndarray, np.ndarray]:
    """Energy per site, -(1/N) sum over bonds cos(theta_i - theta_j), and |mean spin vector|."""
    return _xy_obs(_as_lattices(angles, "angles"))


def _phi4_obs(phi: np.ndarray, kappa: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    f = phi.astype(np.float64, copy=False)
    n_sites = f.shape[1] * f.shape[2]
    hopping = _bond_sum(f, np.multiply)
    f2 = f * f
    local = (f2 + lam * (f2 - 1.0) ** 2).sum(axis=(1, 2))
    action = (-2.0 * kappa * hopping + local) / n_sites
    return action, f.mean(axis=(1, 2))


def phi4_observables(phi: Any, kappa: Any, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Action per site and mean field of phi^4 configurations.

    S = sum_x [-2 kappa sum_mu phi_x phi_{x+mu} + phi_x^2 + lam (phi_x^2 - 1)^2], mu over
    the two positive directions, periodic. kappa is one number or one per configuration.
    """
    f = _as_lattices(phi, "phi")
    k = np.asarray(kappa, dtype=np.float64)
    if k.ndim > 1 or (k.ndim == 1 and k.shape[0] != f.shape[0]):
        raise ConfigError(
            f"kappa must be a number or have shape ({f.shape[0]},) (one per configuration); "
            f"got shape {k.shape}"
        )
    if not np.all(np.isfinite(k)):
        raise ConfigError("kappa must be finite")
    return _phi4_obs(f, k, checks.positive_float(lam, "lam"))

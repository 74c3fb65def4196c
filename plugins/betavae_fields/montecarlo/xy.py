"""2D XY chains: checkerboard Metropolis with adapted steps plus over-relaxation, and
Wolff cluster reflections (Wolff 1989) for the temperatures in a window around T_BKT."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import checks
from .blocked import COLOURS, colour0_bond_sum, from_blocked, neighbour_sum, to_blocked
from .cluster import ClusterUpdates, in_window
from .ensemble import Ensemble
from .observables import xy_observables
from .schedule import (
    MAX_SPACING,
    TARGET_ACCEPTANCE,
    AdaptiveStep,
    build_ensemble,
    chain_layout,
    common_counts,
    run_schedule,
    schedule_params,
)

_TWO_PI = np.float32(2.0 * np.pi)
_PI = np.float32(np.pi)
#: Temperatures that get Wolff cluster updates by default: just above T_BKT ~ 0.893, where
#: vortex unbinding slows the local moves most (at L = 32, tau(|m|) 24 - 30 sweeps there
#: against 4 - 7 at T <= 0.9, where over-relaxation alone is cheaper per independent
#: sample; benchmarks/fields_mc.py).
WOLFF_WINDOW_XY = (0.95, 1.25)


def _wrap(theta: np.ndarray) -> np.ndarray:
    """Angles into [-pi, pi) (float32)."""
    out = np.mod(theta + _PI, _TWO_PI) - _PI
    return np.where(out >= _PI, out - _TWO_PI, out).astype(np.float32, copy=False)


class XYChains(AdaptiveStep):
    """XY chains: blocked angles float32; a sweep is one Metropolis pass, `overrelax`
    over-relaxation passes and, for the chains marked in `wolff`, Wolff clusters."""

    max_width = float(np.pi)

    def __init__(self, theta: np.ndarray, beta: np.ndarray, overrelax: int,
                 rng: np.random.Generator, wolff: np.ndarray | None = None,
                 group: np.ndarray | None = None) -> None:
        self.theta = to_blocked(theta)
        self.beta = beta
        self.overrelax = overrelax
        self.rng = rng
        self.width = np.ones((theta.shape[0], 1, 1), dtype=np.float32)
        n = theta.shape[0]
        self.wolff = ClusterUpdates(
            theta.shape[1], beta, np.zeros(n, bool) if wolff is None else wolff,
            np.zeros(n, np.int64) if group is None else group)
        self._derive()
        self._reset_stats()

    def _derive(self) -> None:
        self.cos = np.cos(self.theta)
        self.sin = np.sin(self.theta)
        self.b32 = self.beta.astype(np.float32)[:, None, None]

    def sweep(self) -> None:
        for colour in COLOURS:
            for p, q in colour:
                self._metropolis(p, q)
        for _ in range(self.overrelax):
            for colour in COLOURS:
                for p, q in colour:
                    self._reflect(p, q)
        if self.wolff.any:
            self.wolff_sweep()

    def wolff_sweep(self) -> None:
        """The adapted number of Wolff clusters in each Wolff chain, all chains at once:
        each cluster reflects its spins about the line perpendicular to a random unit
        vector r (angle phi), theta -> pi + 2 phi - theta, so s . r changes sign."""
        theta, co, si = (a.reshape(-1) for a in (self.theta, self.cos, self.sin))
        for chains in self.wolff.rounds():
            phi = np.zeros(self.beta.size, dtype=np.float32)
            phi[chains] = self.rng.uniform(0.0, 2.0 * np.pi, chains.size)
            cr, sr = np.cos(phi), np.sin(phi)
            members = self.wolff.grow(
                chains, self.rng, lambda i, c, cr=cr, sr=sr: co[i] * cr[c] + si[i] * sr[c])
            owner = members // self.wolff.n_sites
            new = _wrap(_PI + 2.0 * phi[owner] - theta[members])
            theta[members], co[members], si[members] = new, np.cos(new), np.sin(new)

    def _metropolis(self, p: int, q: int) -> None:
        th, co, si = self.theta[:, p, q], self.cos[:, p, q], self.sin[:, p, q]
        hx, hy = neighbour_sum(self.cos, p, q), neighbour_sum(self.sin, p, q)
        u = self.rng.random((2,) + th.shape, dtype=np.float32)
        new = _wrap(th + self.width * (2.0 * u[0] - 1.0))
        cn, sn = np.cos(new), np.sin(new)
        d_energy = hx * (co - cn) + hy * (si - sn)  # E_site = -h . (cos, sin)
        with np.errstate(over="ignore"):
            accept = u[1] < np.exp(-self.b32 * d_energy)
        th[...] = np.where(accept, new, th)
        co[...] = np.where(accept, cn, co)
        si[...] = np.where(accept, sn, si)
        self.accepted += accept.sum(axis=(1, 2))
        self.attempted += th[0].size

    def _reflect(self, p: int, q: int) -> None:
        """Over-relaxation: reflect each angle about its local field (energy unchanged)."""
        field_angle = np.arctan2(neighbour_sum(self.sin, p, q), neighbour_sum(self.cos, p, q))
        new = _wrap(2.0 * field_angle - self.theta[:, p, q])
        self.theta[:, p, q] = new
        self.cos[:, p, q] = np.cos(new)
        self.sin[:, p, q] = np.sin(new)

    def adapt(self) -> None:
        super().adapt()
        self.wolff.adapt()

    def describe(self, chain_ctrl: np.ndarray, n_ctrl: int) -> dict:
        return {**super().describe(chain_ctrl, n_ctrl),
                **self.wolff.describe(chain_ctrl, n_ctrl)}

    def observables(self) -> tuple[np.ndarray, np.ndarray]:
        n_sites = self.theta[0].size
        energy = -(colour0_bond_sum(self.cos) + colour0_bond_sum(self.sin)) / n_sites
        mx = self.cos.mean(axis=(1, 2, 3, 4), dtype=np.float64)
        my = self.sin.mean(axis=(1, 2, 3, 4), dtype=np.float64)
        return energy, np.hypot(mx, my)

    def states(self, idx: np.ndarray) -> np.ndarray:
        return from_blocked(self.theta[idx])

    def keep(self, idx: np.ndarray) -> None:
        self.theta = np.ascontiguousarray(self.theta[idx])
        self.beta, self.width, self.accepted = self.beta[idx], self.width[idx], self.accepted[idx]
        self.wolff.keep(idx)
        self._derive()


def sample_xy(
    L: int,
    temperatures: Sequence[float] | np.ndarray,
    n_per_temperature: int,
    seed: int = 0,
    *,
    chains_per_temperature: int | None = None,
    n_therm: int | None = None,
    n_pilot: int | None = None,
    max_spacing: int = MAX_SPACING,
    overrelax: int = 1,
    wolff_window: tuple[float, float] = WOLFF_WINDOW_XY,
) -> Ensemble:
    """Equilibrium 2D XY configurations (angles in [-pi, pi), J = 1, periodic).

    Each sweep is one checkerboard Metropolis pass (uniform step whose width adapts
    toward 50% acceptance during thermalisation) and `overrelax` over-relaxation passes,
    which reflect every angle about its local field: free moves along the energy shell
    that shorten autocorrelations. The BKT transition is at T ~ 0.893; for temperatures
    inside `wolff_window` (default around it, where the local moves slow down) each sweep
    adds Wolff cluster reflections, as many as flip about one lattice (adapted during
    thermalisation, then fixed); `wolff_window=(0, 0)` turns them off.
    Defaults: min(n_per_temperature, 8) chains per temperature, 300 + 300 sweeps.
    """
    L, n_per, seed, n_chains, n_therm, n_pilot, max_spacing = common_counts(
        L, n_per_temperature, seed, chains_per_temperature, n_therm, n_pilot, max_spacing,
        ("n_per_temperature", "chains_per_temperature"), (300, 300))
    overrelax = checks.count(overrelax, "overrelax", 0)
    temps = checks.control_values(temperatures, "temperatures", allow_zero=False)
    window = checks.window(wolff_window)
    wolff = in_window(temps, window)
    rng = np.random.default_rng(seed)
    chain_ctrl, chain_rank = chain_layout(np.arange(temps.size), n_chains)
    start = rng.uniform(-np.pi, np.pi, size=chain_ctrl.size).astype(np.float32)
    theta = np.ascontiguousarray(np.broadcast_to(start[:, None, None], (start.size, L, L)))
    chains = XYChains(theta, 1.0 / temps[chain_ctrl], overrelax, rng, wolff[chain_ctrl],
                      chain_ctrl.copy())
    run = run_schedule(chains, chain_ctrl, chain_rank, n_chains, n_per, n_therm, n_pilot,
                        max_spacing)
    energy, mag = xy_observables(run.configs)
    params = {
        "model": "xy", "L": L, "temperatures": temps.tolist(),
        "n_per_temperature": n_per, "seed": seed, "chains_per_temperature": n_chains,
        "coupling": 1.0, "overrelax": overrelax, "wolff_window": list(window),
        "update": ["metropolis+overrelaxation" + ("+wolff" if w else "") for w in wolff],
        "target_acceptance": TARGET_ACCEPTANCE,
        **schedule_params(n_therm, n_pilot, max_spacing, temps, run),
    }
    return build_ensemble("xy", "temperature", temps, run, energy, mag, params)

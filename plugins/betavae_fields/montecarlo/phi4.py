"""2D phi^4 chains: checkerboard Metropolis with adapted steps, across kappa, plus the
Wolff embedding (Brower and Tamayo 1989) for the kappas in a window around kappa_c.

With the default lam = 1 the Ising-class transition lies at kappa_c = 0.339 +- 0.003
(KAPPA_C_PHI4), measured with this sampler from Binder-cumulant crossings (L = 8/16 cross
at 0.337, L = 16/32 at 0.339, with U ~ 0.60 there, close to the Ising value 0.611); the
ordered phase is kappa > kappa_c. For lam -> infinity kappa_c tends to the Ising value
beta_c / 2 = 0.2203.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import checks
from .blocked import COLOURS, colour0_bond_sum, from_blocked, neighbour_sum, to_blocked
from .cluster import ClusterUpdates, in_window
from .ensemble import Ensemble
from .observables import phi4_observables
from .schedule import (
    MAX_SPACING,
    TARGET_ACCEPTANCE,
    AdaptiveStep,
    balanced_signs,
    build_ensemble,
    chain_layout,
    common_counts,
    run_schedule,
    schedule_params,
)

KAPPA_C_PHI4: float = 0.339  # for the default lam = 1.0 (measured, see the module docstring)
DEFAULT_LAM = 1.0
#: kappas that get Wolff-embedding cluster flips by default: around KAPPA_C_PHI4, where
#: Metropolis slows down (tau measured in benchmarks/fields_mc.py).
WOLFF_WINDOW_PHI4 = (0.3, 0.4)


class Phi4Chains(AdaptiveStep):
    """phi^4 chains: blocked field float32; a sweep is one checkerboard Metropolis pass
    (adapted step) and, for the chains marked in `wolff`, embedded Wolff clusters."""

    max_width = 10.0

    def __init__(self, phi: np.ndarray, kappa: np.ndarray, lam: float,
                 rng: np.random.Generator, wolff: np.ndarray | None = None,
                 group: np.ndarray | None = None) -> None:
        self.phi = to_blocked(phi)
        self.kappa = kappa
        self.lam = np.float32(lam)
        self.rng = rng
        self.width = np.ones((phi.shape[0], 1, 1), dtype=np.float32)
        n = phi.shape[0]
        self.wolff = ClusterUpdates(
            phi.shape[1], 2.0 * kappa, np.zeros(n, bool) if wolff is None else wolff,
            np.zeros(n, np.int64) if group is None else group)
        self._derive()
        self._reset_stats()

    def _derive(self) -> None:
        self.two_kappa = (2.0 * self.kappa).astype(np.float32)[:, None, None]

    def sweep(self) -> None:
        for colour in COLOURS:
            for p, q in colour:
                self._metropolis(p, q)
        if self.wolff.any:
            self.wolff_sweep()

    def wolff_sweep(self) -> None:
        """The adapted number of embedded clusters per Wolff chain: the signs of phi form
        an Ising model with couplings 2 kappa |phi_i phi_j| (the local terms are even in
        phi), so a cluster grown with 1 - exp(-4 kappa phi_i phi_j) flips its sign."""
        flat = self.phi.reshape(-1)
        for chains in self.wolff.rounds():
            members = self.wolff.grow(chains, self.rng, lambda i, c: flat[i])
            flat[members] = -flat[members]

    def adapt(self) -> None:
        super().adapt()
        self.wolff.adapt()

    def describe(self, chain_ctrl: np.ndarray, n_ctrl: int) -> dict:
        return {**super().describe(chain_ctrl, n_ctrl),
                **self.wolff.describe(chain_ctrl, n_ctrl)}

    def _metropolis(self, p: int, q: int) -> None:
        f = self.phi[:, p, q]
        h = neighbour_sum(self.phi, p, q)
        u = self.rng.random((2,) + f.shape, dtype=np.float32)
        new = f + self.width * (2.0 * u[0] - 1.0)
        f2, n2 = f * f, new * new
        d_action = (-self.two_kappa * h * (new - f) + (n2 - f2)
                    + self.lam * ((n2 - 1.0) ** 2 - (f2 - 1.0) ** 2))
        with np.errstate(over="ignore"):
            accept = u[1] < np.exp(-d_action)
        f[...] = np.where(accept, new, f)
        self.accepted += accept.sum(axis=(1, 2))
        self.attempted += f[0].size

    def observables(self) -> tuple[np.ndarray, np.ndarray]:
        f = self.phi.astype(np.float64)
        n_sites = f[0].size
        f2 = f * f
        local = (f2 + float(self.lam) * (f2 - 1.0) ** 2).sum(axis=(1, 2, 3, 4))
        action = (-2.0 * self.kappa * colour0_bond_sum(f) + local) / n_sites
        return action, f.mean(axis=(1, 2, 3, 4))

    def states(self, idx: np.ndarray) -> np.ndarray:
        return from_blocked(self.phi[idx])

    def keep(self, idx: np.ndarray) -> None:
        self.phi = np.ascontiguousarray(self.phi[idx])
        self.kappa, self.width, self.accepted = self.kappa[idx], self.width[idx], self.accepted[idx]
        self.wolff.keep(idx)
        self._derive()


def sample_phi4(
    L: int,
    kappas: Sequence[float] | np.ndarray,
    n_per_kappa: int,
    seed: int = 0,
    *,
    lam: float = DEFAULT_LAM,
    chains_per_kappa: int | None = None,
    n_therm: int | None = None,
    n_pilot: int | None = None,
    max_spacing: int = MAX_SPACING,
    wolff_window: tuple[float, float] = WOLFF_WINDOW_PHI4,
) -> Ensemble:
    """Equilibrium 2D phi^4 configurations for each hopping parameter kappa (>= 0).

    Action S = sum_x [-2 kappa sum_mu phi_x phi_{x+mu} + phi_x^2 + lam (phi_x^2 - 1)^2],
    sampled with checkerboard Metropolis (step width adapted toward 50% acceptance).
    kappa = 0 decouples the sites. For lam = 1 the Ising-class transition is at
    kappa_c ~ 0.339 (KAPPA_C_PHI4; ordered above), where Metropolis slows down; for kappas
    inside `wolff_window` (default around it) each sweep adds Wolff-embedding cluster
    flips of the sign field, as many as flip about one lattice (adapted during
    thermalisation, then fixed); `wolff_window=(0, 0)` turns them off. Spacings that hit
    max_spacing are recorded in params["spacing_capped"].
    Defaults: min(n_per_kappa, 8) chains per kappa, 300 + 300 sweeps.
    """
    L, n_per, seed, n_chains, n_therm, n_pilot, max_spacing = common_counts(
        L, n_per_kappa, seed, chains_per_kappa, n_therm, n_pilot, max_spacing,
        ("n_per_kappa", "chains_per_kappa"), (300, 300))
    lam = checks.positive_float(lam, "lam")
    kappas = checks.control_values(kappas, "kappas", allow_zero=True)
    window = checks.window(wolff_window)
    wolff = in_window(kappas, window) & (kappas > 0)
    rng = np.random.default_rng(seed)
    chain_ctrl, chain_rank = chain_layout(np.arange(kappas.size), n_chains)
    signs = balanced_signs(rng, chain_ctrl, chain_rank, kappas.size).astype(np.float32)
    phi = np.ascontiguousarray(np.broadcast_to(signs[:, None, None], (signs.size, L, L)))
    chains = Phi4Chains(phi, kappas[chain_ctrl], lam, rng, wolff[chain_ctrl], chain_ctrl.copy())
    run = run_schedule(chains, chain_ctrl, chain_rank, n_chains, n_per, n_therm, n_pilot,
                        max_spacing)
    action, mag = phi4_observables(run.configs, kappas[run.ctrl], lam)
    params = {
        "model": "phi4", "L": L, "kappas": kappas.tolist(), "lam": lam,
        "n_per_kappa": n_per, "seed": seed, "chains_per_kappa": n_chains,
        "wolff_window": list(window),
        "update": ["metropolis+wolff" if w else "metropolis" for w in wolff],
        "target_acceptance": TARGET_ACCEPTANCE,
        **schedule_params(n_therm, n_pilot, max_spacing, kappas, run),
    }
    return build_ensemble("phi4", "kappa", kappas, run, action, mag, params)

"""2D Ising chains: single-cluster Wolff near Tc, batched checkerboard Metropolis
elsewhere, all chains of all temperatures in one array; and the plain Metropolis loop
kept as the benchmark anchor.

Ising chains whose temperature lies in `wolff_window` (around Tc) use single-cluster
Wolff updates, with the clusters of all those chains grown at once, one frontier step
at a time; the others run checkerboard Metropolis sublattice by sublattice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import checks
from .blocked import (
    COLOURS,
    colour0_bond_sum,
    from_blocked,
    neighbour_sum,
    neighbour_table,
    to_blocked,
)
from .ensemble import Ensemble
from .observables import ising_observables
from .schedule import (
    MAX_SPACING,
    balanced_signs,
    build_ensemble,
    chain_layout,
    common_counts,
    per_control,
    run_schedule,
    schedule_params,
)


class IsingChains:
    """Ising chains, blocked (C, 2, 2, L/2, L/2) int8: Wolff chains first, Metropolis after."""

    def __init__(self, spins: np.ndarray, beta: np.ndarray, n_wolff: int, group: np.ndarray,
                 rng: np.random.Generator) -> None:
        self.spins = to_blocked(spins)
        self.beta = beta
        self.n_wolff = n_wolff
        self.group = group
        self.rng = rng
        self.L = spins.shape[1]
        self.n_sites = self.L * self.L
        self.nbr = neighbour_table(self.L)
        self.clusters = np.ones(n_wolff, dtype=np.int64)  # Wolff clusters per sweep
        self.mean_size = np.full(n_wolff, np.nan)  # mean Wolff cluster size, last block
        self._reset_stats()
        self._derive()

    def _derive(self) -> None:
        b = self.beta[self.n_wolff:].astype(np.float32)[:, None, None]
        self.a2 = np.exp(-4.0 * b)  # flip probability when s * h = 2 (dE = 4)
        self.a4 = np.exp(-8.0 * b)  # ... when s * h = 4 (dE = 8)
        self.p_add = (1.0 - np.exp(-2.0 * self.beta[: self.n_wolff])).astype(np.float32)
        self.in_cluster = np.zeros(self.n_wolff * self.n_sites, dtype=bool)
        self.slot = np.zeros(self.n_wolff * self.n_sites, dtype=np.int64)  # for de-duplication

    def _reset_stats(self) -> None:
        self.flipped = np.zeros(self.n_wolff)
        self.n_clusters = np.zeros(self.n_wolff)

    def sweep(self) -> None:
        if self.n_wolff:
            self._wolff_sweep()
        if self.n_wolff < self.spins.shape[0]:
            self._metropolis_sweep()

    def _metropolis_sweep(self) -> None:
        """One checkerboard sweep of the Metropolis chains.

        A flip changes the energy by 2 s h: always accepted for s h <= 0, else with
        probability a2 = exp(-4 beta) (s h = 2) or a4 = exp(-8 beta) (s h = 4).
        """
        b = self.spins[self.n_wolff:]
        for colour in COLOURS:
            u = self.rng.random((2, b.shape[0], b.shape[3], b.shape[4]), dtype=np.float32)
            for k, (p, q) in enumerate(colour):
                s = b[:, p, q]
                sh = s * neighbour_sum(b, p, q)
                flip = (sh <= 0) | (u[k] < self.a4) | ((sh == 2) & (u[k] < self.a2))
                np.multiply(s, 1 - 2 * flip.view(np.int8), out=s)

    def _wolff_sweep(self) -> None:
        for r in range(int(self.clusters.max())):
            self._wolff_round(np.flatnonzero(self.clusters > r))

    def _wolff_round(self, chains: np.ndarray) -> None:
        """Grow one Wolff cluster in each listed chain, all at once, and flip them.

        Each growth step looks at the 4 neighbours of every frontier site (a neighbour
        table: the frontier mask rolled in 4 directions, touching only frontier sites);
        a same-spin neighbour not yet in the cluster joins with probability p_add, one
        fresh random number per bond. Every site is on the frontier once, so every bond
        is tested at most once: exactly Wolff.
        """
        flat = self.spins[: self.n_wolff].reshape(-1)
        n = self.n_sites
        seeds = chains * n + self.rng.integers(0, n, size=chains.size)
        seed_spin = np.zeros(self.n_wolff, dtype=np.int8)
        seed_spin[chains] = flat[seeds]
        self.in_cluster[seeds] = True
        frontier, parts = seeds, [seeds]
        while frontier.size:
            owner = frontier // n
            base = owner * n
            cand = (self.nbr[frontier - base] + base[:, None]).ravel()
            owner = np.repeat(owner, 4)
            keep = ~self.in_cluster[cand] & (flat[cand] == seed_spin[owner])
            cand, owner = cand[keep], owner[keep]
            joins = self.rng.random(cand.size, dtype=np.float32) < self.p_add[owner]
            frontier = self._distinct(cand[joins])
            self.in_cluster[frontier] = True
            parts.append(frontier)
        members = np.concatenate(parts)
        flat[members] = -flat[members]
        self.in_cluster[members] = False
        self.flipped += np.bincount(members // n, minlength=self.n_wolff)
        self.n_clusters[chains] += 1

    def _distinct(self, sites: np.ndarray) -> np.ndarray:
        """sites without repeats (a site reached over two bonds joins once), no sorting."""
        rank = np.arange(sites.size)
        self.slot[sites] = rank
        return sites[self.slot[sites] == rank]

    def adapt(self) -> None:
        """Set clusters per sweep so a Wolff sweep flips about L*L sites (per temperature)."""
        if self.n_wolff:
            g = self.group[: self.n_wolff]
            flipped = np.bincount(g, weights=self.flipped)
            counted = np.bincount(g, weights=self.n_clusters)
            self.mean_size = flipped[g] / np.maximum(counted[g], 1.0)
            self.clusters = np.maximum(1, np.rint(self.n_sites / self.mean_size)).astype(np.int64)
        self._reset_stats()

    def describe(self, chain_ctrl: np.ndarray, n_ctrl: int) -> dict:
        """Adapted settings per temperature (None where Metropolis ran)."""
        g = chain_ctrl[: self.n_wolff]
        return {
            "wolff_clusters_per_sweep": [
                None if v is None else int(v) for v in per_control(self.clusters, g, n_ctrl)
            ],
            "wolff_mean_cluster_size": per_control(self.mean_size, g, n_ctrl, 2),
        }

    def observables(self) -> tuple[np.ndarray, np.ndarray]:
        energy = -colour0_bond_sum(self.spins) / self.n_sites
        return energy, self.spins.mean(axis=(1, 2, 3, 4), dtype=np.float64)

    def states(self, idx: np.ndarray) -> np.ndarray:
        return from_blocked(self.spins[idx])

    def keep(self, idx: np.ndarray) -> None:
        """Keep only chains idx (sorted), preserving the Wolff-first order."""
        wolff = idx[idx < self.n_wolff]
        self.clusters = self.clusters[wolff]
        self.flipped, self.n_clusters = self.flipped[wolff], self.n_clusters[wolff]
        self.mean_size = self.mean_size[wolff]
        self.n_wolff = wolff.size
        self.spins = np.ascontiguousarray(self.spins[idx])
        self.beta, self.group = self.beta[idx], self.group[idx]
        self._derive()


def sample_ising(
    L: int,
    temperatures: Sequence[float] | np.ndarray,
    n_per_temperature: int,
    seed: int = 0,
    *,
    chains_per_temperature: int | None = None,
    n_therm: int | None = None,
    n_pilot: int | None = None,
    max_spacing: int = MAX_SPACING,
    wolff_window: tuple[float, float] = (1.9, 2.7),
) -> Ensemble:
    """Equilibrium 2D Ising configurations (J = 1, periodic) at each temperature.

    Wolff single-cluster updates for temperatures inside wolff_window (where Metropolis
    slows down critically), batched checkerboard Metropolis elsewhere. Chains start
    ordered with balanced random signs: a quench from random gets stuck in stripes.
    Defaults: min(n_per_temperature, 8) chains per temperature, 200 thermalisation
    and 300 pilot sweeps.
    """
    L, n_per, seed, n_chains, n_therm, n_pilot, max_spacing = common_counts(
        L, n_per_temperature, seed, chains_per_temperature, n_therm, n_pilot, max_spacing,
        ("n_per_temperature", "chains_per_temperature"), (200, 300))
    temps = checks.control_values(temperatures, "temperatures", allow_zero=False)
    lo, hi = checks.window(wolff_window)
    rng = np.random.default_rng(seed)
    wolff = (temps >= lo) & (temps <= hi)
    chain_ctrl, chain_rank = chain_layout(np.concatenate([np.flatnonzero(wolff),
                                                     np.flatnonzero(~wolff)]), n_chains)
    signs = balanced_signs(rng, chain_ctrl, chain_rank, temps.size)
    spins = np.ascontiguousarray(np.broadcast_to(signs[:, None, None], (signs.size, L, L)))
    chains = IsingChains(spins, 1.0 / temps[chain_ctrl], int(wolff.sum()) * n_chains,
                          chain_ctrl.copy(), rng)
    run = run_schedule(chains, chain_ctrl, chain_rank, n_chains, n_per, n_therm, n_pilot,
                        max_spacing)
    energy, mag = ising_observables(run.configs)
    params = {
        "model": "ising", "L": L, "temperatures": temps.tolist(),
        "n_per_temperature": n_per, "seed": seed, "chains_per_temperature": n_chains,
        "coupling": 1.0, "wolff_window": [lo, hi],
        "update": ["wolff" if w else "metropolis" for w in wolff],
        **schedule_params(n_therm, n_pilot, max_spacing, temps, run),
    }
    return build_ensemble("ising", "temperature", temps, run, energy, mag, params)


def metropolis_reference(L: int, T: float, n_sweeps: int, seed: int = 0) -> np.ndarray:
    """Plain checkerboard Metropolis on one Ising lattice; returns the final (L, L) int8.

    The straightforward numpy loop (full-lattice masks, np.roll neighbours, a lookup
    table of acceptance probabilities, float32 random numbers), kept as the benchmark
    anchor for the batched generator.
    """
    L = checks.lattice_side(L)
    beta = 1.0 / checks.positive_float(T, "T")
    n_sweeps = checks.count(n_sweeps, "n_sweeps", 0)
    rng = np.random.default_rng(checks.seed(seed))
    spins = np.ones((L, L), dtype=np.int8)
    i, j = np.indices((L, L))
    masks = [(i + j) % 2 == 0, (i + j) % 2 == 1]
    accept = np.minimum(1.0, np.exp(-2.0 * beta * np.arange(-4, 5, 2))).astype(np.float32)
    for _ in range(n_sweeps):
        for mask in masks:
            field_sum = (np.roll(spins, 1, 0) + np.roll(spins, -1, 0)
                         + np.roll(spins, 1, 1) + np.roll(spins, -1, 1))
            u = rng.random((L, L), dtype=np.float32)
            flip = mask & (u < accept[(spins * field_sum + 4) // 2])
            spins[flip] *= -1
    return spins

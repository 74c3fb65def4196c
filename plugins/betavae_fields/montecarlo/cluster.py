"""Embedded single-cluster (Wolff) updates for continuous fields, batched over chains.

Wolff's embedding (Wolff 1989) turns a continuous model into an Ising model on the
signs of a projection a_i, with couplings K |a_i a_j| on each bond: for XY, a_i is the
component of spin i along a random unit vector r (K = beta) and a flip reflects the
spin about the line perpendicular to r; for phi^4 (Brower and Tamayo 1989), a_i is the
field itself (K = 2 kappa, the hopping term's coefficient) and a flip changes its sign.
A same-sign neighbour joins the cluster with probability 1 - exp(-2 K a_i a_j), which
satisfies detailed balance for the embedded Ising model and so for the full one.

`ClusterUpdates` grows one cluster in each of many chains at once, one frontier step at
a time over blocked flat site indices (as `ising.IsingChains` does for spins), and
adapts the number of clusters per sweep so that a sweep flips about one lattice (at most
MAX_CLUSTERS_PER_SWEEP). The number is fixed after thermalisation, so each sweep is one
fixed kernel: the local sweep and each cluster update keep detailed balance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .blocked import neighbour_table
from .schedule import per_control

#: Most clusters per sweep: where clusters are small (the disordered side), the local
#: sweep already decorrelates short distances, and every extra round costs one more
#: pass of frontier steps for the whole batch.
MAX_CLUSTERS_PER_SWEEP = 4

#: (sites, owners) -> projections a of those sites (float32), owner = chain index
Projection = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ClusterUpdates:
    """Wolff cluster bookkeeping for the chains listed in `active` (a bool per chain)."""

    def __init__(self, L: int, coupling: np.ndarray, active: np.ndarray,
                 group: np.ndarray) -> None:
        self.n_sites = L * L
        self.nbr = neighbour_table(L)
        self.coupling = coupling.astype(np.float32)  # K per chain
        self.active = active.astype(bool)
        self.group = group  # control index per chain, for adapting per control value
        self.clusters = self.active.astype(np.int64)  # clusters per sweep (0: inactive)
        self.mean_size = np.full(self.coupling.size, np.nan)
        self._buffers()
        self.reset_stats()

    def _buffers(self) -> None:
        size = self.coupling.size * self.n_sites
        self.in_cluster = np.zeros(size, dtype=bool)
        self.slot = np.zeros(size, dtype=np.int64)  # for de-duplication

    def reset_stats(self) -> None:
        self.flipped = np.zeros(self.coupling.size)
        self.n_clusters = np.zeros(self.coupling.size)

    @property
    def any(self) -> bool:
        return bool(self.active.any())

    def rounds(self) -> list[np.ndarray]:
        """Chains that grow a cluster in each round of one sweep."""
        return [np.flatnonzero(self.clusters > r) for r in range(int(self.clusters.max()))]

    def grow(self, chains: np.ndarray, rng: np.random.Generator,
             project: Projection) -> np.ndarray:
        """Flat blocked indices of one cluster per listed chain (chain c's sites are
        c * N .. c * N + N - 1), grown from a random seed site each.

        Each frontier site i tests its 4 bonds to sites j not yet in the cluster, once
        each, with one fresh random number: j joins when a_i a_j > 0 and
        u < 1 - exp(-2 K a_i a_j). A site reached over several bonds joins once.
        """
        n = self.n_sites
        frontier = chains * n + rng.integers(0, n, size=chains.size)
        a_front = project(frontier, chains)
        self.in_cluster[frontier] = True
        parts = [frontier]
        while frontier.size:
            base = frontier - frontier % n
            cand = (self.nbr[frontier - base] + base[:, None]).ravel()
            a_i = np.repeat(a_front, 4)
            fresh = np.flatnonzero(~self.in_cluster[cand])
            cand, a_i = cand[fresh], a_i[fresh]
            owner = cand // n
            a_j = project(cand, owner)
            bond = np.maximum(a_i * a_j, 0.0) * self.coupling[owner]
            joins = np.flatnonzero(rng.random(cand.size, dtype=np.float32) < -np.expm1(-2.0 * bond))
            first = joins[self._first(cand[joins])]
            frontier, a_front = cand[first], a_j[first]
            self.in_cluster[frontier] = True
            parts.append(frontier)
        members = np.concatenate(parts)
        self.in_cluster[members] = False
        self.flipped += np.bincount(members // n, minlength=self.coupling.size)
        self.n_clusters[chains] += 1
        return members

    def _first(self, sites: np.ndarray) -> np.ndarray:
        """Positions of the first occurrence of each site (no sorting)."""
        rank = np.arange(sites.size)
        self.slot[sites] = rank
        return np.flatnonzero(self.slot[sites] == rank)

    def adapt(self) -> None:
        """Clusters per sweep so a sweep flips about L*L sites (mean size per control),
        at most MAX_CLUSTERS_PER_SWEEP."""
        if self.any:
            g = self.group
            flipped = np.bincount(g, weights=self.flipped)
            counted = np.bincount(g, weights=self.n_clusters)
            size = flipped[g] / np.maximum(counted[g], 1.0)
            self.mean_size = np.where(self.active, size, np.nan)
            wanted = np.clip(np.rint(self.n_sites / np.maximum(size, 1.0)), 1,
                             MAX_CLUSTERS_PER_SWEEP)
            self.clusters = np.where(self.active, wanted, 0).astype(np.int64)
        self.reset_stats()

    def keep(self, idx: np.ndarray) -> None:
        """Keep only chains idx (in that order)."""
        for name in ("coupling", "active", "group", "clusters", "mean_size", "flipped",
                     "n_clusters"):
            setattr(self, name, getattr(self, name)[idx])
        self._buffers()

    def describe(self, chain_ctrl: np.ndarray, n_ctrl: int) -> dict:
        """Adapted settings per control value (None where no cluster updates ran)."""
        on = self.active
        clusters = per_control(self.clusters[on], chain_ctrl[on], n_ctrl)
        return {
            "wolff_clusters_per_sweep": [None if v is None else int(v) for v in clusters],
            "wolff_mean_cluster_size": per_control(self.mean_size[on], chain_ctrl[on],
                                                   n_ctrl, 2),
        }


def in_window(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Which control values lie inside the closed window (low, high)."""
    lo, hi = window
    return (values >= lo) & (values <= hi)

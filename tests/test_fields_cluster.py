"""Wolff cluster updates for XY and phi^4: exact small-lattice answers, agreement with the
local chains, and shorter autocorrelations near the transition.

The 2 x 2 periodic lattice is a ring of four sites with every bond doubled, so its
exact answers come from Bessel sums (XY) and a transfer matrix (phi^4). Error bars come
from independent chains; each check is a z-test with a small absolute margin.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import iv

from betavae_fields.montecarlo import sample_phi4, sample_xy
from betavae_fields.montecarlo.phi4 import Phi4Chains
from betavae_fields.montecarlo.xy import XYChains


def chain_z(samples: np.ndarray, expected: float, margin: float) -> None:
    """samples (chains, time): the mean is expected within 4 chain-mean errors + margin."""
    means = samples.mean(axis=1)
    se = means.std(ddof=1) / math.sqrt(means.size)
    assert abs(means.mean() - expected) <= 4 * se + margin, (means.mean(), se, expected)


def xy_ring_exact(beta: float) -> tuple[float, float]:
    """(energy per site, <|m|^2>) of the 2 x 2 periodic XY lattice: a 4-ring, coupling 2 beta.

    exp(K cos x) = sum_n I_n(K) e^{inx}, so Z ~ sum_n I_n^4 and the correlation of two
    spins k ring steps apart is sum_n I_n^(4-k) I_(n+1)^k / Z.
    """
    n = np.arange(-40, 41)
    i0, i1 = iv(n, 2 * beta), iv(n + 1, 2 * beta)
    z = np.sum(i0**4)
    c1, c2 = np.sum(i0**3 * i1) / z, np.sum(i0**2 * i1**2) / z
    energy = -2.0 * 4 * c1 / 4  # H = -2 sum over the 4 ring bonds
    m2 = (4 + 2 * (4 * c1 + 2 * c2)) / 16
    return energy, m2


def phi4_ring_exact(kappa: float, lam: float) -> tuple[float, float]:
    """(action per site, <m^2>) of the 2 x 2 periodic phi^4 lattice by a transfer matrix
    on a fine grid: a 4-ring with hopping 4 kappa phi_i phi_j between ring neighbours."""
    x = np.linspace(-3.0, 3.0, 401)
    h = x[1] - x[0]
    w = np.exp(-x * x - lam * (x * x - 1) ** 2)
    t = np.sqrt(w)[:, None] * np.exp(4 * kappa * np.outer(x, x)) * np.sqrt(w)[None, :] * h
    t /= np.abs(t).max()
    t2 = t @ t
    z = np.trace(t2 @ t2)
    X = np.diag(x)
    c1 = np.trace(X @ t @ X @ t @ t2) / z
    c2 = np.trace(X @ t2 @ X @ t2) / z
    local = np.trace(np.diag(x * x + lam * (x * x - 1) ** 2) @ t2 @ t2) / z
    phi2 = np.trace(np.diag(x * x) @ t2 @ t2) / z
    action = -4 * kappa * c1 + local  # per site: 2 bonds per site, each -2 kappa phi phi
    m2 = (4 * phi2 + 8 * c1 + 4 * c2) / 16
    return float(action), float(m2)


def record(chains, sweep, n_sweeps: int, burn: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(energy, m^2) of every chain after each of n_sweeps sweeps, after a burn-in."""
    for _ in range(burn):
        sweep()
    energy, m2 = np.empty((2, chains.beta.size if hasattr(chains, "beta") else
                           chains.kappa.size, n_sweeps))
    for t in range(n_sweeps):
        sweep()
        e, m = chains.observables()
        energy[:, t], m2[:, t] = e, m * m
    return energy, m2


@pytest.mark.parametrize("T", [0.7, 1.5])
def test_xy_wolff_alone_matches_the_exact_2x2_lattice(T):
    """Wolff reflections alone are ergodic for XY: no local move helps them here."""
    n = 64
    rng = np.random.default_rng(0)
    theta = rng.uniform(-np.pi, np.pi, (n, 2, 2)).astype(np.float32)
    chains = XYChains(theta, np.full(n, 1.0 / T), 0, rng, np.ones(n, bool), np.zeros(n, int))
    energy, m2 = record(chains, chains.wolff_sweep, 1500)
    exact_e, exact_m2 = xy_ring_exact(1.0 / T)
    chain_z(energy, exact_e, 0.003)
    chain_z(m2, exact_m2, 0.003)


def test_phi4_wolff_embedding_keeps_the_exact_2x2_distribution():
    """Metropolis plus four embedded clusters per sweep: a wrong bond probability in the
    clusters would move <m^2> and the action away from the transfer-matrix values."""
    n, kappa, lam = 64, 0.35, 1.0
    rng = np.random.default_rng(1)
    chains = Phi4Chains(np.ones((n, 2, 2), np.float32), np.full(n, kappa), lam, rng,
                        np.ones(n, bool), np.zeros(n, int))
    chains.wolff.clusters[:] = 4
    energy, m2 = record(chains, chains.sweep, 1000)
    exact_s, exact_m2 = phi4_ring_exact(kappa, lam)
    chain_z(energy, exact_s, 0.003)
    chain_z(m2, exact_m2, 0.003)


def chain_mean(ens, values: np.ndarray) -> tuple[float, float]:
    means = np.array([values[ens.chain == c].mean() for c in np.unique(ens.chain)])
    return float(values.mean()), float(means.std(ddof=1) / math.sqrt(means.size))


@pytest.mark.parametrize("model", ["phi4", "xy"])
def test_cluster_chain_reproduces_the_local_chain_and_decorrelates_faster(model):
    """Near the transition (phi^4 kappa = 0.34 ~ kappa_c, XY T = 1.0 just above T_BKT)
    the mixed chain's <E> and <|m|> match the local chain's, with a shorter tau."""
    sample = {"phi4": lambda w: sample_phi4(8, [0.34], 384, seed=3, chains_per_kappa=16,
                                            wolff_window=w),
              "xy": lambda w: sample_xy(8, [1.0], 384, seed=3, chains_per_temperature=16,
                                        wolff_window=w)}[model]
    local, cluster = sample((0.0, 0.0)), sample((0.3, 1.5))
    assert "wolff" not in local.params["update"][0] and "wolff" in cluster.params["update"][0]
    assert cluster.params["wolff_clusters_per_sweep"][0] >= 1
    for values in (lambda e: e.energy, lambda e: np.abs(e.magnetization)):
        (a, sa), (b, sb) = chain_mean(local, values(local)), chain_mean(cluster, values(cluster))
        assert abs(a - b) <= 4 * math.hypot(sa, sb) + 0.005, (a, sa, b, sb)
    (tau_local,), (tau_cluster,) = local.tau.values(), cluster.tau.values()
    assert tau_cluster < 0.5 * tau_local, (tau_local, tau_cluster)

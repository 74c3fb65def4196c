"""Tests for betavae_core.information: cases whose answer is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import logsumexp

import betavae_core.information as info
from betavae_core.information import (
    active_unit_counts,
    active_units,
    aggregate_covariance,
    gaussian_total_correlation,
    kl_per_dim,
    mutual_information,
    offdiag_mass,
    posterior_summary,
    total_correlation,
)


def _gaussian_tc(rho: float) -> float:
    return -0.5 * math.log(1.0 - rho**2)


# --------------------------------------------------------------------------- KL


def test_kl_standard_posterior_is_exactly_zero() -> None:
    kl = kl_per_dim(np.zeros((5, 3)), np.zeros((5, 3)))
    assert kl.shape == (3,)
    assert np.all(kl == 0.0)


def test_kl_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(64, 4)) * 2.0
    logvar = rng.normal(size=(64, 4))
    scale = np.array([1.0, 0.5, 2.0, 3.0])
    for prior_scale in (None, scale):
        ps = np.ones(4) if prior_scale is None else prior_scale
        q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar)))
        p = torch.distributions.Normal(torch.zeros(4, dtype=torch.float64), torch.tensor(ps))
        expected = torch.distributions.kl_divergence(q, p).mean(dim=0).numpy()
        np.testing.assert_allclose(kl_per_dim(mu, logvar, prior_scale), expected, rtol=1e-10)


def test_kl_anisotropic_prior() -> None:
    mu = np.zeros((3, 2))
    logvar = np.zeros((3, 2))
    kl = kl_per_dim(mu, logvar, prior_scale=np.array([1.0, 2.0]))
    # KL(N(0,1) || N(0,4)) = log 2 + 1/8 - 1/2
    np.testing.assert_allclose(kl, [0.0, math.log(2.0) + 0.125 - 0.5], atol=1e-15)
    # a posterior equal to the (anisotropic) prior costs nothing
    s = np.array([0.3, 4.0])
    same = kl_per_dim(np.zeros((2, 2)), np.tile(2 * np.log(s), (2, 1)), prior_scale=s)
    np.testing.assert_allclose(same, 0.0, atol=1e-12)
    # a wider prior makes the same mean offset cheaper
    mu = np.full((1, 2), 1.5)
    kl = kl_per_dim(mu, np.zeros((1, 2)), prior_scale=np.array([1.0, 3.0]))
    assert kl[1] < kl[0]


# --------------------------------------------------------------------------- active units


def test_active_units_counts_varying_means_only() -> None:
    rng = np.random.default_rng(1)
    mu = np.column_stack(
        [
            rng.normal(size=500),  # active
            np.full(500, 0.7),  # constant: inactive
            1e-3 * rng.normal(size=500),  # tiny variation: inactive
            3.0 * rng.normal(size=500),  # active
        ]
    )
    count, variance = active_units(mu)
    assert count == 2
    assert variance.shape == (4,)
    assert variance[1] < 1e-20
    np.testing.assert_allclose(variance, mu.var(axis=0))
    assert active_units(mu, threshold=100.0)[0] == 0


# --------------------------------------------------------------------------- covariance


def test_aggregate_covariance_matches_samples() -> None:
    rng = np.random.default_rng(2)
    n = 200_000
    a = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.2, 0.5]])
    mu = rng.normal(size=(n, 3)) @ a.T
    logvar = rng.uniform(-2.0, 0.5, size=(n, 3))
    z = mu + np.exp(0.5 * logvar) * rng.normal(size=(n, 3))
    cov = aggregate_covariance(mu, logvar)
    assert cov.shape == (3, 3)
    np.testing.assert_allclose(cov, cov.T)
    np.testing.assert_allclose(cov, np.cov(z, rowvar=False), atol=0.02)


def test_offdiag_mass_independent_and_perfectly_correlated() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(100_000, 4)) * np.array([1.0, 10.0, 0.1, 3.0])
    assert offdiag_mass(np.cov(z, rowvar=False)) < 1e-3
    v = np.array([1.0, -2.0, 30.0])
    assert offdiag_mass(np.outer(v, v)) == pytest.approx(1.0)
    assert offdiag_mass(np.eye(5) * 7.0) == 0.0


def test_offdiag_mass_definition_scale_free_and_excludes_zero_variance() -> None:
    rho = 0.6
    corr = np.array([[1.0, rho], [rho, 1.0]])
    # mean squared off-diagonal correlation: (2 rho^2) / (2 * 1)
    assert offdiag_mass(corr) == pytest.approx(rho**2)
    scale = np.diag([100.0, 0.01])
    assert offdiag_mass(scale @ corr @ scale) == pytest.approx(rho**2)
    padded = np.zeros((3, 3))
    padded[:2, :2] = corr
    assert offdiag_mass(padded) == pytest.approx(rho**2)
    assert offdiag_mass(np.diag([1.0, 0.0])) == 0.0


def test_gaussian_total_correlation_known_values() -> None:
    assert gaussian_total_correlation(np.diag([1.0, 5.0, 0.2])) == pytest.approx(0.0, abs=1e-12)
    rho = 0.7
    s = np.array([2.0, 0.5])
    cov = np.array([[1.0, rho], [rho, 1.0]]) * np.outer(s, s)
    assert gaussian_total_correlation(cov) == pytest.approx(_gaussian_tc(rho), rel=1e-12)
    padded = np.zeros((3, 3))
    padded[1:, 1:] = cov
    assert gaussian_total_correlation(padded) == pytest.approx(_gaussian_tc(rho), rel=1e-12)
    assert gaussian_total_correlation(np.ones((2, 2))) == math.inf
    assert gaussian_total_correlation(np.array([[4.0]])) == 0.0


# --------------------------------------------------------------------------- mixture estimates


def _brute_force(mu: np.ndarray, logvar: np.ndarray, seed: int) -> tuple[float, float]:
    """Unchunked reference for (TC, MI) with the same draw as the module."""
    rng = np.random.default_rng(seed)
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    var = np.exp(logvar)[None]
    logp = -0.5 * (np.log(2 * np.pi * var) + (z[:, None, :] - mu[None]) ** 2 / var)
    m = mu.shape[0]
    joint = logsumexp(logp.sum(2), axis=1) - math.log(m)
    marg = (logsumexp(logp, axis=1) - math.log(m)).sum(1)
    cond = logp.sum(2)[np.arange(m), np.arange(m)]
    return float(np.mean(joint - marg)), float(np.mean(cond - joint))


def test_mixture_estimates_match_brute_force_with_tiny_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(4)
    mu = rng.normal(size=(150, 3))
    logvar = rng.uniform(-3.0, 0.0, size=(150, 3))
    tc_ref, mi_ref = _brute_force(mu, logvar, seed=7)
    monkeypatch.setattr(info, "_CHUNK_BYTES", 1)  # one row per chunk
    assert total_correlation(mu, logvar, seed=7) == pytest.approx(tc_ref, rel=1e-10)
    assert mutual_information(mu, logvar, seed=7) == pytest.approx(mi_ref, rel=1e-10)


def test_total_correlation_independent_latents_near_zero() -> None:
    rng = np.random.default_rng(5)
    mu = rng.normal(size=(2000, 2))
    logvar = np.full_like(mu, 2 * math.log(0.3))
    tc = total_correlation(mu, logvar, seed=11)
    assert abs(tc) < 0.05


def test_total_correlation_correlated_latents_matches_gaussian() -> None:
    rng = np.random.default_rng(6)
    rho = 0.8
    mu = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=2000)
    logvar = np.full_like(mu, 2 * math.log(0.1))
    tc = total_correlation(mu, logvar, seed=12)
    assert tc == pytest.approx(_gaussian_tc(rho), rel=0.2)


def test_total_correlation_identical_posteriors_is_zero_and_bound_holds() -> None:
    assert total_correlation(np.zeros((50, 3)), np.zeros((50, 3))) == pytest.approx(0, abs=1e-12)
    # d copies of a well-separated code saturate the (d - 1) log M bound
    m, d = 300, 3
    mu = np.repeat(10.0 * np.arange(m)[:, None], d, axis=1)
    logvar = np.full((m, d), 2 * math.log(0.01))
    tc = total_correlation(mu, logvar)
    assert tc <= (d - 1) * math.log(m) + 1e-9
    assert tc == pytest.approx((d - 1) * math.log(m), rel=1e-3)


def test_mutual_information_prior_posteriors_is_zero() -> None:
    mi = mutual_information(np.zeros((400, 4)), np.zeros((400, 4)))
    assert mi == pytest.approx(0.0, abs=1e-12)


def test_mutual_information_narrow_separated_near_log_m() -> None:
    m = 500
    mu = np.column_stack([5.0 * np.arange(m), -3.0 * np.arange(m)])
    logvar = np.full((m, 2), 2 * math.log(0.05))
    mi = mutual_information(mu, logvar)
    assert mi == pytest.approx(math.log(m), rel=0.1)
    assert mi <= math.log(m) + 1e-9


def test_mutual_information_subsamples_and_respects_bounds() -> None:
    rng = np.random.default_rng(8)
    mu = rng.normal(size=(3000, 3))
    logvar = rng.uniform(-4.0, 0.0, size=(3000, 3))
    mi = mutual_information(mu, logvar, n_samples=500, seed=1)
    assert 0.0 < mi <= math.log(500) + 1e-9
    assert mi <= kl_per_dim(mu, logvar).sum()
    assert mi == mutual_information(mu, logvar, n_samples=500, seed=1)  # deterministic


# --------------------------------------------------------------------------- summary


def test_posterior_summary_is_json_ready_and_consistent() -> None:
    rng = np.random.default_rng(9)
    mu = np.column_stack([rng.normal(size=400), np.zeros(400)])
    logvar = np.column_stack([np.full(400, -3.0), np.zeros(400)])
    summary = posterior_summary(mu, logvar, n_samples=300, seed=3)
    assert set(summary) == {
        "rate",
        "kl_per_dim",
        "active_units",
        "active_units_variance",
        "active_unit_variance",
        "offdiag_mass",
        "total_correlation",
        "total_correlation_gaussian",
        "mutual_information",
        "mutual_information_bound",
        "mutual_information_upper_bound",
    }
    json.loads(json.dumps(summary))
    assert summary["rate"] == pytest.approx(sum(summary["kl_per_dim"]))
    assert summary["kl_per_dim"][1] == 0.0
    assert summary["active_units"] == summary["active_units_variance"] == 1
    assert summary["mutual_information_bound"] == pytest.approx(math.log(300))
    assert summary["mutual_information_upper_bound"] == summary["rate"]
    assert summary["mutual_information"] == mutual_information(mu, logvar, 300, seed=3)
    assert summary["total_correlation"] == total_correlation(mu, logvar, 300, seed=3)
    cov = aggregate_covariance(mu, logvar)
    assert summary["offdiag_mass"] == offdiag_mass(cov)
    assert summary["total_correlation_gaussian"] == gaussian_total_correlation(cov)


# --------------------------------------------------------------------------- validation


def test_bad_inputs_name_argument_and_row() -> None:
    mu = np.zeros((6, 2))
    logvar = np.zeros((6, 2))
    bad_mu = mu.copy()
    bad_mu[3, 1] = np.nan
    bad_mu[5, 0] = np.nan
    with pytest.raises(ValueError, match=r"mu.*row is 3"):
        kl_per_dim(bad_mu, logvar)
    bad_lv = logvar.copy()
    bad_lv[4, 0] = np.inf
    with pytest.raises(ValueError, match=r"logvar.*row is 4"):
        mutual_information(mu, bad_lv)
    with pytest.raises(ValueError, match=r"mu.*row is 3"):
        active_units(bad_mu)
    with pytest.raises(ValueError, match="same shape"):
        aggregate_covariance(mu, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="mu must be 2-D"):
        total_correlation(np.zeros(6), np.zeros(6))
    with pytest.raises(ValueError, match="prior_scale"):
        kl_per_dim(mu, logvar, prior_scale=np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="prior_scale"):
        kl_per_dim(mu, logvar, prior_scale=np.ones(3))
    bad_cov = np.eye(3)
    bad_cov[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"cov.*row is 2"):
        offdiag_mass(bad_cov)
    with pytest.raises(ValueError, match="square"):
        gaussian_total_correlation(np.zeros((2, 3)))


def test_strict_rule_drops_a_dimension_that_varies_but_carries_no_rate() -> None:
    """Dimension 1's posterior mean wanders (Var E[z|x] = 0.04 > 0.01) while its
    posterior stays near the prior, so it spends ~0.03 nats: the variance rule counts
    it, the strict rule (KL > 0.1 nats as well) does not. Dimension 0 carries ~1.5 nats."""
    rng = np.random.default_rng(0)
    n = 4000
    mu = np.column_stack([rng.normal(size=n), 0.2 * rng.choice([-1.0, 1.0], size=n)])
    # var 0.9 per posterior: KL = 0.5 (0.9 + 0.04 - 1 - log 0.9) = 0.0227 nats
    logvar = np.column_stack([np.full(n, -3.0), np.full(n, np.log(0.9))])
    kl = kl_per_dim(mu, logvar)
    assert 0.01 < kl[1] < 0.05 and kl[0] > 1.0
    _, activity = active_units(mu)
    assert activity[1] == pytest.approx(0.04, rel=0.01)
    assert active_units(mu)[0] == 2
    assert active_units(mu, kl_per_dim=kl)[0] == 1
    assert active_unit_counts(mu, kl) == {"active_units": 1, "active_units_variance": 2}
    summary = posterior_summary(mu, logvar, n_samples=200)
    assert (summary["active_units"], summary["active_units_variance"]) == (1, 2)
    # a KL given from elsewhere (e.g. a Monte Carlo KL) replaces the closed form
    given = posterior_summary(mu, logvar, n_samples=200, kl=np.array([0.05, 0.5]))
    assert given["active_units"] == 1 and given["kl_per_dim"] == [0.05, 0.5]
    assert given["rate"] == pytest.approx(0.55)

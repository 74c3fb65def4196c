"""Evaluations of betavae_fields on planted latents: the order-parameter warning and the
one-size check (no training: the latents are planted, the data is small Monte Carlo)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import betavae_core as bv
from betavae_core import ConfigError
from betavae_fields import evaluations
from betavae_fields.datasets import ensemble_data
from betavae_fields.montecarlo import sample_ising


@pytest.fixture(scope="module")
def ising_data() -> bv.DomainData:
    ens = sample_ising(8, [1.6, 2.0, 2.3, 2.7, 3.2], 40, seed=0, n_therm=40, n_pilot=40)
    return ensemble_data(ens, "test")


def planted_run(data, monkeypatch, mu: np.ndarray, order_dim: int) -> bv.RunContext:
    """A run whose encoder returns `mu` and whose most informative latent is order_dim."""
    monkeypatch.setattr(bv, "encode", lambda model, d: (mu, np.zeros_like(mu)))
    monkeypatch.setattr(evaluations, "order_latent", lambda model, m, lv, cov=None: order_dim)
    return bv.RunContext(model=None, heldout=data, split="all")


def latents(data, rng) -> np.ndarray:
    """z0 follows the energy, z1 the signed magnetisation (plus a little noise)."""
    energy = data.factors[:, data.factor_names.index("energy")]
    m = data.factors[:, data.factor_names.index("magnetization")]
    noise = 0.05 * rng.standard_normal((len(energy), 2))
    return np.stack([energy, m], axis=1) + noise


def test_order_parameter_warns_when_the_top_latent_learned_the_energy(ising_data, monkeypatch):
    mu = latents(ising_data, np.random.default_rng(0))
    run = planted_run(ising_data, monkeypatch, mu, order_dim=0)
    with pytest.warns(evaluations.LatentWarning) as caught:
        result = evaluations.order_parameter(run)
    message = str(caught[0].message)
    assert "z0 correlates more with the energy" in message
    assert "z1 follows |m| best" in message and "spin_multiscale" in message
    assert result.metrics["warning"] == message
    r = result.metrics["correlation"]
    assert abs(r["energy"][0]) > abs(r["abs_magnetization"][0])


def test_order_parameter_is_quiet_when_the_top_latent_follows_m(ising_data, monkeypatch):
    mu = latents(ising_data, np.random.default_rng(1))
    run = planted_run(ising_data, monkeypatch, mu, order_dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", evaluations.LatentWarning)
        result = evaluations.order_parameter(run)
    assert result.metrics["warning"] is None
    assert result.metrics["best_latent"]["abs_magnetization"] == 1


def test_critical_point_refuses_mixed_sizes_naming_them(ising_data, monkeypatch):
    mixed = bv.DomainData(
        x=ising_data.x, domain=ising_data.domain, likelihood=ising_data.likelihood,
        architecture=ising_data.architecture, factors=ising_data.factors,
        factor_names=ising_data.factor_names, factor_discrete=ising_data.factor_discrete,
        metadata={**ising_data.metadata,
                  "L": np.where(np.arange(len(ising_data)) % 2 == 0, 8, 16)},
        attrs=ising_data.attrs)
    run = planted_run(mixed, monkeypatch, latents(mixed, np.random.default_rng(2)), 1)
    with pytest.raises(ConfigError, match=r"critical_point works on configurations of one "
                                          r"lattice size; this data has L = 8, 16"):
        evaluations.critical_point(run)


def test_no_warning_when_the_latent_follows_neither():
    table = {"energy": [0.07, 0.01], "abs_magnetization": [0.05, 0.2]}
    assert evaluations.energy_warning(table, 0) is None
    table = {"energy": [0.9, 0.01], "abs_magnetization": [0.5, 0.2]}
    assert "z0 correlates more with the energy (|r| = 0.90)" in evaluations.energy_warning(
        table, 0)


def test_order_values_keep_the_spin_flip_odd_part(ising_data, monkeypatch):
    """A latent m + 3 e + 1 (e the energy per site, even under x -> -x): its odd part is
    m again, so its Binder cumulant at high T is m's, not the 2/3 an offset gives."""
    def encode(model, d):
        x = d.x.double().numpy()
        m = x.mean(axis=(1, 2))
        e = -(x * (np.roll(x, 1, 1) + np.roll(x, 1, 2))).mean(axis=(1, 2))
        mu = np.stack([m + 3.0 * e + 1.0, e], axis=1)
        return mu, np.zeros_like(mu)

    monkeypatch.setattr(bv, "encode", encode)
    mu, _ = encode(None, ising_data)
    m = ising_data.factors[:, list(ising_data.factor_names).index("magnetization")]
    odd = evaluations.order_values(None, ising_data, mu, 0, batch_size=64)
    np.testing.assert_allclose(odd, m, atol=1e-6)
    hot = ising_data.metadata["temperature"] == 3.2

    def binder(v):
        return 1 - np.mean(v**4) / (3 * np.mean(v**2) ** 2)

    plain = mu[:, 0] - mu[:, 0].mean()
    assert abs(binder(odd[hot]) - binder(m[hot])) < 1e-6 and binder(plain[hot]) > 0.5
    xy = bv.DomainData(x=ising_data.x, domain=ising_data.domain,
                       attrs={**ising_data.attrs, "model": "xy"})
    np.testing.assert_allclose(evaluations.order_values(None, xy, mu, 0), plain)

"""XY's BKT point: the helicity-modulus estimator against known answers, the crossings and
the log extrapolation on planted curves, bad input, and the `bkt` evaluation end to end
on small Monte Carlo with a planted encoder (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import betavae_core as bv
from betavae_core import ConfigError, DataError
from betavae_fields import bkt
from betavae_fields.montecarlo import sample_xy, xy_observables
from betavae_fields.montecarlo.helicity import (
    HelicityCurve,
    bond_terms,
    helicity_curve,
    helicity_modulus,
)


@pytest.fixture(scope="module")
def cold_and_hot():
    """L = 8 at T = 0.1 (spin waves only) and T = 3 (disordered)."""
    return sample_xy(8, [0.1, 3.0], 60, seed=0, n_therm=60, n_pilot=60)


def test_aligned_spins_have_unit_stiffness():
    rng = np.random.default_rng(0)
    aligned = np.broadcast_to(rng.uniform(-np.pi, np.pi, (5, 1, 1)), (5, 6, 6))
    assert helicity_modulus(aligned, 0.3) == pytest.approx(1.0, abs=1e-12)


def test_low_temperature_matches_spin_wave_theory_and_high_t_vanishes(cold_and_hot):
    curve = helicity_curve(cold_and_hot.configs, cold_and_hot.control, n_boot=50)
    cold, hot = curve.value
    assert cold == pytest.approx(1 - 0.1 / 4, abs=0.01)  # Y = 1 - T/4 + O(T^2)
    assert abs(hot) < 0.05 and curve.error[1] < 0.05


def test_estimator_is_the_twist_curvature_of_the_free_energy(cold_and_hot):
    """Y_x = (1/N) d^2 F / d delta^2, F(delta) = -T ln <exp(-(E(delta) - E) / T)>, each
    x-bond twisted by delta: a finite difference of the reweighted free energy."""
    t = 1.0
    ens = sample_xy(8, [t], 40, seed=3, n_therm=40, n_pilot=40)
    theta = np.concatenate([ens.configs, -ens.configs])  # mirror images: <sum sin> = 0
    diff = (theta - np.roll(theta, -1, axis=2)).astype(np.float64)

    def free_energy(delta: float) -> float:
        d_e = -(np.cos(diff - delta) - np.cos(diff)).sum(axis=(1, 2))
        return -t * math.log(np.mean(np.exp(-d_e / t)))

    h = 1e-3
    curvature = (free_energy(h) + free_energy(-h) - 2 * free_energy(0.0)) / h**2 / 64
    cos, sin = bond_terms(theta)
    y_x = (cos[:, 0].mean() - (sin[:, 0] ** 2).mean() / t) / 64
    assert curvature == pytest.approx(y_x, abs=1e-3)
    assert 0.2 < y_x < 0.9  # a non-trivial value at T = 1


def test_jump_crossing_finds_a_planted_root_and_reports_none_out_of_range():
    t = np.linspace(0.8, 1.1, 13)
    value = 2 * 0.95 / np.pi - 2.0 * (t - 0.95)  # meets 2T/pi exactly at 0.95
    rng = np.random.default_rng(0)
    reps = value + 1e-3 * rng.standard_normal((50, t.size))
    found = bkt.jump_crossing(HelicityCurve(16, t, value, np.full(t.size, 1e-3), reps))
    assert found.temperature == pytest.approx(0.95, abs=1e-9) and found.error < 0.01
    above = bkt.jump_crossing(HelicityCurve(16, t, value + 1.0, t * 0, reps + 1.0))
    assert above.temperature is None and "above the highest" in above.note


def test_crossing_needs_enough_temperatures():
    t = np.array([0.8, 0.9, 1.0])
    with pytest.raises(DataError, match="at least 4 temperatures"):
        bkt.jump_crossing(HelicityCurve(8, t, 1 - t, t * 0, np.tile(1 - t, (5, 1))))


def test_extrapolation_recovers_a_planted_t_bkt_and_needs_three_sizes():
    found = [bkt.Crossing((L,), 0.89 + 0.5 / math.log(L) ** 2, 1e-3) for L in (8, 16, 32)]
    fit = bkt.extrapolate_log(found)
    assert fit.t_bkt == pytest.approx(0.89, abs=1e-9) and fit.slope == pytest.approx(0.5)
    short = bkt.extrapolate_log(found[:2] + [bkt.Crossing((64,), None, None, "none")])
    assert short.t_bkt is None and "at 3 or more sizes" in short.note and "(64,)" in short.note
    with pytest.raises(ConfigError, match=r"at least 3 lattice sizes; got \[8, 16\]"):
        bkt.check_sizes("8,16", "bkt")


def test_eta_crossing_recovers_a_planted_power_law():
    """<o> = L^(-eta(T)/2) with eta = T / 3.6 (1/4 at T = 0.9)."""
    t = np.repeat(np.linspace(0.7, 1.1, 9), 30)
    sizes = np.concatenate([np.full(t.size, L) for L in (8, 16, 32)])
    temps = np.tile(t, 3)
    rng = np.random.default_rng(1)
    values = sizes ** (-temps / 3.6 / 2) * (1 + 0.002 * rng.standard_normal(temps.size))
    curves = bkt.mean_curves(values, temps, sizes, n_boot=40)
    found = bkt.eta_crossings(curves, "planted")
    assert [c.sizes for c in found] == [(8, 16), (8, 32), (16, 32)]
    assert all(c.temperature == pytest.approx(0.9, abs=0.01) for c in found)
    both = bkt.combine(found)
    assert both.temperature == pytest.approx(0.9, abs=0.01) and 0 < both.error < 0.01
    assert bkt.combine([bkt.Crossing((8, 16), None, None, "none")]).temperature is None


def test_tiling_keeps_the_physics_and_refuses_non_divisors():
    rng = np.random.default_rng(2)
    small = rng.uniform(-np.pi, np.pi, (3, 4, 4)).astype(np.float32)
    big = bkt.tile(small, 16)
    assert big.shape == (3, 16, 16)
    for a, b in zip(xy_observables(small), xy_observables(big), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ConfigError, match="each size must divide 16; got 6"):
        bkt.tile(rng.uniform(size=(1, 6, 6)), 16)


def test_bkt_evaluation_end_to_end_with_a_planted_encoder(monkeypatch, tmp_path):
    """An encoder that returns the magnetisation vector: the latent estimate must then
    equal Monte Carlo |m|'s, and the helicity crossings must all be found."""
    monkeypatch.setattr(bkt, "_ensembles", lambda sizes, temps, samples, seed: {
        L: sample_xy(L, temps, samples, seed=seed, n_therm=40, n_pilot=40) for L in sizes})

    def encode(model, data):
        x = data.x.double().numpy()
        mu = np.stack([np.cos(x).mean(axis=(1, 2)), np.sin(x).mean(axis=(1, 2))], axis=1)
        return mu, np.zeros_like(mu)

    monkeypatch.setattr(bv, "encode", encode)
    monkeypatch.setattr(bkt, "decoded_magnetization", lambda model, mu: np.hypot(*mu.T))
    heldout = bv.DomainData(x=np.zeros((2, 16, 16), np.float32), domain="fields",
                            attrs={"model": "xy", "L": 16})
    assert bkt.is_xy(heldout)
    result = bkt.bkt(bv.RunContext(model=None, heldout=heldout, split="all"),
                     t_min=0.5, t_max=1.7, n_temperatures=5, samples=24, n_boot=30)
    m = result.metrics
    assert m["sizes"] == [4, 8, 16]
    assert all(c["temperature"] is not None for c in m["helicity_crossings"])
    for a, b in zip(m["latent_crossings"], m["mc_magnetization_crossings"], strict=True):
        assert a["sizes"] == b["sizes"] and a["temperature"] == pytest.approx(b["temperature"])
    assert m["latent_estimate"] == m["combined"]["latent"]["temperature"]
    assert m["combined"]["latent"]["sizes"] == [4, 8, 16]
    assert "bkt" in result.figures
    run = bv.RunContext(model=None, heldout=heldout, split="all")
    with pytest.raises(ConfigError, match="at least 4 temperatures"):
        bkt.bkt(run, n_temperatures=3)
    with pytest.raises(ConfigError, match="readout must be one of"):
        bkt.bkt(run, readout="phase")
    with pytest.raises(ConfigError, match="each size must divide 16; got 32"):
        bkt.bkt(run, sizes="8,16,32")


def test_latent_norm_needs_two_latents():
    with pytest.raises(ConfigError, match="latent_dim=1. Train with latent_dim=2"):
        bkt.latent_norm(None, np.zeros((4, 1)), np.zeros((4, 1)))


def test_tiled_dataset_holds_every_size_at_the_models_side(monkeypatch):
    from betavae_fields import datasets
    from betavae_fields.datasets import ensemble_data

    def fake_xy2d(L, t_min, t_max, n_temperatures, samples, seed):
        ens = sample_xy(L, list(np.linspace(t_min, t_max, n_temperatures)), samples,
                        seed=seed, n_therm=10, n_pilot=10)
        return ensemble_data(ens, "test")

    monkeypatch.setattr(datasets, "load_xy2d", fake_xy2d)
    data = bkt.load_xy2d_tiled(L=16, n_temperatures=2, samples=4)
    assert data.x.shape == (24, 16, 16) and data.attrs["L"] == 16
    assert sorted(set(data.metadata["L"].tolist())) == [4, 8, 16]
    _, m = xy_observables(data.x.numpy())  # tiling kept each item's |m|
    np.testing.assert_allclose(m, data.factors[:, 3], atol=1e-5)
    with pytest.raises(ConfigError, match="needs L divisible by 8 and >= 16; got L = 12"):
        bkt.load_xy2d_tiled(L=12)

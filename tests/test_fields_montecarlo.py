"""Monte Carlo generators of betavae_fields: exact physics, determinism, input checks, cache.

Kept small (L <= 16, a few hundred samples): the whole file runs in seconds. Error bars
come from independent chains (`Ensemble.chain`), so each check is a z-test with a small
absolute margin for the finite-size corrections the tests do not model.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, signal

from betavae_core import ConfigError, DataError
from betavae_fields import cache
from betavae_fields.montecarlo import (
    TC_ISING,
    Ensemble,
    integrated_autocorr_time,
    ising_observables,
    metropolis_reference,
    onsager_energy,
    onsager_magnetization,
    phi4_observables,
    sample_ising,
    sample_phi4,
    sample_xy,
    xy_observables,
)
from betavae_fields.montecarlo.blocked import from_blocked, neighbour_sum, to_blocked
from betavae_fields.montecarlo.xy import XYChains


def chain_mean(ens: Ensemble, control: float, values: np.ndarray) -> tuple[float, float]:
    """Mean of values at one control value and its standard error from the chain means."""
    sel = ens.control == control
    x, chain = values[sel], ens.chain[sel]
    means = np.array([x[chain == c].mean() for c in np.unique(chain)])
    return float(x.mean()), float(means.std(ddof=1) / math.sqrt(means.size))


def assert_close(value: float, se: float, expected: float, margin: float, z: float = 4.0):
    assert abs(value - expected) <= z * se + margin, (value, se, expected)


@pytest.fixture(scope="module")
def ising16() -> Ensemble:
    """L = 16 far from Tc on both sides (Metropolis only: outside the Wolff window)."""
    return sample_ising(16, [1.5, 3.0], 256, seed=1, chains_per_temperature=16)


# --- Ising ---------------------------------------------------------------------------


def test_ising_energy_and_magnetisation_match_onsager(ising16):
    for T in (1.5, 3.0):
        mean, se = chain_mean(ising16, T, ising16.energy)
        assert_close(mean, se, float(onsager_energy(T)), margin=0.005)
    mean, se = chain_mean(ising16, 1.5, np.abs(ising16.magnetization))
    assert_close(mean, se, float(onsager_magnetization(1.5)), margin=0.005)


def test_ising_ensemble_layout(ising16):
    ens = ising16
    assert ens.model == "ising" and ens.control_name == "temperature"
    assert ens.configs.shape == (512, 16, 16) and ens.configs.dtype == np.int8
    assert set(np.unique(ens.configs)) == {-1, 1}
    np.testing.assert_array_equal(ens.control, np.repeat([1.5, 3.0], 256))
    assert ens.energy.shape == ens.magnetization.shape == (512,)
    energy, mag = ising_observables(ens.configs)
    np.testing.assert_allclose(ens.energy, energy)
    np.testing.assert_allclose(ens.magnetization, mag)
    assert set(ens.tau) == set(ens.spacing) == {1.5, 3.0}
    for T in (1.5, 3.0):
        assert ens.spacing[T] == max(1, math.ceil(2 * ens.tau[T]))
    assert ens.params["update"] == ["metropolis", "metropolis"]
    assert np.bincount(ens.chain[ens.control == 1.5]).tolist() == [16] * 16


def test_ising_both_signs_at_low_temperature():
    ens = sample_ising(8, [1.0], 32, seed=3, chains_per_temperature=8, n_therm=50, n_pilot=50)
    assert np.all(np.abs(ens.magnetization) > 0.8)
    assert (ens.magnetization > 0).any() and (ens.magnetization < 0).any()


def test_wolff_and_metropolis_agree_near_tc():
    runs = {}
    for name, window in (("wolff", (2.2, 2.4)), ("metropolis", (0.0, 0.0))):
        ens = sample_ising(8, [2.3], 512, seed=2, chains_per_temperature=16, wolff_window=window)
        assert ens.params["update"] == [name]
        runs[name] = ens
    assert runs["wolff"].params["wolff_clusters_per_sweep"][0] >= 1
    for values in (lambda e: e.energy, lambda e: np.abs(e.magnetization)):
        (a, sa), (b, sb) = (chain_mean(runs[k], 2.3, values(runs[k])) for k in runs)
        assert abs(a - b) <= 4 * math.hypot(sa, sb) + 0.005, (a, sa, b, sb)


@pytest.mark.parametrize("window", [(2.2, 2.4), (0.0, 0.0)], ids=["wolff", "metropolis"])
def test_small_lattice_matches_exact_enumeration(window):
    """L = 4 has 2^16 states: exact <E> and <|m|> at T = 2.3 by summing them all."""
    T = 2.3
    bits = (np.arange(2**16)[:, None] >> np.arange(16)) & 1
    energy, mag = ising_observables((2 * bits - 1).astype(np.int8).reshape(-1, 4, 4))
    weight = np.exp(-16 * (energy - energy.min()) / T)
    weight /= weight.sum()
    ens = sample_ising(4, [T], 1024, seed=5, chains_per_temperature=16, wolff_window=window)
    mean, se = chain_mean(ens, T, ens.energy)
    assert_close(mean, se, float(weight @ energy), margin=0.002)
    mean, se = chain_mean(ens, T, np.abs(ens.magnetization))
    assert_close(mean, se, float(weight @ np.abs(mag)), margin=0.002)


def test_wolff_sweep_flips_about_one_lattice():
    ens = sample_ising(16, [2.0, 2.269, 2.6], 16, seed=4, n_therm=60, n_pilot=40)
    sizes = ens.params["wolff_mean_cluster_size"]
    for k, size in zip(ens.params["wolff_clusters_per_sweep"], sizes, strict=True):
        assert 0.5 * 256 <= k * size <= 1.5 * 256
    assert sizes[0] > sizes[1] > sizes[2]  # ordered, critical, disordered


def test_seed_determinism():
    kwargs = dict(chains_per_temperature=2, n_therm=20, n_pilot=20, wolff_window=(2.0, 2.5))
    a = sample_ising(4, [1.5, 2.269, 4.0], 6, seed=7, **kwargs)
    b = sample_ising(4, [1.5, 2.269, 4.0], 6, seed=7, **kwargs)
    c = sample_ising(4, [1.5, 2.269, 4.0], 6, seed=8, **kwargs)
    np.testing.assert_array_equal(a.configs, b.configs)
    assert a.params == b.params and a.tau == b.tau
    assert not np.array_equal(a.configs, c.configs)
    x1 = sample_xy(4, [0.5], 4, seed=1, n_therm=20, n_pilot=20)
    x2 = sample_xy(4, [0.5], 4, seed=1, n_therm=20, n_pilot=20)
    np.testing.assert_array_equal(x1.configs, x2.configs)


def test_onsager_limits():
    np.testing.assert_allclose(onsager_energy([0.05, TC_ISING]), [-2.0, -math.sqrt(2)],
                               atol=1e-9)
    assert abs(float(onsager_energy(100.0)) + 2 * math.tanh(0.01)) < 1e-3
    np.testing.assert_allclose(onsager_magnetization([0.5, 3.0]), [1.0, 0.0], atol=1e-6)
    assert 0.0 < float(onsager_magnetization(TC_ISING - 0.01)) < 0.7
    with pytest.raises(ConfigError):
        onsager_energy(0.0)


def test_metropolis_reference_is_a_valid_chain():
    spins = metropolis_reference(8, 1.0, 30, seed=0)
    assert spins.shape == (8, 8) and spins.dtype == np.int8
    energy, _ = ising_observables(spins)
    assert energy[0] < -1.8  # ordered start stays ordered at T = 1


def test_ising_observables_on_float_configs():
    stripes = np.where(np.arange(4)[None, :] % 2 == 0, 1.0, -1.0) * np.ones((4, 4))
    energy, mag = ising_observables(np.stack([np.ones((4, 4)), stripes]))
    np.testing.assert_allclose(energy, [-2.0, 0.0])
    np.testing.assert_allclose(mag, [1.0, 0.0])
    with pytest.raises(DataError, match="-1 and \\+1"):
        ising_observables(np.zeros((4, 4)))


def test_blocked_layout_matches_rolled_lattice():
    rng = np.random.default_rng(0)
    for L in (2, 4, 6):
        x = rng.standard_normal((3, L, L))
        blocked = to_blocked(x)
        np.testing.assert_array_equal(from_blocked(blocked), x)
        rolled = sum(np.roll(x, d, axis=a) for d in (1, -1) for a in (1, 2))
        for p in (0, 1):
            for q in (0, 1):
                np.testing.assert_allclose(neighbour_sum(blocked, p, q),
                                           to_blocked(rolled)[:, p, q])


# --- XY and phi^4 --------------------------------------------------------------------


def test_xy_overrelaxation_conserves_energy():
    rng = np.random.default_rng(1)
    theta = rng.uniform(-np.pi, np.pi, (4, 8, 8)).astype(np.float32)
    chains = XYChains(theta, np.ones(4), overrelax=1, rng=rng)
    before = chains.observables()[0]
    for p, q in ((0, 0), (1, 1), (0, 1), (1, 0)):
        chains._reflect(p, q)
    after_angles = chains.states(np.arange(4))
    assert not np.allclose(after_angles, theta)
    np.testing.assert_allclose(xy_observables(after_angles)[0], before, atol=1e-5)


def test_xy_low_temperature_spin_waves():
    T = 0.2
    ens = sample_xy(8, [T], 128, seed=0, chains_per_temperature=8)
    assert ens.configs.dtype == np.float32
    assert ens.configs.min() >= -np.pi and ens.configs.max() < np.pi
    mean, se = chain_mean(ens, T, ens.energy)
    # equipartition: each of the N - 1 non-zero spin-wave modes carries T / 2
    assert abs((mean + 2.0) / (T / 2) - 1.0) < 0.05 + 4 * se / (T / 2)
    np.testing.assert_allclose(xy_observables(ens.configs)[0], ens.energy)
    assert 0.4 < ens.params["acceptance"][0] < 0.6


def test_phi4_decoupled_sites_match_quadrature():
    lam = 1.0
    ens = sample_phi4(8, [0.0], 128, seed=0, lam=lam)
    weight = lambda f: np.exp(-f * f - lam * (f * f - 1.0) ** 2)  # noqa: E731
    z = integrate.quad(weight, -np.inf, np.inf)[0]
    exact = integrate.quad(lambda f: f * f * weight(f), -np.inf, np.inf)[0] / z
    phi2 = (ens.configs.astype(np.float64) ** 2).mean(axis=(1, 2))
    mean, se = chain_mean(ens, 0.0, phi2)
    assert_close(mean, se, exact, margin=0.002)
    action, mag = phi4_observables(ens.configs, ens.control, lam)
    np.testing.assert_allclose(action, ens.energy)
    np.testing.assert_allclose(mag, ens.magnetization)
    assert ens.control_name == "kappa"


# --- autocorrelation -----------------------------------------------------------------


@pytest.mark.parametrize("a", [0.0, 0.5, 0.8])
def test_integrated_autocorr_time_of_ar1(a):
    rng = np.random.default_rng(0)
    series = signal.lfilter([1.0], [1.0, -a], rng.standard_normal((16, 4000)), axis=1)
    exact = (1 + a) / (2 * (1 - a))
    assert abs(integrated_autocorr_time(series) / exact - 1) < 0.15
    assert integrated_autocorr_time(np.ones(100)) == 0.5
    with pytest.raises(DataError):
        integrated_autocorr_time([1.0, np.nan, 2.0, 3.0])


# --- bad input -----------------------------------------------------------------------


def test_bad_temperature_is_named():
    with pytest.raises(ConfigError, match=r"temperatures\[1\] = -1\.0.*> 0"):
        sample_ising(8, [1.0, -1.0], 4)
    with pytest.raises(ConfigError, match=r"temperatures\[0\] = 0\.0"):
        sample_xy(8, [0.0], 4)
    with pytest.raises(ConfigError, match=r"kappas\[0\] = -0\.1"):
        sample_phi4(8, [-0.1], 4)


@pytest.mark.parametrize("L", [7, 1, 0, 2.0, "8"])
def test_bad_lattice_size(L):
    with pytest.raises(ConfigError, match="even" if L == 7 else "L must"):
        sample_ising(L, [2.0], 4)


def test_bad_counts():
    with pytest.raises(ConfigError, match="n_per_temperature"):
        sample_ising(8, [2.0], 0)
    with pytest.raises(ConfigError, match="wolff_window"):
        sample_ising(8, [2.0], 4, wolff_window=(3.0, 2.0))
    with pytest.raises(ConfigError, match="lam"):
        sample_phi4(8, [0.1], 4, lam=-1.0)


# --- cache ---------------------------------------------------------------------------


def _tiny(seed: int = 0, n: int = 4) -> Ensemble:
    return sample_ising(4, [1.5, 3.0], n, seed=seed, chains_per_temperature=2, n_therm=10,
                        n_pilot=10)


def _same(a: Ensemble, b: Ensemble) -> None:
    np.testing.assert_array_equal(a.configs, b.configs)
    np.testing.assert_array_equal(a.energy, b.energy)
    np.testing.assert_array_equal(a.chain, b.chain)
    assert a.tau == b.tau and a.spacing == b.spacing and a.params == b.params


def test_cache_round_trip_uses_the_env_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("BETAVAE_CACHE_DIR", str(tmp_path))
    assert cache.cache_dir() == tmp_path
    calls = []
    params = {"n": 4, "seed": 0}

    def make():
        calls.append(1)
        return _tiny()

    first = cache.cached_ensemble("ising-test", params, make)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = cache.cached_ensemble("ising-test", params, make)
    assert len(calls) == 1
    _same(first, second)
    assert second.configs.dtype == np.int8
    assert list(tmp_path.glob("*.tmp")) == []


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_damaged_cache_file_is_regenerated(tmp_path, damage):
    params = {"n": 4, "seed": 0}
    cache.cached_ensemble("ising-test", params, _tiny, directory=tmp_path)
    path = cache.cache_path("ising-test", params, tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # flip bytes inside the configs array, leaving the zip structure intact
        start = data.index(b"configs.npy") + 200
        data[start:start + 8] = bytes(b ^ 0xFF for b in data[start:start + 8])
    path.write_bytes(bytes(data))
    with pytest.warns(cache.CacheWarning, match="unreadable"):
        ens = cache.cached_ensemble("ising-test", params, _tiny, directory=tmp_path)
    _same(ens, _tiny())
    _same(cache.load_ensemble(path), ens)  # and the file was rewritten whole


def test_cache_file_from_other_params_is_regenerated(tmp_path):
    wanted, other = {"n": 4, "seed": 0}, {"n": 6, "seed": 5}
    cache.cached_ensemble("ising-test", other, lambda: _tiny(5, 6), directory=tmp_path)
    target = cache.cache_path("ising-test", wanted, tmp_path)
    cache.cache_path("ising-test", other, tmp_path).replace(target)
    with pytest.warns(cache.CacheWarning, match="other parameters.*n: stored 6, requested 4"):
        ens = cache.cached_ensemble("ising-test", wanted, _tiny, directory=tmp_path)
    _same(ens, _tiny())


def test_unwritable_cache_still_returns_the_ensemble(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(cache.CacheWarning, match="could not write"):
        ens = cache.cached_ensemble("ising-test", {"n": 4}, _tiny, directory=blocker)
    _same(ens, _tiny())

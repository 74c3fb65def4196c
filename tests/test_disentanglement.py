"""Disentanglement metrics on constructed cases whose answer is known, and the science
plugin's `disentanglement` evaluation on a fitted run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from betavae_core import ConfigError, RunContext, encode, evaluate, load_model, registry
from betavae_science.evaluations import factor_metrics
from betavae_science.metrics import dci, factorvae_score, mcc, mig, sap

N = 2000
DISCRETE = [True, True, False, False, False]


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    """Five independent factors: 3 and 6 categories, Gaussian, uniform, Gaussian."""
    rng = np.random.default_rng(0)
    return np.column_stack(
        [
            rng.integers(0, 3, N),
            rng.integers(0, 6, N),
            rng.normal(size=N),
            rng.uniform(size=N),
            rng.normal(size=N),
        ]
    ).astype(float)


@pytest.fixture(scope="module")
def gaussian() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(N, 5))


@pytest.fixture(scope="module")
def rotation() -> np.ndarray:
    # A fixed Haar-random orthogonal matrix; SAP/MIG of a random rotation vary with the draw
    # (for k = 5 the SAP median is ~0.3), so the seed is fixed for a deterministic test.
    q, r = np.linalg.qr(np.random.default_rng(2).normal(size=(5, 5)))
    return q * np.sign(np.diag(r))


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(N, 5))


# ----------------------------------------------------------------- aligned latents


def test_aligned_latents_score_high(factors: np.ndarray) -> None:
    z = factors.copy()
    m = mig(z, factors, discrete=DISCRETE)
    # Same bins for latent and factor give MI = H(factor); the other latents only add the
    # histogram bias (~(bins-1)^2 / 2n nats), so the gap stays close to 1.
    assert m["mig"] > 0.8
    assert len(m["mig_per_factor"]) == 5
    d = dci(z, factors, discrete=DISCRETE)
    assert d["disentanglement"] > 0.8
    assert d["completeness"] > 0.8
    assert d["informativeness"] > 0.9
    assert np.asarray(d["importance"]).shape == (5, 5)
    s = sap(z, factors, discrete=DISCRETE)
    assert s["sap"] > 0.5
    assert np.asarray(s["sap_matrix"]).shape == (5, 5)
    assert factorvae_score(z, factors, discrete=DISCRETE)["factorvae_score"] > 0.9
    assert mcc(z, factors)["mcc"] == pytest.approx(1.0, abs=1e-9)


def test_results_are_json_ready_and_deterministic(factors: np.ndarray) -> None:
    z = factors + 0.1 * np.random.default_rng(4).normal(size=factors.shape)
    for fn in (mig, dci, sap, factorvae_score):
        first = fn(z, factors, discrete=DISCRETE)
        assert json.dumps(first)
        assert fn(z, factors, discrete=DISCRETE) == first


def test_discrete_is_inferred_from_integer_factors(factors: np.ndarray) -> None:
    z = factors + 0.01 * np.random.default_rng(5).normal(size=factors.shape)
    assert dci(z, factors) == dci(z, factors, discrete=DISCRETE)
    assert sap(z, factors) == sap(z, factors, discrete=DISCRETE)


# ----------------------------------------------------------------- rotated latents


def test_rotation_lowers_mig_and_sap(gaussian: np.ndarray, rotation: np.ndarray) -> None:
    mixed = gaussian @ rotation
    aligned_mig = mig(gaussian, gaussian)["mig"]
    aligned_sap = sap(gaussian, gaussian)["sap"]
    assert aligned_mig > 0.8 and aligned_sap > 0.9
    assert mig(mixed, gaussian)["mig"] <= 0.5 * aligned_mig
    assert sap(mixed, gaussian)["sap"] <= 0.5 * aligned_sap
    assert mcc(mixed, gaussian)["mcc"] < 0.9


# ----------------------------------------------------------------- noise latents


def test_noise_latents_score_near_zero(factors: np.ndarray, noise: np.ndarray) -> None:
    assert mig(noise, factors, discrete=DISCRETE)["mig"] < 0.05
    assert sap(noise, factors, discrete=DISCRETE)["sap"] < 0.1
    assert mcc(noise, factors)["mcc"] < 0.15
    d = dci(noise, factors, discrete=DISCRETE)
    # Continuous factors give R^2 ~ 0; categorical ones give chance accuracy (1/3, 1/6).
    assert d["informativeness"] < 0.2
    assert d["disentanglement"] < 0.2


# ----------------------------------------------------------------- MCC


def test_mcc_recovers_permutation_and_sign(noise: np.ndarray) -> None:
    perm = np.array([3, 0, 4, 1, 2])
    signs = np.array([1.0, -1.0, 1.0, -1.0, -1.0])
    b = noise[:, perm] * signs * np.array([2.0, 0.5, 1.0, 3.0, 7.0])
    out = mcc(noise, b)
    assert out["mcc"] == pytest.approx(1.0, abs=1e-9)
    # Column j of b is column perm[j] of a, so a's column perm[j] pairs with b's column j.
    expected = sorted([int(perm[j]), j] for j in range(5))
    assert out["matching"] == expected
    np.testing.assert_allclose(out["correlations"], signs[np.argsort(perm)], atol=1e-9)


def test_mcc_spearman_is_invariant_to_monotone_maps(noise: np.ndarray) -> None:
    b = np.column_stack([np.exp(noise[:, 0]), noise[:, 1] ** 3, -np.tanh(noise[:, 2])])
    assert mcc(noise, b, method="spearman")["mcc"] == pytest.approx(1.0, abs=1e-9)
    assert mcc(noise, b, method="pearson")["mcc"] < 0.99
    out = mcc(noise, b, method="spearman")
    assert len(out["matching"]) == 3  # min(d1, d2) pairs
    assert out["matching"] == [[0, 0], [1, 1], [2, 2]]


# ----------------------------------------------------------------- edge cases


def test_collapsed_and_constant_columns(factors: np.ndarray) -> None:
    z = np.column_stack([factors, np.zeros(N)])
    assert factorvae_score(z, factors, discrete=DISCRETE)["active_dims"] == [0, 1, 2, 3, 4]
    assert dci(z, factors, discrete=DISCRETE)["disentanglement"] > 0.8
    f = np.column_stack([factors[:, :2], np.ones(N)])
    out = mig(factors[:, :2], f)
    assert out["mig_per_factor"][2] == 0.0 and out["mig"] > 0.8
    single = factors[:, 2:3]
    assert sap(single, single)["sap"] == pytest.approx(1.0)
    assert dci(single, single)["completeness"] == 1.0


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize("fn", [mig, dci, sap, factorvae_score])
def test_bad_inputs_name_the_argument(fn, factors: np.ndarray) -> None:
    z = factors.copy()
    z[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"latents.*row 7"):
        fn(z, factors)
    f = factors.copy()
    f[11, 0] = np.inf
    with pytest.raises(ValueError, match=r"factors.*row 11"):
        fn(factors, f)
    with pytest.raises(ValueError, match="latents"):
        fn(factors[:, 0], factors)
    with pytest.raises(ValueError, match="factors"):
        fn(factors, factors[:-1])
    with pytest.raises(ValueError, match="latents"):
        fn(factors[:1], factors[:1])
    with pytest.raises(ValueError, match="discrete"):
        fn(factors, factors, discrete=[True])


def test_mcc_bad_inputs(noise: np.ndarray) -> None:
    b = noise.copy()
    b[5] = np.nan
    with pytest.raises(ValueError, match=r"b.*row 5"):
        mcc(noise, b)
    with pytest.raises(ValueError, match="b"):
        mcc(noise, noise[:10])
    with pytest.raises(ValueError, match="a"):
        mcc(noise[0], noise)
    with pytest.raises(ValueError, match="method"):
        mcc(noise, noise, method="kendall")


# ----------------------------------------------------------------- the evaluation


@pytest.fixture
def science(fresh_plugins, monkeypatch):
    """A fresh host with only the core and the science plugin."""
    monkeypatch.setenv("BETAVAE_LOAD_PLUGINS", "science")


@pytest.fixture
def fitted(tiny_run):
    return load_model(tiny_run)


def test_disentanglement_evaluation_scores_the_posterior_means(science, fitted,
                                                               shapes_data) -> None:
    record = registry("evaluations").get("disentanglement")
    assert record.plugin == "science" and record.requires_factors
    assert record.options == {"max_items": 5000}
    entry = evaluate(fitted, shapes_data, names=["disentanglement"])["disentanglement"]
    assert entry["plugin"] == "science"
    assert entry["n_items"] == len(shapes_data)
    assert entry["factor_names"] == list(shapes_data.factor_names)
    for key in ("mig", "disentanglement", "completeness", "informativeness", "sap",
                "factorvae_score", "mcc"):
        assert 0.0 <= entry[key] <= 1.0 + 1e-9, key
    mu, _ = encode(fitted, shapes_data)
    discrete = list(shapes_data.factor_discrete)
    assert entry["mig"] == mig(mu, shapes_data.factors, discrete=discrete)["mig"]
    assert entry["mcc"] == mcc(mu, shapes_data.factors)["mcc"]
    assert json.dumps(entry)


def test_disentanglement_evaluation_max_items_draws_a_seeded_subset(science, fitted,
                                                                    shapes_data) -> None:
    def run(max_items):
        options = {"disentanglement": {"max_items": max_items}}
        return evaluate(fitted, shapes_data, names=["disentanglement"],
                        options=options)["disentanglement"]

    first = run(150)
    assert first["n_items"] == 150
    second = run(150)
    first.pop("seconds"), second.pop("seconds")
    assert second == first


def test_disentanglement_evaluation_refuses_bad_options(science, fitted,
                                                        shapes_data) -> None:
    with pytest.raises(ConfigError, match=r"no option\(s\) \['n_votes'\].*max_items"):
        evaluate(fitted, shapes_data, names=["disentanglement"],
                 options={"disentanglement": {"n_votes": 10}})
    for bad in (1, "many", 2.5, True):
        with pytest.raises(ConfigError, match="max_items must be an integer"):
            evaluate(fitted, shapes_data, names=["disentanglement"],
                     options={"disentanglement": {"max_items": bad}})


def test_disentanglement_evaluation_reads_only_the_heldout_data(fitted, shapes_data) -> None:
    def reload():
        raise AssertionError("the evaluation must not load the training split")

    run = RunContext(model=fitted, heldout=shapes_data, load_train=reload, seed=1)
    assert factor_metrics(run, max_items=100).metrics["n_items"] == 100

"""Experiment 4, identifiability, and the data it runs on.

The seed claimed that an anisotropic Gaussian prior makes the latents identifiable. Theory
says it cannot (N(0, Λ) is invariant under z' = Λ^½ R Λ^-½ z), while a prior conditioned
on an auxiliary variable that modulates the sources can (iVAE). The quick configuration
tests those directions; the full-size run (5 seeds, nonlinear mixing) is `slow`.
"""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

import betavae_core as bv
from betavae_science.architectures import build_ivae_mlp
from betavae_science.experiments import common
from betavae_science.experiments.identifiability import (
    DATASETS,
    PRIORS,
    chance_mcc,
    gap_test,
    identifiability,
    table,
)
from betavae_science.synthetic import segmented_sources, unit_marginals, without_covariates


# --------------------------------------------------------------------------- the data
def test_segments_modulate_the_sources_as_planted():
    data = segmented_sources(n_segments=4, per_segment=3000, n_sources=3, dim=8, seed=1)
    u = np.asarray(data.metadata["segment"])
    assert data.x.shape == (12000, 8) and data.factors.shape == (12000, 3)
    assert np.array_equal(data.covariates.numpy().argmax(1), u)
    assert data.covariates.numpy().sum(1).tolist() == [1.0] * 12000
    planted = np.asarray(data.attrs["segment_scales"])
    measured = np.array([data.factors[u == m].std(0) for m in range(4)])
    np.testing.assert_allclose(measured, planted, rtol=0.06)
    # Scale mixtures of Gaussians are heavy-tailed; the control's sources are Gaussian.
    kurt = ((data.factors - data.factors.mean(0)) ** 4).mean(0) / data.factors.var(0) ** 2 - 3
    control = segmented_sources(n_segments=4, per_segment=3000, n_sources=3, dim=8,
                                gaussian=True, seed=1)
    kurt_c = ((control.factors - control.factors.mean(0)) ** 4).mean(0) \
        / control.factors.var(0) ** 2 - 3
    assert kurt.min() > 0.5 and np.abs(kurt_c).max() < 0.15, (kurt, kurt_c)
    assert np.allclose(control.attrs["segment_scales"], 1.0)
    # Unit marginals: no second-order statistic singles out the sources' axes.
    np.testing.assert_allclose(data.factors.mean(0), 0.0, atol=0.05)
    np.testing.assert_allclose(np.cov(data.factors.T), np.eye(3), atol=0.06)


def test_unit_marginals_keep_the_modulation_and_fix_the_moments():
    rng = np.random.default_rng(3)
    means, scales = rng.normal(size=(7, 4)) + 2.0, np.exp(rng.uniform(-1, 1, size=(7, 4)))
    m, s = unit_marginals(means, scales)
    np.testing.assert_allclose(m.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose((m**2 + s**2).mean(0), 1.0)  # the mixture's variance
    np.testing.assert_allclose(s / s[0], scales / scales[0])  # ratios across segments kept
    np.testing.assert_allclose(m / s, (means - means.mean(0)) / scales)


def test_mixing_is_strongly_nonlinear_and_shared_across_draws():
    def linear_r2(layers):
        d = segmented_sources(per_segment=200, layers=layers, noise=0.0, seed=0)
        x, s = d.x.numpy(), d.factors
        return LinearRegression().fit(x, s).score(x, s)

    assert linear_r2(0) > 0.999  # no leaky-ReLU layer: a linear, injective map
    assert linear_r2(3) < 0.75  # three layers: a linear read-out misses a quarter or more
    a = segmented_sources(per_segment=50, seed=0)
    b = segmented_sources(per_segment=50, seed=1)
    again = segmented_sources(per_segment=50, seed=0)
    assert torch.equal(a.x, again.x) and not torch.equal(a.x, b.x)
    assert a.attrs["segment_scales"] == b.attrs["segment_scales"]  # one generative map


def test_bad_options_name_the_option():
    with pytest.raises(bv.ConfigError, match="n_sources"):
        segmented_sources(n_sources=1)
    with pytest.raises(bv.ConfigError, match="dim"):
        segmented_sources(n_sources=5, dim=3)
    with pytest.raises(bv.ConfigError, match="condition"):
        segmented_sources(condition=0.5)
    with pytest.raises(bv.ConfigError, match="scale_range"):
        segmented_sources(scale_range=(0.0, 3.0))
    with pytest.raises(bv.ConfigError, match="scale_range"):
        segmented_sources(scale_range=3.0)


def test_ivae_decoder_ignores_the_covariates_the_encoder_reads():
    request = bv.ArchitectureRequest(event_shape=(6,), latent_dim=2, params_per_element=2,
                                     covariate_dim=3, options={"hidden": [8]})
    encoder, decoder = build_ivae_mlp(request)
    torch.manual_seed(0)
    x, z = torch.randn(5, 6), torch.randn(5, 2)
    u1, u2 = torch.eye(3)[[0, 1, 2, 0, 1]], torch.eye(3)[[2, 2, 1, 1, 0]]
    assert torch.equal(decoder(z, u1), decoder(z, u2))
    assert not torch.allclose(encoder(x, u1).mu, encoder(x, u2).mu)
    assert without_covariates(segmented_sources(per_segment=10)).covariates is None


def test_chance_level_is_that_of_a_random_rotation():
    # A random rotation of 2 sources matches them with E|cos θ| over the better pairing:
    # θ uniform, max(|cos θ|, |sin θ|) averages 2√2/π ≈ 0.900.
    assert chance_mcc(2, draws=400)["mean"] == pytest.approx(2 * np.sqrt(2) / np.pi, abs=0.02)
    assert chance_mcc(6)["mean"] < chance_mcc(3)["mean"]


def test_gap_test_is_two_standard_errors_of_the_difference():
    # sample s.d. 1 in each arm of 3 -> s.e. 1/sqrt(3) each, sqrt(2/3) for the difference
    wide = gap_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert wide["gap"] == pytest.approx(1.0) and wide["se"] == pytest.approx(np.sqrt(2 / 3))
    assert wide["within_noise"]  # 1 <= 2 * 0.816
    narrow = gap_test([1.0, 1.1, 0.9], [0.0, 0.1, -0.1])  # same gap, a tenth of the noise
    assert narrow["z"] == pytest.approx(1.0 / (0.1 * np.sqrt(2 / 3)))
    assert not narrow["within_noise"]


# --------------------------------------------------------------------------- the experiment
@pytest.fixture(scope="module")
def result():
    return identifiability(quick=True)


def _means(result, name):
    return {p: a["mcc_vs_sources_summary"]["mean"] for p, a in result.metrics[name].items()}


def test_conditional_prior_identifies_where_gaussian_priors_do_not(result):
    main = _means(result, "nonlinear_ica")
    assert main["conditional"] > max(main["isotropic"], main["anisotropic"]) \
        + result.metrics["margin"], table(result)
    assert result.checks["conditional_beats_gaussian"]
    chance = result.metrics["chance_mcc"]
    assert max(main["isotropic"], main["anisotropic"]) <= chance["mean"] + chance["std"]
    assert result.checks["gaussian_priors_at_chance"]


def test_anisotropic_prior_equals_isotropic_within_noise(result):
    """The theory's prediction, asserted (not an expected failure)."""
    assert result.checks["anisotropic_equals_isotropic"], table(result)


def test_conditional_prior_fails_on_gaussian_sources(result):
    main, control = _means(result, "nonlinear_ica"), _means(result, "gaussian_control")
    spread = max(result.metrics[n]["conditional"]["mcc_vs_sources_summary"]["std"]
                 for n in DATASETS)
    assert control["conditional"] < main["conditional"] - max(0.05, spread), table(result)
    assert result.checks["control_conditional_fails"]


def test_metrics_are_complete_and_consistent(result):
    m = result.metrics
    assert set(m["nonlinear_ica"]) == set(PRIORS)
    n_seeds = m["setting"]["n_seeds"]
    for name in DATASETS:
        for prior, arm in m[name].items():
            assert len(arm["mcc_vs_sources"]) == n_seeds, (name, prior)
            assert len(arm["pairwise_mcc"]) == n_seeds * (n_seeds - 1) // 2
            assert all(0.0 <= v <= 1.0 for v in arm["mcc_vs_sources"] + arm["pairwise_mcc"])
    assert "Λ^½ R Λ^-½" in m["theory"] and "anisotropic" in m["claim"]
    assert m["measured"].startswith("nonlinear_ica: MCC vs sources isotropic")
    assert 0.5 < m["chance_mcc"]["mean"] < 1.0
    gap = m["anisotropic_vs_isotropic"]["nonlinear_ica"]
    arms = m["nonlinear_ica"]
    assert gap["gap"] == pytest.approx(arms["anisotropic"]["mcc_vs_sources_summary"]["mean"]
                                       - arms["isotropic"]["mcc_vs_sources_summary"]["mean"])
    assert result.checks["anisotropic_equals_isotropic"] == gap["within_noise"]
    printed = table(result)
    for text in (m["claim"], m["theory"], m["measured"], "random rotation"):
        assert text in printed


def test_results_are_written_as_json_and_png(result, tmp_path):
    out = common.save(result, tmp_path / "x")
    doc = json.loads((out / "result.json").read_text())
    assert doc["checks"] == result.checks and doc["metrics"]["claim"]
    assert (out / "identifiability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_full_size_run_meets_the_goal():
    """The issue's goals at full size (6 sources, 5 seeds, nonlinear mixing; about 40 min
    on a loaded 2-core machine): every check, including the theory's prediction that the
    anisotropic prior equals the isotropic one within 2 s.e., on both datasets."""
    full = identifiability(quick=False)
    failed = [name for name, ok in full.checks.items() if not ok]
    assert not failed, (failed, table(full))
    assert full.metrics["anisotropic_vs_isotropic"]["gaussian_control"]["within_noise"]
    assert full.metrics["chance_mcc"]["mean"] < full.metrics["not_identified_at"]

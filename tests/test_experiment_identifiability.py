"""Experiment 4 in its quick configuration: pairwise MCC across seeds for both priors.

The claim "an anisotropic Gaussian prior makes seeds agree more" is measured, not
assumed. It does not hold here: a diagonal Gaussian prior's scales can be absorbed into
the encoder heads and the decoder's first layer (z' = z / s), so both priors share their
optima, and in the short quick fits the anisotropic ones lag in ELBO and agree less.
The claim's test is therefore a strict xfail: it fails the suite if the check ever
starts passing, so a change in the model or the experiment gets looked at.
"""

import pytest

from betavae_science.experiments import common
from betavae_science.experiments.identifiability import PRIORS, identifiability


@pytest.fixture(scope="module")
def result():
    return identifiability(quick=True)


@pytest.mark.xfail(strict=True, reason="Gaussian prior scales are a reparameterisation "
                   "(z' = z / s): the anisotropic prior does not raise pairwise MCC.")
def test_anisotropic_prior_is_more_identifiable(result):
    assert result.checks["anisotropic_more_identifiable"], result.metrics[
        "pairwise_mcc_difference"]


def test_mcc_values_and_pairs(result):
    assert set(result.checks) == {"anisotropic_more_identifiable", "priors_within_spread"}
    diff = result.metrics["pairwise_mcc_difference"]
    assert result.checks["anisotropic_more_identifiable"] == (diff > result.metrics["margin"])
    for prior in PRIORS:
        arm = result.metrics[prior]
        assert len(arm["pairwise_mcc"]) == 10 and len(arm["pairs"]) == 10
        assert len({tuple(p) for p in arm["pairs"]}) == 10
        assert len(arm["mcc_vs_factors"]) == 5
        for key in ("pairwise_mcc", "pairwise_mcc_all_dims", "mcc_vs_factors"):
            assert all(0.0 <= v <= 1.0 for v in arm[key]), (prior, key, arm[key])
        # The fits learned the factors at all (chance MCC of 4 dims here is about 0.1).
        assert arm["mcc_vs_factors_summary"]["mean"] > 0.5, prior
    assert result.metrics["isotropic"]["seeds"] == result.metrics["anisotropic"]["seeds"]
    scales = result.metrics["anisotropic"]["prior_scales"]
    assert len(set(scales)) == len(scales)  # distinct scales: the symmetry-breaking setting


def test_results_are_written_as_json_and_png(result, tmp_path):
    out = common.save(result, tmp_path / "x")
    assert (out / "result.json").read_text().startswith("{")
    assert (out / "identifiability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

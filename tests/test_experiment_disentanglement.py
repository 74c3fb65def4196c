"""Experiment 5 in its quick configuration: β-VAE disentanglement against PCA and FastICA."""

import json

import pytest

from betavae_science.experiments import common
from betavae_science.experiments.disentanglement import disentanglement

SCORES = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "mcc")


@pytest.fixture(scope="module")
def result():
    return disentanglement(quick=True)


def test_beta_vae_disentangles_better_than_linear_baselines(result):
    # Held for seeds 0-6: the best β-VAE's MIG beats PCA's and FastICA's on the same
    # held-out shapes. (Whether β > 1 beats β <= 1 varies between single fits, so the
    # quick run reports that check without asserting it.)
    assert result.checks["beta_vae_beats_pca_mig"], result.metrics["shapes"]
    assert result.checks["beta_vae_beats_ica_mig"], result.metrics["shapes"]


def test_metrics_are_in_range(result):
    panel = result.metrics["shapes"]
    assert panel["n_heldout"] > 0 and panel["latent_dim"] > 0
    entries = [*panel["rows"], *panel["baselines"].values()]
    assert len(panel["rows"]) >= 3 and set(panel["baselines"]) == {"pca", "fastica"}
    for entry in entries:
        for key in SCORES:
            assert 0.0 <= entry[key] <= 1.0 + 1e-9, (key, entry[key])
        assert len(entry["mig_per_factor"]) == len(panel["factors"]) == 5
    for row in panel["rows"]:
        assert 0 <= row["active_units"] <= panel["latent_dim"]
        assert row["rate"] >= 0
    # Position is visible in 16x16 images: every representation predicts the factors
    # well above chance.
    assert all(e["dci_informativeness"] > 0.4 for e in entries)


def test_results_are_written_as_json_and_png(result, tmp_path):
    out = common.save(result, tmp_path / "x")
    doc = json.loads((out / "result.json").read_text())
    assert doc["experiment"] == "disentanglement"
    assert doc["figures"] == ["disentanglement.png"]
    assert (out / "disentanglement.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

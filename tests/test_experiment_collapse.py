"""Experiment 3 in its quick configuration: posterior collapse and its cures.

One module-scoped run (~8 s on an idle core) serves every test, including the one of
`run_experiment`'s outputs.
"""

import json

import numpy as np
import pytest

from betavae_science.experiments import collapse as collapse_module
from betavae_science.experiments import run_experiment
from betavae_science.experiments.collapse import LABELS, collapse, conditions, table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result():
    return collapse(quick=True)


@pytest.mark.parametrize("check", ["skip_collapses", "large_beta_collapses",
                                   "gated_skip_restores", "free_bits_restores",
                                   "capacity_restores", "learned_gate_collapses"])
def test_check_holds(result, check):
    rows = {k: (round(v["rate"], 3), round(v["distortion"], 2), v["active_units"])
            for k, v in conditions(result).items()}
    assert result.checks[check], rows


def test_checks_follow_from_metrics(result):
    m = conditions(result)
    base = m["baseline"]
    assert set(m) == set(LABELS)
    assert set(result.checks) == {"skip_collapses", "large_beta_collapses",
                                  "gated_skip_restores", "free_bits_restores",
                                  "capacity_restores", "learned_gate_collapses"}
    # The ungated skip empties z while reconstructing at least as well as the baseline.
    assert m["skip"]["rate"] < 0.1 * base["rate"]
    assert m["skip"]["distortion"] <= base["distortion"]
    # The cures keep information in z: most units active and a real share of the rate.
    for cure in ("gated_skip", "free_bits", "capacity"):
        assert m[cure]["active_units"] >= base["active_units"] / 2, cure
        assert m[cure]["rate"] >= 0.1 * base["rate"], cure
    # The capacity target is met by the end of training (within 25%; the returned model is
    # the best-ELBO epoch, which may be earlier) and the learned gate opened.
    assert m["capacity"]["val_rate_per_epoch"][-1] == pytest.approx(
        m["capacity"]["objective"]["capacity"], rel=0.25)
    assert m["learned_gate"]["final_gate"] > 0.05


def test_metrics_are_consistent(result):
    config = result.metrics["config"]
    for name, c in conditions(result).items():
        kl = np.asarray(c["kl_per_dim"])
        assert kl.shape == (config["latent_dim"],), name
        assert np.all(kl >= -1e-9), name
        assert c["rate"] == pytest.approx(kl.sum(), rel=1e-9, abs=1e-12), name
        assert 0 <= c["active_units"] <= config["latent_dim"], name
        assert c["distortion"] > 0, name
        assert len(c["val_rate_per_epoch"]) == config["epochs"], name
        assert (c["final_gate"] is None) == (c["model"].get("skip", "none") == "none"), name
    assert conditions(result)["gated_skip"]["final_gate"] == pytest.approx(0.02)
    assert len(table(result).splitlines()) == 1 + len(LABELS)


def test_run_experiment_writes_outputs(result, tmp_path, monkeypatch):
    """run_experiment resolves the registry target and writes result.json and the PNG;
    the module's function is swapped for the fixture's result so nothing refits."""
    calls = []

    def reuse(quick: bool, seed: int):
        calls.append((quick, seed))
        return result

    monkeypatch.setattr(collapse_module, "collapse", reuse)
    out = tmp_path / "out"
    assert run_experiment("collapse", out, quick=True) is result
    assert calls == [(True, 0)]
    doc = json.loads((out / "result.json").read_text())
    assert doc["experiment"] == "collapse" and doc["figures"] == ["collapse.png"]
    assert doc["checks"] == result.checks and set(result.figures) == {"collapse"}
    assert set(doc["metrics"]) == set(LABELS) | {"config"}
    png = (out / "collapse.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000

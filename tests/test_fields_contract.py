"""The fields plugin on plugin contract v2: declared options, domain defaults, a generator
that is handed latents only, evaluations that read the run, and a cheap start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import betavae_core as bv
from betavae_core import ConfigError
from betavae_fields import generation, physics
from betavae_fields import montecarlo as mc

pytestmark = pytest.mark.usefixtures("fresh_plugins")

TINY = {"L": 8, "n_temperatures": 4, "samples": 20}  # temperatures 1.6, 2.133333, ... 3.2
TINY_NET = {"channels": 4, "hidden": 8}


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BETAVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mc-cache"))


@pytest.fixture
def ising():
    return bv.load_data("ising2d", options=TINY)[0]


def untrained(data: bv.DomainData) -> bv.BetaVAE:
    """A model with random weights: enough to exercise the plumbing, in milliseconds."""
    torch.manual_seed(0)
    return bv.BetaVAE(bv.ModelConfig.for_data(data, latent_dim=2,
                                              architecture_options=TINY_NET))


def test_plugin_module_imports_no_torch_numpy_or_sklearn():
    code = ("import sys, betavae_fields.plugin; "
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib', 'sklearn', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_unknown_loader_option_is_a_config_error_listing_the_valid_ones(tmp_path):
    ens = mc.sample_ising(8, [2.0], 4, seed=0)
    path = tmp_path / "mine.npz"
    np.savez(path, configs=ens.configs, temperature=ens.control)
    with pytest.raises(ConfigError, match=r"lattice_npz.*\['modle'\].*model \(default "
                                          r"'auto'\), lam \(default 1.0\)"):
        bv.load_data(path, options={"modle": "ising"})


def test_unknown_generator_option_is_a_config_error_listing_the_valid_ones(ising, tmp_path):
    with pytest.raises(ConfigError, match=r"lattice.*\['temprature'\].*temperature "
                                          r"\(default None\), kappa"):
        bv.generate(untrained(ising), 4, tmp_path / "g", generator="lattice",
                    options={"temprature": 2.0})
    assert not (tmp_path / "g").exists()


def test_unknown_likelihood_and_architecture_options_are_config_errors(ising):
    with pytest.raises(ConfigError, match=r"spin_multiscale.*\['level'\].*kernel.*levels"):
        bv.BetaVAE(bv.ModelConfig.for_data(ising, likelihood_options={"level": 1}))
    with pytest.raises(ConfigError, match=r"lattice_conv.*\['depth'\].*channels.*hidden"):
        bv.BetaVAE(bv.ModelConfig.for_data(ising, architecture_options={"depth": 3}))


def test_ising_suggests_the_benchmark_settings(ising):
    model, train, objective, from_domain = bv.configs_for(ising, {"epochs": 3})
    assert (model.latent_dim, model.likelihood, model.architecture) == (
        2, "spin_multiscale", "lattice_conv")
    assert model.architecture_options == {"channels": 16}
    assert (objective.beta, train.epochs, train.patience, train.batch_size) == (1.0, 3, None,
                                                                                128)
    assert "epochs" not in from_domain and from_domain["patience"] == 0


def test_generator_is_handed_latents_only(ising, tmp_path, monkeypatch):
    record = bv.registry("generators").get("lattice")
    assert record.samples == "latents"
    seen = []
    real = generation.generate_lattice

    def spy(run, samples, **options):
        seen.append(samples)
        return real(run, samples, **options)

    monkeypatch.setattr(generation, "generate_lattice", spy)
    report = bv.generate(untrained(ising), 6, tmp_path / "prior", generator="lattice")
    (samples,) = seen
    assert samples.z.shape == (6, 2)
    assert samples.mean is None and samples.sample is None and samples.params is None
    assert report.summary["how"] == "decoded prior draws"
    assert set(np.unique(np.load(tmp_path / "prior" / "configs.npy"))) <= {-1, 1}


def test_prior_generation_follows_the_seed(ising, tmp_path):
    model = untrained(ising)
    draws = []
    for i, seed in enumerate((3, 3, 4)):
        bv.generate(model, 8, tmp_path / f"s{i}", generator="lattice", seed=seed)
        draws.append(np.load(tmp_path / f"s{i}" / "configs.npy"))
    assert np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[0], draws[2])


def test_generating_at_a_trained_temperature_uses_the_training_split(ising, tmp_path,
                                                                      monkeypatch):
    def no_monte_carlo(*args, **kwargs):
        raise AssertionError("Monte Carlo ran although the training split had the data")

    monkeypatch.setattr(generation, "monte_carlo_at", no_monte_carlo)
    train = ising.subset(np.arange(0, len(ising), 2))
    temps = np.asarray(train.metadata["temperature"])
    t = float(temps[0])
    run = bv.RunContext(model=untrained(ising), train_data=train, split="none")
    report = bv.generate(run, 12, tmp_path / "at", generator="lattice",
                         options={"temperature": t})
    summary = json.loads((tmp_path / "at" / "summary.json").read_text())
    assert summary["reference"] == "the training configurations"
    assert summary["n_reference"] == int((temps == t).sum())
    assert report.summary["physics"]["n"] == 12


def test_generating_off_the_training_grid_runs_monte_carlo_there(ising, tmp_path,
                                                                monkeypatch):
    calls = []
    real = generation.monte_carlo_at
    monkeypatch.setattr(generation, "monte_carlo_at",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    run = bv.RunContext(model=untrained(ising), train_data=ising, split="none")
    report = bv.generate(run, 8, tmp_path / "off", generator="lattice",
                         options={"temperature": 2.27})
    assert [c[1:3] for c in calls] == [(2.27, 8)]
    assert report.summary["reference"] == "new Monte Carlo configurations"


def test_wrong_control_for_the_model_is_a_config_error(ising, tmp_path):
    with pytest.raises(ConfigError, match="controlled by temperature, not kappa"):
        bv.generate(untrained(ising), 4, tmp_path / "k", generator="lattice",
                    attrs=ising.attrs, options={"kappa": 0.3})
    with pytest.raises(ConfigError, match="not both"):
        bv.generate(untrained(ising), 4, tmp_path / "b", generator="lattice",
                    options={"temperature": 2.0, "kappa": 0.3})


def test_generated_physics_takes_its_controls_from_the_options(ising):
    model = untrained(ising)
    report = bv.evaluate(model, ising, names=["generated_physics"],
                         options={"generated_physics": {"controls": [1.7, 3.0]}})
    assert sorted(report["generated_physics"]["at"]) == ["1.6", "3.2"]  # nearest in the data
    with pytest.raises(ConfigError, match="controls must be one or more numbers"):
        bv.evaluate(model, ising, names=["generated_physics"],
                    options={"generated_physics": {"controls": "warm"}})


def test_evaluations_read_the_model_and_data_from_the_run(ising):
    run = bv.RunContext(model=untrained(ising), heldout=ising, split="all")
    report = bv.evaluate(run, names=["order_parameter", "critical_point"])
    assert len(report["order_parameter"]["correlation"]["temperature"]) == 2
    assert report["critical_point"]["L"] == 8


def test_decoding_at_the_posterior_mean_decodes_the_encodings(ising):
    model = untrained(ising)
    mu, _ = bv.encode(model, ising)
    _, at_mean = physics.decode_around(model, ising, seed=2, posterior="mean")
    _, drawn = physics.decode_around(model, ising, seed=2)
    assert np.array_equal(at_mean, mu.astype(np.float32))
    assert not np.allclose(drawn, at_mean)
    with pytest.raises(ConfigError, match=r"posterior must be one of \('sample', 'mean'\); "
                                          r"got 'mode'"):
        physics.decode_around(model, ising, posterior="mode")
    with pytest.raises(ConfigError, match=r"-g posterior must be one of .*got 'median'"):
        generation.generate_lattice(bv.RunContext(model=model), None, temperature=2.0,
                                    posterior="median")

"""The fields plugin through the public contract: datasets, CLI train/evaluate/generate,
and what its models learn (small lattices, so the whole file runs in CI time)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import betavae_core
from betavae_core import ConfigError, DataError
from betavae_core.cli import main
from betavae_fields import montecarlo as mc
from betavae_fields import physics
from betavae_fields.likelihoods import MultiscaleSpin, Spin

pytestmark = pytest.mark.usefixtures("fresh_plugins")

TINY_ISING = ["-o", "L=8", "-o", "n_temperatures=6", "-o", "samples=40"]


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path_factory, monkeypatch):
    """Monte Carlo ensembles are cached in one temporary folder for this module."""
    monkeypatch.setenv("BETAVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mc-cache"))


def invoke(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def test_plugin_registers_through_its_entry_point():
    info = {i.name: i for i in betavae_core.plugin_infos()}["fields"]
    assert info.status == "ok", info.reason
    assert {"ising2d", "xy2d", "phi4_2d"} <= set(info.registers["datasets"])
    assert {"spin", "spin_multiscale", "von_mises"} <= set(info.registers["likelihoods"])
    assert {"order_parameter", "critical_point", "generated_physics"} <= set(
        info.registers["evaluations"])


def test_ising2d_dataset_carries_temperature_and_exact_observables():
    data, source = betavae_core.load_data("ising2d", options={"L": 8, "n_temperatures": 4,
                                                              "samples": 30})
    assert data.x.shape == (120, 8, 8) and set(torch.unique(data.x).tolist()) == {-1.0, 1.0}
    assert data.factor_names == ("temperature", "energy", "magnetization", "abs_magnetization")
    energy, m = mc.ising_observables(data.x.numpy())
    np.testing.assert_allclose(data.factors[:, 1], energy, atol=1e-6)
    np.testing.assert_allclose(data.factors[:, 2], m, atol=1e-6)
    assert data.likelihood == "spin_multiscale" and data.architecture == "lattice_conv"
    again, _ = betavae_core.load_data("ising2d", options=source["options"])
    assert torch.equal(again.x, data.x)  # the cached ensemble, unchanged


def test_non_positive_temperature_is_refused():
    with pytest.raises(ConfigError, match=r"temperatures must be > 0.*\[-1.0, 3.0\]"):
        betavae_core.load_data("ising2d", options={"t_min": -1.0, "t_max": 3.0})


def test_lattice_npz_loader_reads_own_ensembles_and_names_bad_rows(tmp_path):
    ens = mc.sample_ising(8, [1.8, 3.0], 10, seed=2)
    good = tmp_path / "mine.npz"
    np.savez(good, configs=ens.configs, temperature=ens.control)
    data, source = betavae_core.load_data(good)
    assert source["loader"] == "lattice_npz" and data.attrs["model"] == "ising"
    np.testing.assert_allclose(data.factors[:, 1], ens.energy, atol=1e-6)
    bad = ens.configs.astype(np.float32)
    bad[3, 1, 2] = 0.5
    np.savez(tmp_path / "bad.npz", configs=bad, temperature=ens.control)
    with pytest.raises(DataError, match=r"configuration 3 holds 0.5 at site \(1, 2\)"):
        betavae_core.load_data(tmp_path / "bad.npz", options={"model": "ising"})
    np.savez(tmp_path / "rect.npz", configs=np.ones((4, 8, 6)), temperature=np.ones(4))
    with pytest.raises(DataError, match=r"\(n, L, L\).*\(8, 6\)"):
        betavae_core.load_data(tmp_path / "rect.npz")
    np.savez(tmp_path / "cold.npz", configs=ens.configs, temperature=-ens.control)
    with pytest.raises(DataError, match="temperature must be > 0; row 0"):
        betavae_core.load_data(tmp_path / "cold.npz")


def test_cli_train_evaluate_generate_on_ising(tmp_path):
    run = tmp_path / "run"
    invoke("train", "ising2d", *TINY_ISING, "--epochs", "3", "--latent-dim", "2",
           "--arch-option", "channels=8", "--arch-option", "hidden=32", "--val-fraction",
           "0.5", "--quiet", "--out", run)
    from_domain = json.loads((run / "config.json").read_text())["from_domain"]
    assert from_domain["patience"] == 0 and "epochs" not in from_domain
    invoke("evaluate", run)
    results = json.loads((run / "report.json").read_text())["evaluation"]["results"]
    assert {"order_parameter", "critical_point", "generated_physics"} <= set(results)
    cp = results["critical_point"]
    assert 1.6 <= cp["tc_latent"] <= 3.2 and cp["tc_exact"] == pytest.approx(mc.TC_ISING)
    for fig in cp["figures"] + results["generated_physics"]["figures"]:
        assert (run / fig).read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "cands"
    invoke("generate", run, "-n", "30", "--out", out, "-g", "temperature=2.27")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["temperature"] == 2.27 and summary["physics"]["n"] == 30
    configs = np.load(out / "configs.npy")
    assert configs.dtype == np.int8 and set(np.unique(configs)) <= {-1, 1}
    assert (out / "energy_histogram.png").exists()
    assert summary["reference"] == "new Monte Carlo configurations"  # 2.27: not on the grid
    trained = tmp_path / "trained"
    invoke("generate", run, "-n", "30", "--out", trained, "-g", "temperature=2.24")
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["reference"] == "the training configurations"  # read from run.train
    prior = tmp_path / "prior"
    invoke("generate", run, "-n", "20", "--out", prior)
    assert json.loads((prior / "summary.json").read_text())["how"] == "decoded prior draws"


def test_cli_train_and_generate_on_xy(tmp_path):
    run = tmp_path / "xy"
    invoke("train", "xy2d", "-o", "L=8", "-o", "n_temperatures=4", "-o", "samples=30",
           "--epochs", "2", "--latent-dim", "2", "--arch-option", "channels=8",
           "--arch-option", "hidden=32", "--quiet", "--out", run)
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["likelihood"] == "von_mises"
    invoke("evaluate", run, "--only", "generated_physics")
    out = tmp_path / "xy-cands"
    invoke("generate", run, "-n", "16", "--out", out, "-g", "temperature=0.9")
    angles = np.load(out / "configs.npy")
    assert angles.shape == (16, 8, 8) and np.abs(angles).max() <= np.pi + 1e-6


def fit_likelihood_alone(lik, x: torch.Tensor, steps: int = 300) -> torch.Tensor:
    """Maximum likelihood with one learned parameter map shared by all items (no z)."""
    params = torch.zeros(1, lik.params_per_element, *x.shape[1:], requires_grad=True)
    opt = torch.optim.Adam([params, *lik.parameters()], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        nll = -lik.distribution(params.expand(len(x), -1, -1, -1)).log_prob(x).mean()
        nll.backward()
        opt.step()
    return params.detach()


def test_multiscale_decoder_gets_the_energy_the_factorised_one_misses():
    """At T = 2.5 (disordered, so a shared field carries no order): the factorised
    decoder draws independent spins with energy near 0, the checkerboard decoder learns
    the couplings and reproduces Monte Carlo's energy distribution."""
    torch.manual_seed(0)
    ens = mc.sample_ising(8, [2.5], 400, seed=4)
    x = torch.as_tensor(ens.configs, dtype=torch.float32)
    w1 = {}
    for name, lik in (("spin", Spin((8, 8))), ("multiscale", MultiscaleSpin((8, 8)))):
        params = fit_likelihood_alone(lik, x)
        with torch.no_grad():
            draws = lik.distribution(params.expand(len(x), -1, -1, -1)).sample().numpy()
        w1[name] = physics.compare(draws, ens.configs, "ising", 2.5, {})["w1_energy"]
    assert w1["multiscale"] < 0.3 * w1["spin"], w1


@pytest.mark.slow
def test_latent_learns_the_magnetisation(tmp_path):
    data, _ = betavae_core.load_data("ising2d", options={"L": 16, "n_temperatures": 17,
                                                         "samples": 100})
    # the dataset's suggestions: β = 1, 2 latents, 16 channels, early stopping off
    configs = betavae_core.configs_for(data, {"epochs": 20, "progress": False})[:3]
    result = betavae_core.fit(data, *configs, out_dir=tmp_path / "run")
    report = betavae_core.evaluate(result.model, data, names=["order_parameter"])
    assert report["order_parameter"]["best_abs_r"]["abs_magnetization"] > 0.9

"""The fields plugin through the public contract: datasets, CLI train/evaluate/generate,
and what its models learn (small lattices, so the whole file runs in CI time)."""

from __future__ import annotations

import json
import warnings

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
    with pytest.raises(DataError, match=r"bad\.npz: the Ising model needs spins in "
                       r"\{-1, \+1\}; item 3 holds 0.5 at site \(1, 2\)"):
        betavae_core.load_data(tmp_path / "bad.npz", options={"model": "ising"})
    np.savez(tmp_path / "rect.npz", configs=np.ones((4, 8, 6)), temperature=np.ones(4))
    with pytest.raises(DataError, match=r"\(n, L, L\).*\(8, 6\)"):
        betavae_core.load_data(tmp_path / "rect.npz")
    np.savez(tmp_path / "cold.npz", configs=ens.configs, temperature=-ens.control)
    with pytest.raises(DataError, match="temperature must be > 0; row 0"):
        betavae_core.load_data(tmp_path / "cold.npz")


def test_lattice_npz_of_0_1_spins_is_read_as_ising_with_a_note_never_as_xy(tmp_path):
    ens = mc.sample_ising(8, [1.8, 3.0], 10, seed=2)
    np.savez(tmp_path / "signed.npz", configs=ens.configs, temperature=ens.control)
    binary = ((ens.configs + 1) // 2).astype(np.int8)
    np.savez(tmp_path / "binary.npz", configs=binary, temperature=ens.control)
    expected, _ = betavae_core.load_data(tmp_path / "signed.npz")
    with pytest.warns(UserWarning, match=r"binary\.npz: configs hold only 0 and 1: read as "
                      r"Ising spins, 0 -> -1 and 1 -> \+1 .*-o model=xy"):
        data, _ = betavae_core.load_data(tmp_path / "binary.npz")
    assert data.attrs["model"] == "ising" and data.likelihood == "spin_multiscale"
    assert torch.equal(data.x, expected.x) and np.allclose(data.factors, expected.factors)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model was named: no note
        chosen, _ = betavae_core.load_data(tmp_path / "binary.npz", options={"model": "ising"})
    assert torch.equal(chosen.x, expected.x)
    angles, _ = betavae_core.load_data(tmp_path / "binary.npz", options={"model": "xy"})
    assert angles.attrs["model"] == "xy" and angles.likelihood == "von_mises"
    np.savez(tmp_path / "kappa.npz", configs=binary, kappa=np.full(len(binary), 0.3))
    with pytest.raises(DataError, match=r"only 0 and 1, but the control is kappa.*"
                       r"-o model=ising .*-o model=phi4"):
        betavae_core.load_data(tmp_path / "kappa.npz")


def test_lattice_npz_reads_xy_only_from_values_that_look_like_radians(tmp_path):
    rng = np.random.default_rng(0)
    temperature = np.ones(4)
    np.savez(tmp_path / "radians.npz", configs=rng.uniform(-np.pi, np.pi, (4, 8, 8)),
             temperature=temperature)
    assert betavae_core.load_data(tmp_path / "radians.npz")[0].attrs["model"] == "xy"
    for name, configs in (("degrees", rng.uniform(0, 360, (4, 8, 8))),
                          ("potts", rng.integers(0, 3, (4, 8, 8)))):
        np.savez(tmp_path / f"{name}.npz", configs=configs, temperature=temperature)
        with pytest.raises(DataError, match=rf"{name}\.npz: configs hold values from .* "
                           r"neither .* say which model they are: -o model=xy"):
            betavae_core.load_data(tmp_path / f"{name}.npz")
    data, _ = betavae_core.load_data(tmp_path / "degrees.npz", options={"model": "xy"})
    assert data.attrs["model"] == "xy"  # chosen by the user: read as asked


def test_generating_at_a_temperature_checks_the_reference_configurations():
    from betavae_fields.generation import configurations_at

    data, _ = betavae_core.load_data("ising2d", options={"L": 8, "n_temperatures": 2,
                                                         "samples": 10})
    model = betavae_core.BetaVAE(betavae_core.ModelConfig.for_data(
        data, latent_dim=2, architecture_options={"channels": 8, "hidden": 16}))
    binary = data.subset(range(len(data)))
    binary.x = (binary.x + 1) / 2  # the run's data, changed on disk since the fit
    run = betavae_core.RunContext(model=model, train_data=binary, split="none")
    with pytest.raises(DataError, match=r"spins in \{-1, \+1\}.*look like 0/1 spins"):
        configurations_at(run, float(data.metadata["temperature"][0]), 5)
    run = betavae_core.RunContext(model=model, train_data=data, split="none")
    anchor, reference, where = configurations_at(run, float(data.metadata["temperature"][0]), 5)
    assert where == "the training configurations" and len(anchor) == 5


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

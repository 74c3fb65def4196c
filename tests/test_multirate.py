"""The multi-rate (β-conditioned) model: β as an input, one fit read at several β, its
run folder and the one-fit sweep."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from betavae_core import (
    BetaVAE,
    ConfigError,
    DomainData,
    ModelConfig,
    TrainConfig,
    evaluate_terms,
    fit,
    load_run,
)
from betavae_core.cli import main
from betavae_core.posterior import encode, reconstruct


def test_beta_is_one_more_covariate_column_of_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(event_shape=(5,), latent_dim=2, covariate_dim=1, beta_range=[0.1, 10.0],
                      architecture_options={"hidden": [8]})
    model = BetaVAE(cfg)
    assert model.encoder.body[0].in_features == 5 + 1 + 1  # item, covariate, log beta
    x, u = torch.randn(3, 5), torch.randn(3, 1)
    cond = model.conditioning(u, 10.0, 3)
    assert torch.equal(cond[:, :1], u) and torch.allclose(cond[:, 1], torch.ones(3))
    assert torch.allclose(model.conditioning(None, 0.1, 3), -torch.ones(3, 1))
    assert torch.allclose(model.conditioning(None, None, 2), torch.zeros(2, 1))  # sqrt(lo hi)
    lo, hi = model.encode(x, u, beta=0.1).mu, model.encode(x, u, beta=10.0).mu
    assert not torch.allclose(lo, hi)
    with pytest.raises(ConfigError, match=r"outside the range.*\(0.1, 10\)"):
        model.encode(x, u, beta=20.0)
    plain = BetaVAE(ModelConfig(event_shape=(5,), latent_dim=2))
    with pytest.raises(ConfigError, match="beta-conditioned"):
        plain.encode(x, beta=1.0)


def _clusters(n: int) -> DomainData:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (n,), generator=g)
    x = 4.0 * torch.eye(4, 8)[labels] + 0.3 * torch.randn(n, 8, generator=g)
    return DomainData(x=x, likelihood="gaussian", domain="test")


def test_one_fit_trades_rate_for_distortion_along_beta(tmp_path, one_thread) -> None:
    data = _clusters(600)
    cfg = ModelConfig.for_data(data, latent_dim=3, architecture_options={"hidden": [32]})
    train = TrainConfig(epochs=12, batch_size=64, lr=5e-3, patience=None, progress=False,
                        device="cpu")
    result = fit(data, cfg, train, beta_range=(0.1, 10.0), out_dir=tmp_path / "run")
    held = data.subset(result.val_indices)
    terms = [evaluate_terms(result.model, held, beta=b) for b in (0.1, 1.0, 10.0)]
    rates, distortions = [t.rate for t in terms], [t.distortion for t in terms]
    assert rates[0] > rates[1] > rates[2], rates
    assert distortions[0] < distortions[1] < distortions[2], distortions
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["beta_range"] == [0.1, 10.0]
    run = load_run(tmp_path / "run")
    again = evaluate_terms(run.model, held, beta=0.1)
    assert again.rate == pytest.approx(terms[0].rate) and again.distortion == pytest.approx(
        terms[0].distortion)
    mu_lo, _ = encode(run.model, held, beta=0.1)
    mu_hi, _ = encode(run.model, held, beta=10.0)
    assert mu_lo.var(0).sum() > mu_hi.var(0).sum()  # more beta, less information kept
    assert reconstruct(run.model, held, beta=10.0).mean.shape == held.x.shape


def test_multirate_refuses_a_capacity_target(shapes_data) -> None:
    from betavae_core import Objective

    with pytest.raises(ConfigError, match="capacity"):
        fit(shapes_data, None, TrainConfig(epochs=1, progress=False),
            Objective(capacity=5.0), beta_range=(0.5, 2.0))


def test_cli_one_fit_sweep_reads_every_beta_from_one_run(tmp_path, one_thread) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "shapes", "-o", "n=200", "-o", "size=16", "--epochs", "2",
            "--latent-dim", "3", "--arch-option", "hidden=32", "--quiet",
            "--betas", "0.5,1,4", "--one-fit", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "rd.csv").open()))
    assert [float(r["beta"]) for r in rows] == [0.5, 1.0, 4.0]
    assert {r["run"] for r in rows} == {"one_fit"}
    assert int(rows[0]["active_units"]) <= int(rows[0]["active_units_variance"])
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name[0] != ".") == [
        "one_fit"]
    assert json.loads((out / "one_fit" / "config.json").read_text())["model"][
        "beta_range"] == [0.5, 4.0]
    again = CliRunner().invoke(main, args + ["--resume"])  # finished: read back, not refit
    assert again.exit_code == 0, again.output
    assert list(csv.DictReader((out / "rd.csv").open())) == rows
    one = CliRunner().invoke(main, args[:-5] + ["--betas", "2", "--one-fit", "--out",
                                                str(tmp_path / "b")])
    assert one.exit_code == 1 and "at least two" in one.output


def test_cli_train_beta_range(tmp_path, one_thread) -> None:
    out = tmp_path / "run"
    base = ["train", "shapes", "-o", "n=200", "-o", "size=16", "--epochs", "1", "--latent-dim",
            "2", "--arch-option", "hidden=16", "--quiet"]
    result = CliRunner().invoke(main, base + ["--beta-range", "0.5,4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_run(out).model.config.beta_range == [0.5, 4.0]
    bad = CliRunner().invoke(main, base + ["--beta-range", "4", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 1 and "LO,HI" in bad.output

"""The multi-rate (β-conditioned) model: β as an input, one fit read at several β, its
run folder and the one-fit sweep."""

from __future__ import annotations

import csv
import json
import math

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
    trainer,
)
from betavae_core.cli import main
from betavae_core.model import LossRecord
from betavae_core.objective import Objective
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


def _gate_keys(model: BetaVAE) -> list[str]:
    return [k for k in model.state_dict() if ".gates." in k]


def test_beta_gates_exist_only_in_a_beta_conditioned_model() -> None:
    plain = BetaVAE(ModelConfig(event_shape=(5,), latent_dim=2,
                                architecture_options={"hidden": [8, 4]}))
    assert _gate_keys(plain) == [] and plain.encoder.gates is None
    multi = BetaVAE(ModelConfig(event_shape=(5,), latent_dim=2, beta_range=[0.1, 10.0],
                                architecture_options={"hidden": [8, 4]}))
    keys = _gate_keys(multi)
    # a weight and a bias per unit of each layer: encoder 8, 4 and its (mu, logvar)
    # head, decoder 4, 8 and its likelihood parameters
    assert sorted(keys) == sorted(f"{net}.gates.{p}" for net in ("encoder", "decoder")
                                  for p in ("weight", "bias"))
    assert multi.encoder.gates.widths == [8, 4, 2 * 2]
    assert multi.decoder.gates.widths == [4, 8, math.prod(multi.decoder.out_shape)]
    assert multi.encoder.gates.weight.shape == (8 + 4 + 4,)
    # every other weight has the shape it has without beta (but for the extra input)
    extra = set(multi.state_dict()) - set(keys)
    assert extra == set(plain.state_dict())
    # a network built to see no covariates (ivae_mlp's decoder) has no beta to gate by
    ivae = BetaVAE(ModelConfig(event_shape=(5,), latent_dim=2, beta_range=[0.1, 10.0],
                               architecture="ivae_mlp", architecture_options={"hidden": [8]}))
    assert {k.split(".")[0] for k in _gate_keys(ivae)} == {"encoder"}


def test_gates_alone_carry_beta_into_encoder_and_decoder() -> None:
    """With the log-beta input column cut, beta still reaches both networks through the
    gates once their weights are non-zero, and not at all while they are zero."""
    torch.manual_seed(0)
    model = BetaVAE(ModelConfig(event_shape=(5,), latent_dim=2, beta_range=[0.1, 10.0],
                                architecture_options={"hidden": [8, 4]}))
    with torch.no_grad():
        model.encoder.body[0].weight[:, -1] = 0  # the beta column of the first layers
        model.decoder.first.weight[:, -1] = 0
    x, z = torch.randn(3, 5), torch.randn(3, 2)

    def outputs(beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        return model.encode(x, beta=beta).mu, model.decode(z, beta=beta).mean

    for a, b in zip(outputs(0.1), outputs(10.0), strict=True):
        assert torch.equal(a, b)  # weights start at zero: scales 1 at every beta
    with torch.no_grad():
        for gates in (model.encoder.gates, model.decoder.gates):
            gates.weight.normal_()
    for a, b in zip(outputs(0.1), outputs(10.0), strict=True):
        assert not torch.allclose(a, b)


def _record(n: int = 4, d: int = 3) -> LossRecord:
    g = torch.Generator().manual_seed(0)
    return LossRecord(torch.rand(n, generator=g), torch.rand(n, d, generator=g),
                      torch.randn(n, d, generator=g), torch.randn(n, d, generator=g),
                      torch.randn(n, d, generator=g))


def test_gated_networks_start_as_the_input_column_alone() -> None:
    """Every scale starts at 1: at initialisation the gated model computes, to the bit,
    what the model with log beta as an input column only computes."""
    torch.manual_seed(0)
    model = BetaVAE(ModelConfig(event_shape=(5,), latent_dim=2, beta_range=[0.1, 10.0],
                                architecture_options={"hidden": [8, 4]}))
    x, z, betas = torch.randn(6, 5), torch.randn(6, 2), torch.tensor([0.1, 0.3, 1, 2, 5, 10])
    gated = model.encode(x, beta=betas), model.decode(z, beta=betas).mean
    model.encoder.gates = model.decoder.gates = None
    plain = model.encode(x, beta=betas), model.decode(z, beta=betas).mean
    assert torch.equal(gated[0].mu, plain[0].mu) and torch.equal(gated[0].logvar,
                                                                 plain[0].logvar)
    assert torch.equal(gated[1], plain[1])


def test_per_item_betas_weigh_each_items_rate_by_its_own_beta() -> None:
    """Known answers: mean_i(D_i + beta_i R_i), scaled by a warm-up as beta is, and the
    trainer hands the objective its per-item betas."""
    record, betas = _record(), torch.tensor([0.5, 1.0, 2.0, 8.0])
    expected = (record.distortion + betas * record.kl_per_dim.sum(1)).mean()
    loss = Objective(beta=3.0).loss(record, 1.0, beta=betas)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    warm = Objective(beta=3.0, schedule="warmup", warmup_epochs=4.0).loss(record, 1.0,
                                                                          beta=betas)
    quarter = (record.distortion + 0.25 * betas * record.kl_per_dim.sum(1)).mean()
    assert float(warm) == pytest.approx(float(quarter), rel=1e-6)
    loop = trainer._Loop.__new__(trainer._Loop)
    loop.objective, loop.train_idx = Objective(beta=3.0), torch.arange(10)
    assert torch.equal(loop._loss(record, 1.0, betas)[0], loss)


def test_per_item_free_bits_floor_each_dimensions_weighted_rate() -> None:
    """Free bits with one beta per item: dimension j costs max(mean_i beta_i KL_ij,
    mean(beta) * lambda); with equal betas that is free bits at one beta."""
    record, betas = _record(), torch.tensor([0.5, 1.0, 2.0, 8.0])
    objective = Objective(free_bits=0.35)
    weighted = (betas[:, None] * record.kl_per_dim).mean(0)
    floor = float(betas.mean()) * 0.35
    expected = record.distortion.mean() + torch.clamp(weighted, min=floor).sum()
    assert bool((weighted < floor).any() and (weighted > floor).any())  # both sides used
    assert float(objective.loss(record, 0.0, beta=betas)) == pytest.approx(float(expected),
                                                                           rel=1e-6)
    same = objective.loss(record, 0.0, beta=torch.full((4,), 2.0))
    assert float(same) == pytest.approx(float(objective.loss(record, 0.0, beta=2.0)), rel=1e-6)


def test_scalar_beta_loss_is_unchanged_by_the_per_item_path() -> None:
    """One beta (or none) gives the formula it gave before per-item betas, to the bit."""
    record = _record()
    for objective in (Objective(beta=2.0), Objective(beta=2.0, free_bits=0.4)):
        kl = record.kl_per_dim.mean(dim=0)
        if objective.free_bits:
            kl = torch.clamp(kl, min=objective.free_bits)
        for beta in (None, 0.7):
            b = objective.beta if beta is None else beta
            expected = record.distortion.mean() + b * kl.sum()
            assert torch.equal(objective.loss(record, 3.0, beta=beta), expected)


def test_per_item_tc_penalty_weighs_tc_by_the_mean_beta() -> None:
    record, betas = _record(8), torch.tensor([0.5, 1.0, 2.0, 4.0] * 2)
    objective = Objective(tc_beta=6.0)
    loss, tc = objective.loss_and_tc(record, 1.0, beta=betas, dataset_size=100)
    base = (record.distortion + betas * record.kl_per_dim.sum(1)).mean()
    assert float(loss) == pytest.approx(float(base + (6.0 - betas.mean()) * tc), rel=1e-6)


def test_resume_of_a_gated_multirate_fit_is_bit_identical(tmp_path, one_thread) -> None:
    data = _clusters(96)
    cfg = ModelConfig.for_data(data, latent_dim=2, architecture_options={"hidden": [8]})

    def run(out, epochs, resume=False):
        train = TrainConfig(epochs=epochs, batch_size=32, patience=None, progress=False,
                            device="cpu")
        return fit(data, cfg, train, beta_range=(0.2, 5.0), out_dir=out, resume=resume)

    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume=True)
    assert _gate_keys(straight.model)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in drop} for r in straight.history]


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

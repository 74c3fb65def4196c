"""beta-TCVAE: the minibatch total-correlation estimates against the closed-form TC of a
Gaussian aggregate posterior, the objective's weighting of TC, and its logging."""

from __future__ import annotations

import math

import pytest
import torch

from betavae_core import (
    ConfigError,
    DomainData,
    LossRecord,
    ModelConfig,
    Objective,
    TrainConfig,
    fit,
)
from betavae_core.objective import minibatch_tc


def _batch(cov_between: torch.Tensor, m: int, sd: float = 0.5, seed: int = 0):
    """m posteriors N(mu_i, sd^2 I) with mu_i ~ N(0, cov_between), one z from each: the
    aggregate posterior is N(0, cov_between + sd^2 I)."""
    g = torch.Generator().manual_seed(seed)
    d = cov_between.shape[0]
    mu = torch.randn(m, d, generator=g) @ torch.linalg.cholesky(cov_between).T
    logvar = torch.full((m, d), 2 * math.log(sd))
    z = mu + sd * torch.randn(m, d, generator=g)
    aggregate = cov_between + sd**2 * torch.eye(d)
    corr = aggregate / torch.outer(aggregate.diag().sqrt(), aggregate.diag().sqrt())
    exact = -0.5 * torch.logdet(corr.double()).item()
    return z, mu, logvar, exact


FACTORISED = torch.diag(torch.tensor([1.0, 2.0, 0.5]))
CORRELATED = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.3], [0.0, 0.3, 1.0]])


@pytest.mark.parametrize("cov", [FACTORISED, CORRELATED], ids=["factorised", "correlated"])
def test_stratified_estimate_matches_the_gaussian_closed_form(cov) -> None:
    z, mu, logvar, exact = _batch(cov, 2000)
    estimate = minibatch_tc(z, mu, logvar, dataset_size=2000, estimator="mss").item()
    assert estimate == pytest.approx(exact, abs=0.03)
    if cov is FACTORISED:
        assert exact == pytest.approx(0.0, abs=1e-6)
    else:
        assert exact > 0.3  # far from 0: the estimate tells the two apart


def test_weighted_estimate_is_the_stratified_one_plus_its_constant() -> None:
    """With N = M, MWS weighs every term 1/M^2 and MSS 1/M: they differ by (d - 1) log M."""
    z, mu, logvar, exact = _batch(CORRELATED, 1000)
    mws = minibatch_tc(z, mu, logvar, 1000, "mws").item()
    mss = minibatch_tc(z, mu, logvar, 1000, "mss").item()
    assert mws - mss == pytest.approx(2 * math.log(1000), abs=1e-4)
    assert mss == pytest.approx(exact, abs=0.05)


def test_small_batch_of_a_large_dataset_still_separates_dependence() -> None:
    """A 256-item batch of a 50 000-item set: MSS sees correlated > factorised."""
    lo = minibatch_tc(*_batch(FACTORISED, 256)[:3], 50_000, "mss").item()
    hi = minibatch_tc(*_batch(CORRELATED, 256)[:3], 50_000, "mss").item()
    assert hi > lo + 0.2


def _record(m: int = 64, seed: int = 0) -> LossRecord:
    z, mu, logvar, _ = _batch(CORRELATED, m, seed=seed)
    kl = 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar)
    return LossRecord(torch.linspace(1, 2, m), kl, mu, logvar, z)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_objective_weighs_tc_by_tc_beta(estimator) -> None:
    record = _record()
    base = Objective(beta=2.0).loss(record, 0.0)
    loss, tc = Objective(beta=2.0, tc_beta=6.0, tc_estimator=estimator).loss_and_tc(
        record, 0.0, dataset_size=1000)
    assert tc == pytest.approx(minibatch_tc(record.z, record.mu, record.logvar, 1000,
                                            estimator).item())
    assert loss.item() == pytest.approx(base.item() + 4.0 * tc.item(), rel=1e-6)
    # tc_beta = beta is the plain beta-VAE; a warm-up scales the TC weight with beta
    same, _ = Objective(beta=2.0, tc_beta=2.0).loss_and_tc(record, 0.0, dataset_size=1000)
    assert same.item() == pytest.approx(base.item(), rel=1e-6)
    warm = Objective(beta=2.0, tc_beta=6.0, schedule="warmup", warmup_epochs=4.0,
                     tc_estimator=estimator)
    half, tc_half = warm.loss_and_tc(record, 2.0, dataset_size=1000)
    plain = Objective(beta=2.0, schedule="warmup", warmup_epochs=4.0).loss(record, 2.0)
    assert half.item() == pytest.approx(plain.item() + 2.0 * tc_half.item(), rel=1e-6)


def test_tc_beta_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="tc_beta"):
        Objective(tc_beta=-1.0)
    with pytest.raises(ConfigError, match="capacity"):
        Objective(tc_beta=4.0, capacity=5.0)
    with pytest.raises(ConfigError, match="tc_estimator"):
        Objective(tc_beta=4.0, tc_estimator="kde")
    record = _record()._replace(z=None)
    with pytest.raises(ConfigError, match="z"):
        Objective(tc_beta=4.0).loss(record, 0.0, dataset_size=10)
    assert "tc_beta" not in Objective().to_dict()  # off: config.json as before


def test_fit_with_tc_beta_logs_tc_and_lowers_it(one_thread) -> None:
    """Four clusters squeezed into 2 latents make a dependent aggregate posterior; the
    plain beta-VAE (tc_beta = beta) leaves its TC high, tc_beta = 10 drives it down."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (600,), generator=g)
    x = 4.0 * torch.eye(4, 8)[labels] + 0.3 * torch.randn(600, 8, generator=g)
    data = DomainData(x=x, likelihood="gaussian", domain="test")
    cfg = ModelConfig.for_data(data, latent_dim=2, architecture_options={"hidden": [32]})
    train = TrainConfig(epochs=12, batch_size=100, lr=1e-2, patience=None, progress=False,
                        device="cpu")
    plain = fit(data, cfg, train, Objective(beta=0.3, tc_beta=0.3, tc_estimator="mss"))
    pushed = fit(data, cfg, train, Objective(beta=0.3, tc_beta=10.0, tc_estimator="mss"))
    assert all("train_tc" in row for row in plain.history)
    tc = lambda r: r.history[-1]["train_tc"]  # noqa: E731
    assert tc(plain) > 0.2 and tc(pushed) < 0.3 * tc(plain), (tc(plain), tc(pushed))


def test_cli_tc_beta_is_recorded_and_logged(tmp_path, one_thread) -> None:
    import json

    from click.testing import CliRunner

    from betavae_core.cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "shapes", "-o", "n=200", "-o", "size=16", "--epochs", "2", "--latent-dim", "3",
        "--arch-option", "hidden=32", "--tc-beta", "6", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    objective = json.loads((out / "config.json").read_text())["objective"]
    assert (objective["tc_beta"], objective["tc_estimator"]) == (6.0, "mws")
    assert "train_tc" in (out / "history.csv").read_text().splitlines()[0]
    bad = CliRunner().invoke(main, ["train", "shapes", "-o", "n=50", "--tc-beta", "2",
                                    "--capacity", "3", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "capacity" in bad.output

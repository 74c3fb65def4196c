"""The priors of `priors.py`: each KL estimate against a closed form or a numerical
integral, prior draws against the prior's moments and CDF, the learned mixture prior
fitting clustered codes, the conditional prior's covariates, and --prior end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import integrate, stats

from betavae_core import BetaVAE, ConfigError, DomainData, ModelConfig, TrainConfig, fit, load_run
from betavae_core.cli import main
from betavae_core.posterior import encode

N_MC = 200_000


def _model(prior: str, latent_dim: int = 2, **kw) -> BetaVAE:
    torch.manual_seed(0)
    cfg = ModelConfig(event_shape=(4,), latent_dim=latent_dim, prior=prior,
                      architecture_options={"hidden": [8]}, **kw)
    return BetaVAE(cfg)


def _mc_kl(model: BetaVAE, mu: list[float], sd: list[float], covariates=None):
    """Mean and standard error over N_MC draws of the model's one-sample KL estimate."""
    torch.manual_seed(1)
    m = torch.tensor(mu).expand(N_MC, -1)
    logvar = (2 * torch.tensor(sd).log()).expand(N_MC, -1)
    cov = None if covariates is None else covariates.expand(N_MC, -1)
    with torch.no_grad():
        kl = model.kl_per_dim(m, logvar, covariates=cov).double()
    return kl.mean(0).numpy(), (kl.std(0) / math.sqrt(N_MC)).numpy()


def _normal_entropy(s: float) -> float:
    return 0.5 * math.log(2 * math.pi * math.e * s * s)


def test_laplace_mc_kl_matches_closed_form() -> None:
    """KL(N(m, s^2) || Laplace(0, b)) = -H(N) + log 2b + E|z| / b, with E|z| of a normal
    in closed form (folded normal mean)."""
    b = [1.0, 0.5]
    model = _model("laplace", prior_scales=b)
    mu, sd = [0.7, -1.2], [0.5, 0.3]
    est, se = _mc_kl(model, mu, sd)
    for j in range(2):
        m, s = mu[j], sd[j]
        abs_mean = s * math.sqrt(2 / math.pi) * math.exp(-m * m / (2 * s * s)) + m * (
            1 - 2 * stats.norm.cdf(-m / s))
        exact = -_normal_entropy(s) + math.log(2 * b[j]) + abs_mean / b[j]
        assert abs(est[j] - exact) < 4 * se[j] + 1e-4, (j, est[j], exact)


def test_student_t_mc_kl_matches_quadrature() -> None:
    model = _model("student_t", prior_options={"df": 4.0}, prior_scales=[1.0, 2.0])
    mu, sd = [0.3, 2.0], [0.6, 0.2]
    est, se = _mc_kl(model, mu, sd)
    for j, scale in enumerate([1.0, 2.0]):
        q = stats.norm(mu[j], sd[j])
        p = stats.t(4.0, scale=scale)
        exact, _ = integrate.quad(lambda z, q=q, p=p: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)),
                                  mu[j] - 12 * sd[j], mu[j] + 12 * sd[j])
        assert abs(est[j] - exact) < 4 * se[j] + 1e-4, (j, est[j], exact)


def test_gaussian_priors_keep_the_closed_form() -> None:
    """Isotropic KL has no Monte Carlo noise: the same inputs give the same numbers."""
    model = _model("isotropic")
    mu, logvar = torch.randn(5, 2), torch.randn(5, 2)
    a, b = model.kl_per_dim(mu, logvar), model.kl_per_dim(mu, logvar)
    assert torch.equal(a, b)
    expected = 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar)
    torch.testing.assert_close(a, expected)


@pytest.mark.parametrize("prior,dist", [
    ("laplace", stats.laplace(scale=0.7)),
    ("student_t", stats.t(5.0, scale=0.7)),
])
def test_sample_prior_draws_the_prior(prior, dist) -> None:
    options = {"df": 5.0} if prior == "student_t" else {}
    model = _model(prior, latent_dim=3, prior_scales=[0.7] * 3, prior_options=options)
    g = torch.Generator().manual_seed(0)
    z = model.sample_prior(60_000, generator=g).double().numpy()
    again = model.sample_prior(60_000, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(z, again.double().numpy())  # seeded: the same draws
    assert np.allclose(z.mean(0), 0.0, atol=0.03)
    assert np.allclose(z.var(0), dist.var(), rtol=0.05)
    for j in range(3):  # the whole distribution, not only two moments
        assert stats.kstest(z[:, j], dist.cdf).statistic < 0.01
    assert abs(np.corrcoef(z.T)[0, 1]) < 0.02  # factorised


def test_mixture_kl_split_sums_to_the_mc_kl_and_draws_have_its_moments() -> None:
    model = _model("mog", latent_dim=3, prior_options={"components": 4})
    mog = model.prior_module
    assert {"prior_module.means", "prior_module.log_scales",
            "prior_module.logits"} <= set(model.state_dict())
    with torch.no_grad():
        mog.logits.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
        mog.log_scales.copy_(torch.log(torch.rand(4, 3) + 0.2))
    mu, logvar = torch.randn(50, 3), torch.randn(50, 3) * 0.3
    z = mu + torch.randn(50, 3) * (0.5 * logvar).exp()
    kl = model.kl_per_dim(mu, logvar, z)
    joint, _ = mog.log_prob_parts(z)
    log_q = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(1)
    torch.testing.assert_close(kl.sum(1), log_q - joint, rtol=1e-5, atol=1e-5)
    # the joint density against a direct evaluation of the mixture
    w = torch.softmax(mog.logits, 0)
    direct = sum(w[k] * torch.distributions.Normal(mog.means[k], mog.log_scales[k].exp())
                 .log_prob(z).sum(1).exp() for k in range(4))
    torch.testing.assert_close(joint, direct.log(), rtol=1e-5, atol=1e-5)
    draws = model.sample_prior(100_000, generator=torch.Generator().manual_seed(0)).double()
    mean = (w[:, None] * mog.means).sum(0).double()
    with torch.no_grad():
        assert torch.allclose(draws.mean(0), mean, atol=0.02)
        assert torch.allclose(draws.std(0), mog.marginal_scale().double(), rtol=0.02)


def _clusters(n: int, seed: int) -> DomainData:
    """Items from four well-separated clusters in 8 dimensions."""
    g = torch.Generator().manual_seed(seed)
    centres = 4.0 * torch.eye(4, 8)
    labels = torch.randint(0, 4, (n,), generator=g)
    x = centres[labels] + 0.3 * torch.randn(n, 8, generator=g)
    return DomainData(x=x, likelihood="gaussian", domain="test")


def test_learned_mixture_prior_fits_clustered_codes_better_than_n01(one_thread) -> None:
    train, held = _clusters(600, 0), _clusters(300, 1)
    cfg = ModelConfig.for_data(train, latent_dim=2, prior="mog", prior_options={
        "components": 4}, architecture_options={"hidden": [32]})
    result = fit(train, cfg, TrainConfig(epochs=12, lr=5e-3, batch_size=64, patience=None,
                                         progress=False, device="cpu"))
    model = result.model
    mu, _ = encode(model, held)
    z = torch.as_tensor(mu, dtype=torch.float32)
    with torch.no_grad():
        learned = model.prior_module.log_prob_parts(z)[0].mean().item()
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1).mean().item()
    assert learned > standard + 0.5, (learned, standard)


def _covariate_data(n: int = 64) -> DomainData:
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3).float()
    return DomainData(x=torch.randn(n, 4, generator=g), likelihood="gaussian", domain="test",
                      covariates=u)


def test_conditional_prior_kl_is_the_gaussian_closed_form() -> None:
    data = _covariate_data()
    model = BetaVAE(ModelConfig.for_data(data, latent_dim=2, prior="conditional",
                                         architecture_options={"hidden": [8]}))
    with torch.no_grad():  # move p(z|u) away from N(0, I)
        for p in model.prior_module.parameters():
            p.copy_(torch.randn_like(p))
    u = data.covariates[:1]
    mean, log_s = model.conditional_prior(u)
    assert not torch.allclose(mean, torch.zeros_like(mean))
    mu, sd = [0.4, -0.8], [0.7, 0.3]
    est, _ = _mc_kl(model, mu, sd, covariates=u)
    q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(sd))
    p = torch.distributions.Normal(mean[0], log_s[0].exp())
    torch.manual_seed(2)
    with torch.no_grad():
        z = q.sample((N_MC,))
        mc = (q.log_prob(z) - p.log_prob(z)).double()
    exact = torch.distributions.kl_divergence(q, p).double()
    assert np.allclose(est, exact.detach().numpy(), rtol=1e-5)  # the model: closed form
    se = mc.std(0) / math.sqrt(N_MC)
    assert torch.all((mc.mean(0) - exact).abs() < 4 * se)  # and Monte Carlo agrees
    draws = model.sample_prior(50_000, torch.Generator().manual_seed(0),
                               covariates=u.expand(50_000, -1))
    assert torch.allclose(draws.mean(0), mean[0], atol=0.03)
    assert torch.allclose(draws.std(0), log_s[0].exp(), rtol=0.03)


def test_conditional_prior_needs_covariates() -> None:
    plain = DomainData(x=torch.randn(8, 4), likelihood="gaussian", domain="test")
    with pytest.raises(ConfigError, match="conditional.*covariates.*has none"):
        ModelConfig.for_data(plain, prior="conditional")
    model = BetaVAE(ModelConfig.for_data(_covariate_data(), prior="conditional"))
    with pytest.raises(ConfigError, match=r"covariates of shape \(5, 3\)"):
        model.sample_prior(5)


def test_prior_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"prior 'mog' has no option\(s\) \['k'\].*components"):
        ModelConfig(event_shape=(4,), prior="mog", prior_options={"k": 3})
    with pytest.raises(ConfigError, match="components"):
        ModelConfig(event_shape=(4,), prior="mog", prior_options={"components": 0})


def test_cli_prior_is_saved_and_reloaded(tmp_path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "shapes", "-o", "n=200", "-o", "size=16", "--epochs", "2", "--latent-dim", "3",
        "--arch-option", "hidden=32", "--prior", "student_t", "--prior-option", "df=6",
        "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "active units" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["prior"] == "student_t"
    assert config["model"]["prior_options"] == {"df": 6}
    report = json.loads((out / "report.json").read_text())
    assert report["active_units"] <= report["active_units_variance"] <= 3
    run = load_run(out)
    assert run.model.config.prior == "student_t" and run.model.prior_options["df"] == 6
    bad = CliRunner().invoke(main, ["train", "shapes", "-o", "n=50", "--prior", "conditional",
                                    "--epochs", "1", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "has none" in bad.output


def test_cli_offers_every_prior() -> None:
    from betavae_core.cli import PRIOR_CHOICES
    from betavae_core.priors import PRIORS

    assert PRIOR_CHOICES == PRIORS


def test_posterior_evaluation_and_generation_use_the_conditional_prior() -> None:
    """The core posterior evaluation reports the model's own KL (not N(0, I)'s closed
    form), and prior draws for generation come from p(z|u) at the drawn covariates."""
    from betavae_core import evaluate, evaluate_terms
    from betavae_core.generation import sample

    data = _covariate_data()
    model = BetaVAE(ModelConfig.for_data(data, latent_dim=2, prior="conditional",
                                         architecture_options={"hidden": [8]}))
    with torch.no_grad():
        for p in model.prior_module.parameters():
            p.copy_(torch.randn_like(p))
    metrics = evaluate(model, data, names=["posterior"])["posterior"]
    own = evaluate_terms(model, data, seed=0).kl_per_dim
    assert np.allclose(metrics["kl_per_dim"], own)
    mu, logvar = encode(model, data)
    n01 = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).mean(0)
    assert not np.allclose(metrics["kl_per_dim"], n01, rtol=0.05)
    u = data.covariates[:1].expand(20_000, -1)
    draws = sample(model, 20_000, covariates=u, decoded=False).z
    mean, log_s = model.conditional_prior(u[:1])
    se = log_s[0].detach().exp() / math.sqrt(len(u))
    assert torch.all((draws.mean(0) - mean[0].detach()).abs() < 4 * se)


def test_a_domain_may_suggest_a_prior_and_the_user_overrides_it() -> None:
    from betavae_core import configs_for

    data = _covariate_data()
    data.defaults = {"prior": "student_t", "prior_options": {"df": 5}}
    model, _, _, from_domain = configs_for(data)
    assert (model.prior, model.prior_options["df"]) == ("student_t", 5)
    assert from_domain["prior"] == "student_t"
    model, _, _, from_domain = configs_for(data, {"prior": "laplace", "prior_options": None})
    assert model.prior == "laplace" and "prior" not in from_domain
    plain = DomainData(x=torch.randn(8, 4), likelihood="gaussian", domain="test")
    assert configs_for(plain)[0].prior == "isotropic"  # nothing suggested: the core's

"""The priors p(z) a `BetaVAE` can use, and their KL to a diagonal-Gaussian posterior.

- "isotropic" / "anisotropic": N(0, diag(s^2)); KL in closed form.
- "laplace": factorised Laplace(0, b_j); "student_t": factorised Student-t(df, 0, s_j).
  KL by Monte Carlo at the reparameterised sample: log q(z_j|x) - log p(z_j), per
  dimension, in nats. Non-Gaussian priors break the rotation symmetry of the Gaussian
  one, so they can pick out axes (identifiability).
- "mog": a learned mixture of K diagonal Gaussians (means, log-scales, logits are model
  parameters, saved with the weights); MC KL. The per-dimension split: dimension j
  gets log q(z_j|x) - log p_j(z_j) (p_j the mixture's marginal in j) plus an equal
  share (1/d) of sum_j log p_j(z_j) - log p(z), so the dimensions sum to the MC KL.
- "conditional": p(z|u) = N(m(u), diag s(u)^2), mean and log-scale from a small net of
  the covariates u (the iVAE construction); Gaussian, so KL in closed form.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .errors import ConfigError

PRIORS = ("isotropic", "anisotropic", "laplace", "student_t", "conditional", "mog")
GAUSSIAN_PRIORS = ("isotropic", "anisotropic")
# Each prior's options and their defaults (`ModelConfig.prior_options`).
PRIOR_OPTIONS: dict[str, dict[str, Any]] = {
    "isotropic": {}, "anisotropic": {}, "laplace": {},
    "student_t": {"df": 3.0},
    "mog": {"components": 10},
    "conditional": {"hidden": 32},
}
_LOG_2PI = math.log(2.0 * math.pi)


def prior_options(prior: str, given: dict[str, Any], covariate_dim: int) -> dict[str, Any]:
    """The options of `prior` (its defaults filled in); ConfigError on bad ones."""
    if prior not in PRIORS:
        raise ConfigError(f"prior must be one of {PRIORS}; got {prior!r}.")
    defaults = PRIOR_OPTIONS[prior]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(f"{k} (default {v})" for k, v in defaults.items()) or "none"
        raise ConfigError(f"prior {prior!r} has no option(s) {unknown}; it takes: {allowed}.")
    opts = {**defaults, **given}
    if prior == "student_t" and not float(opts["df"]) > 0:
        raise ConfigError(f"student_t prior option df must be > 0; got {opts['df']}.")
    for key in ("components", "hidden"):
        if key in opts and (int(opts[key]) != opts[key] or int(opts[key]) < 1):
            raise ConfigError(f"{prior} prior option {key} must be a whole number >= 1; got "
                              f"{opts[key]!r}.")
    if prior == "conditional" and covariate_dim < 1:
        raise ConfigError("prior 'conditional' models p(z|u) with u the data's covariates, "
                          "but this data has none. Use data with covariates (e.g. "
                          "--batch-key, or a dataset that provides them), or another prior.")
    return opts


def log_normal(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, e^logvar), elementwise."""
    return -0.5 * (_LOG_2PI + logvar + (z - mean).pow(2) * torch.exp(-logvar))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, prior_mean: torch.Tensor | float,
                log_s: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(prior_mean, e^(2 log_s))) elementwise, closed form."""
    diff = mu if isinstance(prior_mean, float) and prior_mean == 0.0 else mu - prior_mean
    return 0.5 * ((logvar.exp() + diff.pow(2)) * torch.exp(-2 * log_s)
                  - 1 - logvar + 2 * log_s)


def laplace_log_prob(z: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """log Laplace(z; 0, b), elementwise."""
    return -math.log(2.0) - log_b - z.abs() * torch.exp(-log_b)


def student_t_log_prob(z: torch.Tensor, log_s: torch.Tensor, df: float) -> torch.Tensor:
    """log Student-t(z; df, 0, s), elementwise."""
    norm = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi))
    y = z * torch.exp(-log_s)
    return norm - log_s - 0.5 * (df + 1) * torch.log1p(y.pow(2) / df)


def sample_factorised(prior: str, n: int, log_s: torch.Tensor, options: dict[str, Any],
                      generator: torch.Generator | None) -> torch.Tensor:
    """n draws (n, d) of a factorised Laplace or Student-t prior by the inverse CDF of
    uniforms drawn with `generator` (on the CPU)."""
    d = log_s.shape[0]
    u = torch.rand(n, d, generator=generator, dtype=torch.float64)
    u = u.clamp(1e-12, 1 - 1e-12)
    scale = log_s.detach().double().cpu().exp()
    if prior == "laplace":
        c = u - 0.5
        return (-scale * c.sign() * torch.log1p(-2 * c.abs())).float()
    from scipy.special import stdtrit

    t = torch.from_numpy(stdtrit(float(options["df"]), u.numpy()))
    return (scale * t).float()


class MixturePrior(nn.Module):
    """A learned mixture of K diagonal Gaussians over z."""

    def __init__(self, latent_dim: int, components: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(components, latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def log_prob_parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(z) (n,), log p_j(z_j) (n, d) of each dimension's marginal mixture)."""
        log_w = torch.log_softmax(self.logits, dim=0)  # (K,)
        per = log_normal(z[:, None, :], self.means[None], 2 * self.log_scales[None])  # (n,K,d)
        joint = torch.logsumexp(per.sum(dim=2) + log_w, dim=1)
        marginal = torch.logsumexp(per + log_w[None, :, None], dim=1)
        return joint, marginal

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """The per-dimension split of log p(z) documented above; sums to log p(z)."""
        joint, marginal = self.log_prob_parts(z)
        rest = (joint - marginal.sum(dim=1)) / z.shape[1]
        return marginal + rest[:, None]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        weights = torch.softmax(self.logits.detach().cpu(), dim=0)
        k = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator)
        return self.means.detach().cpu()[k] + eps * self.log_scales.detach().cpu()[k].exp()

    @torch.no_grad()
    def marginal_scale(self) -> torch.Tensor:
        """Each dimension's standard deviation under the mixture (d,)."""
        w = torch.softmax(self.logits, dim=0)[:, None]
        mean = (w * self.means).sum(0)
        second = (w * (self.log_scales.exp().pow(2) + self.means.pow(2))).sum(0)
        return (second - mean.pow(2)).clamp_min(0).sqrt()


class ConditionalPrior(nn.Module):
    """p(z|u) = N(m(u), diag s(u)^2); the net's last layer starts at zero, so the prior
    starts as N(0, I) for every u."""

    def __init__(self, covariate_dim: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(covariate_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * latent_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-scale), each (n, d), of p(z|u)."""
        mean, log_s = self.net(u).chunk(2, dim=1)
        return mean, log_s.clamp(-6.0, 4.0)


def build_prior_module(prior: str, options: dict[str, Any], latent_dim: int,
                       covariate_dim: int) -> nn.Module | None:
    """The learned part of a mixture or conditional prior (None for the others)."""
    if prior == "mog":
        return MixturePrior(latent_dim, int(options["components"]))
    if prior == "conditional":
        return ConditionalPrior(covariate_dim, latent_dim, int(options["hidden"]))
    return None

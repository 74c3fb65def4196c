"""`BetaVAE`: encoder -> (mu, log sigma^2) -> reparameterised z -> decoder -> likelihood.

The model computes the two terms of the objective, distortion (-log p(x|z), per item)
and rate (KL(q(z|x) || p(z)), per item and latent dimension, in nats); how they are
weighted (beta, schedules, capacity, free bits) belongs to `objective.Objective`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

import torch
from torch import nn

from . import priors
from .architectures import ArchitectureRequest, EncoderOutput
from .errors import ConfigError, DataError
from .priors import PRIORS  # noqa: F401  (re-exported: the names `prior` accepts)
from .registry import check_options

# Encoder log-variances are clamped here, once for every architecture: below -12 the
# posterior is a point (sigma ~ 2.5e-3) and its KL gradient explodes; above 8 a sample
# is noise that no decoder can use.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `BetaVAE`; saved as JSON beside its weights.

    `prior="anisotropic"` uses N(0, diag(prior_scales^2)) (default scales spread
    geometrically from 1 down to 0.2), with the scales learned when `learn_prior` is set.
    "laplace" and "student_t" use `prior_scales` (default 1) as their scale parameters b
    and s; "mog" and "conditional" learn theirs (see `priors.py`). `prior_options` holds
    the prior's own options (student_t: df; mog: components; conditional: hidden).
    `beta_range=(lo, hi)` makes the model beta-conditioned (multi-rate): log beta enters
    encoder and decoder as one more covariate column, scaled to [-1, 1] over the range
    (the architecture is told, `ArchitectureRequest.beta_input`; the core mlp also gates
    every layer's units by it, `architectures.BetaGates`).
    """

    event_shape: tuple[int, ...]
    latent_dim: int = 10
    likelihood: str = "gaussian"
    likelihood_options: dict[str, Any] = field(default_factory=dict)
    architecture: str = "mlp"
    architecture_options: dict[str, Any] = field(default_factory=dict)
    covariate_dim: int = 0
    prior: str = "isotropic"
    prior_scales: list[float] | None = None
    learn_prior: bool = False
    skip: str = "none"
    skip_gate: float = 1.0
    domain: str = ""
    prior_options: dict[str, Any] = field(default_factory=dict)
    beta_range: list[float] | None = None

    def __post_init__(self) -> None:
        self.event_shape = tuple(int(s) for s in self.event_shape)
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1; got {self.latent_dim}.")
        self.prior_options = dict(self.prior_options or {})
        priors.prior_options(self.prior, self.prior_options, self.covariate_dim)
        if self.beta_range is not None:
            self.beta_range = _check_beta_range(self.beta_range)
        if self.prior_scales is not None:
            self.prior_scales = [float(s) for s in self.prior_scales]
            if len(self.prior_scales) != self.latent_dim or min(self.prior_scales) <= 0:
                raise ConfigError(
                    f"prior_scales needs {self.latent_dim} positive values (one per latent "
                    f"dimension); got {self.prior_scales}."
                )

    @classmethod
    def for_data(cls, data: Any, **overrides: Any) -> ModelConfig:
        """A config whose shapes, likelihood and architecture come from `data`."""
        base: dict[str, Any] = {
            "event_shape": data.event_shape,
            "likelihood": data.likelihood,
            "architecture": data.architecture,
            "covariate_dim": data.covariate_dim,
            "domain": data.domain,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON; the newer fields only when set, so a config that does not
        use them reads (and fingerprints) as it did before they existed."""
        d = asdict(self)
        d["event_shape"] = list(self.event_shape)
        for key, unset in (("prior_options", {}), ("beta_range", None)):
            if d[key] == unset:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config fields {sorted(unknown)}.")
        return cls(**d)

    def check_data(self, data: Any) -> None:
        """Raise `DataError` unless `data`'s items and covariates fit this model."""
        if tuple(self.event_shape) != tuple(data.event_shape):
            raise DataError(f"the model expects items of shape {self.event_shape}; the data "
                            f"has {tuple(data.event_shape)}.")
        if self.covariate_dim != data.covariate_dim:
            raise DataError(f"the model expects {self.covariate_dim} covariates; the data has "
                            f"{data.covariate_dim}.")

    def initial_prior_scales(self) -> list[float]:
        if self.prior_scales is not None:
            return list(self.prior_scales)
        if self.prior != "anisotropic" or self.latent_dim == 1:
            return [1.0] * self.latent_dim
        ratio = 0.2 ** (1.0 / (self.latent_dim - 1))
        return [ratio**i for i in range(self.latent_dim)]

    @property
    def options_of_prior(self) -> dict[str, Any]:
        """`prior_options` with the prior's defaults filled in."""
        return priors.prior_options(self.prior, self.prior_options, self.covariate_dim)


def _check_beta_range(value: Any) -> list[float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"beta_range must be two numbers (lo, hi); got {value!r}.") from None
    if not 0 < lo < hi or not math.isfinite(hi):
        raise ConfigError(f"beta_range needs 0 < lo < hi; got ({lo}, {hi}).")
    return [lo, hi]


class LossRecord(NamedTuple):
    """The two terms of the objective for one minibatch, before any weighting, and the
    reparameterised sample z they were taken at (the total-correlation estimate needs it)."""

    distortion: torch.Tensor  # (n,) -log p(x|z), nats per item
    kl_per_dim: torch.Tensor  # (n, d) KL(q(z|x) || p(z)) per dimension, nats
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor | None = None

    @property
    def rate(self) -> torch.Tensor:
        """KL per item, summed over latent dimensions (n,)."""
        return self.kl_per_dim.sum(dim=1)


class BetaVAE(nn.Module):
    """A VAE with a diagonal-Gaussian encoder, a plugin likelihood and a prior from
    `priors.py` (a multi-rate model also takes beta as an input)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        from .plugins import call_plugin, registry

        self.config = config
        lik_spec = registry("likelihoods").get(config.likelihood)
        check_options(lik_spec, config.likelihood_options, "likelihood")
        self.likelihood = call_plugin(
            lik_spec, "likelihood", lik_spec.build, config.event_shape,
            **config.likelihood_options,
        )
        request = ArchitectureRequest(
            event_shape=config.event_shape,
            latent_dim=config.latent_dim,
            params_per_element=self.likelihood.params_per_element,
            covariate_dim=config.covariate_dim + (config.beta_range is not None),
            skip=config.skip,
            skip_gate=config.skip_gate,
            options=dict(config.architecture_options),
            beta_input=config.beta_range is not None,
        )
        arch = registry("architectures").get(config.architecture)
        check_options(arch, config.architecture_options, "architecture")
        self.encoder, self.decoder = call_plugin(arch, "architecture", arch.build, request)
        log_scales = torch.tensor([math.log(s) for s in config.initial_prior_scales()])
        self.prior_log_scale = nn.Parameter(log_scales, requires_grad=config.learn_prior)
        self.prior_options = config.options_of_prior
        module = priors.build_prior_module(config.prior, self.prior_options,
                                           config.latent_dim, config.covariate_dim)
        if module is not None:  # built last: the other weights start as without it
            self.prior_module = module

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return self.prior_log_scale.device

    # --- multi-rate: beta as an input ------------------------------------------------
    @property
    def beta_conditioned(self) -> bool:
        return self.config.beta_range is not None

    def default_beta(self) -> float:
        """The geometric middle of the beta range (what a multi-rate model is read at
        when no beta is given)."""
        lo, hi = self.config.beta_range
        return math.sqrt(lo * hi)

    def conditioning(self, covariates: torch.Tensor | None, beta: Any, n: int
                     ) -> torch.Tensor | None:
        """What encoder and decoder receive as covariates: the data's, plus, for a
        beta-conditioned model, log beta scaled to [-1, 1] over `beta_range` as one more
        column (`beta`: a number, or one value per item)."""
        if not self.beta_conditioned:
            if beta is not None:
                raise ConfigError("beta= applies only to a beta-conditioned model (one fit "
                                  "with beta_range=(lo, hi)); this one was fit at one beta.")
            return covariates
        lo, hi = self.config.beta_range
        # on the CPU in float64 (a trainer's betas are there): no device sync per pass
        b = torch.as_tensor(self.default_beta() if beta is None else beta,
                            dtype=torch.float64)
        if bool(((b < lo * (1 - 1e-6)) | (b > hi * (1 + 1e-6))).any()):
            raise ConfigError(f"beta {b.tolist()} lies outside the range this model was fit "
                              f"on, beta_range=({lo:g}, {hi:g}); choose beta within it.")
        col = (b.log() - math.log(lo)) * (2 / (math.log(hi) - math.log(lo))) - 1
        col = col.to(self.device, torch.float32).reshape(-1, 1).expand(n, 1)
        return col if covariates is None else torch.cat([covariates, col], dim=1)

    # --- passes ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, covariates: torch.Tensor | None = None, *,
               beta: Any = None) -> EncoderOutput:
        """Posterior parameters q(z|x) = N(mu, exp(logvar)), log-variance clamped."""
        return self._encode(x, self.conditioning(covariates, beta, x.shape[0]))

    def _encode(self, x: torch.Tensor, cond: torch.Tensor | None) -> EncoderOutput:
        enc = self.encoder(x, cond)
        return enc._replace(logvar=enc.logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))

    def decode(
        self,
        z: torch.Tensor,
        covariates: torch.Tensor | None = None,
        context: dict[str, torch.Tensor] | None = None,
        skip: torch.Tensor | None = None,
        *,
        beta: Any = None,
    ) -> torch.distributions.Distribution:
        """p(x|z) as a distribution over items (log_prob, sample, mean)."""
        params = self.decoder(z, self.conditioning(covariates, beta, z.shape[0]), skip)
        return self.likelihood.distribution(params, context)

    def prior_scale(self) -> torch.Tensor:
        """Per-dimension prior scale: the s.d. of a Gaussian prior, the scale parameter
        of a Laplace (b) or Student-t (s) one, the marginal s.d. of a mixture, and 1 for
        the conditional prior (its scale depends on u; see `conditional_prior`)."""
        if self.config.prior == "mog":
            return self.prior_module.marginal_scale()
        if self.config.prior == "conditional":
            return torch.ones(self.latent_dim, device=self.device)
        return self.prior_log_scale.exp()

    def conditional_prior(self, covariates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-scale) of p(z|u) for covariates u (conditional prior only)."""
        if self.config.prior != "conditional":
            raise ConfigError(f"conditional_prior needs prior='conditional'; this model's "
                              f"prior is {self.config.prior!r}.")
        if covariates is None:
            raise ConfigError("the conditional prior p(z|u) needs the covariates u; pass "
                              "covariates=.")
        return self.prior_module(covariates)

    def log_prior_per_dim(self, z: torch.Tensor, covariates: torch.Tensor | None = None
                          ) -> torch.Tensor:
        """log p(z) per item and dimension (n, d); for "mog" the split documented in
        `priors.py`. Summed over dimensions it is log p(z)."""
        prior, log_s = self.config.prior, self.prior_log_scale
        if prior in priors.GAUSSIAN_PRIORS:
            return priors.log_normal(z, torch.zeros_like(z), 2 * log_s.expand_as(z))
        if prior == "laplace":
            return priors.laplace_log_prob(z, log_s)
        if prior == "student_t":
            return priors.student_t_log_prob(z, log_s, float(self.prior_options["df"]))
        if prior == "mog":
            return self.prior_module.log_prob_per_dim(z)
        mean, log_sc = self.conditional_prior(covariates)
        return priors.log_normal(z, mean, 2 * log_sc)

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor | None = None,
                   covariates: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per item and dimension, nats (n, d).

        Closed form for the Gaussian priors (isotropic, anisotropic, conditional); for
        Laplace, Student-t and the mixture a one-sample Monte Carlo estimate
        log q(z|x) - log p(z) at `z` (a reparameterised draw; one is drawn when None).
        """
        prior = self.config.prior
        if prior in priors.GAUSSIAN_PRIORS:
            return priors.gaussian_kl(mu, logvar, 0.0, self.prior_log_scale)
        if prior == "conditional":
            mean, log_s = self.conditional_prior(covariates)
            return priors.gaussian_kl(mu, logvar, mean, log_s)
        if z is None:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return priors.log_normal(z, mu, logvar) - self.log_prior_per_dim(z, covariates)

    def forward(
        self,
        x: torch.Tensor,
        covariates: torch.Tensor | None = None,
        context: dict[str, torch.Tensor] | None = None,
        *,
        beta: Any = None,
    ) -> LossRecord:
        """One reparameterised pass: distortion per item and KL per item and dimension."""
        cond = self.conditioning(covariates, beta, x.shape[0])  # once for both networks
        enc = self._encode(x, cond)
        z = enc.mu + torch.randn_like(enc.mu) * torch.exp(0.5 * enc.logvar)
        px = self.likelihood.distribution(self.decoder(z, cond, enc.features), context)
        kl = self.kl_per_dim(enc.mu, enc.logvar, z, covariates)
        return LossRecord(-px.log_prob(x), kl, enc.mu, enc.logvar, z)

    @torch.no_grad()
    def check_input(self, data: Any) -> None:
        """Raise `DataError` unless `data` can meet this model: item shape, covariates
        (their number, finite values) and the likelihood's support, checked a chunk of
        rows at a time. The fit, evaluations and encoding of new data all check this."""
        from .data import check_finite
        from .rows import check_in_chunks

        self.config.check_data(data)
        if data.covariates is not None:
            check_finite(data.covariates, "covariates")
        check_in_chunks(self.likelihood.check_data, data.x)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None,
                     covariates: torch.Tensor | None = None) -> torch.Tensor:
        """n draws of z from the prior (the conditional prior: one per row of
        `covariates`, which it needs)."""
        prior = self.config.prior
        if prior in priors.GAUSSIAN_PRIORS:
            eps = torch.randn(n, self.latent_dim, generator=generator)
            return eps.to(self.device) * self.prior_scale().detach()
        if prior in ("laplace", "student_t"):
            z = priors.sample_factorised(prior, n, self.prior_log_scale, self.prior_options,
                                         generator)
            return z.to(self.device)
        if prior == "mog":
            return self.prior_module.sample(n, generator).to(self.device)
        if covariates is None or covariates.shape[0] != n:
            raise ConfigError(f"the conditional prior p(z|u) samples one z per covariate "
                              f"row: pass covariates of shape ({n}, "
                              f"{self.config.covariate_dim}).")
        mean, log_s = self.conditional_prior(covariates.to(self.device))
        eps = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return mean + eps * log_s.exp()

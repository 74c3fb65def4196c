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

from .architectures import ArchitectureRequest, EncoderOutput
from .errors import ConfigError, DataError
from .registry import check_options

PRIORS = ("isotropic", "anisotropic")

# Encoder log-variances are clamped here, once for every architecture: below -12 the
# posterior is a point (sigma ~ 2.5e-3) and its KL gradient explodes; above 8 a sample
# is noise that no decoder can use.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `BetaVAE`; saved as JSON beside its weights.

    `prior="anisotropic"` uses N(0, diag(prior_scales^2)) (default scales spread
    geometrically from 1 down to 0.2), with the scales learned when `learn_prior` is set.
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

    def __post_init__(self) -> None:
        self.event_shape = tuple(int(s) for s in self.event_shape)
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1; got {self.latent_dim}.")
        if self.prior not in PRIORS:
            raise ConfigError(f"prior must be one of {PRIORS}; got {self.prior!r}.")
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
        d = asdict(self)
        d["event_shape"] = list(self.event_shape)
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
        if self.prior == "isotropic" or self.latent_dim == 1:
            return [1.0] * self.latent_dim
        ratio = 0.2 ** (1.0 / (self.latent_dim - 1))
        return [ratio**i for i in range(self.latent_dim)]


class LossRecord(NamedTuple):
    """The two terms of the objective for one minibatch, before any weighting."""

    distortion: torch.Tensor  # (n,) -log p(x|z), nats per item
    kl_per_dim: torch.Tensor  # (n, d) KL(q(z|x) || p(z)) per dimension, nats
    mu: torch.Tensor
    logvar: torch.Tensor

    @property
    def rate(self) -> torch.Tensor:
        """KL per item, summed over latent dimensions (n,)."""
        return self.kl_per_dim.sum(dim=1)


class BetaVAE(nn.Module):
    """A VAE with a diagonal-Gaussian encoder, a plugin likelihood and a diagonal prior."""

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
            covariate_dim=config.covariate_dim,
            skip=config.skip,
            skip_gate=config.skip_gate,
            options=dict(config.architecture_options),
        )
        arch = registry("architectures").get(config.architecture)
        check_options(arch, config.architecture_options, "architecture")
        self.encoder, self.decoder = call_plugin(arch, "architecture", arch.build, request)
        log_scales = torch.tensor([math.log(s) for s in config.initial_prior_scales()])
        self.prior_log_scale = nn.Parameter(log_scales, requires_grad=config.learn_prior)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return self.prior_log_scale.device

    def encode(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> EncoderOutput:
        """Posterior parameters q(z|x) = N(mu, exp(logvar)), log-variance clamped."""
        enc = self.encoder(x, covariates)
        return enc._replace(logvar=enc.logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))

    def decode(
        self,
        z: torch.Tensor,
        covariates: torch.Tensor | None = None,
        context: dict[str, torch.Tensor] | None = None,
        skip: torch.Tensor | None = None,
    ) -> torch.distributions.Distribution:
        """p(x|z) as a distribution over items (log_prob, sample, mean)."""
        params = self.decoder(z, covariates, skip)
        return self.likelihood.distribution(params, context)

    def prior_scale(self) -> torch.Tensor:
        return self.prior_log_scale.exp()

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, e^logvar) || N(0, s^2)) per item and dimension, closed form."""
        log_s = self.prior_log_scale
        return 0.5 * ((logvar.exp() + mu.pow(2)) * torch.exp(-2 * log_s) - 1 - logvar + 2 * log_s)

    def forward(
        self,
        x: torch.Tensor,
        covariates: torch.Tensor | None = None,
        context: dict[str, torch.Tensor] | None = None,
    ) -> LossRecord:
        """One reparameterised pass: distortion per item and KL per item and dimension."""
        enc = self.encode(x, covariates)
        z = enc.mu + torch.randn_like(enc.mu) * torch.exp(0.5 * enc.logvar)
        px = self.decode(z, covariates, context, skip=enc.features)
        return LossRecord(-px.log_prob(x), self.kl_per_dim(enc.mu, enc.logvar), enc.mu, enc.logvar)

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

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of z from the prior."""
        eps = torch.randn(n, self.latent_dim, generator=generator)
        return eps.to(self.device) * self.prior_scale().detach()

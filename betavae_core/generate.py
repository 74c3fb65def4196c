"""Sample the prior, decode, and hand the result to the domain's generator plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import new_output_dir
from .errors import ConfigError, PluginError
from .model import BetaVAE
from .plugins import call_plugin, registry
from .posterior import batches
from .results import CandidateReport, GeneratedSamples


@torch.no_grad()
def sample(
    model: BetaVAE,
    n: int,
    *,
    covariates: torch.Tensor | None = None,
    context: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    attrs: dict[str, Any] | None = None,
    batch_size: int = 4096,
) -> GeneratedSamples:
    """n prior draws decoded to the likelihood's mean and one sample each."""
    if n < 1:
        raise ConfigError(f"n must be >= 1; got {n}.")
    needed = model.config.covariate_dim
    if needed and (covariates is None or tuple(covariates.shape) != (n, needed)):
        raise ConfigError(f"this model is conditioned on {needed} covariates: pass covariates "
                          f"of shape ({n}, {needed}).")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    z = model.sample_prior(n, generator=gen)
    params, means, samples = [], [], []
    with torch.random.fork_rng(devices=[] if model.device.type == "cpu" else [model.device]):
        torch.manual_seed(seed)
        for sl in batches(n, batch_size):
            cov = None if covariates is None else covariates[sl].to(model.device)
            ctx = None if context is None else {k: v[sl].to(model.device)
                                                for k, v in context.items()}
            out = model.decoder(z[sl], cov, None)
            dist = model.likelihood.distribution(out, ctx)
            params.append(out.cpu())
            means.append(dist.mean.cpu())
            samples.append(dist.sample().cpu())
    return GeneratedSamples(
        z=z.cpu(), params=torch.cat(params), mean=torch.cat(means), sample=torch.cat(samples),
        covariates=None if covariates is None else covariates.cpu(),
        domain=model.config.domain, attrs=dict(attrs or {}), model=model,
    )


def generate(
    model: BetaVAE,
    n: int,
    out_dir: str | Path,
    *,
    generator: str = "arrays",
    seed: int = 0,
    attrs: dict[str, Any] | None = None,
    covariates: torch.Tensor | None = None,
    context: dict[str, torch.Tensor] | None = None,
    options: dict[str, Any] | None = None,
) -> CandidateReport:
    """Sample, decode and pass to the generator plugin, which writes into `out_dir`."""
    if n < 1:
        raise ConfigError(f"n must be >= 1; got {n}.")
    record = registry("generators").get(generator)
    out = new_output_dir(out_dir)
    samples = sample(model, n, covariates=covariates, context=context, seed=seed, attrs=attrs)
    report = call_plugin(record, "generator", record.generate, samples, out, **(options or {}))
    if not isinstance(report, CandidateReport):
        raise PluginError(f"plugin {record.plugin!r}: generator {generator!r} returned "
                          f"{type(report).__name__}, not CandidateReport.", plugin=record.plugin)
    return report

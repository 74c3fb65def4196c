"""Batched passes of a fitted model: encode, decode, reconstruct, held-out terms.

This is the one minibatched, device-aware, gradient-free loop over items or latent
codes; the core and every plugin call it instead of writing their own. Data may be a
tensor or a `RowSource` (sparse or on-disk rows, densified one minibatch at a time).
A beta-conditioned (multi-rate) model is read at `beta=` (default: its middle beta).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from . import information
from .data import DomainData
from .model import BetaVAE


@dataclass
class Terms:
    """Mean distortion, rate and KL per dimension over a dataset (nats per item)."""

    distortion: float
    rate: float
    kl_per_dim: np.ndarray
    n_items: int

    @property
    def elbo(self) -> float:
        return -(self.distortion + self.rate)

    def as_dict(self, prefix: str = "") -> dict[str, float | list[float]]:
        return {
            f"{prefix}rate": self.rate,
            f"{prefix}distortion": self.distortion,
            f"{prefix}elbo": self.elbo,
            f"{prefix}kl_per_dim": self.kl_per_dim.tolist(),
        }


class Decoded(NamedTuple):
    """Decoder output for n latent codes, on the CPU: the likelihood's mean, one sample
    each, and the raw decoder parameters (n, params_per_element, *event_shape); a part
    not asked for is None."""

    mean: torch.Tensor | None
    sample: torch.Tensor | None
    params: torch.Tensor | None


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most `batch_size` covering range(n)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def minibatch(data: DomainData, sl: slice | torch.Tensor, device: torch.device):
    """(x, covariates, context) of the items at `sl`, dense and on `device`."""
    x = data.x[sl].to(device)
    cov = None if data.covariates is None else data.covariates[sl].to(device)
    ctx = {k: v[sl].to(device) for k, v in data.context.items()} or None
    return x, cov, ctx


class _Parts:
    """The parts of decoder output asked for, written minibatch by minibatch into one
    CPU tensor each (allocated at the first minibatch: no list of chunks and no final
    concatenation, which at 100,000 codes costs as much as the decoder itself)."""

    def __init__(self, n: int, mean: bool, sample: bool, params: bool) -> None:
        self.n = n
        wanted = {"mean": mean, "sample": sample, "params": params}
        self.out: dict[str, torch.Tensor | None] = {k: None for k, w in wanted.items() if w}

    def add(self, sl: slice, out: torch.Tensor, dist: torch.distributions.Distribution
            ) -> None:
        for key, held in self.out.items():
            value = out if key == "params" else dist.mean if key == "mean" else dist.sample()
            if held is None:
                held = self.out[key] = value.new_empty((self.n, *value.shape[1:]),
                                                       device="cpu")
            held[sl] = value

    def result(self) -> Decoded:
        return Decoded(**{k: self.out.get(k) for k in ("mean", "sample", "params")})


def _rows(value: torch.Tensor | None, sl: slice, device: torch.device) -> torch.Tensor | None:
    return None if value is None else value[sl].to(device)


def _forked_rng(model: BetaVAE):
    """A block whose seeded sampling leaves the caller's global RNG state as it was."""
    return torch.random.fork_rng(devices=[] if model.device.type == "cpu" else [model.device])


@torch.no_grad()
def decode(
    model: BetaVAE,
    z: torch.Tensor | np.ndarray,
    *,
    covariates: torch.Tensor | None = None,
    context: dict[str, torch.Tensor] | None = None,
    mean: bool = True,
    sample: bool = True,
    params: bool = False,
    seed: int = 0,
    batch_size: int = 4096,
    beta: float | None = None,
) -> Decoded:
    """Decode latent codes (n, d) in minibatches: the likelihood's mean, one seeded
    sample per code and/or the raw decoder parameters."""
    z = torch.as_tensor(z, dtype=torch.float32)
    was_training = model.training
    model.eval()
    parts = _Parts(len(z), mean, sample, params)
    with _forked_rng(model):
        torch.manual_seed(seed)
        for sl in batches(len(z), batch_size):
            ctx = None if context is None else {k: v[sl].to(model.device)
                                                for k, v in context.items()}
            zs = z[sl].to(model.device)
            cond = model.conditioning(_rows(covariates, sl, model.device), beta, len(zs))
            out = model.decoder(zs, cond, None)
            parts.add(sl, out, model.likelihood.distribution(out, ctx))
    model.train(was_training)
    return parts.result()


@torch.no_grad()
def reconstruct(
    model: BetaVAE,
    data: DomainData,
    *,
    mean: bool = True,
    sample: bool = False,
    params: bool = False,
    seed: int = 0,
    batch_size: int = 1024,
    beta: float | None = None,
) -> Decoded:
    """Items encoded to their posterior means and decoded again (skip features, if the
    model has any, come from the same items), in minibatches."""
    was_training = model.training
    model.eval()
    parts = _Parts(len(data), mean, sample, params)
    with _forked_rng(model):
        torch.manual_seed(seed)
        for sl in batches(len(data), batch_size):
            x, cov, ctx = minibatch(data, sl, model.device)
            cond = model.conditioning(cov, beta, len(x))  # one for encoder and decoder
            enc = model._encode(x, cond)
            out = model.decoder(enc.mu, cond, enc.features)
            parts.add(sl, out, model.likelihood.distribution(out, ctx))
    model.train(was_training)
    return parts.result()


@torch.no_grad()
def encode(
    model: BetaVAE, data: DomainData, batch_size: int = 1024, *, beta: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-variances (n, d) for every item, as numpy arrays."""
    was_training = model.training
    model.eval()
    mus, logvars = [], []
    for sl in batches(len(data), batch_size):
        x, cov, _ = minibatch(data, sl, model.device)
        enc = model.encode(x, cov, beta=beta)
        mus.append(enc.mu.cpu())
        logvars.append(enc.logvar.cpu())
    model.train(was_training)
    return torch.cat(mus).double().numpy(), torch.cat(logvars).double().numpy()


@torch.no_grad()
def evaluate_terms(
    model: BetaVAE, data: DomainData, batch_size: int = 1024, seed: int = 0, *,
    beta: float | None = None,
) -> Terms:
    """Distortion (one reparameterised sample per item), rate and KL per dimension
    (for a Monte Carlo KL prior, at that same sample)."""
    was_training = model.training
    model.eval()
    distortion = 0.0
    kl = torch.zeros(model.latent_dim, dtype=torch.float64)
    with _forked_rng(model):
        torch.manual_seed(seed)
        for sl in batches(len(data), batch_size):
            x, cov, ctx = minibatch(data, sl, model.device)
            record = model(x, cov, ctx, beta=beta)
            distortion += float(record.distortion.double().sum())
            kl += record.kl_per_dim.double().sum(dim=0).cpu()
    model.train(was_training)
    n = len(data)
    kl_np = (kl / n).numpy()
    return Terms(distortion / n, float(kl_np.sum()), kl_np, n)


def heldout_summary(
    model: BetaVAE, data: DomainData, mixture_tc: bool = False, *, beta: float | None = None
) -> dict[str, float | int | list[float]]:
    """Rate, distortion, ELBO, KL per dimension, active units (both rules: see
    `information.active_unit_counts`), off-diagonal mass and the Gaussian total
    correlation of the aggregate posterior on `data` (plus the slower mixture estimate
    of the total correlation when `mixture_tc`)."""
    terms = evaluate_terms(model, data, beta=beta)
    mu, logvar = encode(model, data, beta=beta)
    counts = information.active_unit_counts(mu, terms.kl_per_dim)
    cov = information.aggregate_covariance(mu, logvar)
    summary: dict[str, float | int | list[float]] = {
        "rate": terms.rate,
        "distortion": terms.distortion,
        "elbo": terms.elbo,
        "kl_per_dim": terms.kl_per_dim.tolist(),
        **counts,
        "offdiag_mass": information.offdiag_mass(cov),
        "total_correlation_gaussian": information.gaussian_total_correlation(cov),
    }
    if mixture_tc:
        summary["total_correlation"] = information.total_correlation(mu, logvar)
    return summary

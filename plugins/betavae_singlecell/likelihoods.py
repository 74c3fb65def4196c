"""Count likelihoods for expression: NB, zero-inflated NB and Poisson with a library offset.

The decoder emits one logit per gene; a softmax over genes gives the cell's expression
proportions rho, and the mean count is rho times the cell's observed library size
(total counts), passed in `context["library"]`. The library is an offset, not learned,
so the latent space carries composition and not sequencing depth. Without a library
(decoding prior draws with no context) the means are per `DEFAULT_LIBRARY` counts.

* `nb`: negative binomial with a dispersion per gene (inverse dispersion theta, learned,
  independent of z): Var = mu + mu^2 / theta.
* `zinb`: NB mixed with a point mass at zero whose weight pi is decoded per cell and gene
  (a second decoder channel).
* `poisson`: Var = mu; the baseline without overdispersion.
Gaussian on log1p-normalised data is the core's `gaussian`, registered for this domain too.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import betavae_core as bv
from betavae_core import DataError

DEFAULT_LIBRARY = 1e4
_EPS = 1e-8


def not_count(values: Any) -> Any:
    """True where a value (numpy or torch) is not a non-negative whole number; NaN is
    flagged, inf is not (`isfinite` catches it). The one test of "raw counts", shared by
    the likelihoods' `check_data` and the named scan in `conversion`."""
    return (values < 0) | (values != values.round())


def check_counts(x: torch.Tensor, likelihood: str) -> None:
    """Raise `DataError` naming the first cell (row) and gene (column) that is not a
    non-negative integer count."""
    bad = not_count(x) | ~torch.isfinite(x)
    if bad.any():
        flat = bad.reshape(bad.shape[0], -1)
        row = int(torch.nonzero(flat.any(dim=1))[0, 0])
        col = int(torch.nonzero(flat[row])[0, 0])
        value = float(x.reshape(x.shape[0], -1)[row, col])
        raise DataError(
            f"the {likelihood} likelihood needs raw counts (non-negative integers); cell "
            f"(row) {row} holds {value} at gene (column) {col}. Pass the counts "
            f"layer (layer='counts', or -o layer=counts), or fit with likelihood 'gaussian' "
            f"for log1p-normalised data."
        )


def _library(context: dict[str, torch.Tensor] | None, like: torch.Tensor) -> torch.Tensor:
    if context and "library" in context:
        return context["library"].reshape(-1, 1).to(like.dtype)
    return torch.full((like.shape[0], 1), DEFAULT_LIBRARY, dtype=like.dtype, device=like.device)


def _nb_log_prob(x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """log NB(x; mean mu, inverse dispersion theta) per element, without the log-gamma
    terms (see `_gamma_terms`). theta is per gene, so it is exponentiated once, and
    log(theta + mu) is one pass over the matrix (it cannot overflow: mu is at most the
    library size and theta at most e^12)."""
    theta = log_theta.exp()
    log_theta_mu = torch.log(theta + log_mu.exp())
    return theta * (log_theta - log_theta_mu) + x * (log_mu - log_theta_mu)


def _gamma_terms(x: torch.Tensor, log_theta: torch.Tensor | None) -> torch.Tensor:
    """Per item, the sum of lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) (NB) or of
    -lgamma(x + 1) (Poisson), with theta per gene. Each is zero where x = 0, so only the
    non-zero counts, about a tenth of a typical matrix, are evaluated (log-gamma and its
    derivative are the costliest part of a minibatch), and the lgamma(theta) terms are
    one product of the non-zero pattern with the genes' lgamma(theta)."""
    nonzero = x != 0
    rows, cols = torch.nonzero(nonzero, as_tuple=True)
    xv = x[rows, cols]
    terms = -torch.lgamma(xv + 1.0)
    if log_theta is not None:
        theta = log_theta.exp()
        terms = terms + torch.lgamma(xv + theta[cols])
    out = torch.zeros(x.shape[0], dtype=terms.dtype, device=x.device).index_add(0, rows, terms)
    if log_theta is not None:
        out = out - nonzero.to(theta.dtype) @ torch.lgamma(theta)
    return out


def _nb_sample(mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    rate = torch.distributions.Gamma(theta, theta / mu.clamp_min(_EPS)).sample()
    return torch.poisson(rate)


class CountDistribution:
    """p(x | z) over one cell's genes: log_prob sums over genes (nats per cell).

    `log_mu` and `zi_logits` are (cells, genes); `log_theta` is one value per gene.
    """

    def __init__(self, log_mu: torch.Tensor, log_theta: torch.Tensor | None = None,
                 zi_logits: torch.Tensor | None = None) -> None:
        if log_theta is not None and tuple(log_theta.shape) != tuple(log_mu.shape[-1:]):
            raise ValueError(f"log_theta must hold one value per gene, shape "
                             f"{tuple(log_mu.shape[-1:])}; got {tuple(log_theta.shape)}.")
        self.log_mu = log_mu
        self.log_theta = log_theta
        self.zi_logits = zi_logits

    def _element_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p per element except the log-gamma terms, which vanish where x = 0."""
        if self.log_theta is None:
            return x * self.log_mu - self.log_mu.exp()
        return _nb_log_prob(x, self.log_mu, self.log_theta)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        lp = self._element_log_prob(x)
        if self.zi_logits is not None:
            # With s = softplus(logit): log pi = logit - s and log(1 - pi) = -s, so
            # log p = -s + (logaddexp(logit, log NB(0)) at zeros, log NB(x) elsewhere).
            zi = self.zi_logits
            lp = torch.where(x == 0, torch.logaddexp(zi, lp), lp) - F.softplus(zi)
        return lp.sum(dim=-1) + _gamma_terms(x, self.log_theta)

    @property
    def mean(self) -> torch.Tensor:
        mu = self.log_mu.exp()
        if self.zi_logits is not None:
            mu = mu * torch.sigmoid(-self.zi_logits)
        return mu

    @property
    def variance(self) -> torch.Tensor:
        mu = self.log_mu.exp()
        var = mu if self.log_theta is None else mu + mu * mu / self.log_theta.exp()
        if self.zi_logits is None:
            return var
        keep = torch.sigmoid(-self.zi_logits)
        return keep * (var + mu * mu) - (keep * mu) ** 2

    @torch.no_grad()
    def sample(self) -> torch.Tensor:
        mu = self.log_mu.exp()
        if self.log_theta is None:
            counts = torch.poisson(mu)
        else:
            counts = _nb_sample(mu, self.log_theta.exp().expand_as(mu))
        if self.zi_logits is not None:
            dropped = torch.rand_like(mu) < torch.sigmoid(self.zi_logits)
            counts = counts.masked_fill(dropped, 0.0)
        return counts


class _CountLikelihood(bv.Likelihood):
    """Shared parts: support check, and log-mean = log library + log softmax(logits)."""

    name = "counts"
    dispersion = False
    zero_inflated = False

    def __init__(self, event_shape: tuple[int, ...], **options: Any) -> None:
        super().__init__(event_shape, **options)
        if len(self.event_shape) != 1:
            raise DataError(f"the {self.name} likelihood expects cells x genes (items of shape "
                            f"(n_genes,)); got items of shape {self.event_shape}.")
        self.params_per_element = 2 if self.zero_inflated else 1
        if self.dispersion:
            self.log_theta = nn.Parameter(torch.full(self.event_shape, math.log(2.0)))

    def check_data(self, x: torch.Tensor) -> None:
        super().check_data(x)
        check_counts(x, self.name)

    def distribution(self, params, context=None) -> CountDistribution:
        expected = (self.params_per_element, *self.event_shape)
        if tuple(params.shape[1:]) != expected:
            raise ValueError(f"the {self.name} likelihood needs decoder output of shape "
                             f"(n, {expected}); got {tuple(params.shape)}.")
        log_rho = torch.log_softmax(params[:, 0], dim=-1)
        log_mu = log_rho + torch.log(_library(context, params).clamp_min(_EPS))
        log_theta = self.log_theta.clamp(-8.0, 12.0) if self.dispersion else None
        zi = params[:, 1] if self.zero_inflated else None
        return CountDistribution(log_mu, log_theta, zi)


class NegativeBinomial(_CountLikelihood):
    """Negative binomial with a learned dispersion per gene and a library-size offset."""

    name, dispersion = "nb", True


class ZeroInflatedNB(_CountLikelihood):
    """NB plus a decoded per-cell, per-gene probability of an extra zero."""

    name, dispersion, zero_inflated = "zinb", True, True


class Poisson(_CountLikelihood):
    """Poisson with a library-size offset: no overdispersion (baseline)."""

    name = "poisson"


COUNT_LIKELIHOODS = {"nb": NegativeBinomial, "zinb": ZeroInflatedNB, "poisson": Poisson}

"""`expression_mlp`: the encoder/decoder for cells x genes.

The encoder reads log1p of counts per 10,000 (depth is the likelihood's library offset,
so z need not carry it; `normalise_input=false` for data already normalised, where the
log1p is sign-preserving so scaled input is safe too); the decoder emits one logit per
gene and likelihood channel. The batch one-hot is given to every layer of both, and the
decoder adds a learned gene-wise offset per batch to its output, so the latent space need
not carry batch.
Layer normalisation (not batch normalisation) keeps a minibatch of one cell working.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from betavae_core.architectures import ArchitectureRequest, EncoderOutput
from betavae_core.errors import ConfigError

OPTIONS = {"hidden": [128], "dropout": 0.1, "normalise_input": True}
TARGET_SUM = 1e4


class _Block(nn.Module):
    """Linear (with covariates appended) -> LayerNorm -> ReLU -> Dropout."""

    def __init__(self, n_in: int, n_out: int, n_cov: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in + n_cov, n_out)
        self.rest = nn.Sequential(nn.LayerNorm(n_out), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, h: torch.Tensor, cov: torch.Tensor | None) -> torch.Tensor:
        if cov is not None:
            h = torch.cat([h, cov], dim=1)
        return self.rest(self.linear(h))


def _blocks(sizes: list[int], n_cov: int, dropout: float) -> nn.ModuleList:
    pairs = zip(sizes[:-1], sizes[1:], strict=True)
    return nn.ModuleList(_Block(a, b, n_cov, dropout) for a, b in pairs)


class ExpressionEncoder(nn.Module):
    def __init__(self, request: ArchitectureRequest, hidden: list[int], dropout: float,
                 normalise_input: bool = True) -> None:
        super().__init__()
        self.normalise_input = normalise_input
        n_genes = math.prod(request.event_shape)
        self.blocks = _blocks([n_genes, *hidden], request.covariate_dim, dropout)
        self.head = nn.Linear(hidden[-1], 2 * request.latent_dim)

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> EncoderOutput:
        if self.normalise_input:  # counts per 10,000: depth left to the library offset
            x = x * (TARGET_SUM / x.sum(dim=1, keepdim=True).clamp_min(1.0))
        h = torch.sign(x) * torch.log1p(x.abs())
        for block in self.blocks:
            h = block(h, covariates)
        mu, logvar = self.head(h).chunk(2, dim=1)
        return EncoderOutput(mu, logvar.clamp(-12.0, 8.0), h)


class ExpressionDecoder(nn.Module):
    def __init__(self, request: ArchitectureRequest, hidden: list[int], dropout: float) -> None:
        super().__init__()
        self.out_shape = (request.params_per_element, *request.event_shape)
        sizes = [request.latent_dim, *reversed(hidden)]
        self.blocks = _blocks(sizes, request.covariate_dim, dropout=0.0)
        self.out = nn.Linear(sizes[-1], math.prod(self.out_shape))
        # A gene-wise log-scale offset per batch: a batch that scales genes (the usual
        # technical effect) is matched exactly, so z need not carry it.
        self.batch_offset = (nn.Linear(request.covariate_dim, math.prod(self.out_shape),
                                       bias=False) if request.covariate_dim else None)

    def forward(self, z: torch.Tensor, covariates: torch.Tensor | None = None,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        h = z
        for block in self.blocks:
            h = block(h, covariates)
        out = self.out(h)
        if self.batch_offset is not None and covariates is not None:
            out = out + self.batch_offset(covariates)
        return out.view(z.shape[0], *self.out_shape)


def build_expression_mlp(request: ArchitectureRequest) -> tuple[nn.Module, nn.Module]:
    """Options: `hidden` (list of layer sizes, default [128]), `dropout` (encoder, 0.1),
    `normalise_input` (encoder reads log1p of counts per 10,000; default true, false for
    data that are already normalised)."""
    unknown = set(request.options) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"unknown expression_mlp options {sorted(unknown)}; it takes "
                          f"{sorted(OPTIONS)}.")
    if request.skip != "none":
        raise ConfigError("expression_mlp has no skip connections; use --skip none.")
    raw = request.options.get("hidden", OPTIONS["hidden"])
    hidden = [int(h) for h in (raw if isinstance(raw, (list, tuple)) else [raw])]
    dropout = float(request.options.get("dropout", OPTIONS["dropout"]))
    normalise = bool(request.options.get("normalise_input", OPTIONS["normalise_input"]))
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"expression_mlp hidden sizes must be positive; got {hidden}.")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"expression_mlp dropout must lie in [0, 1); got {dropout}.")
    return (ExpressionEncoder(request, hidden, dropout, normalise),
            ExpressionDecoder(request, hidden, dropout))

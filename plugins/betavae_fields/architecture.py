"""A convolutional encoder/decoder with periodic (circular) padding for L x L lattices.

Every convolution wraps around the edges, so the networks see the torus the Monte Carlo
data live on: a configuration and its translates are treated alike, and no site is an
edge site. The encoder halves the lattice twice with strided convolutions; the decoder
mirrors it with nearest-neighbour upsampling followed by circular convolutions (PyTorch's
transposed convolutions do not support circular padding).
"""

from __future__ import annotations

import torch
from torch import nn

from betavae_core import ArchitectureRequest, ConfigError, EncoderOutput, SkipGate

from .lattice import lattice_size

EMBEDDINGS = ("identity", "circle")


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, padding_mode="circular")


def _embed(x: torch.Tensor, embedding: str) -> torch.Tensor:
    """(n, L, L) -> (n, channels, L, L): angles become (cos, sin), fields stay as they are."""
    if embedding == "circle":
        return torch.stack([torch.cos(x), torch.sin(x)], dim=1)
    return x[:, None]


class LatticeEncoder(nn.Module):
    """(n, L, L) -> circular convs, two stride-2 stages -> dense -> (mu, logvar)."""

    def __init__(self, request: ArchitectureRequest, channels: int, hidden: int,
                 embedding: str) -> None:
        super().__init__()
        L = request.event_shape[0]
        self.embedding = embedding
        c_in = 2 if embedding == "circle" else 1
        self.convs = nn.Sequential(
            _conv(c_in, channels), nn.SiLU(),
            _conv(channels, channels, stride=2), nn.SiLU(),
            _conv(channels, 2 * channels, stride=2), nn.SiLU(),
        )
        flat = 2 * channels * (L // 4) ** 2
        self.dense = nn.Sequential(nn.Linear(flat + request.covariate_dim, hidden), nn.SiLU())
        self.head = nn.Linear(hidden, 2 * request.latent_dim)

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> EncoderOutput:
        h = self.convs(_embed(x, self.embedding)).flatten(1)
        if covariates is not None:
            h = torch.cat([h, covariates], dim=1)
        h = self.dense(h)
        mu, logvar = self.head(h).chunk(2, dim=1)
        return EncoderOutput(mu, logvar, h)  # BetaVAE.encode clamps logvar


class LatticeDecoder(nn.Module):
    """z (+ covariates) -> dense -> (2c, L/4, L/4) -> upsample + circular convs ->
    (n, params_per_element, L, L)."""

    def __init__(self, request: ArchitectureRequest, channels: int, hidden: int) -> None:
        super().__init__()
        L = request.event_shape[0]
        self.grid = (2 * channels, L // 4, L // 4)
        self.first = nn.Linear(request.latent_dim + request.covariate_dim, hidden)
        self.dense = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * channels * (L // 4) ** 2),
                                   nn.SiLU())
        self.convs = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(2 * channels, channels), nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(channels, channels), nn.SiLU(),
            _conv(channels, request.params_per_element),
        )
        self.skip_gate: SkipGate | None = None
        if request.skip != "none":
            self.skip_gate = SkipGate(request.skip, request.skip_gate)
            self.skip_proj = nn.Linear(hidden, hidden)

    def forward(self, z: torch.Tensor, covariates: torch.Tensor | None = None,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        h = z if covariates is None else torch.cat([z, covariates], dim=1)
        h = self.first(h)
        if self.skip_gate is not None and skip is not None:
            h = h + self.skip_gate() * self.skip_proj(skip)
        h = self.dense(h).view(z.shape[0], *self.grid)
        return self.convs(h)


def build_lattice_conv(request: ArchitectureRequest, embedding: str = "identity") -> tuple[
        nn.Module, nn.Module]:
    """Encoder and decoder for L x L items; `request.options` may set `channels` (default
    32) and `hidden` (default 256), the options the plugin's record declares."""
    return _build(request, embedding, **request.options)


def _build(request: ArchitectureRequest, embedding: str, channels: int = 32,
           hidden: int = 256) -> tuple[nn.Module, nn.Module]:
    channels, hidden = int(channels), int(hidden)
    if channels < 1 or hidden < 1:
        raise ConfigError(f"channels and hidden must be >= 1; got {channels}, {hidden}.")
    if embedding not in EMBEDDINGS:
        raise ConfigError(f"embedding must be one of {EMBEDDINGS}; got {embedding!r}.")
    L = lattice_size(request.event_shape)
    if L < 8 or L % 4:
        raise ConfigError(
            f"lattice_conv halves the lattice twice, so it needs L >= 8 and divisible by 4; "
            f"got L={L}. Use L = 8, 12, 16, ... or the mlp architecture."
        )
    return (LatticeEncoder(request, channels, hidden, embedding),
            LatticeDecoder(request, channels, hidden))

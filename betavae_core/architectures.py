"""Encoder/decoder building blocks: the request an architecture is built from, the
encoder's output, and the core's multilayer perceptron with optional gated skips and,
for a multi-rate model, every layer's units scaled by a function of log beta."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from .errors import ConfigError

SKIP_MODES = ("none", "fixed", "learned")


@dataclass(frozen=True)
class ArchitectureRequest:
    """What an architecture must build for: shapes come from the data, never hard-coded.

    `skip` asks for decoder skip connections from the encoder's hidden features ("none",
    "fixed" gate of value `skip_gate`, or a "learned" gate starting at `skip_gate`).
    `beta_input` says that the last covariate column is log beta scaled to [-1, 1] (a
    multi-rate model); an architecture may use it beyond an input column, as the core's
    mlp does (`BetaGates`), or ignore it. A request with no covariate columns has no
    beta to read (a network built to see none, as `ivae_mlp`'s decoder) and gets no gates.
    """

    event_shape: tuple[int, ...]
    latent_dim: int
    params_per_element: int
    covariate_dim: int = 0
    skip: str = "none"
    skip_gate: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
    beta_input: bool = False


class EncoderOutput(NamedTuple):
    """Posterior parameters (n, d) and the hidden features a skip connection may reuse."""

    mu: torch.Tensor
    logvar: torch.Tensor
    features: torch.Tensor | None


class SkipGate(nn.Module):
    """Scales skip features by a fixed or learned gate in [0, 1]."""

    def __init__(self, mode: str, value: float) -> None:
        super().__init__()
        if mode not in SKIP_MODES:
            raise ConfigError(f"skip must be one of {SKIP_MODES}; got {mode!r}.")
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"skip_gate must lie in [0, 1]; got {value}.")
        self.mode = mode
        v = min(max(value, 1e-4), 1 - 1e-4)
        logit = torch.tensor(math.log(v / (1 - v)))
        self.logit = nn.Parameter(logit, requires_grad=mode == "learned")
        self.fixed = value

    def forward(self) -> torch.Tensor:
        if self.mode == "fixed":
            return torch.tensor(self.fixed, device=self.logit.device)
        return torch.sigmoid(self.logit)


class BetaGates(nn.Module):
    """Per-unit scales, affine in log beta, for each layer of a multi-rate mlp.

    After the response hypernetwork of Bae, Zhang & Grosse (2023, MR-VAE): a layer's
    pre-activations are scaled unit by unit by 1 + w * eta + b, eta the scaled log beta
    in [-1, 1], w and b learned per unit; every layer is scaled, hidden and output (the
    encoder's (mu, logvar) head, the decoder's likelihood parameters). w and b start at
    0, so every scale starts at 1 (the network starts as it would with log beta as an
    input column only) and no random numbers are drawn (the other weights start as
    without it). Affine, not the paper's sigmoid: a sigmoid gate starts at 1/2, halving
    every layer's signal, and on `benchmarks/multirate.py` (shapes) it kept a latent
    unit shut that separate fits open, even when the one fit's range was as narrow as
    [0.5, 0.6]; the affine scale opened it.
    """

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.widths = list(widths)
        # all layers' w and b in one vector each: one pass for every layer
        self.weight = nn.Parameter(torch.zeros(sum(widths)))
        self.bias = nn.Parameter(torch.zeros(sum(widths)))

    def forward(self, eta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each layer's scales, (n, width) apiece, for eta of shape (n, 1)."""
        return torch.addcmul(1 + self.bias, eta, self.weight).split(self.widths, dim=1)


def _mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), activation()]
    return nn.Sequential(*layers)


def _run_body(body: nn.Sequential, h: torch.Tensor, gates: tuple[torch.Tensor, ...] | None
              ) -> torch.Tensor:
    """`body` (pairs of linear layer and activation), each pre-activation scaled by its
    layer's gates when given."""
    if gates is None:
        return body(h)
    for i in range(0, len(body), 2):
        h = body[i + 1](body[i](h) * gates[i // 2])
    return h


def _gated(request: ArchitectureRequest) -> bool:
    """Whether an mlp network gets `BetaGates`: beta is its last covariate column."""
    return request.beta_input and request.covariate_dim >= 1


def _eta(covariates: torch.Tensor | None) -> torch.Tensor:
    """The scaled log beta: the last covariate column of a multi-rate model."""
    if covariates is None:
        raise ConfigError("a beta-conditioned mlp needs log beta as its last covariate "
                          "column; call it through BetaVAE (encode/decode with beta=).")
    return covariates[:, -1:]


class MLPEncoder(nn.Module):
    """Flattens an item, appends covariates, and maps it to (mu, logvar)."""

    def __init__(self, request: ArchitectureRequest, hidden: list[int]) -> None:
        super().__init__()
        n_in = math.prod(request.event_shape) + request.covariate_dim
        self.body = _mlp([n_in, *hidden], nn.SiLU)
        self.head = nn.Linear(hidden[-1], 2 * request.latent_dim)
        # the hidden layers and the head (mu, logvar)
        widths = [*hidden, 2 * request.latent_dim]
        self.gates = BetaGates(widths) if _gated(request) else None

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> EncoderOutput:
        gates = None if self.gates is None else self.gates(_eta(covariates))
        h = x.flatten(1)
        if covariates is not None:
            h = torch.cat([h, covariates], dim=1)
        h = _run_body(self.body, h, gates)
        out = self.head(h)
        if gates is not None:
            out = out * gates[-1]
        mu, logvar = out.chunk(2, dim=1)
        return EncoderOutput(mu, logvar, h)


class MLPDecoder(nn.Module):
    """Maps z (and covariates, and optionally gated encoder features) to likelihood
    parameters of shape (n, params_per_element, *event_shape)."""

    def __init__(self, request: ArchitectureRequest, hidden: list[int]) -> None:
        super().__init__()
        self.out_shape = (request.params_per_element, *request.event_shape)
        sizes = [request.latent_dim + request.covariate_dim, *reversed(hidden)]
        self.first = nn.Linear(sizes[0], sizes[1])
        self.body = _mlp(sizes[1:], nn.SiLU)
        self.out = nn.Linear(sizes[-1], math.prod(self.out_shape))
        self.act = nn.SiLU()
        self.skip_gate: SkipGate | None = None
        if request.skip != "none":
            self.skip_gate = SkipGate(request.skip, request.skip_gate)
            self.skip_proj = nn.Linear(hidden[-1], sizes[1])
        # the hidden layers and the output layer
        widths = [*sizes[1:], math.prod(self.out_shape)]
        self.gates = BetaGates(widths) if _gated(request) else None

    def forward(
        self,
        z: torch.Tensor,
        covariates: torch.Tensor | None = None,
        skip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        gates = None if self.gates is None else self.gates(_eta(covariates))
        h = z if covariates is None else torch.cat([z, covariates], dim=1)
        h = self.first(h)
        if self.skip_gate is not None and skip is not None:
            h = h + self.skip_gate() * self.skip_proj(skip)
        if gates is not None:
            h = h * gates[0]
        h = _run_body(self.body, self.act(h), None if gates is None else gates[1:])
        out = self.out(h)
        if gates is not None:
            out = out * gates[-1]
        return out.view(z.shape[0], *self.out_shape)


def build_mlp(request: ArchitectureRequest) -> tuple[nn.Module, nn.Module]:
    """The default architecture; option `hidden` lists hidden sizes (default [256, 128])."""
    raw = request.options.get("hidden", [256, 128])
    hidden = [int(h) for h in (raw if isinstance(raw, (list, tuple)) else [raw])]
    unknown = set(request.options) - {"hidden"}
    if unknown:
        raise ConfigError(f"unknown mlp options {sorted(unknown)}; the mlp takes 'hidden'.")
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"mlp hidden sizes must be positive integers; got {hidden}.")
    return MLPEncoder(request, hidden), MLPDecoder(request, hidden)

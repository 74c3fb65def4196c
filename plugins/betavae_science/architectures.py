"""The `ivae_mlp` architecture: the core's MLP with the covariates u kept out of the decoder.

With a conditional prior p(z|u) this is the iVAE of Khemakhem et al. (2020): encoder
q(z|x, u), prior p(z|u), decoder p(x|z). The decoder must not see u: if it did, it could
undo any per-segment rescaling of z (z' = z / λ(u) with f'(z', u) = f(λ(u) z')), every
segment's prior would become the same N(0, I), and the rotation symmetry the conditional
prior is there to break would be back.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from betavae_core import ArchitectureRequest, build_mlp


class CovariateFreeDecoder(nn.Module):
    """Wraps a decoder built for no covariates; drops any it is handed."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.inner = decoder
        self.skip_gate = getattr(decoder, "skip_gate", None)

    def forward(self, z: torch.Tensor, covariates: torch.Tensor | None = None,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner(z, None, skip)


def build_ivae_mlp(request: ArchitectureRequest) -> tuple[nn.Module, nn.Module]:
    """The core MLP's encoder (fed x and u) and its decoder built for z alone (option
    `hidden`, as the `mlp` architecture)."""
    encoder, _ = build_mlp(request)
    _, decoder = build_mlp(dataclasses.replace(request, covariate_dim=0))
    return encoder, CovariateFreeDecoder(decoder)

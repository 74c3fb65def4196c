"""Property prediction from the latent space and latent optimisation toward a target.

The property head lives in the crystal likelihood and reads the decoder's output for z,
so it is a function of z. Steering a prior draw z0 toward a target value t minimises

    (f(z) - t)^2 / (2 s^2) + prior_weight * |(z - z0) / sigma_prior|^2 / 2

by Adam on z: the first term is the head's Gaussian likelihood of the target (s its
learned residual scale), the second keeps each draw near where it started. Anchoring at
z0 rather than at the prior's mode matters: the mode-anchored optimum is one point of
the target's level set, so every draw would collapse onto the same structure; anchored,
each draw moves the least it must, and the candidates stay as diverse as the prior's.
"""

from __future__ import annotations

from typing import Any

import torch

import betavae_core as bv
from betavae_core import ConfigError


def property_info(attrs: dict[str, Any]) -> dict[str, Any] | None:
    return attrs.get("property") or None


@torch.no_grad()
def predict(model: Any, params: torch.Tensor, attrs: dict[str, Any],
            batch_size: int = 8192) -> torch.Tensor | None:
    """Predicted property (in its own units) for decoder output, or None."""
    info = property_info(attrs)
    if info is None or getattr(model.likelihood, "property_head", None) is None:
        return None
    parts = [model.likelihood.property_prediction(params[sl].to(model.device))
             for sl in bv.batches(len(params), batch_size)]
    return torch.cat(parts).cpu() * info["std"] + info["mean"]


def optimise_latents(model: Any, z: torch.Tensor, target: float, attrs: dict[str, Any],
                     steps: int = 200, lr: float = 0.05, prior_weight: float = 1.0
                     ) -> torch.Tensor:
    """z moved toward decoding to structures whose predicted property is `target`."""
    info = property_info(attrs)
    if info is None or getattr(model.likelihood, "property_head", None) is None:
        raise ConfigError("this model has no property head: train on data with a property "
                          "(e.g. a CSV with heat_ref or formation_energy, or -o "
                          "property=COLUMN) to generate toward a target.")
    if int(steps) < 1 or not float(lr) > 0:
        raise ConfigError(f"target_steps must be >= 1 and target_lr > 0; got {steps}, {lr}.")
    goal = (float(target) - info["mean"]) / info["std"]
    scale = model.likelihood.property_log_scale.detach().clamp(-6.0, 3.0).exp()
    prior = model.prior_scale().detach()
    start = z.detach().clone().to(model.device)
    z = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=float(lr))
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(int(steps)):
            pred = model.likelihood.property_prediction(model.decoder(z, None, None))
            loss = ((pred - goal) ** 2 / (2 * scale**2)
                    + 0.5 * float(prior_weight) * (((z - start) / prior) ** 2).sum(dim=1)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p, flag in zip(model.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
    return z.detach()

"""Judging configurations by their physics: observables, decoding around Monte Carlo
configurations, and distances between generated and Monte Carlo distributions."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

import betavae_core as bv

from . import montecarlo as mc


def observables(model: str, configs: np.ndarray, control: float | np.ndarray,
                attrs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(energy per site, |magnetisation| per site) of configurations of `model`."""
    configs = np.asarray(configs)
    if model == "ising":
        energy, m = mc.ising_observables(configs)
    elif model == "xy":
        energy, m = mc.xy_observables(configs)
    else:
        kappa = np.broadcast_to(np.asarray(control, dtype=np.float64), (len(configs),))
        energy, m = mc.phi4_observables(configs, kappa, float(attrs.get("lam", 1.0)))
    return np.asarray(energy, dtype=np.float64), np.abs(np.asarray(m, dtype=np.float64))


#: How `decode_around` picks z for an item: a draw from q(z | x), or its mean.
POSTERIORS = ("sample", "mean")


def decode_around(model: bv.BetaVAE, data: bv.DomainData, seed: int = 0,
                  posterior: str = "sample") -> tuple[np.ndarray, np.ndarray]:
    """For each item: z ~ q(z | x) (or z = its mean), then a configuration drawn from
    p(x | z).

    Returns (configurations (n, L, L), latents (n, d)). Sampling around the encodings of
    Monte Carlo configurations at one temperature draws from the model's aggregate
    posterior at that temperature, so no temperature conditioning is needed. With
    `posterior="mean"` the decoder alone supplies the fluctuations: a broad posterior
    (a latent that knows the temperature only roughly) no longer mixes in configurations
    of neighbouring temperatures.
    """
    if posterior not in POSTERIORS:
        raise bv.ConfigError(f"posterior must be one of {POSTERIORS}; got {posterior!r}.")
    mu, logvar = bv.encode(model, data)
    z = mu.astype(np.float32)
    if posterior == "sample":
        eps = np.random.default_rng(seed).standard_normal(mu.shape)
        z = (mu + eps * np.exp(0.5 * logvar)).astype(np.float32)
    decoded = bv.decode(model, z, covariates=data.covariates, context=data.context or None,
                        mean=False, sample=True, seed=seed)
    return decoded.sample.numpy(), z


def compare(generated: np.ndarray, reference: np.ndarray, model: str, control: float,
            attrs: dict[str, Any]) -> dict[str, float]:
    """Energy and |m| of generated vs reference configurations at one control value:
    means, and the 1-Wasserstein distance between their distributions."""
    return compare_observables(observables(model, generated, control, attrs),
                               observables(model, reference, control, attrs))


def compare_observables(generated: tuple[np.ndarray, np.ndarray],
                        reference: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """`compare` on (energy, |m|) pairs already computed."""
    (e_gen, m_gen), (e_ref, m_ref) = generated, reference
    return {
        "n": int(len(e_gen)),
        "energy_mc": float(e_ref.mean()),
        "energy_generated": float(e_gen.mean()),
        "abs_m_mc": float(m_ref.mean()),
        "abs_m_generated": float(m_gen.mean()),
        "w1_energy": float(wasserstein_distance(e_gen, e_ref)),
        "w1_abs_m": float(wasserstein_distance(m_gen, m_ref)),
    }


def nearest_controls(grid: np.ndarray, wanted: list[float]) -> list[float]:
    """The grid values closest to each wanted value, without repeats, in order."""
    chosen: list[float] = []
    for w in wanted:
        c = float(grid[np.argmin(np.abs(grid - w))])
        if c not in chosen:
            chosen.append(c)
    return chosen

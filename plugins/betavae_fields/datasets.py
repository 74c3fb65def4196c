"""Named datasets of Monte Carlo configurations (ising2d, xy2d, phi4_2d).

Each configuration carries its control parameter (temperature, or kappa for phi^4) and
its exact observables as factors, so evaluations can ask which latent learned what.
Ensembles are cached on disk keyed by every parameter (see `cache.py`). `ensemble_data`
turns any ensemble (sampled, cached or read by `loaders.py`) into `DomainData`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from betavae_core import ConfigError, DomainData

from . import montecarlo as mc
from .cache import cached_ensemble
from .plugin import DOMAIN

#: What each lattice model trains with by default: likelihood and architecture.
MODEL_DEFAULTS: dict[str, dict[str, str]] = {
    "ising": {"likelihood": "spin_multiscale", "architecture": "lattice_conv"},
    "xy": {"likelihood": "von_mises", "architecture": "lattice_conv_angles"},
    "phi4": {"likelihood": "gaussian", "architecture": "lattice_conv"},
}


def control_grid(low: float, high: float, count: int, name: str) -> list[float]:
    """`count` evenly spaced values in [low, high], all > 0."""
    if int(count) < 1:
        raise ConfigError(f"n_{name}s must be >= 1; got {count}.")
    if not (float(low) > 0 and float(high) > 0):
        raise ConfigError(f"{name}s must be > 0; got the range [{low}, {high}].")
    if float(high) < float(low):
        raise ConfigError(f"the {name} range is reversed: [{low}, {high}].")
    return [round(float(v), 6) for v in np.linspace(float(low), float(high), int(count))]


def ensemble_data(ens: mc.Ensemble, source: str, extra: dict[str, Any] | None = None
                  ) -> DomainData:
    """A `DomainData` of one ensemble: configurations, control, energy and magnetisation."""
    defaults = MODEL_DEFAULTS[ens.model]
    m = np.asarray(ens.magnetization, dtype=np.float64)
    factors = np.stack([ens.control, ens.energy, m, np.abs(m)], axis=1)
    return DomainData(
        x=np.asarray(ens.configs, dtype=np.float32),
        domain=DOMAIN,
        likelihood=defaults["likelihood"],
        architecture=defaults["architecture"],
        factors=factors,
        factor_names=(ens.control_name, "energy", "magnetization", "abs_magnetization"),
        factor_discrete=(False,) * 4,
        metadata={ens.control_name: np.asarray(ens.control, dtype=np.float64)},
        attrs={
            "source": source, "model": ens.model, "control_name": ens.control_name,
            "L": int(ens.configs.shape[-1]), "params": ens.params,
            "tau": {str(k): float(v) for k, v in ens.tau.items()},
            "image": ens.model != "xy", **(extra or {}),
        },
        generator="lattice",
    )


def load_ising2d(L: int = 16, t_min: float = 1.6, t_max: float = 3.2, n_temperatures: int = 21,
                 samples: int = 200, seed: int = 0) -> DomainData:
    """2D Ising configurations (+-1) on an L x L torus across a temperature grid."""
    temps = control_grid(t_min, t_max, n_temperatures, "temperature")
    params = {"L": int(L), "temperatures": temps, "samples": int(samples), "seed": int(seed)}
    ens = cached_ensemble("ising", params, lambda: mc.sample_ising(
        int(L), temps, int(samples), seed=int(seed)))
    return ensemble_data(ens, "betavae_fields.ising2d", {"tc_exact": mc.TC_ISING})


def load_xy2d(L: int = 16, t_min: float = 0.4, t_max: float = 1.6, n_temperatures: int = 13,
              samples: int = 200, seed: int = 0) -> DomainData:
    """2D XY configurations (angles in radians) across a temperature grid."""
    temps = control_grid(t_min, t_max, n_temperatures, "temperature")
    params = {"L": int(L), "temperatures": temps, "samples": int(samples), "seed": int(seed)}
    ens = cached_ensemble("xy", params, lambda: mc.sample_xy(
        int(L), temps, int(samples), seed=int(seed)))
    return ensemble_data(ens, "betavae_fields.xy2d")


def load_phi4_2d(L: int = 16, k_min: float = 0.25, k_max: float = 0.45, n_kappas: int = 11,
                 samples: int = 200, lam: float = 1.0, seed: int = 0) -> DomainData:
    """2D phi^4 field configurations across a grid of the hopping parameter kappa."""
    kappas = control_grid(k_min, k_max, n_kappas, "kappa")
    params = {"L": int(L), "kappas": kappas, "samples": int(samples), "lam": float(lam),
              "seed": int(seed)}
    ens = cached_ensemble("phi4", params, lambda: mc.sample_phi4(
        int(L), kappas, int(samples), seed=int(seed), lam=float(lam)))
    return ensemble_data(ens, "betavae_fields.phi4_2d", {"lam": float(lam)})


def _sizes(text: str | int | list) -> list[int]:
    """"16,24,32" (or [16, 24, 32], as the command line parses it) -> [16, 24, 32]: at
    least two distinct sides."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        sizes = sorted({int(s) for s in items})
    except ValueError as exc:
        raise ConfigError(f"sizes must be comma-separated lattice sides like 16,24,32; got "
                          f"{text!r}.") from exc
    if len(sizes) < 2:
        raise ConfigError(f"ising2d_sizes needs at least 2 distinct lattice sizes; got "
                          f"{sizes}. Use ising2d for one size.")
    return sizes


def load_ising2d_sizes(sizes: str = "16,24,32", t_min: float = 1.6, t_max: float = 3.2,
                       n_temperatures: int = 21, samples: int = 200, seed: int = 0
                       ) -> DomainData:
    """2D Ising configurations of several sizes on one temperature grid, for one model:
    each padded with 0 to the largest L (`multisize.pad`), L per item in metadata and
    context, for the `lattice_fcn` architecture and the `spin_padded` likelihood."""
    from .multisize import pad

    temps = control_grid(t_min, t_max, n_temperatures, "temperature")
    ensembles = []
    for L in _sizes(sizes):
        params = {"L": L, "temperatures": temps, "samples": int(samples), "seed": int(seed)}
        ensembles.append(cached_ensemble("ising", params, lambda L=L: mc.sample_ising(
            L, temps, int(samples), seed=int(seed))))
    x, side = pad([e.configs for e in ensembles])
    control = np.concatenate([e.control for e in ensembles])
    m = np.concatenate([e.magnetization for e in ensembles])
    energy = np.concatenate([e.energy for e in ensembles])
    return DomainData(
        x=x, domain=DOMAIN, likelihood="spin_padded", architecture="lattice_fcn",
        factors=np.stack([control, energy, m, np.abs(m)], axis=1),
        factor_names=("temperature", "energy", "magnetization", "abs_magnetization"),
        factor_discrete=(False,) * 4,
        metadata={"temperature": control, "L": side},
        context={"L": side.astype(np.int64)},
        attrs={"source": "betavae_fields.ising2d_sizes", "model": "ising",
               "control_name": "temperature", "L": int(x.shape[-1]),
               "sizes": sorted({int(s) for s in side}), "tc_exact": mc.TC_ISING,
               "image": True},
    )

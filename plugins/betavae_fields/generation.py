"""The `lattice` generator: configurations from the prior, or at a chosen temperature.

At a chosen temperature (`-g temperature=2.27`, or `-g kappa=...` for phi^4) the generator
runs Monte Carlo there (cached), encodes those configurations, draws z around each
encoding and decodes a new configuration, then reports how the energy and |m|
distributions compare with Monte Carlo's. Without one it decodes prior draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from betavae_core.checkpoint import atomic_write, write_array, write_json
from betavae_core.data import DomainData
from betavae_core.errors import ConfigError
from betavae_core.plots import save_figure
from betavae_core.results import CandidateReport, GeneratedSamples

from . import montecarlo as mc
from . import physics
from .cache import cached_ensemble
from .datasets import ensemble_data
from .evaluations import energy_histograms

SAMPLERS = {"ising": mc.sample_ising, "xy": mc.sample_xy, "phi4": mc.sample_phi4}


def monte_carlo_at(attrs: dict[str, Any], control: float, n: int, seed: int) -> DomainData:
    """n Monte Carlo configurations of the training data's model and L at one control value."""
    kind, L = attrs.get("model"), attrs.get("L")
    if kind not in SAMPLERS or not L:
        raise ConfigError("generating at a chosen temperature needs a model fitted to a "
                          "betavae_fields dataset (its config records the lattice model and L).")
    if not control > 0:
        raise ConfigError(f"{attrs.get('control_name', 'temperature')} must be > 0; got "
                          f"{control}.")
    params: dict[str, Any] = {"L": int(L), "controls": [float(control)], "samples": int(n),
                              "seed": int(seed)}
    extra: dict[str, Any] = {}
    if kind == "phi4":
        extra["lam"] = params["lam"] = float(attrs.get("lam", 1.0))
    ens = cached_ensemble(kind, params, lambda: SAMPLERS[kind](
        int(L), [float(control)], int(n), seed=int(seed), **extra))
    return ensemble_data(ens, f"betavae_fields.generation.{kind}", extra)


def generate_lattice(samples: GeneratedSamples, out_dir: Path, temperature: float | None = None,
                     kappa: float | None = None, seed: int = 1) -> CandidateReport:
    """Write configs.npy, latents.npy, observables.npz and summary.json (+ a histogram)."""
    attrs, kind = samples.attrs, samples.attrs.get("model", "ising")
    control = temperature if temperature is not None else kappa
    summary: dict[str, Any] = {"model": kind, "n": int(len(samples.sample))}
    files: list[str] = []
    if control is None:
        configs, latents = samples.sample.numpy(), samples.z.numpy()
        summary["how"] = "decoded prior draws"
        # phi^4's action needs kappa; without one only the configurations are written
        obs = None if kind == "phi4" else physics.observables(kind, configs, np.nan, attrs)
    else:
        reference = monte_carlo_at(attrs, float(control), len(samples.sample), seed)
        configs, latents = physics.decode_around(samples.model, reference, seed=seed)
        name = attrs.get("control_name", "temperature")
        summary.update({"how": f"decoded around Monte Carlo configurations at {name} "
                               f"{control:g}", name: float(control)})
        obs = physics.observables(kind, configs, control, attrs)
        ref_obs = physics.observables(kind, reference.x.numpy(), control, attrs)
        summary["physics"] = physics.compare_observables(obs, ref_obs)
        save_figure(energy_histograms({float(control): (obs[0], ref_obs[0])}, name),
                    out_dir / "energy_histogram.png")
        files.append("energy_histogram.png")
    stored = configs.astype(np.int8) if kind == "ising" else configs.astype(np.float32)
    write_array(out_dir / "configs.npy", stored)
    write_array(out_dir / "latents.npy", latents.astype(np.float32))
    files += ["configs.npy", "latents.npy"]
    if obs is not None:
        energy, abs_m = obs
        atomic_write(out_dir / "observables.npz", lambda p: _savez(p, energy=energy,
                                                                    abs_magnetization=abs_m))
        files.append("observables.npz")
        summary.update({"energy_mean": float(energy.mean()), "energy_std": float(energy.std()),
                        "abs_m_mean": float(abs_m.mean())})
    if kind == "ising":
        summary["valid_fraction"] = float(np.isin(configs, (-1, 1)).reshape(
            len(configs), -1).all(axis=1).mean())
    write_json(out_dir / "summary.json", summary)
    files.append("summary.json")
    return CandidateReport(objects=stored, summary=summary, files=files)


def _savez(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as fh:
        np.savez(fh, **arrays)

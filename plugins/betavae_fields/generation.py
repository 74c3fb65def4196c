"""The `lattice` generator: configurations from the prior, or at a chosen temperature.

The record asks the core for prior latents only (`samples="latents"`) and decodes what it
keeps itself, so nothing is decoded to be thrown away:

- without a control value, each prior draw is decoded to one configuration;
- at a chosen temperature (`-g temperature=2.27`, or `-g kappa=...` for phi^4), z is
  drawn around the encodings of Monte Carlo configurations at that temperature (the
  model's aggregate posterior there) and decoded, and the energy and |m| distributions
  are compared with those configurations'. If the run was trained at that temperature,
  the configurations are its training split's there (`run.train`): no new Monte Carlo.
  Otherwise, or when the run's data cannot be loaded, Monte Carlo samples them (cached).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import betavae_core as bv
from betavae_core import CandidateReport, ConfigError, DomainData, GeneratedSamples, RunContext

from . import montecarlo as mc
from . import physics
from .cache import cached_ensemble
from .datasets import ensemble_data
from .evaluations import energy_histograms

SAMPLERS = {"ising": mc.sample_ising, "xy": mc.sample_xy, "phi4": mc.sample_phi4}
#: Sampler parameters that record the control grid a dataset was drawn on.
GRID_KEYS = ("temperatures", "kappas")


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


def training_at(run: RunContext, control: float) -> DomainData | None:
    """The run's training configurations at `control` (None when the run was not trained
    there, or its data cannot be loaded)."""
    params = run.attrs.get("params", {})
    grid = next((params[k] for k in GRID_KEYS if k in params), None)
    if grid is not None and not np.isclose(grid, control, rtol=1e-6, atol=0.0).any():
        return None  # the recorded grid says so: no need to load the training data
    train = run.train
    name = run.attrs.get("control_name", "temperature")
    if train is None or name not in train.metadata:
        return None
    values = np.asarray(train.metadata[name], dtype=np.float64)
    rows = np.flatnonzero(np.isclose(values, control, rtol=1e-6, atol=0.0))
    return train.subset(rows) if len(rows) else None


def configurations_at(run: RunContext, control: float, n: int
                      ) -> tuple[DomainData, DomainData, str]:
    """(n configurations to draw latents around, the reference to judge against, where
    they come from) at one control value, checked as the fit checked its data (shape,
    the likelihood's support) before the model meets them."""
    train = training_at(run, control)
    if train is None:
        reference = monte_carlo_at(run.attrs, control, n, run.seed)
        run.model.check_input(reference)
        return reference, reference, "new Monte Carlo configurations"
    run.model.check_input(train)  # loaded again from its source, which may have changed
    rows = run.numpy_rng().choice(len(train), size=n, replace=n > len(train))
    return train.subset(rows), train, "the training configurations"


def chosen_control(attrs: dict[str, Any], temperature: float | None,
                   kappa: float | None) -> float | None:
    """The control value asked for (None: generate from the prior), checked against the
    run's lattice model."""
    if temperature is not None and kappa is not None:
        raise ConfigError("give -g temperature=T or -g kappa=K, not both.")
    given, value = ("temperature", temperature) if kappa is None else ("kappa", kappa)
    if value is None:
        return None
    name = attrs.get("control_name", given)
    if name != given:
        raise ConfigError(f"this run's lattice model ({attrs.get('model')}) is controlled by "
                          f"{name}, not {given}: use -g {name}=VALUE.")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number; got {value!r}.") from None
    if not value > 0:
        raise ConfigError(f"{name} must be > 0; got {value}.")
    return value


def decode_prior(run: RunContext, samples: GeneratedSamples) -> tuple[np.ndarray, np.ndarray]:
    """(one configuration per prior draw, the draws), decoded with the run's seed."""
    decoded = bv.decode(run.model, samples.z, covariates=samples.covariates, mean=False,
                        sample=True, seed=run.seed)
    return decoded.sample.numpy(), samples.z.numpy()


def generate_lattice(run: RunContext, samples: GeneratedSamples,
                     temperature: float | None = None, kappa: float | None = None,
                     posterior: str = "sample") -> CandidateReport:
    """Write configs.npy, latents.npy, observables.npz and summary.json (+ a histogram).
    `posterior` ("sample" or "mean"): how z is drawn around each encoding at a chosen
    temperature (see `physics.decode_around`)."""
    if posterior not in physics.POSTERIORS:
        raise ConfigError(f"-g posterior must be one of {physics.POSTERIORS}; got "
                          f"{posterior!r}.")
    attrs = run.attrs
    kind, out_dir = attrs.get("model", "ising"), Path(run.out_dir)
    control = chosen_control(attrs, temperature, kappa)
    summary: dict[str, Any] = {"model": kind, "n": int(samples.n)}
    files: list[str] = []
    if control is None:
        configs, latents = decode_prior(run, samples)
        summary["how"] = "decoded prior draws"
        # phi^4's action needs kappa; without one only the configurations are written
        obs = None if kind == "phi4" else physics.observables(kind, configs, np.nan, attrs)
    else:
        anchor, reference, where = configurations_at(run, control, samples.n)
        configs, latents = physics.decode_around(run.model, anchor, seed=run.seed,
                                                 posterior=posterior)
        name = attrs.get("control_name", "temperature")
        summary.update({"how": f"decoded around {where} at {name} {control:g} "
                               f"(z: posterior {posterior})",
                        name: control, "reference": where, "n_reference": len(reference)})
        obs = physics.observables(kind, configs, control, attrs)
        ref_obs = physics.observables(kind, reference.x.numpy(), control, attrs)
        summary["physics"] = physics.compare_observables(obs, ref_obs)
        bv.save_figure(energy_histograms({control: (obs[0], ref_obs[0])}, name),
                       out_dir / "energy_histogram.png")
        files.append("energy_histogram.png")
    stored = configs.astype(np.int8) if kind == "ising" else configs.astype(np.float32)
    bv.write_array(out_dir / "configs.npy", stored)
    bv.write_array(out_dir / "latents.npy", latents.astype(np.float32))
    files += ["configs.npy", "latents.npy"]
    if obs is not None:
        files.append(_write_observables(out_dir, *obs))
        energy, abs_m = obs
        summary.update({"energy_mean": float(energy.mean()), "energy_std": float(energy.std()),
                        "abs_m_mean": float(abs_m.mean())})
    if kind == "ising":
        summary["valid_fraction"] = float(np.isin(configs, (-1, 1)).reshape(
            len(configs), -1).all(axis=1).mean())
    bv.write_json(out_dir / "summary.json", summary)
    files.append("summary.json")
    return CandidateReport(objects=stored, summary=summary, files=files)


def _write_observables(out_dir: Path, energy: np.ndarray, abs_m: np.ndarray) -> str:
    def save(path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(fh, energy=energy, abs_magnetization=abs_m)

    bv.atomic_write(out_dir / "observables.npz", save)
    return "observables.npz"

"""Experiments that make the claims of "β is the price of information" measurable.

Each experiment fits small models, measures an effect, checks its direction, and writes
`result.json` plus PNG figures. `quick=True` runs a small configuration (seconds) that
the test suite uses to catch regressions; the default configuration makes the figures.

Importing this package is cheap: `EXPERIMENTS` holds only names, one-line help and
"module:function" targets (the `betavae experiment` help lists them at start-up); an
experiment's module, and with it torch, is imported when the experiment runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import betavae_core as bv

if TYPE_CHECKING:
    from .common import ExperimentResult


@dataclass(frozen=True)
class Experiment:
    """One experiment: its name, one line of help, and where its function lives."""

    name: str
    help: str
    target: str  # "module:function" in this package, imported when the experiment runs

    def run(self, quick: bool = False, seed: int = 0) -> ExperimentResult:
        module, _, func = self.target.partition(":")
        return getattr(self._module(), func)(quick=quick, seed=seed)

    def table(self, result: ExperimentResult) -> str | None:
        """The experiment's plain-text table of `result` (None if it has none)."""
        table = getattr(self._module(), "table", None)
        return None if table is None else table(result)

    def _module(self) -> Any:
        return importlib.import_module(f"{__name__}.{self.target.partition(':')[0]}")


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment("rate_distortion", "β sweep: rate falls and distortion rises with β "
               "(shapes and mixed_factors).", "rate_distortion:rate_distortion"),
    Experiment("decorrelation", "Off-diagonal aggregate covariance and total correlation "
               "fall as β rises.", "rate_distortion:decorrelation"),
    Experiment("collapse", "Posterior collapse at large β and with ungated skips; free bits, "
               "capacity and removing skips bring active units back.", "collapse:collapse"),
    Experiment("identifiability", "MCC vs the true sources and across 5 seeds: isotropic, "
               "anisotropic, Laplace and conditional priors.",
               "identifiability:identifiability"),
    Experiment("disentanglement", "MIG and DCI of β-VAE and β-TCVAE vs PCA and FastICA.",
               "disentanglement:disentanglement"),
]}


def run_experiment(name: str, out_dir: str | Path, quick: bool = False, seed: int = 0,
                   overwrite: bool = False) -> ExperimentResult:
    """Run one experiment and write its result.json and figures into `out_dir`.

    The folder follows the run-folder rules (`bv.output_folder`): a non-empty one is
    refused before anything runs, unless `overwrite` (which replaces only the files
    betavae wrote there); the files appear together when the experiment has finished.
    """
    from .common import save

    if name not in EXPERIMENTS:
        raise bv.ConfigError(f"no experiment named {name!r}; available: "
                             f"{', '.join(EXPERIMENTS)}.")
    with bv.output_folder(out_dir, overwrite=overwrite,
                          purpose=f"betavae experiment {name}") as staged:
        result = EXPERIMENTS[name].run(quick=quick, seed=seed)
        result.table = EXPERIMENTS[name].table(result) or ""
        save(result, staged)
    return result


def __getattr__(name: str) -> Any:
    if name == "ExperimentResult":
        from .common import ExperimentResult

        return ExperimentResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EXPERIMENTS", "Experiment", "ExperimentResult", "run_experiment"]

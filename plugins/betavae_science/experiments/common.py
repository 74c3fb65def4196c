"""Shared pieces of the experiments: quick fits, held-out posterior statistics, output."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from betavae_core import (
    BetaVAE,
    DomainData,
    ModelConfig,
    Objective,
    TrainConfig,
    fit,
    heldout_summary,
    load_data,
    save_figure,
    write_json,
)


@dataclass
class ExperimentResult:
    """Numbers (JSON-ready), the figures to save, and the effect checks that tests assert."""

    name: str
    metrics: dict[str, Any]
    checks: dict[str, bool]
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    table: str = ""  # the experiment's plain-text table, as printed

    def to_dict(self) -> dict[str, Any]:
        doc = {"experiment": self.name, "seconds": round(self.seconds, 2),
               "checks": self.checks, "metrics": self.metrics}
        if self.table:
            doc["table"] = self.table.splitlines()
        return doc


@dataclass
class Fitted:
    """A fitted model and its held-out data."""

    model: BetaVAE
    heldout: DomainData
    history: list[dict[str, Any]]


@contextmanager
def single_threaded() -> Iterator[None]:
    """One thread for torch and the BLAS/OpenMP pools, restored afterwards.

    The experiments fit many tiny models; on a busy 2-core machine, two threads per kernel
    spin against each other and run tens of times slower, with identical results.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def dataset(name: str, **options: Any) -> DomainData:
    return load_data(name, options=options)[0]


def quick_fit(
    data: DomainData,
    *,
    beta: float = 1.0,
    latent_dim: int = 10,
    epochs: int = 20,
    seed: int = 0,
    hidden: list[int] | None = None,
    lr: float = 1e-3,
    batch_size: int = 128,
    objective: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
) -> Fitted:
    """Fit in memory (no run directory, no progress bar); early stopping off."""
    arch = {"hidden": hidden} if hidden else {}
    config = ModelConfig.for_data(data, latent_dim=latent_dim, architecture_options=arch,
                                  **(model or {}))
    train = TrainConfig(epochs=epochs, seed=seed, lr=lr, batch_size=batch_size, patience=None,
                        progress=False)
    result = fit(data, config, train, Objective(beta=beta, **(objective or {})))
    heldout = data.subset(result.val_indices) if len(result.val_indices) else data
    return Fitted(result.model, heldout, result.history)


def posterior_stats(fitted: Fitted) -> dict[str, Any]:
    """Held-out rate, distortion, active units, off-diagonal mass and total correlation."""
    return heldout_summary(fitted.model, fitted.heldout, mixture_tc=True)


def monotone(values: list[float], increasing: bool, tolerance: float = 0.0) -> bool:
    """True when consecutive values never move against the direction by more than
    `tolerance` (absolute)."""
    diffs = np.diff(np.asarray(values, dtype=float))
    return bool(np.all(diffs >= -tolerance) if increasing else np.all(diffs <= tolerance))


def save(result: ExperimentResult, out_dir: str | Path) -> Path:
    """Write result.json and one PNG per figure into `out_dir` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, fig in result.figures.items():
        save_figure(fig, out / f"{name}.png")
        files.append(f"{name}.png")
    doc = result.to_dict()
    doc["figures"] = files
    write_json(out / "result.json", doc)
    return out


def timed(func):
    """Decorator: set `seconds` on the returned ExperimentResult."""

    def wrapper(*args: Any, **kwargs: Any) -> ExperimentResult:
        t0 = time.perf_counter()
        result = func(*args, **kwargs)
        result.seconds = time.perf_counter() - t0
        return result

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper

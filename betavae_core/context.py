"""`RunContext`: everything an evaluation or a generator receives about a fitted run.

Data flows one way: the core hands the callee the fitted model, the run's config, the
training and held-out splits (by the run's own split), the data's attributes and
covariates, a seed and the output folder, so no plugin goes back to reload data by name.
The training split is loaded only when a callee asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import posterior

if TYPE_CHECKING:
    from .data import DomainData
    from .model import BetaVAE


@dataclass
class RunContext:
    """A fitted model with its run: config, both splits, attrs, covariates, seed, output.

    Attributes:
        model: the fitted `BetaVAE`, in eval mode.
        heldout: the data to evaluate on: the run's validation split, or what the user
            passed (`betavae evaluate RUN --data ...`). None when a generator runs
            without data.
        config: the run's `config.json` (model, train, objective, data, source); built
            from the model when there is no run folder.
        out_dir: where the callee may write (a generator's new folder, a run folder).
        seed: the seed of this call; `torch_generator()` and `numpy_rng()` derive from it.
        split: what `heldout` is ("validation", "all", "none").
        run_dir: the run's folder when the model came from one (a cache that belongs
            with the model, e.g. a hull of reference energies, may be written there
            through `output_folder(run_dir, update=True)`); None for a bare model.
    """

    model: BetaVAE
    heldout: DomainData | None = None
    config: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None
    seed: int = 0
    split: str = "validation"
    run_dir: Path | None = None
    train_data: DomainData | None = None
    load_train: Callable[[], DomainData | None] | None = field(default=None, repr=False)
    attrs_override: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def train(self) -> DomainData | None:
        """The training split under the run's split (loaded on first use; None if unknown)."""
        if self.train_data is None and self.load_train is not None:
            loader, self.load_train = self.load_train, None
            self.train_data = loader()
        return self.train_data

    @property
    def attrs(self) -> dict[str, Any]:
        """The training data's attributes (feature names, vocabularies, ...)."""
        if self.attrs_override is not None:
            return dict(self.attrs_override)
        saved = self.config.get("data", {}).get("attrs")
        if saved is not None:
            return dict(saved)
        data = self.train_data or self.heldout
        return dict(data.attrs) if data is not None else {}

    @property
    def domain(self) -> str:
        return self.model.config.domain

    @property
    def covariates(self) -> torch.Tensor | None:
        """Covariates of the training items (else of the held-out ones), or None."""
        for data in (self.train, self.heldout):
            if data is not None and data.covariates is not None:
                return data.covariates
        return None

    def torch_generator(self, offset: int = 0) -> torch.Generator:
        """A CPU `torch.Generator` seeded from this call's seed (plus `offset`)."""
        return torch.Generator().manual_seed(self.seed + offset)

    def numpy_rng(self, offset: int = 0) -> np.random.Generator:
        """A numpy `Generator` seeded from this call's seed (plus `offset`)."""
        return np.random.default_rng(self.seed + offset)

    def encode(self, data: DomainData | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and log-variances of `data` (default: the held-out data)."""
        return posterior.encode(self.model, data if data is not None else self.heldout)

    def draw_covariates(self, n: int) -> torch.Tensor | None:
        """Covariates for n generated items: rows drawn from the training items, seeded
        (None when the model takes none)."""
        if not self.model.config.covariate_dim:
            return None
        pool = self.covariates
        if pool is None:
            from .errors import ConfigError

            raise ConfigError("this model is conditioned on covariates, and the run's data "
                              "(to draw them from) cannot be loaded: pass covariates.")
        rows = torch.randint(len(pool), (n,), generator=self.torch_generator())
        return pool[rows]

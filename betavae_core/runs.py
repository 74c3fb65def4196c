"""Reading a run directory back: its config, its best model, its data split."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from .context import RunContext
from .data import DomainData
from .errors import BetaVAEError, CheckpointError, DataError
from .model import BetaVAE, ModelConfig
from .sources import reload_source
from .trainer import TrainConfig, split_indices


@dataclass
class Run:
    """A fitted run: directory, saved config and the model with its kept weights."""

    dir: Path
    config: dict[str, Any]
    model: BetaVAE

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config.get("train", {}))

    def data(self) -> DomainData:
        """The data the run was fit on, loaded again from its recorded source."""
        return reload_source(self.config.get("source", {}))

    @cached_property
    def _split(self) -> tuple[Any, Any]:
        train = self.train_config
        return split_indices(self.config["data"]["n_items"], train.val_fraction, train.seed)

    def heldout(self, data: DomainData) -> DomainData:
        """The validation items of `data` under the run's split (all items if none)."""
        self._check_size(data)
        _, val = self._split
        return data.subset(val) if len(val) else data

    def training(self, data: DomainData) -> DomainData:
        """The training items of `data` under the run's split."""
        self._check_size(data)
        return data.subset(self._split[0])

    def _check_size(self, data: DomainData) -> None:
        expected = self.config["data"]["n_items"]
        if len(data) != expected:
            raise DataError(f"the run was fit on {expected} items; this data has {len(data)}.")

    def context(self, data: DomainData | None = None, *, out_dir: str | Path | None = None,
                seed: int = 0, lazy: bool = False) -> RunContext:
        """The run as evaluations and generators receive it.

        Without `data` the held-out items are the run's validation split (the data is
        loaded again from its recorded source, once). With `data` they are that data, and
        the training split is loaded only if a callee asks for it (None if the source
        cannot be loaded). `lazy=True` (generation) holds no held-out data and loads the
        training split only if a callee asks for it.
        """
        cfg = dict(self.config)
        out = Path(out_dir) if out_dir is not None else None
        if lazy:
            return RunContext(model=self.model, config=cfg, out_dir=out, seed=seed,
                              split="none", load_train=self._training_or_none,
                              run_dir=self.dir)
        if data is None:
            full = self.data()
            return RunContext(model=self.model, heldout=self.heldout(full), config=cfg,
                              out_dir=out, seed=seed, split="validation",
                              train_data=self.training(full), run_dir=self.dir)
        return RunContext(model=self.model, heldout=data, config=cfg, out_dir=out, seed=seed,
                          split="all", load_train=self._training_or_none, run_dir=self.dir)

    def _training_or_none(self) -> DomainData | None:
        try:
            return self.training(self.data())
        except (BetaVAEError, OSError):
            return None

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.config.get("data", {}).get("attrs", {}))


def load_model(run_dir: str | Path, weights: str = ckpt.WEIGHTS) -> BetaVAE:
    return load_run(run_dir, weights).model


def load_run(run_dir: str | Path, weights: str = ckpt.WEIGHTS) -> Run:
    """Rebuild the model from `config.json` and load its safetensors weights.

    Weights whose names or shapes do not match the config are refused, naming them.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory (it does not exist).")
    config = ckpt.read_json(run_dir / ckpt.CONFIG)
    model = BetaVAE(ModelConfig.from_dict(config["model"]))
    state = ckpt.load_weights(run_dir / weights)
    expected = model.state_dict()
    problems = sorted(
        [f"{k}: missing from the weights" for k in expected.keys() - state.keys()]
        + [f"{k}: not in the model" for k in state.keys() - expected.keys()]
        + [f"{k}: weights {tuple(state[k].shape)} vs model {tuple(v.shape)}"
           for k, v in expected.items() if k in state and state[k].shape != v.shape]
    )
    if problems:
        raise CheckpointError(
            f"{run_dir / weights} does not match {run_dir / ckpt.CONFIG}: "
            + "; ".join(problems[:8]) + (" ..." if len(problems) > 8 else "")
        )
    model.load_state_dict(state)
    model.eval()
    return Run(run_dir, config, model)

"""The training loop: validation split, early stopping, clipping, NaN guard, seeding,
checkpoints and exact resume, CUDA when present, and data-parallel processes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import distributed
from .data import DomainData
from .errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from .manifest import RunFolder
from .model import BetaVAE, LossRecord, ModelConfig
from .objective import Objective
from .posterior import Terms, evaluate_terms
from .rows import RowSource, steady_memory

# Which weights a fit returns: those of the best validation epoch once the schedule has
# settled (early stopping's choice), or those of the last epoch (a fixed training length).
KEEP = ("best", "last")


@dataclass
class TrainConfig:
    """How to fit: epochs, optimiser, split, stopping, kept weights, checkpoints, device.

    Validation epochs are ranked by the objective asked for (distortion + beta * rate at
    the full beta or capacity), and only once the schedule has reached it: `patience`
    counts epochs without improvement from then on, and `keep="best"` returns the best
    of them (the last epoch when the schedule never settles).
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    val_fraction: float = 0.1
    patience: int | None = 10
    min_delta: float = 0.0
    keep: str = "best"
    grad_clip: float | None = 10.0
    seed: int = 0
    checkpoint_every: int = 1
    device: str = "auto"
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1; got {self.epochs}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {self.batch_size}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0; got {self.lr}.")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must lie in [0, 1); got {self.val_fraction}.")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 (or None); got {self.patience}.")
        if self.keep not in KEEP:
            raise ConfigError(f"keep must be one of {KEEP}; got {self.keep!r}.")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1; got {self.checkpoint_every}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 (or None); got {self.grad_clip}.")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise ConfigError(f"threads must be a whole number >= 1 (--threads N), or left "
                              f"unset for torch's default; got {self.threads}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Above this dense size (float32), row-source data gets `rows.steady_memory`: a little
# slower per minibatch, but the peak memory of a long epoch stays flat.
LARGE_DENSE_BYTES = 1 << 30

# Settings that may change between an interrupted fit and its resumption.
RESUMABLE_CHANGES = {"epochs", "patience", "min_delta", "keep", "checkpoint_every", "device",
                     "threads", "progress"}


@dataclass
class FitResult:
    """The fitted model (the kept weights, from `best_epoch`), its history and files."""

    model: BetaVAE
    history: list[dict[str, Any]]
    out_dir: Path | None
    stopped: str
    best_epoch: int
    val_indices: np.ndarray = field(repr=False)
    train_indices: np.ndarray = field(repr=False)
    report: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # what config.json holds


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here.")
    return device


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation split of n items (same n and seed, same split)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def build_model(config: ModelConfig, seed: int) -> BetaVAE:
    """A freshly initialised model; the same seed gives the same initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BetaVAE(config)


def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2**63 - 1)


def fit(
    data: DomainData,
    model_config: ModelConfig | None = None,
    train: TrainConfig | None = None,
    objective: Objective | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
    domain_record: dict[str, Any] | Callable[[FitResult], dict[str, Any]] | None = None,
    from_domain: dict[str, Any] | None = None,
    beta_range: tuple[float, float] | None = None,
) -> FitResult:
    """Fit a β-VAE to `data`, writing a run directory when `out_dir` is given.

    A config not given is built from the domain's suggested defaults (`data.defaults`)
    and the core's; config.json records the values taken from the domain (or
    `from_domain`, when the caller resolved them, as the CLI does). `source` records where
    the data came from (dataset name or file and loader), so `betavae evaluate` and
    `betavae generate` can find it again. `domain_record` is a plugin's own JSON about
    the fit (or a function of the `FitResult` that returns it), written as domain.json
    after the fit. With `resume=True` the fit continues from the checkpoint unit in
    `out_dir/checkpoint` exactly where it stopped, once the unit is checked (hashes,
    epochs, the run's id and settings). The run folder is locked while the fit writes
    it, and each epoch's files are committed together (see `manifest.py`).

    `beta_range=(lo, hi)` fits one beta-conditioned model for every beta in the range
    (the multi-rate VAE: log beta is an input of encoder and decoder, drawn
    log-uniformly per item; the objective's beta is then unused, its schedule
    still applies); read it at a beta with `encode(..., beta=)`, `evaluate_terms(...,
    beta=)` etc. It is recorded as the model config's `beta_range`.
    """
    from .settings import fill_from_domain

    model_config, train, objective, used = fill_from_domain(data, model_config, train,
                                                            objective)
    if beta_range is not None:
        model_config = replace(model_config, beta_range=list(beta_range))
    if model_config.beta_range is not None and objective.capacity is not None:
        raise ConfigError("a multi-rate fit (beta_range) weighs the rate by beta; it does "
                          "not combine with a capacity target. Drop one of them.")
    from_domain = used if from_domain is None else from_domain
    if len(data) < 2:
        raise DataError(f"need at least 2 items to fit; got {len(data)}.")
    model_config.check_data(data)
    if resume and out_dir is None:
        raise ConfigError("resume needs the run directory (out_dir) to resume from.")
    if train.threads:
        torch.set_num_threads(train.threads)
    device = resolve_device(train.device)
    world = distributed.setup(device)
    if world.active and train.batch_size < world.size:
        raise ConfigError(f"batch_size {train.batch_size} is smaller than the {world.size} "
                          f"processes; each process needs at least one item per batch.")
    if world.active and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)

    config_doc = fit_description(data, model_config, train, objective, source, from_domain)
    # Everything that can reject the input runs before anything touches the disk.
    model = build_model(model_config, train.seed)
    if isinstance(data.x, RowSource) and math.prod(data.x.shape) * 4 > LARGE_DENSE_BYTES:
        steady_memory()  # data kept sparse because it is large: keep the loop's RSS flat
    model.check_input(data)
    files = _RunFiles(out_dir, world, device)
    try:
        loop = _train(files, model, objective, train, data, config_doc, world, device,
                      resume=resume, overwrite=overwrite)
        model.load_state_dict(loop.best_state)
        model.eval()
        report = loop.final_report()
        report.update(_active_units_report(model, loop))
        result = FitResult(model, loop.history, files.dir, loop.stopped, loop.best_epoch,
                           loop.val_idx, loop.train_idx_np, report, config_doc)
        if files.writes:
            record = domain_record(result) if callable(domain_record) else domain_record
            files.finish(report, record)
    finally:
        files.close()
    return result


def _train(files: _RunFiles, model: BetaVAE, objective: Objective, train: TrainConfig,
           data: DomainData, config_doc: dict[str, Any], world: distributed.World,
           device: torch.device, *, resume: bool, overwrite: bool) -> _Loop:
    """Open the run folder, restore the checkpoint when resuming, and run the epochs;
    the process group is left on the way out, whatever happens."""
    finished = False
    loop = None
    try:
        unit = files.open(config_doc, resume=resume, overwrite=overwrite)
        model.to(device)
        optimiser = _adam([p for p in model.parameters() if p.requires_grad], train.lr)
        train_idx, val_idx = split_indices(len(data), train.val_fraction, train.seed)
        loop = _Loop(model, optimiser, objective, train, data, train_idx, val_idx, world,
                     files)
        if unit is not None:
            loop.restore(unit)  # before anything is written: a unit that does not fit fails
        files.begin(config_doc, unit, model.latent_dim)
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            loop.run()
        finished = True
    finally:
        if loop is not None:
            loop.forward = model  # drop the DDP wrapper: it holds the process group alive
        distributed.teardown(world, synchronise=finished)
    return loop


def _adam(params: list[torch.nn.Parameter], lr: float):
    """Adam, fused into one kernel where this torch supports it (same maths, less overhead)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def _json_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for key, value in attrs.items():
        try:
            json.dumps(value, default=lambda o: o.tolist())
            out[key] = value
        except TypeError:
            continue
    return out


def fit_description(
    data: DomainData,
    model_config: ModelConfig,
    train: TrainConfig,
    objective: Objective,
    source: dict[str, Any] | None,
    from_domain: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What `config.json` records about a fit: enough to rebuild, compare and reload it,
    and which settings came from the domain's suggestions."""
    return {
        "model": model_config.to_dict(),
        "train": train.to_dict(),
        "objective": objective.to_dict(),
        "data": {**data.describe(), "attrs": _json_attrs(data.attrs)},
        "source": source or {},
        "from_domain": dict(from_domain or {}),
    }


def check_same_fit(run_dir: Path, config_doc: dict[str, Any]) -> None:
    """Refuse to continue (or reuse) the run in `run_dir` if it was another fit: other
    model, objective, training settings that cannot change mid-fit, or other data."""
    saved = ckpt.read_json(run_dir / ckpt.CONFIG)
    problems = []
    for section in ("model", "objective"):
        problems += [f"{section}.{d}" for d in
                     ckpt.config_differences(saved.get(section, {}), config_doc[section])]
    saved_train = {k: v for k, v in saved.get("train", {}).items() if k not in RESUMABLE_CHANGES}
    new_train = {k: v for k, v in config_doc["train"].items() if k not in RESUMABLE_CHANGES}
    problems += [f"train.{d}" for d in ckpt.config_differences(saved_train, new_train)]
    for key in ("domain", "n_items", "event_shape", "likelihood"):
        if saved.get("data", {}).get(key) != config_doc["data"][key]:
            problems.append(f"data.{key}: {saved.get('data', {}).get(key)!r} -> "
                            f"{config_doc['data'][key]!r}")
    problems += [f"source.{d}" for d in
                 ckpt.config_differences(saved.get("source", {}), config_doc["source"])]
    if problems:
        raise CheckpointError(
            f"cannot continue {run_dir}: the saved run differs in " + "; ".join(problems)
            + ". Use the same settings and data, or start a new --out."
        )


def fit_fingerprint(config_doc: dict[str, Any]) -> str:
    """A hash of what makes a fit this fit (what `check_same_fit` compares): a checkpoint
    unit records it, so a unit is never continued under another run's settings."""
    train = {k: v for k, v in config_doc["train"].items() if k not in RESUMABLE_CHANGES}
    data = {k: config_doc["data"].get(k) for k in ("domain", "n_items", "event_shape",
                                                   "likelihood")}
    doc = {"model": config_doc["model"], "objective": config_doc["objective"],
           "train": train, "data": data, "source": config_doc.get("source", {})}
    text = json.dumps(ckpt._normalise(doc), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _RunFiles:
    """The run folder of a fit: whether this process writes it (rank 0 only), its lock
    (held from the first write to the last), and every write the fit makes into it."""

    def __init__(self, out_dir: str | Path | None, world: distributed.World,
                 device: torch.device) -> None:
        self.dir = Path(out_dir) if out_dir is not None else None
        self.writes = self.dir is not None and world.is_main
        self.world, self.device = world, device
        self.folder: RunFolder | None = None
        self.run_id: str | None = None
        self.fingerprint = ""

    def open(self, config_doc: dict[str, Any], *, resume: bool, overwrite: bool
             ) -> ckpt.CheckpointUnit | None:
        """Lock and prepare the folder (rank 0), then read and check the checkpoint unit
        when resuming. Every process raises if rank 0 could not prepare the folder."""
        error = None
        if self.writes:
            try:
                self.folder = ckpt.open_run_dir(self.dir, resume=resume, overwrite=overwrite,
                                                purpose="train")
            except BaseException as exc:
                error = exc
        distributed.agree(error, self.world, self.device)
        self.fingerprint = fit_fingerprint(config_doc)
        unit = None
        if resume and self.dir is not None:
            check_same_fit(self.dir, config_doc)
            self.run_id = ckpt.run_id_of(self.dir)
            unit = ckpt.read_checkpoint(self.dir)
            if unit is not None and unit.state.get("fit", self.fingerprint) != self.fingerprint:
                raise CheckpointError(
                    f"the checkpoint in {unit.path} was written by a fit with other settings "
                    f"than {self.dir / ckpt.CONFIG} records; resuming would mix two fits. "
                    f"Restore the run's own files, or start afresh with --overwrite.")
        self.run_id = self.run_id or uuid.uuid4().hex
        if self.folder is not None:  # recorded with the folder's next commit
            self.folder.manifest.extra["run_id"] = self.run_id
        return unit

    def begin(self, config_doc: dict[str, Any], unit: ckpt.CheckpointUnit | None,
              latent_dim: int) -> None:
        """config.json (on resume: the new epochs etc.); on resume also the files derived
        from the checkpoint unit, which a kill may have left one epoch ahead of it."""
        if not self.writes:
            return
        with self.folder.transaction(last=[ckpt.CONFIG]) as txn:
            if unit is not None:
                txn.write_bytes(ckpt.WEIGHTS, ckpt.tensors_bytes(unit.best))
                txn.write_bytes(ckpt.HISTORY, history_csv(unit.state["history"], latent_dim))
            txn.write_bytes(ckpt.CONFIG, ckpt.json_text(config_doc).encode())

    def save(self, loop: _Loop, checkpoint: bool, kept: bool) -> None:
        """One epoch's files, committed together: the checkpoint unit (then its pointer,
        then history.csv) when `checkpoint`, and model.safetensors when `kept`."""
        if not self.writes or not (checkpoint or kept):
            return
        last = ckpt.tensors_bytes(loop.model.state_dict())
        names = [ckpt.POINTER, ckpt.HISTORY, ckpt.WEIGHTS]
        with self.folder.transaction(last=names) as txn:
            if checkpoint:
                best = last if kept else ckpt.tensors_bytes(loop.best_state)
                ckpt.stage_unit(txn, loop.epoch, last, best, loop.trainer_state(self))
                txn.write_bytes(ckpt.HISTORY, history_csv(loop.history, loop.model.latent_dim))
                unit = ckpt.unit_dir(loop.epoch) + "/"
                for rel in self.folder.manifest.files:  # older units, a legacy checkpoint
                    if rel.startswith(ckpt.CHECKPOINT_DIR + "/") and rel != ckpt.POINTER \
                            and not rel.startswith(unit):
                        txn.remove(rel)
            if kept:
                txn.write_bytes(ckpt.WEIGHTS, last)

    def finish(self, report: dict[str, Any], record: dict[str, Any] | None) -> None:
        """The plugin's domain record and report.json, the report last."""
        with self.folder.transaction(last=[ckpt.REPORT]) as txn:
            if record is not None:
                txn.write_bytes(ckpt.DOMAIN_RECORD, ckpt.json_text(record).encode())
            txn.write_bytes(ckpt.REPORT, ckpt.json_text(report).encode())

    def close(self) -> None:
        if self.folder is not None:
            self.folder.close()
            self.folder = None


HISTORY_FIELDS = ["epoch", "beta", "capacity", "lr", "train_rate", "train_distortion",
                  "train_elbo", "val_rate", "val_distortion", "val_elbo", "val_objective",
                  "seconds"]
OPTIONAL_FIELDS = ["train_tc"]  # columns only a fit that logs them has (beta-TCVAE)


def history_csv(history: list[dict[str, Any]], latent_dim: int) -> bytes:
    """history.csv: one row per epoch, with the validation KL of each latent dimension."""
    buf = io.StringIO()
    fields_ = HISTORY_FIELDS + [k for k in OPTIONAL_FIELDS if any(k in r for r in history)]
    names = fields_ + [f"kl_dim_{j}" for j in range(latent_dim)]
    writer = csv.DictWriter(buf, fieldnames=names)
    writer.writeheader()
    for row in history:
        flat = {k: row.get(k) for k in fields_}
        flat.update({f"kl_dim_{j}": v for j, v in enumerate(row["val_kl_per_dim"])})
        writer.writerow(flat)
    return buf.getvalue().encode("utf-8")


class _Loop:
    """State of one fit, epoch by epoch."""

    def __init__(self, model, optimiser, objective, train, data, train_idx, val_idx, world, run):
        self.model, self.optimiser, self.objective = model, optimiser, objective
        self.train, self.data, self.world, self.run_files = train, data, world, run
        self.train_idx = torch.as_tensor(train_idx, dtype=torch.long)
        self.train_idx_np, self.val_idx = train_idx, val_idx
        self.rng: dict[str, Any] | None = None
        self.val_data = data.subset(val_idx) if len(val_idx) else None
        self.device = model.device
        self.forward = model
        if world.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(model, device_ids=ids)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.best_score = math.inf  # the settled objective on validation data; lower wins
        self.best_epoch = -1
        self.bad_epochs = 0
        self.best_state = _copy_state(model)
        self.stopped = "not started"
        self.train_tc: float | None = None
        # a multi-rate model is validated (and its epochs ranked) at its middle beta:
        # ranking over its ends as well cost 10 % more per epoch and moved no ratio of
        # benchmarks/multirate.py (shapes) by more than 0.01
        self.val_beta = model.default_beta() if model.beta_conditioned else None

    # --- resume -----------------------------------------------------------------
    def restore(self, unit: ckpt.CheckpointUnit) -> None:
        """Continue from a checked checkpoint unit: weights, optimiser, counters, RNG."""
        state = unit.state
        try:
            self.model.load_state_dict(unit.last)
            self.optimiser.load_state_dict(state["optimiser"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"the checkpoint in {unit.path} does not fit the model that config.json "
                f"describes ({ckpt._first_line(exc)}); it belongs to another run. Restore "
                f"the run's own checkpoint/ folder, or start afresh with --overwrite."
            ) from None
        self.epoch = unit.epoch
        self.history = list(state["history"])
        # Runs from before the settled objective ranked epochs by the ELBO (beta = 1).
        self.best_score = float(state.get("best_score", -state.get("best_elbo", -math.inf)))
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        # The best weights as of this checkpoint (model.safetensors may be newer than it).
        self.best_state = unit.best
        self.rng = state.get("rng")

    def trainer_state(self, files: _RunFiles) -> dict[str, Any]:
        """What a checkpoint unit holds besides the weights."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "optimiser": self.optimiser.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "rng": rng,
            "run_id": files.run_id,
            "fit": files.fingerprint,
        }

    # --- training ---------------------------------------------------------------
    def run(self) -> None:
        train = self.train
        self.stopped = "finished"
        if train.patience is not None and self.bad_epochs >= train.patience:
            self.stopped = self._early_stop_message()  # resumed after it had stopped
            return
        if self.epoch >= train.epochs:
            return
        self._restore_rng()
        bar = tqdm(range(self.epoch, train.epochs), desc="betavae fit", unit="epoch",
                   initial=self.epoch, total=train.epochs,
                   disable=not (train.progress and self.world.is_main), leave=False)
        for epoch in bar:
            t0 = time.perf_counter()
            train_terms, beta, capacity = self._train_epoch(epoch)
            val_terms = (evaluate_terms(self.model, self.val_data, seed=_epoch_seed(
                train.seed, epoch, 1), beta=self.val_beta) if self.val_data is not None
                else train_terms)
            self.epoch = epoch + 1
            score = self.objective.target_value(val_terms.distortion, val_terms.kl_per_dim,
                                                beta=self.val_beta)
            row = {
                "epoch": self.epoch, "beta": beta, "capacity": capacity,
                "lr": self.optimiser.param_groups[0]["lr"],
                **{f"train_{k}": v for k, v in train_terms.as_dict().items()},
                **{f"val_{k}": v for k, v in val_terms.as_dict().items()},
                "val_objective": score,
                **({} if self.train_tc is None else {"train_tc": self.train_tc}),
                "seconds": time.perf_counter() - t0,
            }
            self.history.append(row)
            bar.set_postfix(rate=f"{val_terms.rate:.2f}",
                            distortion=f"{val_terms.distortion:.2f}", beta=f"{beta:.3g}")
            last = self.epoch == train.epochs
            kept = self._rank_epoch(score, last)
            stop = train.patience is not None and self.bad_epochs >= train.patience
            checkpoint = self.epoch % train.checkpoint_every == 0 or last or stop
            self.run_files.save(self, checkpoint, kept)
            if stop:
                self.stopped = self._early_stop_message()
                break
        bar.close()

    def _restore_rng(self) -> None:
        """The RNG states of the checkpoint (each epoch reseeds from the seed as well, so
        a resumed fit draws what the uninterrupted one drew either way)."""
        if not self.rng:
            return
        torch.set_rng_state(self.rng["torch"])
        if "cuda" in self.rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(self.rng["cuda"], self.device)

    def _rank_epoch(self, score: float, last: bool) -> bool:
        """Count the epoch for patience and the best score once the schedule has settled
        (the last epoch always counts); keep its weights if it is the best, or if
        `keep="last"`. Returns whether they were kept."""
        ranked = last or self.objective.settled_at(self.epoch)
        improved = ranked and score < self.best_score - self.train.min_delta
        if improved:
            self.best_score, self.bad_epochs = score, 0
        elif ranked:
            self.bad_epochs += 1
        kept = improved or self.train.keep == "last" or (last and self.best_epoch < 0)
        if kept:
            self.best_epoch, self.best_state = self.epoch, _copy_state(self.model)
        return kept

    def _early_stop_message(self) -> str:
        return (f"early stop: the validation objective (distortion + beta * rate) did not "
                f"improve for {self.train.patience} epochs")

    def _train_epoch(self, epoch: int) -> tuple[Terms, float, float | None]:
        train, world = self.train, self.world
        torch.manual_seed(_epoch_seed(train.seed, epoch, world.rank + 2))
        order = torch.randperm(len(self.train_idx),
                               generator=torch.Generator().manual_seed(
                                   _epoch_seed(train.seed, epoch)))
        idx_all = self.train_idx[order]
        n_batches = max(1, math.ceil(len(idx_all) / train.batch_size))
        self.model.train()
        # Running sums and the non-finite flags stay on the device: no sync per batch.
        sums = torch.zeros(3 + self.model.latent_dim, dtype=torch.float64, device=self.device)
        nonfinite = torch.zeros(n_batches, dtype=torch.bool, device=self.device)
        betas = self._minibatch_betas(epoch)
        for b in range(n_batches):
            batch_idx = idx_all[b * train.batch_size:(b + 1) * train.batch_size]
            if world.active:
                if len(batch_idx) < world.size:
                    break  # every rank needs at least one item for DDP
                batch_idx = batch_idx[world.rank::world.size]
            t = epoch + b / n_batches
            x = self.data.x[batch_idx].to(self.device)
            cov = (None if self.data.covariates is None
                   else self.data.covariates[batch_idx].to(self.device))
            ctx = {k: v[batch_idx].to(self.device) for k, v in self.data.context.items()} or None
            beta_b = None if betas is None else self._batch_betas(betas, b)
            record = self.forward(x, cov, ctx, beta=beta_b)
            loss, tc = self._loss(record, t, beta_b)
            nonfinite[b] = ~torch.isfinite(loss.detach())
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if train.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
            self.optimiser.step()
            with torch.no_grad():
                sums[0] += record.distortion.double().sum()
                sums[1] += len(batch_idx)
                sums[3:] += record.kl_per_dim.double().sum(dim=0)
                if tc is not None:
                    sums[2] += tc.double() * len(batch_idx)
        bad = distributed.all_sum(nonfinite.long(), world)
        if bool(bad.any()):
            kept = (f"The last good checkpoint (epoch {self.epoch}) is kept in "
                    f"{self.run_files.dir}." if self.run_files.dir and self.history
                    else "No checkpoint was written.")
            raise NonFiniteLossError(
                f"the loss became non-finite at epoch {epoch + 1}, batch "
                f"{int(torch.nonzero(bad)[0, 0]) + 1} of {n_batches}; training stopped. "
                f"{kept} Try a lower --lr or --grad-clip (in a new --out), or check the "
                f"data's scale."
            )
        sums = distributed.all_sum(sums, world).cpu()
        n = max(float(sums[1]), 1.0)
        kl = (sums[3:] / n).numpy()
        terms = Terms(float(sums[0]) / n, float(kl.sum()), kl, int(n))
        self.train_tc = float(sums[2]) / n if self.objective.tc_beta is not None else None
        t_end = epoch + 1.0
        beta = self.objective.beta_at(t_end)
        if self.val_beta is not None:  # multi-rate: the schedule's share of the middle beta
            beta = self.val_beta * beta / self.objective.beta
        return terms, beta, self.objective.capacity_at(t_end)

    def _minibatch_betas(self, epoch: int) -> torch.Tensor | None:
        """A multi-rate fit's betas for the epoch, log-uniform over the model's
        beta_range (Bae et al. 2023), one per item in the epoch's order, drawn from the
        epoch's own seed so that a resumed fit draws the same."""
        if not self.model.beta_conditioned:
            return None
        lo, hi = (math.log(b) for b in self.model.config.beta_range)
        g = torch.Generator().manual_seed(_epoch_seed(self.train.seed, epoch, 5))
        u = torch.rand(len(self.train_idx), generator=g, dtype=torch.float64)
        return torch.exp(lo + (hi - lo) * u)

    def _batch_betas(self, betas: torch.Tensor, b: int) -> torch.Tensor:
        """Minibatch b's betas: its items' (this rank's share of them), on the CPU."""
        size = self.train.batch_size
        mine = betas[b * size:(b + 1) * size]
        return mine[self.world.rank::self.world.size] if self.world.active else mine

    def _loss(self, record: LossRecord, t: float, beta: Any
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The minibatch loss; with one beta per item, mean_i(D_i + beta_i R_i)."""
        return self.objective.loss_and_tc(record, t, beta=beta,
                                          dataset_size=len(self.train_idx))

    def final_report(self) -> dict[str, Any]:
        best = next((r for r in self.history if r["epoch"] == self.best_epoch), None)
        return {
            "stopped": self.stopped,
            "epochs_run": self.epoch,
            "best_epoch": self.best_epoch,
            "best": best,
            "n_train": len(self.train_idx),
            "n_val": 0 if self.val_data is None else len(self.val_data),
        }


def _active_units_report(model: BetaVAE, loop: _Loop) -> dict[str, Any]:
    """Both counts of active units of the kept model on the validation items (training
    items when there are none): `active_units` (Var_x E[z|x] > 0.01 and KL > 0.1 nats,
    the strict rule) and `active_units_variance` (the variance rule alone)."""
    from . import information
    from .posterior import encode

    held = loop.val_data if loop.val_data is not None else loop.data
    best = next((r for r in loop.history if r["epoch"] == loop.best_epoch), None)
    if best is None or len(held) == 0:
        return {}
    mu, _ = encode(model, held, beta=loop.val_beta)
    return information.active_unit_counts(mu, best["val_kl_per_dim"])


def _copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

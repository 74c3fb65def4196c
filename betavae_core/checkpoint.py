"""Run directories and checkpoints: atomic writes, safe loads, config comparison.

A run directory holds `config.json` (how to rebuild the model and what it was fit on),
`model.safetensors` (the kept weights), `history.csv`, `report.json`, `checkpoint/` (so
an interrupted fit can resume exactly) and `.betavae/` (the manifest of what betavae
wrote, and the lock while a command writes; see `manifest.py`).

A checkpoint is one unit, `checkpoint/epoch-NNNNNN/`: the last weights, the best
weights so far, and the trainer state (optimiser, epoch, history up to that epoch,
early-stopping counters, RNG states, the run's id). `checkpoint/current.json` points at
the unit in force and records the SHA-256 of each of its files; the pointer is replaced
atomically only once the new unit is wholly on disk, so after a kill at any instant the
checkpoint is wholly the old one or wholly the new one, and `--resume` checks the unit
against its pointer before it continues. Weights are safetensors; the trainer state is
loaded with `weights_only=True`, so no checkpoint can run arbitrary code.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save

from .atomic import atomic_write, write_bytes  # the one atomic write, for every file
from .errors import CheckpointError, OutputExistsError
from .manifest import Manifest, RunFolder, Transaction, visible_entries

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
HISTORY = "history.csv"
REPORT = "report.json"
DOMAIN_RECORD = "domain.json"  # what a domain plugin keeps about a fit (its own JSON)
CHECKPOINT_DIR = "checkpoint"
POINTER = f"{CHECKPOINT_DIR}/current.json"
UNIT_LAST, UNIT_BEST, UNIT_STATE = "last.safetensors", "best.safetensors", "state.pt"
UNIT_FORMAT = 2
# The checkpoint of a run written before checkpoint units (still read, never written).
LAST_WEIGHTS = f"{CHECKPOINT_DIR}/last.safetensors"
BEST_WEIGHTS = f"{CHECKPOINT_DIR}/best.safetensors"
TRAINER_STATE = f"{CHECKPOINT_DIR}/state.pt"



def write_array(path: str | Path, array: np.ndarray) -> None:
    """Save one array as .npy, atomically (no pickle: object arrays are refused)."""

    def put(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, array, allow_pickle=False)

    atomic_write(path, put)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json_text(obj))


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default) + "\n"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist; is this a betavae run directory?") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from None


# --- tensors and trainer state as bytes (so every write goes through one path) ----------
def tensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def state_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_weights(module: torch.nn.Module, path: str | Path) -> None:
    save_tensors(module.state_dict(), path)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    write_bytes(path, tensors_bytes(tensors))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no weights at {path}.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}).") from None


def save_state(state: dict[str, Any], path: str | Path) -> None:
    write_bytes(path, state_bytes(state))


def load_state(path: str | Path) -> dict[str, Any]:
    """Load trainer state without unpickling arbitrary objects (`weights_only=True`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no trainer state at {path}; nothing to resume.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated or not a torch file at all
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain-tensor checkpoint (it may carry "
            f"pickled objects, or be truncated). Detail: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


# --- checkpoint units -------------------------------------------------------------------
def unit_dir(epoch: int) -> str:
    return f"{CHECKPOINT_DIR}/epoch-{epoch:06d}"


def stage_unit(txn: Transaction, epoch: int, last: bytes, best: bytes,
               state: dict[str, Any]) -> None:
    """Stage the checkpoint unit of `epoch` (weights as safetensors bytes, the trainer
    state with `epoch`, `history` and `run_id`) and the pointer to it, pointer last."""
    unit = unit_dir(epoch)
    files = {UNIT_LAST: last, UNIT_BEST: best, UNIT_STATE: state_bytes(state)}
    hashes = {name: txn.write_bytes(f"{unit}/{name}", data) for name, data in files.items()}
    pointer = {"format": UNIT_FORMAT, "unit": Path(unit).name, "epoch": epoch,
               "run_id": state.get("run_id"), "files": hashes}
    txn.write_bytes(POINTER, json_text(pointer).encode())


@dataclass
class CheckpointUnit:
    """A checkpoint as read back and checked: where, which epoch, its parts."""

    path: Path
    epoch: int
    state: dict[str, Any]
    last: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    legacy: bool = False


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / POINTER).exists() or (run_dir / TRAINER_STATE).exists()


def read_checkpoint(run_dir: str | Path) -> CheckpointUnit | None:
    """The run's checkpoint unit, checked against its pointer, against itself (epochs,
    hashes) and against the run (the id in its config.json); None when it has none yet."""
    run_dir = Path(run_dir)
    run_id = run_id_of(run_dir)
    if (run_dir / POINTER).exists():
        return _read_unit(run_dir, run_id)
    if (run_dir / TRAINER_STATE).exists():
        return _read_legacy(run_dir, run_id)
    return None


def run_id_of(run_dir: Path) -> str | None:
    """The id a run folder's manifest records for its fit (None: not yet, or a folder of
    an older betavae)."""
    return Manifest.load(run_dir).extra.get("run_id")


def _damaged(where: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"the checkpoint in {where} is not consistent: {what}. It was changed or damaged "
        f"outside betavae; restore the run folder from a copy, or start the fit afresh "
        f"(--overwrite, or a new --out).")


def _read_unit(run_dir: Path, run_id: str | None) -> CheckpointUnit:
    pointer_path = run_dir / POINTER
    try:
        pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
        epoch, name, hashes = int(pointer["epoch"]), str(pointer["unit"]), pointer["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _damaged(pointer_path, f"its pointer is unreadable ({exc})") from None
    if run_id is not None and pointer.get("run_id") != run_id:
        raise CheckpointError(
            f"{run_dir / CHECKPOINT_DIR} belongs to another run (run id "
            f"{pointer.get('run_id')!r}; this folder's manifest records {run_id!r}): "
            f"resuming would mix two fits. Put this run's own checkpoint/ folder back, or "
            f"start afresh with --overwrite (or a new --out).")
    unit = run_dir / CHECKPOINT_DIR / name
    if name != Path(unit_dir(epoch)).name:
        raise _damaged(pointer_path, f"it names unit {name!r} for epoch {epoch}")
    data = {}
    for part in (UNIT_LAST, UNIT_BEST, UNIT_STATE):
        try:
            data[part] = (unit / part).read_bytes()
        except OSError:
            raise _damaged(unit, f"{part} is missing") from None
        if hashlib.sha256(data[part]).hexdigest() != hashes.get(part):
            raise _damaged(unit, f"{part} does not match the hash in {POINTER}")
    state = _state_from_bytes(data[UNIT_STATE], unit / UNIT_STATE)
    _check_state(state, epoch, unit)
    if state.get("run_id") != pointer.get("run_id"):
        raise _damaged(unit, "its trainer state and its pointer name different runs")
    return CheckpointUnit(unit, epoch, state, _tensors(data[UNIT_LAST], unit / UNIT_LAST),
                          _tensors(data[UNIT_BEST], unit / UNIT_BEST))


def _read_legacy(run_dir: Path, run_id: str | None) -> CheckpointUnit:
    """A checkpoint of an older betavae: three files, no pointer and no hashes."""
    if run_id is not None:
        raise CheckpointError(
            f"{run_dir / CHECKPOINT_DIR} holds a checkpoint in the layout of an older "
            f"betavae, but this run (id {run_id!r}) was started by this version: it belongs "
            f"to another run. Put this run's own checkpoint/ folder back, or start afresh "
            f"with --overwrite (or a new --out).")
    state = load_state(run_dir / TRAINER_STATE)
    epoch = int(state.get("epoch", -1))
    _check_state(state, epoch, run_dir / CHECKPOINT_DIR)
    return CheckpointUnit(run_dir / CHECKPOINT_DIR, epoch, state,
                          load_weights(run_dir / LAST_WEIGHTS),
                          load_weights(run_dir / BEST_WEIGHTS), legacy=True)


def _check_state(state: dict[str, Any], epoch: int, where: Path) -> None:
    history = state.get("history")
    if not isinstance(history, list) or state.get("epoch") != epoch:
        raise _damaged(where, f"its trainer state is for epoch {state.get('epoch')!r}, "
                              f"not {epoch}")
    epochs = [row.get("epoch") for row in history if isinstance(row, dict)]
    if epochs != list(range(1, epoch + 1)):
        raise _damaged(where, f"its history holds epochs {epochs[:3]}...{epochs[-3:]}, "
                              f"not 1..{epoch}")


def _state_from_bytes(data: bytes, path: Path) -> dict[str, Any]:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain-tensor checkpoint. Detail: "
            f"{_first_line(exc)}") from None


def _tensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}).") from None


# --- comparing configs -------------------------------------------------------------------
def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Fields whose values differ, as 'field: saved -> current' lines."""
    keys = sorted(set(saved) | set(current))
    return [
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
        for k in keys
        if _normalise(saved.get(k)) != _normalise(current.get(k))
    ]


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


# --- run and output folders --------------------------------------------------------------
def check_run_dir(folder: RunFolder, *, resume: bool = False, overwrite: bool = False,
                  label: str = "output directory", resume_hint: str = "continue that fit",
                  replace_hint: str = "replace it") -> None:
    """Make the open `folder` ready for a fit (or a sweep); refuse a used one unless
    resuming or overwriting. `overwrite` deletes only files betavae wrote and that are
    unchanged, and refuses (deleting nothing) when anything else is there, naming it."""
    path = folder.path
    contents = folder.visible()
    if contents and not (resume or overwrite):
        raise OutputExistsError(
            f"{label} {path} is not empty ({', '.join(contents[:5])}"
            f"{', ...' if len(contents) > 5 else ''}). Pass --resume to {resume_hint}, "
            f"--overwrite to {replace_hint}, or choose a new --out."
        )
    if overwrite and contents:
        folder.clear_owned()


def _check_request(path: Path, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise OutputExistsError("choose either resume or overwrite, not both.")
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a directory.")
    if resume and not (path / CONFIG).exists() and not _pending(path):
        raise CheckpointError(f"nothing to resume in {path}: it holds no {CONFIG}.")


def _pending(path: Path) -> bool:
    """Whether a killed command left a commit for the next one to finish."""
    return Manifest.load(path).pending is not None if path.is_dir() else False


def open_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False,
                 purpose: str = "train") -> RunFolder:
    """Lock the run folder `path` and make it ready for a fit (see `check_run_dir`);
    the caller closes the returned folder when done."""
    path = Path(path)
    _check_request(path, resume, overwrite)
    folder = RunFolder(path, purpose)
    folder.open()
    try:
        if resume and not (path / CONFIG).exists():  # after the recovery on opening
            raise CheckpointError(f"nothing to resume in {path}: it holds no {CONFIG}.")
        check_run_dir(folder, resume=resume, overwrite=overwrite)
    except BaseException:
        folder.close()
        raise
    folder.created = False  # the fit's folder stays, even if nothing is written yet
    return folder


def prepare_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Make `path` ready for a new fit; refuse a non-empty one unless resuming/overwriting.

    `overwrite` removes only the files betavae wrote there (by the folder's manifest,
    unchanged since), and refuses when the directory holds anything else, so a user's
    own files are never deleted, whatever their names.
    """
    open_run_dir(path, resume=resume, overwrite=overwrite, purpose="prepare").close()
    return Path(path)


def new_output_dir(path: str | Path) -> Path:
    """An empty directory for outputs; an existing non-empty one is never reused."""
    path = Path(path)
    check_new_output(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_new_output(path: Path) -> None:
    if path.exists() and (not path.is_dir() or visible_entries(path)):
        raise OutputExistsError(f"{path} already exists and is not empty; outputs are never "
                                f"overwritten. Choose a new --out.")


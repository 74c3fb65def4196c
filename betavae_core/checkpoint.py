"""Run directories and checkpoints: atomic writes, safe loads, config comparison.

A run directory holds `config.json` (how to rebuild the model and what it was fit on),
`model.safetensors` (the kept weights), `history.csv`, `report.json`, and `checkpoint/`
(the last weights and the trainer state, so an interrupted fit can resume exactly).
Weights are safetensors; the trainer state is loaded with `weights_only=True`, so no
checkpoint can run arbitrary code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, OutputExistsError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
HISTORY = "history.csv"
REPORT = "report.json"
DOMAIN_RECORD = "domain.json"  # what a domain plugin keeps about a fit (its own JSON)
CHECKPOINT_DIR = "checkpoint"
LAST_WEIGHTS = f"{CHECKPOINT_DIR}/last.safetensors"
BEST_WEIGHTS = f"{CHECKPOINT_DIR}/best.safetensors"
TRAINER_STATE = f"{CHECKPOINT_DIR}/state.pt"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write through `write(tmp_path)` into a temp file beside `path`, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_array(path: str | Path, array: np.ndarray) -> None:
    """Save one array as .npy, atomically (no pickle: object arrays are refused)."""

    def save(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, array, allow_pickle=False)

    atomic_write(path, save)


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


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


def save_weights(module: torch.nn.Module, path: str | Path) -> None:
    save_tensors(module.state_dict(), path)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda p: save_file(state, str(p)))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no weights at {path}.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}).") from None


def save_state(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda p: torch.save(state, p))


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


def _foreign_files(run_dir: Path) -> list[str]:
    """Files in a run directory that betavae did not write (relative paths)."""
    foreign = []
    for entry in sorted(run_dir.rglob("*")):
        rel = entry.relative_to(run_dir)
        top = rel.parts[0]
        if entry.is_dir() and top in (CHECKPOINT_DIR, "plots") and len(rel.parts) == 1:
            continue
        ours = (
            (len(rel.parts) == 1 and top in (CONFIG, WEIGHTS, HISTORY, REPORT, DOMAIN_RECORD))
            or (top == CHECKPOINT_DIR and len(rel.parts) == 2
                and rel.parts[1] in ("last.safetensors", "best.safetensors", "state.pt"))
            or (top == "plots" and len(rel.parts) == 2 and rel.suffix == ".png")
        )
        if not ours:
            foreign.append(str(rel))
    return foreign


def prepare_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Make `path` ready for a new fit; refuse a non-empty one unless resuming/overwriting.

    `overwrite` removes only the files betavae itself writes, and refuses when the
    directory holds anything else, so a user's own files are never deleted.
    """
    path = Path(path)
    if resume and overwrite:
        raise OutputExistsError("choose either resume or overwrite, not both.")
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a directory.")
    if resume and not (path / CONFIG).exists():
        raise CheckpointError(f"nothing to resume in {path}: it holds no {CONFIG}.")
    contents = sorted(p.name for p in path.iterdir()) if path.exists() else []
    if contents and not (resume or overwrite):
        raise OutputExistsError(
            f"output directory {path} is not empty ({', '.join(contents[:5])}"
            f"{', ...' if len(contents) > 5 else ''}). Pass --resume to continue that fit, "
            f"--overwrite to replace it, or choose a new --out."
        )
    if overwrite and contents:
        foreign = _foreign_files(path)
        if foreign:
            raise OutputExistsError(
                f"refusing to overwrite {path}: it holds files betavae did not write "
                f"({', '.join(foreign[:5])}). Choose a new --out."
            )
        for name in contents:
            target = path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_output_dir(path: str | Path) -> Path:
    """An empty directory for outputs; an existing non-empty one is never reused."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputExistsError(f"{path} already exists and is not empty; outputs are never "
                                f"overwritten. Choose a new --out.")
    path.mkdir(parents=True, exist_ok=True)
    return path

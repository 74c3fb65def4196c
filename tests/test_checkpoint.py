"""Run directories and checkpoints: atomic writes, safe loads, config comparison and the
rules for reusing an output directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from betavae_core import (
    CheckpointError,
    DomainData,
    ModelConfig,
    OutputExistsError,
    TrainConfig,
    fit,
    load_run,
)
from betavae_core import checkpoint as ckpt

UNPICKLED: list[str] = []


class Payload:
    """A custom class; unpickling it would record itself (it must never happen)."""

    def __init__(self) -> None:
        self.value = 1

    def __setstate__(self, state) -> None:
        UNPICKLED.append("Payload")
        self.__dict__.update(state)


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# --- atomic_write -------------------------------------------------------------------------
def test_atomic_write_success_replaces_target_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    seen = {}

    def write(tmp: Path) -> None:
        seen["tmp"] = tmp
        assert tmp != target and tmp.parent == target.parent  # same filesystem: atomic rename
        tmp.write_text("new content")
        assert target.read_text() == "old"  # the target is never written in place

    ckpt.atomic_write(target, write)
    assert target.read_text() == "new content"
    assert _listing(tmp_path) == ["out.txt"]
    assert not seen["tmp"].exists()


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_write_failure_keeps_old_target_and_no_temp(tmp_path: Path, exc) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"complete old file")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half of the new")
        raise exc

    with pytest.raises(type(exc)):
        ckpt.atomic_write(target, write)
    assert target.read_bytes() == b"complete old file"
    assert _listing(tmp_path) == ["weights.bin"]


def test_atomic_write_failure_on_new_path_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "new.json"

    def write(tmp: Path) -> None:
        tmp.write_text("{")
        raise ValueError("serialisation failed")

    with pytest.raises(ValueError, match="serialisation failed"):
        ckpt.atomic_write(target, write)
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == []


# --- load_state / load_weights ------------------------------------------------------------
def test_state_round_trip(tmp_path: Path) -> None:
    state = {"epoch": 3, "best_elbo": -12.5, "history": [{"epoch": 1, "v": [0.1, 0.2]}],
             "optimiser": {"t": torch.arange(4.0)}}
    ckpt.save_state(state, tmp_path / "state.pt")
    back = ckpt.load_state(tmp_path / "state.pt")
    assert back["epoch"] == 3 and back["best_elbo"] == -12.5
    assert back["history"] == state["history"]
    assert torch.equal(back["optimiser"]["t"], torch.arange(4.0))


def test_load_state_refuses_pickled_custom_class(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save({"epoch": 1, "payload": Payload()}, path)
    UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="refus"):
        ckpt.load_state(path)
    assert UNPICKLED == []  # the object was never rebuilt


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_load_state_refuses_corrupt_files(tmp_path: Path, content) -> None:
    path = tmp_path / "state.pt"
    if content is None:  # a real checkpoint, truncated
        ckpt.save_state({"x": torch.randn(100)}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError):
        ckpt.load_state(path)


def test_load_state_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        ckpt.load_state(tmp_path / "absent.pt")


def test_truncated_safetensors_gives_checkpoint_error(tmp_path: Path) -> None:
    module = torch.nn.Linear(20, 10)
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(module, path)
    loaded = ckpt.load_weights(path)
    assert torch.equal(loaded["weight"], module.weight.detach())
    data = path.read_bytes()
    for cut in (len(data) - 7, len(data) // 2, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="safetensors"):
            ckpt.load_weights(path)
    with pytest.raises(CheckpointError, match="no weights"):
        ckpt.load_weights(tmp_path / "absent.safetensors")


# --- load_run -----------------------------------------------------------------------------
@pytest.fixture
def tiny_run(tmp_path: Path) -> Path:
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    data = DomainData(x=x, domain="test")
    out = tmp_path / "run"
    fit(data, ModelConfig.for_data(data, latent_dim=4, architecture_options={"hidden": [8]}),
        TrainConfig(epochs=1, batch_size=16, progress=False, device="cpu"), out_dir=out)
    return out


def test_load_run_round_trips(tiny_run: Path) -> None:
    run = load_run(tiny_run)
    saved = ckpt.load_weights(tiny_run / ckpt.WEIGHTS)
    state = run.model.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert run.model.latent_dim == 4 and not run.model.training


def test_load_run_refuses_edited_latent_dim(tiny_run: Path) -> None:
    config_path = tiny_run / ckpt.CONFIG
    config = json.loads(config_path.read_text())
    config["model"]["latent_dim"] = 3
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        load_run(tiny_run)
    message = str(info.value)
    assert "does not match" in message
    for name in ("prior_log_scale", "encoder.head.weight", "decoder.first.weight"):
        assert name in message


def test_load_run_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a run directory"):
        load_run(tmp_path / "nowhere")


# --- config_differences -------------------------------------------------------------------
def test_config_differences_lists_changed_fields() -> None:
    saved = {"latent_dim": 10, "beta": 1.0, "shape": [16, 16], "opts": {"hidden": [64]},
             "gone": "x"}
    current = {"latent_dim": 8, "beta": 1.0, "shape": (16, 16), "opts": {"hidden": [32]},
               "new": 2}
    diffs = ckpt.config_differences(saved, current)
    assert diffs == [
        "gone: 'x' -> None",
        "latent_dim: 10 -> 8",
        "new: None -> 2",
        "opts: {'hidden': [64]} -> {'hidden': [32]}",
    ]
    assert ckpt.config_differences(saved, dict(saved)) == []


# --- prepare_run_dir ----------------------------------------------------------------------
def test_prepare_new_and_empty_dir(tmp_path: Path) -> None:
    new = tmp_path / "a" / "b"
    assert ckpt.prepare_run_dir(new) == new
    assert new.is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    ckpt.prepare_run_dir(empty)
    assert empty.is_dir() and not any(empty.iterdir())


def test_prepare_non_empty_dir_refused_and_untouched(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="notes.txt"):
        ckpt.prepare_run_dir(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert _listing(tmp_path) == ["notes.txt"]


def _fake_run(d: Path) -> None:
    """Files with the names betavae uses, written by someone else (no manifest)."""
    d.mkdir(parents=True, exist_ok=True)
    for name in (ckpt.CONFIG, ckpt.WEIGHTS, ckpt.HISTORY, ckpt.REPORT):
        (d / name).write_text(name)
    (d / ckpt.CHECKPOINT_DIR).mkdir()
    (d / ckpt.TRAINER_STATE).write_text("s")
    (d / "plots").mkdir()
    (d / "plots" / "rd.png").write_text("png")


def test_prepare_resume_keeps_files(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    before = _listing(tmp_path)
    ckpt.prepare_run_dir(tmp_path, resume=True)
    assert _listing(tmp_path) == before
    assert (tmp_path / ckpt.CONFIG).read_text() == ckpt.CONFIG


def test_prepare_overwrite_removes_only_run_files(tiny_run: Path) -> None:
    ckpt.prepare_run_dir(tiny_run, overwrite=True)
    assert tiny_run.is_dir() and _listing(tiny_run) == []


def test_prepare_overwrite_keeps_files_that_only_share_betavaes_names(tmp_path: Path) -> None:
    """Ownership is by the manifest, not by name: files named config.json, history.csv
    or plots/rd.png that betavae did not write are the user's (issue 13, Found 2)."""
    _fake_run(tmp_path)
    (tmp_path / "thesis.tex").write_text("precious")
    before = {p: (tmp_path / p).read_bytes() for p in _listing(tmp_path)
              if (tmp_path / p).is_file()}
    with pytest.raises(OutputExistsError) as info:
        ckpt.prepare_run_dir(tmp_path, overwrite=True)
    for name in ("config.json", "history.csv", "plots/rd.png", "thesis.tex"):
        assert name in str(info.value)
    assert "nothing was deleted" in str(info.value)
    assert {p: (tmp_path / p).read_bytes() for p in before} == before


def test_prepare_overwrite_refuses_foreign_and_edited_files_and_deletes_nothing(
        tiny_run: Path) -> None:
    (tiny_run / "thesis.tex").write_text("precious")
    (tiny_run / ckpt.HISTORY).write_text("my own notes\n")  # edited after the fit
    before = {p: (tiny_run / p).read_bytes() for p in _listing(tiny_run)
              if (tiny_run / p).is_file()}
    with pytest.raises(OutputExistsError) as info:
        ckpt.prepare_run_dir(tiny_run, overwrite=True)
    assert "thesis.tex (not written by betavae)" in str(info.value)
    assert "history.csv (changed since betavae wrote it)" in str(info.value)
    assert {p: (tiny_run / p).read_bytes() for p in before} == before


def test_prepare_rejects_resume_with_overwrite_and_files(tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError):
        ckpt.prepare_run_dir(tmp_path / "x", resume=True, overwrite=True)
    f = tmp_path / "file"
    f.write_text("data")
    with pytest.raises(OutputExistsError, match="not a directory"):
        ckpt.prepare_run_dir(f)
    assert f.read_text() == "data"

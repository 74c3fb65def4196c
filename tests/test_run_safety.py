"""Run directories are never clobbered or silently mixed: overwrite, resume and sweep
reuse only what is provably the same fit, and the user's own files survive."""

import pytest

from betavae_core import registry, sweep
from betavae_core.checkpoint import prepare_run_dir
from betavae_core.errors import CheckpointError, ConfigError, OutputExistsError
from betavae_core.model import ModelConfig
from betavae_core.objective import Objective
from betavae_core.trainer import TrainConfig, fit

SOURCE = {"kind": "dataset", "name": "shapes"}


def _data(seed=0):
    return registry("datasets").get("shapes").load(n=120, size=8, seed=seed)


def _fit(data, out, epochs=2, resume=False, source=None, **train):
    config = ModelConfig.for_data(data, latent_dim=2, architecture_options={"hidden": [16]})
    settings = {"epochs": epochs, "progress": False, **train}
    return fit(data, config, TrainConfig(**settings), Objective(beta=1.0), out_dir=out,
               resume=resume, source=source or {**SOURCE, "options": {"seed": 0}})


def test_overwrite_refuses_a_directory_holding_the_users_pngs_or_notes(tmp_path):
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "holiday.png").write_text("precious")
    with pytest.raises(OutputExistsError, match="holiday.png"):
        prepare_run_dir(run, overwrite=True)
    (run / "holiday.png").unlink()
    (run / "plots" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="notes.txt"):
        prepare_run_dir(run, overwrite=True)
    assert (run / "plots" / "notes.txt").read_text() == "mine"


def test_resume_refuses_other_data(tmp_path):
    _fit(_data(), tmp_path / "r")
    other = {**SOURCE, "options": {"seed": 7}}
    with pytest.raises(CheckpointError, match="source"):
        _fit(_data(seed=7), tmp_path / "r", epochs=3, resume=True, source=other)


def test_resume_of_an_early_stopped_fit_does_not_train_further(tmp_path):
    first = _fit(_data(), tmp_path / "r", epochs=50, patience=1, lr=0.2)
    assert first.stopped.startswith("early stop")
    again = _fit(_data(), tmp_path / "r", epochs=50, patience=1, lr=0.2, resume=True)
    assert again.stopped.startswith("early stop")
    assert len(again.history) == len(first.history)


def test_resume_before_the_first_checkpoint_starts_afresh(tmp_path):
    data = _data()
    _fit(data, tmp_path / "a", epochs=2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_bytes((tmp_path / "a" / "config.json").read_bytes())
    result = _fit(data, tmp_path / "b", epochs=2, resume=True)
    assert len(result.history) == 2


def test_resume_needs_an_existing_run(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        _fit(_data(), tmp_path / "missing", resume=True)
    assert not (tmp_path / "missing").exists()


def test_epochs_must_be_positive():
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)


def test_sweep_refuses_to_reuse_runs_of_other_settings_and_dedupes_betas(tmp_path):
    data = _data()
    config = ModelConfig.for_data(data, latent_dim=2, architecture_options={"hidden": [16]})
    rows = sweep(data, [1.0, 1.0, 2.0], tmp_path / "sw", config,
                 TrainConfig(epochs=1, progress=False), source=SOURCE)
    assert [r["beta"] for r in rows] == [1.0, 2.0]
    other = ModelConfig.for_data(data, latent_dim=3, architecture_options={"hidden": [16]})
    with pytest.raises(CheckpointError, match="latent_dim"):
        sweep(data, [1.0], tmp_path / "sw", other, TrainConfig(epochs=1, progress=False),
              source=SOURCE, resume=True)

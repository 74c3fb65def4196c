"""The training loop: determinism, exact resume (also after a crash or a NaN), refusal of
incompatible resumes, early stopping, that fitting learns, input checks and DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from betavae_core import (
    CheckpointError,
    ConfigError,
    DataError,
    DomainData,
    ModelConfig,
    NonFiniteLossError,
    Objective,
    OutputExistsError,
    TrainConfig,
    fit,
    load_run,
    registry,
)
from betavae_core import checkpoint as ckpt
from betavae_core.trainer import split_indices

HIDDEN = {"hidden": [64]}


def _shapes(n: int, seed: int = 0) -> DomainData:
    return registry("datasets").get("shapes").load(n=n, size=16, seed=seed)


@pytest.fixture(scope="module")
def data() -> DomainData:
    return _shapes(400)


def _mc(data: DomainData, **kw) -> ModelConfig:
    kw.setdefault("latent_dim", 4)
    return ModelConfig.for_data(data, architecture_options=HIDDEN, **kw)


def _tc(epochs: int, **kw) -> TrainConfig:
    base = {"batch_size": 64, "progress": False, "device": "cpu", "patience": None, "seed": 0}
    base.update(kw)
    return TrainConfig(epochs=epochs, **base)


def _history(rows: list[dict]) -> list[dict]:
    """History rows without their wall-clock timings."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_weights(path)


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ in {different}"


def _unit(run: Path) -> ckpt.CheckpointUnit:
    """The run's checkpoint unit, checked (pointer, hashes, epochs, run id)."""
    unit = ckpt.read_checkpoint(run)
    assert unit is not None and not unit.legacy
    return unit


def _last_weights(run: Path) -> dict[str, torch.Tensor]:
    return _unit(run).last


def _checkpoint_bytes(run: Path) -> dict[str, bytes]:
    root = run / ckpt.CHECKPOINT_DIR
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _assert_same_run(a: Path, b: Path) -> None:
    _assert_same_weights(_weights(a / ckpt.WEIGHTS), _weights(b / ckpt.WEIGHTS))
    unit_a, unit_b = _unit(a), _unit(b)
    assert unit_a.epoch == unit_b.epoch
    _assert_same_weights(unit_a.last, unit_b.last)
    _assert_same_weights(unit_a.best, unit_b.best)
    assert _history(unit_a.state["history"]) == _history(unit_b.state["history"])
    assert unit_a.state["best_epoch"] == unit_b.state["best_epoch"]
    assert (a / ckpt.HISTORY).read_text().count("\n") == (b / ckpt.HISTORY).read_text().count(
        "\n")


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory) -> tuple[Path, list[dict]]:
    """An uninterrupted 6-epoch fit, the yardstick for the resume tests."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = fit(data, _mc(data), _tc(6), out_dir=out)
    return out, result.history


# --- determinism ----------------------------------------------------------------------------
def test_same_seed_same_history_and_weights_different_seed_differs(data) -> None:
    a = fit(data, _mc(data), _tc(3))
    b = fit(data, _mc(data), _tc(3))
    c = fit(data, _mc(data), _tc(3, seed=1))
    assert len(a.history) == 3
    assert _history(a.history) == _history(b.history)
    _assert_same_weights(a.model.state_dict(), b.model.state_dict())
    assert np.array_equal(a.val_indices, b.val_indices)
    assert _history(a.history) != _history(c.history)
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


# --- exact resume ---------------------------------------------------------------------------
def test_resume_continues_exactly(data, reference_run, tmp_path) -> None:
    ref_dir, ref_history = reference_run
    out = tmp_path / "b"
    first = fit(data, _mc(data), _tc(3), out_dir=out)
    assert len(first.history) == 3
    assert _unit(out).epoch == 3
    resumed = fit(data, _mc(data), _tc(6), out_dir=out, resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5, 6]
    assert _history(resumed.history) == _history(ref_history)
    _assert_same_run(ref_dir, out)
    assert json.loads((out / ckpt.REPORT).read_text())["epochs_run"] == 6


def test_resume_after_crash_mid_epoch_matches_uninterrupted(
    data, reference_run, tmp_path, monkeypatch
) -> None:
    ref_dir, ref_history = reference_run
    out = tmp_path / "crash"
    original = Objective.loss_and_tc

    def crashing_loss(self, record, t, **kw):
        if t >= 3.5:  # half-way through the 4th epoch, after some optimiser steps in it
            raise KeyboardInterrupt
        return original(self, record, t, **kw)

    with monkeypatch.context() as m:
        m.setattr(Objective, "loss_and_tc", crashing_loss)
        with pytest.raises(KeyboardInterrupt):
            fit(data, _mc(data), _tc(6), out_dir=out)
    assert _unit(out).epoch == 3
    resumed = fit(data, _mc(data), _tc(6), out_dir=out, resume=True)
    assert _history(resumed.history) == _history(ref_history)
    _assert_same_run(ref_dir, out)


@pytest.mark.parametrize("model_kw,objective_kw,fit_kw", [
    ({"prior": "mog", "prior_options": {"components": 3}}, {"tc_beta": 4.0}, {}),
    ({"prior": "laplace"}, {"tc_beta": 2.0, "tc_estimator": "mss"}, {}),
    ({"prior": "student_t"}, {}, {"beta_range": (0.25, 4.0)}),
], ids=["mog+tc", "laplace+tc-mss", "student_t+multirate"])
def test_resume_with_new_priors_tc_and_multirate_is_bit_identical(
    data, tmp_path, model_kw, objective_kw, fit_kw
) -> None:
    """Monte Carlo KL, the TC estimate and the minibatch betas all draw from the
    checkpointed RNG streams: a resumed fit is the uninterrupted one, bit for bit."""
    small = data.subset(np.arange(200))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small fits: faster on one thread of a shared machine

    def run(out, epochs, resume=False):
        return fit(small, _mc(small, **model_kw), _tc(epochs), Objective(**objective_kw),
                   out_dir=out, resume=resume, **fit_kw)

    try:
        straight = run(tmp_path / "a", 3)
        run(tmp_path / "b", 2)
        resumed = run(tmp_path / "b", 3, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert _history(resumed.history) == _history(straight.history)
    _assert_same_run(tmp_path / "a", tmp_path / "b")
    if "tc_beta" in objective_kw:
        assert "train_tc" in (tmp_path / "b" / ckpt.HISTORY).read_text().splitlines()[0]


def test_resume_with_changed_model_or_objective_is_refused(data, tmp_path) -> None:
    out = tmp_path / "run"
    fit(data, _mc(data), _tc(2), out_dir=out)
    before = _checkpoint_bytes(out)
    with pytest.raises(CheckpointError) as info:
        fit(data, _mc(data, latent_dim=5), _tc(4), Objective(beta=4.0), out_dir=out,
            resume=True)
    message = str(info.value)
    assert "model.latent_dim: 4 -> 5" in message
    assert "objective.beta: 1.0 -> 4.0" in message
    with pytest.raises(CheckpointError, match="train.lr"):
        fit(data, _mc(data), _tc(4, lr=1e-2), out_dir=out, resume=True)
    assert _checkpoint_bytes(out) == before
    # more epochs than first planned is a legitimate resume
    more = fit(data, _mc(data), _tc(3), out_dir=out, resume=True)
    assert [r["epoch"] for r in more.history] == [1, 2, 3]
    assert _unit(out).epoch == 3


def test_resume_needs_an_existing_run(data, tmp_path) -> None:
    with pytest.raises(CheckpointError):
        fit(data, _mc(data), _tc(2), out_dir=tmp_path / "never", resume=True)
    with pytest.raises(ConfigError, match="out_dir"):
        fit(data, _mc(data), _tc(2), resume=True)


# --- NaN guard ------------------------------------------------------------------------------
def test_nan_loss_stops_keeps_last_good_checkpoint_and_resumes(
    data, reference_run, tmp_path, monkeypatch
) -> None:
    ref_dir, ref_history = reference_run
    out = tmp_path / "nan"
    original = Objective.loss_and_tc

    def nan_loss(self, record, t, **kw):
        loss, tc = original(self, record, t, **kw)
        return (loss * float("nan") if t >= 2.5 else loss), tc  # half-way through epoch 3

    with monkeypatch.context() as m:
        m.setattr(Objective, "loss_and_tc", nan_loss)
        with pytest.raises(NonFiniteLossError) as info:
            fit(data, _mc(data), _tc(6), out_dir=out)
    message = str(info.value)
    assert "epoch 3" in message
    assert "epoch 2" in message and str(out) in message
    unit = _unit(out)
    state = unit.state
    assert unit.epoch == 2 and len(state["history"]) == 2
    assert math.isfinite(state["history"][-1]["val_elbo"])
    last = load_run(out, weights=f"{ckpt.unit_dir(2)}/{ckpt.UNIT_LAST}")  # loads cleanly
    assert all(torch.isfinite(v).all() for v in last.model.state_dict().values())
    resumed = fit(data, _mc(data), _tc(6), out_dir=out, resume=True)
    assert _history(resumed.history) == _history(ref_history)
    _assert_same_run(ref_dir, out)


def test_overflowing_data_raises_non_finite_loss(tmp_path) -> None:
    x = torch.full((20, 3), 1e30)  # finite, but its squared error overflows float32
    data = DomainData(x=x, domain="test")
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        fit(data, ModelConfig.for_data(data, latent_dim=2, architecture_options={"hidden": [8]}),
            _tc(3), out_dir=tmp_path / "run")


# --- early stopping -------------------------------------------------------------------------
def test_early_stopping_keeps_the_best_not_the_last_weights(tmp_path) -> None:
    # Training items are sparse images, validation items all-ones images: whatever the
    # model learns from the training items makes the validation ELBO worse, so epoch 1
    # is the best and patience=1 must stop the fit at epoch 2.
    n = 200
    train_idx, val_idx = split_indices(n, 0.1, 0)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 16, 16, generator=g) < 0.1).float()
    x[torch.as_tensor(val_idx)] = 1.0
    data = DomainData(x=x, domain="test", likelihood="bernoulli")
    mc = ModelConfig.for_data(data, latent_dim=2, architecture_options=HIDDEN)
    out = tmp_path / "stop"
    result = fit(data, mc, _tc(20, patience=1, lr=1e-2), out_dir=out)
    assert np.array_equal(result.val_indices, val_idx)
    assert len(result.history) == 2 < 20
    assert result.history[1]["val_elbo"] < result.history[0]["val_elbo"]
    assert result.best_epoch == 1
    assert result.stopped.startswith("early stop")
    best, last = _weights(out / ckpt.WEIGHTS), _last_weights(out)
    assert any(not torch.equal(best[k], last[k]) for k in best)
    one_epoch = fit(data, mc, _tc(1, patience=1, lr=1e-2), out_dir=tmp_path / "one")
    _assert_same_weights(best, _last_weights(tmp_path / "one"))
    _assert_same_weights(result.model.state_dict(), best)
    assert one_epoch.best_epoch == 1
    report = json.loads((out / ckpt.REPORT).read_text())
    assert report["best_epoch"] == 1 and report["epochs_run"] == 2


def _worsening_data() -> DomainData:
    """Sparse training images and all-ones validation images: learning hurts validation."""
    n = 200
    _, val_idx = split_indices(n, 0.1, 0)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 16, 16, generator=g) < 0.1).float()
    x[torch.as_tensor(val_idx)] = 1.0
    return DomainData(x=x, domain="test", likelihood="bernoulli")


def test_epochs_are_ranked_only_once_the_warm_up_has_settled(tmp_path) -> None:
    # Learning hurts validation here, so epoch 1 (beta = 2/3) has the lowest validation
    # objective of all; it must not be kept, since the fit asked for beta = 2. Ranking
    # and patience start at epoch 3, where the warm-up ends.
    data = _worsening_data()
    mc = ModelConfig.for_data(data, latent_dim=2, architecture_options=HIDDEN)
    warm = Objective(beta=2.0, schedule="warmup", warmup_epochs=3)
    result = fit(data, mc, _tc(20, patience=1, lr=1e-2), warm, out_dir=tmp_path / "w")
    scores = [r["val_objective"] for r in result.history]
    for r in result.history:
        assert r["val_objective"] == pytest.approx(r["val_distortion"] + 2.0 * r["val_rate"])
    assert int(np.argmin(scores)) == 0  # the unsettled epoch 1 would win
    ranked = scores[2:]
    assert result.best_epoch == 3 + int(np.argmin(ranked))
    first_worse = next(i for i in range(1, len(ranked)) if ranked[i] >= min(ranked[:i]))
    assert len(result.history) == 3 + first_worse < 20  # patience 1, counted from epoch 3
    assert result.stopped.startswith("early stop")
    _assert_same_weights(result.model.state_dict(), _weights(tmp_path / "w" / ckpt.WEIGHTS))
    # A schedule that never settles within the fit keeps the last epoch.
    short = fit(data, mc, _tc(2, lr=1e-2), warm)
    assert short.best_epoch == 2


def test_keep_last_returns_the_last_epoch_even_when_validation_worsens(tmp_path) -> None:
    data = _worsening_data()
    mc = ModelConfig.for_data(data, latent_dim=2, architecture_options=HIDDEN)
    out = tmp_path / "last"
    result = fit(data, mc, _tc(3, lr=1e-2, keep="last"), out_dir=out)
    elbos = [r["val_elbo"] for r in result.history]
    assert elbos[2] < elbos[0]  # the best would have been epoch 1
    assert result.best_epoch == 3
    _assert_same_weights(_weights(out / ckpt.WEIGHTS), _last_weights(out))
    _assert_same_weights(result.model.state_dict(), _last_weights(out))
    with pytest.raises(ConfigError, match="keep must be one of"):
        _tc(3, keep="final")


# --- learning -------------------------------------------------------------------------------
def test_fit_learns_on_shapes() -> None:
    data = _shapes(1500)
    result = fit(data, _mc(data, latent_dim=6), _tc(15))
    elbos = [row["val_elbo"] for row in result.history]
    assert len(elbos) == 15
    assert elbos[-1] > elbos[0] + 60.0, elbos  # nats per 256-pixel image
    assert elbos[-1] > 0.6 * elbos[0], elbos  # and by more than 40 %
    assert result.history[-1]["val_rate"] > 1.0  # the latents are in use


def test_larger_beta_gives_lower_rate(data) -> None:
    rates = {}
    for beta in (0.25, 16.0):
        result = fit(data, _mc(data), _tc(5, lr=3e-3, batch_size=32), Objective(beta=beta))
        rates[beta] = result.history[-1]["val_rate"]
    assert rates[0.25] > 2.0, rates  # nats: the low-beta model does encode
    assert rates[16.0] < 0.25 * rates[0.25], rates


# --- bad input ------------------------------------------------------------------------------
def test_nan_in_data_names_the_row(data, tmp_path) -> None:
    x = data.x.clone()
    x[7, 3, 5] = float("nan")
    bad = DomainData(x=x, domain="shapes", likelihood="bernoulli")
    with pytest.raises(DataError, match="row 7"):
        bad.check_finite()
    with pytest.raises(DataError, match="row 7"):
        fit(bad, _mc(bad), _tc(1), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_shape_mismatch_with_model_config(data) -> None:
    mc = ModelConfig(event_shape=(8, 8), latent_dim=2, likelihood="bernoulli",
                     architecture_options=HIDDEN)
    with pytest.raises(DataError, match=r"\(8, 8\)"):
        fit(data, mc, _tc(1))
    cov = ModelConfig.for_data(data, covariate_dim=2, architecture_options=HIDDEN)
    with pytest.raises(DataError, match="covariates"):
        fit(data, cov, _tc(1))


@pytest.mark.parametrize("fraction", [1.0, 1.5, -0.1])
def test_val_fraction_out_of_range(fraction) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainConfig(val_fraction=fraction)


def test_fewer_than_two_items() -> None:
    one = DomainData(x=torch.zeros(1, 4), domain="test")
    with pytest.raises(DataError, match="at least 2"):
        fit(one, None, _tc(1))


def test_non_binary_data_with_bernoulli_names_the_item(data, tmp_path) -> None:
    x = data.x.clone()
    x[5, 2, 2] = 0.5
    bad = DomainData(x=x, domain="shapes", likelihood="bernoulli")
    with pytest.raises(DataError, match="item 5"):
        fit(bad, _mc(bad), _tc(1))
    gauss = DomainData(x=torch.randn(10, 4), domain="test")
    mc = ModelConfig.for_data(gauss, likelihood="bernoulli", architecture_options={"hidden": [8]})
    with pytest.raises(DataError, match="item 0"):
        fit(gauss, mc, _tc(1))


def test_rejected_data_leaves_no_run_behind(data, tmp_path) -> None:
    """A fit refused for bad data must not leave files that block the corrected retry."""
    x = data.x.clone()
    x[5, 2, 2] = 0.5
    bad = DomainData(x=x, domain="shapes", likelihood="bernoulli")
    out = tmp_path / "run"
    with pytest.raises(DataError, match="item 5"):
        fit(bad, _mc(bad), _tc(1), out_dir=out)
    assert not out.exists() or not any(out.iterdir())
    fit(data, _mc(data), _tc(1), out_dir=out)  # the retry needs no --overwrite
    assert (out / ckpt.WEIGHTS).exists()


def test_non_empty_output_dir_is_refused_and_untouched(data, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(OutputExistsError, match="notes.txt"):
        fit(data, _mc(data), _tc(1), out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "my notes"


def test_overwrite_replaces_a_run_but_refuses_foreign_files(data, tmp_path) -> None:
    out = tmp_path / "out"
    fit(data, _mc(data), _tc(1), out_dir=out)
    with pytest.raises(OutputExistsError):
        fit(data, _mc(data), _tc(1), out_dir=out)
    result = fit(data, _mc(data, latent_dim=3), _tc(1), out_dir=out, overwrite=True)
    assert load_run(out).model.latent_dim == 3 == result.model.latent_dim
    (out / "thesis.tex").write_text("precious")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(OutputExistsError, match="thesis.tex"):
        fit(data, _mc(data), _tc(1), out_dir=out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == before
    assert (out / "thesis.tex").read_text() == "precious"
    assert load_run(out).model.latent_dim == 3


# --- data-parallel --------------------------------------------------------------------------
DDP_ARGS = ["-o", "n=800", "-o", "size=16", "--epochs", "4", "--latent-dim", "4",
            "--arch-option", "hidden=64", "--quiet"]


def test_torchrun_two_processes_matches_single_process(tmp_path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "betavae_core.cli",
         "train", "shapes", *DDP_ARGS, "--out", "RUN"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["RUN"]
    run = tmp_path / "RUN"
    for name in (ckpt.CONFIG, ckpt.WEIGHTS, ckpt.HISTORY, ckpt.REPORT, ckpt.POINTER):
        assert (run / name).exists(), name
    assert not (run / ".betavae" / "lock").exists()  # rank 0 held it, and let it go
    state = _unit(run).state
    assert state["epoch"] == 4
    ddp_elbo = state["history"][-1]["val_elbo"]

    data = _shapes(800)
    single = fit(data, ModelConfig.for_data(data, latent_dim=4,
                                            architecture_options={"hidden": [64]}),
                 TrainConfig(epochs=4, progress=False, device="cpu"))
    single_elbo = single.history[-1]["val_elbo"]
    assert abs(ddp_elbo - single_elbo) <= 0.1 * abs(single_elbo), (ddp_elbo, single_elbo)
    print(f"torchrun fit took {elapsed:.1f} s")


def test_history_plot_marks_the_kept_epoch() -> None:
    from betavae_core import plots

    rows = [{"epoch": e, "beta": 1.0, "train_distortion": 10.0 / e, "val_distortion": 11.0 / e,
             "train_rate": 1.0 + e, "val_rate": 1.5 + e} for e in (1, 2, 3)]
    fig = plots.training_history(rows, kept_epoch=2)
    marks = [line for ax in fig.axes for line in ax.get_lines()
             if line.get_label() == "kept weights"]
    assert len(marks) == 2 and all(list(m.get_xdata()) == [2, 2] for m in marks)
    unmarked = plots.training_history(rows)
    assert not [line for ax in unmarked.axes for line in ax.get_lines()
                if line.get_label() == "kept weights"]

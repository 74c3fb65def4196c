"""A β sweep: one fit per β and the rate–distortion curve they trace, or (`one_fit`)
one β-conditioned fit over the range of the β values, read at each of them.

A sweep follows train's rules for its folder: a non-empty one is refused unless
`resume` (finish the β values not yet done, keep the finished ones) or `overwrite`
(delete what betavae wrote there; refused if anything else is there). The folder is
locked meanwhile, and rd.png and rd.csv are committed together, rd.csv last.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from . import plots
from .data import DomainData
from .errors import ConfigError, OutputExistsError
from .manifest import RunFolder
from .model import ModelConfig
from .objective import Objective
from .posterior import heldout_summary
from .runs import load_run
from .trainer import TrainConfig, check_same_fit, fit, fit_description

RD_COLUMNS = ["beta", "rate", "distortion", "elbo", "active_units", "active_units_variance",
              "offdiag_mass", "total_correlation", "run"]
ONE_FIT = "one_fit"  # the run folder of a one-fit sweep


CURVE_FILES = ("rd.png", "rd.csv")  # the sweep's result, rd.csv (the report) last


def run_name(beta: float) -> str:
    return f"beta_{beta:.12g}"


def sweep(
    data: DomainData,
    betas: list[float],
    out_dir: str | Path,
    model_config: ModelConfig | None = None,
    train: TrainConfig | None = None,
    objective: Objective | None = None,
    source: dict[str, Any] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    one_fit: bool = False,
) -> list[dict[str, Any]]:
    """Fit one model per β into `out_dir/beta_<β>/`; write `rd.csv` and `rd.png`.

    A folder that is not empty is refused unless `resume` (a β whose run finished, i.e.
    has its report.json, is read back, not refit; an interrupted one continues from its
    checkpoint) or `overwrite`. Rate and distortion are held-out. With `one_fit`, one
    β-conditioned model is fit over [min β, max β] into `out_dir/one_fit/` (the
    multi-rate VAE, `fit(..., beta_range=)`) and read at each β.
    """
    if not betas:
        raise ConfigError("give at least one β.")
    if one_fit and len(set(betas)) < 2:
        raise ConfigError(f"--one-fit draws the curve over a range of β: give at least two "
                          f"different values; got {betas}.")
    if any(not b > 0 for b in betas):
        raise ConfigError(f"every β must be > 0; got {betas}.")
    betas = sorted(set(betas))
    names = [run_name(b) for b in betas]
    if len(set(names)) != len(names):
        raise ConfigError(f"β values {betas} are too close to name one run each.")
    if resume and overwrite:
        raise ConfigError("choose either resume or overwrite, not both.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a directory.")
    objective = objective or Objective()
    model_config = model_config or ModelConfig.for_data(data)
    train = train or TrainConfig()
    with RunFolder(out, "sweep") as folder:
        ckpt.check_run_dir(folder, resume=resume, overwrite=overwrite, label="sweep folder",
                           resume_hint="finish the β values not yet done (finished ones are kept)",
                           replace_hint="replace the sweep")
        _check_curve_files(folder)
        folder.created = False
        fit_all = _fit_one if one_fit else _fit_all
        rows = fit_all(data, betas, out, model_config, train, objective, source)
        with folder.transaction(last=["rd.csv"]) as txn:
            fig = plots.rate_distortion([r["beta"] for r in rows], [r["rate"] for r in rows],
                                        [r["distortion"] for r in rows])
            plots.save_figure(fig, txn.path / "rd.png")
            _write_csv(txn.path / "rd.csv", rows)
    return rows


def _check_curve_files(folder: RunFolder) -> None:
    """Refuse before fitting anything if rd.csv or rd.png are not betavae's to replace."""
    foreign = [name for name in CURVE_FILES
               if (folder.path / name).exists() or (folder.path / name).is_symlink()
               if not folder.owned(name)]
    if foreign:
        raise OutputExistsError(
            f"not writing into {folder.path}: {', '.join(foreign)} there was not written by "
            f"betavae (or changed since), so it is kept. Move it away, or choose another "
            f"--out.")


def _fit_all(data: DomainData, betas: list[float], out: Path, model_config: ModelConfig,
             train: TrainConfig, objective: Objective, source: dict[str, Any] | None
             ) -> list[dict[str, Any]]:
    """One row of the curve per β: a finished run read back, the others fit (an
    interrupted one resumed)."""
    rows = []
    for beta in betas:
        run_dir = out / run_name(beta)
        beta_objective = replace(objective, beta=beta)
        started = (run_dir / ckpt.CONFIG).exists()
        if started:  # an earlier sweep's run: only if it is this very fit
            check_same_fit(run_dir, fit_description(data, model_config, train,
                                                    beta_objective, source))
        if (run_dir / ckpt.REPORT).exists():
            run = load_run(run_dir)
            model, heldout = run.model, run.heldout(data)
        else:
            result = fit(data, model_config, train, beta_objective, out_dir=run_dir,
                         resume=started, source=source)
            model, heldout = result.model, data.subset(result.val_indices) if len(
                result.val_indices) else data
        rows.append(_rd_row(beta, model, heldout, run_dir.name))
    return rows


def _fit_one(data: DomainData, betas: list[float], out: Path, model_config: ModelConfig,
             train: TrainConfig, objective: Objective, source: dict[str, Any] | None
             ) -> list[dict[str, Any]]:
    """One row per β, all from one β-conditioned fit (read back if it finished)."""
    run_dir = out / ONE_FIT
    config = replace(model_config, beta_range=[min(betas), max(betas)])
    started = (run_dir / ckpt.CONFIG).exists()
    if started:
        check_same_fit(run_dir, fit_description(data, config, train, objective, source))
    if (run_dir / ckpt.REPORT).exists():
        run = load_run(run_dir)
        model, heldout = run.model, run.heldout(data)
    else:
        result = fit(data, config, train, objective, out_dir=run_dir, resume=started,
                     source=source)
        model, heldout = result.model, data.subset(result.val_indices) if len(
            result.val_indices) else data
    return [_rd_row(beta, model, heldout, ONE_FIT, read_at=beta) for beta in betas]


def _rd_row(beta: float, model, data: DomainData, run: str, read_at: float | None = None
            ) -> dict[str, Any]:
    summary = heldout_summary(model, data, beta=read_at)
    return {"beta": beta, **{k: summary[k] for k in RD_COLUMNS if k in summary},
            "total_correlation": summary["total_correlation_gaussian"], "run": run}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RD_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    ckpt.write_text(path, buf.getvalue())

"""A β sweep: one fit per β and the rate–distortion curve they trace."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from . import plots
from .data import DomainData
from .errors import ConfigError
from .model import ModelConfig
from .objective import Objective
from .posterior import heldout_summary
from .runs import load_run
from .trainer import TrainConfig, check_same_fit, fit, fit_description

RD_COLUMNS = ["beta", "rate", "distortion", "elbo", "active_units", "offdiag_mass",
              "total_correlation", "run"]


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
) -> list[dict[str, Any]]:
    """Fit one model per β into `out_dir/beta_<β>/`; write `rd.csv` and `rd.png`.

    A β whose run already finished (its report.json exists) is read back, not refit, so
    an interrupted sweep resumes where it stopped. Rate and distortion are held-out.
    """
    if not betas:
        raise ConfigError("give at least one β.")
    if any(not b > 0 for b in betas):
        raise ConfigError(f"every β must be > 0; got {betas}.")
    betas = sorted(set(betas))
    names = [run_name(b) for b in betas]
    if len(set(names)) != len(names):
        raise ConfigError(f"β values {betas} are too close to name one run each.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objective = objective or Objective()
    model_config = model_config or ModelConfig.for_data(data)
    train = train or TrainConfig()
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
    _write_csv(out / "rd.csv", rows)
    fig = plots.rate_distortion([r["beta"] for r in rows], [r["rate"] for r in rows],
                                [r["distortion"] for r in rows])
    plots.save_figure(fig, out / "rd.png")
    return rows


def _rd_row(beta: float, model, data: DomainData, run: str) -> dict[str, Any]:
    summary = heldout_summary(model, data)
    return {"beta": beta, **{k: summary[k] for k in RD_COLUMNS if k in summary},
            "total_correlation": summary["total_correlation_gaussian"], "run": run}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RD_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    ckpt.write_text(path, buf.getvalue())

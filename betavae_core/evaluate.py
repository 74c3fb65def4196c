"""Run every applicable evaluation (core and plugins) on a model and data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from . import plots
from .data import DomainData
from .errors import ConfigError, PluginError
from .model import BetaVAE
from .plugins import call_plugin, registry
from .results import EvaluationResult
from .runs import load_run

PLOTS_DIR = "plots"


def evaluate(
    model: BetaVAE,
    data: DomainData,
    names: list[str] | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of every evaluation that applies to `data` (or only `names`).

    Figures are saved as `out_dir/plots/<evaluation>_<figure>.png` when `out_dir` is
    given; the returned dict maps evaluation name -> metrics (and `figures`: file names).
    """
    model.config.check_data(data)
    model.eval()
    chosen = [e for e in registry("evaluations") if e.applies_to(data)]
    if names:
        known = {e.name for e in registry("evaluations")}
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError(f"no evaluation named {missing}; available: {sorted(known)}.")
        skipped = [n for n in names if n not in {e.name for e in chosen}]
        if skipped:
            raise ConfigError(f"evaluation(s) {skipped} do not apply to this data (domain "
                              f"{data.domain!r}).")
        chosen = [e for e in chosen if e.name in names]
    report: dict[str, Any] = {}
    for evaluation in chosen:
        t0 = time.perf_counter()
        result = call_plugin(evaluation, "evaluation", evaluation.evaluate, model, data)
        if not isinstance(result, EvaluationResult):
            raise PluginError(f"plugin {evaluation.plugin!r}: evaluation {evaluation.name!r} "
                              f"returned {type(result).__name__}, not EvaluationResult.",
                              plugin=evaluation.plugin)
        entry = {"plugin": evaluation.plugin, "seconds": round(time.perf_counter() - t0, 3),
                 **result.metrics}
        if out_dir is not None and result.figures:
            entry["figures"] = []
            for fig_name, fig in result.figures.items():
                rel = f"{PLOTS_DIR}/{evaluation.name}_{fig_name}.png"
                plots.save_figure(fig, Path(out_dir) / rel)
                entry["figures"].append(rel)
        report[evaluation.name] = entry
    return report


def evaluate_run(
    run_dir: str | Path,
    data: DomainData | None = None,
    data_source: dict[str, Any] | None = None,
    names: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate a run on its held-out split (or on `data`), updating its report.json.

    The training section of report.json is kept; the `evaluation` section is replaced.
    """
    run = load_run(run_dir)
    if data is None:
        eval_data = run.heldout(run.data())
        described = {"split": "validation", **run.config.get("source", {})}
    else:
        eval_data = data
        described = {"split": "all", **(data_source or {})}
    results = evaluate(run.model, eval_data, names=names, out_dir=run.dir)
    report_path = run.dir / ckpt.REPORT
    report = ckpt.read_json(report_path) if report_path.exists() else {}
    history = _read_history(run.dir)
    if history:
        figure = plots.training_history(history, kept_epoch=report.get("best_epoch"))
        plots.save_figure(figure, run.dir / PLOTS_DIR / "history.png")
    previous = report.get("evaluation", {})
    if names and previous.get("data") == described:  # --only: keep the other results
        results = {**previous.get("results", {}), **results}
    report["evaluation"] = {"data": described, "n_items": len(eval_data), "results": results}
    ckpt.write_json(report_path, report)
    return report["evaluation"]


def _read_history(run_dir: Path) -> list[dict[str, float]]:
    import csv

    path = run_dir / ckpt.HISTORY
    if not path.exists():
        return []
    with path.open() as fh:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
                for row in csv.DictReader(fh)]

"""Run every applicable evaluation (core and plugins) on a fitted run.

Writing into a run folder holds its lock, and the figures and report.json are committed
together (the report last; see `manifest.py`): a killed evaluation leaves the run as it
was, or with the whole new result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from . import plots
from .context import RunContext
from .data import DomainData
from .errors import CheckpointError, ConfigError, PluginError
from .manifest import RunFolder
from .model import BetaVAE
from .plugins import call_plugin, registry
from .registry import check_options
from .results import EvaluationResult
from .runs import load_run

PLOTS_DIR = "plots"


def evaluate(
    model: BetaVAE | RunContext,
    data: DomainData | None = None,
    names: list[str] | None = None,
    out_dir: str | Path | None = None,
    *,
    options: dict[str, dict[str, Any]] | None = None,
    train: DomainData | None = None,
) -> dict[str, Any]:
    """Metrics of every evaluation that applies to the held-out data (or only `names`).

    `model` is a fitted `BetaVAE` (then `data` is the data to evaluate on, and `train`
    optionally the data it was fit on) or a `RunContext`. `options` maps an evaluation's
    name to its keyword options. Figures are saved as `out_dir/plots/<evaluation>_<figure>
    .png` when `out_dir` is given (all of them or none, under the folder's lock); the
    returned dict maps evaluation name -> metrics (and `figures`: file names).
    """
    if isinstance(model, RunContext):
        run = model
    else:
        if data is None:
            raise ConfigError("evaluate needs the data to evaluate on.")
        run = RunContext(model=model, heldout=data, train_data=train, split="all")
    if out_dir is not None:
        run.out_dir = Path(out_dir)
    if run.out_dir is None:
        return _evaluate(run, names, options)
    target = Path(run.out_dir)
    with RunFolder(target, "evaluate") as folder, folder.transaction() as txn:
        run.out_dir = txn.path
        try:
            return _evaluate(run, names, options)
        finally:
            run.out_dir = target


def _evaluate(run: RunContext, names: list[str] | None,
              options: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Run the evaluations; figures go into `run.out_dir` (a staging folder) if set."""
    data = run.heldout
    run.model.check_input(data)  # the same checks as the fit: shape, finite, support
    run.model.eval()
    chosen = _chosen(data, names)
    options = dict(options or {})
    unused = sorted(set(options) - {e.name for e in chosen})
    if unused:
        raise ConfigError(f"options given for evaluation(s) {unused}, which do not run here; "
                          f"running: {sorted(e.name for e in chosen)}.")
    for evaluation in chosen:
        check_options(evaluation, options.get(evaluation.name, {}), "evaluation")
    report: dict[str, Any] = {}
    for evaluation in chosen:
        t0 = time.perf_counter()
        result = call_plugin(evaluation, "evaluation", evaluation.evaluate, run,
                             **options.get(evaluation.name, {}))
        if not isinstance(result, EvaluationResult):
            raise PluginError(f"plugin {evaluation.plugin!r}: evaluation {evaluation.name!r} "
                              f"returned {type(result).__name__}, not EvaluationResult.",
                              plugin=evaluation.plugin)
        entry = {"plugin": evaluation.plugin, "seconds": round(time.perf_counter() - t0, 3),
                 **result.metrics}
        if run.out_dir is not None and result.figures:
            entry["figures"] = []
            for fig_name, fig in result.figures.items():
                rel = f"{PLOTS_DIR}/{evaluation.name}_{fig_name}.png"
                plots.save_figure(fig, Path(run.out_dir) / rel)
                entry["figures"].append(rel)
        report[evaluation.name] = entry
    return report


def _chosen(data: DomainData, names: list[str] | None) -> list[Any]:
    chosen = [e for e in registry("evaluations") if e.applies_to(data)]
    if not names:
        return chosen
    known = {e.name for e in registry("evaluations")}
    missing = [n for n in names if n not in known]
    if missing:
        raise ConfigError(f"no evaluation named {missing}; available: {sorted(known)}.")
    skipped = [n for n in names if n not in {e.name for e in chosen}]
    if skipped:
        raise ConfigError(f"evaluation(s) {skipped} do not apply to this data (domain "
                          f"{data.domain!r}).")
    return [e for e in chosen if e.name in names]


def evaluate_run(
    run_dir: str | Path,
    data: DomainData | None = None,
    data_source: dict[str, Any] | None = None,
    names: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Evaluate a run on its held-out split (or on `data`), updating its report.json.

    The training section of report.json is kept; the `evaluation` section is replaced.
    The run folder is locked meanwhile, and the figures and the report are committed
    together, the report last. A figure would never replace a file of the user's.
    """
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory (it does not exist).")
    with RunFolder(run_dir, "evaluate") as folder:
        run = load_run(run_dir)
        context = run.context(data)
        if data is None:
            described = {"split": "validation", **run.config.get("source", {})}
        else:
            described = {"split": "all", **(data_source or {})}
        # report.json is read, merged and written back: it may replace an edited one
        with folder.transaction(last=[ckpt.REPORT], replace=[ckpt.REPORT]) as txn:
            context.out_dir = txn.path
            results = _evaluate(context, names, options)
            context.out_dir = run.dir
            section = {"data": described, "n_items": len(context.heldout), "results": results}
            return _stage_report(run.dir, txn.path, section, only=bool(names))


def _stage_report(run_dir: Path, staged: Path, section: dict[str, Any],
                  only: bool) -> dict[str, Any]:
    """Stage the history figure and report.json with its new `evaluation` section (with
    `only`, the other evaluations' results of the same data are kept)."""
    report_path = run_dir / ckpt.REPORT
    report = ckpt.read_json(report_path) if report_path.exists() else {}
    history = _read_history(run_dir)
    if history:
        figure = plots.training_history(history, kept_epoch=report.get("best_epoch"))
        plots.save_figure(figure, staged / PLOTS_DIR / "history.png")
    previous = report.get("evaluation", {})
    if only and previous.get("data") == section["data"]:
        section["results"] = {**previous.get("results", {}), **section["results"]}
    report["evaluation"] = section
    ckpt.write_json(staged / ckpt.REPORT, report)
    return section


def _read_history(run_dir: Path) -> list[dict[str, float]]:
    import csv

    path = run_dir / ckpt.HISTORY
    if not path.exists():
        return []
    with path.open() as fh:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
                for row in csv.DictReader(fh)]

"""`betavae experiment NAME`: the subcommand this plugin adds (hook `register_commands`).

Building the command is cheap: its help lists the experiments from the plain-string
catalogue in `betavae_science.experiments`; the experiment itself (torch, matplotlib,
scikit-learn) is imported only when the command runs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import betavae_core as bv

from .experiments import EXPERIMENTS


def one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report a `BetaVAEError` as one line (exit 1) instead of a traceback, as the core's
    commands do."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except bv.BetaVAEError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def experiment_list() -> str:
    """One line per experiment: its name and help (the command's epilog)."""
    return "\n".join(f"  {e.name:<16} {e.help}" for e in EXPERIMENTS.values())


@click.command(short_help="Run an experiment on β as the price of information.",
               epilog="\b\nExperiments:\n" + experiment_list())
@click.argument("name")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for result.json and the figures (new or empty; default "
              "runs/experiments/NAME).")
@click.option("--overwrite", is_flag=True, help="Replace the files betavae wrote in --out.")
@click.option("--quick", is_flag=True, help="The small configuration the tests use (seconds).")
@click.option("--seed", type=int, default=0, show_default=True)
@one_line_errors
def experiment(name: str, out_dir: str | None, overwrite: bool, quick: bool,
               seed: int) -> None:
    """Run one of the experiments behind "β is the price of information".

    Each fits small models, measures an effect, checks its direction, and writes
    result.json plus PNG figures, and prints its table.
    """
    from .experiments import run_experiment

    out = Path(out_dir or f"runs/experiments/{name}")
    result = run_experiment(name, out, quick=quick, seed=seed, overwrite=overwrite)
    if result.table:
        click.echo(result.table)
    click.echo(json.dumps(result.checks, indent=2))
    click.echo(f"{name}: {sum(result.checks.values())}/{len(result.checks)} checks hold "
               f"({result.seconds:.0f} s); wrote {out}/result.json and figures.")

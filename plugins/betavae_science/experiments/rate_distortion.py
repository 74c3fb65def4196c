"""Experiments 1 and 2: what β buys. As β rises the rate falls and the distortion rises
(the rate–distortion trade-off), and the aggregate posterior moves toward the factorised
prior (its off-diagonal covariance and total correlation fall)."""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from .common import (
    ExperimentResult,
    dataset,
    monotone,
    posterior_stats,
    quick_fit,
    single_threaded,
    timed,
)

# name -> (dataset options, fit options); "quick" variants keep the tests fast.
SETTINGS: dict[str, dict[str, Any]] = {
    "shapes": {
        "full": ({"n": 6000, "size": 28}, {"epochs": 20, "latent_dim": 10}),
        "quick": ({"n": 1000, "size": 16},
                  {"epochs": 6, "latent_dim": 6, "hidden": [128], "lr": 3e-3,
                   "batch_size": 64}),
    },
    "mixed_factors": {
        "full": ({"n": 4000}, {"epochs": 40, "latent_dim": 6}),
        "quick": ({"n": 1200}, {"epochs": 10, "latent_dim": 6, "hidden": [64], "lr": 3e-3,
                                "batch_size": 64}),
    },
}
BETAS = {"full": [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0], "quick": [0.25, 2.0, 16.0]}


def _sweep(name: str, mode: str, seed: int) -> list[dict[str, Any]]:
    """One fit per β; both experiments read the same sweep, so it is computed once."""
    return copy.deepcopy(_cached_sweep(name, mode, seed))


@functools.lru_cache(maxsize=8)
def _cached_sweep(name: str, mode: str, seed: int) -> list[dict[str, Any]]:
    data_options, fit_options = SETTINGS[name][mode]
    data = dataset(name, seed=seed, **data_options)
    rows = []
    with single_threaded():
        for beta in BETAS[mode]:
            fitted = quick_fit(data, beta=beta, seed=seed, **fit_options)
            rows.append({"beta": beta, **posterior_stats(fitted)})
    return rows


def _trend(rows: list[dict[str, Any]], key: str) -> float:
    """Spearman correlation of a quantity with β (−1: falls steadily, +1: rises)."""
    return float(spearmanr([r["beta"] for r in rows], [r[key] for r in rows])[0])


@timed
def rate_distortion(quick: bool = False, seed: int = 0) -> ExperimentResult:
    """β sweep on shapes and on mixed_factors: rate falls, distortion rises."""
    mode = "quick" if quick else "full"
    sweeps = {name: _sweep(name, mode, seed) for name in SETTINGS}
    checks = {}
    for name, rows in sweeps.items():
        rates = [r["rate"] for r in rows]
        distortions = [r["distortion"] for r in rows]
        # A tolerance of 2 % of the range absorbs optimisation noise between near-equal fits.
        checks[f"{name}_rate_falls"] = monotone(rates, False, 0.02 * np.ptp(rates))
        checks[f"{name}_distortion_rises"] = monotone(distortions, True,
                                                      0.02 * np.ptp(distortions))
    return ExperimentResult(
        name="rate_distortion",
        metrics={name: {"rows": rows, "rate_trend": _trend(rows, "rate"),
                        "distortion_trend": _trend(rows, "distortion")}
                 for name, rows in sweeps.items()},
        checks=checks,
        figures={"rate_distortion": _rd_figure(sweeps)},
    )


@timed
def decorrelation(quick: bool = False, seed: int = 0) -> ExperimentResult:
    """Off-diagonal mass of the aggregate posterior covariance and total correlation
    against β, on mixed_factors (continuous sources) and shapes."""
    mode = "quick" if quick else "full"
    sweeps = {name: _sweep(name, mode, seed) for name in SETTINGS}
    checks = {}
    for name, rows in sweeps.items():
        # Compare only fits that still carry information (>= 2 active units and a rate of at
        # least 1 nat): once the units have collapsed the covariance is the prior's and the
        # decrease would hold trivially.
        active = [r for r in rows if r["active_units"] >= 2 and r["rate"] >= 1.0]
        if len(active) < 2:
            checks[f"{name}_offdiag_falls"] = checks[f"{name}_tc_falls"] = False
            continue
        low, high = active[0], active[-1]
        checks[f"{name}_offdiag_falls"] = high["offdiag_mass"] < low["offdiag_mass"]
        checks[f"{name}_tc_falls"] = (high["total_correlation_gaussian"]
                                      < low["total_correlation_gaussian"])
    return ExperimentResult(
        name="decorrelation",
        metrics={name: {"rows": rows, "offdiag_trend": _trend(rows, "offdiag_mass"),
                        "tc_trend": _trend(rows, "total_correlation_gaussian"),
                        "tc_mixture_trend": _trend(rows, "total_correlation")}
                 for name, rows in sweeps.items()},
        checks=checks,
        figures={"decorrelation": _decorrelation_figure(sweeps)},
    )


def _rd_figure(sweeps: dict[str, list[dict[str, Any]]]) -> Figure:
    fig = Figure(figsize=(4.2 * len(sweeps), 3.6))
    for ax, (name, rows) in zip(fig.subplots(1, len(sweeps)), sweeps.items(), strict=True):
        rates = [r["rate"] for r in rows]
        distortions = [r["distortion"] for r in rows]
        ax.plot(rates, distortions, "o-", color="tab:purple")
        for r in rows:
            ax.annotate(f"β={r['beta']:g}", (r["rate"], r["distortion"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 3))
        ax.set_xlabel("rate (nats)")
        ax.set_ylabel("distortion (nats)")
        ax.set_title(f"{name}: held-out rate–distortion")
    fig.tight_layout()
    return fig


def _decorrelation_figure(sweeps: dict[str, list[dict[str, Any]]]) -> Figure:
    fig = Figure(figsize=(4.2 * len(sweeps), 3.6))
    for ax, (name, rows) in zip(fig.subplots(1, len(sweeps)), sweeps.items(), strict=True):
        betas = [r["beta"] for r in rows]
        ax.plot(betas, [r["offdiag_mass"] for r in rows], "o-", label="off-diagonal mass")
        ax.set_xscale("log")
        ax.set_xlabel("β")
        ax.set_ylabel("mean squared off-diagonal correlation")
        twin = ax.twinx()
        twin.plot(betas, [r["total_correlation_gaussian"] for r in rows], "s--",
                  color="tab:red", label="total correlation (Gaussian)")
        twin.set_ylabel("total correlation (nats)", color="tab:red")
        ax.set_title(f"{name}: aggregate posterior vs β")
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def table(result: ExperimentResult) -> str:
    """The sweep of either experiment as a plain-text table, one block per dataset."""
    lines = []
    for data_name, entry in result.metrics.items():
        lines.append(f"{data_name}")
        lines.append(f"  {'beta':>6} {'rate':>8} {'distortion':>11} {'active':>7} "
                     f"{'offdiag':>8} {'TC':>7}")
        for r in entry["rows"]:
            lines.append(f"  {r['beta']:>6g} {r['rate']:>8.2f} {r['distortion']:>11.2f} "
                         f"{r['active_units']:>7d} {r['offdiag_mass']:>8.4f} "
                         f"{r['total_correlation_gaussian']:>7.3f}")
    return "\n".join(lines)

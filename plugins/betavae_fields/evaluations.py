"""Evaluations of a model fitted to lattice configurations.

* `order_parameter`: how each latent correlates with the physical observables; warns
  (`LatentWarning`) when the most informative latent follows the energy more than |m|.
* `critical_point`: the critical temperature read from the latent space alone, beside
  the same estimate from the first principal component (the classic baseline) and, for
  Ising, the exact value.
* `generated_physics`: configurations decoded around Monte Carlo ones at chosen
  temperatures, judged by their energy and |m| distributions.

Each receives the run (`betavae_core.RunContext`) and reads the model and the held-out
data from it; the batched passes go through `betavae_core.encode` and `decode`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

import betavae_core as bv
from betavae_core import (
    BetaVAE,
    ConfigError,
    DataError,
    DomainData,
    EvaluationResult,
    RunContext,
)

from . import physics, readout, scaling, transition

GENERATION_CONTROLS = {"ising": [1.8, 2.27, 3.0], "xy": [0.5, 0.9, 1.5]}
#: Models whose energy is unchanged by x -> -x (the order parameter changes sign).
Z2_MODELS = ("ising", "phi4")


class LatentWarning(UserWarning):
    """The latent an evaluation reads the physics from looks like the wrong observable."""


def _control(data: DomainData) -> tuple[str, np.ndarray]:
    name = data.attrs.get("control_name", "temperature")
    return name, np.asarray(data.metadata[name], dtype=np.float64)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def order_latent(model: BetaVAE, mu: np.ndarray, logvar: np.ndarray,
                 covariates: Any = None) -> int:
    """The most informative latent dimension: largest mean KL to the prior (a prior
    conditioned on covariates, e.g. temperature, needs the items' `covariates`)."""
    import torch

    cov = None if covariates is None else torch.as_tensor(covariates).to(model.device)
    kl = model.kl_per_dim(torch.as_tensor(mu, dtype=torch.float32).to(model.device),
                          torch.as_tensor(logvar, dtype=torch.float32).to(model.device),
                          covariates=cov)
    return int(kl.mean(0).argmax())


def flipped_means(model: BetaVAE, data: DomainData, batch_size: int = 8192) -> np.ndarray:
    """Posterior means (n, d) of every configuration spin-flipped (x -> -x; padding, 0,
    stays padding): with the unflipped means they give a latent's odd part."""
    out = []
    for start in range(0, len(data), batch_size):
        part = data.subset(np.arange(start, min(len(data), start + batch_size)))
        part.x = -part.x
        out.append(bv.encode(model, part)[0])
    return np.concatenate(out)


def order_values(model: BetaVAE, data: DomainData, mu: np.ndarray, dim: int,
                 batch_size: int = 8192, flipped: np.ndarray | None = None) -> np.ndarray:
    """Latent `dim` as an order parameter for moments and Binder cumulants.

    For a Z2-symmetric model (Ising, phi^4) its spin-flip odd part
    (mu(x) - mu(-x)) / 2: what changes sign with the order parameter. A latent also
    carries an even part (energy-like, a different offset at every temperature), and
    measured from one global centre that offset alone makes U -> 2/3 wherever it
    dominates the fluctuations, high temperatures included. Otherwise (XY) the latent
    centred on its mean. `mu` are the posterior means of `data`, `flipped` those of
    the flipped configurations when already computed (`flipped_means`)."""
    if data.attrs.get("model") not in Z2_MODELS:
        return mu[:, dim] - mu[:, dim].mean()
    if flipped is None:
        flipped = flipped_means(model, data, batch_size)
    return 0.5 * (mu[:, dim] - flipped[:, dim])


def first_component(data: DomainData) -> np.ndarray:
    """Projection of each configuration on the first principal component (angles are
    embedded as (cos, sin) first)."""
    x = data.x.double().numpy().reshape(len(data), -1)
    if data.attrs.get("model") == "xy":
        x = np.concatenate([np.cos(x), np.sin(x)], axis=1)
    return PCA(n_components=1, random_state=0).fit_transform(x)[:, 0]


def correlation_table(mu: np.ndarray, data: DomainData) -> dict[str, list[float]]:
    """Pearson r of every latent with every factor (|z| against |m|), latents centred."""
    mu = mu - mu.mean(axis=0)  # |z| is measured from the symmetric point
    return {
        name: [_pearson(np.abs(mu[:, d]) if name == "abs_magnetization" else mu[:, d],
                        data.factors[:, j]) for d in range(mu.shape[1])]
        for j, name in enumerate(data.factor_names)
    }


#: |r| with the energy above which a latent counts as having learned it
ENERGY_R_MIN = 0.5


def energy_warning(table: dict[str, list[float]], order_dim: int) -> str | None:
    """A message when the most informative latent follows the energy (|r| >= 0.5) more
    than |z| follows |m| (None otherwise, or when the data has no such factors)."""
    if "energy" not in table or "abs_magnetization" not in table:
        return None
    r_e, r_m = abs(table["energy"][order_dim]), abs(table["abs_magnetization"][order_dim])
    if r_e <= r_m or r_e < ENERGY_R_MIN:
        return None
    best_m = int(np.argmax(np.abs(table["abs_magnetization"])))
    other = (f"; z{best_m} follows |m| best (|r| = "
             f"{abs(table['abs_magnetization'][best_m]):.2f}), read the transition from it"
             if best_m != order_dim else "")
    return (f"order_parameter: the most informative latent z{order_dim} correlates more with "
            f"the energy (|r| = {r_e:.2f}) than |z{order_dim}| with |m| (|r| = {r_m:.2f}): it "
            f"learned the energy (temperature), not the order parameter, so critical_point "
            f"will locate the wrong thing. Give the decoder the local correlations instead "
            f"(likelihood=spin_multiscale for Ising), or add latents (latent_dim=3) or train "
            f"longer{other}.")


def order_parameter(run: RunContext) -> EvaluationResult:
    """Pearson r of every latent (posterior mean; |mean| for |m|) with the observables;
    warns when the most informative latent follows the energy more than |m|."""
    model, data = run.model, run.heldout
    mu, logvar = bv.encode(model, data)
    table = correlation_table(mu, data)
    mu = mu - mu.mean(axis=0)
    names = list(data.factor_names)
    pc1 = first_component(data)
    best = {name: int(np.argmax(np.abs(r))) for name, r in table.items()}
    metrics: dict[str, Any] = {
        "correlation": table,
        "best_latent": best,
        "best_abs_r": {name: abs(table[name][d]) for name, d in best.items()},
        "pca_abs_r": {name: abs(_pearson(np.abs(pc1) if name == "abs_magnetization" else pc1,
                                         data.factors[:, j])) for j, name in enumerate(names)},
        "order_latent": order_latent(model, mu, logvar, data.covariates),
    }
    message = energy_warning(table, metrics["order_latent"])
    metrics["warning"] = message
    if message:
        warnings.warn(message, LatentWarning, stacklevel=2)
    control_name, control = _control(data)
    fig = _latent_vs_control(mu, control, control_name, metrics["order_latent"],
                             best.get("abs_magnetization"))
    return EvaluationResult(metrics=metrics, figures={"latent_vs_" + control_name: fig})


def _latent_vs_control(mu, control, control_name, order_dim, m_dim) -> Figure:
    dims = sorted({d for d in (order_dim, m_dim) if d is not None})
    fig = Figure(figsize=(4.2 * len(dims), 3.4))
    for k, d in enumerate(dims):
        ax = fig.add_subplot(1, len(dims), k + 1)
        sc = ax.scatter(control, mu[:, d], c=control, s=4, cmap="coolwarm", alpha=0.6)
        ax.set_xlabel(control_name)
        ax.set_ylabel(f"posterior mean z{d}")
        role = [r for r, dd in (("most informative", order_dim), ("best |m|", m_dim)) if dd == d]
        ax.set_title(f"z{d} ({', '.join(role)})")
    fig.colorbar(sc, ax=fig.axes, label=control_name)
    return fig


def critical_point(run: RunContext) -> EvaluationResult:
    """Critical point from the most informative latent alone, and from PCA's first
    component, by the susceptibility peak and the inflection of the mean |value|."""
    model, data = run.model, run.heldout
    if "L" in data.metadata:  # data of several sizes records L per configuration
        scaling.require_one_size(data.metadata["L"], "critical_point")
    control_name, control = _control(data)
    mu, logvar = bv.encode(model, data)
    dim = order_latent(model, mu, logvar, data.covariates)
    n_sites = int(np.prod(data.event_shape))
    per_t = control_name == "temperature"
    # centred: the order parameter's symmetric point is the data's mean (both signs of m
    # are sampled), and |z| is only meaningful about it
    latent = transition.curves(mu[:, dim] - mu[:, dim].mean(), control, n_sites, per_t)
    pca = transition.curves(first_component(data), control, n_sites, per_t)
    ising_class = data.attrs.get("model") in ("ising", "phi4")  # U* holds for this class
    metrics: dict[str, Any] = {
        "control": control_name, "latent_dim": dim, "L": int(data.event_shape[0]),
        "tc_latent": transition.susceptibility_peak(latent),
        "tc_latent_inflection": transition.inflection(latent),
        "tc_latent_binder": _finite(transition.binder_point(latent)) if ising_class else None,
        "tc_pca": transition.susceptibility_peak(pca),
        "tc_pca_inflection": transition.inflection(pca),
        "tc_pca_binder": _finite(transition.binder_point(pca)) if ising_class else None,
        "curves": {"control": latent.control.tolist(),
                   "latent_mean_abs": latent.mean_abs.tolist(),
                   "latent_susceptibility": latent.susceptibility.tolist(),
                   "latent_binder": latent.binder.tolist(),
                   "pca_mean_abs": pca.mean_abs.tolist(),
                   "pca_susceptibility": pca.susceptibility.tolist(),
                   "pca_binder": pca.binder.tolist()},
    }
    exact = data.attrs.get("tc_exact")
    if exact is not None:
        metrics["tc_exact"] = float(exact)
        for key in ("tc_latent", "tc_latent_inflection", "tc_latent_binder", "tc_pca",
                    "tc_pca_inflection", "tc_pca_binder"):
            if metrics[key] is not None:
                metrics[key.replace("tc_", "rel_error_")] = abs(metrics[key] - exact) / exact
    fig = _susceptibility_figure(latent, pca, metrics, control_name, dim)
    return EvaluationResult(metrics=metrics, figures={"susceptibility": fig})


def finite_size_scaling(run: RunContext) -> EvaluationResult:
    """Finite-size scaling of the most informative latent across the data's lattice sizes
    (metadata "L"), beside the same analysis of the Monte Carlo |m|: Binder crossings per
    pair of sizes, their extrapolation and a collapse fitting Tc and nu (window derived
    from the crossings). The latent enters as `order_values` (its spin-flip odd part for
    Ising and phi^4) and, for those, also read through the decoder ("latent_decoded":
    `readout.decoded_odd`, the magnetisation the decoder expects at the posterior mean).
    Exact values (attrs "tc_exact") are only drawn as references."""
    model, data = run.model, run.heldout
    if "L" not in data.metadata or len(np.unique(data.metadata["L"])) < scaling.MIN_SIZES:
        found = sorted({int(v) for v in np.atleast_1d(data.metadata.get("L", data.attrs.get(
            "L", 0)))})
        raise ConfigError(f"finite_size_scaling needs data of at least {scaling.MIN_SIZES} "
                          f"lattice sizes (metadata 'L', e.g. the ising2d_sizes dataset); "
                          f"this data has L = {found}.")
    control_name, control = _control(data)
    sizes = np.asarray(data.metadata["L"])
    mu, logvar = bv.encode(model, data)
    dim = order_latent(model, mu, logvar, data.covariates)
    metrics: dict[str, Any] = {"control": control_name, "latent_dim": dim,
                               "sizes": sorted({int(s) for s in sizes})}
    figures = {}
    abs_m = data.factors[:, list(data.factor_names).index("abs_magnetization")]
    reference = {"exact Tc": float(data.attrs["tc_exact"])} if "tc_exact" in data.attrs else {}
    rows = {}
    if data.attrs.get("model") in Z2_MODELS:
        flipped = flipped_means(model, data)
        rows["latent"] = order_values(model, data, mu, dim, flipped=flipped)
        rows["latent_decoded"] = readout.decoded_odd(model, mu, flipped, sizes,
                                                     data.covariates)
    else:
        rows["latent"] = order_values(model, data, mu, dim)
    rows["mc_abs_m"] = abs_m
    for name, values in rows.items():
        try:
            curves = scaling.binder_curves(values, control, sizes, control_name=control_name,
                                           seed=run.seed)
        except DataError as exc:
            raise DataError(f"finite_size_scaling on the {run.split} data: {exc} Evaluate on "
                            f"more configurations (betavae evaluate RUN --data "
                            f"ising2d_sizes -o samples=...).") from exc
        result = scaling.analyse(curves, n_boot=20)
        found, fit, ext = result.found, result.collapse, result.extrapolated
        metrics[name] = {
            "crossings": [{"sizes": list(c.sizes), "control": c.control, "error": c.error,
                           "note": c.note} for c in found],
            "extrapolated": {"tc": ext.tc, "error": ext.tc_error, "note": ext.note},
            "collapse": {"tc": fit.tc, "tc_error": fit.tc_error, "nu": fit.nu,
                         "nu_error": fit.nu_error, "quality": fit.quality},
        }
        figures[f"{name}_binder"] = scaling.binder_figure(curves, found, reference)
        figures[f"{name}_collapse"] = scaling.collapse_figure(curves, fit)
    if reference:
        metrics["tc_exact"] = reference["exact Tc"]
    return EvaluationResult(metrics=metrics, figures=figures)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _susceptibility_figure(latent, pca, metrics, control_name, dim) -> Figure:
    """Top: susceptibility and <|v|> (each scaled to its maximum) with the peak; bottom:
    the Binder cumulant with its critical value. Latent left, PCA right."""
    fig = Figure(figsize=(9.0, 6.0))
    exact = metrics.get("tc_exact")
    panels = ((latent, f"latent z{dim}", "tc_latent"), (pca, "PCA component 1", "tc_pca"))
    for k, (curve, label, key) in enumerate(panels):
        ax = fig.add_subplot(2, 2, k + 1)
        ax.plot(curve.control, curve.susceptibility / curve.susceptibility.max(), "o-",
                ms=3, label="susceptibility (scaled)")
        ax.errorbar(curve.control, curve.mean_abs / curve.mean_abs.max(),
                    yerr=curve.sem_abs / curve.mean_abs.max(), fmt="s-", ms=3,
                    label="mean |value| (scaled)")
        ax.axvline(metrics[key], color="tab:red", ls="--", label=f"peak {metrics[key]:.3f}")
        ax.set_title(label)
        low = fig.add_subplot(2, 2, k + 3)
        low.plot(curve.control, curve.binder, "o-", ms=3, color="tab:green",
                 label="Binder cumulant U")
        low.axhline(transition.BINDER_ISING, color="grey", lw=1, ls=":", label="U* (2D Ising)")
        if metrics.get(key + "_binder") is not None:
            value = metrics[key + "_binder"]
            low.axvline(value, color="tab:green", ls="--", label=f"U = U* at {value:.3f}")
        low.set_xlabel(control_name)
        for a in (ax, low):
            if exact is not None:
                a.axvline(exact, color="k", lw=1, label=f"exact {exact:.3f}")
            a.legend(frameon=False, fontsize=7)
    return fig


def generated_physics(run: RunContext, controls: float | list[float] | None = None
                      ) -> EvaluationResult:
    """At a few control values (`controls`, each moved to the nearest one in the data;
    default: three per model): decode around the Monte Carlo configurations there and
    compare energy and |m| distributions with Monte Carlo's (1-Wasserstein)."""
    data = run.heldout
    control_name, control = _control(data)
    kind = data.attrs.get("model", "ising")
    grid = np.unique(control)
    if controls is None:
        wanted = GENERATION_CONTROLS.get(kind, list(np.quantile(grid, [0.1, 0.5, 0.9])))
    else:
        wanted = _wanted_controls(controls)
    chosen = physics.nearest_controls(grid, wanted)
    rows, hists = {}, {}
    for c in chosen:
        at = data.subset(np.flatnonzero(control == c))
        generated, _ = physics.decode_around(run.model, at, seed=run.seed)
        gen_obs = physics.observables(kind, generated, c, data.attrs)
        ref_obs = physics.observables(kind, at.x.numpy(), c, data.attrs)
        rows[f"{c:g}"] = physics.compare_observables(gen_obs, ref_obs)
        hists[c] = (gen_obs[0], ref_obs[0])
    metrics = {"control": control_name, "at": rows,
               "mean_w1_energy": float(np.mean([r["w1_energy"] for r in rows.values()]))}
    return EvaluationResult(metrics=metrics,
                            figures={"energy_histograms": energy_histograms(hists, control_name)})


def _wanted_controls(controls: float | list[float]) -> list[float]:
    """The `controls` option as a list of finite numbers (`ConfigError` otherwise)."""
    try:
        values = np.atleast_1d(np.asarray(controls, dtype=np.float64))
    except (TypeError, ValueError):
        values = np.array([])
    if values.ndim != 1 or not len(values) or not np.isfinite(values).all():
        raise ConfigError(f"generated_physics: controls must be one or more numbers "
                          f"(e.g. controls=1.8,2.27); got {controls!r}.")
    return [float(v) for v in values]


def energy_histograms(hists: dict[float, tuple[np.ndarray, np.ndarray]],
                      control_name: str) -> Figure:
    """One panel per control value: generated vs Monte Carlo energy per site."""
    fig = Figure(figsize=(3.6 * max(1, len(hists)), 3.0))
    for k, (c, (gen, ref)) in enumerate(hists.items()):
        ax = fig.add_subplot(1, len(hists), k + 1)
        bins = np.histogram_bin_edges(np.concatenate([gen, ref]), bins=30)
        ax.hist(ref, bins=bins, alpha=0.5, density=True, label="Monte Carlo")
        ax.hist(gen, bins=bins, alpha=0.5, density=True, label="generated")
        ax.set_xlabel("energy per site")
        ax.set_title(f"{control_name} = {c:g}")
        ax.legend(frameon=False, fontsize=7)
    return fig

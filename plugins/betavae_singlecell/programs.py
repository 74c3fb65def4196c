"""Gene programs read off the latent dimensions: `latent_genes`, the β-VAE's own edge.

A β-VAE that pays for every nat it stores keeps few active dimensions, and each tends to
carry one independent factor of the cells. Decoding along one dimension, with the others
held at each cell's posterior mean, shows which genes that factor moves: a gene program.

Expression here is the decoder's mean at a fixed library size of 10,000, that is the
genes' expected proportions x 1e4 (counts per 10,000), so the depth of a cell plays no
part. Scores are on the log of it (natural log for the Jacobian, log2 for traversals);
for a Gaussian model, whose decoded mean is already log1p-expression, they are changes
of that mean.

The Jacobian is taken by central finite differences through `bv.decode` (the core's one
batched decoding loop, which runs without gradients), with a step of 0.05 prior s.d.:
its error (float32 rounding and the h^2 term) is of order 1e-3 of the slope, far
below the differences between genes that the ranking reads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import betavae_core as bv
from betavae_core import ConfigError

from .model import SingleCellModel

__all__ = ["METHODS", "latent_genes", "latent_genes_df"]

METHODS = ("jacobian", "traversal")
LIBRARY_SIZE = 1e4
TRAVERSAL_SD = 2.0  # traversals run from -2 to +2 prior s.d.
FD_STEP = 0.05  # finite-difference step, in prior s.d.
_TINY = 1e-30  # floor before a log: a decoded proportion can underflow to zero
SCORE_UNITS = {
    "jacobian": "d ln(expression) / dz_d, per prior s.d.",
    "traversal": "log2 fold change, z_d = +2 vs -2 prior s.d.",
}
GAUSSIAN_UNITS = {
    "jacobian": "d (decoded log1p expression) / dz_d, per prior s.d.",
    "traversal": "change of decoded log1p expression, z_d = +2 vs -2 prior s.d.",
}


@dataclass
class DimensionResult:
    """One latent dimension: every gene's score and the mean decoded expression of
    every gene at each step of the traversal grid (steps x genes)."""

    dim: int
    rate: float
    scores: np.ndarray
    curves: np.ndarray


def latent_genes(
    model: SingleCellModel,
    adata: Any = None,
    *,
    n_top: int = 50,
    method: str = "jacobian",
    active_threshold: float = 0.1,
    layer: str | None = None,
    n_cells: int | None = 5000,
    n_steps: int = 9,
    seed: int = 0,
    key_added: str | None = "latent_genes",
    batch_size: int = 1024,
    copy: bool = False,
) -> Any:
    """Rank, for each active latent dimension, the genes its value moves most (signed).

    The cells of `adata` (default: the model's) are encoded to their posterior means; a
    dimension is active when its rate (KL, nats per cell) exceeds `active_threshold`. The
    rate is the fit's held-out KL per dimension (`model.record["kl_per_dim"]`, the
    figure `bsc.pl.rate_per_dim` draws) or, for a model without that record, the KL of
    the encoded cells. Each cell is decoded with its own batch and a library size of
    1e4, and with z_d moved while its other coordinates stay at their posterior means.

    Args:
        method: "jacobian" scores gene g by d ln(expression_g)/dz_d at the posterior
            mean, averaged over cells, per prior s.d. of z_d; "traversal" by the log2
            fold change between z_d = +2 and z_d = -2 prior s.d., averaged over cells.
            Both are signed: positive where raising z_d raises the gene.
        n_top: genes kept per dimension, ranked by |score| (clipped, with a warning, to
            the model's number of genes).
        n_cells: cells averaged over (a seeded random subset of `adata` when it holds
            more; None for all). The rates still come from all cells.
        n_steps: points of the traversal grid from -2 to +2 prior s.d. (for the plots).
        key_added: `adata.uns` key to write (None: write nothing).
        copy: write into a copy of `adata` and return it instead of the table.

    Returns the table (or, with `copy`, the AnnData copy): a DataFrame with one row per
    dimension and gene, columns `dimension`, `rank` (1 = largest |score|), `gene`,
    `score`, `direction` ("up"/"down") and `rate_nats`, as `latent_genes_df` rebuilds
    it from `uns`. Writes only `adata.uns[key_added]` (h5ad-writable):

    * `params`: method, n_top, active_threshold, score_unit, expression, library_size,
      rate_source ("record" or "cells"), n_cells, n_steps, seed, layer;
    * `dims` (int array) and `rate_nats` (float array): the active dimensions, by rate;
    * `grid`: the traversal steps, in prior s.d.;
    * `var_names` and `score_matrix` (dims x genes): every gene's score;
    * `z{d}` for each active dimension d: `genes`, `scores` and `directions` (the top
      n_top), `rate_nats`, and `traversal` (steps x top genes: mean decoded expression,
      counts per 10,000, along the grid).
    """
    _check_options(method, n_top, active_threshold, n_steps, n_cells, copy, key_added)
    adata = model.adata if adata is None else adata
    from .tl import _model_data

    data = _model_data(model, adata, layer, "latent_genes")
    mu, logvar = bv.encode(model.vae, data, batch_size=batch_size)
    rates, rate_source = _rates(model, mu, logvar)
    dims = _active_dims(rates, active_threshold)
    n_top = _clip_top(n_top, len(model.var_names))
    cells = _cell_subset(len(mu), n_cells, seed)
    covariates = None if data.covariates is None else data.covariates[torch.as_tensor(cells)]
    scale = model.vae.prior_scale().detach().cpu().numpy().astype(np.float64)
    grid = np.linspace(-TRAVERSAL_SD, TRAVERSAL_SD, n_steps)
    gaussian = model.likelihood == "gaussian"
    results = [_dimension(model, mu[cells], covariates, d, float(rates[d]), scale[d], grid,
                          method, gaussian, batch_size) for d in dims]
    units = GAUSSIAN_UNITS if gaussian else SCORE_UNITS
    params = {"method": method, "n_top": n_top, "active_threshold": float(active_threshold),
              "score_unit": units[method], "library_size": LIBRARY_SIZE,
              "expression": ("decoded log1p expression" if gaussian else
                             "decoded mean at library size 1e4 (counts per 10,000)"),
              "rate_source": rate_source, "n_cells": len(cells), "n_steps": n_steps,
              "seed": seed, "layer": layer or model.layer or "X"}
    record = _uns(results, model.var_names, grid, n_top, params)
    table = latent_genes_df(record)
    if key_added is None:
        return table
    target = adata.copy() if copy else adata
    target.uns[key_added] = record
    return target if copy else table


def _check_options(method: str, n_top: int, active_threshold: float, n_steps: int,
                   n_cells: int | None, copy: bool, key_added: str | None) -> None:
    if method not in METHODS:
        raise ConfigError(f"latent_genes method must be one of {METHODS}; got {method!r}.")
    if isinstance(n_top, bool) or not isinstance(n_top, (int, np.integer)) or n_top < 1:
        raise ConfigError(f"latent_genes n_top must be a positive integer; got {n_top!r}.")
    if not np.isfinite(active_threshold) or active_threshold < 0:
        raise ConfigError(f"latent_genes active_threshold must be >= 0 nats; got "
                          f"{active_threshold!r}.")
    if n_steps < 2:
        raise ConfigError(f"latent_genes n_steps must be >= 2; got {n_steps}.")
    if n_cells is not None and n_cells < 1:
        raise ConfigError(f"latent_genes n_cells must be >= 1 or None; got {n_cells}.")
    if copy and key_added is None:
        raise ConfigError("latent_genes copy=True writes into a copy of adata: give "
                          "key_added (the uns key), or use copy=False.")


def _rates(model: SingleCellModel, mu: np.ndarray,
           logvar: np.ndarray) -> tuple[np.ndarray, str]:
    """KL per dimension (nats): the fit's held-out record, else that of these cells."""
    recorded = np.asarray(model.record.get("kl_per_dim", []), dtype=np.float64)
    if recorded.shape == (model.n_latent,) and np.isfinite(recorded).all():
        return recorded, "record"
    with torch.no_grad():
        kl = model.vae.kl_per_dim(torch.as_tensor(mu, dtype=torch.float32).to(model.vae.device),
                                  torch.as_tensor(logvar, dtype=torch.float32)
                                  .to(model.vae.device))
    return kl.double().mean(dim=0).cpu().numpy(), "cells"


def _active_dims(rates: np.ndarray, threshold: float) -> list[int]:
    """Dimensions above `threshold`, by rate (largest first); `ConfigError` if none."""
    active = [int(d) for d in np.argsort(-rates, kind="stable") if rates[d] > threshold]
    if not active:
        top = int(np.argmax(rates))
        raise ConfigError(
            f"no latent dimension of this model carries more than {threshold:g} nats "
            f"(the largest is z{top}, {rates[top]:.3g} nats): the decoder ignores z, so "
            f"there are no gene programs to read. Lower active_threshold, or refit with a "
            f"smaller beta or more epochs (bsc.pl.rate_per_dim shows the rates).")
    return active


def _clip_top(n_top: int, n_genes: int) -> int:
    if n_top > n_genes:
        warnings.warn(f"latent_genes n_top={n_top} exceeds the model's {n_genes} genes; "
                      f"ranking all {n_genes}.", stacklevel=3)
        return n_genes
    return int(n_top)


def _cell_subset(n: int, n_cells: int | None, seed: int) -> np.ndarray:
    if n_cells is None or n <= n_cells:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_cells, replace=False))


def _expression(model: SingleCellModel, z: np.ndarray, covariates: torch.Tensor | None,
                batch_size: int) -> np.ndarray:
    """The decoder's mean for codes `z` at library size 1e4 (cells x genes)."""
    library = torch.full((len(z), 1), LIBRARY_SIZE)
    decoded = bv.decode(model.vae, z, covariates=covariates, context={"library": library},
                        mean=True, sample=False, batch_size=batch_size)
    return decoded.mean.reshape(len(z), -1).double().numpy()


def _log(values: np.ndarray, gaussian: bool, base: float = np.e) -> np.ndarray:
    """The scale scores are taken on: log expression, or the Gaussian mean itself."""
    return values if gaussian else np.log(np.maximum(values, _TINY)) / np.log(base)


def _dimension(model: SingleCellModel, mu: np.ndarray, covariates: torch.Tensor | None,
               dim: int, rate: float, scale: float, grid: np.ndarray, method: str,
               gaussian: bool, batch_size: int) -> DimensionResult:
    """Scores and traversal curves of one dimension, a chunk of cells at a time (so the
    decoded cells x genes matrices stay small)."""
    n_genes = len(model.var_names)
    scores = np.zeros(n_genes)
    curves = np.zeros((len(grid), n_genes))
    for sl in bv.batches(len(mu), batch_size):
        cov = None if covariates is None else covariates[sl]

        def decode_at(values: np.ndarray, *, shift: bool = False,
                      sl: slice = sl, cov: Any = cov) -> np.ndarray:
            z = mu[sl].copy()
            z[:, dim] = z[:, dim] + values if shift else values
            return _expression(model, z, cov, batch_size)

        steps = [decode_at(np.full(len(mu[sl]), t * scale)) for t in grid]
        curves += np.stack([s.sum(axis=0) for s in steps])
        if method == "traversal":
            scores += (_log(steps[-1], gaussian, 2.0) - _log(steps[0], gaussian, 2.0)).sum(0)
        else:
            h = FD_STEP * scale
            up, down = decode_at(h, shift=True), decode_at(-h, shift=True)
            scores += ((_log(up, gaussian) - _log(down, gaussian)) / (2 * FD_STEP)).sum(0)
    return DimensionResult(dim, rate, scores / len(mu), curves / len(mu))


def _uns(results: list[DimensionResult], var_names: list[str], grid: np.ndarray,
         n_top: int, params: dict[str, Any]) -> dict[str, Any]:
    """The `uns` record: arrays, strings and numbers only, so `write_h5ad` works."""
    genes = np.asarray(var_names, dtype=str)
    record: dict[str, Any] = {
        "params": params,
        "dims": np.array([r.dim for r in results], dtype=np.int64),
        "rate_nats": np.array([r.rate for r in results], dtype=np.float64),
        "grid": grid.astype(np.float64),
        "var_names": genes,
        "score_matrix": np.stack([r.scores for r in results]).astype(np.float32),
    }
    for r in results:
        top = np.argsort(-np.abs(r.scores), kind="stable")[:n_top]
        record[f"z{r.dim}"] = {
            "genes": genes[top], "scores": r.scores[top].astype(np.float64),
            "directions": np.where(r.scores[top] >= 0, "up", "down"),
            "rate_nats": float(r.rate), "traversal": r.curves[:, top].astype(np.float64),
        }
    return record


def latent_genes_df(adata_or_record: Any, key: str = "latent_genes") -> Any:
    """The tidy table of `adata.uns[key]` written by `latent_genes` (or of that record
    itself): one row per dimension and ranked gene, columns `dimension`, `rank`, `gene`,
    `score`, `direction`, `rate_nats`, like `sc.get.rank_genes_groups_df`."""
    import pandas as pd

    record = latent_genes_record(adata_or_record, key)
    rows = []
    for d in np.asarray(record["dims"]).tolist():
        entry = record[f"z{d}"]
        for rank, (gene, score, direction) in enumerate(
                zip(entry["genes"], entry["scores"], entry["directions"], strict=True), 1):
            rows.append((int(d), rank, str(gene), float(score), str(direction),
                         float(entry["rate_nats"])))
    return pd.DataFrame(rows, columns=["dimension", "rank", "gene", "score", "direction",
                                       "rate_nats"])


def latent_genes_record(source: Any, key: str = "latent_genes") -> dict[str, Any]:
    """`uns[key]` of an AnnData or of a model's AnnData, or a record passed as is;
    `KeyError` saying to run `latent_genes` first."""
    if isinstance(source, SingleCellModel):
        if source.adata is None:
            raise ConfigError("the model holds no AnnData: pass the AnnData that "
                              "bsc.tl.latent_genes wrote into.")
        source = source.adata
    if isinstance(source, dict) and "dims" in source:
        return source
    uns = getattr(source, "uns", None)
    if uns is None:
        raise TypeError(f"expected an AnnData, a SingleCellModel or a latent_genes record; "
                        f"got {type(source).__name__}.")
    if key not in uns or "dims" not in uns[key]:
        raise KeyError(f"adata.uns has no latent_genes record under {key!r}; run "
                       f"bsc.tl.latent_genes(model, adata, key_added={key!r}) first.")
    return uns[key]

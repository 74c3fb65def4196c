"""Bayesian differential expression from the model's posterior (scVI's "change" mode).

For two sets of cells, draw cells at random from each, one posterior latent per draw,
decode it to expression proportions (batch-corrected: averaged over decoding under every
batch), pair the draws of the two sets and take the log2 fold change per gene and pair.
Those samples are the posterior of the LFC of a random cell of group 1 against a random
cell of group 2; P(|LFC| > delta) is the probability that the gene changes by more than
delta, and a posterior expected FDR picks the genes called DE. The same draws give a
table per gene and, optionally, `adata.uns[key_added]` in `sc.tl.rank_genes_groups`'
layout, so scanpy's getters and plots read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import betavae_core as bv
from betavae_core import ConfigError, DataError

from .expression import latent_draws, model_data, posterior_scales
from .model import SingleCellModel

__all__ = ["differential_expression", "expected_fdr_set"]

MODES = ("change",)
PSEUDOCOUNT = 1e-6  # added to proportions before log2: 0.01 counts per 10,000
_EPS = 1e-8


def _group_labels(adata: Any, groupby: str) -> tuple[np.ndarray, list[str]]:
    """Labels per cell (None where missing) and the groups in their order (categorical
    order when the column is categorical); `DataError` when `groupby` is not in obs."""
    if groupby not in adata.obs.columns:
        raise DataError(f"groupby {groupby!r} is not a column of adata.obs; its columns are "
                        f"{list(adata.obs.columns)}.")
    column = adata.obs[groupby]
    present = ~column.isna().to_numpy()
    labels = np.where(present, column.astype(str).to_numpy(), None)
    if hasattr(column, "cat"):
        order = [str(c) for c in column.cat.categories if (labels == str(c)).any()]
    else:
        order = sorted({str(v) for v in labels[present]})
    return labels, order


def _check_group(name: Any, order: list[str], groupby: str, what: str) -> str:
    if str(name) not in order:
        raise ConfigError(f"unknown {what} {name!r}; adata.obs[{groupby!r}] holds the groups "
                          f"{order}.")
    return str(name)


def _comparisons(labels: np.ndarray, order: list[str], groupby: str, group1: Any,
                 group2: Any) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(group1, group2 or "rest", cells of 1, cells of 2) per comparison asked for, each
    side checked to hold at least 2 cells (`DataError` naming the group otherwise)."""
    if group1 is None and group2 is not None:
        raise ConfigError("group2 needs group1: name the group to compare against it.")
    firsts = order if group1 is None else [_check_group(group1, order, groupby, "group1")]
    second = None if group2 is None else _check_group(group2, order, groupby, "group2")
    if second is not None and second == firsts[0]:
        raise ConfigError(f"group1 and group2 are both {second!r}; compare two groups.")
    out = []
    for first in firsts:
        cells1 = np.flatnonzero(labels == first)
        cells2 = (np.flatnonzero(labels == second) if second is not None
                  else np.flatnonzero((labels != first) & (labels != None)))  # noqa: E711
        for name, cells in ((first, cells1), (second or f"rest of {first}", cells2)):
            if len(cells) < 2:
                raise DataError(f"group {name!r} of adata.obs[{groupby!r}] has {len(cells)} "
                                f"cell(s); differential expression needs at least 2 per side. "
                                f"Merge or drop it (or pick other groups).")
        out.append((first, second or "rest", cells1, cells2))
    return out


def expected_fdr_set(proba_de: np.ndarray, fdr: float) -> np.ndarray:
    """Boolean per gene: the largest set of the most probable genes whose posterior
    expected FDR, the mean of (1 - proba_de) over the set, is at most `fdr`."""
    order = np.argsort(-proba_de, kind="stable")
    expected = np.cumsum(1.0 - proba_de[order]) / np.arange(1, len(order) + 1)
    passing = np.flatnonzero(expected <= fdr)
    keep = np.zeros(len(proba_de), dtype=bool)
    if len(passing):
        keep[order[: passing[-1] + 1]] = True
    return keep


def _draw_scales(model: SingleCellModel, cells: np.ndarray, n: int, post: tuple,
                 covariates: Any, batches: list[str] | None, rng: np.random.Generator,
                 batch_size: int) -> np.ndarray:
    """Proportions of `n` random cells of `cells`, one posterior latent each."""
    mu, logvar = post
    pick = rng.choice(cells, size=n, replace=True)
    z = latent_draws(mu[pick], logvar[pick], rng)
    own = None if covariates is None else covariates[pick]
    return posterior_scales(model, z, own, batches, batch_size)


def _raw_stats(data: bv.DomainData, cells: np.ndarray, block: int = 4096) -> tuple:
    """Mean raw count and share of non-zero counts per gene over `cells`."""
    total = np.zeros(data.x.shape[1])
    nonzero = np.zeros(data.x.shape[1])
    for sl in bv.batches(len(cells), block):
        x = data.x.take(cells[sl]).numpy()
        total += x.sum(axis=0)
        nonzero += (x > 0).sum(axis=0)
    return total / len(cells), nonzero / len(cells)


def _table(genes: list[str], lfc: np.ndarray, s1: np.ndarray, s2: np.ndarray, delta: float,
           fdr: float, raw1: tuple, raw2: tuple) -> Any:
    """The per-gene DE table from LFC samples (pairs x genes), sorted by proba_de."""
    import pandas as pd

    proba = (np.abs(lfc) > delta).mean(axis=0)
    frame = pd.DataFrame({
        "proba_de": proba,
        "proba_not_de": 1.0 - proba,
        "bayes_factor": np.log(proba + _EPS) - np.log(1.0 - proba + _EPS),
        "lfc_mean": lfc.mean(axis=0),
        "lfc_median": np.median(lfc, axis=0),
        "lfc_std": lfc.std(axis=0),
        "scale1": s1.mean(axis=0),
        "scale2": s2.mean(axis=0),
        "mean1": raw1[0],
        "mean2": raw2[0],
        "non_zeros_proportion1": raw1[1],
        "non_zeros_proportion2": raw2[1],
    }, index=pd.Index(genes, name="gene"))
    frame[f"is_de_fdr_{fdr}"] = expected_fdr_set(proba, fdr)
    frame["_abs"] = frame["lfc_mean"].abs()
    return frame.sort_values(["proba_de", "_abs"], ascending=False).drop(columns="_abs")


def differential_expression(
    model: SingleCellModel,
    adata: Any,
    groupby: str,
    group1: str | None = None,
    group2: str | None = None,
    *,
    mode: str = "change",
    delta: float = 0.25,
    fdr: float = 0.05,
    batch_correction: bool = True,
    n_samples: int = 5000,
    layer: str | None = None,
    key_added: str | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> Any:
    """Genes whose expression differs between groups of cells, from the model's posterior.

    scVI's "change" mode: for `group1` against `group2` (None: all other cells; with
    `group1=None` too, every group against the rest, one table each) draw `n_samples`
    random cells per side, one posterior latent each, decoded to expression proportions
    (with `batch_correction`, averaged over decoding under every batch of the model, as
    scVI does; otherwise under the cell's own batch). Paired draws give samples of the
    log2 fold change per gene, log2(rho1 + c) - log2(rho2 + c) with c = `PSEUDOCOUNT`.
    Groups come from `adata.obs[groupby]` (cells without a label are left out); counts
    from `layers[layer]` (default: the model's layer). Deterministic in `seed`.

    Returns a pandas DataFrame, one row per gene (index: gene names), sorted by
    `proba_de` (ties by |lfc_mean|): `proba_de` = P(|LFC| > delta), `proba_not_de`,
    `bayes_factor` = log(p / (1 - p)), `lfc_mean`, `lfc_median`, `lfc_std`, `scale1` and
    `scale2` (mean decoded proportions, rows summing to 1, as scVI's), `mean1`/`mean2`
    (raw mean counts), `non_zeros_proportion1/2`, and `is_de_fdr_<fdr>`: the largest set of
    the most probable genes whose posterior expected FDR, mean(1 - proba_de), is at most
    `fdr`. With `group1=None` the tables are stacked with `comparison` ("A vs rest"),
    `group1` and `group2` columns.

    With `key_added`, also writes `adata.uns[key_added]` in `sc.tl.rank_genes_groups`'
    layout, for `sc.get.rank_genes_groups_df` and `sc.pl.rank_genes_groups`: record
    arrays with one field per group1, genes sorted by score, of `names`, `scores`
    (= `lfc_mean`, so genes up in the group come first), `logfoldchanges` (`lfc_mean`),
    `pvals` and `pvals_adj` (both = 1 - proba_de: a posterior probability of no change,
    not a p-value), and `params` (`groupby`, `reference`, `method`="betavae_change",
    `delta`, `fdr`, `n_samples`, `batch_correction`, `use_raw`=False). Nothing else in
    `adata` changes.

    Raises `DataError` when `groupby` is not in `obs` or a side has fewer than 2 cells,
    and `ConfigError` for an unknown group or mode.
    """
    import pandas as pd

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}; got {mode!r}.")
    if not delta >= 0 or not 0 < fdr < 1 or n_samples < 2:
        raise ConfigError(f"need delta >= 0, 0 < fdr < 1 and n_samples >= 2; got {delta}, "
                          f"{fdr}, {n_samples}.")
    labels, order = _group_labels(adata, groupby)
    comparisons = _comparisons(labels, order, groupby, group1, group2)
    data = model_data(model, adata, layer, "differential_expression")
    post = bv.encode(model.vae, data, batch_size=batch_size)
    batches = model.batches if batch_correction and model.batches else None
    rng = np.random.default_rng(seed)
    tables = {}
    for first, second, cells1, cells2 in comparisons:
        s1 = _draw_scales(model, cells1, n_samples, post, data.covariates, batches, rng,
                          batch_size)
        s2 = _draw_scales(model, cells2, n_samples, post, data.covariates, batches, rng,
                          batch_size)
        lfc = np.log2(s1 + PSEUDOCOUNT) - np.log2(s2 + PSEUDOCOUNT)
        tables[(first, second)] = _table(model.var_names, lfc, s1, s2, delta, fdr,
                                         _raw_stats(data, cells1), _raw_stats(data, cells2))
    if key_added is not None:
        params = {"groupby": groupby, "reference": group2 if group2 is not None else "rest",
                  "method": "betavae_change", "delta": float(delta), "fdr": float(fdr),
                  "n_samples": int(n_samples), "batch_correction": bool(batch_correction),
                  "use_raw": False, "layer": layer or model.layer or "X"}
        adata.uns[key_added] = rank_genes_groups_layout(
            {first: t for (first, _), t in tables.items()}, params)
    if group1 is not None:
        return next(iter(tables.values()))
    return pd.concat([t.assign(comparison=f"{a} vs {b}", group1=a, group2=b)
                      for (a, b), t in tables.items()])


def rank_genes_groups_layout(tables: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """`sc.tl.rank_genes_groups`' `uns` record from DE tables (one per group): record
    arrays, one field per group, genes sorted by `lfc_mean` descending."""
    fields: dict[str, list[np.ndarray]] = {k: [] for k in
                                           ("names", "scores", "logfoldchanges", "pvals")}
    for table in tables.values():
        ranked = table.sort_values("lfc_mean", ascending=False, kind="stable")
        fields["names"].append(ranked.index.to_numpy().astype(str))
        fields["scores"].append(ranked["lfc_mean"].to_numpy(np.float32))
        fields["logfoldchanges"].append(ranked["lfc_mean"].to_numpy(np.float32))
        fields["pvals"].append(ranked["proba_not_de"].to_numpy(np.float64))
    groups = list(tables)
    out: dict[str, Any] = {"params": params}
    for key, arrays in fields.items():
        out[key] = _records(arrays, groups)
    out["pvals_adj"] = out["pvals"].copy()
    return out


def _records(arrays: Sequence[np.ndarray], groups: list[str]) -> np.recarray:
    dtypes = [(g, a.dtype) for g, a in zip(groups, arrays, strict=True)]
    return np.rec.fromarrays(list(arrays), dtype=dtypes)

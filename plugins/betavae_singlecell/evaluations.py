"""Evaluations of a model fitted to single-cell counts (domain "singlecell").

* `singlecell_latent`: does the latent space keep cell types apart and mix batches?
  k-means (and, when installed, Leiden) ARI/NMI and label silhouette against the cell
  labels, batch silhouette and iLISI across batches; the same metrics on a 50-component
  PCA of log1p-normalised counts beside them, and their ratio.
* `singlecell_heldout`: −ELBO per cell (rate + distortion) and an importance-weighted
  estimate of −log p(x), a tighter bound on the held-out likelihood.
* `singlecell_generated`: prior draws decoded with real cells' batches and library sizes,
  judged by the per-gene mean, variance and zero fraction of the real cells.

Each is called as `evaluate(run, **options)` with a `betavae_core.RunContext`: the fitted
model (`run.model`), the cells to evaluate (`run.heldout`) and the seed (`run.seed`).
`run.heldout.x` may be a row source (sparse or on disk): it is only ever read one minibatch
at a time, and the model's passes go through `bv.encode`, `bv.decode` and
`bv.evaluate_terms`. Options (declared on the records in `plugin.py`; `betavae evaluate
--eval-option NAME.KEY=VALUE`) override `attrs["label_key"]` / `attrs["batch_key"]` and set
the sizes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import sparse

import betavae_core as bv
from betavae_core import BetaVAE, ConfigError, DomainData, EvaluationResult, RunContext

from . import metrics as M

TARGET_SUM = 1e4  # counts per cell after normalisation (scanpy's normalize_total default)
DENSE_LIMIT = 5e7  # cells × genes above which the PCA is fitted on a subsample
BATCH = 1024


# ------------------------------------------------------------------------------ helpers


def _json_float(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return isinstance(value, str) and value in ("", "nan", "NaN")


def _column(data: DomainData, key: str, what: str) -> np.ndarray:
    if key not in data.metadata:
        raise ConfigError(f"{what} {key!r} is not a metadata column of this data; columns: "
                          f"{sorted(data.metadata) or 'none'}.")
    column = data.metadata[key]
    if isinstance(column, torch.Tensor):
        column = column.cpu().numpy()
    return np.asarray(column, dtype=object)


def _key(option: Any, data: DomainData, attr: str) -> str | None:
    """The option when given; None means data.attrs[attr]; False or "" means none."""
    if option is False or option == "":
        return None
    key = option if option is not None else data.attrs.get(attr)
    return None if key in (None, False, "") else str(key)


def cell_labels(data: DomainData, label_key: str | bool | None = None
                ) -> tuple[str | None, Any]:
    """(key, the metadata column `label_key` as an object array) or (None, None)."""
    key = _key(label_key, data, "label_key")
    if key is None:
        return None, None
    return key, _column(data, key, "label_key")


def cell_batches(data: DomainData, batch_key: str | bool | None = None
                 ) -> tuple[str | None, Any]:
    """(key, batch of every cell) from the metadata column `batch_key`, else from the
    one-hot covariates (names from attrs["batches"]); (None, None) without batches."""
    key = _key(batch_key, data, "batch_key")
    if key is None:
        return None, None
    if key in data.metadata:
        return key, _column(data, key, "batch_key")
    if data.covariates is not None:
        codes = data.covariates.argmax(dim=1).cpu().numpy()
        names = list(data.attrs.get("batches") or range(data.covariate_dim))
        if len(names) != data.covariate_dim:
            names = list(range(data.covariate_dim))
        return key, np.asarray([names[c] for c in codes], dtype=object)
    raise ConfigError(f"batch_key {key!r} is neither a metadata column nor given as "
                      f"covariates; columns: {sorted(data.metadata) or 'none'}.")


def _subset_index(n: int, max_cells: int | None, seed: int) -> np.ndarray:
    if max_cells is None or n <= max_cells:
        return np.arange(n)
    if max_cells < 10:
        raise ConfigError(f"max_cells must be >= 10; got {max_cells}.")
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_cells), replace=False))


def _read_rows(data: DomainData, rows: np.ndarray) -> np.ndarray:
    """Dense float32 rows of data.x at `rows`, read in minibatches."""
    parts = [data.x[torch.as_tensor(rows[sl])].cpu().numpy()
             for sl in bv.batches(len(rows), BATCH)]
    return np.concatenate(parts).astype(np.float32, copy=False).reshape(len(rows), -1)


def _log_normalise(block: np.ndarray, counts: bool) -> np.ndarray:
    if not counts:
        return block
    total = block.sum(axis=1, keepdims=True)
    total[total <= 0] = 1.0
    return np.log1p(block / total * TARGET_SUM)


def pca_baseline(data: DomainData, n_pcs: int = 50, seed: int = 0) -> tuple[np.ndarray, dict]:
    """PCA of log1p counts normalised to 1e4 per cell (scanpy's standard preprocessing,
    without gene selection): (n, k) projections and a JSON-ready description.

    Fitted on all cells when cells × genes < 5e7, otherwise on a random subsample of that
    size; all cells are then projected in minibatches. Data with negative entries (already
    transformed, not counts) are used as given.
    """
    from sklearn.decomposition import PCA

    n = len(data)
    genes = int(np.prod(data.event_shape))
    fit_n = n if n * genes < DENSE_LIMIT else max(int(DENSE_LIMIT // genes), 2)
    fit_rows = _subset_index(n, fit_n, seed) if fit_n < n else np.arange(n)
    raw = _read_rows(data, fit_rows)
    counts = bool(raw.min() >= 0)
    fit_x = _log_normalise(raw, counts)
    del raw
    k = max(1, min(n_pcs, len(fit_rows) - 1, genes))
    pca = PCA(n_components=k, random_state=seed)
    projected = pca.fit_transform(fit_x)
    if len(fit_rows) < n:
        projected = np.concatenate([
            pca.transform(_log_normalise(_read_rows(data, np.arange(sl.start, sl.stop)),
                                         counts))
            for sl in bv.batches(n, BATCH)])
    info = {"n_components": int(k), "fit_cells": int(len(fit_rows)),
            "input": "log1p_normalised_1e4" if counts else "as_given",
            "explained_variance": _json_float(pca.explained_variance_ratio_.sum())}
    return projected.astype(np.float64), info


def _embedding_scores(emb: np.ndarray, labels: np.ndarray | None, batch: np.ndarray | None,
                      *, seed: int, silhouette_cells: int | None, leiden: bool,
                      n_neighbors: int) -> dict[str, float | None]:
    scores: dict[str, float | None] = {}
    if labels is not None:
        scores.update(M.clustering_scores(emb, labels, seed=seed))
        if leiden:
            lei = M.leiden_scores(emb, labels, seed=seed, n_neighbors=n_neighbors)
            scores["leiden_ari"], scores["leiden_nmi"] = lei["ari"], lei["nmi"]
        scores["label_silhouette"] = M.label_silhouette(emb, labels,
                                                        sample_size=silhouette_cells, seed=seed)
    if batch is not None:
        scores["batch_silhouette"] = M.batch_silhouette(emb, batch, labels)
        scores.update(M.ilisi(emb, batch, n_neighbors=n_neighbors))
    return {k: _json_float(v) for k, v in scores.items()}


def _leiden_available() -> bool:
    try:
        import igraph  # noqa: F401
        import leidenalg  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------ singlecell_latent


def singlecell_latent(
    run: RunContext,
    *,
    label_key: str | bool | None = None,
    batch_key: str | bool | None = None,
    n_pcs: int = 50,
    max_cells: int | None = 10000,
    silhouette_cells: int | None = 5000,
    n_neighbors: int = 30,
    leiden: bool | None = None,
) -> EvaluationResult:
    """Biological conservation and batch mixing of the posterior means, beside PCA.

    Metrics: "n_cells", "n_cells_scored" (a seeded random subset of at most `max_cells`),
    "latent_dim", "label_key", "batch_key", "n_labels", "n_batches", "pca" (the baseline's
    description), and three dicts with the same keys, "ours", "pca_scores" and "ratio"
    (ours / PCA): "ari", "nmi" (k-means with k = number of labels), "leiden_ari",
    "leiden_nmi" (when igraph and leidenalg are installed, or `leiden=True`),
    "label_silhouette" (scaled to [0, 1]) when there are labels; "batch_silhouette",
    "ilisi", "ilisi_normalised" when there are at least two batches. Cells with a
    missing label are left out of all scores.

    `label_key` / `batch_key` name metadata columns (a batch may also come from the
    one-hot covariates); None (default) takes data.attrs["label_key"] /
    data.attrs["batch_key"], False or "" turns the label or batch metrics off.
    """
    data, seed = run.heldout, run.seed
    label_key, labels = cell_labels(data, label_key)
    batch_key, batch = cell_batches(data, batch_key)
    rows = _subset_index(len(data), max_cells, seed)
    sub = data if len(rows) == len(data) else data.subset(rows)
    mu, _ = bv.encode(run.model, sub)
    pcs, pca_info = pca_baseline(sub, n_pcs=n_pcs, seed=seed)

    lab = None if labels is None else labels[rows]
    bat = None if batch is None else batch[rows]
    keep = np.ones(len(rows), dtype=bool)
    if lab is not None:
        keep = np.array([not _missing(v) for v in lab])
        lab = lab[keep].astype(str)
        if len(np.unique(lab)) < 2:
            lab = None
    if bat is not None:
        bat = bat[keep].astype(str)
        if len(np.unique(bat)) < 2:
            bat = None
    if leiden is None:
        leiden = _leiden_available()
    common = {"seed": seed, "silhouette_cells": silhouette_cells, "leiden": leiden,
              "n_neighbors": n_neighbors}
    ours = _embedding_scores(mu[keep], lab, bat, **common)
    base = _embedding_scores(pcs[keep], lab, bat, **common)
    ratio = {k: (_json_float(ours[k] / base[k]) if ours[k] is not None and base[k]
                 else None) for k in ours}
    # The scores flat as well, ours beside PCA's, so `betavae evaluate`'s table shows them.
    metrics: dict[str, Any] = {}
    for k in ours:
        metrics.update({k: ours[k], f"pca_{k}": base[k]})
    metrics |= {
        "n_cells": len(data), "n_cells_scored": int(keep.sum()),
        "latent_dim": int(mu.shape[1]),
        "label_key": label_key, "batch_key": batch_key,
        "n_labels": 0 if lab is None else int(len(np.unique(lab))),
        "n_batches": 0 if bat is None else int(len(np.unique(bat))),
        "pca": pca_info, "ours": ours, "pca_scores": base, "ratio": ratio,
    }
    fig = _latent_figure(mu[keep], lab, bat, label_key, batch_key)
    return EvaluationResult(metrics=metrics, figures={"embedding": fig})


def _latent_figure(mu, labels, batch, label_key, batch_key) -> Figure:
    from sklearn.decomposition import PCA

    xy = (PCA(n_components=2, random_state=0).fit_transform(mu) if mu.shape[1] > 2
          else np.pad(mu, ((0, 0), (0, 2 - mu.shape[1]))))
    panels = [(v, k) for v, k in ((labels, label_key), (batch, batch_key)) if v is not None]
    panels = panels or [(None, None)]
    fig = Figure(figsize=(5.0 * len(panels), 4.2), layout="constrained")
    for i, (values, key) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        size = max(1.0, min(12.0, 3000.0 / len(xy)))
        if values is None:
            ax.scatter(xy[:, 0], xy[:, 1], s=size, color="tab:blue", alpha=0.6, lw=0)
        else:
            cats = np.unique(values)
            cmap = _category_colours(len(cats))
            for j, cat in enumerate(cats):
                m = values == cat
                ax.scatter(xy[m, 0], xy[m, 1], s=size, color=cmap[j], alpha=0.7, lw=0,
                           label=str(cat))
            if len(cats) <= 20:
                ax.legend(frameon=False, fontsize="x-small", markerscale=2,
                          loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.set_xlabel("latent PC 1")
        ax.set_ylabel("latent PC 2")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("posterior means" + (f" by {key}" if key else ""))
    return fig


def _category_colours(k: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20" if k <= 20 else "turbo"]
    return [cmap(i if k <= 20 else i / max(k - 1, 1)) for i in range(k)]


# ----------------------------------------------------------------- singlecell_heldout


@torch.no_grad()
def importance_weighted_nll(
    model: BetaVAE, data: DomainData, n_samples: int = 20, batch_size: int = 256,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: the importance-weighted estimate of −log p(x) with `n_samples` draws
    from q(z|x) (Burda et al. 2016), and −ELBO estimated from the same draws.

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K, a lower
    bound that tightens as K grows; for every cell it is ≥ the mean of the K terms (the
    ELBO estimate), so the returned −log p(x) is ≤ the returned −ELBO.
    """
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1; got {n_samples}.")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    prior = torch.distributions.Normal(torch.zeros((), device=model.device),
                                       model.prior_scale().detach())
    nll, neg_elbo = [], []
    try:
        for sl in bv.batches(len(data), batch_size):
            x, cov, ctx = bv.minibatch(data, sl, model.device)
            enc = model.encode(x, cov)
            std = torch.exp(0.5 * enc.logvar)
            q = torch.distributions.Normal(enc.mu, std)
            log_w = []
            for _ in range(n_samples):
                eps = torch.randn(enc.mu.shape, generator=gen).to(model.device)
                z = enc.mu + eps * std
                px = model.decode(z, cov, ctx, skip=enc.features)
                lw = px.log_prob(x) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
                log_w.append(lw.double().cpu())
            w = torch.stack(log_w)  # (K, b)
            nll.append(-(torch.logsumexp(w, dim=0) - math.log(n_samples)))
            neg_elbo.append(-w.mean(dim=0))
    finally:
        model.train(was_training)
    return torch.cat(nll).numpy(), torch.cat(neg_elbo).numpy()


def singlecell_heldout(
    run: RunContext,
    *,
    n_samples: int = 20,
    max_cells: int | None = None,
    batch_size: int = 256,
) -> EvaluationResult:
    """Held-out likelihood per cell, in nats.

    Metrics: "rate", "distortion", "neg_elbo" (= rate + distortion, one posterior draw
    per cell, over all cells), "kl_per_dim"; from `n_samples` draws per cell (on a seeded
    subset of `max_cells` cells when given): "iw_nll" (importance-weighted −log p(x)),
    "iw_neg_elbo" (−ELBO from the same draws), "iw_gap" (iw_neg_elbo − iw_nll ≥ 0),
    "iw_samples", "n_cells", "n_cells_iw", "n_genes", "iw_nll_per_gene".
    """
    model, data, seed = run.model, run.heldout, run.seed
    terms = bv.evaluate_terms(model, data, seed=seed)
    rows = _subset_index(len(data), max_cells, seed)
    sub = data if len(rows) == len(data) else data.subset(rows)
    nll, neg_elbo = importance_weighted_nll(model, sub, n_samples=n_samples,
                                            batch_size=batch_size, seed=seed)
    genes = int(np.prod(data.event_shape))
    metrics = {
        "rate": _json_float(terms.rate),
        "distortion": _json_float(terms.distortion),
        "neg_elbo": _json_float(terms.distortion + terms.rate),
        "kl_per_dim": [_json_float(v) for v in terms.kl_per_dim],
        "iw_nll": _json_float(nll.mean()),
        "iw_neg_elbo": _json_float(neg_elbo.mean()),
        "iw_gap": _json_float((neg_elbo - nll).mean()),
        "iw_samples": int(n_samples),
        "iw_nll_per_gene": _json_float(nll.mean() / genes),
        "n_cells": len(data), "n_cells_iw": len(rows), "n_genes": genes,
    }
    return EvaluationResult(metrics=metrics)


# --------------------------------------------------------------- singlecell_generated


def _as_matrix(block: np.ndarray) -> np.ndarray | sparse.csr_matrix:
    """A block of cells x genes, as CSR when most of it is zero."""
    return sparse.csr_matrix(block) if np.count_nonzero(block) < 0.5 * block.size else block


def _stack(parts: list) -> np.ndarray | sparse.csr_matrix:
    if any(sparse.issparse(p) for p in parts):
        return sparse.vstack([sparse.csr_matrix(p) for p in parts], format="csr")
    return np.vstack(parts)


def singlecell_generated(
    run: RunContext,
    *,
    max_cells: int = 5000,
    batch_size: int = 1024,
) -> EvaluationResult:
    """Prior draws decoded with the covariates (batches) and context (library sizes) of
    n = min(len(data), max_cells) real cells (a seeded random subset when the data is
    larger: cells are often stored sorted by batch), compared with those real cells.

    Cells are handled `batch_size` at a time (real and generated blocks are kept sparse
    when mostly zero), so memory stays at one block of dense genes.

    Metrics: `metrics.expression_agreement`'s summary ("mean_log1p_r",
    "variance_log1p_r", "zero_fraction_r", "zero_fraction_mae", "n_genes", "n_real",
    "n_generated"). Figure "gene_statistics": real against generated per-gene mean,
    variance (log1p scales) and zero fraction.
    """
    if max_cells < 1:
        raise ConfigError(f"max_cells must be >= 1; got {max_cells}.")
    model, data = run.model, run.heldout
    rows = _subset_index(len(data), max_cells, run.seed)
    latents = run.torch_generator()
    real_parts, gen_parts = [], []
    for i, sl in enumerate(bv.batches(len(rows), batch_size)):
        idx = torch.as_tensor(rows[sl])
        real_parts.append(_as_matrix(data.x[idx].cpu().numpy().reshape(len(idx), -1)))
        z = model.sample_prior(len(idx), generator=latents)
        cov = None if data.covariates is None else data.covariates[idx]
        ctx = {k: v[idx] for k, v in data.context.items()} or None
        drawn = bv.decode(model, z, covariates=cov, context=ctx, mean=False, sample=True,
                          seed=run.seed + i, batch_size=batch_size).sample
        gen_parts.append(_as_matrix(drawn.numpy().reshape(len(idx), -1)))
    agreement = M.expression_agreement(_stack(real_parts), _stack(gen_parts))
    metrics = {k: (_json_float(v) if isinstance(v, float) else v)
               for k, v in agreement["summary"].items()}
    fig = gene_statistics_figure(agreement)
    return EvaluationResult(metrics=metrics, figures={"gene_statistics": fig})


def gene_statistics_figure(agreement: dict[str, Any]) -> Figure:
    real, gen, summary = agreement["real"], agreement["generated"], agreement["summary"]
    fig = Figure(figsize=(12.0, 3.8), layout="constrained")
    panels = (("mean", "log1p(mean count)", True, "mean_log1p_r"),
              ("variance", "log1p(variance)", True, "variance_log1p_r"),
              ("zero_fraction", "zero fraction", False, "zero_fraction_r"))
    for i, (key, label, log, r_key) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        a = np.log1p(real[key]) if log else real[key]
        b = np.log1p(gen[key]) if log else gen[key]
        ax.scatter(a, b, s=6, alpha=0.5, lw=0, color="tab:blue")
        finite = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        ax.set_xlabel(f"real: {label}")
        ax.set_ylabel(f"generated: {label}")
        r = summary[r_key]
        ax.set_title(f"per-gene {key.replace('_', ' ')}: r = "
                     + ("n/a" if r is None or not math.isfinite(r) else f"{r:.3f}"))
    return fig

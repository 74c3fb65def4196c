"""Single-cell metrics on plain arrays (numpy, scipy, scikit-learn; no torch, no anndata).

Conventions follow the scib benchmark (Luecken et al. 2022) where one exists:

* `clustering_scores`: k-means on an embedding against known cell labels (ARI, NMI).
* `leiden_scores`: the same with Leiden communities of a kNN graph (needs `igraph` and
  `leidenalg`, which are optional).
* `label_silhouette`: cell-type ASW scaled to [0, 1] as (s + 1) / 2; higher = labels
  better separated.
* `batch_silhouette`: batch ASW; per label, the mean of 1 - |silhouette of the batch|,
  averaged over labels; 1 = batches perfectly mixed within every label.
* `ilisi`: the integration local inverse Simpson index (Korsunsky et al. 2019) of the
  batch labels in each cell's neighbourhood, median over cells, and normalised to [0, 1].
* `expression_agreement`: per-gene mean, variance and zero fraction of real against
  generated counts (sparse inputs stay sparse).

Every function checks its input and raises `ValueError` naming the argument and the
sizes involved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

CHUNK_ROWS = 4096


# ----------------------------------------------------------------------------- checks


def _embedding(embedding: Any, name: str = "embedding") -> np.ndarray:
    x = np.asarray(embedding, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n_cells, n_dims); got shape {x.shape}.")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 cells; got {x.shape[0]}.")
    if not np.isfinite(x).all():
        row = int(np.nonzero(~np.isfinite(x).all(axis=1))[0][0])
        raise ValueError(f"{name} holds a non-finite value in row {row}.")
    return x


def _codes(values: Any, n: int, name: str, min_groups: int = 2) -> tuple[np.ndarray, int]:
    """Integer codes (0..k-1) of a label column of length n, and k."""
    if values is None:
        raise ValueError(f"{name} is required; got None.")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the embedding has {n} "
                         f"cells; they must match.")
    if arr.dtype.kind not in "biu":
        arr = arr.astype(str)
    uniques, codes = np.unique(arr, return_inverse=True)
    if len(uniques) < min_groups:
        raise ValueError(f"{name} needs at least {min_groups} distinct values; got "
                         f"{len(uniques)} ({uniques[:5].tolist()}) over {n} cells.")
    return codes.reshape(-1), len(uniques)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------ clustering


def clustering_scores(
    embedding: Any,
    labels: Any,
    *,
    n_clusters: int | None = None,
    seed: int = 0,
    n_init: int = 10,
) -> dict[str, float]:
    """ARI and NMI of k-means clusters of `embedding` against `labels`.

    k is the number of distinct labels unless `n_clusters` is given. Returns
    {"ari": adjusted Rand index, "nmi": normalised mutual information}; both are 1 for a
    perfect recovery of the labels and about 0 for clusters unrelated to them.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = _embedding(embedding)
    codes, k = _codes(labels, x.shape[0], "labels")
    k = k if n_clusters is None else int(n_clusters)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"n_clusters must lie in [1, {x.shape[0]}] (the number of cells); "
                         f"got {k}.")
    clusters = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    return {"ari": float(adjusted_rand_score(codes, clusters)),
            "nmi": float(normalized_mutual_info_score(codes, clusters))}


def knn_graph(embedding: Any, n_neighbors: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances (n, k) of each cell's k nearest other cells."""
    from sklearn.neighbors import NearestNeighbors

    x = _embedding(embedding)
    k = min(int(n_neighbors), x.shape[0] - 1)
    if k < 1:
        raise ValueError(f"n_neighbors must be >= 1; got {n_neighbors}.")
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return _drop_self(idx, dist)


def _drop_self(idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each cell from its own neighbour list (it is not always in column 0 when
    cells are duplicated)."""
    n, k1 = idx.shape
    is_self = idx == np.arange(n)[:, None]
    # rows where self was not returned: drop the last (farthest) neighbour instead
    missing = ~is_self.any(axis=1)
    is_self[missing, k1 - 1] = True
    # rows where self appears more than once cannot happen; keep exactly one drop per row
    keep = ~is_self
    return idx[keep].reshape(n, k1 - 1), dist[keep].reshape(n, k1 - 1)


def leiden_scores(
    embedding: Any,
    labels: Any,
    *,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    seed: int = 0,
) -> dict[str, float | int]:
    """ARI and NMI of Leiden communities (RB configuration model at `resolution`) of an
    unweighted, symmetrised kNN graph of `embedding` against `labels`.

    Returns {"ari", "nmi", "n_clusters"}. Needs the optional packages `igraph` and
    `leidenalg`; raises ImportError saying how to install them otherwise.
    """
    try:
        import igraph
        import leidenalg
    except ImportError as exc:
        raise ImportError("leiden_scores needs the optional packages igraph and leidenalg: "
                          "pip install igraph leidenalg") from exc
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = _embedding(embedding)
    codes, _ = _codes(labels, x.shape[0], "labels")
    idx, _ = knn_graph(x, n_neighbors)
    src = np.repeat(np.arange(x.shape[0]), idx.shape[1])
    edges = np.unique(np.sort(np.stack([src, idx.reshape(-1)], axis=1), axis=1), axis=0)
    graph = igraph.Graph(n=x.shape[0], edges=edges.tolist(), directed=False)
    partition = leidenalg.find_partition(graph, leidenalg.RBConfigurationVertexPartition,
                                         resolution_parameter=resolution, seed=seed)
    clusters = np.asarray(partition.membership)
    return {"ari": float(adjusted_rand_score(codes, clusters)),
            "nmi": float(normalized_mutual_info_score(codes, clusters)),
            "n_clusters": int(clusters.max() + 1)}


# ------------------------------------------------------------------------ silhouettes


def label_silhouette(
    embedding: Any, labels: Any, sample_size: int | None = None, seed: int = 0
) -> float:
    """Mean silhouette width of `labels` in `embedding`, scaled to [0, 1] as (s + 1) / 2.

    With `sample_size`, the silhouette is computed on that many cells drawn at random
    (seeded): the exact score costs O(n²).
    """
    from sklearn.metrics import silhouette_score

    x = _embedding(embedding)
    codes, _ = _codes(labels, x.shape[0], "labels")
    if sample_size is not None and sample_size < x.shape[0]:
        if sample_size < 3:
            raise ValueError(f"sample_size must be >= 3; got {sample_size}.")
        pick = _rng(seed).choice(x.shape[0], size=int(sample_size), replace=False)
        x, codes = x[pick], codes[pick]
        if len(np.unique(codes)) < 2:
            raise ValueError(f"the {sample_size} sampled cells hold only one label; raise "
                             f"sample_size.")
    if len(np.unique(codes)) >= x.shape[0]:
        raise ValueError(f"labels must have fewer distinct values than cells ({x.shape[0]}) "
                         f"for a silhouette.")
    return float((silhouette_score(x, codes) + 1.0) / 2.0)


def batch_silhouette(embedding: Any, batches: Any, labels: Any | None = None) -> float:
    """scib's batch ASW: within each label, 1 - |silhouette width of the batch| per cell,
    averaged over the label's cells, then over labels. 1 means the batches are perfectly
    mixed within every label; values near 0 mean they are separated.

    Labels holding one batch only (nothing to mix) or one cell per batch are skipped, as
    in scib; `labels=None` treats all cells as one label. Returns NaN when no label can
    be scored.
    """
    from sklearn.metrics import silhouette_samples

    x = _embedding(embedding)
    batch_codes, _ = _codes(batches, x.shape[0], "batches")
    if labels is None:
        label_codes = np.zeros(x.shape[0], dtype=np.int64)
    else:
        label_codes, _ = _codes(labels, x.shape[0], "labels", min_groups=1)
    scores = []
    for label in np.unique(label_codes):
        mask = label_codes == label
        b = batch_codes[mask]
        n_b = len(np.unique(b))
        if n_b < 2 or n_b >= mask.sum():
            continue
        sil = silhouette_samples(x[mask], b)
        scores.append(float(np.mean(1.0 - np.abs(sil))))
    return float(np.mean(scores)) if scores else float("nan")


# ------------------------------------------------------------------------------ LISI


def _simpson(dist: np.ndarray, codes: np.ndarray, n_groups: int, perplexity: float,
             tol: float = 1e-5, n_iter: int = 50) -> np.ndarray:
    """Simpson index per cell of the neighbours' groups under Gaussian-kernel weights
    exp(-beta d) whose entropy matches log(perplexity), beta found by bisection per cell
    (the procedure of Harmony's `compute_simpson_index`, vectorised over cells)."""
    n = dist.shape[0]
    d = dist - dist[:, :1]  # shift by the nearest distance: same weights, no underflow
    target = np.log(perplexity)
    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    for _ in range(n_iter):
        p = np.exp(-d * beta[:, None])
        s = p.sum(axis=1)
        h = np.log(s) + beta * (d * p).sum(axis=1) / s
        diff = h - target
        active = np.abs(diff) >= tol  # converged cells keep their beta, as in Harmony
        if not active.any():
            break
        too_flat = diff > 0  # entropy too high: sharpen (raise beta)
        new_lo = np.where(too_flat, beta, lo)
        new_hi = np.where(too_flat, hi, beta)
        new_beta = np.where(too_flat,
                            np.where(np.isfinite(hi), (beta + hi) / 2, beta * 2),
                            np.where(np.isfinite(lo), (beta + lo) / 2, beta / 2))
        lo = np.where(active, new_lo, lo)
        hi = np.where(active, new_hi, hi)
        beta = np.where(active, new_beta, beta)
    p = np.exp(-d * beta[:, None])
    p /= p.sum(axis=1, keepdims=True)
    per_group = np.zeros((n, n_groups))
    rows = np.repeat(np.arange(n), codes.shape[1])
    np.add.at(per_group, (rows, codes.reshape(-1)), p.reshape(-1))
    return (per_group**2).sum(axis=1)


def lisi_per_cell(
    embedding: Any, groups: Any, *, n_neighbors: int = 30, perplexity: float | None = None
) -> np.ndarray:
    """Local inverse Simpson index of `groups` around every cell (between 1 and the
    number of groups): the effective number of groups among the cell's `n_neighbors`
    nearest neighbours (the cell itself excluded), weighted by a Gaussian kernel of
    perplexity `perplexity` (default n_neighbors / 3, as in Korsunsky et al. 2019,
    whose neighbourhoods hold 3 × perplexity cells)."""
    x = _embedding(embedding)
    codes, k_groups = _codes(groups, x.shape[0], "batches")
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be >= 2; got {n_neighbors}.")
    idx, dist = knn_graph(x, n_neighbors)
    k = idx.shape[1]
    perp = n_neighbors / 3.0 if perplexity is None else float(perplexity)
    if not perp > 0:
        raise ValueError(f"perplexity must be > 0; got {perplexity}.")
    perp = min(perp, k * (1 - 1e-6))  # log(k) is the largest entropy k weights can have
    return 1.0 / _simpson(dist, codes[idx], k_groups, max(perp, 1.0 + 1e-6))


def ilisi(
    embedding: Any, batches: Any, *, n_neighbors: int = 30, perplexity: float | None = None
) -> dict[str, float]:
    """Integration LISI of the batch labels: {"ilisi": median over cells (1 = a cell sees
    one batch only, B = all B batches equally), "ilisi_normalised": (ilisi - 1) / (B - 1)
    in [0, 1], 1 = well mixed}. See `lisi_per_cell` for the neighbourhood."""
    lisi = lisi_per_cell(embedding, batches, n_neighbors=n_neighbors, perplexity=perplexity)
    n_batches = len(np.unique(np.asarray(batches).astype(str)))
    median = float(np.median(lisi))
    return {"ilisi": median, "ilisi_normalised": float((median - 1.0) / (n_batches - 1.0))}


# ------------------------------------------------------------------- gene statistics


def _counts_matrix(values: Any, name: str) -> Any:
    if sparse.issparse(values):
        m = values.tocsr()
    else:
        if hasattr(values, "detach"):  # a torch tensor, without importing torch
            values = values.detach().cpu().numpy()
        m = np.asarray(values)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a (cells, genes) matrix; got shape {m.shape}.")
    if m.shape[0] < 1 or m.shape[1] < 2:
        raise ValueError(f"{name} needs at least 1 cell and 2 genes; got shape {m.shape}.")
    return m


def gene_statistics(matrix: Any, name: str = "matrix") -> dict[str, np.ndarray]:
    """Per-gene mean, variance (population, ddof=0) and fraction of zero entries of a
    (cells, genes) dense or sparse matrix, in float64, read in row blocks (a sparse
    matrix is never densified)."""
    m = _counts_matrix(matrix, name)
    n, g = m.shape
    s1 = np.zeros(g)
    s2 = np.zeros(g)
    nonzero = np.zeros(g, dtype=np.int64)
    for start in range(0, n, CHUNK_ROWS):
        block = m[start:start + CHUNK_ROWS]
        if sparse.issparse(block):
            data = block.data.astype(np.float64)
            cols = block.indices
            if not np.isfinite(data).all():
                raise ValueError(f"{name} holds non-finite values (in rows {start}-"
                                 f"{start + block.shape[0] - 1}).")
            s1 += np.bincount(cols, weights=data, minlength=g)
            s2 += np.bincount(cols, weights=data * data, minlength=g)
            nonzero += np.bincount(cols[data != 0], minlength=g)
        else:
            b = np.asarray(block, dtype=np.float64)
            if not np.isfinite(b).all():
                raise ValueError(f"{name} holds non-finite values (in rows {start}-"
                                 f"{start + b.shape[0] - 1}).")
            s1 += b.sum(axis=0)
            s2 += (b * b).sum(axis=0)
            nonzero += np.count_nonzero(b, axis=0)
    mean = s1 / n
    var = np.clip(s2 / n - mean**2, 0.0, None)
    return {"mean": mean, "variance": var, "zero_fraction": 1.0 - nonzero / n}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def expression_agreement(real: Any, generated: Any) -> dict[str, Any]:
    """How well generated counts reproduce the per-gene statistics of real counts.

    `real` and `generated` are (cells, genes) matrices with the same genes (numpy arrays,
    scipy sparse matrices or CPU torch tensors; the cell counts may differ). Returns

    * "summary": JSON-ready floats and ints:
      "mean_log1p_r" (Pearson r over genes of log1p(mean)), "variance_log1p_r" (of
      log1p(variance)), "zero_fraction_r", "zero_fraction_mae" (mean absolute difference
      of the zero fractions), "n_genes", "n_real", "n_generated". An r is NaN when one
      side is constant over genes.
    * "real" and "generated": per-gene numpy arrays {"mean", "variance",
      "zero_fraction"} (for plots; not JSON-ready).
    """
    r = _counts_matrix(real, "real")
    gen = _counts_matrix(generated, "generated")
    if r.shape[1] != gen.shape[1]:
        raise ValueError(f"real has {r.shape[1]} genes but generated has {gen.shape[1]}; "
                         f"they must have the same genes in the same order.")
    a = gene_statistics(r, "real")
    b = gene_statistics(gen, "generated")
    summary: dict[str, Any] = {
        "mean_log1p_r": _pearson(np.log1p(a["mean"]), np.log1p(b["mean"])),
        "variance_log1p_r": _pearson(np.log1p(a["variance"]), np.log1p(b["variance"])),
        "zero_fraction_r": _pearson(a["zero_fraction"], b["zero_fraction"]),
        "zero_fraction_mae": float(np.mean(np.abs(a["zero_fraction"] - b["zero_fraction"]))),
        "n_genes": int(r.shape[1]),
        "n_real": int(r.shape[0]),
        "n_generated": int(gen.shape[0]),
    }
    return {"summary": summary, "real": a, "generated": b}

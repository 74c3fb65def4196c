"""AnnData -> `DomainData`: counts checked with cell and gene names, genes aligned to a
model, batches one-hot encoded, library sizes as the likelihood's offset.

The expression matrix is never copied whole or densified: it is wrapped in a row source
(`AnnDataRows`) that densifies one minibatch at a time, whether it is dense, sparse, or
on disk (`backed="r"`). The user's AnnData is read only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

import betavae_core as bv
from betavae_core import DataError

from .likelihoods import COUNT_LIKELIHOODS, not_count
from .plugin import DOMAIN, training_defaults

BLOCK = 8192
ZERO_POLICIES = ("drop", "error")


class AnnDataRows(bv.RowSource):
    """Rows of an expression matrix (numpy, scipy sparse, or backed on disk), optionally
    restricted to and reordered by `columns`, densified to float32 on request."""

    def __init__(self, matrix: Any, columns: np.ndarray | None = None) -> None:
        self.matrix = matrix
        self.columns = columns
        self._reader = BackedCSR(matrix) if BackedCSR.handles(matrix) else None
        n_cols = matrix.shape[1] if columns is None else len(columns)
        self._shape = (int(matrix.shape[0]), int(n_cols))

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    def take(self, index: np.ndarray) -> torch.Tensor:
        index = np.asarray(index, dtype=np.int64)
        if len(index) == 0:
            return torch.zeros((0, self._shape[1]), dtype=torch.float32)
        # On-disk matrices read sorted, unique rows fastest; put the order back after.
        unique, inverse = np.unique(index, return_inverse=True)
        rows = self._reader.rows(unique) if self._reader else read_rows(self.matrix, unique)
        block = _dense(rows)
        if self.columns is not None:
            block = block[:, self.columns]
        return torch.from_numpy(np.ascontiguousarray(block[inverse], dtype=np.float32))


class BackedCSR:
    """Reads rows of an on-disk CSR matrix (AnnData `backed="r"`) straight from HDF5:
    the row pointers are held in memory (8 bytes per cell) and each row's values and
    column indices are read as one slice, about ten times faster than indexing the
    backed matrix for scattered rows."""

    def __init__(self, matrix: Any) -> None:
        group = matrix.group
        self.data, self.indices = group["data"], group["indices"]
        self.indptr = np.asarray(group["indptr"][:], dtype=np.int64)
        self.shape = tuple(int(s) for s in matrix.shape)

    @staticmethod
    def handles(matrix: Any) -> bool:
        group = getattr(matrix, "group", None)
        return (getattr(matrix, "format", None) == "csr" and group is not None
                and all(k in group for k in ("data", "indices", "indptr")))

    def rows(self, rows: np.ndarray) -> sp.csr_matrix:
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        spans = [slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
        data = np.concatenate([self.data[s] for s in spans]) if spans else np.zeros(0)
        cols = np.concatenate([self.indices[s] for s in spans]) if spans else np.zeros(0, int)
        indptr = np.concatenate([[0], np.cumsum(stops - starts)])
        return sp.csr_matrix((data, cols, indptr), shape=(len(rows), self.shape[1]))


def read_rows(matrix: Any, rows: np.ndarray | slice) -> Any:
    """Rows of a dense, sparse or backed matrix (sparse stays sparse)."""
    if isinstance(rows, np.ndarray) and len(rows) and _is_backed(matrix):
        if rows[-1] - rows[0] + 1 == len(rows):  # contiguous: one slice read
            return matrix[int(rows[0]):int(rows[-1]) + 1]
    return matrix[rows]


def _is_backed(matrix: Any) -> bool:
    return not isinstance(matrix, np.ndarray) and not sp.issparse(matrix)


def _dense(block: Any) -> np.ndarray:
    return block.toarray() if sp.issparse(block) else np.asarray(block)


def blocks(matrix: Any, size: int = BLOCK) -> Iterator[tuple[int, Any]]:
    """(first row, rows) for consecutive blocks; sparse blocks stay sparse."""
    for start in range(0, matrix.shape[0], size):
        yield start, matrix[start:min(matrix.shape[0], start + size)]


def expression_matrix(adata: Any, layer: str | None) -> Any:
    """`adata.layers[layer]`, or `adata.X` when `layer` is None."""
    if layer is None:
        if adata.X is None:
            raise DataError("adata.X is empty; name the layer that holds the counts (layer=).")
        return adata.X
    if layer not in adata.layers:
        raise DataError(f"layer {layer!r} is not in adata.layers; it has "
                        f"{sorted(adata.layers.keys()) or 'no layers'}.")
    return adata.layers[layer]


@dataclass
class Scan:
    """One pass over the matrix: per-cell totals, non-zero entries per cell and per gene,
    and the first non-finite value and the first value that is not a count."""

    library: np.ndarray
    cell_nonzero: np.ndarray
    gene_nonzero: np.ndarray
    nonfinite: tuple[int, int, float] | None
    not_count: tuple[int, int, float] | None


def scan(matrix: Any) -> Scan:
    """Totals and non-zero entries per cell, non-zero entries per gene, and the first
    NaN/inf and first negative or fractional value, in one block-by-block pass."""
    n, g = matrix.shape
    library = np.zeros(n, dtype=np.float64)
    cell_nonzero = np.zeros(n, dtype=np.int64)
    gene_nonzero = np.zeros(g, dtype=np.int64)
    nonfinite = not_count = None
    for start, block in blocks(matrix):
        if nonfinite is None:
            nonfinite = _first(block, start, lambda v: ~np.isfinite(v))
        if not_count is None:
            not_count = _first(block, start, _not_count)
        stop = start + block.shape[0]
        library[start:stop] = np.asarray(block.sum(axis=1)).ravel()
        nonzero = block != 0
        cell_nonzero[start:stop] = np.asarray(nonzero.sum(axis=1)).ravel()
        gene_nonzero += np.asarray(nonzero.sum(axis=0)).ravel()
    return Scan(library, cell_nonzero, gene_nonzero, nonfinite, not_count)


def _not_count(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return not_count(values)


def _first(block: Any, start: int, test: Any) -> tuple[int, int, float] | None:
    """(row, column, value) of the first entry of `block` where `test` holds."""
    if sp.issparse(block):
        block = block.tocsr()
        mask = test(np.asarray(block.data, dtype=np.float64))
        if not mask.any():
            return None
        k = int(np.argmax(mask))
        row = int(np.searchsorted(block.indptr, k, side="right") - 1)
        return row + start, int(block.indices[k]), float(block.data[k])
    values = np.asarray(block, dtype=np.float64)
    mask = test(values)
    if not mask.any():
        return None
    row, col = np.argwhere(mask)[0]
    return int(row) + start, int(col), float(values[row, col])


def _bad_value_error(bad: tuple[int, int, float], adata: Any, likelihood: str,
                     where: str, fitting: bool) -> DataError:
    row, col, value = bad
    cell, gene = adata.obs_names[row], adata.var_names[col]
    if not np.isfinite(value):
        return DataError(f"{where} holds {value} at cell {cell!r} (row {row}), gene {gene!r} "
                         f"(column {col}). Remove or impute non-finite values first.")
    whose = f"the {likelihood} likelihood" if fitting else f"this model's {likelihood} likelihood"
    other = ("use likelihood='gaussian'" if fitting
             else "fit a model with likelihood='gaussian'")
    return DataError(
        f"{whose} needs raw counts (non-negative integers), but {where} holds {value} at "
        f"cell {cell!r} (row {row}), gene {gene!r} (column {col}). Pass the layer that "
        f"holds raw counts (layer='counts'), or {other} on log1p-normalised data."
    )


def check_unique_genes(var_names: Sequence[str]) -> list[str]:
    """`var_names` as strings; `DataError` naming the genes that repeat. Genes are
    matched by name (to a model's genes, to a fit's record), so a repeated name would be
    read as whichever column comes last. Fit, encode, evaluate, `load` and the
    `expression` loader all check this here."""
    names = [str(v) for v in var_names]
    if len(set(names)) == len(names):
        return names
    columns: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        columns.setdefault(name, []).append(i)
    repeated = [(n, c) for n, c in columns.items() if len(c) > 1]
    shown = ", ".join(f"{n!r} (columns {', '.join(map(str, c[:3]))}"
                      f"{', ...' if len(c) > 3 else ''})" for n, c in repeated[:5])
    more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
    raise DataError(f"var_names repeat {len(repeated)} gene name(s): {shown}{more}. Genes are "
                    f"matched by name, so each needs its own: make them unique first "
                    f"(adata.var_names_make_unique()) or drop the repeated columns.")


def gene_columns(var_names: Sequence[str], wanted: Sequence[str]) -> np.ndarray | None:
    """Column index of each `wanted` gene in `var_names` (None when already identical);
    `DataError` listing the genes that are missing, or naming those `var_names` repeats."""
    have = check_unique_genes(var_names)
    wanted = [str(w) for w in wanted]
    if have == wanted:
        return None
    position = {name: i for i, name in enumerate(have)}
    missing = [w for w in wanted if w not in position]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(f"the data lacks {len(missing)} of the model's {len(wanted)} genes "
                        f"(matched by var_names): {shown}.")
    return np.array([position[w] for w in wanted], dtype=np.int64)


def batch_labels(adata: Any, batch_key: str) -> np.ndarray:
    """`adata.obs[batch_key]` as strings; `DataError` if missing or incomplete."""
    return obs_labels(adata, batch_key, "batch_key")


def obs_labels(adata: Any, key: str, what: str) -> np.ndarray:
    if key not in adata.obs.columns:
        raise DataError(f"{what} {key!r} is not a column of adata.obs; its columns are "
                        f"{list(adata.obs.columns)}.")
    column = adata.obs[key]
    missing = column.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(f"adata.obs[{key!r}] is missing for {int(missing.sum())} cells, the "
                        f"first being {adata.obs_names[row]!r} (row {row}).")
    return column.astype(str).to_numpy()


def one_hot(labels: np.ndarray, categories: Sequence[str], key: str,
            what: str = "batches") -> torch.Tensor:
    """One-hot rows in the order of `categories`; `DataError` naming unseen values."""
    position = {c: i for i, c in enumerate(categories)}
    unseen = sorted(set(labels) - set(position))
    if unseen:
        raise DataError(f"adata.obs[{key!r}] holds {what} the model never saw: {unseen}; "
                        f"it knows {list(categories)}.")
    codes = torch.as_tensor(np.array([position[v] for v in labels], dtype=np.int64))
    return torch.nn.functional.one_hot(codes, len(categories)).float()


COVARIATE_KINDS = ("categorical", "continuous")


def covariate_encoding(adata: Any, rows: np.ndarray, categorical: Sequence[str] | None,
                       continuous: Sequence[str] | None) -> dict[str, Any]:
    """How the fit encodes covariates beyond batch: each categorical key's categories
    (sorted, over all cells), each continuous key's mean and s.d. over the cells at
    `rows` (an s.d. of 0 counts as 1). JSON, so it is saved in the model's config."""
    categorical, continuous = list(categorical or []), list(continuous or [])
    repeated = sorted({k for k in categorical + continuous
                       if (categorical + continuous).count(k) > 1})
    if repeated:
        raise DataError(f"covariate keys {repeated} are given more than once (each key is "
                        f"either categorical or continuous, once).")
    out: dict[str, Any] = {"categorical": {}, "continuous": {}}
    for key in categorical:
        values = obs_labels(adata, key, "categorical covariate")
        out["categorical"][key] = sorted(set(values.tolist()))
    for key in continuous:
        values = continuous_values(adata, key)[rows]
        sd = float(values.std())
        out["continuous"][key] = {"mean": float(values.mean()),
                                  "sd": sd if sd > 0 and np.isfinite(sd) else 1.0}
    return out


def continuous_values(adata: Any, key: str) -> np.ndarray:
    """`adata.obs[key]` as floats; `DataError` if missing, not numeric, or not finite."""
    if key not in adata.obs.columns:
        raise DataError(f"continuous covariate {key!r} is not a column of adata.obs; its "
                        f"columns are {list(adata.obs.columns)}.")
    try:
        values = adata.obs[key].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"continuous covariate adata.obs[{key!r}] is not numeric (dtype "
                        f"{adata.obs[key].dtype}); pass it as a categorical covariate, or "
                        f"convert it to numbers.") from None
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"continuous covariate adata.obs[{key!r}] holds {values[row]} for "
                        f"{int(bad.sum())} cells, the first being {adata.obs_names[row]!r} "
                        f"(row {row}); fill or drop those cells first.")
    return values


def covariate_values(adata: Any, encoding: dict[str, Any] | None) -> torch.Tensor | None:
    """The covariates beyond batch of every cell, under `encoding` (one-hot columns of
    each categorical key, then the standardised continuous keys), or None if there are
    none. A category the encoding does not know is a `DataError` naming it."""
    encoding = encoding or {}
    parts = []
    for key, categories in (encoding.get("categorical") or {}).items():
        labels = obs_labels(adata, key, "categorical covariate")
        parts.append(one_hot(labels, categories, key, what="categories of covariate"))
    for key, stats in (encoding.get("continuous") or {}).items():
        z = (continuous_values(adata, key) - stats["mean"]) / stats["sd"]
        parts.append(torch.as_tensor(z, dtype=torch.float32).reshape(-1, 1))
    return torch.cat(parts, dim=1) if parts else None


def covariate_fill(encoding: dict[str, Any] | None) -> list[float]:
    """Typical values of the covariates beyond batch: each categorical key's categories
    weighed equally, each continuous key at its mean (0 once standardised). The decoder
    uses them for cells given only a batch (generated cells)."""
    encoding = encoding or {}
    fill: list[float] = []
    for categories in (encoding.get("categorical") or {}).values():
        fill += [1.0 / len(categories)] * len(categories)
    fill += [0.0] * len(encoding.get("continuous") or {})
    return fill


def covariate_layout(batch: torch.Tensor | None, other: torch.Tensor | None,
                     n_query: int) -> torch.Tensor | None:
    """The model's covariate vector: reference batches, the other covariates, then the
    `n_query` batches a query mapping added (so a mapped model keeps the reference's
    columns where they were)."""
    if batch is None or n_query == 0:
        parts = [batch, other]
    else:
        parts = [batch[:, :batch.shape[1] - n_query], other, batch[:, batch.shape[1] - n_query:]]
    parts = [p for p in parts if p is not None]
    return torch.cat(parts, dim=1) if parts else None


def library_stats(library: np.ndarray, batches: np.ndarray | None,
                  categories: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean and s.d. of log library size per batch ("all" when there is no batch)."""
    log_lib = np.log(np.maximum(library, 1.0))
    groups = {"all": log_lib} if batches is None else {
        c: log_lib[batches == c] for c in categories}
    return {name: {"mean": float(v.mean()), "sd": float(v.std())}
            for name, v in groups.items() if len(v)}


def to_domain_data(
    adata: Any,
    *,
    layer: str | None = None,
    likelihood: str | None = "nb",
    batch_key: str | None = None,
    label_key: str | None = None,
    genes: Sequence[str] | None = None,
    batches: Sequence[str] | None = None,
    zeros: str = "drop",
    fitting: bool = True,
    categorical_covariate_keys: Sequence[str] | None = None,
    continuous_covariate_keys: Sequence[str] | None = None,
    covariates: dict[str, Any] | None = None,
    query_batches: Sequence[str] = (),
) -> tuple[bv.DomainData, np.ndarray]:
    """Cells of `adata` as `DomainData`, and the row index of the cells it kept.

    `likelihood=None` chooses: "nb" for raw counts, "gaussian" otherwise. With `fitting`,
    cells and genes with no counts at all are dropped with a warning (or
    refused with `zeros="error"`). Otherwise (encoding for a fitted model) every cell is
    kept and `genes` / `batches` give the model's gene order and batch categories.
    Either way the same checks run: unique `var_names`, finite values, counts for a count
    likelihood (naming the cell and gene), known batches.
    Covariates beyond batch: `categorical_covariate_keys` are one-hot encoded and
    `continuous_covariate_keys` standardised (`covariate_encoding`, recorded in
    `attrs["covariates"]`); a fitted model passes its record as `covariates` instead, so
    new cells get the fit's encoding. The covariate vector is laid out as
    `covariate_layout` says: batches, the other covariates, then `query_batches` (the
    batches a query mapping added, last in `batches`).
    `attrs["batch_counts"]` holds the number of kept cells per batch (generation draws
    batches in these proportions), and `defaults` the domain's suggested training
    settings for this many cells (`plugin.training_defaults`).
    """
    if zeros not in ZERO_POLICIES:
        raise DataError(f"zeros must be one of {ZERO_POLICIES}; got {zeros!r}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise DataError(f"the AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes).")
    matrix = expression_matrix(adata, layer)
    where = f"adata.layers[{layer!r}]" if layer else "adata.X"
    check_unique_genes(adata.var_names)
    columns = gene_columns(adata.var_names, genes) if genes is not None else None
    result = scan(matrix)
    used = None if columns is None else set(columns.tolist())
    for bad in (result.nonfinite, result.not_count if likelihood in COUNT_LIKELIHOODS
                else None):
        if bad is not None and (used is None or bad[1] in used):
            raise _bad_value_error(bad, adata, likelihood, where, fitting)
    if likelihood is None:
        likelihood = "nb" if result.not_count is None else "gaussian"
    library = result.library if columns is None else _library_of(matrix, columns)
    keep_cells = np.arange(adata.n_obs)
    if fitting:
        keep_cells, columns = _drop_empty(result, zeros, adata)
    gene_names = [str(v) for v in (adata.var_names if columns is None
                                   else adata.var_names[columns])]
    rows = AnnDataRows(matrix, columns)
    batch_values = None if batch_key is None else batch_labels(adata, batch_key)
    categories = list(batches) if batches is not None else (
        [] if batch_values is None else sorted(set(batch_values[keep_cells])))
    metadata: dict[str, Any] = {}
    batch_block = None
    if batch_values is not None:
        batch_block = one_hot(batch_values, categories, batch_key)
        metadata[batch_key] = batch_values
    if covariates is None:
        covariates = covariate_encoding(adata, keep_cells, categorical_covariate_keys,
                                        continuous_covariate_keys)
    cov = covariate_layout(batch_block, covariate_values(adata, covariates),
                           len(query_batches))
    if label_key is not None:
        metadata[label_key] = obs_labels(adata, label_key, "label_key")
    attrs = {
        "var_names": gene_names, "layer": layer, "batch_key": batch_key,
        "label_key": label_key, "batches": categories, "query_batches": list(query_batches),
        "covariates": covariates,
        "library_log": library_stats(library[keep_cells], None if batch_values is None
                                     else batch_values[keep_cells], categories),
        "batch_counts": _batch_counts(batch_values, keep_cells, categories),
        "n_cells_dropped": int(adata.n_obs - len(keep_cells)),
    }
    data = bv.DomainData(
        x=rows, domain=DOMAIN, likelihood=likelihood, covariates=cov,
        context={"library": torch.as_tensor(library, dtype=torch.float32).reshape(-1, 1)},
        metadata=metadata, attrs=attrs, generator="cells", architecture="expression_mlp",
        defaults=training_defaults(len(keep_cells), n_batches=len(categories)),
    )
    if len(keep_cells) < adata.n_obs:
        data = data.subset(keep_cells)
    return data, keep_cells


def _batch_counts(values: np.ndarray | None, keep: np.ndarray,
                  categories: Sequence[str]) -> dict[str, int]:
    if values is None:
        return {}
    kept = values[keep]
    return {c: int((kept == c).sum()) for c in categories}


def _library_of(matrix: Any, columns: np.ndarray) -> np.ndarray:
    out = np.zeros(matrix.shape[0], dtype=np.float64)
    for start, block in blocks(matrix):
        sub = block[:, columns]
        out[start:start + sub.shape[0]] = np.asarray(sub.sum(axis=1)).ravel()
    return out


def _drop_empty(result: Scan, zeros: str, adata: Any) -> tuple[np.ndarray, np.ndarray | None]:
    empty_cells = np.flatnonzero(result.cell_nonzero == 0)
    empty_genes = np.flatnonzero(result.gene_nonzero == 0)
    if zeros == "error" and (len(empty_cells) or len(empty_genes)):
        raise DataError(
            f"{len(empty_cells)} cells and {len(empty_genes)} genes are all zero "
            f"(first cells: {list(adata.obs_names[empty_cells[:5]])}; first genes: "
            f"{list(adata.var_names[empty_genes[:5]])}). Filter them (sc.pp.filter_cells / "
            f"filter_genes) or use zeros='drop'."
        )
    if len(empty_cells) == adata.n_obs:
        raise DataError("every cell has zero counts; there is nothing to fit.")
    if len(empty_cells) or len(empty_genes):
        warnings.warn(f"dropped {len(empty_cells)} cells and {len(empty_genes)} genes that are "
                      f"all zero (of {adata.n_obs} cells, {adata.n_vars} genes).",
                      stacklevel=3)
    keep_cells = np.setdiff1d(np.arange(adata.n_obs), empty_cells)
    columns = None if not len(empty_genes) else np.setdiff1d(np.arange(adata.n_vars),
                                                              empty_genes)
    return keep_cells, columns

"""Data that needs no download, as AnnData (`bsc.datasets`), and the loaders and named
datasets the CLI reads through the `betavae` hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from betavae_core.data import DomainData
from betavae_core.errors import DataError

from .conversion import to_domain_data


def synthetic(n_cells: int = 2000, n_genes: int = 500, n_types: int = 5, n_batches: int = 2,
              batch_effect: float = 0.5, seed: int = 0) -> Any:
    """Simulated counts with known cell types (`obs['cell_type']`) and batches
    (`obs['batch']`); raw counts in `.X` and in `layers['counts']`."""
    import anndata as ad
    import pandas as pd

    from betavae_datasets.counts import synthetic_counts

    sim = synthetic_counts(n_cells=n_cells, n_genes=n_genes, n_types=n_types,
                           n_batches=n_batches, batch_effect=batch_effect, seed=seed)
    obs = pd.DataFrame({"cell_type": pd.Categorical(sim["cell_type"]),
                        "batch": pd.Categorical(sim["batch"])},
                       index=[str(c) for c in sim["cell_names"]])
    adata = ad.AnnData(X=sim["counts"].astype("float32"), obs=obs,
                       var=pd.DataFrame(index=[str(g) for g in sim["gene_names"]]))
    adata.layers["counts"] = adata.X.copy()
    return adata


def pbmc68k_reduced() -> Any:
    """scanpy's bundled 700 PBMCs (`sc.datasets.pbmc68k_reduced`), log1p-normalised
    expression of 765 genes from `.raw` in `.X` (a Gaussian-likelihood example:
    the bundle carries no raw counts), cell types in `obs['bulk_labels']`."""
    import anndata as ad
    import scanpy as sc

    full = sc.datasets.pbmc68k_reduced()
    return ad.AnnData(X=full.raw.X.toarray() if hasattr(full.raw.X, "toarray") else full.raw.X,
                      obs=full.obs.copy(), var=full.raw.var.copy())


def load_synthetic(n_cells: int = 2000, n_genes: int = 500, n_types: int = 5,
                   n_batches: int = 2, batch_effect: float = 0.5, seed: int = 0,
                   batch_key: str | None = "batch") -> DomainData:
    adata = synthetic(n_cells, n_genes, n_types, n_batches, batch_effect, seed)
    return to_domain_data(adata, likelihood="nb", batch_key=batch_key,
                          label_key="cell_type")[0]


def load_pbmc68k_reduced() -> DomainData:
    return to_domain_data(pbmc68k_reduced(), likelihood="gaussian",
                          label_key="bulk_labels")[0]


def claims_expression(path: Path) -> bool:
    from . import readers

    return any(claims(path) for claims in (
        readers.claims_h5ad, readers.claims_10x_h5, readers.claims_10x_mtx,
        readers.claims_count_table, readers.claims_h5_matrix))


def load_expression(path: Path, layer: str | None = None, batch_key: str | None = None,
                    label_key: str | None = None, likelihood: str | None = None,
                    zeros: str = "drop", **read_options: Any) -> DomainData:
    """Read an expression file (h5ad, 10x h5 or mtx, count table, plain h5) and convert
    it; `likelihood` defaults to nb for raw counts and gaussian otherwise."""
    from . import readers

    adata = readers.read(path, **read_options)
    if label_key is None and "label" in adata.obs.columns:
        label_key = "label"
    try:
        data, _ = to_domain_data(adata, layer=layer, likelihood=likelihood,
                                 batch_key=batch_key, label_key=label_key, zeros=zeros)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    data.attrs["path"] = str(path)
    return data

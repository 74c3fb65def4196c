"""Data that needs no download: as AnnData for the Python API (`bsc.datasets.synthetic()`,
`bsc.datasets.pbmc68k_reduced()`), and as `DomainData` for the named datasets the CLI
loads (`load_synthetic`, `load_pbmc68k_reduced`, registered in `plugin.py`)."""

from __future__ import annotations

from typing import Any

import betavae_core as bv

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
                   batch_key: str | None = "batch") -> bv.DomainData:
    """The `synthetic_counts` dataset: `synthetic(...)` as NB counts, conditioned on
    `batch_key` (None or "" for no batch covariate), cell types as labels."""
    adata = synthetic(n_cells, n_genes, n_types, n_batches, batch_effect, seed)
    return to_domain_data(adata, likelihood="nb", batch_key=batch_key or None,
                          label_key="cell_type")[0]


def load_pbmc68k_reduced() -> bv.DomainData:
    """The `pbmc68k_reduced` dataset: log1p expression (Gaussian), `bulk_labels` as labels."""
    return to_domain_data(pbmc68k_reduced(), likelihood="gaussian",
                          label_key="bulk_labels")[0]

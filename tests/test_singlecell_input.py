"""Bad single-cell input: each gets a clear error (or warning) naming what and where, and
the user's AnnData is never changed by a call that fails."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

anndata = pytest.importorskip("anndata")
import betavae_singlecell as bsc  # noqa: E402
from betavae_core import DataError  # noqa: E402

QUICK = {"epochs": 1, "n_latent": 3, "n_hidden": 16, "progress": False}


def cells(n=120, genes=30, seed=0):
    return bsc.datasets.synthetic(n_cells=n, n_genes=genes, n_types=2, n_batches=2, seed=seed)


def _unchanged(adata, before):
    assert not adata.obsm and not adata.uns
    assert (adata.X != before.X).nnz == 0
    assert list(adata.obs.columns) == list(before.obs.columns)


@pytest.mark.parametrize("value", [2.5, -1.0])
def test_non_counts_name_the_cell_and_gene_and_suggest_a_fix(value):
    adata = cells()
    x = adata.X.tolil()
    x[17, 4] = value
    adata.X = x.tocsr()
    before = adata.copy()
    with pytest.raises(DataError) as err:
        bsc.tl.fit(adata, likelihood="nb", **QUICK)
    message = str(err.value)
    assert "'cell_17' (row 17)" in message and "'gene_4' (column 4)" in message
    assert "layer='counts'" in message and "gaussian" in message
    _unchanged(adata, before)
    # The counts layer is still fine, and the Gaussian likelihood takes any finite value.
    bsc.tl.fit(adata, layer="counts", likelihood="nb", **QUICK)
    bsc.tl.fit(adata.copy(), likelihood="gaussian", **QUICK)


def test_nan_is_refused_for_every_likelihood():
    adata = cells()
    x = adata.X.toarray()
    x[5, 9] = np.nan
    adata.X = x
    for likelihood in ("nb", "gaussian"):
        with pytest.raises(DataError, match=r"nan at cell 'cell_5' \(row 5\), gene 'gene_9'"):
            bsc.tl.fit(adata, likelihood=likelihood, **QUICK)


def test_all_zero_cells_and_genes_are_dropped_with_a_count_or_refused():
    adata = cells()
    x = adata.X.toarray()
    x[[3, 8], :] = 0
    x[:, 11] = 0
    adata.X = sp.csr_matrix(x)
    with pytest.warns(UserWarning, match="dropped 2 cells and 1 genes"):
        model = bsc.tl.fit(adata, **QUICK)
    assert "gene_11" not in model.var_names and len(model.var_names) == 29
    assert adata.obsm["X_betavae"].shape == (120, 3)
    with pytest.raises(DataError, match=r"2 cells and 1 genes are all zero.*cell_3"):
        bsc.tl.fit(adata, zeros="error", **QUICK)


def test_batch_key_problems():
    adata = cells()
    with pytest.raises(DataError, match=r"batch_key 'donor' is not a column.*'batch'"):
        bsc.tl.fit(adata, batch_key="donor", **QUICK)
    adata.obs["batch"] = adata.obs["batch"].astype(object)
    adata.obs.loc["cell_4", "batch"] = np.nan
    with pytest.raises(DataError, match=r"missing for 1 cells, the first being 'cell_4'"):
        bsc.tl.fit(adata, batch_key="batch", **QUICK)


def test_empty_anndata():
    empty = anndata.AnnData(np.zeros((0, 5), dtype=np.float32))
    with pytest.raises(DataError, match=r"empty \(0 cells x 5 genes\)"):
        bsc.tl.fit(empty, **QUICK)
    no_genes = anndata.AnnData(np.zeros((4, 0), dtype=np.float32))
    with pytest.raises(DataError, match="empty"):
        bsc.tl.fit(no_genes, **QUICK)


def test_missing_layer_and_unknown_likelihood():
    adata = cells()
    with pytest.raises(DataError, match=r"layer 'raw' is not in adata.layers.*counts"):
        bsc.tl.fit(adata, layer="raw", **QUICK)
    with pytest.raises(Exception, match="likelihood must be one of"):
        bsc.tl.fit(adata, likelihood="gamma", **QUICK)


def test_every_cell_zero():
    adata = anndata.AnnData(sp.csr_matrix((10, 4), dtype=np.float32))
    with pytest.raises(DataError, match="every cell has zero counts"):
        bsc.tl.fit(adata, **QUICK)


def test_encode_with_other_genes_is_refused_without_touching_the_data():
    adata = cells()
    model = bsc.tl.fit(adata, **QUICK)
    other = adata[:, ::2].copy()
    del other.obsm["X_betavae"]
    with pytest.raises(DataError, match=r"lacks 15 of the model's 30 genes.*: gene_1, gene_3"):
        bsc.tl.encode(model, other)
    assert "X_betavae" not in other.obsm

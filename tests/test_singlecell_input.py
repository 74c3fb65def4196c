"""Bad single-cell input: each gets a clear error (or warning) naming what and where, and
the user's AnnData is never changed by a call that fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

anndata = pytest.importorskip("anndata")
import betavae_core  # noqa: E402
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


# --- data meeting a fitted model: the fit's checks (issue 13, items 5 and 6) ----------
@pytest.fixture(scope="module")
def nb_model():
    """A count (NB) model fit on raw counts, and the cells it was fit on."""
    adata = cells()
    return adata, bsc.tl.fit(adata, likelihood="nb", **QUICK)


def _fresh(adata):
    """A copy without the fit's results, to show a refused call writes nothing."""
    out = adata.copy()
    out.obsm.pop("X_betavae", None)
    out.uns.pop("X_betavae", None)
    return out


def _log_normalised(adata):
    out = _fresh(adata)
    out.X = np.log1p(out.X)
    return out


def _with_value(adata, row, col, value):
    out = _fresh(adata)
    x = out.X.toarray() if sp.issparse(out.X) else np.array(out.X)
    x[row, col] = value
    out.X = x
    return out


def test_encode_and_evaluate_refuse_non_counts_for_a_count_model(nb_model):
    adata, model = nb_model
    log = _log_normalised(adata)
    first = np.argwhere(log.X.toarray() if sp.issparse(log.X) else log.X)[0]
    cell, gene = log.obs_names[first[0]], log.var_names[first[1]]
    for call in (lambda d: bsc.tl.encode(model, d),
                 lambda d: bsc.tl.evaluate(model, d, names=["singlecell_heldout"])):
        with pytest.raises(DataError, match="this model's nb likelihood needs raw counts") as err:
            call(log)
        assert f"cell {cell!r}" in str(err.value) and f"gene {gene!r}" in str(err.value)
        assert "layer='counts'" in str(err.value)
    assert "X_betavae" not in log.obsm  # nothing written
    negative = _with_value(adata, 7, 3, -2.0)
    with pytest.raises(DataError, match=r"holds -2.0 at cell 'cell_7' \(row 7\), gene 'gene_3'"):
        bsc.tl.encode(model, negative)
    # The raw counts in the layer still encode, and equal the fit's coordinates.
    z = bsc.tl.encode(model, log, layer="counts", key_added=None)
    np.testing.assert_allclose(z, adata.obsm["X_betavae"], atol=1e-5)


def test_encode_refuses_non_finite_values_for_a_gaussian_model():
    adata = cells()
    adata.X = np.log1p(adata.X.toarray() if sp.issparse(adata.X) else adata.X)
    model = bsc.tl.fit(adata, likelihood="gaussian", **QUICK)
    with pytest.raises(DataError, match=r"nan at cell 'cell_2' \(row 2\), gene 'gene_5'"):
        bsc.tl.encode(model, _with_value(adata, 2, 5, np.nan))


def test_betavae_evaluate_data_refuses_non_counts_for_an_nb_run(tmp_path):
    from click.testing import CliRunner

    from betavae_core.cli import main

    adata = cells()
    adata.write_h5ad(tmp_path / "counts.h5ad")
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(main, ["train", str(tmp_path / "counts.h5ad"), "--epochs", "1",
                                  "--latent-dim", "3", "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    log = adata.copy()
    log.X = np.log1p(log.X)
    log.write_h5ad(tmp_path / "log.h5ad")
    _with_value(adata, 4, 6, -1.0).write_h5ad(tmp_path / "negative.h5ad")
    before = (run / "report.json").read_bytes()
    for name, shown in (("log.h5ad", "cell (row) 0 holds"), ("negative.h5ad",
                                                            "cell (row) 4 holds -1.0")):
        result = runner.invoke(main, ["evaluate", str(run), "--data", str(tmp_path / name),
                                      "--only", "singlecell_heldout"])
        assert result.exit_code == 1, result.output
        line = result.output.strip()
        assert line.startswith("Error:") and "\n" not in line
        assert "nb likelihood needs raw counts" in line and shown in line
        assert "gene (column)" in line and "-o layer=counts" in line
        assert "distortion" not in line and "inf" not in line
        assert (run / "report.json").read_bytes() == before  # no NLL was reported
    result = runner.invoke(main, ["evaluate", str(run), "--data", str(tmp_path / "log.h5ad"),
                                  "-o", "layer=counts", "--only", "singlecell_heldout"])
    assert result.exit_code == 0, result.output
    heldout = json.loads((run / "report.json").read_text())["evaluation"]["results"][
        "singlecell_heldout"]
    assert np.isfinite(heldout["distortion"]) and np.isfinite(heldout["iw_nll"])


def _repeating(adata, first=4, second=9):
    """`adata` with gene `first`'s name given to gene `second` too."""
    out = adata.copy()
    names = list(out.var_names)
    names[second] = names[first]
    out.var_names = names
    return out


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_repeated_gene_names_are_refused_at_fit_encode_load_and_by_the_loader(nb_model,
                                                                            tmp_path):
    adata, model = nb_model
    repeated = _repeating(cells())
    message = r"repeat 1 gene name\(s\): 'gene_4' \(columns 4, 9\).*var_names_make_unique"
    with pytest.raises(DataError, match=message):
        bsc.tl.fit(repeated, **QUICK)
    assert not repeated.obsm
    with pytest.raises(DataError, match=message):  # encode would take column 9 as gene_4
        bsc.tl.encode(model, repeated)
    assert "X_betavae" not in repeated.obsm
    model.save(tmp_path / "model")
    with pytest.raises(DataError, match=message):
        bsc.load(tmp_path / "model", adata=repeated)
    repeated.write_h5ad(tmp_path / "repeated.h5ad")
    with pytest.raises(DataError, match=r"repeated\.h5ad: var_names repeat .*'gene_4'"):
        betavae_core.load_data(str(tmp_path / "repeated.h5ad"))

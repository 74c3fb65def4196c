"""The scanpy-style single-cell API: fit, encode, generate, save/load, backed files, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import KNeighborsClassifier

anndata = pytest.importorskip("anndata")
import betavae_singlecell as bsc  # noqa: E402
from betavae_core import ConfigError, DataError, OutputExistsError  # noqa: E402
from betavae_singlecell import likelihoods  # noqa: E402

FIT = {"likelihood": "nb", "n_latent": 6, "epochs": 30, "batch_size": 64, "progress": False,
       "n_hidden": 64}


def small(seed: int = 0, **kw):
    opts = {"n_cells": 600, "n_genes": 120, "n_types": 3, "n_batches": 2,
            "batch_effect": 1.0, "seed": seed, **kw}
    return bsc.datasets.synthetic(**opts)


@pytest.fixture(scope="module")
def fitted():
    adata = small()
    model = bsc.tl.fit(adata, batch_key="batch", label_key="cell_type", **FIT)
    return adata, model


def _ari(z, labels, k):
    return adjusted_rand_score(labels, KMeans(k, n_init=10, random_state=0).fit_predict(z))


def test_fit_writes_only_the_documented_keys(fitted):
    adata, model = fitted
    fresh = small()
    assert set(adata.obs.columns) == set(fresh.obs.columns)
    assert (adata.X != fresh.X).nnz == 0 and list(adata.layers) == ["counts"]
    assert set(adata.obsm) == {"X_betavae"} and set(adata.uns) == {"X_betavae"}
    z = adata.obsm["X_betavae"]
    assert z.shape == (600, 6) and z.dtype == np.float32 and np.isfinite(z).all()
    uns = adata.uns["X_betavae"]
    assert uns["params"]["likelihood"] == "nb" and uns["params"]["batch_key"] == "batch"
    assert len(uns["rate_per_dim"]) == 6
    assert uns["rate"] == pytest.approx(float(np.sum(uns["rate_per_dim"])))
    assert len(uns["history"]["epoch"]) == 30
    # No patience: a fixed-length fit keeps its last epoch, as scvi-tools does.
    assert uns["params"]["best_epoch"] == 30 and model.config["train"]["keep"] == "last"


def test_latent_keeps_types_apart_and_mixes_batches(fitted):
    adata, _ = fitted
    z = adata.obsm["X_betavae"]
    assert _ari(z, adata.obs["cell_type"], 3) > 0.9
    assert abs(_ari(z, adata.obs["batch"], 2)) < 0.1
    # Without the batch covariate the same data separates by batch much more.
    plain = small()
    bsc.tl.fit(plain, **FIT)
    assert (bsc.metrics.batch_silhouette(z, adata.obs["batch"], adata.obs["cell_type"])
            > bsc.metrics.batch_silhouette(plain.obsm["X_betavae"], plain.obs["batch"],
                                           plain.obs["cell_type"]))


def test_result_is_writable_as_h5ad_and_usable_by_scanpy(fitted, tmp_path):
    sc = pytest.importorskip("scanpy")
    adata, _ = fitted
    work = adata.copy()
    sc.pp.neighbors(work, use_rep="X_betavae", n_neighbors=10)
    work.write_h5ad(tmp_path / "a.h5ad")
    back = anndata.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_array_equal(back.obsm["X_betavae"], adata.obsm["X_betavae"])
    np.testing.assert_allclose(back.uns["X_betavae"]["rate_per_dim"],
                               adata.uns["X_betavae"]["rate_per_dim"])


def test_copy_leaves_the_input_untouched():
    adata = small(n_cells=200)
    model = bsc.tl.fit(adata, copy=True, **{**FIT, "epochs": 2})
    assert not adata.obsm and not adata.uns
    assert model.adata is not adata and "X_betavae" in model.adata.obsm


def test_encode_matches_genes_by_name(fitted):
    adata, model = fitted
    z = adata.obsm["X_betavae"]
    order = np.random.default_rng(0).permutation(adata.n_vars)
    shuffled = adata[:, order].copy()
    extra = anndata.AnnData(sp.random(adata.n_obs, 5, density=0.5, format="csr",
                                      random_state=0, dtype=np.float32))
    extra.var_names = [f"extra_{i}" for i in range(5)]
    extra.obs_names = adata.obs_names
    wider = anndata.concat([shuffled, extra], axis=1, merge="first")
    wider.obs = adata.obs.copy()
    np.testing.assert_allclose(bsc.tl.encode(model, wider, key_added=None), z, atol=1e-5)
    missing = adata[:, 3:].copy()
    del missing.obsm["X_betavae"]
    with pytest.raises(DataError, match=r"lacks 3 of the model's 120 genes.*gene_0"):
        bsc.tl.encode(model, missing)
    assert "X_betavae" not in missing.obsm


def test_encode_refuses_unknown_batches_and_missing_key(fitted):
    adata, model = fitted
    other = adata[:20].copy()
    other.obs["batch"] = other.obs["batch"].astype(str)
    other.obs.loc[other.obs_names[3], "batch"] = "batch_9"
    with pytest.raises(DataError, match=r"never saw: \['batch_9'\]"):
        bsc.tl.encode(model, other)
    with pytest.raises(DataError, match="batch_key 'sample' is not a column"):
        bsc.tl.fit(adata.copy(), batch_key="sample", **FIT)


def test_generate_matches_real_cells_of_the_batch(fitted):
    adata, model = fitted
    fake = bsc.tl.generate(model, 1000, batch="batch_1", seed=3)
    assert list(fake.var_names) == list(adata.var_names) and fake.n_obs == 1000
    assert set(fake.obs["batch"]) == {"batch_1"} and set(fake.obs["generated_from"]) == {"prior"}
    x = fake.X.toarray()
    assert (x >= 0).all() and (x == np.round(x)).all()
    real = adata[adata.obs["batch"] == "batch_1"].X.toarray()
    r = np.corrcoef(np.log1p(real.mean(0)), np.log1p(x.mean(0)))[0, 1]
    assert r > 0.95
    fig = bsc.pl.generated_vs_real(adata[adata.obs["batch"] == "batch_1"], fake)
    assert len(fig.axes) == 3 and "r = 0.9" in fig.axes[0].get_title()
    with pytest.raises(ConfigError, match="unknown batch 'b7'"):
        bsc.tl.generate(model, 5, batch="b7")


def test_generate_around_a_cell_type(fitted):
    adata, model = fitted
    fake = bsc.tl.generate(model, 200, cell_type="type_1", seed=1)
    assert set(fake.obs["cell_type"]) == {"type_1"}
    knn = KNeighborsClassifier(15).fit(adata.obsm["X_betavae"], adata.obs["cell_type"])
    called = knn.predict(bsc.tl.encode(model, fake, key_added=None))
    assert (called == "type_1").mean() > 0.8
    with pytest.raises(ConfigError, match="unknown cell type"):
        bsc.tl.generate(model, 5, cell_type="neuron")


def test_save_load_round_trip(fitted, tmp_path):
    adata, model = fitted
    model.save(tmp_path / "m")
    with pytest.raises(OutputExistsError, match="not empty"):
        model.save(tmp_path / "m")
    back = bsc.load(tmp_path / "m", adata=adata)  # on the CPU, wherever it was fit
    np.testing.assert_allclose(bsc.tl.encode(back, key_added=None), adata.obsm["X_betavae"],
                               rtol=1e-5, atol=1e-5)
    assert back.record["label_clouds"].keys() == model.record["label_clouds"].keys()
    with pytest.raises(DataError, match="lacks 2 of the model's"):
        bsc.load(tmp_path / "m", adata=adata[:, 2:])


def test_backed_h5ad_fits_exactly_like_in_memory(tmp_path):
    adata = small(n_cells=300)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    backed = anndata.read_h5ad(tmp_path / "cells.h5ad", backed="r")
    settings = {**FIT, "epochs": 3, "batch_key": "batch"}
    z_mem = bsc.tl.fit(adata, **settings).adata.obsm["X_betavae"]
    bsc.tl.fit(backed, **settings)
    np.testing.assert_allclose(backed.obsm["X_betavae"], z_mem, atol=1e-5)


def test_single_cell_minibatch_and_zero_cells():
    adata = small(n_cells=101)
    x = adata.X.tolil()
    x[7, :] = 0
    adata.X = x.tocsr()
    with pytest.warns(UserWarning, match="dropped 1 cells"):
        model = bsc.tl.fit(adata, **{**FIT, "epochs": 2, "batch_size": 9})
    assert model.record["report"]["n_train"] == 90  # 100 kept, 10 for validation
    assert adata.obsm["X_betavae"].shape == (101, 6)  # the dropped cell is still encoded
    # 102 cells: 92 train in batches of 91 and 1; a one-cell minibatch must not crash.
    bsc.tl.fit(small(n_cells=102), **{**FIT, "epochs": 1, "batch_size": 91})


@pytest.mark.parametrize("name", ["nb", "zinb", "poisson"])
def test_count_likelihoods_are_exact(name):
    import torch

    torch.manual_seed(0)
    lik = likelihoods.COUNT_LIKELIHOODS[name]((4,))
    params = torch.randn(3, lik.params_per_element, 4)
    library = torch.tensor([[100.0], [1000.0], [50.0]])
    dist = lik.distribution(params, {"library": library})
    x = torch.tensor([[0.0, 3, 7, 1], [12, 0, 0, 40], [2, 2, 0, 5]])
    mu = (torch.softmax(params[:, 0], -1) * library).double().numpy()
    if name == "poisson":
        expected = stats.poisson.logpmf(x.numpy(), mu)
    else:
        theta = lik.log_theta.detach().exp().double().numpy()
        expected = stats.nbinom.logpmf(x.numpy(), theta, theta / (theta + mu))
    if name == "zinb":
        pi = torch.sigmoid(params[:, 1]).double().numpy()
        expected = np.where(x.numpy() == 0, np.log(pi + (1 - pi) * np.exp(expected)),
                            np.log(1 - pi) + expected)
    np.testing.assert_allclose(dist.log_prob(x).detach().double().numpy(), expected.sum(1),
                               rtol=1e-4)
    big = lik.distribution(params[:1].expand(20000, -1, -1),
                           {"library": torch.full((20000, 1), 200.0)})
    draws = big.sample()
    np.testing.assert_allclose(draws.mean(0), big.mean[0].detach(), rtol=0.08, atol=0.05)
    np.testing.assert_allclose(draws.var(0), big.variance[0].detach(), rtol=0.15, atol=0.1)


def test_cli_train_evaluate_generate(tmp_path):
    from click.testing import CliRunner

    from betavae_core.cli import main

    adata = small(n_cells=300)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(tmp_path / "cells.h5ad"), "--batch-key", "batch",
                                  "--epochs", "2", "--latent-dim", "4", "--out", str(run),
                                  "--quiet"])
    assert result.exit_code == 0, result.output
    model = bsc.load(run, adata=adata)
    assert model.likelihood == "nb" and model.batches == ["batch_0", "batch_1"]
    result = runner.invoke(main, ["generate", str(run), "-n", "40", "--out",
                                  str(tmp_path / "gen"), "-g", "batch=batch_0"])
    assert result.exit_code == 0, result.output
    fake = anndata.read_h5ad(tmp_path / "gen" / "generated.h5ad")
    assert fake.shape == (40, adata.n_vars) and set(fake.obs["batch"]) == {"batch_0"}

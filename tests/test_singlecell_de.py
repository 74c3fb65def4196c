"""Normalised expression and Bayesian differential expression on counts with planted DE.

One small fit (module fixture) on counts from `betavae_datasets.de_counts`: NB noise,
varying depths, a gene-wise batch effect confounded with group, three groups with planted
DE genes against group 0. The checks: planted genes are recovered far above chance with
the right sign, the called set's FDR is bounded, depth and batch come out of normalised
expression, scanpy reads the `uns` record, and bad inputs get named errors.
"""

from __future__ import annotations

import numpy as np
import pytest

anndata = pytest.importorskip("anndata")
pd = pytest.importorskip("pandas")
import betavae_singlecell as bsc  # noqa: E402
from betavae_core import ConfigError, DataError  # noqa: E402
from betavae_datasets import de_counts  # noqa: E402
from betavae_singlecell.differential import (  # noqa: E402
    differential_expression,
    expected_fdr_set,
    lfc_posterior,
)
from betavae_singlecell.expression import normalized_expression  # noqa: E402

# beta 1 (the domain default was 1 when these bounds were set): a looser bottleneck keeps
# batch in the latent space, which transform_batch cannot decode away.
FIT = {"likelihood": "nb", "n_latent": 6, "epochs": 60, "batch_size": 64, "progress": False,
       "n_hidden": 64, "batch_key": "batch", "beta": 1.0}
SIM = {"n_cells": 600, "n_genes": 150, "n_groups": 3, "n_batches": 2, "de_fraction": 0.1,
       "batch_effect": 0.7, "confounding": 0.3, "seed": 0}


def _adata(sim: dict):
    obs = pd.DataFrame({"group": pd.Categorical(sim["group"]), "batch": sim["batch"]},
                       index=sim["cell_names"])
    return anndata.AnnData(sim["counts"].copy(), obs=obs,
                           var=pd.DataFrame(index=sim["gene_names"]))


@pytest.fixture(scope="module")
def fitted():
    sim = de_counts.simulate_de(**SIM)
    adata = _adata(sim)
    model = bsc.tl.fit(adata, **FIT)
    return sim, adata, model


def _gene_index(names) -> np.ndarray:
    return np.array([int(str(g).rsplit("_", 1)[1]) for g in names])


def _auprc(truth: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(truth, score))


def test_de_recovers_planted_genes_with_their_sign(fitted):
    sim, adata, model = fitted
    table = differential_expression(model, adata, "group", "group_1", "group_0", n_samples=2000)
    genes = _gene_index(table.index)
    truth = de_counts.planted(sim, 1, 0)[genes]
    score = table["proba_de"].to_numpy() + 1e-3 * table["lfc_mean"].abs().to_numpy()
    auprc = _auprc(truth, score)
    # Chance is the share of DE genes (0.1); the fit recovers nearly all of them.
    assert auprc > 0.8 and auprc > 5 * truth.mean()
    true_lfc = de_counts.true_lfc(sim, 1, 0)[genes]
    assert (np.sign(table["lfc_mean"][truth]) == np.sign(true_lfc[truth])).mean() >= 0.9
    called = table["is_de_fdr_0.05"].to_numpy()
    assert called.sum() >= truth.sum() // 2
    assert 1.0 - truth[called].mean() <= 0.2  # observed FDR of the called set
    # The columns scVI's users read are all there and consistent.
    p = table["proba_de"].to_numpy()
    np.testing.assert_allclose(table["bayes_factor"], np.log(p + 1e-8) - np.log(1 - p + 1e-8))
    assert (np.diff(p) <= 0).all()
    np.testing.assert_allclose(table["scale1"].sum(), 1.0, rtol=1e-4)
    rows = adata.obs["group"].to_numpy() == "group_1"
    x = adata.X[rows].toarray()
    np.testing.assert_allclose(table["mean1"], x.mean(axis=0)[genes], rtol=1e-6)
    np.testing.assert_allclose(table["non_zeros_proportion1"], (x > 0).mean(axis=0)[genes])


def test_expected_fdr_set_is_the_largest_set_under_the_bound():
    p = np.array([0.5, 0.99, 0.9, 1.0, 0.2])
    # Sorted: 1.0, 0.99, 0.9, 0.5 -> mean(1 - p) = 0, .005, .037, .153.
    np.testing.assert_array_equal(expected_fdr_set(p, 0.05), [False, True, True, True, False])
    assert not expected_fdr_set(np.array([0.1, 0.2]), 0.05).any()


def test_no_gene_changes_between_random_halves_of_one_group(fitted):
    # Two random halves of group 0 differ in no gene. A posterior that took the decoder's
    # cell-to-cell spread for change gave low-count genes P(|LFC| > delta) of 0.5-0.7
    # here (23 expected changed genes over 150); the posterior of the group-level LFC,
    # with the counts' uncertainty and a prior learned across genes, finds none.
    _, adata, model = fitted
    work = adata.copy()
    labels = work.obs["group"].astype(str).to_numpy().copy()
    zero = np.flatnonzero(labels == "group_0")
    labels[zero] = "a"
    labels[np.random.default_rng(5).permutation(zero)[: len(zero) // 2]] = "b"
    work.obs["split"] = pd.Categorical(labels)
    table = differential_expression(model, work, "split", "a", "b", n_samples=1000)
    assert table["proba_de"].sum() < 1.0 and table["proba_de"].max() < 0.5
    assert not table["is_de_fdr_0.05"].any()
    assert (table["lfc_se"] > 0).all()


@pytest.mark.parametrize("noisy_se", [0.5, 1.0])
def test_lfc_posterior_shrinks_noise_and_keeps_real_changes(noisy_se):
    # 900 genes without change, 100 changed by +-U(1, 2) log2, estimates with known
    # normal errors: s.e. 0.15, or `noisy_se` for a random third (genes with few counts).
    from scipy.special import ndtr

    rng = np.random.default_rng(0)
    truth = np.zeros(1000)
    truth[:100] = np.where(np.arange(100) % 2 == 0, 1.0, -1.0) * rng.uniform(1, 2, 100)
    se = np.where(rng.random(1000) < 1 / 3, noisy_se, 0.15)
    estimate = truth + se * rng.standard_normal(1000)
    post = lfc_posterior(estimate, se, delta=0.25)
    p = post["proba_de"]
    null, precise = truth == 0, se == 0.15
    # Unshrunk, a wide posterior N(estimate, se) puts most of its mass beyond +-delta.
    flat = ndtr((-0.25 - estimate) / se) + ndtr((estimate - 0.25) / se)
    assert flat[null & ~precise].mean() > 0.5 and p[null & ~precise].mean() < 0.15
    called = expected_fdr_set(p, 0.05)
    assert (called & null).sum() <= 0.10 * called.sum()  # observed FDR <= 2x nominal
    assert called[~null & precise].mean() >= 0.95
    assert np.abs(post["mean"] - truth)[~null & precise].max() < 0.6
    sure = (p > 0.9) & ~null
    assert (np.sign(post["median"][sure]) == np.sign(truth[sure])).all()
    assert np.isfinite(post["std"]).all() and (post["std"] >= 0).all()


def test_normalized_expression_takes_depth_out(fitted):
    sim, adata, model = fitted
    rng = np.random.default_rng(1)
    cells = np.flatnonzero(adata.obs["group"].to_numpy() == "group_0")[:40]
    deep = adata[cells].copy()
    deep.X = deep.X.toarray() * 3.0  # the same cells at three times the depth
    deep.obs_names = [f"deep_{i}" for i in range(len(cells))]
    both = anndata.concat([adata[cells].copy(), deep])
    both.X = np.asarray(both.X.toarray() if hasattr(both.X, "toarray") else both.X)
    ne = normalized_expression(model, both).to_numpy()
    log_ne = np.log2(ne + 1e-3)
    depth_gap = np.abs(log_ne[: len(cells)] - log_ne[len(cells):]).mean()
    raw = np.log2(both.X + 1.0)
    raw_gap = np.abs(raw[: len(cells)] - raw[len(cells):]).mean()
    other = rng.permutation(len(cells))
    cell_gap = np.abs(log_ne[: len(cells)] - log_ne[other]).mean()
    assert depth_gap < 0.1 * raw_gap
    assert depth_gap < cell_gap  # depth moves a cell less than swapping in another cell
    np.testing.assert_allclose(ne.sum(axis=1), 1e4, rtol=1e-4)


def test_transform_batch_removes_the_planted_batch_effect(fitted):
    sim, adata, model = fitted
    effect = sim["batch_log_effect"][1] - sim["batch_log_effect"][0]
    plain = ~de_counts.planted(sim, 1, 0) & ~de_counts.planted(sim, 2, 0)
    base = sim["log_fraction"][0]
    genes = np.flatnonzero(plain & (base > np.quantile(base, 0.5)))
    gene = genes[np.argmax(np.abs(effect[genes]))]
    name = sim["gene_names"][gene]
    g0 = adata.obs["group"].to_numpy() == "group_0"
    b1 = adata.obs["batch"].to_numpy() == "batch_1"
    own = normalized_expression(model, adata, gene_list=[name])[name].to_numpy()
    fixed = normalized_expression(model, adata, gene_list=[name],
                                  transform_batch="batch_0")[name].to_numpy()

    def log_ratio(v: np.ndarray) -> float:
        return float(np.log(v[g0 & b1].mean() / v[g0 & ~b1].mean()))

    assert abs(log_ratio(own)) > 0.5 * abs(effect[gene])  # the decoder learned the effect
    assert abs(log_ratio(fixed)) < 0.2 * abs(log_ratio(own))
    averaged = normalized_expression(model, adata, gene_list=[name],
                                     transform_batch=["batch_0", "batch_1"])[name].to_numpy()
    assert abs(log_ratio(averaged)) < 0.2 * abs(log_ratio(own))


def test_layer_added_and_samples(fitted):
    _, adata, model = fitted
    work = adata.copy()
    assert normalized_expression(model, work, layer_added="scvi_normalized") is None
    frame = normalized_expression(model, work)
    np.testing.assert_allclose(work.layers["scvi_normalized"], frame.to_numpy())
    assert list(frame.index) == list(work.obs_names)
    assert list(frame.columns) == list(work.var_names)
    sampled = normalized_expression(model, work, n_samples=20, seed=3).to_numpy()
    again = normalized_expression(model, work, n_samples=20, seed=3).to_numpy()
    np.testing.assert_array_equal(sampled, again)
    corr = np.corrcoef(np.log(sampled.ravel()), np.log(frame.to_numpy().ravel()))[0, 1]
    assert corr > 0.95


def test_rank_genes_groups_layout_works_with_scanpy(fitted):
    sc = pytest.importorskip("scanpy")
    import matplotlib

    matplotlib.use("Agg")
    _, adata, model = fitted
    work = adata.copy()
    stacked = differential_expression(model, work, "group", n_samples=500, key_added="bde")
    assert set(stacked["comparison"]) == {f"group_{g} vs rest" for g in range(3)}
    assert len(stacked) == 3 * work.n_vars
    record = work.uns["bde"]
    assert list(record["names"].dtype.names) == ["group_0", "group_1", "group_2"]
    assert record["params"]["groupby"] == "group" and record["params"]["reference"] == "rest"
    got = sc.get.rank_genes_groups_df(work, group="group_1", key="bde")
    mine = stacked[stacked["group1"] == "group_1"]
    assert list(got["names"]) == list(mine.sort_values("lfc_mean", ascending=False,
                                                        kind="stable").index)
    np.testing.assert_allclose(got["pvals"], 1.0 - mine.loc[got["names"], "proba_de"])
    np.testing.assert_allclose(got["logfoldchanges"], mine.loc[got["names"], "lfc_mean"],
                               rtol=1e-5)
    assert (np.diff(got["scores"].to_numpy()) <= 0).all()
    sc.pl.rank_genes_groups(work, key="bde", n_genes=5, show=False)
    pair = work.copy()
    differential_expression(model, pair, "group", "group_2", "group_0", n_samples=200,
                            key_added="pair")
    assert pair.uns["pair"]["params"]["reference"] == "group_0"
    assert len(sc.get.rank_genes_groups_df(pair, group="group_2", key="pair")) == work.n_vars


def test_only_documented_keys_change(fitted):
    _, adata, model = fitted
    work = adata.copy()
    before = (work.obs.copy(), work.var.copy(), work.X.copy(), set(work.uns), set(work.obsm),
              set(work.layers))
    differential_expression(model, work, "group", "group_1", n_samples=100)
    normalized_expression(model, work, transform_batch="batch_1")
    differential_expression(model, work, "group", "group_1", n_samples=100, key_added="de")
    normalized_expression(model, work, layer_added="normalized")
    pd.testing.assert_frame_equal(work.obs, before[0])
    pd.testing.assert_frame_equal(work.var, before[1])
    assert (work.X != before[2]).nnz == 0
    assert set(work.uns) == before[3] | {"de"} and set(work.obsm) == before[4]
    assert set(work.layers) == before[5] | {"normalized"}


def test_bad_inputs_are_named_errors(fitted):
    _, adata, model = fitted
    with pytest.raises(DataError, match="'cluster' is not a column of adata.obs"):
        differential_expression(model, adata, "cluster", "group_1")
    with pytest.raises(ConfigError, match=r"unknown group1 'group_9'.*group_0"):
        differential_expression(model, adata, "group", "group_9")
    with pytest.raises(ConfigError, match="unknown group2 'nope'"):
        differential_expression(model, adata, "group", "group_1", "nope")
    lonely = adata.copy()
    groups = lonely.obs["group"].astype(str).to_numpy()
    groups[0] = "singleton"
    lonely.obs["group"] = groups
    with pytest.raises(DataError, match="group 'singleton'.*has 1 cell"):
        differential_expression(model, lonely, "group", "singleton")
    with pytest.raises(DataError, match="group 'singleton'.*has 1 cell"):
        differential_expression(model, lonely, "group")  # each group against the rest
    with pytest.raises(ConfigError, match="mode must be one of"):
        differential_expression(model, adata, "group", "group_1", mode="vanilla")
    with pytest.raises(ConfigError, match=r"unknown transform_batch \['batch_7'\].*batch_0"):
        normalized_expression(model, adata, transform_batch="batch_7")
    with pytest.raises(DataError, match="2 gene.*not fit on: GAPDH, ACTB"):
        normalized_expression(model, adata, gene_list=["gene_1", "GAPDH", "ACTB"])

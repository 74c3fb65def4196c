"""Single-cell metrics on constructed embeddings and counts, the single-cell evaluations
on a tiny fitted model (core Gaussian likelihood, so they do not depend on the count
likelihoods), and the `pl`-style plots."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy import sparse

import betavae_core as bv
from betavae_core import ConfigError, DomainData, ModelConfig, SparseRows, TrainConfig, fit
from betavae_singlecell import evaluations as ev
from betavae_singlecell import metrics as M
from betavae_singlecell import plots

matplotlib.use("Agg")


def blobs(n_per: int = 60, k: int = 3, dim: int = 5, sep: float = 20.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * sep
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(size=(k * n_per, dim)), labels


# ------------------------------------------------------------------------- clustering


def test_kmeans_recovers_separated_blobs_and_not_random_labels():
    x, labels = blobs()
    scores = M.clustering_scores(x, np.array(["a", "b", "c"])[labels])
    assert scores == {"ari": pytest.approx(1.0), "nmi": pytest.approx(1.0)}
    random_labels = np.random.default_rng(1).integers(0, 3, size=len(labels))
    scores = M.clustering_scores(x, random_labels)
    assert abs(scores["ari"]) < 0.05 and scores["nmi"] < 0.05
    assert isinstance(scores["ari"], float)


def test_leiden_recovers_separated_blobs():
    pytest.importorskip("leidenalg")
    pytest.importorskip("igraph")
    x, labels = blobs()
    scores = M.leiden_scores(x, labels, resolution=0.5)
    assert scores["ari"] > 0.95 and scores["n_clusters"] == 3


def test_label_silhouette_is_scaled_and_higher_for_true_labels():
    x, labels = blobs()
    good = M.label_silhouette(x, labels)
    bad = M.label_silhouette(x, np.random.default_rng(1).permutation(labels))
    assert 0.9 < good <= 1.0 and 0.4 < bad < 0.55
    assert M.label_silhouette(x, labels, sample_size=90, seed=3) == pytest.approx(good, abs=0.02)


# ---------------------------------------------------------------------- batch mixing


def two_batch_embeddings(n_per: int = 300, seed: int = 0):
    """Two cell types; in `mixed` the two batches overlap within each type, in
    `separated` batch 1 is shifted far from batch 0."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per)
    batches = rng.integers(0, 2, size=2 * n_per)
    mixed = rng.normal(size=(2 * n_per, 4)) + 15.0 * labels[:, None]
    separated = mixed + 10.0 * np.array([0, 0, 0, 1.0]) * batches[:, None]
    return mixed, separated, batches, labels


def test_batch_silhouette_and_ilisi_prefer_mixed_batches():
    mixed, separated, batches, labels = two_batch_embeddings()
    asw_mixed = M.batch_silhouette(mixed, batches, labels)
    asw_sep = M.batch_silhouette(separated, batches, labels)
    assert asw_mixed > 0.95 and asw_sep < 0.5
    lisi_mixed = M.ilisi(mixed, batches, n_neighbors=90)
    lisi_sep = M.ilisi(separated, batches, n_neighbors=90)
    assert set(lisi_mixed) == {"ilisi", "ilisi_normalised"}
    assert lisi_mixed["ilisi_normalised"] > 0.85  # finite neighbourhoods: never exactly 1
    assert lisi_sep["ilisi"] == pytest.approx(1.0, abs=0.01)
    assert lisi_sep["ilisi_normalised"] < 0.01
    # without labels all cells are one group; string batches work as well as integers
    assert M.batch_silhouette(mixed, np.array(["x", "y"])[batches]) > 0.95


def _lisi_reference(x, groups, k, perplexity):
    """Harmony's compute_simpson_index, one cell at a time (the vectorised code's oracle)."""
    out = []
    for i in range(len(x)):
        d = np.linalg.norm(x - x[i], axis=1)
        d[i] = np.inf
        nn = np.argsort(d, kind="stable")[:k]
        dist = d[nn]
        beta, lo, hi = 1.0, -np.inf, np.inf
        for _ in range(50):
            p = np.exp(-(dist - dist[0]) * beta)
            h = np.log(p.sum()) + beta * ((dist - dist[0]) * p).sum() / p.sum()
            if abs(h - np.log(perplexity)) < 1e-5:
                break
            if h > np.log(perplexity):
                lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi, beta = beta, beta / 2 if lo == -np.inf else (beta + lo) / 2
        p = np.exp(-(dist - dist[0]) * beta)
        p /= p.sum()
        out.append(1.0 / sum(p[groups[nn] == g].sum() ** 2 for g in np.unique(groups)))
    return np.array(out)


def test_lisi_matches_a_cell_by_cell_reference():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 3))
    groups = rng.integers(0, 3, size=80)
    ours = M.lisi_per_cell(x, groups, n_neighbors=15, perplexity=5)
    np.testing.assert_allclose(ours, _lisi_reference(x, groups, 15, 5), rtol=1e-6)
    assert np.all((ours >= 1 - 1e-9) & (ours <= 3 + 1e-9))


# ----------------------------------------------------------------- expression agreement


def poisson_counts(n_cells: int, means: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).poisson(means, size=(n_cells, len(means))).astype(float)


def test_expression_agreement_same_means_versus_shuffled_genes():
    means = np.exp(np.random.default_rng(0).normal(-1.0, 1.5, size=300))
    real, gen = poisson_counts(500, means, 1), poisson_counts(400, means, 2)
    same = M.expression_agreement(real, gen)
    s = same["summary"]
    assert s["mean_log1p_r"] > 0.98 and s["variance_log1p_r"] > 0.97
    assert s["zero_fraction_r"] > 0.98 and s["zero_fraction_mae"] < 0.03
    assert (s["n_genes"], s["n_real"], s["n_generated"]) == (300, 500, 400)
    assert set(same["real"]) == {"mean", "variance", "zero_fraction"}
    np.testing.assert_allclose(same["real"]["mean"], real.mean(0))
    np.testing.assert_allclose(same["real"]["variance"], real.var(0))
    np.testing.assert_allclose(same["real"]["zero_fraction"], (real == 0).mean(0))
    shuffled = M.expression_agreement(real, gen[:, np.random.default_rng(3).permutation(300)])
    t = shuffled["summary"]
    assert t["mean_log1p_r"] < 0.3 and t["zero_fraction_r"] < 0.3
    assert t["zero_fraction_mae"] > 5 * s["zero_fraction_mae"]


def test_expression_agreement_sparse_equals_dense():
    means = np.exp(np.random.default_rng(0).normal(-2.0, 1.0, size=50))
    real, gen = poisson_counts(5000, means, 1), poisson_counts(300, means, 2)  # > 1 chunk
    dense = M.expression_agreement(real, gen)
    for fmt in (sparse.csr_matrix, sparse.csc_matrix):
        sp = M.expression_agreement(fmt(real), fmt(gen))
        for key, value in dense["summary"].items():
            assert sp["summary"][key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        for side in ("real", "generated"):
            for key in dense[side]:
                np.testing.assert_allclose(sp[side][key], dense[side][key], rtol=1e-12,
                                           atol=1e-15)
    mixed = M.expression_agreement(sparse.csr_matrix(real), torch.as_tensor(gen))
    assert mixed["summary"]["mean_log1p_r"] == pytest.approx(dense["summary"]["mean_log1p_r"])


# ------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument_and_sizes():
    x, labels = blobs()
    with pytest.raises(ValueError, match=r"labels has 179 entries.*180 cells"):
        M.clustering_scores(x, labels[:-1])
    with pytest.raises(ValueError, match=r"batches has 10 entries.*180"):
        M.ilisi(x, labels[:10])
    with pytest.raises(ValueError, match=r"labels needs at least 2 distinct values; got 1"):
        M.label_silhouette(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match=r"batches needs at least 2 distinct values"):
        M.batch_silhouette(x, np.zeros(len(x)), labels)
    with pytest.raises(ValueError, match=r"real has 5 genes but generated has 4"):
        M.expression_agreement(np.ones((3, 5)), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"embedding holds a non-finite value in row 2"):
        M.clustering_scores(np.where(np.arange(180)[:, None] == 2, np.nan, x), labels)


# ----------------------------------------------------------------------- evaluations


def synthetic_cells(n_per: int = 60, genes: int = 30, seed: int = 0, rows: bool = True):
    """3 cell types × 2 batches of log1p Poisson counts, with the singlecell conventions
    (x as a sparse row source, batch one-hot covariates, library context, metadata)."""
    rng = np.random.default_rng(seed)
    types = np.repeat(np.arange(3), 2 * n_per)
    batch = np.tile(np.repeat([0, 1], n_per), 3)
    profile = np.exp(rng.normal(0.0, 1.2, size=(3, genes)))
    batch_effect = np.exp(rng.normal(0.0, 0.3, size=(2, genes)))
    library = rng.lognormal(0.0, 0.3, size=len(types))[:, None]
    counts = rng.poisson(profile[types] * batch_effect[batch] * library)
    x = np.log1p(counts).astype(np.float32)
    return DomainData(
        x=SparseRows(sparse.csr_matrix(x)) if rows else torch.as_tensor(x),
        domain="singlecell", likelihood="gaussian",
        covariates=np.eye(2, dtype=np.float32)[batch],
        context={"library": torch.as_tensor(counts.sum(1, keepdims=True), dtype=torch.float32)},
        metadata={"cell_type": np.array(["T", "B", "NK"])[types],
                  "sample": np.array(["s1", "s2"])[batch]},
        attrs={"label_key": "cell_type", "batch_key": "sample", "batches": ["s1", "s2"],
               "var_names": [f"g{i}" for i in range(genes)]},
    )


@pytest.fixture(scope="module")
def fitted():
    data = synthetic_cells()
    result = fit(data, ModelConfig.for_data(data, latent_dim=4,
                                            architecture_options={"hidden": [32]}),
                 TrainConfig(epochs=3, lr=1e-2, batch_size=64, progress=False))
    yield result.model, data
    matplotlib.pyplot.close("all")


def _finite_numbers(d):
    for key, value in d.items():
        assert value is None or isinstance(value, (int, float, str, list, dict)), key
        if isinstance(value, float):
            assert math.isfinite(value), key
        if isinstance(value, dict):
            _finite_numbers(value)


def run_of(model, data, seed=0):
    """What the core hands an evaluation: the model and the cells to evaluate."""
    return bv.RunContext(model=model, heldout=data, seed=seed, split="all")


def singlecell_latent(model, data, **options):
    return ev.singlecell_latent(run_of(model, data), **options)


def singlecell_heldout(model, data, **options):
    return ev.singlecell_heldout(run_of(model, data), **options)


def singlecell_generated(model, data, **options):
    return ev.singlecell_generated(run_of(model, data), **options)


def test_evaluations_are_singlecell_records():
    names = {e.name: e for e in bv.registry("evaluations") if e.plugin == "singlecell"}
    assert set(names) == {"singlecell_latent", "singlecell_heldout", "singlecell_generated"}
    data = synthetic_cells(n_per=5)
    assert all(e.domain == "singlecell" and e.applies_to(data) for e in names.values())


def test_core_evaluate_passes_declared_options_and_refuses_others(fitted):
    model, data = fitted
    report = bv.evaluate(model, data, names=["singlecell_latent", "singlecell_heldout"],
                         options={"singlecell_latent": {"batch_key": False, "max_cells": 90},
                                  "singlecell_heldout": {"n_samples": 2}})
    assert report["singlecell_latent"]["n_cells_scored"] == 90
    assert report["singlecell_latent"]["n_batches"] == 0
    assert report["singlecell_heldout"]["iw_samples"] == 2
    with pytest.raises(ConfigError, match=r"no option\(s\) \['n_pc'\].*n_pcs \(default 50\)"):
        bv.evaluate(model, data, names=["singlecell_latent"],
                    options={"singlecell_latent": {"n_pc": 3}})


def test_singlecell_latent_reports_ours_beside_pca(fitted):
    model, data = fitted
    result = singlecell_latent(model, data)
    m = result.metrics
    keys = {"ari", "nmi", "label_silhouette", "batch_silhouette", "ilisi", "ilisi_normalised"}
    assert keys <= set(m["ours"]) and set(m["ours"]) == set(m["pca_scores"]) == set(m["ratio"])
    assert (m["n_cells"], m["n_cells_scored"], m["n_labels"], m["n_batches"]) == (360, 360, 3, 2)
    assert m["pca"]["input"] == "log1p_normalised_1e4" and m["pca"]["n_components"] == 30
    assert m["pca_scores"]["ari"] > 0.9  # three well-separated types
    _finite_numbers(m)
    assert all(v is not None for v in m["ours"].values())
    assert isinstance(result.figures["embedding"], Figure)
    assert len(result.figures["embedding"].axes) == 2
    # options override the keys; without labels or batches only the counts remain
    plain = singlecell_latent(model, data, label_key="sample", batch_key=False,
                              max_cells=100).metrics
    assert plain["n_labels"] == 2 and plain["n_cells_scored"] == 100
    assert plain["n_batches"] == 0 and set(plain["ours"]) >= {"ari", "label_silhouette"}
    assert "ilisi" not in plain["ours"]
    bare = singlecell_latent(model, data, label_key=False, batch_key=False)
    assert bare.metrics["ours"] == {} and len(bare.figures["embedding"].axes) == 1
    with pytest.raises(ConfigError, match=r"label_key 'missing'.*cell_type"):
        singlecell_latent(model, data, label_key="missing")


def test_singlecell_latent_large_data_path_missing_labels_and_covariate_batches(
        fitted, monkeypatch):
    model, data = fitted
    monkeypatch.setattr(ev, "DENSE_LIMIT", 30 * 100)  # PCA fitted on 100 cells, all projected
    labels = data.metadata["cell_type"].astype(object)
    labels[:20] = None  # unlabelled cells are left out
    data = DomainData(x=data.x, domain="singlecell", likelihood="gaussian",
                      covariates=data.covariates, context=data.context,
                      metadata={"cell_type": labels},
                      attrs={**data.attrs, "batch_key": "batch"})  # only in covariates
    m = singlecell_latent(model, data, leiden=False).metrics
    assert m["pca"]["fit_cells"] == 100 and m["n_cells_scored"] == 340
    assert m["n_batches"] == 2 and "leiden_ari" not in m["ours"]
    assert m["pca_scores"]["ari"] > 0.9  # projected cells sit with their types
    _finite_numbers(m)


def test_singlecell_heldout_iwae_bound_is_tighter_than_the_elbo(fitted):
    model, data = fitted
    m = singlecell_heldout(model, data, n_samples=50).metrics
    assert {"rate", "distortion", "neg_elbo", "kl_per_dim", "iw_nll", "iw_neg_elbo",
            "iw_gap", "iw_samples", "n_cells", "n_genes"} <= set(m)
    _finite_numbers(m)
    assert m["neg_elbo"] == pytest.approx(m["rate"] + m["distortion"])
    assert m["iw_nll"] <= m["iw_neg_elbo"] and m["iw_gap"] >= 0
    assert m["iw_nll"] <= m["neg_elbo"] + 0.01 * abs(m["neg_elbo"])
    assert m["iw_neg_elbo"] == pytest.approx(m["neg_elbo"], rel=0.05)
    assert len(m["kl_per_dim"]) == 4 and m["iw_samples"] == 50


def test_singlecell_generated_compares_gene_statistics(fitted):
    model, data = fitted
    result = singlecell_generated(model, data, max_cells=200)
    m = result.metrics
    assert {"mean_log1p_r", "variance_log1p_r", "zero_fraction_r", "zero_fraction_mae",
            "n_genes", "n_real", "n_generated"} <= set(m)
    assert (m["n_real"], m["n_generated"], m["n_genes"]) == (200, 200, 30)
    _finite_numbers(m)
    assert m["mean_log1p_r"] > 0.5  # even 3 epochs learn the per-gene means
    fig = result.figures["gene_statistics"]
    assert isinstance(fig, Figure) and len(fig.axes) == 3


def test_evaluations_accept_dense_tensors():
    data = synthetic_cells(n_per=10, rows=False)
    model = fit(data, ModelConfig.for_data(data, latent_dim=2,
                                           architecture_options={"hidden": [16]}),
                TrainConfig(epochs=1, progress=False)).model
    assert singlecell_heldout(model, data, n_samples=3).metrics["n_cells"] == 60
    assert singlecell_generated(model, data).metrics["n_generated"] == 60


# ------------------------------------------------------------------------------ plots


def test_rate_per_dim_and_history_plots():
    import matplotlib.pyplot as plt

    record = {"kl_per_dim": [0.5, 0.001, 2.0, 0.02],
              "history": [{"epoch": e, "train_rate": 3.0 - e / 10, "train_distortion": 100 / e,
                           "val_rate": 3.1 - e / 10, "val_distortion": 110 / e, "beta": 1.0}
                          for e in range(1, 6)]}
    ax = plots.rate_per_dim(record)
    heights = [p.get_height() for p in ax.patches]
    assert heights == sorted(heights, reverse=True) and len(heights) == 4
    assert [t.get_text() for t in ax.get_xticklabels()] == ["z2", "z0", "z3", "z1"]
    assert "3 of 4 active" in ax.get_title()
    assert any(line.get_ydata()[0] == 0.01 for line in ax.get_lines())
    plt.close(ax.figure)

    ax = plots.history(record)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train distortion", "val distortion", "train rate", "val rate"]
    plt.close(ax.figure)
    # a dict of columns (as read back from .h5ad) and an existing Axes work too
    fig = Figure()
    target = fig.add_subplot()
    columns = {k: [row[k] for row in record["history"]] for k in record["history"][0]}
    assert plots.history({"history": columns}, ax=target) is target
    with pytest.raises(KeyError, match="kl_per_dim"):
        plots.rate_per_dim({"history": []})

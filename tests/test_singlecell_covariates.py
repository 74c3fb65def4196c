"""Covariates beyond batch (`categorical_covariate_keys`, `continuous_covariate_keys`):
a planted continuous effect is absorbed, encodings are recorded and reused, bad
covariates get named errors, and the model round-trips through save/load."""

from __future__ import annotations

import numpy as np
import pytest

anndata = pytest.importorskip("anndata")
import pandas as pd  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

import betavae_singlecell as bsc  # noqa: E402
from betavae_core import DataError  # noqa: E402

FIT = {"n_latent": 6, "batch_size": 64, "n_hidden": 64, "progress": False}


def planted(n: int = 400, n_genes: int = 100, seed: int = 0):
    """NB counts of three cell types, where a per-cell `score` scales 30 genes by
    exp(±1.5 score): a continuous nuisance effect, like a cell-cycle score."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, n_genes)
    shifts = np.zeros((3, n_genes))
    for t in range(3):
        markers = rng.choice(n_genes, 15, replace=False)
        shifts[t, markers] = rng.choice([-2.0, 2.0], 15)
    types = rng.integers(3, size=n)
    score = rng.normal(size=n)
    effect = np.zeros(n_genes)
    effect[rng.choice(n_genes, 30, replace=False)] = rng.choice([-1.5, 1.5], 30)
    logit = base + shifts[types] + score[:, None] * effect
    p = np.exp(logit - logit.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    mu = p * np.exp(rng.normal(7.5, 0.3, n))[:, None]
    x = rng.poisson(rng.gamma(5.0, mu / 5.0)).astype(np.float32)
    obs = pd.DataFrame({"cell_type": [f"t{t}" for t in types], "score": score,
                        "donor": rng.choice(["d1", "d2", "d3"], n)},
                       index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame({"effect": effect}, index=[f"g{i}" for i in range(n_genes)])
    return anndata.AnnData(X=x, obs=obs, var=var)


def _r2(z: np.ndarray, y: np.ndarray) -> float:
    return float(LinearRegression().fit(z, y).score(z, y))


def _active_r2(model, adata) -> float:
    """R^2 of the score regressed on the active latent dimensions (rate > 0.1 nats):
    the ones that carry information. A collapsed dimension's means are tiny echoes of
    the input at no rate; scale-free regression would read them as signal."""
    active = np.asarray(model.record["kl_per_dim"]) > 0.1
    return _r2(adata.obsm["X_betavae"][:, active], adata.obs["score"])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small fits run fastest on one thread (and do not fight the other tests')."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def with_covariates():
    adata = planted()
    model = bsc.tl.fit(adata, categorical_covariate_keys=["donor"],
                       continuous_covariate_keys=["score"], epochs=80, lr=1e-2,
                       beta=1.0, warmup_epochs=20, **FIT)
    return adata, model


def test_continuous_covariate_absorbs_a_planted_effect(with_covariates):
    adata, model = with_covariates
    plain = planted()
    plain_model = bsc.tl.fit(plain, epochs=30, lr=1e-2, beta=1.0, warmup_epochs=7.5,
                             **FIT)
    # Without the covariate the latent space carries the score; with it, the decoder's
    # covariate offset explains the effect and the active dimensions no longer track it.
    assert _active_r2(plain_model, plain) > 0.8
    assert _active_r2(model, adata) < 0.1


def test_encodings_are_recorded_and_reused(with_covariates, tmp_path):
    adata, model = with_covariates
    enc = model.attrs["covariates"]
    assert enc["categorical"] == {"donor": ["d1", "d2", "d3"]}
    score = adata.obs["score"]
    assert enc["continuous"]["score"] == pytest.approx({"mean": score.mean(),
                                                        "sd": score.std(ddof=0)})
    assert model.config["model"]["covariate_dim"] == 4  # 3 donors + 1 score, no batch
    params = adata.uns["X_betavae"]["params"]
    assert list(params["continuous_covariate_keys"]) == ["score"]
    # New cells get the fit's standardisation, not their own: a subset whose scores
    # are all high encodes as the same cells did in the full data.
    high = adata[adata.obs["score"] > 1].copy()
    z_high = bsc.tl.encode(model, high, key_added=None)
    np.testing.assert_allclose(z_high, adata.obsm["X_betavae"][adata.obs["score"] > 1],
                               atol=1e-5)
    model.save(tmp_path / "m")
    loaded = bsc.load(tmp_path / "m", adata=adata)
    np.testing.assert_allclose(bsc.tl.encode(loaded, adata, key_added=None),
                               adata.obsm["X_betavae"], atol=1e-6)
    assert loaded.attrs["covariates"] == enc
    fake = bsc.tl.generate(loaded, 50, seed=1)  # decoded at typical covariate values
    assert fake.shape == (50, adata.n_vars) and np.isfinite(fake.X.toarray()).all()


def test_covariate_shifts_the_decoded_expression(with_covariates):
    """The decoder uses the covariate: decoding the same latents at score +1 and -1
    moves the planted genes in the planted direction."""
    import torch

    import betavae_core as bv

    adata, model = with_covariates
    z = adata.obsm["X_betavae"][:100]
    donor = torch.zeros(100, 3)
    donor[:, 0] = 1
    sd = model.attrs["covariates"]["continuous"]["score"]["sd"]
    means = []
    for s in (1.0, -1.0):
        cov = torch.cat([donor, torch.full((100, 1), s / sd)], dim=1)
        means.append(bv.decode(model.vae, z, covariates=cov, mean=True).mean.numpy())
    log_ratio = np.log(means[0].mean(0) / means[1].mean(0))
    genes = np.flatnonzero(adata.var["effect"] != 0)
    # Relative to the other genes (the softmax leaves a common shift free).
    planted_shift = log_ratio[genes] - np.median(log_ratio)
    signs = adata.var["effect"].to_numpy()[genes]
    assert np.corrcoef(planted_shift, signs)[0, 1] > 0.8
    assert (np.sign(planted_shift) == np.sign(signs)).mean() > 0.9


def test_covariate_errors_name_the_problem(with_covariates):
    adata, model = with_covariates
    with pytest.raises(DataError, match="'ccs'.*not a column"):
        bsc.tl.fit(planted(60), continuous_covariate_keys=["ccs"], epochs=1, **FIT)
    with pytest.raises(DataError, match="more than once"):
        bsc.tl.fit(planted(60), categorical_covariate_keys=["donor"],
                   continuous_covariate_keys=["donor"], epochs=1, **FIT)
    bad = planted(60)
    bad.obs.loc["c7", "score"] = np.nan
    with pytest.raises(DataError, match=r"score.*nan.*'c7' \(row 7\)"):
        bsc.tl.fit(bad, continuous_covariate_keys=["score"], epochs=1, **FIT)
    with pytest.raises(DataError, match="not numeric"):
        bsc.tl.fit(planted(60), continuous_covariate_keys=["cell_type"], epochs=1, **FIT)
    new = planted(20)
    new.obs["donor"] = "d9"
    with pytest.raises(DataError, match=r"'donor'.*never saw: \['d9'\]"):
        bsc.tl.encode(model, new)
    missing = planted(20)
    del missing.obs["score"]
    with pytest.raises(DataError, match="'score' is not a column"):
        bsc.tl.encode(model, missing)
    assert "X_betavae" not in new.obsm and "X_betavae" not in missing.obsm


def test_expression_loader_takes_the_covariate_keys(with_covariates, tmp_path):
    """The CLI's `expression` loader (`-o categorical_covariate_keys=donor -o
    continuous_covariate_keys=score`) encodes the covariates exactly as `tl.fit` did."""
    import betavae_core as bv

    adata, model = with_covariates
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    options = bv.parse_options(["categorical_covariate_keys=donor",
                                "continuous_covariate_keys=score"])
    data, _ = bv.load_data(path, options=options)
    assert data.attrs["covariates"] == model.attrs["covariates"]
    cov = np.asarray(data.covariates)
    assert cov.shape == (adata.n_obs, 4)  # three donors one-hot, then the standardised score
    donors = model.attrs["covariates"]["categorical"]["donor"]
    np.testing.assert_array_equal(cov[:, :3].argmax(1),
                                  [donors.index(d) for d in adata.obs["donor"]])
    score = adata.obs["score"].to_numpy()
    np.testing.assert_allclose(cov[:, 3], (score - score.mean()) / score.std(), atol=1e-4)
    with pytest.raises(DataError, match="'ccs'.*not a column"):
        bv.load_data(path, options={"continuous_covariate_keys": "ccs"})

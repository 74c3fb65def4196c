"""Query mapping (`mapping.map_query`, scArches-style surgery) and label transfer
(`mapping.transfer_labels`) on simulated two-batch counts: the reference is one batch,
the query the other, with a strong gene-wise batch effect between them."""

from __future__ import annotations

import numpy as np
import pytest

anndata = pytest.importorskip("anndata")
import scipy.sparse as sp  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402

import betavae_singlecell as bsc  # noqa: E402
from betavae_core import ConfigError, DataError  # noqa: E402
from betavae_singlecell import mapping  # noqa: E402

FIT = {"beta": 1.0, "warmup_epochs": 10, "n_latent": 6, "epochs": 40, "batch_size": 64,
       "n_hidden": 64, "progress": False}  # beta 1: the old schedule these bounds were set at
MAP = {"epochs": 150, "lr": 1e-2, "batch_size": 64}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small fits run fastest on one thread (and do not fight the other tests')."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def split(seed: int = 0):
    adata = bsc.datasets.synthetic(n_cells=800, n_genes=120, n_types=3, n_batches=2,
                                   batch_effect=1.0, seed=seed)
    return (adata[adata.obs["batch"] == "batch_0"].copy(),
            adata[adata.obs["batch"] == "batch_1"].copy())


@pytest.fixture(scope="module")
def reference():
    ref, query = split()
    model = bsc.tl.fit(ref, batch_key="batch", label_key="cell_type", **FIT)
    return ref, query, model


@pytest.fixture(scope="module")
def mapped(reference):
    ref, query, model = reference
    before = {k: v.clone() for k, v in model.vae.state_dict().items()}
    result = mapping.map_query(model, query, batch_key="batch", **MAP)
    return result, before


def _mixing(z_ref: np.ndarray, z_query: np.ndarray, k: int = 30) -> float:
    """Share of reference cells among the k nearest neighbours of query cells, in the
    pooled latents (about n_ref / n for perfect mixing, 0 for disjoint clouds)."""
    z = np.vstack([z_ref, z_query])
    is_ref = np.r_[np.ones(len(z_ref)), np.zeros(len(z_query))]
    index = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z_query, return_distance=False)
    return float(is_ref[index].mean())


def test_reference_weights_stay_bit_identical(reference, mapped):
    ref, _, model = reference
    result, before = mapped
    new_state = result.vae.state_dict()
    for name, value in before.items():
        assert torch_equal(new_state[name], value), name  # the mapped model's copy
        assert torch_equal(model.vae.state_dict()[name], value), name  # the reference
    added = sorted(set(new_state) - set(before))
    assert added and all(("query" in k.split(".")) or ("query_offset" in k) for k in added)
    assert any(new_state[k].abs().sum() > 0 for k in added)  # and the new ones trained
    # Reference cells keep their coordinates exactly: their batch columns and every
    # weight they meet are the reference's.
    np.testing.assert_allclose(bsc.tl.encode(result, ref, key_added=None),
                               ref.obsm["X_betavae"], atol=1e-6)
    assert result.batches == ["batch_0", "batch_1"] and model.batches == ["batch_0"]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_unfrozen_mapping_moves_reference_weights(reference):
    _, query, model = reference
    result = mapping.map_query(model, query.copy(), batch_key="batch", freeze=False,
                               epochs=2, batch_size=64)
    changed = [k for k, v in model.vae.state_dict().items()
               if not torch_equal(result.vae.state_dict()[k], v)]
    assert any(k.startswith("encoder.blocks.0.linear") for k in changed)


def test_query_cells_mix_with_reference_cells(reference, mapped):
    ref, query, model = reference
    result, _ = mapped
    z_mapped = query.obsm["X_betavae"]
    # The untrained surgery (new columns at zero) encodes query cells as cells of no
    # known batch: the batch effect stays in z, and they sit apart.
    untrained = mapping.map_query(model, query.copy(), batch_key="batch", epochs=0)
    z_untrained = bsc.tl.encode(untrained, query, key_added=None)
    mixed, apart = _mixing(ref.obsm["X_betavae"], z_mapped), _mixing(ref.obsm["X_betavae"],
                                                                     z_untrained)
    assert mixed > 1.4 * apart and mixed > 0.1
    loss = result.record["query"]["loss"]
    assert loss[-1] < 0.8 * loss[0]
    frame = mapping.transfer_labels(result, ref, query, "cell_type")
    assert (frame["pred"].astype(str) == query.obs["cell_type"].astype(str)).mean() > 0.95


def test_mapped_model_saves_loads_and_generates(reference, mapped, tmp_path):
    ref, query, _ = reference
    result, _ = mapped
    result.save(tmp_path / "mapped")
    loaded = bsc.load(tmp_path / "mapped", adata=query)
    np.testing.assert_allclose(bsc.tl.encode(loaded, query, key_added=None),
                               query.obsm["X_betavae"], atol=1e-6)
    assert loaded.attrs["query_batches"] == ["batch_1"]
    fake = bsc.tl.generate(loaded, 300, batch="batch_1", seed=0)
    real = query.X.toarray() if sp.issparse(query.X) else query.X
    gen = fake.X.toarray()
    # Generated query-batch cells carry the query batch's gene-wise effect.
    assert np.corrcoef(np.log1p(gen.mean(0)), np.log1p(real.mean(0)))[0, 1] > 0.9
    with pytest.raises(ConfigError, match="already a query mapping"):
        mapping.map_query(loaded, query, batch_key="batch", epochs=1)


def test_genes_are_matched_by_name(reference, mapped):
    _, query, model = reference
    result, _ = mapped
    fresh = split()[1]  # the query without the latents the fixtures wrote
    shuffled = fresh[:, np.random.default_rng(0).permutation(fresh.n_vars)].copy()
    extra = anndata.concat([shuffled, anndata.AnnData(
        X=np.ones((shuffled.n_obs, 2), dtype=np.float32), obs=shuffled.obs[[]],
        var={"gene": ["extra_a", "extra_b"]}).copy()], axis=1, merge="same")
    extra.var_names = [*shuffled.var_names, "extra_a", "extra_b"]
    extra.obs = shuffled.obs.copy()
    with pytest.warns(UserWarning, match="2 genes the model does not.*extra_a"):
        again = mapping.map_query(model, extra, batch_key="batch", epochs=5)
    # The same mapping as of the query with the model's genes in the model's order.
    mapping.map_query(model, fresh, batch_key="batch", epochs=5)
    np.testing.assert_allclose(extra.obsm["X_betavae"], fresh.obsm["X_betavae"], atol=1e-5)
    assert set(extra.obsm) == {"X_betavae"} and set(again.var_names) == set(model.var_names)
    lacking = split()[1][:, 3:].copy()
    with pytest.raises(DataError, match="lacks 3 of the model's 120 genes.*gene_0, gene_1, "
                                        "gene_2"):
        mapping.map_query(model, lacking, batch_key="batch", epochs=1)
    assert "X_betavae" not in lacking.obsm


def test_a_batch_the_model_knows_is_refused(reference):
    ref, query, model = reference
    both = anndata.concat([ref[:20], query[:20]])
    with pytest.raises(DataError, match=r"batches the model was fit on: \['batch_0'\]"):
        mapping.map_query(model, both, batch_key="batch", epochs=1)
    with pytest.raises(DataError, match="'plate' is not a column"):
        mapping.map_query(model, query, batch_key="plate", epochs=1)
    unbatched = bsc.tl.fit(ref[:100].copy(), epochs=1, progress=False, n_hidden=16)
    with pytest.raises(ConfigError, match="fit with a batch_key"):
        mapping.map_query(unbatched, query, batch_key="batch", epochs=1)


def test_transfer_labels_is_accurate_and_uncertain_between_types(reference, mapped):
    ref, query, _ = reference
    result, _ = mapped
    types = query.obs["cell_type"].astype(str).to_numpy()
    counts = query.X.toarray() if sp.issparse(query.X) else np.asarray(query.X)
    a, b = np.flatnonzero(types == "type_0")[:40], np.flatnonzero(types == "type_1")[:40]
    # Ambiguous cells: half of a type_0 cell's counts plus half of a type_1 cell's.
    mixed = np.floor((counts[a] + counts[b]) / 2).astype(np.float32)
    cells = anndata.AnnData(X=np.vstack([counts, mixed]))
    cells.obs["batch"] = "batch_1"
    cells.obs_names = [*query.obs_names, *[f"mix_{i}" for i in range(len(a))]]
    cells.var_names = query.var_names
    frame = mapping.transfer_labels(result, ref, cells, "cell_type", k=15,
                                    key_added="type")
    assert list(frame.columns) == ["pred", "uncertainty"]
    assert set(cells.obs.columns) == {"batch", "type_pred", "type_uncertainty"}
    pure = frame.iloc[:query.n_obs]
    accuracy = float((pure["pred"].astype(str).to_numpy() == types).mean())
    assert accuracy > 0.95  # chance is about 1/3
    ambiguous = frame["uncertainty"].to_numpy()[query.n_obs:]
    assert ambiguous.mean() > 10 * pure["uncertainty"].mean() + 0.02
    assert (ambiguous > 0.01).mean() > 0.5
    assert ((frame["uncertainty"] >= 0) & (frame["uncertainty"] < 1)).all()
    with pytest.raises(ConfigError, match="k must lie in"):
        mapping.transfer_labels(result, ref, query, "cell_type", k=0)
    with pytest.raises(DataError, match="'celltype' is not a column"):
        mapping.transfer_labels(result, ref, query, "celltype")


def test_weighted_vote():
    labels = np.array([["a", "a", "b"], ["a", "b", "b"]])
    distances = np.array([[1.0, 1.0, 1.0], [1.0, 4.0, 4.0]])
    pred, uncertainty = mapping.weighted_vote(labels, distances)
    assert list(pred) == ["a", "a"]  # 1 vs 0.25 + 0.25 in the second row
    np.testing.assert_allclose(uncertainty, [1 / 3, 1 - 1 / 1.5])

"""The single-cell plugin on contract v2: cheap start-up, declared options, domain
defaults shared by `tl.fit` and the loader, runs written by the core, and a generator
that asks the core for nothing and matches `bsc.tl.generate`."""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

anndata = pytest.importorskip("anndata")
import betavae_core as bv  # noqa: E402
import betavae_singlecell as bsc  # noqa: E402
from betavae_core import ConfigError, DataError  # noqa: E402
from betavae_singlecell import plugin  # noqa: E402

QUICK = {"n_latent": 3, "epochs": 2, "batch_size": 64, "n_hidden": 16, "progress": False}


def cells(n=200, genes=40, seed=0):
    return bsc.datasets.synthetic(n_cells=n, n_genes=genes, n_types=2, n_batches=2, seed=seed)


def records(kind):
    return {r.name: r for r in bv.registry(kind) if r.plugin == "singlecell"}


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "cells.h5ad"
    cells().write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tl.fit model with batches and label clouds, saved as a run folder."""
    adata = cells()
    model = bsc.tl.fit(adata, batch_key="batch", label_key="cell_type", **QUICK)
    path = tmp_path_factory.mktemp("model") / "m"
    model.save(path)
    return model, path


def test_plugin_import_pulls_in_no_heavy_library():
    code = ("import sys, betavae_singlecell, betavae_singlecell.plugin\n"
            "heavy = {'torch', 'numpy', 'scipy', 'pandas', 'matplotlib', 'scanpy', "
            "'anndata', 'h5py', 'sklearn'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def _keyword_defaults(func, skip):
    params = inspect.signature(func).parameters.values()
    return {p.name: p.default for p in params if p.name not in skip}


def test_record_options_are_the_callables_keyword_defaults():
    loader = records("loaders")["expression"]
    assert _keyword_defaults(loader.load.resolve(), {"path"}) == loader.options
    synthetic = records("datasets")["synthetic_counts"]
    assert _keyword_defaults(synthetic.load.resolve(), set()) == synthetic.options
    for name, record in records("evaluations").items():
        assert _keyword_defaults(record.evaluate.resolve(), {"run"}) == record.options, name
    cells_gen = records("generators")["cells"]
    assert _keyword_defaults(cells_gen.generate.resolve(), {"run", "samples"}) \
        == cells_gen.options == {"batch": None, "cell_type": None}
    from betavae_singlecell import likelihoods

    assert set(records("likelihoods")) == set(likelihoods.COUNT_LIKELIHOODS)


def test_unknown_options_are_config_errors_listing_the_valid_ones(h5ad, tmp_path):
    with pytest.raises(ConfigError, match=r"loader 'expression' has no option\(s\) "
                                          r"\['layr'\].*layer \(default None\)"):
        bv.load_data(h5ad, options={"layr": "counts"})
    data, _ = bv.load_data(h5ad)
    for settings, message in (
            ({"architecture_options": {"hiden": [8]}},
             r"architecture 'expression_mlp' has no option\(s\) \['hiden'\].*hidden"),
            ({"likelihood_options": {"scale": 1.0}},
             r"likelihood 'nb' has no option\(s\) \['scale'\].*none")):
        model_config, train, objective, _ = bv.configs_for(data, {**settings, "epochs": 1})
        with pytest.raises(ConfigError, match=message):
            bv.fit(data, model_config, train, objective)
    # a declared option the file's format does not take is a DataError naming the file
    table = tmp_path / "t.csv"
    table.write_text("gene,c1,c2\ng1,1,2\ng2,0,3\n")
    with pytest.raises(DataError, match=r"t.csv: option\(s\) backed do not apply"):
        bv.load_data(table, options={"backed": True, "orientation": "genes_by_cells"})


def test_loader_and_tl_fit_take_the_same_domain_defaults(h5ad, monkeypatch):
    data, _ = bv.load_data(h5ad, options={"batch_key": "batch"})
    model_config, train, objective, from_domain = bv.configs_for(data)
    epochs = plugin.default_epochs(len(data), n_batches=2)
    # 200 cells in 2 batches: 180 train, 2 minibatches of 128 an epoch, so 1,500 epochs
    # make 3,000
    suggested = plugin.training_defaults(len(data), n_batches=2)
    assert suggested.pop("warmup_epochs_given_beta") == 375.0  # a quarter, for a user's β
    assert from_domain == suggested and epochs == 1500
    assert (train.epochs, train.keep, train.patience, train.batch_size) == (1500, "last", None,
                                                                           128)
    # β ramps over the whole fit and reaches 0.25 at its end
    assert (objective.schedule, objective.warmup_epochs, objective.beta) == ("warmup", 1500.0,
                                                                             0.25)
    assert objective.beta_at(750) == 0.125 and objective.beta_at(1500) == 0.25
    assert model_config.latent_dim == 20 and model_config.likelihood == "nb"
    assert records("loaders")["expression"].defaults == plugin.TRAINING_DEFAULTS
    # without batches the same cells train at most 100 epochs, the warm-up with them
    one = bv.configs_for(bv.load_data(h5ad)[0])
    assert (one[1].epochs, one[2].warmup_epochs) == (100, 100.0)

    seen = {}

    def capture(data, model_config, train, objective, **kw):
        seen.update(model=model_config, train=train, objective=objective, **kw)
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(bv, "fit", capture)
    with pytest.raises(KeyboardInterrupt):
        bsc.tl.fit(anndata.read_h5ad(h5ad), batch_key="batch", progress=False)
    assert seen["train"].to_dict() == {**train.to_dict(), "progress": False}
    assert seen["objective"] == objective
    # tl.fit spells out expression_mlp's default sizes; the rest of the model is the same
    assert seen["model"].architecture_options == {"hidden": [128], "dropout": 0.1}
    assert replace(seen["model"], architecture_options={}) == model_config
    assert seen["from_domain"] == from_domain and seen["source"]["kind"] == "anndata"
    # a β the user sets: the loader's path (betavae train --beta 1) warms up as tl.fit does
    chosen = bv.configs_for(data, {"beta": 1.0})[2]
    with pytest.raises(KeyboardInterrupt):
        bsc.tl.fit(anndata.read_h5ad(h5ad), batch_key="batch", beta=1.0, progress=False)
    assert chosen == seen["objective"] and chosen.warmup_epochs == 375.0


def test_default_epochs_make_about_3000_minibatches_whatever_the_cells():
    # known answers: PBMC's 4,271 cells train 3,844 (31 minibatches), Baron's 1,064 train
    # 958 (8), 499 CellBench cells train 449 (4); a huge set still gets one epoch
    many = [plugin.default_epochs(n, n_batches=2) for n in (4271, 1064, 499, 10**7)]
    assert many == [97, 375, 750, 1]
    # one batch (or none): at most 100 epochs, where a small set stops improving
    assert [plugin.default_epochs(n) for n in (4271, 1064, 499, 10**7)] == [97, 100, 100, 1]
    assert plugin.training_defaults(1064)["epochs"] == 100
    assert plugin.training_defaults(1064, n_batches=3)["epochs"] == 375
    # holding out half the cells: 2,136 train (17 minibatches), so more epochs
    assert plugin.default_epochs(4271, val_fraction=0.5, n_batches=2) == 176
    assert plugin.training_defaults(4271, val_fraction=0.5, n_batches=2)["epochs"] == 176
    # another batch size keeps the number of minibatches, not the epochs
    assert plugin.default_epochs(4271, batch_size=256, n_batches=2) == 188
    assert plugin.training_defaults(4271, batch_size=256, n_batches=2)["epochs"] == 188


def test_tl_fit_leaves_config_json_to_the_core(tmp_path):
    adata = cells()
    model = bsc.tl.fit(adata, batch_key="batch", label_key="cell_type", out_dir=tmp_path / "r",
                       **QUICK)
    config = bv.read_json(tmp_path / "r" / bv.CONFIG)
    assert model.config == config
    assert config["from_domain"] == {"schedule": "warmup", "warmup_epochs": 2.0, "beta": 0.25,
                                     "keep": "last", "patience": 0}
    counts = adata.obs["batch"].value_counts()
    assert config["data"]["attrs"]["batch_counts"] == {b: int(counts[b])
                                                       for b in ("batch_0", "batch_1")}
    record = bv.read_json(tmp_path / "r" / bv.DOMAIN_RECORD)
    assert set(record["label_clouds"]) == {"type_0", "type_1"}
    # without a run folder the model's config is the same document
    again = bsc.tl.fit(cells(), batch_key="batch", label_key="cell_type", **QUICK)
    assert again.config == config


def test_tl_evaluate_goes_through_the_core(saved):
    model, _ = saved
    adata = cells(n=120, seed=1)
    report = bsc.tl.evaluate(model, adata, label_key="cell_type",
                             names=["singlecell_latent", "singlecell_heldout"],
                             options={"singlecell_heldout": {"n_samples": 2}})
    assert set(report) == {"singlecell_latent", "singlecell_heldout"}
    assert all(entry["plugin"] == "singlecell" for entry in report.values())
    assert report["singlecell_latent"]["label_key"] == "cell_type"
    assert report["singlecell_latent"]["batch_key"] == "batch"
    assert report["singlecell_heldout"]["iw_samples"] == 2
    everything = bsc.tl.evaluate(model, adata)
    assert set(everything) == set(records("evaluations"))


def test_generator_asks_for_no_samples_and_matches_tl_generate(saved, tmp_path):
    model, path = saved
    assert records("generators")["cells"].samples == "none"
    context = bv.load_run(path).context(seed=3, lazy=True)
    decoded_rows = []
    hook = context.model.decoder.register_forward_hook(
        lambda module, args, out: decoded_rows.append(len(out)))
    report = bv.generate(context, 300, tmp_path / "gen", seed=3)
    hook.remove()
    assert sum(decoded_rows) == 300  # one decode of the cells written, nothing thrown away
    assert context.train_data is None  # the training cells were never loaded
    written = anndata.read_h5ad(tmp_path / "gen" / "generated.h5ad")
    same = bsc.tl.generate(model, 300, seed=3)
    assert (written.X != same.X).nnz == 0 and same.X.nnz > 0
    np.testing.assert_array_equal(written.obs["batch"], same.obs["batch"])
    np.testing.assert_allclose(written.obsm["X_betavae"], same.obsm["X_betavae"])
    assert report.summary["n_cells"] == 300 and report.summary["source"] == "prior"
    other = bsc.tl.generate(model, 300, seed=4)
    assert (other.X != same.X).nnz > 0
    with pytest.raises(ConfigError, match=r"generator 'cells' has no option\(s\) "
                                          r"\['bach'\].*batch \(default None\)"):
        bv.generate(bv.load_run(path).context(lazy=True), 5, tmp_path / "bad",
                    options={"bach": "batch_0"})


def test_generator_cell_type_uses_the_runs_training_cells(h5ad, saved, tmp_path):
    data, source = bv.load_data(h5ad, options={"batch_key": "batch", "label_key": "cell_type"})
    model_config, train, objective, _ = bv.configs_for(
        data, {"epochs": 2, "latent_dim": 3, "progress": False})
    bv.fit(data, model_config, train, objective, out_dir=tmp_path / "run", source=source)
    context = bv.load_run(tmp_path / "run").context(seed=0, lazy=True)
    bv.generate(context, 40, tmp_path / "typed", options={"cell_type": "type_1"})
    typed = anndata.read_h5ad(tmp_path / "typed" / "generated.h5ad")
    assert set(typed.obs["cell_type"]) == {"type_1"}
    assert set(typed.obs["generated_from"]) == {"type_1 latent cloud"}
    assert context.train_data is not None and len(context.train_data) == 180
    # a model saved by tl.fit has no source to load again: the error says what to do
    _, path = saved
    with pytest.raises(ConfigError, match="bsc.tl.generate"):
        bv.generate(bv.load_run(path).context(lazy=True), 5, tmp_path / "none",
                    options={"cell_type": "type_1"})

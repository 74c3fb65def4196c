"""Tools (`bsc.tl`): fit, encode, generate and evaluate, scanpy style; query mapping and
label transfer (`map_query`, `transfer_labels`, from `mapping`).

`fit` writes `adata.obsm[key_added]` (posterior means, one row per cell) and
`adata.uns[key_added]` (settings, rate per latent dimension, history), so the next step
is `sc.pp.neighbors(adata, use_rep=key_added)`. Nothing else in `adata` is touched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

import betavae_core as bv
from betavae_core import ConfigError

from . import generation
from .conversion import covariate_fill, obs_labels, to_domain_data
from .differential import differential_expression
from .expression import normalized_expression
from .likelihoods import COUNT_LIKELIHOODS
from .mapping import map_query, transfer_labels
from .model import SingleCellModel, label_clouds
from .plugin import DOMAIN, VAL_FRACTION, default_epochs, training_defaults

__all__ = [
    "default_epochs", "encode", "evaluate", "fit", "generate",
    "map_query", "transfer_labels",  # mapping.py
    "normalized_expression", "differential_expression",  # expression.py, differential.py
    "latent_genes", "latent_genes_df",  # programs.py (imported at the end: it uses this module)
]

LIKELIHOODS = (*COUNT_LIKELIHOODS, "gaussian")


def fit(
    adata: Any,
    *,
    layer: str | None = None,
    likelihood: str = "nb",
    beta: float | None = None,
    n_latent: int | None = None,
    batch_key: str | None = None,
    label_key: str | None = None,
    categorical_covariate_keys: list[str] | None = None,
    continuous_covariate_keys: list[str] | None = None,
    n_hidden: int = 128,
    n_layers: int = 1,
    dropout: float = 0.1,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = 1e-3,
    warmup_epochs: float | None = None,
    patience: int | None = None,
    keep: str | None = None,
    val_fraction: float = VAL_FRACTION,
    zeros: str = "drop",
    seed: int = 0,
    device: str = "auto",
    key_added: str = "X_betavae",
    copy: bool = False,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> SingleCellModel:
    """Fit a β-VAE to the cells of `adata` and write their latent coordinates.

    Args:
        adata: cells × genes; raw counts in `.X` or in `layers[layer]` (dense, sparse, or
            backed). Cells and genes that are all zero are dropped from the fit with a
            warning (`zeros="error"` refuses them), but every cell gets coordinates.
        likelihood: "nb", "zinb", "poisson" (raw counts), or "gaussian" (log1p data).
        beta: the price of information: weight of the rate (KL) against distortion
            (default the domain's, 0.25, reached at the end of the warm-up).
        n_latent, batch_size: default the domain's, 20 and 128.
        batch_key: `adata.obs` column of batches; encoder and decoder are conditioned on
            it, so the latent space need not carry batch.
        label_key: optional `adata.obs` column of cell types, used to generate around a
            type's latent cloud (not used by the fit).
        categorical_covariate_keys, continuous_covariate_keys: further `adata.obs`
            columns that condition encoder and decoder as batch does (as in scvi-tools;
            e.g. donor, or percent mitochondrial counts, a cell-cycle score), so the
            latent space need not carry them. Categorical ones are one-hot encoded, and
            continuous ones standardised, with the categories and the mean and s.d.
            recorded in the model (`model.attrs["covariates"]`): new cells are encoded
            the same way, and an unseen category, a missing column or a NaN is an error
            naming it. Generated cells are decoded at typical values (continuous at the
            mean, categories weighed equally).
        epochs: default `default_epochs(n_cells, batch_size, n_batches=...)`: about
            3,000 minibatches whatever the number of cells, but at most 100 epochs
            with fewer than two batches (past that a small set only overfits);
            `warmup_epochs` ramps β from 0 (default all the epochs with the default β,
            which it reaches at the end; a quarter of them when you give `beta`; 0 for
            a constant β). These
            defaults (epochs, warm-up, β 0.25, 20 latent dimensions) were chosen by the
            worst case against scVI's and 50-PC PCA's clustering over four sets
            (benchmarks/singlecell_clustering.py). `patience` stops early when the
            validation objective has not improved for that many epochs after the warm-up
            (default: run all epochs). `keep` chooses the weights returned: "last" (the
            default without `patience`, as in scvi-tools) or "best" (the best validation
            epoch after the warm-up; the default with `patience`). These defaults are the
            domain's (`plugin.training_defaults`), which `betavae train` uses too.
        copy: leave `adata` untouched and write the results into a copy (`model.adata`).
        out_dir: also keep a run directory with checkpoints (`resume=True` continues an
            interrupted fit there) that `betavae evaluate` reads; the core writes its
            config.json, and domain.json holds the record below.

    Returns the fitted `SingleCellModel`.
    """
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}.")
    if n_layers < 1 or n_hidden < 1:
        raise ConfigError(f"n_layers and n_hidden must be >= 1; got {n_layers}, {n_hidden}.")
    data, kept = to_domain_data(adata, layer=layer, likelihood=likelihood,
                                batch_key=batch_key, label_key=label_key, zeros=zeros,
                                categorical_covariate_keys=categorical_covariate_keys,
                                continuous_covariate_keys=continuous_covariate_keys)
    architecture = {"hidden": [n_hidden] * n_layers, "dropout": dropout}
    fill = covariate_fill(data.attrs["covariates"])
    if fill:
        architecture["covariate_fill"] = fill
    # The domain's suggestions, for the epochs this fit runs (its warm-up is a share).
    data.defaults = training_defaults(len(data), epochs, batch_size, val_fraction,
                                      n_batches=len(data.attrs["batches"]))
    settings = {
        "latent_dim": n_latent, "batch_size": batch_size, "epochs": epochs, "lr": lr,
        "val_fraction": val_fraction, "beta": beta, "seed": seed, "device": device,
        "progress": progress, "patience": patience,
        "keep": keep if keep is not None or patience is None else "best",
        "architecture_options": architecture,
    }
    if warmup_epochs is not None:
        settings.update(schedule="warmup" if warmup_epochs > 0 else "constant",
                        warmup_epochs=max(float(warmup_epochs), 1e-6))
    model_config, train, objective, from_domain = bv.configs_for(data, settings)
    source = {"kind": "anndata", "n_obs": int(adata.n_obs), "layer": layer}
    result = bv.fit(data, model_config, train, objective, out_dir=out_dir, resume=resume,
                    source=source, from_domain=from_domain)
    model = SingleCellModel(result.model, result.config)
    target = adata.copy() if copy else adata
    if len(kept) == adata.n_obs:  # every cell was fit: encode them without a second scan
        z = bv.encode(result.model, data)[0].astype(np.float32)
    else:
        z = encode(model, target, layer=layer, key_added=None)
    labels = None if label_key is None else data.metadata[label_key]
    model.record = _record(result, None if labels is None else z[kept], labels, key_added)
    target.obsm[key_added] = z
    target.uns[key_added] = _uns(model, result, result.config["objective"]["beta"])
    model.adata = target
    if out_dir is not None:
        # The record needs the fitted model (label clouds, history), so it is written
        # after the fit; config.json stays as the core wrote it.
        with bv.output_folder(out_dir, update=True, purpose="bsc.tl.fit") as staged:
            bv.write_json(staged / bv.DOMAIN_RECORD, model.record)
    return model



def _record(result: Any, z: np.ndarray | None, labels: Any, key_added: str) -> dict[str, Any]:
    best = result.report.get("best") or {}
    return {
        "key_added": key_added,
        "kl_per_dim": list(best.get("val_kl_per_dim", [])),
        "history": _history_columns(result.history),
        "report": {k: v for k, v in result.report.items() if k != "best"},
        "label_clouds": {} if z is None else label_clouds(z, np.asarray(labels)),
    }


def _history_columns(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The history as columns of numbers (what `adata.uns` can store in .h5ad)."""
    keys = ["epoch", "beta", "train_rate", "train_distortion", "val_rate", "val_distortion",
            "val_elbo", "seconds"]
    return {k: [float(row[k]) for row in history if row.get(k) is not None] for k in keys}


def _uns(model: SingleCellModel, result: Any, beta: float) -> dict[str, Any]:
    """`adata.uns[key_added]`: only strings, numbers and arrays, so `write_h5ad` works."""
    kl = np.asarray(model.record["kl_per_dim"], dtype=float)
    best = result.report.get("best") or {}
    covariates = model.attrs.get("covariates") or {}
    params = {"likelihood": model.likelihood, "beta": float(beta), "n_latent": model.n_latent,
              "layer": model.layer or "X", "batch_key": model.batch_key or "",
              "categorical_covariate_keys": list(covariates.get("categorical") or {}),
              "continuous_covariate_keys": list(covariates.get("continuous") or {}),
              "epochs": int(model.config["train"]["epochs"]),
              "best_epoch": int(result.best_epoch), "stopped": str(result.stopped)}
    return {
        "params": params,
        "rate": float(kl.sum()),
        "rate_per_dim": kl,
        "distortion": float(best.get("val_distortion", math.nan)),
        "active_dims": int((kl > 0.01).sum()),
        "history": {k: np.asarray(v) for k, v in model.record["history"].items()},
    }


def encode(model: SingleCellModel, adata: Any = None, *, layer: str | None = None,
           key_added: str | None = "X_betavae", batch_size: int = 1024) -> np.ndarray:
    """Posterior means (n_cells, n_latent) of the cells of `adata` (default: the model's).

    Genes are matched by `var_names` (extra genes are ignored, missing ones are an error
    that lists them, repeated ones an error that names them); `adata.obs[model.batch_key]`
    must hold batches the model knows, and the covariate columns the model was fit
    with values it can encode (known categories, finite numbers). The values get the
    fit's checks: finite, and raw counts for a count likelihood (an error naming the
    cell and gene, not a silent encoding of log-normalised data). With `key_added`, also
    writes `adata.obsm[key_added]`.
    """
    adata = model.adata if adata is None else adata
    data = _model_data(model, adata, layer, "encode")
    mu, _ = bv.encode(model.vae, data, batch_size=batch_size)
    z = mu.astype(np.float32)
    if key_added is not None:
        adata.obsm[key_added] = z
    return z


def _model_data(model: SingleCellModel, adata: Any, layer: str | None, what: str,
                label_key: str | None = None, check: bool = True) -> bv.DomainData:
    """The cells of `adata` as data for the fitted `model`, with the checks the fit
    applied: `to_domain_data` with the model's likelihood, genes and batches, then the
    model's own `check_input` (`check=False` where `bv.evaluate` runs it anyway)."""
    if adata is None:
        raise ConfigError(f"{what} needs an AnnData (the model holds none).")
    data, _ = to_domain_data(
        adata, layer=layer if layer is not None else model.layer, likelihood=model.likelihood,
        batch_key=model.batch_key, label_key=label_key, genes=model.var_names,
        batches=model.batches or None, fitting=False,
        covariates=model.attrs.get("covariates"),
        query_batches=model.attrs.get("query_batches") or ())
    if check:
        model.vae.check_input(data)
    return data


def generate(model: SingleCellModel, n: int, *, batch: str | None = None,
             cell_type: str | None = None, seed: int = 0) -> Any:
    """`n` new cells as AnnData with the model's genes: latents from the prior (or from
    the latent cloud of `cell_type`), a batch (`batch`, or drawn in training
    proportions), a library size from that batch's training cells, counts drawn from
    the likelihood. `obs` records how each cell was made; `obsm['X_betavae']` its z.
    The same seed gives the same cells as `betavae generate RUN --seed SEED`."""
    return generation.cells(model.vae, model.attrs, n, batch=batch, cell_type=cell_type,
                            clouds=model.record.get("label_clouds", {}), seed=seed)


def evaluate(model: SingleCellModel, adata: Any = None, *, label_key: str | None = None,
             batch_key: str | None = None, layer: str | None = None,
             names: list[str] | None = None,
             options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the single-cell evaluations (or only `names`) on `adata` (default: the
    model's) through `betavae_core.evaluate`, and return their results by name: latent
    clustering vs labels, batch mixing, held-out NLL, generated cells vs real ones.

    `label_key` / `batch_key` name `adata.obs` columns for `singlecell_latent` (default:
    no labels, the model's batches); `options` maps an evaluation's name to its options
    (`plugin.EVALUATION_OPTIONS` lists them).
    """
    adata = model.adata if adata is None else adata
    data = _model_data(model, adata, layer, "evaluate", label_key=label_key, check=False)
    if batch_key is not None and batch_key != model.batch_key:
        data.metadata[batch_key] = obs_labels(adata, batch_key, "batch_key")
    if names is None:
        names = [e.name for e in bv.registry("evaluations") if e.domain == DOMAIN]
    options = {k: dict(v) for k, v in (options or {}).items()}
    if "singlecell_latent" in names:
        keys = {"label_key": label_key, "batch_key": batch_key}
        latent = options.setdefault("singlecell_latent", {})
        latent.update({k: v for k, v in keys.items() if v is not None and k not in latent})
    return bv.evaluate(model.vae, data, names=names, options=options)


from .programs import latent_genes, latent_genes_df  # noqa: E402

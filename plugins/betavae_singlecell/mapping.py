"""Query mapping onto a fitted model (scArches-style architecture surgery) and label
transfer by nearest neighbours in its latent space.

`map_query` extends a fitted model to batches it has not seen: every layer that takes
the batch one-hot gets new columns for the new batches (the `query` weights of
`expression_mlp`), and the decoder's gene-wise batch offset gets new rows
(`query_offset`). With `freeze=True` only those train, on the query cells; every
reference weight stays bit for bit what it was, so the reference cells keep their
coordinates and the query cells land in the reference's latent space.

The core's trainer builds its model from the config inside `bv.fit`, with no way to
start from given weights, so the mapping trains with a short loop of its own (Adam on
the parameters that require gradients, minibatches through `bv.minibatch`).
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import numpy as np
import torch

import betavae_core as bv
from betavae_core import ConfigError, DataError

from .conversion import batch_labels, check_unique_genes, gene_columns, obs_labels
from .model import SingleCellModel
from .plugin import default_epochs

__all__ = ["map_query", "transfer_labels"]

QUERY_PARAMETERS = ("query", "query_offset")  # names of the parameters surgery adds


def map_query(
    model: SingleCellModel,
    query: Any,
    *,
    batch_key: str | None = None,
    epochs: int | None = None,
    freeze: bool = True,
    layer: str | None = None,
    lr: float = 1e-3,
    batch_size: int | None = None,
    seed: int = 0,
    key_added: str | None = None,
    progress: bool = False,
) -> SingleCellModel:
    """Map the cells of `query`, from batches the model has not seen, onto `model`.

    Args:
        query: cells x genes with raw counts in `.X` or `layers[layer]` (default the
            model's layer). Genes are matched by name: reordered, extra genes dropped
            with a warning; missing genes are a `DataError` that lists them.
        batch_key: the `query.obs` column of batches (default the model's); each must
            be new to the model (a `DataError` names any it already knows). The mapped
            model reads batches from this column, in reference and query cells alike.
        epochs: passes over the query cells (default `default_epochs(n_query)`: about
            3,000 minibatches, at most 100 epochs; longer query training only moved the
            query further from the reference in `benchmarks/singlecell_query.py`).
        freeze: train only the new batch parameters (scArches); False fine-tunes every
            weight on the query cells.
        key_added: `query.obsm` key for the query cells' latents (default the model's,
            "X_betavae").

    Returns a new `SingleCellModel` that knows the reference and the query batches
    (`model` itself is unchanged), with `record["query"]` holding the mapping's batches,
    epochs, loss per epoch and time; `model.save`/`bsc.load` work on it. Writes
    `query.obsm[key_added]` (posterior means) and nothing else.
    """
    batch_key = batch_key or model.batch_key
    if model.batch_key is None or not model.batches:
        raise ConfigError("map_query needs a model fit with a batch_key: the query's "
                          "batches are mapped as new batches. Fit with batch_key=...")
    if model.attrs.get("query_batches"):
        raise ConfigError(f"this model is already a query mapping (of batches "
                          f"{model.attrs['query_batches']}); map every query batch onto "
                          f"the reference model in one call.")
    new_batches = _new_batches(model, query, batch_key)
    _match_genes(model, query)
    mapped = _extended_model(model, new_batches, batch_key, seed)
    data = _query_data(mapped, query, layer)
    mapped.config["data"]["attrs"].update(_query_stats(model, data))
    mapped.vae.check_input(data)
    trainable = _freeze(mapped.vae, freeze)
    # only the new batches' weights train, no batch is removed within the fit: the cap
    # of a one-batch fit applies (the query data holds the reference's batches too)
    epochs = default_epochs(len(data), n_batches=1) if epochs is None else int(epochs)
    size = int(batch_size or model.config.get("train", {}).get("batch_size", 128))
    beta = float(model.config.get("objective", {}).get("beta", 1.0))
    t0 = time.perf_counter()
    history = _train(mapped.vae, data, trainable, epochs, size, lr, beta, seed, freeze,
                     progress)
    mapped.record["query"] = {"batches": new_batches, "epochs": epochs, "freeze": bool(freeze),
                              "n_cells": len(data), "loss": history,
                              "seconds": time.perf_counter() - t0}
    mu, _ = bv.encode(mapped.vae, data)
    query.obsm[key_added or model.record.get("key_added") or "X_betavae"] = (
        mu.astype(np.float32))
    mapped.adata = query
    return mapped


def _new_batches(model: SingleCellModel, query: Any, batch_key: str) -> list[str]:
    """The query's batches, sorted; `DataError` naming any the model already knows."""
    values = batch_labels(query, batch_key)
    batches = sorted(set(values.tolist()))
    seen = [b for b in batches if b in model.batches]
    if seen:
        raise DataError(f"query.obs[{batch_key!r}] holds batches the model was fit on: "
                        f"{seen}; map_query maps new batches only (the model knows "
                        f"{model.batches}). Encode those cells with bsc.tl.encode, or "
                        f"rename the query's batches.")
    return batches


def _match_genes(model: SingleCellModel, query: Any) -> None:
    """`DataError` listing the model's genes the query lacks; a warning for the extra
    genes it has, which the mapping ignores."""
    gene_columns(query.var_names, model.var_names)
    extra = sorted(set(check_unique_genes(query.var_names)) - set(model.var_names))
    if extra:
        shown = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
        warnings.warn(f"map_query: the query has {len(extra)} genes the model does not "
                      f"(dropped): {shown}.", stacklevel=3)


def _extended_model(model: SingleCellModel, new_batches: list[str], batch_key: str,
                    seed: int) -> SingleCellModel:
    """The reference model with `len(new_batches)` batch columns appended: its config
    with the covariates widened and `query_columns` set, built afresh, with every
    reference weight copied in (the new ones start at zero)."""
    config = copy.deepcopy(model.config)
    spec = config["model"]
    spec["covariate_dim"] = int(spec["covariate_dim"]) + len(new_batches)
    spec["architecture_options"] = {**spec.get("architecture_options", {}),
                                    "query_columns": len(new_batches)}
    attrs = config["data"]["attrs"]
    attrs.update(batches=[*model.batches, *new_batches], query_batches=list(new_batches),
                 batch_key=batch_key)
    config["data"]["covariate_dim"] = spec["covariate_dim"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = bv.BetaVAE(bv.ModelConfig.from_dict(spec))
    reference = {k: v.detach().clone() for k, v in model.vae.state_dict().items()}
    missing, unexpected = vae.load_state_dict(reference, strict=False)
    odd = [k for k in missing if not _is_query(k)] + list(unexpected)
    if odd:  # the surgery only adds parameters; anything else is a bug, said loudly
        raise RuntimeError(f"query surgery changed reference weights: {odd[:5]}")
    vae.to(model.vae.device)
    return SingleCellModel(vae, config, copy.deepcopy(model.record))


def _is_query(name: str) -> bool:
    return any(part in QUERY_PARAMETERS for part in name.split("."))


def _query_data(mapped: SingleCellModel, query: Any, layer: str | None) -> bv.DomainData:
    """The query cells as data for the mapped model (the fit's checks, its genes and
    covariate encoding, the new batches' columns last)."""
    from .conversion import to_domain_data

    data, _ = to_domain_data(
        query, layer=layer if layer is not None else mapped.layer,
        likelihood=mapped.likelihood, batch_key=mapped.batch_key, genes=mapped.var_names,
        batches=mapped.batches, fitting=False, covariates=mapped.attrs.get("covariates"),
        query_batches=mapped.attrs["query_batches"])
    return data


def _query_stats(model: SingleCellModel, data: bv.DomainData) -> dict[str, Any]:
    """Library sizes and cell counts of the new batches added to the reference's, so
    `generate` draws query batches with their own depths."""
    new = data.attrs["query_batches"]
    library = dict(model.attrs.get("library_log") or {})
    library.update({b: v for b, v in data.attrs["library_log"].items() if b in new})
    counts = dict(model.attrs.get("batch_counts") or {})
    counts.update({b: v for b, v in data.attrs["batch_counts"].items() if b in new})
    return {"library_log": library, "batch_counts": counts}


def _freeze(vae: bv.BetaVAE, freeze: bool) -> list[torch.nn.Parameter]:
    """Turn off gradients of every reference parameter (with `freeze`); returns the
    parameters left to train."""
    for name, param in vae.named_parameters():
        if freeze and not _is_query(name):
            param.requires_grad_(False)
    return [p for p in vae.parameters() if p.requires_grad]


def _train(vae: bv.BetaVAE, data: bv.DomainData, params: list[torch.nn.Parameter],
           epochs: int, batch_size: int, lr: float, beta: float, seed: int, freeze: bool,
           progress: bool) -> list[float]:
    """Adam on `params` for `epochs` passes over `data` (the ELBO with the reference's
    β); returns the mean loss per epoch. With `freeze`, normalisation layers stay in
    evaluation mode, so batch-norm running statistics do not move either."""
    if not params or epochs == 0:
        return []
    optimiser = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            _train_mode(vae, freeze)
            order = torch.randperm(len(data), generator=generator)
            total, n = 0.0, 0
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                if len(idx) < 2 and len(order) > 1:
                    continue  # a last minibatch of one cell: batch norm cannot use it
                x, cov, ctx = bv.minibatch(data, idx, vae.device)
                record = vae(x, cov, ctx)
                loss = record.distortion.mean() + beta * record.rate.mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total, n = total + float(loss.detach()) * len(idx), n + len(idx)
            history.append(total / max(n, 1))
            if progress:
                print(f"map_query epoch {epoch + 1}/{epochs}: loss {history[-1]:.2f}")
    vae.eval()
    return history


def _train_mode(vae: bv.BetaVAE, freeze: bool) -> None:
    vae.train()
    if freeze:
        for module in vae.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.eval()


def transfer_labels(
    model: SingleCellModel,
    reference: Any,
    query: Any,
    label_key: str,
    *,
    k: int = 15,
    key_added: str | None = None,
    layer: str | None = None,
) -> Any:
    """Label the cells of `query` by their `k` nearest reference cells in the model's
    latent space (posterior means; Euclidean).

    Each neighbour votes for its `reference.obs[label_key]` with weight 1 / distance
    (an exact match outvotes the rest); the winner is the prediction and its
    uncertainty is 1 minus the winner's share of the weight (0 when all neighbours
    agree; near 1 - 1/k when they all differ). `model` must know the batches of both
    (a mapped model from `map_query` does).

    Writes `query.obs[f"{key}_pred"]` (categorical) and `query.obs[f"{key}_uncertainty"]`
    with `key = key_added or label_key`, and returns them as a DataFrame (columns
    `pred`, `uncertainty`, indexed by query cell).
    """
    import pandas as pd
    from sklearn.neighbors import NearestNeighbors

    from .tl import encode

    labels = obs_labels(reference, label_key, "label_key")
    if not 1 <= k <= len(labels):
        raise ConfigError(f"k must lie in [1, {len(labels)}] (the reference cells); got {k}.")
    z_ref = encode(model, reference, layer=layer, key_added=None)
    z_query = encode(model, query, layer=layer, key_added=None)
    distances, index = NearestNeighbors(n_neighbors=k).fit(z_ref).kneighbors(z_query)
    pred, uncertainty = weighted_vote(labels[index], distances)
    key = key_added or label_key
    frame = pd.DataFrame({"pred": pd.Categorical(pred), "uncertainty": uncertainty},
                         index=query.obs_names.copy())
    query.obs[f"{key}_pred"] = frame["pred"].to_numpy()
    query.obs[f"{key}_pred"] = query.obs[f"{key}_pred"].astype("category")
    query.obs[f"{key}_uncertainty"] = uncertainty
    return frame


def weighted_vote(neighbour_labels: np.ndarray, distances: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the label with the largest summed 1 / distance weight, and 1 minus its
    share of the row's weight."""
    weights = 1.0 / np.maximum(distances, 1e-12)
    classes, codes = np.unique(neighbour_labels, return_inverse=True)
    codes = codes.reshape(neighbour_labels.shape)
    votes = np.zeros((len(codes), len(classes)))
    np.add.at(votes, (np.repeat(np.arange(len(codes)), codes.shape[1]), codes.ravel()),
              weights.ravel())
    winner = votes.argmax(axis=1)
    share = votes[np.arange(len(votes)), winner] / votes.sum(axis=1)
    return classes[winner], 1.0 - share

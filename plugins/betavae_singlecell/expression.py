"""Normalised expression: what the decoder expects a cell to express, depth taken out.

For the count likelihoods (nb, zinb, poisson) the decoder's first channel is one logit
per gene, and its softmax is the cell's expression proportions rho (see
`likelihoods.py`); the observed library size only enters as an offset. So rho times a
fixed `library_size` is expression with sequencing depth removed, and decoding a cell
under another batch's covariate (`transform_batch`) removes the batch effect the
decoder learned. The differential expression of `differential.py` draws its posterior
samples through the same functions (`posterior_scales`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import betavae_core as bv
from betavae_core import ConfigError, DataError

from .conversion import gene_columns, to_domain_data
from .likelihoods import COUNT_LIKELIHOODS
from .model import SingleCellModel

__all__ = ["normalized_expression"]

CELL_BLOCK = 8192  # cells decoded per block: bounds the dense cells x genes temporaries


def model_data(model: SingleCellModel, adata: Any, layer: str | None, what: str) -> bv.DomainData:
    """The cells of `adata` as data for `model` (its genes, batches and likelihood), with
    the fit's checks; `ConfigError` for a model whose decoder gives no proportions."""
    if model.likelihood not in COUNT_LIKELIHOODS:
        raise ConfigError(f"{what} needs a count likelihood ({sorted(COUNT_LIKELIHOODS)}), "
                          f"whose decoder gives per-gene proportions; this model uses "
                          f"{model.likelihood!r}. Refit on raw counts with likelihood='nb'.")
    if adata is None:
        raise ConfigError(f"{what} needs an AnnData (the model holds none).")
    data, _ = to_domain_data(
        adata, layer=layer if layer is not None else model.layer, likelihood=model.likelihood,
        batch_key=model.batch_key, genes=model.var_names, batches=model.batches or None,
        fitting=False)
    model.vae.check_input(data)
    return data


def resolve_batches(model: SingleCellModel, transform_batch: Any) -> list[str] | None:
    """`transform_batch` as a list of the model's batch names (None: each cell's own);
    `ConfigError` naming the known batches for an unknown one."""
    if transform_batch is None:
        return None
    names = [transform_batch] if isinstance(transform_batch, str) else list(transform_batch)
    if not model.batches:
        raise ConfigError(f"transform_batch={transform_batch!r} given, but the model was fit "
                          f"without batches (no batch_key).")
    unknown = [str(b) for b in names if str(b) not in model.batches]
    if unknown or not names:
        raise ConfigError(f"unknown transform_batch {unknown or names}; the model knows the "
                          f"batches {model.batches} (of adata.obs[{model.batch_key!r}]).")
    return [str(b) for b in names]


def batch_covariate(model: SingleCellModel, batch: str, n: int) -> torch.Tensor:
    """One-hot batch covariate rows saying every one of `n` cells is from `batch`."""
    rows = torch.zeros((n, len(model.batches)), dtype=torch.float32)
    rows[:, model.batches.index(batch)] = 1.0
    return rows


def scales(model: SingleCellModel, z: np.ndarray, covariates: torch.Tensor | None,
           batch_size: int) -> np.ndarray:
    """Expression proportions (n, genes; rows sum to 1) the decoder gives for `z`: the
    softmax of its per-gene logits, i.e. the likelihood mean with the library removed."""
    params = bv.decode(model.vae, z, covariates=covariates, mean=False, sample=False,
                       params=True, batch_size=batch_size).params
    return torch.softmax(params[:, 0], dim=-1).numpy()


def posterior_scales(model: SingleCellModel, z: np.ndarray, own: torch.Tensor | None,
                     batches: Sequence[str] | None, batch_size: int) -> np.ndarray:
    """Proportions for latents `z` decoded under each cell's own covariates `own`
    (`batches=None`) or averaged over decoding under each of `batches`."""
    if batches is None:
        return scales(model, z, own, batch_size)
    total = np.zeros((len(z), len(model.var_names)), dtype=np.float32)
    for batch in batches:
        total += scales(model, z, batch_covariate(model, batch, len(z)), batch_size)
    return total / len(batches)


def latent_draws(mu: np.ndarray, logvar: np.ndarray, rng: np.random.Generator | None
                 ) -> np.ndarray:
    """One draw per row from the posterior N(mu, exp(logvar)); the mean when `rng` is None."""
    if rng is None:
        return mu
    return mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)


def _gene_subset(model: SingleCellModel, gene_list: Sequence[str] | None) -> np.ndarray | None:
    """Columns of the model's genes to keep; `DataError` listing the genes it lacks."""
    if gene_list is None:
        return None
    wanted = [str(g) for g in gene_list]
    missing = [g for g in wanted if g not in set(model.var_names)]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(f"gene_list holds {len(missing)} gene(s) the model was not fit on: "
                        f"{shown}. Pick genes from model.var_names.")
    return gene_columns(model.var_names, wanted) if wanted != model.var_names else None


def normalized_expression(
    model: SingleCellModel,
    adata: Any = None,
    *,
    transform_batch: str | Sequence[str] | None = None,
    library_size: float = 1e4,
    n_samples: int = 1,
    gene_list: Sequence[str] | None = None,
    layer: str | None = None,
    layer_added: str | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> Any:
    """The decoder's expected expression per cell at a fixed depth of `library_size` counts.

    Each cell is encoded; with `n_samples=1` its posterior mean is decoded, otherwise
    `n_samples` posterior draws (seeded by `seed`) are decoded and averaged. The
    decoder's proportions times `library_size` take sequencing depth out, as scVI's
    `get_normalized_expression` does. `transform_batch` (a batch name, or a list whose
    decodings are averaged) decodes every cell as if it came from that batch:
    batch-corrected expression. `gene_list` keeps only those of the model's genes.
    Counts are read from `layers[layer]` (default: the layer the model was fit on).

    Needs a count likelihood (nb, zinb, poisson). Raises `ConfigError` for an unknown
    `transform_batch` (naming the known batches) and `DataError` for genes in `gene_list`
    the model lacks (listing them).

    Returns a pandas DataFrame (cells x genes, indexed by `obs_names` and gene names), or,
    with `layer_added`, writes `adata.layers[layer_added]` (float32, cells x genes in
    `adata`'s order; 0 for genes not computed: those outside the model or `gene_list`)
    and returns None. Nothing else in `adata` changes.
    """
    import pandas as pd

    adata = model.adata if adata is None else adata
    if n_samples < 1 or library_size <= 0:
        raise ConfigError(f"n_samples must be >= 1 and library_size > 0; got {n_samples}, "
                          f"{library_size}.")
    batches = resolve_batches(model, transform_batch)
    columns = _gene_subset(model, gene_list)
    data = model_data(model, adata, layer, "normalized_expression")
    mu, logvar = bv.encode(model.vae, data, batch_size=batch_size)
    rng = None if n_samples == 1 else np.random.default_rng(seed)
    genes = np.asarray(model.var_names, dtype=object)
    genes = genes if columns is None else genes[columns]
    values = np.empty((len(mu), len(genes)), dtype=np.float32)
    for sl in bv.batches(len(mu), CELL_BLOCK):  # one block of cells x genes in memory
        own = None if data.covariates is None else data.covariates[sl]
        total = np.zeros((sl.stop - sl.start, len(model.var_names)), dtype=np.float32)
        for _ in range(n_samples):
            z = latent_draws(mu[sl], logvar[sl], rng)
            total += posterior_scales(model, z, own, batches, batch_size)
        total *= library_size / n_samples
        values[sl] = total if columns is None else total[:, columns]
    if layer_added is None:
        return pd.DataFrame(values, index=adata.obs_names.copy(), columns=list(genes))
    adata.layers[layer_added] = _as_layer(values, list(genes), adata)
    return None


def _as_layer(values: np.ndarray, genes: list[str], adata: Any) -> np.ndarray:
    """`values` (cells x `genes`) placed in `adata`'s gene order; zeros for the others."""
    position = {str(g): i for i, g in enumerate(adata.var_names)}
    out = np.zeros((adata.n_obs, adata.n_vars), dtype=np.float32)
    out[:, [position[g] for g in genes]] = values
    return out

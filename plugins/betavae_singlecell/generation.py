"""Generated cells: latent draws (the prior, or a cell type's latent cloud), a batch and
a library size per cell, decoded to counts through the likelihood, as AnnData.

Library sizes are drawn from the log-normal fitted to the training cells of the same
batch, so generated cells have realistic depths; `obs` says how each cell was made.
`generate_cells` is the `cells` generator of `betavae generate`; `bsc.tl.generate` calls
`cells` with the same seed and gets the same cells. The generator's record asks the core
for nothing (`samples="none"`): it draws its own latents and decodes once, with its own
library sizes, through `bv.decode`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

import betavae_core as bv
from betavae_core import BetaVAE, CandidateReport, ConfigError, GeneratedSamples, RunContext

from .likelihoods import COUNT_LIKELIHOODS
from .model import label_clouds

# Cells decoded (and, for counts, made sparse) at once: one dense block in memory.
DECODE_BLOCK = 2048


def prior_latents(vae: BetaVAE, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws from the model's prior N(0, diag(s^2))."""
    scale = vae.prior_scale().detach().cpu().numpy()
    return rng.standard_normal((n, vae.latent_dim)) * scale


def cloud_latents(clouds: dict[str, Any], cell_type: str, n: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Draws from the Gaussian fitted to the posterior means of `cell_type`'s cells."""
    if not clouds:
        raise ConfigError("this model has no per-label latent clouds: fit it with "
                          "label_key=... to generate around a cell type.")
    if cell_type not in clouds:
        raise ConfigError(f"unknown cell type {cell_type!r}; the model knows "
                          f"{sorted(clouds)}.")
    cloud = clouds[cell_type]
    return rng.multivariate_normal(np.asarray(cloud["mean"]), np.asarray(cloud["cov"]), size=n,
                                   method="eigh")


def choose_batches(batches: list[str], batch: str | None, weights: dict[str, int] | None,
                   n: int, rng: np.random.Generator) -> np.ndarray | None:
    """Batch name per generated cell: the one asked for, or drawn in training proportions."""
    if not batches:
        if batch is not None:
            raise ConfigError(f"batch={batch!r} given, but the model was fit without batches.")
        return None
    if batch is not None:
        if batch not in batches:
            raise ConfigError(f"unknown batch {batch!r}; the model knows {batches}.")
        return np.full(n, batch, dtype=object)
    p = np.array([float((weights or {}).get(b, 1)) for b in batches])
    return rng.choice(np.array(batches, dtype=object), size=n, p=p / p.sum())


def draw_library(stats: dict[str, dict[str, float]], batch_names: np.ndarray | None, n: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Library sizes from the training cells' log-normal (per batch when there are any)."""
    if batch_names is None:
        s = stats["all"]
        return np.exp(rng.normal(s["mean"], s["sd"], size=n))
    out = np.empty(n)
    for name in np.unique(batch_names):
        rows = batch_names == name
        s = stats[str(name)]
        out[rows] = np.exp(rng.normal(s["mean"], s["sd"], size=int(rows.sum())))
    return out


def batch_one_hot(batches: list[str], names: np.ndarray | None, n: int) -> torch.Tensor | None:
    if names is None:
        return None
    pos = {b: i for i, b in enumerate(batches)}
    codes = torch.as_tensor([pos[str(b)] for b in names], dtype=torch.long)
    return torch.nn.functional.one_hot(codes, len(batches)).float()


def decode_counts(vae: BetaVAE, z: np.ndarray, covariates: torch.Tensor | None,
                  library: np.ndarray, seed: int = 0) -> Any:
    """One draw from the likelihood per latent, with `library` as its offset: sparse CSR
    for count likelihoods (decoded `DECODE_BLOCK` cells at a time, so only one block is
    ever dense), a dense array otherwise."""
    lib = torch.as_tensor(library, dtype=torch.float32).reshape(-1, 1)
    counts = vae.config.likelihood in COUNT_LIKELIHOODS
    parts = []
    for i, sl in enumerate(bv.batches(len(z), DECODE_BLOCK)):
        cov = None if covariates is None else covariates[sl]
        x = bv.decode(vae, z[sl], covariates=cov, context={"library": lib[sl]}, mean=False,
                      sample=True, seed=seed + i, batch_size=DECODE_BLOCK).sample.numpy()
        parts.append(sp.csr_matrix(x.astype(np.float32)) if counts else x)
    return sp.vstack(parts).tocsr() if counts else np.concatenate(parts)


def cells_anndata(x: Any, z: np.ndarray, var_names: list[str], obs: dict[str, Any],
                  uns: dict[str, Any]) -> Any:
    """Generated cells as AnnData: counts in X, latents in obsm['X_betavae']."""
    import anndata as ad
    import pandas as pd

    frame = pd.DataFrame(obs, index=[f"generated_{i}" for i in range(x.shape[0])])
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].astype("category")
    adata = ad.AnnData(X=x, obs=frame, var=pd.DataFrame(index=list(var_names)))
    adata.obsm["X_betavae"] = np.asarray(z, dtype=np.float32)
    adata.uns["betavae_generated"] = uns
    return adata


def cells(vae: BetaVAE, attrs: dict[str, Any], n: int, *, batch: str | None = None,
          cell_type: str | None = None, clouds: dict[str, Any] | None = None,
          seed: int = 0) -> Any:
    """`n` new cells as AnnData with the model's genes (`attrs`: the training data's).

    Latents come from the prior, or from the latent cloud of `cell_type` (`clouds`: per
    label, the mean and covariance of its cells' posterior means); each cell gets a batch
    (`batch`, or drawn in the training proportions `attrs["batch_counts"]`) and a library
    size from that batch's training cells; counts are one draw from the likelihood. One
    numpy generator seeded with `seed` makes every draw but the likelihood's, which
    `bv.decode` seeds with `seed`. `obs` records how each cell was made.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1; got {n}.")
    rng = np.random.default_rng(seed)
    if cell_type is None:
        z = prior_latents(vae, n, rng)
    else:
        z = cloud_latents(clouds or {}, str(cell_type), n, rng)
    batches = list(attrs.get("batches") or [])
    names = choose_batches(batches, batch, attrs.get("batch_counts"), n, rng)
    library = draw_library(attrs["library_log"], names, n, rng)
    x = decode_counts(vae, z, batch_one_hot(batches, names, n), library, seed=seed)
    source = "prior" if cell_type is None else f"{cell_type} latent cloud"
    obs: dict[str, Any] = {"generated_from": np.full(n, source, dtype=object),
                           "library_size": library}
    if names is not None:
        obs[attrs.get("batch_key") or "batch"] = names
    if cell_type is not None:
        obs[attrs.get("label_key") or "cell_type"] = np.full(n, cell_type, dtype=object)
    uns = {"n": int(n), "seed": int(seed), "source": source,
           "likelihood": vae.config.likelihood}
    return cells_anndata(x, z, list(attrs["var_names"]), obs, uns)


def training_clouds(run: RunContext) -> dict[str, Any]:
    """Latent clouds per label of the run's training cells (`attrs["label_key"]`)."""
    key = run.attrs.get("label_key")
    train = run.train
    if not key or train is None or key not in train.metadata:
        raise ConfigError("cell_type needs the run's training cells and their labels: fit "
                          "with -o label_key=COLUMN on data betavae can load again (a model "
                          "saved by bsc.tl.fit keeps its clouds: use bsc.tl.generate).")
    run.model.check_input(train)  # loaded again from its source: it may have changed since
    mu, _ = bv.encode(run.model, train)
    return label_clouds(mu, np.asarray(train.metadata[key], dtype=object).astype(str))


def generate_cells(run: RunContext, samples: GeneratedSamples, *, batch: str | None = None,
                   cell_type: str | None = None) -> CandidateReport:
    """`betavae generate` for single-cell runs: `cells(...)` seeded with `run.seed`,
    written as `generated.h5ad` into `run.out_dir`, with a summary. `cell_type` draws
    around that label's latent cloud in the training cells."""
    clouds = None if cell_type is None else training_clouds(run)
    adata = cells(run.model, run.attrs, samples.n, batch=batch, cell_type=cell_type,
                  clouds=clouds, seed=run.seed)
    path = run.out_dir / "generated.h5ad"
    bv.atomic_write(path, adata.write_h5ad)
    x = adata.X
    nonzero = x.nnz if sp.issparse(x) else np.count_nonzero(x)
    summary = {"n_cells": adata.n_obs, "n_genes": adata.n_vars, "file": path.name,
               "source": adata.uns["betavae_generated"]["source"],
               "mean_library": float(adata.obs["library_size"].mean()),
               "zero_fraction": float(1 - nonzero / (x.shape[0] * x.shape[1]))}
    return CandidateReport(objects=adata, summary=summary, files=[str(path)])

"""Generated cells: latent draws (the prior, or a cell type's latent cloud), a batch and
a library size per cell, decoded to counts through the likelihood, as AnnData.

Library sizes are drawn from the log-normal fitted to the training cells of the same
batch, so generated cells have realistic depths; `obs` says how each cell was made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from betavae_core.errors import ConfigError
from betavae_core.posterior import batches as row_batches
from betavae_core.results import CandidateReport, GeneratedSamples

from .likelihoods import COUNT_LIKELIHOODS


def prior_latents(vae: Any, n: int, rng: np.random.Generator) -> np.ndarray:
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


@torch.no_grad()
def decode_cells(vae: Any, z: np.ndarray | torch.Tensor, covariates: torch.Tensor | None,
                 library: np.ndarray, seed: int = 0, params: torch.Tensor | None = None,
                 batch_size: int = 2048) -> tuple[Any, np.ndarray]:
    """One draw of counts per latent (sparse CSR for count likelihoods) and the means."""
    vae.eval()
    device = vae.device
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
    lib = torch.as_tensor(library, dtype=torch.float32).reshape(-1, 1)
    counts = vae.config.likelihood in COUNT_LIKELIHOODS
    draws, means = [], []
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        for sl in row_batches(len(z), batch_size):
            cov = None if covariates is None else covariates[sl].to(device)
            out = (params[sl].to(device) if params is not None
                   else vae.decoder(z[sl].to(device), cov, None))
            dist = vae.likelihood.distribution(out, {"library": lib[sl].to(device)})
            x = dist.sample().cpu().numpy()
            draws.append(sp.csr_matrix(x.astype(np.float32)) if counts else x)
            means.append(dist.mean.cpu().numpy())
    x_all = sp.vstack(draws).tocsr() if counts else np.concatenate(draws)
    return x_all, np.concatenate(means)


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


def generate_cells(samples: GeneratedSamples, out_dir: Path, **options: Any) -> CandidateReport:
    """`betavae generate` for single-cell runs: prior draws decoded with library sizes
    drawn per batch, written as `generated.h5ad` with a summary."""
    unknown = set(options) - {"batch"}
    if unknown:
        raise ConfigError(f"unknown generator options {sorted(unknown)}; cells takes 'batch'.")
    attrs, vae, n = samples.attrs, samples.model, len(samples.z)
    rng = np.random.default_rng(int(torch.initial_seed()) % (2**32))
    batches = list(attrs.get("batches") or [])
    if samples.covariates is not None and options.get("batch") is None:
        names = np.array([batches[i] for i in samples.covariates.argmax(dim=1).tolist()],
                         dtype=object) if batches else None
        cov = samples.covariates
    else:
        names = choose_batches(batches, options.get("batch"), None, n, rng)
        cov = batch_one_hot(batches, names, n)
    params = None if (cov is not None and samples.covariates is None) else samples.params
    library = draw_library(attrs["library_log"], names, n, rng)
    x, _ = decode_cells(vae, samples.z, cov, library, params=params)
    obs: dict[str, Any] = {"generated_from": np.full(n, "prior", dtype=object),
                           "library_size": library}
    if names is not None:
        obs[attrs.get("batch_key") or "batch"] = names
    adata = cells_anndata(x, samples.z.numpy(), list(attrs["var_names"]), obs,
                          {"n": n, "source": "prior"})
    path = Path(out_dir) / "generated.h5ad"
    adata.write_h5ad(path)
    summary = {"n_cells": n, "n_genes": adata.n_vars, "file": path.name,
               "mean_library": float(library.mean()),
               "zero_fraction": float(1 - (x.nnz if sp.issparse(x) else np.count_nonzero(x))
                                      / (x.shape[0] * x.shape[1]))}
    return CandidateReport(objects=adata, summary=summary, files=[str(path)])

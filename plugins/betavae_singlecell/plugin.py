"""The hooks betavae_singlecell implements: the entry point `singlecell` points here.

Everything the plugin registers is declared in this one module, with lazy callables, so
`betavae --help`, `plugins` and `datasets` import neither torch nor scanpy. It also holds
the training settings the domain suggests (`training_defaults`), which `tl.fit`, the
`expression` loader and the named datasets share.
"""

from __future__ import annotations

import math
from typing import Any

import betavae_core as bv

bv.requires("scanpy", "anndata", "h5py", "igraph", "leidenalg", "sklearn", extra="singlecell")

DOMAIN = "singlecell"
PKG = "betavae_singlecell"

# What a single-cell fit uses unless told otherwise: about `DEFAULT_STEPS` minibatches of
# 128 cells whatever the number of cells (`default_epochs`), β ramped from 0 over the whole
# fit to 0.25 (where it ends: a looser bottleneck than β = 1 keeps more of what separates
# cell types), the last epoch's weights, and 20 latent dimensions. Chosen by the worst
# case over four sets (PBMC, CEL-seq2 + Drop-seq, Baron, Paul15) against scVI and 50-PC
# PCA: benchmarks/singlecell_clustering.py. The epochs depend on the number of cells, so
# `training_defaults` adds them (and the warm-up) per data set.
TRAINING_DEFAULTS: dict[str, Any] = {
    "schedule": "warmup", "keep": "last", "patience": 0, "batch_size": 128, "latent_dim": 20,
    "beta": 0.25,
}
WARMUP_SHARE = 1.0  # with the default β: it reaches 0.25 at the last epoch
GIVEN_BETA_WARMUP_SHARE = 0.25  # with a β the user chose: reached after a quarter, then held
DEFAULT_STEPS = 3000
# With fewer than two batches, at most this many epochs: on all four sets the validation
# objective is lowest at epoch 64-86 and a small set trained for 3,000 minibatches only
# overfits past it (Baron's 375 epochs: +6.7 %; a 274-cell reference's 1,500: +33 %),
# which lowers Baron's clustering and spoils mapping a query onto the model. With two or
# more batches the long fit is kept: removing batch from the latent space goes on long
# after the reconstruction's optimum (CellBench's iLISI 0.14 at 100 epochs, 0.69 at 750).
ONE_BATCH_MAX_EPOCHS = 100
VAL_FRACTION = 0.1  # the core's default share of cells held out (not trained on)

# `expression_mlp` options and their defaults (read by `architecture.py` too).
ARCHITECTURE_OPTIONS: dict[str, Any] = {
    "hidden": [128], "dropout": 0.1, "normalise_input": "auto", "norm": "auto",
    "covariate_fill": [], "query_columns": 0,
}
# `expression` loader options: conversion to DomainData, then the format readers' own
# (backed for h5ad; orientation, delimiter, obs for count tables).
LOADER_OPTIONS: dict[str, Any] = {
    "layer": None, "batch_key": None, "label_key": None, "likelihood": None, "zeros": "drop",
    "backed": False, "orientation": None, "delimiter": None, "obs": None,
    "categorical_covariate_keys": None, "continuous_covariate_keys": None,
}
SYNTHETIC_OPTIONS: dict[str, Any] = {
    "n_cells": 2000, "n_genes": 500, "n_types": 5, "n_batches": 2, "batch_effect": 0.5,
    "seed": 0, "batch_key": "batch",
}
EVALUATION_OPTIONS: dict[str, dict[str, Any]] = {
    "singlecell_latent": {"label_key": None, "batch_key": None, "n_pcs": 50,
                          "max_cells": 10000, "silhouette_cells": 5000, "n_neighbors": 30,
                          "leiden": None},
    "singlecell_heldout": {"n_samples": 20, "max_cells": None, "batch_size": 256},
    "singlecell_generated": {"max_cells": 5000, "batch_size": 1024},
}
GENERATOR_OPTIONS: dict[str, Any] = {"batch": None, "cell_type": None}


def default_epochs(n_cells: int, batch_size: int = 128, steps: int = DEFAULT_STEPS,
                   val_fraction: float = VAL_FRACTION, n_batches: int = 1) -> int:
    """Epochs that make about `steps` minibatches of `batch_size` over the cells that
    train (all but `val_fraction`): the same number of updates for a small and a large
    set; with fewer than two batches at most `ONE_BATCH_MAX_EPOCHS` (see there)."""
    per_epoch = math.ceil(max(round(n_cells * (1 - val_fraction)), 1) / batch_size)
    epochs = int(max(1, round(steps / per_epoch)))
    return epochs if n_batches >= 2 else min(epochs, ONE_BATCH_MAX_EPOCHS)


def training_defaults(n_cells: int, epochs: int | None = None,
                      batch_size: int | None = None,
                      val_fraction: float = VAL_FRACTION,
                      n_batches: int = 1) -> dict[str, Any]:
    """The settings the domain suggests for `n_cells` cells in `n_batches` batches (keys
    in `bv.DEFAULTABLE`): `TRAINING_DEFAULTS` plus the epochs (`default_epochs`, unless
    given) and a warm-up over all of them (the default β is reached at the last epoch).
    For a β the user sets (`tl.fit(beta=...)`, `betavae train DATA.h5ad --beta 1`) the
    core takes the warm-up "warmup_epochs_given_beta" instead, a quarter of the epochs,
    so the fit then trains at that β: a β of 1 removes batch from the latent space as it
    did before these defaults."""
    size = TRAINING_DEFAULTS["batch_size"] if batch_size is None else int(batch_size)
    epochs = (default_epochs(n_cells, size, val_fraction=val_fraction, n_batches=n_batches)
              if epochs is None else int(epochs))
    return {**TRAINING_DEFAULTS, "epochs": epochs, "warmup_epochs": epochs * WARMUP_SHARE,
            "warmup_epochs_given_beta": epochs * GIVEN_BETA_WARMUP_SHARE}


def _lazy(target: str, **bound: Any) -> Any:
    """`bv.lazy` on a module of this package."""
    return bv.lazy(f"{PKG}.{target}", **bound)


@bv.hookimpl
def register_datasets(register):
    register(bv.Dataset(
        name="synthetic_counts", domain=DOMAIN, load=_lazy("datasets:load_synthetic"),
        options=dict(SYNTHETIC_OPTIONS), defaults=dict(TRAINING_DEFAULTS),
        help="Simulated UMI counts with known cell types and batches (NB, gene-wise "
             "batch effects).",
    ))
    register(bv.Dataset(
        name="pbmc68k_reduced", domain=DOMAIN, load=_lazy("datasets:load_pbmc68k_reduced"),
        defaults=dict(TRAINING_DEFAULTS),
        help="scanpy's bundled 700 PBMCs, log1p-normalised (Gaussian likelihood).",
    ))


@bv.hookimpl
def register_loaders(register):
    register(bv.Loader(
        name="expression", domain=DOMAIN, claims=_lazy("loaders:claims_expression"),
        load=_lazy("loaders:load_expression"), options=dict(LOADER_OPTIONS),
        defaults=dict(TRAINING_DEFAULTS),
        help="Cells x genes: .h5ad (-o backed=true), 10x .h5 or mtx folder, CSV/TSV "
             "(-o orientation=genes_by_cells), plain HDF5 X/Y; -o layer, batch_key, "
             "label_key, categorical_covariate_keys, continuous_covariate_keys.",
    ))


LIKELIHOOD_HELP = {
    "nb": "Negative binomial with a learned dispersion per gene and a library-size offset.",
    "zinb": "NB plus a decoded per-cell, per-gene probability of an extra zero.",
    "poisson": "Poisson with a library-size offset: no overdispersion (baseline).",
}
LIKELIHOOD_CLASSES = {"nb": "NegativeBinomial", "zinb": "ZeroInflatedNB", "poisson": "Poisson"}


@bv.hookimpl
def register_likelihoods(register):
    for name, cls in LIKELIHOOD_CLASSES.items():
        register(bv.LikelihoodSpec(name=name, domain=DOMAIN, build=_lazy(f"likelihoods:{cls}"),
                                   help=LIKELIHOOD_HELP[name]))


@bv.hookimpl
def register_architectures(register):
    register(bv.Architecture(
        name="expression_mlp", domain=DOMAIN, build=_lazy("architecture:build_expression_mlp"),
        options=dict(ARCHITECTURE_OPTIONS),
        help="MLP on log1p counts with the batch given to every layer (hidden, dropout, "
             "normalise_input, norm).",
    ))


EVALUATION_HELP = {
    "singlecell_latent": "cell-type ARI/NMI/silhouette and batch ASW/iLISI of the latent "
                         "means, beside a 50-PC PCA of log-normalised counts",
    "singlecell_heldout": "held-out rate, distortion, −ELBO and importance-weighted "
                          "−log p(x) per cell",
    "singlecell_generated": "prior draws with real batches and library sizes against real "
                            "cells: per-gene mean, variance and zero-fraction agreement",
}


@bv.hookimpl
def register_evaluations(register):
    for name, options in EVALUATION_OPTIONS.items():
        register(bv.Evaluation(name=name, domain=DOMAIN, evaluate=_lazy(f"evaluations:{name}"),
                               options=dict(options), help=EVALUATION_HELP[name]))


@bv.hookimpl
def register_generators(register):
    # samples="none": the generator draws its own latents (the prior, or a cell type's
    # latent cloud), batches and library sizes, and decodes once with those library sizes;
    # the core prepares nothing that would be thrown away.
    register(bv.Generator(
        name="cells", domain=DOMAIN, generate=_lazy("generation:generate_cells"),
        samples="none", options=dict(GENERATOR_OPTIONS),
        help="Cells decoded from the prior (or a cell type's latent cloud) with library "
             "sizes per batch, as .h5ad (-g batch=NAME, -g cell_type=NAME).",
    ))

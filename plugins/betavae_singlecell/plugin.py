"""The hooks betavae_singlecell implements: the entry point `singlecell` points here."""

from __future__ import annotations

from betavae_core.hookspecs import hookimpl
from betavae_core.registry import Architecture, Dataset, Generator, LikelihoodSpec, Loader

from . import datasets, evaluations, generation, likelihoods
from .architecture import build_expression_mlp
from .conversion import DOMAIN


@hookimpl
def register_datasets(register):
    register(Dataset(
        name="synthetic_counts", domain=DOMAIN, load=datasets.load_synthetic,
        options={"n_cells": 2000, "n_genes": 500, "n_types": 5, "n_batches": 2,
                 "batch_effect": 0.5, "seed": 0, "batch_key": "batch"},
        help="Simulated UMI counts with known cell types and batches (NB, gene-wise "
             "batch effects).",
    ))
    register(Dataset(
        name="pbmc68k_reduced", domain=DOMAIN, load=datasets.load_pbmc68k_reduced,
        help="scanpy's bundled 700 PBMCs, log1p-normalised (Gaussian likelihood).",
    ))


@hookimpl
def register_loaders(register):
    register(Loader(
        name="expression", domain=DOMAIN, claims=datasets.claims_expression,
        load=datasets.load_expression,
        help="Cells x genes: .h5ad (-o backed=true), 10x .h5 or mtx folder, CSV/TSV "
             "(-o orientation=genes_by_cells), plain HDF5 X/Y; -o layer, batch_key, "
             "label_key.",
    ))


@hookimpl
def register_likelihoods(register):
    for name, cls in likelihoods.COUNT_LIKELIHOODS.items():
        register(LikelihoodSpec(name=name, domain=DOMAIN, build=cls,
                                help=(cls.__doc__ or "").splitlines()[0]))


@hookimpl
def register_architectures(register):
    register(Architecture(
        name="expression_mlp", domain=DOMAIN, build=build_expression_mlp,
        help="MLP on log1p counts with the batch given to every layer (hidden, dropout).",
    ))


@hookimpl
def register_evaluations(register):
    for record in evaluations.evaluations():
        register(record)


@hookimpl
def register_generators(register):
    register(Generator(
        name="cells", domain=DOMAIN, generate=generation.generate_cells,
        help="Cells decoded from the prior with library sizes per batch, as .h5ad "
             "(-g batch=NAME).",
    ))


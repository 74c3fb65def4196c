"""The hooks betavae_crystals implements: the entry point `crystals` points here."""

from __future__ import annotations

from betavae_core.hookspecs import hookimpl
from betavae_core.registry import (
    Architecture,
    Dataset,
    Evaluation,
    Generator,
    LikelihoodSpec,
    Loader,
)

from . import evaluations, generation, loaders, toy
from .architecture import build_crystal_mlp
from .crystal_data import ARCHITECTURE, DOMAIN, GENERATOR, LIKELIHOOD
from .likelihoods import CrystalLikelihood


@hookimpl
def register_datasets(register):
    register(Dataset(
        name="toy_perovskites", domain=DOMAIN, load=toy.load_toy_perovskites,
        options={"jitter": 0.02, "copies": 4, "seed": 0},
        help="Ideal cubic ABX3 perovskites built with pymatgen (tolerance factor as the "
             "property); no download.",
    ))


@hookimpl
def register_loaders(register):
    register(Loader(
        name="crystal_structures", domain=DOMAIN, claims=loaders.claims_structures,
        load=loaders.load_structures,
        help="Folder (or file) of CIF, POSCAR/CONTCAR/*.vasp or extended-XYZ crystals.",
    ))
    register(Loader(
        name="crystal_csv", domain=DOMAIN, claims=loaders.claims_csv, load=loaders.load_csv,
        help="CSV with a 'cif' column (numeric columns may be a property to learn).",
    ))
    register(Loader(
        name="crystal_ase_db", domain=DOMAIN, claims=loaders.claims_ase_db,
        load=loaders.load_ase_db, help="ASE SQLite database of periodic structures.",
    ))


@hookimpl
def register_likelihoods(register):
    register(LikelihoodSpec(
        name=LIKELIHOOD, domain=DOMAIN, build=CrystalLikelihood,
        help="Gaussian lattice, von Mises fractional coordinates, categorical species "
             "(+ property head).",
    ))


@hookimpl
def register_architectures(register):
    register(Architecture(
        name=ARCHITECTURE, domain=DOMAIN, build=build_crystal_mlp,
        help="MLP encoder/decoder for crystal tensors (hidden, default 512,256).",
    ))


@hookimpl
def register_evaluations(register):
    register(Evaluation(
        name="crystal_reconstruction", domain=DOMAIN, evaluate=evaluations.reconstruction,
        help="Held-out structures encoded and decoded: StructureMatcher match rate, RMSE.",
    ))
    register(Evaluation(
        name="crystal_generation", domain=DOMAIN, evaluate=evaluations.generation,
        help="Prior samples: validity, COV-R/COV-P, Wasserstein density / #elements.",
    ))


@hookimpl
def register_generators(register):
    register(Generator(
        name=GENERATOR, domain=DOMAIN, generate=generation.generate_crystals,
        help="Valid, unique, novel crystals as CIF + candidates.csv + report.json "
             "(relax=emt|chgnet, target=VALUE).",
    ))

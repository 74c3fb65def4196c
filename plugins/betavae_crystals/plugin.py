"""The hooks betavae_crystals implements: the entry point `crystals` points here.

Everything the plugin registers is described in this one module, with callables that
import their module on first use (`bv.lazy`), so listing plugins or datasets imports
neither torch nor pymatgen. The names of the records and the training settings crystals
need live here too, where the rest of the plugin imports them from.
"""

from __future__ import annotations

import betavae_core as bv

bv.requires("pymatgen", "ase", "smact", "matminer", "sklearn", extra="crystals")

DOMAIN = "crystals"
LIKELIHOOD = "crystal"
ARCHITECTURE = "crystal_mlp"
GENERATOR = "crystals"
PKG = "betavae_crystals"

#: What a crystals fit needs, whatever the source: a small beta (the species of every
#: site must be encoded, ~8 nats on Perov-5, which beta = 1 does not pay for), a latent
#: wide enough for them, and a couple of hundred epochs without early stopping (the best
#: epoch is still kept). The user's own flags win.
TRAINING_DEFAULTS = {"beta": 0.05, "latent_dim": 16, "epochs": 200, "patience": 0}

#: Options of every crystal loader (`-o key=value`); see `crystal_data.build_data`.
LOADER_OPTIONS = {"strict": False, "primitive": True, "max_sites": None, "property": None,
                  "like": None, "limit": None}

#: Options of the `crystals` generator (`-g key=value`); see `generation`.
GENERATOR_OPTIONS = {
    "latent": "posterior", "latent_components": 50, "decode": "mode", "keep": "novel",
    "training": None, "target": None, "target_steps": 200, "target_lr": 0.05,
    "prior_weight": 1.0, "relax": None, "relax_steps": 200, "fmax": 0.05, "symprec": 0.1,
    "workers": None, "reference": None,
}


@bv.hookimpl
def register_datasets(register: bv.Register) -> None:
    register(bv.Dataset(
        name="toy_perovskites", domain=DOMAIN,
        load=bv.lazy(f"{PKG}.datasets:load_toy_perovskites"),
        options={"jitter": 0.02, "copies": 4, "seed": 0}, defaults=dict(TRAINING_DEFAULTS),
        help="Ideal cubic ABX3 perovskites built with pymatgen (tolerance factor as the "
             "property); no download.",
    ))


@bv.hookimpl
def register_loaders(register: bv.Register) -> None:
    for name, kind, help_text in (
        ("crystal_structures", "structures",
         "Folder (or file) of CIF, POSCAR/CONTCAR/*.vasp or extended-XYZ crystals."),
        ("crystal_csv", "csv",
         "CSV with a 'cif' column (numeric columns may be a property to learn)."),
        ("crystal_ase_db", "ase_db", "ASE SQLite database of periodic structures."),
    ):
        register(bv.Loader(
            name=name, domain=DOMAIN, claims=bv.lazy(f"{PKG}.loaders:claims_{kind}"),
            load=bv.lazy(f"{PKG}.loaders:load_{kind}"), options=dict(LOADER_OPTIONS),
            defaults=dict(TRAINING_DEFAULTS), help=help_text,
        ))


@bv.hookimpl
def register_likelihoods(register: bv.Register) -> None:
    register(bv.LikelihoodSpec(
        name=LIKELIHOOD, domain=DOMAIN, build=bv.lazy(f"{PKG}.likelihoods:CrystalLikelihood"),
        options={"max_concentration": 1e4, "min_lattice_scale": 0.01, "property_hidden": 64,
                 "site_matching": "hungarian"},
        help="Gaussian lattice, von Mises fractional coordinates, categorical species "
             "(+ property head).",
    ))


@bv.hookimpl
def register_architectures(register: bv.Register) -> None:
    register(bv.Architecture(
        name=ARCHITECTURE, domain=DOMAIN,
        build=bv.lazy(f"{PKG}.architecture:build_crystal_mlp"),
        options={"hidden": [512, 256]},
        help="MLP encoder/decoder for crystal tensors (hidden, default 512,256).",
    ))


@bv.hookimpl
def register_evaluations(register: bv.Register) -> None:
    register(bv.Evaluation(
        name="crystal_reconstruction", domain=DOMAIN,
        evaluate=bv.lazy(f"{PKG}.evaluations:reconstruction"),
        help="Held-out structures encoded and decoded: StructureMatcher match rate, RMSE.",
    ))
    register(bv.Evaluation(
        name="crystal_generation", domain=DOMAIN,
        evaluate=bv.lazy(f"{PKG}.evaluations:generation"),
        options={"n_samples": 1000, "latent": "posterior", "latent_components": 50,
                 "n_coverage": None, "n_valid_samples": 1000, "struct_cutoff": 0.2,
                 "comp_cutoff": 4.0, "workers": None},
        help="Latent draws: validity, COV-R/COV-P, Wasserstein density / #elements.",
    ))


@bv.hookimpl
def register_generators(register: bv.Register) -> None:
    register(bv.Generator(
        name=GENERATOR, domain=DOMAIN, generate=bv.lazy(f"{PKG}.generation:generate_crystals"),
        samples="none", options=dict(GENERATOR_OPTIONS),
        help="Valid, unique, novel crystals as CIF + candidates.csv + report.json "
             "(relax=emt|chgnet with energy above hull and S.U.N., target=VALUE).",
    ))

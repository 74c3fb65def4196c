"""The hooks betavae_fields implements: the entry point `fields` points here."""

from __future__ import annotations

from functools import partial

from betavae_core.hookspecs import hookimpl
from betavae_core.registry import (
    Architecture,
    Dataset,
    Evaluation,
    Generator,
    LikelihoodSpec,
    Loader,
)

from . import datasets, evaluations, generation, likelihoods
from .architecture import build_lattice_conv

DOMAIN = datasets.DOMAIN


@hookimpl
def register_datasets(register):
    register(Dataset(
        name="ising2d", domain=DOMAIN, load=datasets.load_ising2d, has_factors=True,
        options={"L": 16, "t_min": 1.6, "t_max": 3.2, "n_temperatures": 21, "samples": 200,
                 "seed": 0},
        help="2D Ising spins from Monte Carlo (Wolff near Tc, Metropolis elsewhere).",
    ))
    register(Dataset(
        name="xy2d", domain=DOMAIN, load=datasets.load_xy2d, has_factors=True,
        options={"L": 16, "t_min": 0.4, "t_max": 1.6, "n_temperatures": 13, "samples": 200,
                 "seed": 0},
        help="2D XY angles from Monte Carlo (Metropolis + over-relaxation).",
    ))
    register(Dataset(
        name="phi4_2d", domain=DOMAIN, load=datasets.load_phi4_2d, has_factors=True,
        options={"L": 16, "k_min": 0.25, "k_max": 0.45, "n_kappas": 11, "samples": 200,
                 "lam": 1.0, "seed": 0},
        help="2D phi^4 scalar fields from Monte Carlo across the hopping parameter kappa.",
    ))


@hookimpl
def register_loaders(register):
    register(Loader(
        name="lattice_npz", domain=DOMAIN, claims=datasets.claims_lattice_npz,
        load=datasets.load_lattice_npz,
        help=".npz with configs (n, L, L) and temperature (or kappa) per configuration.",
    ))


@hookimpl
def register_likelihoods(register):
    register(LikelihoodSpec(
        name="spin", domain=DOMAIN, build=likelihoods.Spin,
        help="Independent Bernoulli per site on +-1 spins (factorised baseline).",
    ))
    register(LikelihoodSpec(
        name="spin_multiscale", domain=DOMAIN, build=likelihoods.MultiscaleSpin,
        help="+-1 spins drawn coarse to fine with learned couplings (correlated sites).",
    ))
    register(LikelihoodSpec(
        name="von_mises", domain=DOMAIN, build=likelihoods.VonMises,
        help="Von Mises per site, for angles (XY model).",
    ))


@hookimpl
def register_architectures(register):
    register(Architecture(
        name="lattice_conv", domain=DOMAIN, build=build_lattice_conv,
        help="Convolutions with periodic padding for L x L fields (channels, hidden).",
    ))
    register(Architecture(
        name="lattice_conv_angles", domain=DOMAIN,
        build=partial(build_lattice_conv, embedding="circle"),
        help="lattice_conv that reads angles as (cos, sin).",
    ))


@hookimpl
def register_evaluations(register):
    register(Evaluation(
        name="order_parameter", domain=DOMAIN, evaluate=evaluations.order_parameter,
        requires_factors=True,
        help="Correlation of each latent with temperature, energy, m and |m| (and PCA's).",
    ))
    register(Evaluation(
        name="critical_point", domain=DOMAIN, evaluate=evaluations.critical_point,
        help="Critical point from the latent space alone vs PCA (and the exact Tc).",
    ))
    register(Evaluation(
        name="generated_physics", domain=DOMAIN, evaluate=evaluations.generated_physics,
        help="Energy and |m| of configurations decoded around MC ones (Wasserstein).",
    ))


@hookimpl
def register_generators(register):
    register(Generator(
        name="lattice", domain=DOMAIN, generate=generation.generate_lattice,
        help="Configurations from the prior or at a chosen temperature, with physics.",
    ))

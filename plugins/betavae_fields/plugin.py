"""The hooks betavae_fields implements: the entry point `fields` points here.

Everything the plugin offers is registered in this one module. Records carry lazy
callables, so loading the plugin (for `betavae --help` too) imports neither torch nor
numpy: each module is imported on the first call of one of its functions.
"""

from __future__ import annotations

import betavae_core as bv

#: lattice_fcn's default conv dilations (a 15 x 15 patch): what runs saved before the
#: option existed were built with (`multisize.DILATIONS`).
LATTICE_FCN_DILATIONS = (1, 2, 4)

bv.requires("sklearn", extra="fields")  # PCA, the baseline the evaluations compare with

DOMAIN = "fields"
IMPL = "betavae_fields"

#: Training settings a lattice dataset suggests: what `benchmarks/fields_tc.py`,
#: `fields_generation.py` and `examples/fields_demo.py` train with. β = 1, two latents
#: (room for the order parameter and one more), a 16-channel periodic conv, 25 epochs
#: with early stopping off (the best epoch is kept). The likelihood and architecture
#: come with the data (`datasets.MODEL_DEFAULTS`: spin_multiscale for Ising, ...).
TRAINING_DEFAULTS = {
    "beta": 1.0, "latent_dim": 2, "architecture_options": {"channels": 16}, "epochs": 25,
    "patience": 0, "batch_size": 128,
}
CONV_OPTIONS = {"channels": 32, "hidden": 256}


def _suggested() -> dict:
    """A fresh copy of TRAINING_DEFAULTS for one record (its nested dict included)."""
    return {**TRAINING_DEFAULTS,
            "architecture_options": dict(TRAINING_DEFAULTS["architecture_options"])}


def _local_encoder() -> dict:
    """The suggestions for several sizes: lattice_fcn with a 5 x 5 receptive field (the
    latent's collapse Tc was 1.27 % from Onsager's with 15 x 15, 0.91 % with 7 x 7, 0.84 %
    with 5 x 5: benchmarks/README.md), so a feature is local at every L."""
    out = _suggested()
    out["architecture_options"]["dilations"] = [1, 1]
    return out


@bv.hookimpl
def register_datasets(register: bv.Register) -> None:
    register(bv.Dataset(
        name="ising2d", domain=DOMAIN, load=bv.lazy(f"{IMPL}.datasets:load_ising2d"),
        has_factors=True, defaults=_suggested(),
        options={"L": 16, "t_min": 1.6, "t_max": 3.2, "n_temperatures": 21, "samples": 200,
                 "seed": 0},
        help="2D Ising spins from Monte Carlo (Wolff near Tc, Metropolis elsewhere).",
    ))
    register(bv.Dataset(
        name="ising2d_sizes", domain=DOMAIN, load=bv.lazy(f"{IMPL}.datasets:load_ising2d_sizes"),
        has_factors=True, defaults=_local_encoder(),
        options={"sizes": "16,24,32", "t_min": 1.6, "t_max": 3.2, "n_temperatures": 21,
                 "samples": 200, "seed": 0},
        help="2D Ising spins of several sizes for one model (padded; lattice_fcn, "
             "spin_padded).",
    ))
    register(bv.Dataset(
        name="xy2d", domain=DOMAIN, load=bv.lazy(f"{IMPL}.datasets:load_xy2d"),
        has_factors=True, defaults=_suggested(),
        options={"L": 16, "t_min": 0.4, "t_max": 1.6, "n_temperatures": 13, "samples": 200,
                 "seed": 0},
        help="2D XY angles from Monte Carlo (Metropolis + over-relaxation, Wolff near T_BKT).",
    ))
    register(bv.Dataset(
        name="xy2d_tiled", domain=DOMAIN, load=bv.lazy(f"{IMPL}.bkt:load_xy2d_tiled"),
        has_factors=True, defaults=_suggested(),
        options={"L": 32, "sizes": "auto", "t_min": 0.4, "t_max": 1.6, "n_temperatures": 13,
                 "samples": 200, "seed": 0},
        help="xy2d of several sizes (auto: L/4, L/2, L) tiled up to side L, for one model "
             "that the bkt evaluation reads every size with.",
    ))
    register(bv.Dataset(
        name="phi4_2d", domain=DOMAIN, load=bv.lazy(f"{IMPL}.datasets:load_phi4_2d"),
        has_factors=True, defaults=_suggested(),
        options={"L": 16, "k_min": 0.25, "k_max": 0.45, "n_kappas": 11, "samples": 200,
                 "lam": 1.0, "seed": 0},
        help="2D phi^4 fields from Monte Carlo across kappa (Wolff embedding near kappa_c).",
    ))


@bv.hookimpl
def register_loaders(register: bv.Register) -> None:
    register(bv.Loader(
        name="lattice_npz", domain=DOMAIN, claims=bv.lazy(f"{IMPL}.loaders:claims_lattice_npz"),
        load=bv.lazy(f"{IMPL}.loaders:load_lattice_npz"),
        options={"model": "auto", "lam": 1.0}, defaults=_suggested(),
        help=".npz with configs (n, L, L) and temperature (or kappa) per configuration.",
    ))


@bv.hookimpl
def register_likelihoods(register: bv.Register) -> None:
    register(bv.LikelihoodSpec(
        name="spin", domain=DOMAIN, build=bv.lazy(f"{IMPL}.likelihoods:Spin"),
        help="Independent Bernoulli per site on +-1 spins (factorised baseline).",
    ))
    register(bv.LikelihoodSpec(
        name="spin_multiscale", domain=DOMAIN,
        build=bv.lazy(f"{IMPL}.likelihoods:MultiscaleSpin"), options={"kernel": 3, "levels": 2},
        help="+-1 spins drawn coarse to fine with learned couplings (correlated sites).",
    ))
    register(bv.LikelihoodSpec(
        name="spin_padded", domain=DOMAIN, build=bv.lazy(f"{IMPL}.multisize:PaddedSpin"),
        help="Factorised +-1 spins of several sizes padded with 0 (padding not scored).",
    ))
    register(bv.LikelihoodSpec(
        name="von_mises", domain=DOMAIN, build=bv.lazy(f"{IMPL}.likelihoods:VonMises"),
        help="Von Mises per site, for angles (XY model).",
    ))


@bv.hookimpl
def register_architectures(register: bv.Register) -> None:
    register(bv.Architecture(
        name="lattice_conv", domain=DOMAIN,
        build=bv.lazy(f"{IMPL}.architecture:build_lattice_conv"), options=CONV_OPTIONS,
        help="Convolutions with periodic padding for L x L fields (channels, hidden).",
    ))
    register(bv.Architecture(
        name="lattice_fcn", domain=DOMAIN,
        build=bv.lazy(f"{IMPL}.multisize:build_lattice_fcn"),
        options={"channels": 16, "hidden": 64, "head": "mlp",
                 "dilations": list(LATTICE_FCN_DILATIONS)},
        help="Fully convolutional, periodic, global pooling: one encoder for several L "
             "(padded spin items); head=linear makes mu affine in the site averages; "
             "dilations=1,1,1 sees 7 x 7 sites (1,2,4: 15 x 15; ising2d_sizes suggests 1,1).",
    ))
    register(bv.Architecture(
        name="lattice_conv_angles", domain=DOMAIN,
        build=bv.lazy(f"{IMPL}.architecture:build_lattice_conv", embedding="circle"),
        options=CONV_OPTIONS,
        help="lattice_conv that reads angles as (cos, sin).",
    ))


@bv.hookimpl
def register_evaluations(register: bv.Register) -> None:
    register(bv.Evaluation(
        name="order_parameter", domain=DOMAIN,
        evaluate=bv.lazy(f"{IMPL}.evaluations:order_parameter"), requires_factors=True,
        help="Correlation of each latent with temperature, energy, m and |m| (and PCA's).",
    ))
    register(bv.Evaluation(
        name="critical_point", domain=DOMAIN,
        evaluate=bv.lazy(f"{IMPL}.evaluations:critical_point"),
        applies=bv.lazy(f"{IMPL}.multisize:one_size"),
        help="Critical point from the latent space alone vs PCA (and the exact Tc).",
    ))
    register(bv.Evaluation(
        name="finite_size_scaling", domain=DOMAIN,
        evaluate=bv.lazy(f"{IMPL}.evaluations:finite_size_scaling"), requires_factors=True,
        applies=bv.lazy(f"{IMPL}.multisize:several_sizes"),
        help="Binder crossings and a (Tc, nu) collapse of the latent across lattice sizes, "
             "beside Monte Carlo |m|.",
    ))
    register(bv.Evaluation(
        name="bkt", domain=DOMAIN, evaluate=bv.lazy(f"{IMPL}.bkt:bkt"),
        applies=bv.lazy(f"{IMPL}.bkt:is_xy"),
        options={"sizes": "auto", "t_min": 0.8, "t_max": 1.1, "n_temperatures": 13,
                 "samples": 200, "seed": 1, "n_boot": 200, "readout": "decoded"},
        help="XY's T_BKT from the latent (eta = 1/4 across sizes, tiled to the model's L; "
             "sizes=auto: L/4, L/2, L) beside the helicity modulus' jump 2T/pi (Monte "
             "Carlo), log-extrapolated.",
    ))
    register(bv.Evaluation(
        name="generated_physics", domain=DOMAIN,
        evaluate=bv.lazy(f"{IMPL}.evaluations:generated_physics"), options={"controls": None},
        applies=bv.lazy(f"{IMPL}.multisize:one_size"),
        help="Energy and |m| of configurations decoded around MC ones (Wasserstein); "
             "controls=T1,T2,... (default: three per model).",
    ))


@bv.hookimpl
def register_generators(register: bv.Register) -> None:
    register(bv.Generator(
        name="lattice", domain=DOMAIN, generate=bv.lazy(f"{IMPL}.generation:generate_lattice"),
        samples="latents", options={"temperature": None, "kappa": None, "posterior": "sample"},
        help="Configurations from the prior, or at a chosen temperature (kappa for phi^4), "
             "with their physics; posterior=mean decodes at the encodings' means.",
    ))

"""The core's own plugin: what every domain can use. It registers through the same hooks
as any other plugin, with lazy callables, so loading it imports neither torch nor
matplotlib."""

from __future__ import annotations

from betavae_core.hookspecs import hookimpl
from betavae_core.lazy import lazy
from betavae_core.registry import (
    Architecture,
    Dataset,
    Evaluation,
    Generator,
    LikelihoodSpec,
    Loader,
)

IMPL = "betavae_core.default_plugins"


def is_image(data) -> bool:
    """Items are 2-D images when the data says so (`attrs["image"]`), not by shape alone:
    a (length, 4) one-hot sequence is 2-D too."""
    return bool(data.attrs.get("image")) and len(data.event_shape) == 2


@hookimpl
def register_datasets(register):
    register(Dataset(
        name="shapes", domain="shapes", load=lazy(f"{IMPL}.data:load_shapes"),
        has_factors=True, options={"n": 6000, "size": 28, "seed": 0},
        help="Procedural binary shapes (dSprites-style) with shape/scale/rotation/position.",
    ))
    register(Dataset(
        name="mixed_factors", domain="factors", load=lazy(f"{IMPL}.data:load_mixed_factors"),
        has_factors=True,
        options={"n": 4000, "n_factors": 4, "dim": 16, "noise": 0.05, "seed": 0},
        help="Independent uniform sources through a fixed nonlinear map (tabular).",
    ))


@hookimpl
def register_loaders(register):
    register(Loader(
        name="numpy", domain="array", claims=lazy(f"{IMPL}.data:claims_numpy"),
        load=lazy(f"{IMPL}.data:load_numpy"), options={"likelihood": "auto"},
        help=".npy array, or .npz with x (and optional factors, covariates); items on axis 0.",
    ))


@hookimpl
def register_likelihoods(register):
    register(LikelihoodSpec(
        name="gaussian", domain="*", build=lazy("betavae_core.likelihoods:Gaussian"),
        options={"scale": None},
        help="Gaussian per element; learned per-element scale, or fixed with scale=S.",
    ))
    register(LikelihoodSpec(
        name="bernoulli", domain="*", build=lazy("betavae_core.likelihoods:Bernoulli"),
        help="Bernoulli per element, for binary data (values 0 or 1).",
    ))


@hookimpl
def register_architectures(register):
    register(Architecture(
        name="mlp", domain="*", build=lazy("betavae_core.architectures:build_mlp"),
        options={"hidden": [256, 128]},
        help="Multilayer perceptron on flattened items (option hidden=256,128).",
    ))


@hookimpl
def register_evaluations(register):
    register(Evaluation(
        name="rate_distortion", domain="*", evaluate=lazy(f"{IMPL}.evaluations:rate_distortion"),
        help="Held-out rate, distortion, ELBO and KL per latent dimension.",
    ))
    register(Evaluation(
        name="posterior", domain="*", evaluate=lazy(f"{IMPL}.evaluations:posterior"),
        options={"threshold": 0.01},
        help="Active units, aggregate covariance, off-diagonal mass, TC and I(X;Z).",
    ))
    register(Evaluation(
        name="images", domain="*", evaluate=lazy(f"{IMPL}.evaluations:images"),
        applies=is_image, options={"n_show": 10},
        help="Reconstructions and latent traversals, for items that are 2-D images.",
    ))


@hookimpl
def register_generators(register):
    register(Generator(
        name="arrays", domain="*", generate=lazy(f"{IMPL}.generators:generate_arrays"),
        help="Decoded samples as .npy arrays with a summary (and a PNG for images).",
    ))

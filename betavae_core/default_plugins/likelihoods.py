"""Likelihoods every domain can use: Gaussian and Bernoulli."""

from betavae_core.hookspecs import hookimpl
from betavae_core.likelihoods import Bernoulli, Gaussian
from betavae_core.registry import LikelihoodSpec


@hookimpl
def register_likelihoods(register):
    register(LikelihoodSpec(
        name="gaussian", domain="*", build=Gaussian,
        help="Gaussian per element; learned per-element scale, or fixed with scale=S.",
    ))
    register(LikelihoodSpec(
        name="bernoulli", domain="*", build=Bernoulli,
        help="Bernoulli per element, for binary data (values 0 or 1).",
    ))

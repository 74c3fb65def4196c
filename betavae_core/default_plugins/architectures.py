"""The default encoder/decoder: a multilayer perceptron with optional gated skips."""

from betavae_core.architectures import build_mlp
from betavae_core.hookspecs import hookimpl
from betavae_core.registry import Architecture


@hookimpl
def register_architectures(register):
    register(Architecture(
        name="mlp", domain="*", build=build_mlp,
        help="Multilayer perceptron on flattened items (option hidden=256,128).",
    ))

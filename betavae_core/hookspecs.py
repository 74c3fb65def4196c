"""The plugin contract: every hook a betavae plugin may implement.

Each hook is called once, when the plugin registry is first needed, with one keyword
argument `register`: a function that takes one typed record (see `betavae_core.registry`)
and adds it under the plugin's name. A name that another plugin already registered is
an error naming both plugins. Records describe things without running them, so listing
plugins and datasets is cheap; the work happens when the core later calls the callable a
record carries. An exception raised there is re-raised as `PluginError` naming the plugin.

A plugin is a module (or object) with functions decorated by `betavae_core.hookimpl`,
exposed through the `betavae` entry-point group in its package metadata:

    [project.entry-points.betavae]
    mydomain = "betavae_mydomain.plugin"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("betavae")
hookimpl = pluggy.HookimplMarker("betavae")

Register = Callable[[Any], None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register named datasets that need no file: `register(Dataset(...))`.

    `Dataset.load(**options)` must return a `DomainData`; `Dataset.options` holds the
    keyword options and their defaults (users set them with `--option key=value`).
    Set `has_factors=True` when the data carries ground-truth factors. Loading must not
    download anything; generated data should be deterministic in a `seed` option.
    """


@hookspec
def register_loaders(register: Register) -> None:
    """Register readers of files or folders: `register(Loader(...))`.

    `Loader.claims(path)` is called for every loader when a user passes a path; it must
    decide by content (peek at the header, not only the extension), be cheap, and return
    False rather than raise. When several loaders claim one path, the user is asked to
    choose with `--loader NAME`. `Loader.load(path, **options)` returns a `DomainData`
    and raises `DataError` naming the file, row or column that is wrong.
    """


@hookspec
def register_likelihoods(register: Register) -> None:
    """Register decoder likelihoods p(x | z): `register(LikelihoodSpec(...))`.

    `LikelihoodSpec.build(event_shape, **options)` returns a `betavae_core.Likelihood`
    (a `torch.nn.Module`) that says how many decoder outputs it needs per element of an
    item (`params_per_element`), checks data against its support (`check_data`, raising
    `DataError` naming the first bad item), and turns decoder output into a
    `torch.distributions`-style object (`distribution(params, context)`) with
    `log_prob(x)` (one value per item, in nats), `sample()` and `mean`.
    """


@hookspec
def register_evaluations(register: Register) -> None:
    """Register metrics on a fitted model and data: `register(Evaluation(...))`.

    `Evaluation.evaluate(model, data, **options)` is called by `betavae evaluate` for
    every evaluation whose `applies_to(data)` is true (domain "*" means any domain). It
    receives the fitted `BetaVAE` (in eval mode) and the held-out `DomainData`, and
    returns an `EvaluationResult`: JSON-ready `metrics` and optional matplotlib
    `figures` (saved as PNG by the core; the plugin does not write files).
    """


@hookspec
def register_architectures(register: Register) -> None:
    """Register encoder/decoder architectures: `register(Architecture(...))`.

    `Architecture.build(request)` receives an `ArchitectureRequest` (event shape, latent
    size, decoder outputs per element, covariate size, options) and returns
    `(encoder, decoder)`: the encoder maps `(x, covariates)` to an `EncoderOutput`
    (mu, logvar and hidden features for optional skip connections); the decoder maps
    `(z, covariates, skip)` to likelihood parameters of shape
    (n, params_per_element, *event_shape).
    """


@hookspec
def register_generators(register: Register) -> None:
    """Register candidate generators: `register(Generator(...))`.

    `Generator.generate(samples, out_dir, **options)` receives `GeneratedSamples`
    (latent codes, decoded means and samples, the training data's attributes) from
    `betavae generate`, turns them into domain objects, checks their validity, writes
    them as new files into `out_dir`, and returns a `CandidateReport` whose `summary`
    gives the validity funnel.
    """

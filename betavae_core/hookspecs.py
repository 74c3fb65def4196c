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

Loading a plugin must be cheap: the module the entry point names is imported for
`betavae --help` too. It imports only `betavae_core` (which imports no torch until a name
that needs it is used), checks its optional dependencies with `betavae_core.requires`
(a missing one makes the plugin unavailable with the install command), and gives records
callables made with `betavae_core.lazy("package.module:function")`, which import their
module on the first call. Every record declares its keyword `options`; the core refuses
any other with a `ConfigError` listing the valid ones. A plugin imports only names that
`betavae_core` exports.
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
    `Dataset.defaults` suggests training settings (β, latent size, epochs, patience,
    schedule, likelihood, architecture, ...); a loader may also set data-dependent ones
    on `DomainData.defaults`. The fit uses them wherever the user set nothing.
    """


@hookspec
def register_loaders(register: Register) -> None:
    """Register readers of files or folders: `register(Loader(...))`.

    `Loader.claims(path)` is called for every loader when a user passes a path; it must
    decide by content (peek at the header, not only the extension), be cheap, and return
    False rather than raise. When several loaders claim one path, the user is asked to
    choose with `--loader NAME`. `Loader.load(path, **options)` returns a `DomainData`
    and raises `DataError` naming the file, row or column that is wrong. Only the options
    the user set are passed; `Loader.defaults` suggests training settings, as above.
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

    `Evaluation.evaluate(run, **options)` is called by `betavae evaluate` for every
    evaluation that applies to the held-out data (the record's domain is "*" or the
    data's; `requires_factors`; the record's own `applies(data)`). `run` is a
    `RunContext`: the fitted `BetaVAE` in eval mode (`run.model`), the data to evaluate
    on (`run.heldout`), the training split (`run.train`, loaded on first use; None when
    unknown), the run's config, attrs, covariates and a seed. Options come from
    `--eval-option NAME.KEY=VALUE`. It returns an `EvaluationResult`: JSON-ready
    `metrics` and optional matplotlib `figures` (saved as PNG by the core; the plugin
    does not write files). Batched passes go through `betavae_core.encode`, `decode`,
    `reconstruct` and `evaluate_terms`.
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

    `Generator.generate(run, samples, **options)` is called by `betavae generate`. `run`
    is a `RunContext` (model, config, training split, attrs, seed; `run.out_dir` is the
    new folder to write into). `samples` is what the record's `samples` mode asks the
    core to prepare: "decoded" (prior draws `z` with their decoded `mean`, `sample` and
    raw `params`), "latents" (`z` only: the generator decodes them its own way, with
    `betavae_core.decode`) or "none" (only `samples.n`: the generator draws its own
    latents). The core never decodes what a generator would discard. The generator turns
    the samples into domain objects, checks their validity, writes them as new files and
    returns a `CandidateReport` whose `summary` gives the validity funnel.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the `betavae` command line: `@cli.command()` on `cli`, a
    `click.Group`.

    Called once, the first time the command line lists or looks up a command (not for
    `betavae --version`). Import heavy modules inside the command's function, not here.
    A name the core or another plugin already uses is an error naming both.
    """

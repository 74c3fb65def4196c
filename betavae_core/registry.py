"""Typed registration records and the registry that holds what plugins register.

A record is small and describes a thing without running it, so `betavae plugins` and
`betavae datasets` can list everything cheaply. Each record carries the callable that
does the work; the registry adds the name of the plugin that registered it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, NotRegisteredError, PluginError

if TYPE_CHECKING:
    from .data import DomainData

# Training settings a dataset or loader may suggest (`defaults=`); the fit uses each one
# the user did not set, and config.json records which values came from the domain.
DEFAULTABLE = frozenset({
    "beta", "latent_dim", "likelihood", "likelihood_options", "architecture",
    "architecture_options", "epochs", "patience", "keep", "batch_size", "lr",
    "val_fraction", "schedule", "warmup_epochs", "free_bits", "capacity", "prior",
    "prior_options", "warmup_epochs_given_beta",
})
# "warmup_epochs_given_beta": the warm-up to use instead of the suggested "warmup_epochs"
# when the user sets beta (and no warm-up): a warm-up that ramps to the domain's own beta
# over the whole fit would otherwise reach the user's beta only at the last epoch.

# What the core hands a generator (`Generator.samples`): prior draws decoded by the
# core, prior draws only (the generator decodes them its own way), or nothing but the
# number asked for (the generator draws its own latents).
SAMPLE_MODES = ("decoded", "latents", "none")


@dataclass(frozen=True)
class Dataset:
    """A named dataset a plugin can produce without any file (generated or shipped).

    `load(**options)` returns a `DomainData`; `options` lists the keyword options with
    their defaults (shown by `betavae datasets`, settable with `--option key=value`;
    the defaults are passed too). `defaults` suggests training settings (keys in
    `DEFAULTABLE`, e.g. {"beta": 0.05, "epochs": 200}) for the fit to use where the user
    set none.
    """

    name: str
    domain: str
    help: str
    load: Callable[..., DomainData]
    has_factors: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""


@dataclass(frozen=True)
class Loader:
    """A reader for files or folders on disk.

    `claims(path)` decides by content (not only the extension) whether this loader can
    read `path`; it must be cheap and must not raise. `load(path, **options)` returns a
    `DomainData`. `options` declares the keyword options and their defaults (only those
    the user sets are passed); `defaults` suggests training settings, as on `Dataset`.
    """

    name: str
    domain: str
    help: str
    claims: Callable[[Path], bool]
    load: Callable[..., DomainData]
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""


@dataclass(frozen=True)
class LikelihoodSpec:
    """A decoder likelihood p(x | z): `build(event_shape, **options)` returns a `Likelihood`.

    `options` declares the keyword options of `build` and their defaults.
    """

    name: str
    domain: str
    help: str
    build: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""


@dataclass(frozen=True)
class Evaluation:
    """A metric on a fitted model and data.

    `evaluate(run: RunContext, **options)` returns an `EvaluationResult`; `run.heldout`
    is the data to evaluate on. The record's `applies(data)` callable, if given, narrows
    when it runs; `applies_to(data)` is the core's test (domain "*" or the data's own,
    factors present if `requires_factors`, then `applies`). `options` declares the
    keyword options and their defaults (`betavae evaluate --eval-option NAME.KEY=VALUE`).
    """

    name: str
    domain: str
    help: str
    evaluate: Callable[..., Any]
    requires_factors: bool = False
    applies: Callable[[DomainData], bool] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""

    def applies_to(self, data: DomainData) -> bool:
        if self.domain not in ("*", data.domain):
            return False
        if self.requires_factors and not data.has_factors:
            return False
        return True if self.applies is None else bool(self.applies(data))


@dataclass(frozen=True)
class Architecture:
    """An encoder/decoder pair: `build(request: ArchitectureRequest)` returns both modules.

    `options` declares the keys of `request.options` and their defaults.
    """

    name: str
    domain: str
    help: str
    build: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""


@dataclass(frozen=True)
class Generator:
    """Turns decoded samples into domain objects with a validity report.

    `generate(run: RunContext, samples: GeneratedSamples, **options)` writes its files
    into `run.out_dir` (new files only) and returns a `CandidateReport`. `samples` says
    what the core prepares (`SAMPLE_MODES`): "decoded" (prior draws and their decoded
    mean, sample and parameters), "latents" (prior draws only: the generator decodes) or
    "none" (only `samples.n`: the generator draws its own latents). `options` declares
    the keyword options and their defaults (`-g KEY=VALUE`).
    """

    name: str
    domain: str
    help: str
    generate: Callable[..., Any]
    samples: str = "decoded"
    options: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""


KINDS: dict[str, type] = {
    "datasets": Dataset,
    "loaders": Loader,
    "likelihoods": LikelihoodSpec,
    "evaluations": Evaluation,
    "architectures": Architecture,
    "generators": Generator,
}


class Registry:
    """Records of one kind, keyed by name; a second record with a taken name is an error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.record_type = KINDS[kind]
        self._items: dict[str, Any] = {}

    def add(self, record: Any, plugin: str) -> None:
        if not isinstance(record, self.record_type):
            raise PluginError(
                f"plugin {plugin!r} registered {record!r} as one of the {self.kind}; "
                f"expected a betavae_core.{self.record_type.__name__}.",
                plugin=plugin,
            )
        if not record.name or not isinstance(record.name, str):
            raise PluginError(f"plugin {plugin!r} registered one of the {self.kind} "
                              f"without a name.", plugin=plugin)
        _check_record(record, self.kind, plugin)
        existing = self._items.get(record.name)
        if existing is not None:
            raise PluginError(
                f"two plugins register {self.kind[:-1]} {record.name!r}: "
                f"{existing.plugin!r} and {plugin!r}. Uninstall one, or choose which load "
                f"with BETAVAE_LOAD_PLUGINS.",
                plugin=plugin,
            )
        self._items[record.name] = _with_plugin(record, plugin)

    def get(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            available = ", ".join(sorted(self._items)) or "none"
            raise NotRegisteredError(
                f"no {self.kind[:-1]} named {name!r}; available: {available}. "
                f"`betavae plugins` lists what is installed."
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def by_plugin(self, plugin: str) -> list[str]:
        return sorted(n for n, r in self._items.items() if r.plugin == plugin)


def _with_plugin(record: Any, plugin: str) -> Any:
    return replace(record, plugin=plugin)


def _check_record(record: Any, kind: str, plugin: str) -> None:
    """Refuse declarations the core could not honour, naming the plugin and record."""
    where = f"plugin {plugin!r}: {kind[:-1]} {record.name!r}"
    unknown = sorted(set(getattr(record, "defaults", {})) - DEFAULTABLE)
    if unknown:
        raise PluginError(f"{where} suggests unknown training defaults {unknown}; valid: "
                          f"{sorted(DEFAULTABLE)}.", plugin=plugin)
    mode = getattr(record, "samples", "decoded")
    if mode not in SAMPLE_MODES:
        raise PluginError(f"{where} has samples={mode!r}; expected one of {SAMPLE_MODES}.",
                          plugin=plugin)


def check_options(record: Any, given: dict[str, Any], what: str) -> None:
    """Raise `ConfigError` when `given` holds an option `record` does not declare."""
    unknown = sorted(set(given) - set(record.options))
    if unknown:
        valid = ", ".join(f"{k} (default {v!r})" for k, v in record.options.items()) or "none"
        raise ConfigError(f"{what} {record.name!r} has no option(s) {unknown}; its options "
                          f"are: {valid}.")

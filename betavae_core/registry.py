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

from .errors import NotRegisteredError, PluginError

if TYPE_CHECKING:
    from .data import DomainData


@dataclass(frozen=True)
class Dataset:
    """A named dataset a plugin can produce without any file (generated or shipped).

    `load(**options)` returns a `DomainData`; `options` lists the keyword options with
    their defaults (shown by `betavae datasets`, settable with `--option key=value`).
    """

    name: str
    domain: str
    help: str
    load: Callable[..., DomainData]
    has_factors: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""


@dataclass(frozen=True)
class Loader:
    """A reader for files or folders on disk.

    `claims(path)` decides by content (not only the extension) whether this loader can
    read `path`; it must be cheap and must not raise. `load(path, **options)` returns a
    `DomainData`.
    """

    name: str
    domain: str
    help: str
    claims: Callable[[Path], bool]
    load: Callable[..., DomainData]
    plugin: str = ""


@dataclass(frozen=True)
class LikelihoodSpec:
    """A decoder likelihood p(x | z): `build(event_shape, **options)` returns a `Likelihood`."""

    name: str
    domain: str
    help: str
    build: Callable[..., Any]
    plugin: str = ""


@dataclass(frozen=True)
class Evaluation:
    """A metric on a fitted model and data.

    `evaluate(model, data, **options)` returns an `EvaluationResult`. `applies(data)`
    says whether it makes sense for this data (default: when `domain` is "*" or equals
    the data's domain, and the data has factors if `requires_factors`).
    """

    name: str
    domain: str
    help: str
    evaluate: Callable[..., Any]
    requires_factors: bool = False
    applies: Callable[[DomainData], bool] | None = None
    plugin: str = ""

    def applies_to(self, data: DomainData) -> bool:
        if self.domain not in ("*", data.domain):
            return False
        if self.requires_factors and not data.has_factors:
            return False
        return True if self.applies is None else bool(self.applies(data))


@dataclass(frozen=True)
class Architecture:
    """An encoder/decoder pair: `build(request: ArchitectureRequest)` returns both modules."""

    name: str
    domain: str
    help: str
    build: Callable[..., Any]
    plugin: str = ""


@dataclass(frozen=True)
class Generator:
    """Turns decoded samples into domain objects with a validity report.

    `generate(samples: GeneratedSamples, out_dir: Path, **options)` writes its files
    into `out_dir` (new files only) and returns a `CandidateReport`.
    """

    name: str
    domain: str
    help: str
    generate: Callable[..., Any]
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

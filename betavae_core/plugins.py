"""Plugin loading: one path for the core's defaults and every installed plugin.

Plugins are found through the `betavae` entry-point group and loaded lazily, the first
time a registry is needed. Each one loads inside its own try/except: a plugin that
fails to import or to register is listed as unavailable with the reason, and everything
else keeps working. Environment switches:

- `BETAVAE_LOAD_PLUGINS`: comma-separated entry-point names to load (empty: none).
- `BETAVAE_STRICT_PLUGINS=1`: re-raise the first plugin failure (for plugin authors).
- `BETAVAE_TRACE_PLUGINS=1`: print every hook call to stderr.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import BetaVAEError, MissingDependencyError, PluginError
from .registry import KINDS, Registry

ENTRY_POINT_GROUP = "betavae"
CORE_PLUGIN = "betavae_core"
DEFAULT_PLUGIN_MODULES = ("betavae_core.default_plugins.plugin",)


@dataclass
class PluginInfo:
    """What `betavae plugins` shows for one plugin."""

    name: str
    version: str | None
    module: str
    status: str = "ok"
    reason: str | None = None
    hooks: list[str] = field(default_factory=list)
    registers: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "reason": self.reason,
            "hooks": self.hooks,
            "registers": self.registers,
        }


class PluginHost:
    """The pluggy manager plus the registries filled from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        self.strict = os.environ.get("BETAVAE_STRICT_PLUGINS", "") not in ("", "0")
        self.trace = os.environ.get("BETAVAE_TRACE_PLUGINS", "") not in ("", "0")

    def load_all(self) -> None:
        self._load_core()
        for ep in _entry_points():
            self._load_entry_point(ep)

    def _load_core(self) -> None:
        import importlib

        modules = [importlib.import_module(name) for name in DEFAULT_PLUGIN_MODULES]
        info = PluginInfo(CORE_PLUGIN, _version("betavae"), "betavae_core.default_plugins")
        self.infos[CORE_PLUGIN] = info
        for module in modules:
            self.pm.register(module, name=module.__name__)
        self._collect(CORE_PLUGIN, modules, info)

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        version = dist.version if dist is not None else None
        info = PluginInfo(ep.name, version, ep.value)
        if ep.name in self.infos:
            info.status, info.reason = "unavailable", (
                f"another plugin is already loaded under the name {ep.name!r} "
                f"(from {self.infos[ep.name].module})"
            )
            self.infos[ep.name + f" ({ep.value})"] = info
            return
        self.infos[ep.name] = info
        try:
            plugin = ep.load()
            self.pm.register(plugin, name=ep.name)
            self.pm.check_pending()  # a hook name that matches no spec (a typo) fails here
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:  # isolation (sys.exit included): the CLI must survive
            reason = (str(exc) if isinstance(exc, PluginError)  # e.g. a missing extra
                      else f"failed to load: {type(exc).__name__}: {exc}")
            self._fail(info, reason, exc, {ep.name})
            return
        self._collect(ep.name, [plugin], info)

    def register_object(self, plugin: Any, name: str, version: str | None = None) -> PluginInfo:
        """Register an already-imported plugin object (tests, notebooks, scripts)."""
        info = PluginInfo(name, version, getattr(plugin, "__name__", repr(plugin)))
        self.infos[name] = info
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:
            self._fail(info, f"failed to load: {type(exc).__name__}: {exc}", exc, {name})
            return info
        self._collect(name, [plugin], info)
        return info

    def _collect(self, plugin_name: str, objects: list[Any], info: PluginInfo) -> None:
        """Call every register hook of one plugin; commit its records only if all succeed."""
        registered = {self.pm.get_name(obj) for obj in objects}
        pending: list[tuple[str, Any]] = []
        hook_names: set[str] = set()
        try:
            for kind in KINDS:
                hook_name = f"register_{kind}"
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name not in registered:
                        continue
                    hook_names.add(hook_name)
                    if self.trace:
                        print(f"betavae: {plugin_name}.{hook_name}()", file=sys.stderr)
                    impl.function(register=lambda rec, _k=kind: pending.append((_k, rec)))
            staged = {kind: Registry(kind) for kind in KINDS}
            for kind, record in pending:
                staged[kind].add(record, plugin_name)  # duplicates within the plugin
                if record.name in self.registries[kind]:
                    self.registries[kind].add(record, plugin_name)  # raises, naming both
        except Exception as exc:
            self._fail(info, _reason(exc), exc, registered)
            return
        for kind, record in pending:
            self.registries[kind].add(record, plugin_name)
        for impl in self.pm.hook.register_commands.get_hookimpls():
            if impl.plugin_name in registered:
                hook_names.add("register_commands")
        info.hooks = sorted(hook_names)
        info.registers = {
            kind: self.registries[kind].by_plugin(plugin_name)
            for kind in KINDS
            if self.registries[kind].by_plugin(plugin_name)
        }

    def add_commands(self, cli: Any) -> None:
        """Let every loaded plugin add its subcommands to the click group `cli`.

        A plugin whose hook raises, or that takes a command name already used, is marked
        unavailable (its records stay); the other plugins' commands are still added.
        """
        owners = {name: "betavae_core" for name in cli.commands}
        for impl in self.pm.hook.register_commands.get_hookimpls():
            name = impl.plugin_name
            plugin = name if name in self.infos else CORE_PLUGIN
            before = dict(cli.commands)
            try:
                if self.trace:
                    print(f"betavae: {plugin}.register_commands()", file=sys.stderr)
                impl.function(cli=cli)
                for command in set(cli.commands) - set(before):
                    owners[command] = plugin
                clashes = [c for c in before if cli.commands[c] is not before[c]]
                if clashes:
                    cli.commands.update({c: before[c] for c in clashes})
                    raise PluginError(f"plugin {plugin!r} adds command(s) {clashes}, already "
                                      f"added by {sorted({owners[c] for c in clashes})}.",
                                      plugin=plugin)
            except Exception as exc:
                for command in set(cli.commands) - set(before):
                    del cli.commands[command]
                info = self.infos.get(plugin)
                if info is not None:
                    self._fail(info, _reason(exc), exc)

    def _fail(
        self, info: PluginInfo, reason: str, exc: Exception, names: set[str] = frozenset()
    ) -> None:
        info.status, info.reason = "unavailable", reason
        for name in names:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
        if self.strict:
            raise PluginError(f"plugin {info.name!r}: {reason}", plugin=info.name) from exc
        if isinstance(exc, MissingDependencyError):
            return  # an extra not installed is a choice: `betavae plugins` shows it
        warnings.warn(f"betavae plugin {info.name!r} is unavailable: {reason}", stacklevel=3)


def _reason(exc: Exception) -> str:
    if isinstance(exc, BetaVAEError):
        return str(exc)
    return f"raised while registering: {type(exc).__name__}: {exc}"


def _entry_points() -> list[metadata.EntryPoint]:
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    wanted = os.environ.get("BETAVAE_LOAD_PLUGINS")
    if wanted is not None:
        names = {n.strip() for n in wanted.split(",") if n.strip()}
        eps = [ep for ep in eps if ep.name in names]
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in sorted(eps, key=lambda e: e.name):
        if (ep.name, ep.value) not in seen:  # the same dist found twice on sys.path
            seen.add((ep.name, ep.value))
            unique.append(ep)
    return unique


def _version(dist_name: str) -> str | None:
    try:
        return metadata.version(dist_name)
    except metadata.PackageNotFoundError:
        return None


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The loaded plugin host (plugins load on first call, not at import)."""
    global _HOST
    if _HOST is None:
        host = PluginHost()
        _HOST = host
        try:
            host.load_all()
        except BaseException:
            _HOST = None
            raise
    return _HOST


def reset_plugins() -> None:
    """Forget loaded plugins; the next `get_host()` loads them again (tests use this)."""
    global _HOST
    _HOST = None


def registry(kind: str) -> Registry:
    """The registry of one kind: datasets, loaders, likelihoods, evaluations, ..."""
    return get_host().registries[kind]


def plugin_infos() -> list[PluginInfo]:
    return list(get_host().infos.values())


def call_plugin(record: Any, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any):
    """Call a plugin's callable; re-raise a foreign exception as `PluginError` naming it."""
    try:
        return func(*args, **kwargs)
    except BetaVAEError:
        raise
    except Exception as exc:
        raise PluginError(
            f"plugin {record.plugin!r} failed in {what} {record.name!r}: "
            f"{type(exc).__name__}: {exc}",
            plugin=record.plugin,
        ) from exc

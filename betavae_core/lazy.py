"""Cheap plugin start-up: callables that import their module on first call, and a check
that a plugin's optional dependencies are installed, without importing them.

A plugin module registers records at start-up; with `lazy("pkg.module:function")` it
does so without importing torch or its domain library, so `betavae --help`, `plugins`
and `datasets` stay fast. `requires(...)` at the top of a plugin module makes a missing
extra show as an unavailable plugin with the pip command that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from .errors import MissingDependencyError, PluginError


class LazyCallable:
    """A callable named "module:attribute"; the module is imported on the first call."""

    def __init__(self, target: str, **bound: Any) -> None:
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise PluginError(f"lazy target {target!r} must be 'package.module:function'.")
        self.target = target
        self.bound = bound
        self._func: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        """The real callable (imports its module once)."""
        if self._func is None:
            module, _, attr = self.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._func = obj
        return self._func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **{**self.bound, **kwargs})

    def __repr__(self) -> str:
        bound = "".join(f", {k}={v!r}" for k, v in self.bound.items())
        return f"lazy({self.target!r}{bound})"


def lazy(target: str, **bound: Any) -> LazyCallable:
    """`lazy("betavae_x.loaders:load_csv")`: a callable that imports on first use.

    Keyword arguments are bound like `functools.partial` (call-time keywords win).
    """
    return LazyCallable(target, **bound)


def lazy_exports(package: str, names: dict[str, str],
                 modules: tuple[str, ...] = ()) -> Callable[[str], Any]:
    """A module `__getattr__` for a package whose names load on first use.

    `names` maps an exported name to the submodule (relative to `package`) defining it;
    `modules` are submodules exported whole. In the package's `__init__.py`:
    `__getattr__ = lazy_exports(__name__, {"fit": "tl"}, modules=("tl", "pl"))`.
    """

    def __getattr__(name: str) -> Any:
        if name in modules:
            value: Any = importlib.import_module(f".{name}", package)
        elif name in names:
            value = getattr(importlib.import_module(f".{names[name]}", package), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__


def missing_modules(*modules: str) -> list[str]:
    """The top-level modules among `modules` that cannot be found (nothing is imported)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def requires(*modules: str, extra: str | None = None, package: str = "betavae") -> None:
    """Raise `MissingDependencyError` naming the missing modules and the install command.

    Call it at the top of a plugin's entry-point module: the plugin is then listed as
    unavailable with that reason, and the rest of betavae keeps working.
    """
    missing = missing_modules(*modules)
    if missing:
        target = f"'{package}[{extra}]'" if extra else " ".join(missing)
        raise MissingDependencyError(f"not installed: {', '.join(missing)}; add with: pip "
                                     f"install {target}")

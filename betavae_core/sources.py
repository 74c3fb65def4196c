"""Turn what a user names (a dataset, a file, a folder) into `DomainData`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data import DomainData
from .errors import ConfigError, DataError
from .plugins import call_plugin, registry
from .registry import check_options


def parse_options(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["n=2000", "hidden=256,128", "name=abc"]` -> {"n": 2000, "hidden": [256, 128], ...}."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {pair!r} is not of the form key=value.")
        options[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return options


def _parse_value(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    if "," in value:
        return [_parse_value(v) for v in value.split(",") if v]
    return value


def describe_available() -> str:
    datasets = ", ".join(registry("datasets").names()) or "none"
    loaders = ", ".join(f"{r.name} ({r.help})" for r in registry("loaders")) or "none"
    return f"Named datasets: {datasets}. File loaders: {loaders}. See `betavae datasets`."


def claiming_loaders(path: Path) -> list[Any]:
    """Loaders whose `claims(path)` is true; a loader that raises is treated as 'no'."""
    out = []
    for loader in registry("loaders"):
        try:
            if loader.claims(path):
                out.append(loader)
        except Exception:
            continue
    return out


def load_data(
    spec: str | Path, loader: str | None = None, options: dict[str, Any] | None = None
) -> tuple[DomainData, dict[str, Any]]:
    """Load a named dataset or a path; return the data and a record of its source."""
    options = dict(options or {})
    spec_str = str(spec)
    if loader is not None:
        loaders = registry("loaders")
        if loader not in loaders:
            raise ConfigError(f"no loader named {loader!r}. {describe_available()}")
        return _load_file(loaders.get(loader), Path(spec_str), options)
    datasets = registry("datasets")
    if spec_str in datasets:
        dataset = datasets.get(spec_str)
        unknown = set(options) - set(dataset.options)
        if unknown:
            raise ConfigError(
                f"dataset {spec_str!r} has no option(s) {sorted(unknown)}; its options are "
                f"{dataset.options}."
            )
        data = call_plugin(dataset, "dataset", dataset.load, **{**dataset.options, **options})
        return _checked(data, dataset), {"kind": "dataset", "name": spec_str,
                                         "options": {**dataset.options, **options}}
    path = Path(spec_str)
    if not path.exists():
        raise DataError(f"{spec_str!r} is neither a named dataset nor an existing path. "
                        f"{describe_available()}")
    claims = claiming_loaders(path)
    if not claims:
        raise DataError(f"no installed loader can read {path}. {describe_available()}")
    if len(claims) > 1:
        names = ", ".join(f"{c.name} (plugin {c.plugin})" for c in claims)
        raise DataError(f"{path} is claimed by several loaders: {names}. Choose one with "
                        f"--loader NAME.")
    return _load_file(claims[0], path, options)


def _load_file(loader: Any, path: Path, options: dict[str, Any]):
    if not path.exists():
        raise DataError(f"{path} does not exist.")
    check_options(loader, options, "loader")
    try:
        data = call_plugin(loader, "loader", loader.load, path, **options)
    except DataError as exc:
        if str(path) in str(exc):
            raise
        raise DataError(f"{path}: {exc}") from exc
    source = {"kind": "file", "path": str(path.resolve()), "loader": loader.name,
              "options": options}
    return _checked(data, loader), source


def _checked(data: Any, record: Any) -> DomainData:
    """The loaded data, with the record's suggested training defaults beneath its own."""
    if not isinstance(data, DomainData):
        raise DataError(f"plugin {record.plugin!r}: {record.name!r} returned "
                        f"{type(data).__name__}, not DomainData.")
    if record.defaults:
        data.defaults = {**record.defaults, **data.defaults}
    return data


def reload_source(source: dict[str, Any]) -> DomainData:
    """Load the data a run was fit on, from the record `load_data` returned."""
    if source.get("kind") == "dataset":
        return load_data(source["name"], options=source.get("options"))[0]
    if source.get("kind") == "file":
        return load_data(source["path"], loader=source.get("loader"),
                         options=source.get("options"))[0]
    raise ConfigError("this run does not record its data source; pass --data DATA.")

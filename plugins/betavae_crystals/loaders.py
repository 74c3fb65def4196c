"""The loaders the plugin registers: folders or files of structures, CSV tables with a
CIF column, and ASE databases. Each claims a path by its content and returns the
crystals `DomainData` (see `crystal_data.build_data` for the options)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from betavae_core.data import DomainData
from betavae_core.errors import ConfigError, DataError

from . import readers
from .crystal_data import build_data

OPTIONS = ("strict", "primitive", "max_sites", "property", "like", "limit")


def _options(loader: str, options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"loader {loader!r} has no option(s) {sorted(unknown)}; its options "
                          f"are {', '.join(OPTIONS)}.")
    limit = options.get("limit")
    if limit is not None and int(limit) < 1:
        raise ConfigError(f"limit must be >= 1; got {limit}.")
    max_sites = options.get("max_sites")
    if max_sites is not None and int(max_sites) < 1:
        raise ConfigError(f"max_sites must be >= 1; got {max_sites}.")
    return {
        "strict": _flag(options.get("strict", False), "strict"),
        "primitive": _flag(options.get("primitive", True), "primitive"),
        "max_sites": None if max_sites is None else int(max_sites),
        "property": options.get("property"),
        "like": options.get("like"),
    }


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"option {name} must be true or false; got {value!r}.")


def _source(path: Path, loader: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "file", "path": str(path.resolve()), "loader": loader,
            "options": {k: v for k, v in options.items() if v is not None}}


def _limited(entries, limit: Any):
    for i, entry in enumerate(entries):
        if limit is not None and i >= int(limit):
            return
        yield entry


# --- structure files and folders -------------------------------------------------------
def claims_structures(path: Path) -> bool:
    """A folder holding structure files, or one CIF / POSCAR / extended-XYZ file. An
    empty folder is claimed too, so its error says what it should have held."""
    if path.is_dir():
        files = 0
        for child in path.rglob("*"):
            if child.is_file():
                files += 1
                if readers.is_structure_file(child):
                    return True
            if files > 2000:
                return False
        return files == 0
    return readers.is_structure_file(path)


def load_structures(path: Path, **options: Any) -> DomainData:
    """Every structure in a folder (recursively) or in one structure file."""
    path = Path(path)
    opts = _options("crystal_structures", options)
    if path.is_dir():
        entries = readers.read_folder(path)
    elif path.is_file():
        entries = iter(readers.read_file(path))
    else:
        raise DataError(f"{path} does not exist.")
    return build_data(_limited(entries, options.get("limit")),
                      source=_source(path, "crystal_structures", options), **opts)


# --- CSV with a cif column -------------------------------------------------------------
def claims_csv(path: Path) -> bool:
    """A CSV file whose header has a 'cif' column."""
    return path.is_file() and readers.CSV_CIF_COLUMN in {c.lower() for c in
                                                          readers.csv_header(path)}


def load_csv(path: Path, **options: Any) -> DomainData:
    """Rows of a CSV with a 'cif' column (numeric columns are candidate properties)."""
    path = Path(path)
    opts = _options("crystal_csv", options)
    limit = options.get("limit")
    entries = readers.read_csv_table(path, None if limit is None else int(limit))
    return build_data(entries, source=_source(path, "crystal_csv", options), **opts)


# --- ASE databases ---------------------------------------------------------------------
def claims_ase_db(path: Path) -> bool:
    """An ASE SQLite database (a file with the 'systems' table)."""
    return readers.looks_like_ase_db(path)


def load_ase_db(path: Path, **options: Any) -> DomainData:
    """Rows of an ASE database (its key-value pairs are candidate properties)."""
    path = Path(path)
    opts = _options("crystal_ase_db", options)
    return build_data(_limited(readers.read_ase_db(path), options.get("limit")),
                      source=_source(path, "crystal_ase_db", options), **opts)


def reload(source: dict[str, Any], attrs: dict[str, Any] | None = None) -> DomainData:
    """Load again the data a run was fit on, from `attrs["source"]` (a file or a named
    dataset, as recorded by the loader); a file is encoded like the run (`attrs`), so a
    file that changed since cannot silently change the vocabulary."""
    from betavae_core.sources import reload_source

    kind = source.get("kind")
    if kind == "file" and attrs is not None:
        source = {**source, "options": {**source.get("options", {}), "like": attrs}}
    if kind not in ("file", "dataset"):
        raise DataError("the training structures were given in memory; pass them to the "
                        "generator (training=...) to check novelty.")
    if kind == "file" and not Path(source["path"]).exists():
        raise DataError(f"the training data {source['path']} is no longer there; pass "
                        f"-g training=PATH to check novelty against it (or training=none).")
    return reload_source(source)

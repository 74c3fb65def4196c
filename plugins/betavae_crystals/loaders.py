"""The loaders the plugin registers: folders or files of structures, CSV tables with a
CIF column, and ASE databases. Each claims a path by its content and returns the
crystals `DomainData` (see `crystal_data.build_data`).

Options (declared on the records in `plugin`, which the core checks): `strict` stops at
the first structure that cannot be used instead of skipping it by name; `primitive`
reduces to the primitive cell; `max_sites` skips larger cells; `property` picks the
column to learn ("none" for none); `like` (a run directory) encodes with a fitted run's
representation; `limit` reads only the first N structures.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from betavae_core import ConfigError, DataError, DomainData

from . import readers
from .crystal_data import build_data
from .readers import Entry, Problem


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"option {name} must be true or false; got {value!r}.")


def _positive(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ConfigError(f"{name} must be an integer >= 1; got {value!r}.")
    return number


def _source(path: Path, loader: str, options: dict[str, Any]) -> dict[str, Any]:
    """Where the structures came from, for `attrs["source"]` (a `like` given as a run's
    attributes is named, not copied)."""
    shown = {k: ("(a fitted run's attrs)" if isinstance(v, dict) else v)
             for k, v in options.items() if v is not None}
    return {"kind": "file", "path": str(path.resolve()), "loader": loader, "options": shown}


def _limited(entries: Iterable[Entry | Problem], limit: int | None
             ) -> Iterator[Entry | Problem]:
    for i, entry in enumerate(entries):
        if limit is not None and i >= limit:
            return
        yield entry


def _build(entries: Iterable[Entry | Problem], path: Path, loader: str, *, strict: Any,
           primitive: Any, max_sites: Any, property: str | None, like: Any,
           limit: int | None) -> DomainData:
    options = {"strict": strict, "primitive": primitive, "max_sites": max_sites,
               "property": property, "like": like, "limit": limit}
    return build_data(_limited(entries, limit), source=_source(path, loader, options),
                      strict=_flag(strict, "strict"), primitive=_flag(primitive, "primitive"),
                      max_sites=_positive(max_sites, "max_sites"), property=property,
                      like=like)


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


def load_structures(path: Path, *, strict: Any = False, primitive: Any = True,
                    max_sites: Any = None, property: str | None = None, like: Any = None,
                    limit: Any = None) -> DomainData:
    """Every structure in a folder (recursively) or in one structure file."""
    path = Path(path)
    if path.is_dir():
        entries: Iterable[Entry | Problem] = readers.read_folder(path)
    elif path.is_file():
        entries = readers.read_file(path)
    else:
        raise DataError(f"{path} does not exist.")
    return _build(entries, path, "crystal_structures", strict=strict, primitive=primitive,
                  max_sites=max_sites, property=property, like=like,
                  limit=_positive(limit, "limit"))


# --- CSV with a cif column -------------------------------------------------------------
def claims_csv(path: Path) -> bool:
    """A CSV file whose header has a 'cif' column."""
    return path.is_file() and readers.CSV_CIF_COLUMN in {c.lower() for c in
                                                          readers.csv_header(path)}


def load_csv(path: Path, *, strict: Any = False, primitive: Any = True,
             max_sites: Any = None, property: str | None = None, like: Any = None,
             limit: Any = None) -> DomainData:
    """Rows of a CSV with a 'cif' column (numeric columns are candidate properties)."""
    path = Path(path)
    limit = _positive(limit, "limit")
    return _build(readers.read_csv_table(path, limit), path, "crystal_csv", strict=strict,
                  primitive=primitive, max_sites=max_sites, property=property, like=like,
                  limit=limit)


# --- ASE databases ---------------------------------------------------------------------
def claims_ase_db(path: Path) -> bool:
    """An ASE SQLite database (a file with the 'systems' table)."""
    return readers.looks_like_ase_db(path)


def load_ase_db(path: Path, *, strict: Any = False, primitive: Any = True,
                max_sites: Any = None, property: str | None = None, like: Any = None,
                limit: Any = None) -> DomainData:
    """Rows of an ASE database (its key-value pairs are candidate properties)."""
    path = Path(path)
    return _build(readers.read_ase_db(path), path, "crystal_ase_db", strict=strict,
                  primitive=primitive, max_sites=max_sites, property=property, like=like,
                  limit=_positive(limit, "limit"))


def load_like(path: Path, attrs: dict[str, Any]) -> DomainData:
    """Structures at `path` (any of the formats above) encoded with a fitted run's
    representation (`attrs`), for a reference set the user names (`-g training=PATH`)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.")
    load = (load_csv if claims_csv(path) else load_ase_db if claims_ase_db(path)
            else load_structures)
    return load(path, like=attrs)

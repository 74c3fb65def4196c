"""Read crystal structures from files: CIF, POSCAR, extended XYZ, ASE databases, and CSV
tables with a CIF column. Every reader yields `Entry`s or `Problem`s, one per structure,
so a caller can skip what does not parse (and say which) or stop at it (`strict`)."""

from __future__ import annotations

import csv
import math
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from betavae_core import DataError

CIF_SUFFIXES = (".cif", ".mcif")
POSCAR_SUFFIXES = (".vasp", ".poscar")
POSCAR_PREFIXES = ("POSCAR", "CONTCAR")
XYZ_SUFFIXES = (".extxyz", ".xyz")
SQLITE_MAGIC = b"SQLite format 3\x00"
PEEK_BYTES = 4096
CSV_CIF_COLUMN = "cif"
ID_COLUMNS = ("material_id", "id", "name", "mp_id")


@dataclass
class Entry:
    """One structure read from a source, its name and numeric properties.

    `text` holds the values of property columns (keys) that are not numbers, as read, so
    the column chosen as the property can name a bad one instead of being dropped whole;
    `where` says where the structure is (file and row) when its name alone does not.
    """

    name: str
    structure: Structure
    properties: dict[str, float] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    where: str = ""

    @property
    def origin(self) -> str:
        """Where the structure came from: its file and row, and its name."""
        if not self.where or self.name in self.where:
            return self.where or self.name
        return f"{self.where} ({self.name})"


@dataclass
class Problem:
    """A structure that could not be read: where it is and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


# --- what a file is --------------------------------------------------------------------
def _peek(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            return fh.read(PEEK_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


def looks_like_cif(path: Path) -> bool:
    text = _peek(path)
    return "data_" in text and ("_cell_length_a" in text or "_atom_site" in text)


def looks_like_poscar(path: Path) -> bool:
    if not (path.name.startswith(POSCAR_PREFIXES) or path.suffix.lower() in POSCAR_SUFFIXES):
        return False
    lines = _peek(path).splitlines()
    try:
        float(lines[1].split()[0])
        return len(lines) >= 8
    except (IndexError, ValueError):
        return False


def looks_like_extxyz(path: Path) -> bool:
    lines = _peek(path).splitlines()
    return len(lines) >= 2 and lines[0].strip().isdigit() and "Lattice=" in lines[1]


def looks_like_ase_db(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                return False
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE "
                                                "type='table'")}
        return "systems" in tables
    except (OSError, sqlite3.Error):
        return False


def csv_header(path: Path) -> list[str]:
    """The header row of a CSV file ([] if it is not one)."""
    if path.suffix.lower() not in (".csv", ".gz") and not path.name.endswith(".csv.gz"):
        return []
    try:
        if path.name.endswith(".gz"):
            import gzip

            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                line = fh.readline()
        else:
            line = _peek(path).splitlines()[0] if _peek(path) else ""
        return [c.strip() for c in next(csv.reader([line]))]
    except (OSError, StopIteration, csv.Error, EOFError):
        return []


def is_structure_file(path: Path) -> bool:
    """CIF, POSCAR or extended XYZ, decided by name and a look at the content."""
    if not path.is_file() or path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if suffix in CIF_SUFFIXES:
        return looks_like_cif(path)
    if suffix in XYZ_SUFFIXES:
        return looks_like_extxyz(path)
    return looks_like_poscar(path)


def structure_files(folder: Path) -> list[Path]:
    """Structure files in `folder` and its subfolders, in sorted order."""
    return sorted(p for p in folder.rglob("*") if is_structure_file(p))


# --- readers ---------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _checked(structure: Structure, name: str) -> Entry | Problem:
    if not structure.is_ordered:
        return Problem(name, "partial occupancy (a disordered structure); order it first")
    if len(structure) == 0:
        return Problem(name, "no atoms")
    return Entry(name, structure)


def parse_cif(text: str, name: str) -> list[Entry | Problem]:
    """Every data block of a CIF text; a block that does not parse is a `Problem`."""
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parser = CifParser.from_str(text, occupancy_tolerance=1.0)
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # pymatgen raises many kinds on bad CIFs
            return [Problem(name, f"cannot parse CIF ({_first_line(exc)})")]
    if not structures:
        return [Problem(name, "the CIF holds no structure")]
    if len(structures) == 1:
        return [_checked(structures[0], name)]
    return [_checked(s, f"{name}#{i}") for i, s in enumerate(structures)]


def read_file(path: Path, label: str | None = None) -> list[Entry | Problem]:
    """Structures in one CIF, POSCAR or extended-XYZ file."""
    name = label or path.name
    suffix = path.suffix.lower()
    try:
        if suffix in CIF_SUFFIXES:
            return parse_cif(path.read_text(encoding="utf-8", errors="replace"), name)
        if suffix in XYZ_SUFFIXES:
            return read_extxyz(path, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [_checked(Structure.from_file(str(path)), name)]
    except OSError as exc:
        return [Problem(name, f"cannot read the file ({_first_line(exc)})")]
    except Exception as exc:
        return [Problem(name, f"cannot parse ({_first_line(exc)})")]


def split_values(info: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(numbers, text): the finite numeric values of `info` (strings that read as numbers
    included), and its other strings as read. Missing values (None, NaN, empty, "nan")
    are in neither: they mean "unknown"."""
    numbers: dict[str, float] = {}
    text: dict[str, str] = {}
    for key, value in info.items():
        if isinstance(value, str):
            shown = value.strip()
            if not shown:
                continue
            try:
                value = float(shown)
            except ValueError:
                text[str(key)] = shown
                continue
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)):
            if math.isfinite(float(value)):
                numbers[str(key)] = float(value)
    return numbers, text


def from_atoms(atoms: Any, name: str) -> Entry | Problem:
    """An `ase.Atoms` as an Entry (its numeric `info` as properties)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    if not all(atoms.pbc) or atoms.cell.rank < 3:
        return Problem(name, "not a periodic crystal (needs a full cell and pbc on all axes)")
    try:
        structure = AseAtomsAdaptor.get_structure(atoms)
    except Exception as exc:
        return Problem(name, f"cannot convert to a structure ({_first_line(exc)})")
    entry = _checked(structure, name)
    if isinstance(entry, Entry):
        entry.properties, entry.text = split_values(dict(atoms.info))
    return entry


def read_extxyz(path: Path, name: str) -> list[Entry | Problem]:
    import ase.io

    try:
        frames = ase.io.read(str(path), index=":", format="extxyz")
    except Exception as exc:
        return [Problem(name, f"cannot parse extended XYZ ({_first_line(exc)})")]
    if len(frames) == 1:
        return [from_atoms(frames[0], name)]
    return [from_atoms(a, f"{name}#{i}") for i, a in enumerate(frames)]


def read_folder(folder: Path) -> Iterator[Entry | Problem]:
    """Every structure file under `folder`; raises `DataError` when there is none."""
    files = structure_files(folder)
    if not files:
        raise DataError(f"{folder} holds no structure files (CIF *.cif, POSCAR/CONTCAR/*.vasp, "
                        f"extended XYZ *.extxyz). Put structures there, or pass a CSV with a "
                        f"'cif' column or an ASE database.")
    for path in files:
        yield from read_file(path, str(path.relative_to(folder)))


def read_ase_db(path: Path) -> Iterator[Entry | Problem]:
    """Every row of an ASE SQLite database (key-value pairs as properties)."""
    import ase.db

    try:
        rows = list(ase.db.connect(str(path), type="db").select())
    except Exception as exc:
        raise DataError(f"{path}: cannot open the ASE database ({_first_line(exc)}).") from None
    if not rows:
        raise DataError(f"{path}: the ASE database holds no rows.")
    for row in rows:
        name = str(row.get("name") or f"{path.name}#id={row.id}")
        entry = from_atoms(row.toatoms(), name)
        if isinstance(entry, Entry):
            entry.properties, entry.text = split_values(dict(row.key_value_pairs))
            entry.where = f"{path.name} id={row.id}"
        yield entry


def read_csv_table(path: Path, limit: int | None = None) -> Iterator[Entry | Problem]:
    """Rows of a CSV with a `cif` column; its other columns are candidate properties (a
    value that is not a number is kept as text, so the property column can name it)."""
    import pandas as pd

    try:
        table = pd.read_csv(path, nrows=limit)
    except Exception as exc:
        raise DataError(f"{path}: cannot read the CSV ({_first_line(exc)}).") from None
    columns = {c.lower(): c for c in table.columns}
    if CSV_CIF_COLUMN not in columns:
        raise DataError(f"{path}: no '{CSV_CIF_COLUMN}' column (columns: "
                        f"{', '.join(map(str, table.columns))}).")
    if table.empty:
        raise DataError(f"{path}: the CSV holds no rows.")
    cif_col = columns[CSV_CIF_COLUMN]
    id_col = next((columns[c] for c in ID_COLUMNS if c in columns), None)
    candidates = [c for c in table.columns if c not in (cif_col, id_col)
                  and not str(c).startswith("Unnamed")]
    for i, row in enumerate(table.itertuples(index=False)):
        values = dict(zip(table.columns, row, strict=True))
        label = f"row {i + 2}" + (f" ({values[id_col]})" if id_col else "")
        name = f"{path.name} {label}"
        cif = values[cif_col]
        if not isinstance(cif, str) or not cif.strip():
            yield Problem(name, "empty cif cell")
            continue
        entries = parse_cif(cif, name)
        numbers, text = split_values({str(c): values[c] for c in candidates})
        for k, entry in enumerate(entries):
            if isinstance(entry, Entry):
                if id_col:  # one id per row; several CIF blocks in it get #0, #1, ...
                    entry.name = str(values[id_col]) + (f"#{k}" if len(entries) > 1 else "")
                entry.properties, entry.text = dict(numbers), dict(text)
                entry.where = name
            yield entry

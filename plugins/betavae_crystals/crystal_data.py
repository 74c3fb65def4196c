"""Structures -> `DomainData` for the crystals domain, with the per-structure bookkeeping
(what was skipped and why, which property the model learns) the later stages need.

Crystal data carries the domain's training defaults (`plugin.TRAINING_DEFAULTS`) on
`DomainData.defaults`, so in-memory structures fit as files and the toy dataset do:
`betavae_core.fit(from_structures(...))` takes beta 0.05, latent 16, 200 epochs, no early
stopping wherever the caller set nothing."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from betavae_core import ConfigError, DataError, DomainData

from .plugin import ARCHITECTURE, DOMAIN, GENERATOR, LIKELIHOOD, TRAINING_DEFAULTS
from .readers import Entry, Problem, from_atoms
from .representation import (
    CrystalRepresentation,
    canonical_cell,
    single_blas_thread,
    too_many_sites,
)

SHOWN_PROBLEMS = 20

#: Columns recognised as a property to learn, in order of preference: (name, unit).
KNOWN_PROPERTIES: dict[str, tuple[str, str]] = {
    "formation_energy": ("formation_energy", "eV/atom"),
    "formation_energy_per_atom": ("formation_energy", "eV/atom"),
    "heat_ref": ("formation_energy", "eV/atom"),
    "energy_per_atom": ("energy_per_atom", "eV/atom"),
}


class Skipped:
    """Problems met while loading: raised at once when strict, else counted and named.
    `lenient` says how to skip them instead (`drop -o strict=true` for files, `pass
    strict=False` in Python; "" where skipping is not an option)."""

    def __init__(self, strict: bool, lenient: str = "drop -o strict=true") -> None:
        self.strict = bool(strict)
        self.lenient = lenient
        self.items: list[Problem] = []

    def add(self, problem: Problem) -> None:
        if self.strict:
            how = (f" (strict: stopping at the first bad structure; {self.lenient} to skip "
                   f"bad structures with a count instead)" if self.lenient else "")
            raise DataError(f"{str(problem).rstrip('.')}{how}.")
        self.items.append(problem)

    def summary(self) -> dict[str, Any]:
        return {"count": len(self.items),
                "first": [str(p) for p in self.items[:SHOWN_PROBLEMS]]}


def as_entries(items: Iterable[Any], names: Sequence[str] | None = None,
               properties: dict[str, Sequence[float]] | None = None) -> list[Entry | Problem]:
    """Structures or `ase.Atoms` (and optional per-item properties) as entries."""
    items = list(items)
    names = list(names) if names is not None else [f"structure {i}" for i in range(len(items))]
    if len(names) != len(items):
        raise DataError(f"got {len(names)} names for {len(items)} structures.")
    out: list[Entry | Problem] = []
    for i, (item, name) in enumerate(zip(items, names, strict=True)):
        if isinstance(item, Structure):
            entry: Entry | Problem = (Entry(name, item) if item.is_ordered else
                                      Problem(name, "partial occupancy (a disordered "
                                              "structure); order it first"))
        elif hasattr(item, "get_positions") and hasattr(item, "cell"):
            entry = from_atoms(item, name)
        else:
            raise DataError(f"{name} is a {type(item).__name__}; expected a "
                            f"pymatgen.core.Structure or an ase.Atoms.")
        if isinstance(entry, Entry) and properties:
            for key, values in properties.items():
                if len(values) != len(items):
                    raise DataError(f"property {key!r} has {len(values)} values for "
                                    f"{len(items)} structures.")
                value = _number(values[i], key, name)
                if math.isfinite(value):
                    entry.properties[key] = value
        out.append(entry)
    return out


def _number(value: Any, key: str, name: str) -> float:
    """`value` as a float (None: NaN, unknown); `DataError` naming the structure and the
    property when it is not a number."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name}: property {key!r} is {value!r}, not a number; give a number, "
                        f"or NaN where it is unknown.") from None


def check_unique_ids(entries: Sequence[Entry]) -> None:
    """`DataError` naming a structure id that repeats: ids name the training match and
    the nearest training structure of each candidate, so each must be one structure's.
    Fit, a reference set (`-g training=PATH`) and `encode_structures` all check this."""
    seen: dict[str, Entry] = {}
    repeats: list[tuple[Entry, Entry]] = []
    for entry in entries:
        if entry.name in seen:
            repeats.append((seen[entry.name], entry))
        else:
            seen[entry.name] = entry
    if repeats:
        first, again = repeats[0]
        more = f"; {len(repeats)} repeated ids in all" if len(repeats) > 1 else ""
        raise DataError(f"structure id {first.name!r} repeats ({first.origin} and "
                        f"{again.origin}{more}); each structure needs its own id: fix the id "
                        f"column (CSV), the name key (ASE database) or names= (Python).")


def check_property_values(entries: Sequence[Entry], column: str, learned: bool) -> None:
    """`DataError` naming the first structure (file and row) whose value in the property
    `column` is not a number, instead of dropping the whole property in silence.
    `learned`: the property is the one a fitted model learned (no `property=none` then)."""
    bad = [e for e in entries if column in e.text]
    if not bad:
        return
    first = bad[0]
    more = f" ({len(bad)} such values in all)" if len(bad) > 1 else ""
    fix = "" if learned else (", or learn no property (-o property=none; property='none' in "
                              "Python)")
    raise DataError(f"{first.origin}: column {column!r} holds {first.text[column]!r}, not a "
                    f"number{more}. Clean the value (leave it empty where it is unknown)"
                    f"{fix}.")


def choose_property(entries: Sequence[Entry], wanted: str | None) -> str | None:
    """The property column to learn: `wanted`, else the first known one present. A
    column some of whose values are not numbers counts as present, so that
    `check_property_values` names the bad value rather than the property vanishing."""
    numeric = {k for e in entries for k in e.properties}
    present = numeric | {k for e in entries for k in e.text}
    if wanted in (None, "", "auto"):
        return next((c for c in KNOWN_PROPERTIES if c in present), None)
    if str(wanted).lower() in ("none", "false"):
        return None
    if wanted not in present:
        raise ConfigError(f"no property {wanted!r} in the data; numeric properties found: "
                          f"{', '.join(sorted(numeric)) or 'none'}.")
    return str(wanted)


def run_attrs(run_dir: str | Path) -> dict[str, Any]:
    """The data attributes a fitted run recorded (config.json), for `like=RUN_DIR`."""
    path = Path(run_dir) / "config.json"
    try:
        attrs = json.loads(path.read_text(encoding="utf-8"))["data"]["attrs"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise ConfigError(f"like={run_dir}: cannot read the run's {path.name} ({exc}).") from None
    if "representation" not in attrs:
        raise ConfigError(f"like={run_dir}: that run was not fit on crystals.")
    return attrs


@single_blas_thread
def build_data(
    entries: Iterable[Entry | Problem],
    *,
    source: dict[str, Any],
    strict: bool = False,
    primitive: bool = True,
    max_sites: int | None = None,
    property: str | None = None,
    like: str | Path | dict[str, Any] | None = None,
    lenient: str | None = None,
) -> DomainData:
    """Canonical cells -> tensors; what cannot be used is skipped (named) or, when
    `strict`, an error. `like` (a run directory or its attrs) reuses a fitted model's
    vocabulary, size and property scaling so the data can be fed to that model; the
    checks are the same either way (ids unique, property values numbers; species and
    sizes the representation holds). `lenient` overrides how a strict error says to
    skip bad structures instead ("" for no such advice)."""
    if lenient is None:
        lenient = "pass strict=False" if source.get("kind") == "memory" else "drop -o strict=true"
    skipped = Skipped(strict, lenient)
    base = None if like is None else (like if isinstance(like, dict) else run_attrs(like))
    rep_fixed = None if base is None else CrystalRepresentation.from_attrs(base)
    if rep_fixed is not None:
        primitive = rep_fixed.primitive
    cells: list[tuple[Entry, Structure]] = []
    for entry in entries:
        if isinstance(entry, Problem):
            skipped.add(entry)
            continue
        try:
            cell = canonical_cell(entry.structure, primitive)
        except Exception as exc:
            skipped.add(Problem(entry.name, f"cannot reduce the cell ({exc})"))
            continue
        too_many = too_many_sites(cell, rep_fixed.max_sites if rep_fixed else max_sites,
                                  primitive)
        if too_many:
            skipped.add(Problem(entry.name, too_many))
            continue
        cells.append((entry, cell))
    if not cells:
        shown = "; ".join(str(p) for p in skipped.items[:5]) or "none read"
        raise DataError(f"no usable structures in {source.get('path', 'the input')} "
                        f"({len(skipped.items)} skipped: {shown}).")
    check_unique_ids([e for e, _ in cells])
    rep = rep_fixed or CrystalRepresentation.fit([c for _, c in cells], primitive, max_sites)
    rows, kept = [], []
    for entry, cell in cells:
        try:
            rows.append(rep.encode_one(cell, entry.name, canonical=True))
            kept.append((entry, cell))
        except DataError as exc:
            skipped.add(Problem(entry.name, _without_name(str(exc), entry.name)))
    if not kept:
        raise DataError(f"no structure in {source.get('path', 'the input')} fits the model's "
                        f"representation; first problem: {skipped.items[0]}.")
    if skipped.items:
        warnings.warn(f"skipped {len(skipped.items)} of {len(skipped.items) + len(kept)} "
                      f"structures: " + "; ".join(str(p) for p in skipped.items[:5])
                      + (" ..." if len(skipped.items) > 5 else "")
                      + ". Pass -o strict=true to stop at the first instead.", stacklevel=2)
    entries_kept = [e for e, _ in kept]
    column = (base.get("property") or {}).get("column") if base else property
    if base is None:
        column = choose_property(entries_kept, property)
    context, prop_attrs, metadata = {}, None, _metadata(kept)
    if column:
        check_property_values(entries_kept, column, learned=base is not None)
        values = np.array([e.properties.get(column, np.nan) for e in entries_kept])
        known = np.isfinite(values)
        if base is not None:
            mean, std = base["property"]["mean"], base["property"]["std"]
        else:
            if not known.any():
                raise DataError(f"property {column!r} has no finite value.")
            mean = float(values[known].mean())
            std = float(values[known].std()) or 1.0
        name, unit = KNOWN_PROPERTIES.get(column, (column, ""))
        prop_attrs = {"name": name, "column": column, "unit": unit, "mean": mean, "std": std,
                      "n_known": int(known.sum())}
        context = {"property": np.where(known, (values - mean) / std, 0.0).astype(np.float32),
                   "property_mask": known.astype(np.float32)}
        metadata[column] = values
    attrs = {
        "representation": rep.to_attrs(),
        "property": prop_attrs,
        "source": source,
        "skipped": skipped.summary(),
        "n_structures": len(kept),
    }
    return DomainData(
        x=np.stack(rows).astype(np.float32), domain=DOMAIN, likelihood=LIKELIHOOD,
        architecture=ARCHITECTURE, generator=GENERATOR, context=context,
        metadata=metadata, attrs=attrs, defaults=dict(TRAINING_DEFAULTS),
    )


def _without_name(message: str, name: str) -> str:
    """`message` without the "NAME: " it starts with (a `Problem` adds it again)."""
    return message.removeprefix(f"{name}: ")


def _metadata(kept: Sequence[tuple[Entry, Structure]]) -> dict[str, Any]:
    return {
        "name": [e.name for e, _ in kept],
        "formula": [c.composition.reduced_formula for _, c in kept],
    }


def from_structures(
    structures: Iterable[Any],
    properties: dict[str, Sequence[float]] | None = None,
    *,
    names: Sequence[str] | None = None,
    property: str | None = None,
    primitive: bool = True,
    max_sites: int | None = None,
    like: str | Path | dict[str, Any] | None = None,
    strict: bool = True,
) -> DomainData:
    """`DomainData` from pymatgen Structures or ase.Atoms, ready for `betavae_core.fit`
    (with the crystals training defaults).

    `properties` maps a name to one value per structure (NaN where unknown); `property`
    picks which one the model learns (default: a formation energy or energy per atom if
    given). `like` (a run directory, or `data.attrs` of the training data) encodes with
    a fitted model's representation. In-memory input is strict by default: a structure
    that cannot be used is an error naming it.
    """
    entries = as_entries(structures, names, properties)
    if not entries:
        raise DataError("no structures given.")
    return build_data(entries, source={"kind": "memory"}, strict=strict, primitive=primitive,
                      max_sites=max_sites, property=property, like=like)

"""Energy above the convex hull of candidates, from the same potential that relaxed them
(CHGNet or EMT), with pymatgen's `PhaseDiagram`. Not DFT, not the Materials Project:
a hull built here knows only the references below.

References, all evaluated with the candidates' potential:
- elements: ase's reference crystal of each element (`ase.data.reference_states`, built
  with `ase.build.bulk`), relaxed (positions and cell); an element ase keeps as a
  diatomic molecule (H, N, O, F) is that molecule in a 10 Å periodic box, positions
  relaxed. Sulfur is its S8 crown ring in the same box (α-S is a molecular crystal of
  S8 rings). Where `bulk` has no crystal (B, P, Cl, Mn, Ga, Se, Br, Te, I need an atomic
  basis it does not hold), the element's crystal from ase's `dcdft` collection (the
  Delta-test set of elemental solids, Lejaeghere et al., Science 2016) is relaxed
  instead; its Mn is a simplified two-atom cell, not α-Mn, so that reference lies a
  little above the true ground state. An element in neither
  (Pm, Pa, Pu, ...) cannot be referenced: `elemental_structure` raises naming it, and a
  candidate containing it gets no e_above_hull, with that reason, unless the user's
  reference set holds a structure of the pure element;
- the training structures, single-point (they are DFT-relaxed crystals already);
- optionally the user's own reference set (`-g reference=PATH`, any format the crystal
  loaders read), single-point.

Energies are cached by structure (a hash of its species, lattice and coordinates) in
`hull_<potential>.json`, so a second run over the same references evaluates nothing.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

import betavae_core as bv
from betavae_core import DataError

from . import readers
from .relax import Potential, relax_batch, single_points

STABLE_EV = 0.1  # eV/atom above the hull still counted stable (MatterGen's S.U.N. cut)
ON_HULL_EV = 1e-6  # rounding slack for "on or below the hull"
MOLECULE_BOX = 10.0  # Å, periodic box around an elemental molecule
RINGS = {"S": (8, 2.05, 108.0)}  # element: (atoms, bond length Å, bond angle °) of its ring
CACHE_FORMAT = 1
CAVEAT = ("Energies come from the {potential} potential and a limited reference set "
          "(ase's elemental reference structures, or its Delta-test crystals where it has "
          "none, relaxed with {potential}; Mn there is a simplified cell a little above "
          "α-Mn; S is an S8 ring in a box; the training "
          "structures single-point{user}); they are not DFT energies and not the Materials "
          "Project's hull. H, N, O and F are referenced by their molecules in a box, which "
          "a potential fit to crystals describes poorly, and a chemical system with few "
          "reference phases has a hull that is too high: values far below 0 say the "
          "references miss competing phases, not that the candidate is very stable. Treat "
          "e_above_hull as a screen for what to compute with DFT.")


# --- references ------------------------------------------------------------------------
def elemental_structure(symbol: str) -> tuple[Structure, bool]:
    """(a reference structure of `symbol`, whether its cell relaxes too): ase's reference
    crystal from `ase.build.bulk`, a diatomic molecule in a periodic box (fixed cell), or
    else the element's crystal in ase's Delta-test collection (`ase.collections.dcdft`)."""
    from ase import Atoms
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states
    from pymatgen.io.ase import AseAtomsAdaptor

    z = atomic_numbers.get(symbol)
    state = reference_states[z] if z is not None and z < len(reference_states) else None
    if symbol in RINGS:
        return ring_molecule(symbol, *RINGS[symbol]), False
    if state and state.get("symmetry") == "diatom":
        d = float(state["d"])
        c = MOLECULE_BOX / 2
        atoms = Atoms(f"{symbol}2", positions=[[c, c, c], [c + d, c, c]],
                      cell=[MOLECULE_BOX] * 3, pbc=True)
        return AseAtomsAdaptor.get_structure(atoms), False
    try:
        atoms = bulk(symbol)
    except Exception as exc:
        atoms = delta_test_crystal(symbol)
        if atoms is None:
            kind = (state or {}).get("symmetry", "none")
            raise DataError(
                f"no elemental reference for {symbol}: ase has no crystal structure for it "
                f"(its reference state is {kind!r}: {str(exc).split('.')[0]}; nor does its "
                f"Delta-test collection). Pass -g reference=PATH with a structure of pure "
                f"{symbol} (CIF, POSCAR, extxyz, CSV or ASE db).") from None
    return AseAtomsAdaptor.get_structure(atoms), True


def ring_molecule(symbol: str, n: int, bond: float, angle_deg: float) -> Structure:
    """A crown ring of n atoms (alternately above and below a circle, as in S8) with the
    given bond length and bond angle, centred in a MOLECULE_BOX periodic box."""
    # next-nearest neighbours sit 2 r sin(2π/n) apart: the law of cosines gives r
    theta = math.radians(angle_deg)
    r = bond * math.sqrt(2 * (1 - math.cos(theta))) / (2 * math.sin(2 * math.pi / n))
    half = 0.5 * math.sqrt(bond ** 2 - (2 * r * math.sin(math.pi / n)) ** 2)
    c = MOLECULE_BOX / 2
    coords = [[c + r * math.cos(2 * math.pi * k / n), c + r * math.sin(2 * math.pi * k / n),
               c + (half if k % 2 == 0 else -half)] for k in range(n)]
    return Structure(Lattice.cubic(MOLECULE_BOX), [symbol] * n, coords,
                     coords_are_cartesian=True)


def delta_test_crystal(symbol: str) -> Any | None:
    """The elemental crystal of `symbol` in ase's `dcdft` collection (ase.Atoms), or None
    where the collection has none."""
    from ase.collections import dcdft

    return dcdft[symbol] if symbol in dcdft.names else None


def structure_key(structure: Structure) -> str:
    """A hash of a structure's species, lattice and coordinates (the cache key)."""
    h = hashlib.sha256()
    h.update(" ".join(site.species_string for site in structure).encode())
    h.update(np.round(structure.lattice.matrix, 5).tobytes())
    h.update(np.round(np.mod(structure.frac_coords, 1.0), 5).tobytes())
    return h.hexdigest()[:24]


def read_reference(path: str | Path) -> list[tuple[str, Structure]]:
    """(name, structure) of every structure at `path`: a folder or file of CIF / POSCAR /
    extxyz, a CSV with a 'cif' column, or an ASE database. Unreadable ones are skipped."""
    path = Path(str(path))
    if not path.exists():
        raise DataError(f"reference={path}: no such file or folder; pass the structures "
                        f"to build the hull from (CIF, POSCAR, extxyz, CSV or ASE db).")
    if path.is_dir():
        entries: Iterable[Any] = readers.read_folder(path)
    elif readers.looks_like_ase_db(path):
        entries = readers.read_ase_db(path)
    elif path.suffix.lower() == ".csv":
        entries = readers.read_csv_table(path)
    else:
        entries = readers.read_file(path)
    out = [(e.name, e.structure) for e in entries if isinstance(e, readers.Entry)]
    if not out:
        raise DataError(f"reference={path}: no structure could be read from it.")
    return out


# --- the hull --------------------------------------------------------------------------
@dataclass
class EnergyResult:
    """What the hull says about one candidate."""

    e_form_per_atom: float | None = None
    e_above_hull: float | None = None
    reason: str = ""


@dataclass
class Hull:
    """Reference energies per atom and the phase diagrams built from them, one per
    chemical system asked about."""

    potential: str
    entries: list[tuple[str, Composition, float, str]] = field(default_factory=list)
    missing_elements: dict[str, str] = field(default_factory=dict)
    _diagrams: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    def elements(self) -> set[str]:
        return {el.symbol for _, comp, _, _ in self.entries if len(comp) == 1
                for el in comp}

    def evaluate(self, composition: Composition, energy_per_atom: float | None
                 ) -> EnergyResult:
        """Formation energy and energy above the hull (eV/atom; negative: below the
        reference hull) of a structure with this composition and energy."""
        if energy_per_atom is None or not np.isfinite(energy_per_atom):
            return EnergyResult(reason="no energy (not relaxed)")
        system = tuple(sorted(el.symbol for el in composition))
        missing = [el for el in system if el not in self.elements()]
        if missing:
            why = "; ".join(self.missing_elements.get(el, f"no reference for {el}")
                            for el in missing)
            return EnergyResult(reason=f"no elemental reference for {', '.join(missing)} "
                                       f"(system {'-'.join(system)}): {why}")
        from pymatgen.analysis.phase_diagram import PDEntry

        try:
            diagram = self._diagram(system)
            entry = PDEntry(composition, energy_per_atom * composition.num_atoms)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e_hull = float(diagram.get_e_above_hull(entry, allow_negative=True))
                e_form = float(diagram.get_form_energy_per_atom(entry))
        except Exception as exc:  # qhull on a degenerate set, ...: no number, a reason
            return EnergyResult(reason=f"hull of {'-'.join(system)} failed: "
                                       f"{type(exc).__name__}: {exc}"[:200])
        return EnergyResult(round(e_form, 5), round(e_hull, 5))

    def _diagram(self, system: tuple[str, ...]) -> Any:
        if system not in self._diagrams:
            from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

            allowed = set(system)
            entries = [PDEntry(comp, e * comp.num_atoms, name=name)
                       for name, comp, e, _ in self.entries
                       if {el.symbol for el in comp} <= allowed]
            self._diagrams[system] = PhaseDiagram(entries)
        return self._diagrams[system]

    def summary(self) -> dict[str, Any]:
        sources: dict[str, int] = {}
        for *_, source in self.entries:
            sources[source] = sources.get(source, 0) + 1
        return {"potential": self.potential, "entries": sources,
                "elements_without_reference": dict(self.missing_elements)}


class EnergyCache:
    """Energies per atom by structure key, read from and written to a JSON file."""

    def __init__(self, potential: str, path: Path | None = None) -> None:
        self.potential, self.path = potential, path
        self.energies: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        if path is not None and path.is_file():
            saved = bv.read_json(path)
            if saved.get("format") == CACHE_FORMAT and saved.get("potential") == potential:
                self.energies = {k: float(v) for k, v in saved.get("energies", {}).items()}
                self.notes = dict(saved.get("notes", {}))
        self.loaded = len(self.energies)

    def as_json(self) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "potential": self.potential,
                "energies": self.energies, "notes": self.notes}


def _elemental_energies(elements: Sequence[str], potential: Potential, cache: EnergyCache,
                        fmax: float, steps: int, user_elements: set[str]
                        ) -> tuple[dict[str, float], dict[str, str]]:
    """Relaxed energy per atom of each element's ase reference ({} for the ones the user
    brought), and why the others have none."""
    energies, missing = {}, {}
    todo: dict[str, tuple[Structure, bool]] = {}
    for el in elements:
        if el in user_elements:
            continue
        key = f"element:{el}"
        if key in cache.energies:
            energies[el] = cache.energies[key]
            continue
        try:
            structure, cell = elemental_structure(el)
        except DataError as err:
            missing[el] = str(err)
            continue
        problem = potential.coverage_problem(structure)
        if problem:
            missing[el] = f"no elemental reference for {el}: {problem}"
            continue
        todo[el] = (structure, cell)
    for cell in (True, False):
        names = [el for el, (_, c) in todo.items() if c is cell]
        results = relax_batch([todo[el][0] for el in names], potential, fmax, steps,
                              relax_cell=cell) if names else []
        for el, r in zip(names, results, strict=True):
            if r.energy_per_atom is None:
                missing[el] = f"no elemental reference for {el}: relaxation {r.status}" \
                              f" ({r.reason})"
                continue
            energies[el] = cache.energies[f"element:{el}"] = r.energy_per_atom
            cache.notes[f"element:{el}"] = (f"ase reference structure of {el}, relaxed "
                                            f"({r.status}, {r.steps} steps)")
    return energies, missing


def _single_point_energies(structures: Sequence[Structure], potential: Potential,
                           cache: EnergyCache, prefix: str) -> list[float | None]:
    keys = [f"{prefix}:{structure_key(s)}" for s in structures]
    todo = [i for i, k in enumerate(keys)
            if k not in cache.energies and not potential.coverage_problem(structures[i])]
    results = single_points([structures[i] for i in todo], potential)
    for i, r in zip(todo, results, strict=True):
        if not isinstance(r, Exception):
            cache.energies[keys[i]] = r
    return [cache.energies.get(k) for k in keys]


def relevant(structures: Sequence[Structure], systems: Sequence[frozenset[str]]
             ) -> list[int]:
    """Indices of structures whose elements lie inside one of the chemical systems (only
    those can shape a candidate's hull)."""
    @cache
    def inside(elements: frozenset[str]) -> bool:
        return any(elements <= s for s in systems)

    return [i for i, s in enumerate(structures)
            if inside(frozenset(el.symbol for el in s.composition))]


def build_hull(compositions: Sequence[Composition], potential: Potential, *,
               training: Sequence[tuple[str, Structure]] = (),
               reference: Sequence[tuple[str, Structure]] = (),
               cache: EnergyCache | None = None, fmax: float = 0.05, steps: int = 200
               ) -> Hull:
    """The hull references for the chemical systems of `compositions`: elements,
    training structures and the user's references inside those systems."""
    cache = cache or EnergyCache(potential.name)
    systems = sorted({frozenset(el.symbol for el in c) for c in compositions}, key=sorted)
    elements = sorted({el for s in systems for el in s})
    hull = Hull(potential.name)
    for source, items in (("reference", reference), ("training", training)):
        structures = [s for _, s in items]
        idx = relevant(structures, systems)
        energies = _single_point_energies([structures[i] for i in idx], potential, cache,
                                          source)
        for i, e in zip(idx, energies, strict=True):
            if e is not None:
                hull.entries.append((items[i][0], structures[i].composition, e, source))
    user_elements = {next(iter(comp)).symbol for _, comp, _, src in hull.entries
                     if src == "reference" and len(comp) == 1}
    energies, hull.missing_elements = _elemental_energies(elements, potential, cache, fmax,
                                                          steps, user_elements)
    for el, e in energies.items():
        hull.entries.append((f"{el} (ase reference)", Composition(el), e, "element"))
    return hull


# --- what the generator reports --------------------------------------------------------
def cache_name(potential: str) -> str:
    return f"hull_{potential}.json"


def assess(relaxations: dict[int, Any], potential: Potential,
           training: Sequence[tuple[str, Structure]], reference: Any, out_dir: Path,
           run_dir: Path | None, fmax: float, steps: int
           ) -> tuple[dict[int, EnergyResult], dict[str, Any]]:
    """Formation energy and energy above the hull of every relaxed candidate (by index),
    and what the report says about the hull. The reference energies are written to
    `out_dir` and cached in the run folder when the run names it."""
    name = cache_name(potential.name)
    cache_path = Path(run_dir) / name if run_dir is not None else None
    cache = EnergyCache(potential.name, cache_path)
    user = read_reference(reference) if isinstance(reference, (str, Path)) else \
        list(reference or [])
    with_energy = {i: r for i, r in relaxations.items()
                   if r.energy_per_atom is not None and r.structure is not None}
    built = build_hull([r.structure.composition for r in with_energy.values()], potential,
                       training=training, reference=user, cache=cache, fmax=fmax, steps=steps)
    results = {}
    for i, r in relaxations.items():
        if i in with_energy:
            results[i] = built.evaluate(r.structure.composition, r.energy_per_atom)
        else:
            results[i] = EnergyResult(reason=f"no energy: relaxation {r.status}"
                                             f"{' (' + r.reason + ')' if r.reason else ''}")
    bv.write_json(out_dir / name, cache.as_json())
    note = _cache_in_run(run_dir, name, cache)
    label = {"chgnet": "CHGNet", "emt": "EMT"}.get(potential.name, potential.name)
    info = {
        "potential": label,
        "caveat": CAVEAT.format(potential=label, user=", and the user's reference set "
                                "single-point" if user else ""),
        "stable_threshold_ev_per_atom": STABLE_EV,
        "hull": built.summary(),
        "training_energies": "single-point (the training structures as given, not relaxed)",
        "reference": f"{len(user)} structures" if user else None,
        "reference_energies_file": name,
        "cache": note,
        "cached_energies_reused": cache.loaded,
    }
    return results, info


def _cache_in_run(run_dir: Path | None, name: str, cache: EnergyCache) -> str:
    """Keep the reference energies in the run folder (through its manifest, so the
    folder's rules hold), for the next generate on this run."""
    if run_dir is None:
        return ("not cached in the run folder (the run context does not name it); the "
                f"energies are in {name} beside the candidates")
    try:
        with bv.output_folder(run_dir, update=True, purpose="hull cache") as stage:
            bv.write_json(Path(stage) / name, cache.as_json())
    except bv.BetaVAEError as err:
        return f"not cached in {run_dir}: {str(err).splitlines()[0]}"
    return f"cached in {Path(run_dir) / name}"


def _counted(relaxations: dict[int, Any], energies: dict[int, EnergyResult],
             limit: float) -> int:
    return sum(1 for i, r in relaxations.items() if r.converged and i in energies
               and energies[i].e_above_hull is not None
               and energies[i].e_above_hull <= limit)


def funnel(relaxations: dict[int, Any], energies: dict[int, EnergyResult]) -> dict[str, int]:
    """relaxed (converged) -> stable (<= 0.1 eV/atom above the hull) -> on or below it."""
    return {"relaxed": sum(1 for r in relaxations.values() if r.converged),
            "stable": _counted(relaxations, energies, STABLE_EV),
            "on_or_below_hull": _counted(relaxations, energies, ON_HULL_EV)}


def sun(n: int, relaxations: dict[int, Any], energies: dict[int, EnergyResult],
        novel: set[int] | None) -> dict[str, Any]:
    """The S.U.N. rate: the share of all sampled candidates that are stable (converged,
    <= 0.1 eV/atom above this hull), unique and novel."""
    stable = {i for i, r in relaxations.items() if r.converged and i in energies
              and energies[i].e_above_hull is not None
              and energies[i].e_above_hull <= STABLE_EV}
    missing = [e.reason for e in energies.values() if e.e_above_hull is None]
    reasons: dict[str, int] = {}
    for why in missing:
        key = why.split(" (")[0].split(":")[0]  # "no elemental reference for S", ...
        reasons[key] = reasons.get(key, 0) + 1
    out: dict[str, Any] = {"with_e_above_hull": len(energies) - len(missing),
                           "without_e_above_hull": len(missing),
                           "without_e_above_hull_why": reasons}
    if novel is None:
        out.update(sun_count=None, sun_rate=None,
                   sun_note="novelty was not checked (training=none), so no S.U.N. rate")
    else:
        count = len(stable & novel)
        out.update(sun_count=count, sun_rate=round(count / n, 4) if n else 0.0,
                   sun_note=f"stable, unique and novel candidates out of {n} sampled")
    return out


def write_figure(out_dir: Path, energies: dict[int, EnergyResult], potential: str,
                 relaxations: dict[int, Any]) -> list[str]:
    """A histogram of e_above_hull with the stability cut ([] when no candidate has one)."""
    have = [i for i, e in energies.items() if e.e_above_hull is not None]
    values = np.array([energies[i].e_above_hull for i in have])
    converged = sum(1 for i in have if relaxations[i].converged
                    and energies[i].e_above_hull <= STABLE_EV)
    if not len(values):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    shown = np.clip(values, None, 2.0)
    ax.hist(shown, bins=40, color="#4477aa")
    ax.axvline(STABLE_EV, color="#cc3311", ls="--", label=f"stable: ≤ {STABLE_EV} eV/atom")
    ax.axvline(0.0, color="black", lw=0.8)
    label = {"chgnet": "CHGNet", "emt": "EMT"}.get(potential, potential)
    ax.set_xlabel(f"energy above hull (eV/atom, {label}; values > 2 shown at 2)")
    ax.set_ylabel("candidates")
    ax.set_title(f"{len(values)} candidates with an energy; {int((values <= STABLE_EV).sum())}"
                 f" within {STABLE_EV} eV/atom ({converged} of them converged: 'stable')\n"
                 f"not DFT: {label} and a limited reference set", fontsize=9)
    ax.legend()
    fig.tight_layout()
    bv.save_figure(fig, out_dir / "e_above_hull.png")
    plt.close(fig)
    return ["e_above_hull.png"]

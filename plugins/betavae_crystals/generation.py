"""The `crystals` generator: latent draws -> decoded tensors -> structures -> validity ->
uniqueness -> novelty -> (relaxation), written as CIF files, `candidates.csv` and
`report.json`.

The record asks the core for no samples (`samples="none"`): the generator draws its own
latent codes, by default from a Gaussian mixture fitted to the training structures'
posterior means (`latent=posterior`; see `latents`), or from the prior
(`latent=prior`), seeded from the run. With a target (`target=VALUE` or
`target=NAME=VALUE`) the draws are first moved toward it in latent space (see
`guidance`). The codes are decoded once, with `betavae_core.decode`: by default
(`decode=mode`) the likelihood's mean, which decodes to the most probable species of
each slot, the mean direction of each coordinate's von Mises and the lattice mean;
`decode=sample` draws them instead. Accepted candidates are structurally and
compositionally valid, unique among the generated set and novel against the run's
training split (`run.train`; `training=PATH` names another reference, `training=none`
switches novelty off); each gets `<id>.cif` (and `<id>_relaxed.cif` when relaxed).

Throughput: the checks run on the decoded arrays (`DecodedCells`), not on pymatgen
objects: validity in batches (`validity.*_arrays`), uniqueness and novelty through the
prefilter of `matching` (fingerprints, then the matcher's test emulated on arrays, and
near its tolerance the matcher's test replayed exactly on arrays, the matcher itself only
where the replay declines; with `workers=N` the matcher buckets are shared among N
processes), CIF text and space groups (spglib) straight from the arrays; a Structure
is built only where pymatgen is asked (the matcher, relaxation, the report's `objects`).
Every verdict is the protocol matcher's; the benchmark `benchmarks/crystals_throughput.py`
checks it.

With `relax=chgnet` (or `emt`) the accepted candidates are relaxed (`workers=N`
processes) and each gets a formation energy and an energy above the convex hull built
with the same potential (see `hull`; `reference=PATH` adds the user's structures); the
funnel goes on relaxed -> stable (<= 0.1 eV/atom) -> on or below the hull, the report
gives the S.U.N. rate, and `e_above_hull.png` shows the distribution.
"""

from __future__ import annotations

import csv
import io
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

import betavae_core as bv
from betavae_core import CandidateReport, ConfigError, DataError, DomainData, OutputExistsError

from . import guidance, hull, matcher_arrays, matching, validity
from .latents import DEFAULT_COMPONENTS, latent_draws
from .loaders import load_like
from .relax import CALCULATORS, make_potential, relax_all
from .representation import (
    CrystalRepresentation,
    lattice_matrices,
    single_blas_thread,
)

KEEP = ("novel", "unique", "valid")
DECODE = ("mode", "sample")


class Stopwatch:
    """Seconds per named stage (wall clock, and CPU of this process and of the worker
    processes it waited for: on a shared machine the CPU time says what the stage costs)
    and how many candidates each stage handled."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self._t, self._cpu = time.perf_counter(), _cpu_seconds()

    def lap(self, stage: str, handled: int) -> None:
        now, cpu = time.perf_counter(), _cpu_seconds()
        seconds = now - self._t
        self.stages[stage] = {"seconds": round(seconds, 4),
                              "cpu_seconds": round(cpu - self._cpu, 4),
                              "candidates": int(handled),
                              "per_second": round(handled / seconds, 1) if seconds > 0 else None}
        self._t, self._cpu = now, cpu


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --- options ---------------------------------------------------------------------------
def parse_target(target: Any, prop: dict[str, Any] | None) -> float | None:
    """The target value from `target=VALUE` or `target=NAME=VALUE` (None: no target)."""
    name = None
    if isinstance(target, str) and "=" in target:
        name, _, target = target.partition("=")
    if target is None:
        return None
    if prop is None:
        raise ConfigError("this model learned no property, so it cannot generate toward a "
                          "target; train on data with a property column.")
    if name is not None and name.strip() not in (prop["name"], prop["column"]):
        raise ConfigError(f"this model predicts {prop['name']!r} (column {prop['column']!r}); "
                          f"it cannot target {name.strip()!r}.")
    try:
        return float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"target must be a number; got {target!r}.") from None


def parse_workers(workers: Any) -> int:
    """How many processes relax candidates and share deduplication (default 1: this
    one)."""
    if workers is None:
        return 1
    try:
        value = int(workers)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(workers).strip() != str(value):
        raise ConfigError(f"workers must be a whole number >= 1; got {workers!r}.")
    return value


def parse_relax(relax: Any) -> str | None:
    """The relaxation calculator's name, or None for no relaxation."""
    if relax is None or str(relax).lower() in ("none", "false", ""):
        return None
    if str(relax).lower() not in CALCULATORS:
        raise ConfigError(f"relax must be one of {', '.join(CALCULATORS)}; got {relax!r}.")
    return str(relax).lower()


def training_reference(run: bv.RunContext, training: Any, attrs: dict[str, Any]
                       ) -> tuple[DomainData | None, str]:
    """(the structures novelty is checked against, what they are): the run's training
    split by default, the structures at `training=PATH`, or none (`training=none`, or
    when the run's training split is unknown: the report then says so)."""
    if training is not None and str(training).lower() == "none":
        return None, "not checked (training=none)"
    if training is not None:
        reference = load_like(Path(str(training)), attrs)
        return reference, f"{len(reference)} structures from {training}" + _skipped_note(
            reference.attrs.get("skipped") or {})
    reference = run.train
    if reference is None:
        return None, ("not checked: the run's training split is unknown (pass -g "
                      "training=PATH, or training=none)")
    if reference.attrs.get("representation") != attrs.get("representation"):
        raise DataError("the run's training data no longer encodes as it did at the fit (its "
                        "species or sizes changed); pass -g training=PATH to check novelty "
                        "against it, or training=none.")
    return reference, f"{len(reference)} structures of the run's training split"


def _skipped_note(skipped: dict[str, Any]) -> str:
    """What the reference set left out (species the model has not seen, too many sites,
    files that do not parse), for the report: the same skips, named, as at a fit."""
    if not skipped.get("count"):
        return ""
    shown = "; ".join(skipped.get("first", [])[:3])
    return (f" ({skipped['count']} skipped, which no candidate can match: {shown}"
            f"{' ...' if skipped['count'] > 3 else ''})")


# --- the funnel ------------------------------------------------------------------------
class LazyStructures(Sequence):
    """The decoded items as pymatgen Structures (None for an all-empty item), each built
    on first use: at 100,000 candidates, building them all costs more than every check
    that runs on the arrays."""

    def __init__(self, cells: DecodedCells) -> None:
        self.cells = cells
        self.cache: dict[int, Structure | None] = {}

    def __len__(self) -> int:
        return len(self.cells.classes)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i)
        if i not in self.cache:
            c = self.cells
            keep = c.occupied[i]
            self.cache[i] = (Structure(Lattice(c.matrices[i]), list(c.symbols[c.classes[i][keep]]),
                                       np.mod(c.frac[i][keep], 1.0)) if keep.any() else None)
        return self.cache[i]


class LazyObjects(Mapping):
    """Candidate id -> Structure, built when asked for (the report's `objects`)."""

    def __init__(self, index: dict[str, int], structures: LazyStructures) -> None:
        self.index, self.structures = index, structures

    def __getitem__(self, key: str) -> Structure:
        return self.structures[self.index[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class DecodedCells:
    """Decoded items as arrays: lattice features (n, 6), cell matrices (n, 3, 3),
    fractional coordinates (n, S, 3) and species classes (n, S); the funnel's checks run
    on these, and Structures are built only where pymatgen is needed."""

    rep: CrystalRepresentation
    lattice: np.ndarray
    matrices: np.ndarray
    frac: np.ndarray
    classes: np.ndarray

    @classmethod
    def from_items(cls, rep: CrystalRepresentation, items: Any) -> DecodedCells:
        lattice, frac, classes = rep.split(items)
        return cls(rep, lattice, lattice_matrices(lattice), frac, classes)

    def __post_init__(self) -> None:
        self.occupied = self.classes != 0
        self.symbols = np.array(["X", *self.rep.species], dtype=object)
        self.structures = LazyStructures(self)
        self.counts = validity.reduced_counts(self.classes, self.rep.n_classes)
        self.units = self.occupied.sum(axis=1) // np.maximum(self.counts.sum(axis=1), 1)
        self._formula: dict[bytes, tuple[str, str, int]] = {}
        self._reduced: dict[bytes, str] = {}
        self._cell_numbers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def reduced_formulas(self, index: Sequence[int]) -> list[str]:
        """Reduced formula of each item in `index`, as pymatgen writes it: each distinct
        one computed once (rows looked up by their bytes: `np.unique` over rows sorts
        far slower)."""
        from pymatgen.core import Composition

        out = []
        for row in self.counts[np.asarray(index, dtype=np.int64)]:
            key = row.tobytes()
            name = self._reduced.get(key)
            if name is None:
                name = self._reduced[key] = Composition(
                    {self.rep.species[c - 1]: int(row[c]) for c in np.nonzero(row)[0]}
                ).reduced_formula
            out.append(name)
        return out

    def formula_of(self, i: int) -> tuple[str, str, int]:
        """(reduced formula, formula, formula units) of item i, as pymatgen writes them."""
        from pymatgen.core import Composition

        row, units = self.counts[i], int(self.units[i])
        key = row.tobytes() + units.to_bytes(4, "little")
        if key not in self._formula:
            comp = Composition({self.rep.species[c - 1]: int(row[c]) * units
                                for c in np.nonzero(row)[0]})
            self._formula[key] = ((self.reduced_formulas([i])[0], comp.formula, units)
                                  if units else ("", "", 0))
        return self._formula[key]

    def formulas(self) -> list[str]:
        return [self.formula_of(i)[0] for i in range(len(self.classes))]

    def densities(self) -> np.ndarray:
        """g/cm^3 of every item (pymatgen's `Structure.density`)."""
        from pymatgen.core import Element
        from pymatgen.core.units import Length, Mass

        masses = np.array([0.0] + [float(Element(s).atomic_mass) for s in self.rep.species])
        per_a3 = float(Mass(1.0, "amu").to("g")) / float(Length(1.0, "ang").to("cm")) ** 3
        volume = np.abs(np.linalg.det(self.matrices))
        return masses[self.classes].sum(axis=1) / np.where(volume > 0, volume, np.inf) * per_a3

    def prefilter(self, index: Iterable[int]) -> matching.Prefilter:
        """Fingerprints and matcher buckets of the items in `index`."""
        index = np.asarray(list(index), dtype=np.int64)
        ranks = min(self.rep.max_sites, len(self.rep.species))
        fingerprints = np.zeros((len(self.classes), matching.fingerprint_width(ranks)))
        if len(index):
            fingerprints[index] = matching.distance_fingerprints(
                self.matrices[index], self.frac[index], self.classes[index], ranks=ranks)
        keys = matching.bucket_keys(self.reduced_formulas(index), self.units,
                                    self.occupied.sum(axis=1), self.structures.__getitem__,
                                    index)
        cells, frac = matcher_arrays.cells_for_alignment(self.matrices, self.frac, self.occupied)
        return matching.Prefilter(fingerprints, keys, self.structures.__getitem__, cells, frac,
                                  self.classes)

    def cif(self, i: int) -> str:
        """Item i as pymatgen's `CifWriter` writes it (P 1, 8 decimals), without building
        the Structure."""
        if self._cell_numbers is None:  # lengths, angles and volume of every cell, once
            m = self.matrices
            lengths = np.sqrt(np.sum(m ** 2, axis=2))
            cosines = np.stack([(m[:, (k + 1) % 3] * m[:, (k + 2) % 3]).sum(-1)
                                / (lengths[:, (k + 1) % 3] * lengths[:, (k + 2) % 3])
                                for k in range(3)], axis=1)
            angles = np.arccos(np.clip(cosines, -1.0, 1.0)) * 180.0 / np.pi
            self._cell_numbers = (lengths, angles, np.abs(np.linalg.det(m)))
        lengths, angles, volumes = (a[i] for a in self._cell_numbers)
        reduced, formula, units = self.formula_of(i)
        keep = self.occupied[i]
        frac = np.mod(self.frac[i][keep], 1.0)
        symbols = self.symbols[self.classes[i][keep]]
        head = [f"# generated using pymatgen\ndata_{reduced}",
                "_symmetry_space_group_name_H-M   'P 1'"]
        head += [f"_cell_length_{n}   {v:.8f}" for n, v in zip("abc", lengths, strict=True)]
        head += [f"_cell_angle_{n}   {v:.8f}" for n, v in
                 zip(("alpha", "beta", "gamma"), angles, strict=True)]
        head += ["_symmetry_Int_Tables_number   1",
                 f"_chemical_formula_structural   {reduced}",
                 f"_chemical_formula_sum   {_cif_field(formula)}",
                 f"_cell_volume   {volumes:.8f}",
                 f"_cell_formula_units_Z   {units}",
                 "loop_\n _symmetry_equiv_pos_site_id\n _symmetry_equiv_pos_as_xyz\n"
                 "  1  'x, y, z'",
                 "loop_\n _atom_site_type_symbol\n _atom_site_label\n"
                 " _atom_site_symmetry_multiplicity\n _atom_site_fract_x\n"
                 " _atom_site_fract_y\n _atom_site_fract_z\n _atom_site_occupancy"]
        sites = [f"  {sym}  {sym}{k}  1  {f[0]:.8f}  {f[1]:.8f}  {f[2]:.8f}  1"
                 for k, (sym, f) in enumerate(zip(symbols, frac, strict=True))]
        return "\n".join(head + sites) + "\n"


def _cif_field(value: str) -> str:
    """A CIF value as pymatgen's CifBlock quotes it."""
    return f"'{value}'" if " " in value else value


def space_groups(cells: DecodedCells, index: Sequence[int], symprec: float,
                 workers: int = 1) -> list[str]:
    """`space_group` of the items in `index`, from the arrays (`workers` processes for
    many items)."""
    z = cells.rep.atomic_numbers
    items = []
    for i in index:
        keep = cells.occupied[i]
        items.append((cells.matrices[i], np.mod(cells.frac[i][keep], 1.0),
                      z[cells.classes[i][keep]]))
    return validity.space_group_labels(items, symprec, workers)


def space_group(structure: Structure, symprec: float) -> str:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spglib's deprecation notes, per call
            sga = SpacegroupAnalyzer(structure, symprec=symprec)
            return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except Exception:  # spglib fails on degenerate cells: no space group to report
        return ""


def nearest_training(means: np.ndarray, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Index of, and latent distance to, the nearest training structure (by its
    posterior mean) for each latent code."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(means).query(z.double().numpy(), k=1)
    return np.asarray(idx), np.asarray(dist)


@single_blas_thread
def generate_crystals(run: bv.RunContext, samples: bv.GeneratedSamples, *,
                      latent: str = "posterior", latent_components: int = DEFAULT_COMPONENTS,
                      decode: str = "mode", keep: str = "novel", training: Any = None,
                      target: Any = None, target_steps: int = 200, target_lr: float = 0.05,
                      prior_weight: float = 1.0, relax: str | None = None,
                      relax_steps: int = 200, fmax: float = 0.05, symprec: float = 0.1,
                      workers: Any = None, reference: Any = None) -> CandidateReport:
    """Draw `samples.n` latent codes, decode them into candidate crystals and write the
    accepted ones into `run.out_dir` with a funnel report."""
    if run.out_dir is None:
        raise ConfigError("the crystals generator needs run.out_dir, the folder to write into.")
    out_dir = Path(run.out_dir)
    attrs, model, n = run.attrs, run.model, int(samples.n)
    hull_reference = reference  # the user's hull references; `reference` below: training
    rep = CrystalRepresentation.from_attrs(attrs)
    prop = guidance.property_info(attrs)
    goal = parse_target(target, prop)
    relax = parse_relax(relax)
    workers = parse_workers(workers)
    user_references = ([] if hull_reference is None or relax is None
                       else hull.read_reference(hull_reference))  # before any work
    if decode not in DECODE:
        raise ConfigError(f"decode must be one of {DECODE}; got {decode!r}.")
    if keep not in KEEP:
        raise ConfigError(f"keep must be one of {KEEP}; got {keep!r}.")
    if any(out_dir.glob("*.cif")) or (out_dir / "candidates.csv").exists():
        raise OutputExistsError(f"{out_dir} already holds candidates; they are never "
                                f"overwritten. Choose a new --out.")
    clock = Stopwatch()
    reference, reference_note = training_reference(run, training, attrs)
    if reference is not None:
        model.check_input(reference)  # the fit's checks: shape, vocabulary, support
    clock.lap("load_training", 0 if reference is None else len(reference))
    means = None if reference is None else bv.encode(model, reference)[0]
    z, latent_source = latent_draws(model, n, latent, means, run.torch_generator(), run.seed,
                                    latent_components, run.run_dir)
    clock.lap("latent_draws", n)
    if goal is not None:
        z = guidance.optimise_latents(model, z, goal, attrs, target_steps, target_lr,
                                      prior_weight).cpu()
        clock.lap("latent_optimisation", n)
    decoded = bv.decode(model, z, mean=decode == "mode", sample=decode == "sample",
                        params=True, seed=run.seed)
    items = decoded.mean if decode == "mode" else decoded.sample
    cells = DecodedCells.from_items(rep, items)
    structures = cells.structures
    predicted = guidance.predict(model, decoded.params, attrs)
    clock.lap("decode", n)

    struct_ok, struct_why = validity.structure_validity_arrays(cells.matrices, cells.frac,
                                                               cells.occupied)
    clock.lap("structural_validity", n)
    comp_ok, comp_why = validity.composition_validity_arrays(cells.classes, rep.species)
    clock.lap("compositional_validity", n)
    valid = [int(i) for i in np.nonzero(struct_ok & comp_ok)[0]]
    keys = matching.tensor_keys(cells.lattice, cells.frac, cells.classes)
    pre = cells.prefilter(valid)
    first_of = matching.deduplicate_prefiltered(pre, valid, keys, workers)
    unique = [i for i in valid if first_of[i] == i]
    clock.lap("deduplication", len(valid))

    matched: dict[int, str | None] = {}
    near_idx = near_dist = None
    training_items: list[tuple[str, Structure]] = []
    if reference is not None:
        ref_cells = DecodedCells.from_items(CrystalRepresentation.from_attrs(reference.attrs),
                                            reference.x)
        names = [str(v) for v in reference.metadata.get("name", range(len(reference)))]
        train_set = matching.PrefilteredTrainingSet.build(
            ref_cells.prefilter(range(len(reference))), names)
        matched = train_set.match_all(pre, unique)
        if relax is not None:  # the hull's training references
            training_items = list(zip(names, ref_cells.structures, strict=True))
        near_idx, near_dist = nearest_training(means, z)
        clock.lap("novelty", len(unique))
    novel = [i for i in unique if reference is None or matched[i] is None]
    accepted = {"novel": novel, "unique": unique, "valid": valid}[keep]

    relaxations: dict[int, Any] = {}
    energies: dict[int, hull.EnergyResult] = {}
    stability: dict[str, Any] = {}
    if relax is not None:
        potential = make_potential(relax)  # here too: the hull's references use it
        results = relax_all([structures[i] for i in accepted],
                            potential if workers == 1 else relax, fmax, int(relax_steps),
                            workers=workers, progress=True)
        relaxations = dict(zip(accepted, results, strict=True))
        clock.lap("relaxation", len(accepted))
        energies, stability = hull.assess(relaxations, potential, training_items,
                                          user_references, out_dir, run.run_dir,
                                          fmax, int(relax_steps))
        clock.lap("energy_above_hull", len(energies))

    width = max(5, len(str(n - 1)))
    ids = [f"cand_{i:0{width}d}" for i in range(n)]
    files = _write_cifs(out_dir, ids, cells, accepted, relaxations)
    sg = dict(zip(accepted, space_groups(cells, accepted, symprec, workers),
                  strict=True))
    rows = _rows(ids, cells, struct_ok, struct_why, comp_ok, comp_why, first_of, matched,
                 near_idx, near_dist, reference, predicted, prop, relaxations, sg, set(accepted),
                 reference is not None, energies)
    bv.write_text(out_dir / "candidates.csv", _csv(rows))
    files.append("candidates.csv")
    clock.lap("write", len(accepted))
    summary = _summary(n, struct_ok, comp_ok, valid, unique, novel, accepted, relaxations,
                       reference, reference_note, predicted, prop, goal, clock, keep, decode,
                       relax)
    if relax is not None:
        novel_set = set(novel) if reference is not None else None
        summary["funnel"].update(hull.funnel(relaxations, energies))
        summary["stability"] = {**stability, **hull.sun(n, relaxations, energies, novel_set)}
        files += hull.write_figure(out_dir, energies, relax, relaxations)
    summary["latent"] = latent_source
    summary["options"] = {"latent": latent, "latent_components": latent_components,
                          "relax": relax, "relax_steps": relax_steps, "fmax": fmax,
                          "target": goal, "target_steps": target_steps, "target_lr": target_lr,
                          "prior_weight": prior_weight, "decode": decode, "keep": keep,
                          "training": None if training is None else str(training),
                          "symprec": symprec, "seed": run.seed, "workers": workers,
                          "reference": None if hull_reference is None else str(hull_reference)}
    bv.write_json(out_dir / "report.json", summary)
    files.append("report.json")
    objects = LazyObjects({ids[i]: i for i in accepted}, structures)
    return CandidateReport(objects=objects, summary=summary, files=files)


def _write_cifs(out_dir: Path, ids: Sequence[str], cells: DecodedCells,
                accepted: Sequence[int], relaxations: dict[int, Any]) -> list[str]:
    """One CIF per accepted candidate (and per relaxed one). `out_dir` is the core's
    staging folder, which appears whole or not at all and whose commit syncs every file
    to disk, so the CIFs are written plainly: one sync each instead of two."""
    from pymatgen.io.cif import CifWriter

    files = []
    for i in accepted:
        (out_dir / f"{ids[i]}.cif").write_text(cells.cif(i), encoding="utf-8")
        files.append(f"{ids[i]}.cif")
        relaxed = relaxations.get(i)
        if relaxed is not None and relaxed.structure is not None:
            bv.write_text(out_dir / f"{ids[i]}_relaxed.cif", str(CifWriter(relaxed.structure)))
            files.append(f"{ids[i]}_relaxed.cif")
    return files


def _rows(ids, cells, struct_ok, struct_why, comp_ok, comp_why, first_of, matched,
          near_idx, near_dist, reference, predicted, prop, relaxations, sg, accepted,
          checked_novelty, energies) -> list[dict[str, Any]]:
    names = (reference.metadata.get("name") if reference is not None else None)
    prop_col = f"predicted_{prop['name']}" if prop else None
    rows = []
    formulas, density = cells.formulas(), cells.densities()
    n_sites = cells.occupied.sum(axis=1)
    for i in range(len(n_sites)):
        row: dict[str, Any] = {
            "id": ids[i],
            "formula": formulas[i],
            "space_group": sg.get(i, ""),
            "n_sites": int(n_sites[i]),
            "density": round(float(density[i]), 4) if n_sites[i] and struct_ok[i] else "",
            "structurally_valid": bool(struct_ok[i]),
            "structure_problem": struct_why[i],
            "compositionally_valid": bool(comp_ok[i]),
            "composition_problem": comp_why[i] if not comp_ok[i] else "",
            "unique": i in first_of and first_of[i] == i,
            "duplicate_of": ids[first_of[i]] if i in first_of and first_of[i] != i else "",
            "novel": (i in matched and matched[i] is None) if checked_novelty else "",
            "matches_training": (matched.get(i) or "") if checked_novelty else "",
            "nearest_training": (str(names[int(near_idx[i])]) if names is not None
                                 and near_idx is not None else ""),
            "nearest_latent_distance": (round(float(near_dist[i]), 4) if near_dist is not None
                                        else ""),
        }
        if prop_col:
            row[prop_col] = round(float(predicted[i]), 4) if predicted is not None else ""
        if relaxations:
            r = relaxations.get(i)
            row["relax_status"] = r.status if r else ""
            row["relax_problem"] = r.reason if r else ""
            row["energy_per_atom"] = (round(r.energy_per_atom, 5) if r and r.energy_per_atom
                                      is not None else "")
            row["relax_steps"] = r.steps if r else ""
            row["max_force"] = r.max_force if r and r.max_force is not None else ""
            e = energies.get(i)
            row["e_form_per_atom"] = e.e_form_per_atom if e and e.e_form_per_atom is not None \
                else ""
            row["e_above_hull"] = e.e_above_hull if e and e.e_above_hull is not None else ""
            row["hull_problem"] = e.reason if e else ""
        row["accepted"] = i in accepted
        row["cif"] = f"{ids[i]}.cif" if i in accepted else ""
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _accepted_means(keep: str, novelty_checked: bool) -> str:
    if keep == "valid":
        return "valid (valid)"
    if keep == "unique" or not novelty_checked:
        note = "" if keep == "unique" else "; novelty not checked"
        return f"{keep} (valid, unique{note})"
    return "novel (valid, unique, novel)"


def _summary(n, struct_ok, comp_ok, valid, unique, novel, accepted, relaxations, reference,
             reference_note, predicted, prop, goal, clock, keep, decode, relax
             ) -> dict[str, Any]:
    n_struct = int(sum(struct_ok))
    n_comp_after = sum(1 for i in range(n) if struct_ok[i] and comp_ok[i])
    funnel: dict[str, Any] = {
        "sampled": n,
        "structurally_valid": n_struct,
        "compositionally_valid": n_comp_after,
        "unique": len(unique),
        "novel": len(novel) if reference is not None else None,
    }
    if relax is not None:
        statuses = [r.status for r in relaxations.values()]
        funnel["relaxed"] = statuses.count("converged")
    summary: dict[str, Any] = {
        "funnel": funnel,
        "rates": {
            "structural_validity": _rate(n_struct, n),
            "compositional_validity": _rate(int(sum(comp_ok)), n),
            "validity": _rate(len(valid), n),
            "uniqueness_of_valid": _rate(len(unique), len(valid)),
            "novelty_of_unique": (_rate(len(novel), len(unique)) if reference is not None
                                  else None),
        },
        "accepted": len(accepted),
        "accepted_means": _accepted_means(keep, reference is not None),
        "novelty_reference": reference_note,
        "decode": decode,
        "stages": clock.stages,
    }
    if relax is not None:
        statuses = [r.status for r in relaxations.values()]
        summary["relaxation"] = {"calculator": relax, **{s: statuses.count(s) for s in
                                 ("converged", "not_converged", "skipped", "failed")}}
        energies = [r.energy_per_atom for r in relaxations.values()
                    if r.energy_per_atom is not None]
        if energies:
            summary["relaxation"]["energy_per_atom_mean"] = float(np.mean(energies))
    if prop is not None and predicted is not None:
        acc = predicted[list(accepted)].numpy() if accepted else np.array([])
        summary["property"] = {
            "name": prop["name"], "unit": prop["unit"], "target": goal,
            "training_mean": prop["mean"], "training_std": prop["std"],
            "predicted_mean_all": float(predicted.mean()),
            "predicted_mean_accepted": float(acc.mean()) if len(acc) else None,
            "predicted_std_accepted": float(acc.std()) if len(acc) else None,
        }
    return summary

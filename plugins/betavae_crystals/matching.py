"""Uniqueness among generated structures and novelty against the training set, with the
protocol's StructureMatcher, compared only where a match is possible.

What keeps 100,000 candidates tractable, each exact with respect to the matcher (it can
only skip comparisons the matcher would reject, never merge structures it would not):
- candidates whose decoded tensors agree after rounding (species per slot, coordinates
  to 0.01, lattice numbers to 0.01) are duplicates without a matcher call;
- a bucket key of reduced formula and the number of sites of the primitive cell: the
  matcher (no supercells) compares species by reduced formula and then needs a one-to-one
  site mapping between the two primitive cells, so structures in different buckets never
  match. A cell holding one formula unit is primitive, so its count needs no symmetry
  search;
- a lattice bound: `fit(s1, s2)` looks for lattice vectors of s1 within a factor
  (1 + ltol) of s2's Niggli lengths, after scaling both to one volume, so s1's successive
  minima (its Niggli lengths) must each be below (1 + ltol) times s2's; candidates that
  fail it against a representative skip that matcher call;
- each structure is reduced (Niggli, primitive) once, as the matcher would, and the
  matcher is called with `skip_structure_reduction=True` (the same comparison, without
  redoing both reductions at every call).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from .representation import protocol_matcher

HASH_DECIMALS = 2


def _fits(a: Structure, b: Structure, reduced: bool = False) -> bool:
    try:
        return bool(protocol_matcher().fit(a, b, skip_structure_reduction=reduced))
    except Exception:  # a degenerate cell can make the matcher fail: not a match
        return False


LENGTH_SLACK = 1.01  # Niggli's own tolerance, on top of the matcher's ltol


@dataclass
class Prepared:
    """A structure as the matcher compares it: reduced once, with its bucket key and its
    volume-normalised Niggli lengths."""

    reduced: Structure | None
    key: tuple[str, int]
    lengths: np.ndarray


def prepare(structure: Structure) -> Prepared:
    """The matcher's reduction of `structure` (Niggli, then primitive), its bucket key
    (reduced formula, primitive site count) and its Niggli lengths over V^(1/3)."""
    matcher = protocol_matcher()
    formula = structure.composition.reduced_formula
    try:
        reduced = matcher._get_reduced_structure(structure, primitive_cell=True, niggli=True)
        lengths = np.array(reduced.lattice.abc) / reduced.volume ** (1 / 3)
    except Exception:  # a degenerate cell: compared as is, by the matcher itself
        return Prepared(None, (formula, len(structure)), np.zeros(3))
    return Prepared(reduced, (formula, len(reduced)), lengths)


def bucket_key(structure: Structure) -> tuple[str, int]:
    """(reduced formula, sites in the primitive cell): structures with different keys
    never match. One formula unit per cell: the cell is primitive, no search needed."""
    comp = structure.composition
    formula, units = comp.get_reduced_formula_and_factor()
    if round(units) == 1:
        return formula, len(structure)
    return prepare(structure).key


def may_match(s1: Prepared, s2: Prepared) -> bool:
    """False only when `fit(s1, s2)` cannot succeed (the lattice bound above)."""
    if s1.reduced is None or s2.reduced is None:
        return True
    bound = (1 + protocol_matcher().ltol) * LENGTH_SLACK
    return bool(np.all(s1.lengths < bound * s2.lengths))


def prepared_fits(s1: Prepared, s2: Prepared, raw1: Structure, raw2: Structure) -> bool:
    """The matcher's verdict on (s1, s2), from their cached reductions."""
    if not may_match(s1, s2):
        return False
    if s1.reduced is None or s2.reduced is None:
        return _fits(raw1, raw2)
    return _fits(s1.reduced, s2.reduced, reduced=True)


def tensor_keys(lattice: np.ndarray, frac: np.ndarray, classes: np.ndarray) -> list[bytes]:
    """A hashable key per decoded item: species per slot, rounded coordinates and
    lattice numbers (the shortcut for exact duplicates)."""
    lat = np.round(lattice, HASH_DECIMALS)
    f = np.round(np.mod(frac, 1.0), HASH_DECIMALS) % 1.0
    f = np.where(classes[..., None] == 0, 0.0, f)
    return [lat[i].tobytes() + f[i].tobytes() + classes[i].astype(np.int16).tobytes()
            for i in range(len(lat))]


def deduplicate(structures: Sequence[Structure | None], candidates: Sequence[int],
                keys: Sequence[bytes] | None = None) -> dict[int, int]:
    """For each index in `candidates`, the index of the first earlier candidate it
    matches (itself when it is the first of its kind)."""
    first_of: dict[int, int] = {}
    by_key: dict[bytes, int] = {}
    buckets: dict[tuple[str, int], list[int]] = defaultdict(list)
    prepared: dict[int, Prepared] = {}

    def prep(i: int) -> Prepared:
        if i not in prepared:
            prepared[i] = prepare(structures[i])
        return prepared[i]

    for i in candidates:
        s = structures[i]
        if keys is not None and keys[i] in by_key:
            first_of[i] = by_key[keys[i]]
            continue
        units = s.composition.get_reduced_formula_and_factor()[1]
        bucket = buckets[(s.composition.reduced_formula, len(s)) if round(units) == 1
                         else prep(i).key]
        match = next((j for j in bucket
                      if prepared_fits(prep(i), prep(j), s, structures[j])), None)
        if match is None:
            bucket.append(i)
            match = i
        first_of[i] = match
        if keys is not None:
            by_key[keys[i]] = match
    return first_of


@dataclass
class TrainingSet:
    """Training structures in matcher buckets (formula, primitive sites), for novelty."""

    names: list[str]
    groups: dict[tuple[str, int], list[int]]
    structures: list[Structure]
    prepared: dict[int, Prepared] = field(default_factory=dict)

    @classmethod
    def build(cls, structures: Sequence[Structure], names: Sequence[str]) -> TrainingSet:
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, s in enumerate(structures):
            groups[bucket_key(s)].append(i)
        return cls(list(names), dict(groups), list(structures))

    def _prep(self, j: int) -> Prepared:
        if j not in self.prepared:
            self.prepared[j] = prepare(self.structures[j])
        return self.prepared[j]

    def match(self, structure: Structure) -> str | None:
        """Name of a training structure that matches `structure`, or None (novel)."""
        group = self.groups.get(bucket_key(structure), ())
        if not group:
            return None
        mine = prepare(structure)
        for j in group:
            if prepared_fits(mine, self._prep(j), structure, self.structures[j]):
                return self.names[j]
        return None

    def same_formula(self, structure: Structure) -> int:
        formula = structure.composition.reduced_formula
        return sum(len(v) for k, v in self.groups.items() if k[0] == formula)

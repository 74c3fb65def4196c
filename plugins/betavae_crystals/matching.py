"""Uniqueness among generated structures and novelty against the training set, with the
protocol's StructureMatcher, compared only within one reduced formula so it scales.

Two shortcuts keep 10,000 candidates fast: structures are grouped by reduced formula
(different formulas never match), and inside a group, candidates whose decoded tensors
agree after rounding (species per slot, coordinates to 0.01, lattice numbers to 0.01)
are duplicates without a matcher call. Everything else is compared against the group's
representatives with `StructureMatcher.fit`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from .representation import protocol_matcher

HASH_DECIMALS = 2


def _fits(a: Structure, b: Structure) -> bool:
    try:
        return bool(protocol_matcher().fit(a, b))
    except Exception:  # a degenerate cell can make the matcher fail: not a match
        return False


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
    groups: dict[str, list[int]] = defaultdict(list)
    for i in candidates:
        s = structures[i]
        if keys is not None and keys[i] in by_key:
            first_of[i] = by_key[keys[i]]
            continue
        formula = s.composition.reduced_formula
        match = next((j for j in groups[formula] if _fits(s, structures[j])), None)
        if match is None:
            groups[formula].append(i)
            match = i
        first_of[i] = match
        if keys is not None:
            by_key[keys[i]] = match
    return first_of


@dataclass
class TrainingSet:
    """Training structures grouped by reduced formula, for novelty checks."""

    names: list[str]
    groups: dict[str, list[int]]
    structures: list[Structure]

    @classmethod
    def build(cls, structures: Sequence[Structure], names: Sequence[str]) -> TrainingSet:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(structures):
            groups[s.composition.reduced_formula].append(i)
        return cls(list(names), dict(groups), list(structures))

    def match(self, structure: Structure) -> str | None:
        """Name of a training structure that matches `structure`, or None (novel)."""
        for j in self.groups.get(structure.composition.reduced_formula, ()):
            if _fits(structure, self.structures[j]):
                return self.names[j]
        return None

    def same_formula(self, structure: Structure) -> int:
        return len(self.groups.get(structure.composition.reduced_formula, ()))

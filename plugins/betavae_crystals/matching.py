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
  redoing both reductions at every call);
- in the funnel (`Prefilter`), a fingerprint and an emulation of the matcher's test on
  arrays settle clear pairs, and the pairs near its tolerance get the matcher's own test
  replayed on arrays (`strict_fit`, ~100x cheaper than a matcher call), the matcher
  itself only where the replay cannot promise its answer;
- buckets are independent, so with `workers=N` they are dealt among N processes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Structure

from . import validity
from .matcher_arrays import (
    PAIR_CHUNK,
    StrictCell,
    aligned_distances,
    site_assignments,
    sorted_sites,
    strict_cell,
    strict_fit_cells,
)
from .representation import protocol_matcher
from .validity import CENTRE, CHUNK, periodic_distances

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


NEIGHBOURS = 6  # nearest distances kept per (centre species, neighbour species)


def species_ranks(classes: np.ndarray) -> np.ndarray:
    """Rank of each slot's species among the species of its item (0 for the lowest class
    present, ...; -1 for an empty slot): the same labels for two items of one formula.
    Counted as the distinct lower classes (their first slots) of the item's S slots."""
    c = np.asarray(classes, dtype=np.int64)
    earlier = np.tri(c.shape[1], c.shape[1], -1, dtype=bool)  # [t, u]: slot u before t
    first = ~((c[:, :, None] == c[:, None, :]) & earlier).any(axis=2) & (c != 0)
    ranks = ((c[:, None, :] < c[:, :, None]) & first[:, None, :]).sum(axis=2)
    return np.where(c == 0, -1, ranks)


def fingerprint_width(ranks: int, neighbours: int = NEIGHBOURS) -> int:
    """Entries of a fingerprint over `ranks` species."""
    return ranks * neighbours + ranks * ranks


def distance_fingerprints(matrices: np.ndarray, frac: np.ndarray, classes: np.ndarray,
                          neighbours: int = NEIGHBOURS, ranks: int | None = None
                          ) -> np.ndarray:
    """A fingerprint per structure that the matcher's equivalences leave unchanged
    (choice of cell, supercell, order of sites, translation, rotation, scale), in units
    of (volume per atom)^(1/3): for each centre species a, the `neighbours` shortest
    distances from an a-site to any site under the periodic metric (own images
    included), averaged over the a-sites; then for each pair of species (a, b), the
    shortest a-b distance, averaged over the a-sites. Flat (n, R * neighbours + R * R), R
    the most species in one item unless `ranks` says more, species labelled by rank
    (`species_ranks`)."""
    classes = np.asarray(classes, dtype=np.int64)
    labels = species_ranks(classes)
    n, sites = classes.shape
    r = max(int(labels.max(initial=0)) + 1, int(ranks or 0))
    shells = np.zeros((n, r, neighbours))
    pairs = np.zeros((n, r, r))
    idx = np.arange(sites)
    for start in range(0, n, CHUNK):
        sl = slice(start, start + CHUNK)
        square, reduced = periodic_distances(matrices[sl], frac[sl])
        rk = labels[sl]
        occupied = rk >= 0
        square[:, idx, idx, CENTRE] = np.inf  # a site is not its own neighbour
        square = np.where(occupied[:, None, :, None], square, np.inf)
        scale = (np.abs(np.linalg.det(reduced)) / np.maximum(occupied.sum(axis=1), 1)) ** (2 / 3)
        square /= scale[:, None, None, None]
        flat = square.reshape(len(rk), sites, -1)
        near = np.sort(np.partition(flat, neighbours - 1, axis=2)[..., :neighbours], axis=2)
        near = np.sqrt(near)
        closest = np.sqrt(square.min(axis=3))  # (m, S, S)
        # nearest site of rank b from each site, (m, S) per b: the same for every centre a
        to = [np.where((rk == b)[:, None, :], closest, np.inf).min(axis=2) for b in range(r)]
        for a in range(r):
            centre = rk == a
            weight = centre / np.maximum(centre.sum(axis=1, keepdims=True), 1)
            shells[sl, a] = np.einsum("ms,msk->mk", weight, np.where(centre[..., None],
                                                                     near, 0.0))
            for b in range(r):
                pairs[sl, a, b] = np.where(centre, to[b], 0.0).sum(axis=1) / np.maximum(
                    centre.sum(axis=1), 1)
    pairs = np.where(np.isfinite(pairs), pairs, 0.0)
    return np.concatenate([shells.reshape(n, -1), pairs.reshape(n, -1)], axis=1)


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


# --- the fingerprint prefilter ---------------------------------------------------------
# Two candidates of one bucket whose fingerprints (`distance_fingerprints`) differ by
# more than SURELY_DIFFERENT (largest difference of one entry, in (volume per atom)^(1/3))
# are different without further work. The rest are judged by `aligned_distances`, the
# matcher's own test emulated on arrays: below stol * (1 - EMULATION_MARGIN) the same,
# above stol * (1 + EMULATION_MARGIN) different; in between, or when the emulation
# cannot run (a supercell in the bucket, too many site orders, no signed permutation of
# the axes within the lattice tolerances), the matcher's test decides: replayed step by
# step on arrays (`strict_fit`, below) for cells of one formula unit, by the protocol's
# matcher itself where the replay declines (other cells, or a comparison within
# STRICT_EPS of one of its thresholds).
# Calibrated against the matcher on Perov-5 candidates (mixture draws of the fitted
# 80/20 model; 10,000 draws, 8,082 pairs judged): pairs the matcher calls the same differ
# in fingerprint by up to 0.46 (99th percentile 0.35), so the fingerprint alone rules
# out few pairs of this loose matcher (stol 0.5). With a 5 % margin the funnel agreed
# with the matcher alone on every candidate of the benchmark's anchor; a 2 % margin
# changed 9 of 9,880 deduplication verdicts. `benchmarks/crystals_throughput.py`
# reports the agreement of the whole funnel with the matcher alone.
SURELY_DIFFERENT = 0.6
EMULATION_MARGIN = 0.05


class _Rows:
    """A growing (k, D) array of fingerprints (amortised appends)."""

    def __init__(self, width: int) -> None:
        self.data = np.empty((4, width))
        self.size = 0

    def append(self, row: np.ndarray) -> None:
        if self.size == len(self.data):
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.size] = row
        self.size += 1

    def view(self) -> np.ndarray:
        return self.data[:self.size]


@dataclass
class Prefilter:
    """Fingerprints, bucket keys, cells for the emulated matcher and lazily built
    structures of n decoded items, counting how pairs were decided: by fingerprint,
    by the emulation, by the matcher."""

    fingerprints: np.ndarray
    keys: dict[int, tuple[str, int]]
    structure: Callable[[int], Structure]
    cells: np.ndarray
    frac: np.ndarray
    classes: np.ndarray
    prepared: dict[int, Prepared] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("fingerprint", "emulation", "strict", "matcher"), 0))

    def prep(self, i: int) -> Prepared:
        if i not in self.prepared:
            self.prepared[i] = prepare(self.structure(i))
        return self.prepared[i]

    def atoms(self, i: Any) -> Any:
        """Occupied slots of item(s) i."""
        return (self.classes[i] != 0).sum(axis=-1)

    def __post_init__(self) -> None:
        self.sorted_frac, self.sorted_classes = sorted_sites(self.frac, self.classes)
        # site orders depend only on which sorted sites share a species: one batch each
        self.sorted_ranks = species_ranks(self.sorted_classes)
        counts = validity.reduced_counts(self.classes, int(self.classes.max(initial=0)) + 1)
        self.single_unit = counts.sum(axis=1) == self.atoms(slice(None))
        self.strict_cells: dict[int, StrictCell] = {}

    def strict(self, i: int) -> StrictCell:
        """Item i's `StrictCell`, computed once."""
        if i not in self.strict_cells:
            self.strict_cells[i] = strict_cell(*self.arrays(i))
        return self.strict_cells[i]

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell, fractional coordinates, classes) of item i's atoms, in slot order."""
        keep = self.classes[i] != 0
        return self.cells[i], self.frac[i][keep], self.classes[i][keep]

    def fits(self, i: int, other: Prefilter, j: int) -> bool:
        """The matcher's verdict on (item i, item j of `other`): replayed on arrays
        (`strict_fit`) for cells of one formula unit, else asked of the matcher."""
        if self.single_unit[i] and other.single_unit[j]:
            verdict = strict_fit_cells(self.strict(i), other.strict(j))
            if verdict is not None:
                self.counts["strict"] += 1
                return verdict
        self.counts["matcher"] += 1
        return prepared_fits(self.prep(i), other.prep(j), self.structure(i), other.structure(j))

    def near(self, i: int, rows: np.ndarray) -> np.ndarray:
        """Positions of the rows (fingerprints) not surely different from item i."""
        if not len(rows):
            return np.zeros(0, dtype=np.int64)
        close = np.abs(rows - self.fingerprints[i]).max(axis=1) <= SURELY_DIFFERENT
        self.counts["fingerprint"] += int(len(rows) - close.sum())
        return np.nonzero(close)[0]

    def emulate(self, ia: Sequence[int], other: Prefilter, jb: Sequence[int]) -> np.ndarray:
        """`aligned_distances` for the pairs (ia[p] of this set, jb[p] of `other`), in
        batches of one species pattern; NaN where it cannot run (other atoms, e.g. a
        supercell, or too many site orders)."""
        ia, jb = np.asarray(ia, dtype=np.int64), np.asarray(jb, dtype=np.int64)
        out = np.full(len(ia), np.nan)
        if not len(ia):
            return out
        pattern_a, pattern_b = self.sorted_classes[ia], other.sorted_classes[jb]
        w = min(pattern_a.shape[1], pattern_b.shape[1])  # the sets may differ in slots
        alike = ((pattern_a[:, :w] == pattern_b[:, :w]).all(axis=1)
                 & ~pattern_a[:, w:].any(axis=1) & ~pattern_b[:, w:].any(axis=1))
        groups: dict[bytes, list[int]] = defaultdict(list)
        ranks = self.sorted_ranks[ia]
        for p in np.nonzero(alike)[0]:
            groups[ranks[p].tobytes()].append(int(p))
        for members in groups.values():
            classes = ranks[members[0]] + 1
            atoms = int((classes != 0).sum())
            assignments = site_assignments(tuple(int(c) for c in classes[:atoms]))
            if assignments is None:
                continue
            for start in range(0, len(members), PAIR_CHUNK):
                p = np.asarray(members[start:start + PAIR_CHUNK])
                out[p] = aligned_distances(
                    self.cells[ia[p]], self.sorted_frac[ia[p], :atoms],
                    other.cells[jb[p]], other.sorted_frac[jb[p], :atoms], assignments)
        return out

    def decide(self, i: int, other: Prefilter, members: Sequence[int], near: np.ndarray,
               emulated: np.ndarray) -> int | None:
        """Position in `members` of the first one the matcher would call the same as
        item i, from the emulated distances of the `near` positions (the matcher
        asked where they are ambiguous), or None."""
        stol = protocol_matcher().stol
        for k, v in zip(near, emulated, strict=True):
            if np.isfinite(v) and abs(v - stol) > EMULATION_MARGIN * stol:
                self.counts["emulation"] += 1
                if v < stol:
                    return int(k)
                continue
            if self.fits(i, other, int(members[k])):
                return int(k)
        return None

    def first_fit(self, i: int, other: Prefilter, rows: np.ndarray, members: Sequence[int]
                  ) -> int | None:
        """Position in `members` (items of `other`, fingerprints `rows`) of the first one
        the matcher would call the same as item i, or None."""
        return first_fits(self, other, [(i, members, rows)])[0]


def first_fits(pre: Prefilter, other: Prefilter,
               todo: Sequence[tuple[int, Sequence[int], np.ndarray]]) -> list[int | None]:
    """For each (item i of `pre`, members: items of `other`, their fingerprint rows) of
    `todo`, the position in members of the first one the matcher would call the same
    as i, or None; every pair the fingerprints leave emulated in a few batched calls."""
    nears = [pre.near(i, rows) for i, _, rows in todo]
    ia = [i for (i, _, _), near in zip(todo, nears, strict=True) for _ in near]
    jb = [members[k] for (_, members, _), near in zip(todo, nears, strict=True)
          for k in near]
    emulated = pre.emulate(ia, other, jb)
    out, at = [], 0
    for (i, members, _), near in zip(todo, nears, strict=True):
        out.append(pre.decide(i, other, members, near, emulated[at:at + len(near)]))
        at += len(near)
    return out


def bucket_keys(formulas: Sequence[str], units: np.ndarray, n_sites: np.ndarray,
                structure: Callable[[int], Structure], index: Sequence[int]
                ) -> dict[int, tuple[str, int]]:
    """`bucket_key` of the items in `index` (reduced formula `formulas[k]` for item
    `index[k]`; formula units and sites per item): one formula unit per cell needs no
    structure; more units need the primitive cell's size (the structure is built and
    reduced)."""
    return {int(i): (f, int(n_sites[i])) if units[i] == 1 else prepare(structure(i)).key
            for i, f in zip(index, formulas, strict=True)}


def deduplicate_prefiltered(pre: Prefilter, candidates: Sequence[int],
                            keys: Sequence[bytes] | None = None, workers: int = 1
                            ) -> dict[int, int]:
    """`deduplicate` with the prefilter: the same first earlier candidate the matcher
    would pick. A candidate's verdict depends only on the earlier ones of its bucket, so
    the buckets are independent: they advance together, one candidate each per wave
    (each wave's pairs emulated in a few batched calls), and with `workers` > 1 they are
    shared among that many processes (from PARALLEL_FROM candidates on), with the same
    verdicts."""
    first_of: dict[int, int] = {}
    lead: dict[bytes, int] = {}
    followers: list[tuple[int, int]] = []
    buckets: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in candidates:
        if keys is not None and keys[i] in lead:  # the same decoded tensor
            followers.append((i, lead[keys[i]]))
            continue
        if keys is not None:
            lead[keys[i]] = i
        buckets[pre.keys[i]].append(i)
    members = list(buckets.values())
    if workers > 1 and len(lead or candidates) >= PARALLEL_FROM:
        first_of = _deduplicate_in_processes(pre, members, workers)
    else:
        first_of = deduplicate_buckets(pre, members)
    for i, j in followers:
        first_of[i] = first_of[j]
    return {i: first_of[i] for i in candidates}


def deduplicate_buckets(pre: Prefilter, buckets: Sequence[Sequence[int]]) -> dict[int, int]:
    """First match of every candidate of `buckets` (each a bucket's candidates in their
    order) within its bucket, the buckets advancing in waves."""
    first_of: dict[int, int] = {}
    reps: list[list[int]] = [[] for _ in buckets]
    rows = [_Rows(pre.fingerprints.shape[1]) for _ in buckets]
    for wave in range(max((len(m) for m in buckets), default=0)):
        todo = [(b, m[wave]) for b, m in enumerate(buckets) if len(m) > wave]
        found = first_fits(pre, pre, [(i, reps[b], rows[b].view()) for b, i in todo])
        for (b, i), k in zip(todo, found, strict=True):
            if k is None:
                reps[b].append(i)
                rows[b].append(pre.fingerprints[i])
                first_of[i] = i
            else:
                first_of[i] = reps[b][k]
    return first_of


# --- deduplication over worker processes ---------------------------------------------
# The worker processes are forked where the platform allows it: they inherit the
# prefilter instead of receiving it pickled, and they start at once, whereas a spawned
# process re-imports torch and the caller's main module (~10 s each under load, a good
# part of the work it would take over). They run numpy and pymatgen only, never torch,
# whose thread pool is what makes forking a torch process unsafe.
PARALLEL_FROM = 2_000  # candidates; fewer: starting the processes costs more than it saves
SHARDS_PER_WORKER = 3  # buckets dealt into this many shards per worker, largest first
_SHARED: dict[str, Prefilter] = {}


def _share(pre: Prefilter) -> None:
    _SHARED["pre"] = pre


def _deduplicate_shard(buckets: list[list[int]]) -> tuple[dict[int, int], dict[str, int]]:
    """`deduplicate_buckets` in a worker process, with the pair counts it added."""
    pre = _SHARED["pre"]
    before = dict(pre.counts)
    first_of = deduplicate_buckets(pre, buckets)
    return first_of, {k: v - before[k] for k, v in pre.counts.items()}


def shards(buckets: Sequence[Sequence[int]], n: int) -> list[list[Sequence[int]]]:
    """`buckets` dealt into at most n shards of about equal work (pairs grow with the
    square of a bucket's size): each bucket, largest first, to the lightest shard."""
    out: list[list[Sequence[int]]] = [[] for _ in range(n)]
    load = [0] * n
    for bucket in sorted(buckets, key=len, reverse=True):
        k = load.index(min(load))
        out[k].append(bucket)
        load[k] += len(bucket) ** 2
    return [s for s in out if s]


def _deduplicate_in_processes(pre: Prefilter, buckets: Sequence[Sequence[int]],
                              workers: int) -> dict[int, int]:
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    first_of: dict[int, int] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(
            method), initializer=_share, initargs=(pre,)) as pool:
        for part, counts in pool.map(_deduplicate_shard,
                                     shards(buckets, workers * SHARDS_PER_WORKER)):
            first_of.update(part)
            for k, v in counts.items():
                pre.counts[k] += v
    return first_of


@dataclass
class PrefilteredTrainingSet:
    """Training structures for novelty, in matcher buckets with their fingerprints."""

    names: list[str]
    pre: Prefilter
    groups: dict[tuple[str, int], list[int]]
    rows: dict[tuple[str, int], np.ndarray]

    @classmethod
    def build(cls, pre: Prefilter, names: Sequence[str]) -> PrefilteredTrainingSet:
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for j, key in pre.keys.items():
            groups[key].append(j)
        rows = {k: pre.fingerprints[v] for k, v in groups.items()}
        return cls(list(names), pre, dict(groups), rows)

    def match_all(self, candidates: Prefilter, index: Sequence[int]) -> dict[int, str | None]:
        """`match` of every candidate in `index`, the pairs emulated in batches."""
        none = np.zeros((0, self.pre.fingerprints.shape[1]))
        todo = [(i, self.groups.get(candidates.keys[i], []),
                 self.rows.get(candidates.keys[i], none)) for i in index]
        found = first_fits(candidates, self.pre, todo)
        return {i: None if k is None else self.names[group[k]]
                for (i, group, _), k in zip(todo, found, strict=True)}

    def match(self, candidates: Prefilter, i: int) -> str | None:
        """Name of the first training structure the matcher calls the same as candidate
        i (as `TrainingSet.match`), or None (novel)."""
        key = candidates.keys[i]
        group = self.groups.get(key)
        if not group:
            return None
        k = candidates.first_fit(i, self.pre, self.rows[key], group)
        return None if k is None else self.names[group[k]]

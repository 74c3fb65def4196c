"""Validity checks of the CDVAE protocol: structural (distances, volume) and
compositional (charge neutrality with electronegativity order, via SMACT's data).

Structural: a structure is valid when every interatomic distance is at least 0.5 Å and
the cell volume at least 0.1 Å^3. We also count the distance from an atom to its own
periodic images (the shortest lattice vector), which CDVAE's check leaves out; a cell
that fails only that is rare and is physically impossible anyway.

Compositional, following CDVAE's SMACT test: a single element or an all-metal alloy is
valid; otherwise some choice of one known oxidation state per element must make the
reduced formula neutral and pass the Pauling electronegativity test (cations less
electronegative than anions; missing electronegativities pass, as in CDVAE). An element
SMACT has no data for contributes no oxidation state, so such a compound is invalid
with a reason — never an exception.

Batches (`structure_validity_arrays`, `composition_validity_arrays`) apply the same
criteria to decoded tensors without building pymatgen objects: the cells are reduced
pairwise (Gauss reduction of each pair of rows, vectorised), the distances taken to the
27 neighbouring images of the reduced cell, and each distinct reduced formula judged once.
pymatgen's `distance_matrix` also takes the nearest of the 27 images of its LLL cell, so
both give the shortest distance of a reduced cell; `benchmarks/crystals_throughput.py`
reports how often the batch and the per-structure check agree (every one of 10,000
Perov-5 candidates).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from functools import cache, lru_cache

import numpy as np
from pymatgen.core import Composition, Structure

MIN_DISTANCE = 0.5  # Å
MIN_VOLUME = 0.1  # Å^3
MAX_COMBINATIONS = 200_000


def structure_validity(structure: Structure | None, cutoff: float = MIN_DISTANCE,
                       min_volume: float = MIN_VOLUME) -> tuple[bool, str]:
    """(valid, reason) for the distance and volume criteria."""
    if structure is None or len(structure) == 0:
        return False, "no atoms"
    matrix = structure.lattice.matrix
    if not np.isfinite(matrix).all():
        return False, "non-finite lattice"
    volume = abs(float(np.linalg.det(matrix)))
    if not volume >= min_volume:
        return False, f"volume {volume:.3g} Å^3 < {min_volume}"
    shortest = min(structure.lattice.get_lll_reduced_lattice().abc)
    if shortest < cutoff:
        return False, f"lattice vector {shortest:.3g} Å < {cutoff} Å"
    if len(structure) > 1:
        dist = structure.distance_matrix
        np.fill_diagonal(dist, np.inf)
        closest = float(dist.min())
        if closest < cutoff:
            return False, f"atoms {closest:.3g} Å apart < {cutoff} Å"
    return True, ""


@cache
def _element_data(symbol: str) -> tuple[tuple[int, ...], float | None, bool]:
    """(oxidation states, Pauling electronegativity, is a metal) from SMACT; empty
    states when SMACT does not know the element."""
    import smact

    try:
        element = smact.Element(symbol)
    except Exception:  # SMACT raises KeyError/NameError for elements it lacks
        return (), None, symbol in smact.metals
    states = tuple(int(s) for s in (element.oxidation_states or ()))
    eneg = element.pauling_eneg
    eneg = float(eneg) if eneg is not None and math.isfinite(float(eneg)) else None
    return states, eneg, symbol in smact.metals


def _pauling_ok(states: tuple[int, ...], enegs: tuple[float | None, ...]) -> bool:
    """Every cation less electronegative than every anion (missing data passes)."""
    if any(e is None for e in enegs):
        return True
    cations = [e for s, e in zip(states, enegs, strict=True) if s > 0]
    anions = [e for s, e in zip(states, enegs, strict=True) if s < 0]
    return not cations or not anions or max(cations) < min(anions)


@lru_cache(maxsize=100_000)
def _formula_validity(symbols: tuple[str, ...], counts: tuple[int, ...]) -> tuple[bool, str]:
    if len(symbols) == 1:
        return True, ""
    data = [_element_data(s) for s in symbols]
    if all(d[2] for d in data):
        return True, "alloy"
    missing = [s for s, d in zip(symbols, data, strict=True) if not d[0]]
    if missing:
        return False, f"no oxidation states known for {', '.join(missing)}"
    states = [d[0] for d in data]
    enegs = tuple(d[1] for d in data)
    if math.prod(len(s) for s in states) > MAX_COMBINATIONS:
        return False, "too many oxidation-state combinations to check"
    charge_neutral = False
    for combo in itertools.product(*states):
        if sum(c * n for c, n in zip(combo, counts, strict=True)) != 0:
            continue
        charge_neutral = True
        if _pauling_ok(combo, enegs):
            return True, ""
    return False, ("electronegativity order fails" if charge_neutral
                   else "no charge-neutral oxidation states")


def composition_validity(composition: Composition) -> tuple[bool, str]:
    """(valid, reason) for charge neutrality and electronegativity order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns on elements without an X
        reduced, _ = composition.get_reduced_composition_and_factor()
    items = sorted((el.symbol, int(round(n))) for el, n in reduced.items())
    return _formula_validity(tuple(s for s, _ in items), tuple(n for _, n in items))


# --- batches of decoded tensors --------------------------------------------------------
IMAGES = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.float64)
CENTRE = 13  # IMAGES[13] is (0, 0, 0)
CHUNK = 4096  # items per block of the distance computation (memory ~ CHUNK * S^2 * 27)


def reduce_cells(matrices: np.ndarray, rounds: int = 6) -> np.ndarray:
    """Pairwise (Gauss) reduced bases of many cells (n, 3, 3), rows the lattice vectors:
    each row is shortened by integer multiples of the others until no pair can be made
    shorter; the same lattice, a basis whose 27 neighbouring images hold the shortest
    vectors of all but pathological cells."""
    m = np.array(matrices, dtype=np.float64, copy=True)
    for _ in range(rounds):
        changed = False
        for i, j in itertools.permutations(range(3), 2):
            bj = m[:, j]
            norm = np.einsum("nk,nk->n", bj, bj)
            mu = np.rint(np.einsum("nk,nk->n", m[:, i], bj) / np.where(norm > 0, norm, 1.0))
            mu = np.where(np.isfinite(mu), mu, 0.0)
            if mu.any():
                changed = True
                m[:, i] -= mu[:, None] * bj
        if not changed:
            break
    return m


def periodic_distances(matrices: np.ndarray, frac: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(squared distances (n, S, S, 27), reduced cells (n, 3, 3)): from site i to each of
    the 27 nearest images of site j, in the pairwise-reduced cell."""
    reduced = reduce_cells(matrices)
    cart = np.asarray(frac, dtype=np.float64) @ matrices
    f = cart @ np.linalg.inv(reduced)
    cart = (f - np.floor(f)) @ reduced  # every site inside the reduced cell
    n, sites = cart.shape[:2]
    images = IMAGES @ reduced  # (n, 27, 3)
    diff = (cart[:, None, :, :] - cart[:, :, None, :]).reshape(n, sites * sites, 3)
    square = ((diff * diff).sum(-1)[:, :, None] + 2.0 * diff @ images.transpose(0, 2, 1)
              + (images * images).sum(-1)[:, None, :])
    return np.maximum(square, 0.0).reshape(n, sites, sites, len(IMAGES)), reduced


def structure_validity_arrays(matrices: np.ndarray, frac: np.ndarray, occupied: np.ndarray,
                              cutoff: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME
                              ) -> tuple[np.ndarray, list[str]]:
    """`structure_validity` for n decoded items at once: cells (n, 3, 3), fractional
    coordinates (n, S, 3) and which slots hold an atom (n, S). (valid, reasons)."""
    matrices = np.asarray(matrices, dtype=np.float64)
    occupied = np.asarray(occupied, dtype=bool)
    n = len(matrices)
    ok = np.zeros(n, dtype=bool)
    why = [""] * n
    finite = np.isfinite(matrices).all(axis=(1, 2))
    volume = np.abs(np.linalg.det(np.where(finite[:, None, None], matrices, 0.0)))
    for i in np.nonzero(~occupied.any(axis=1))[0]:
        why[i] = "no atoms"
    for i in np.nonzero(occupied.any(axis=1) & ~finite)[0]:
        why[i] = "non-finite lattice"
    todo = occupied.any(axis=1) & finite
    for i in np.nonzero(todo & ~(volume >= min_volume))[0]:
        why[i] = f"volume {volume[i]:.3g} Å^3 < {min_volume}"
    todo &= volume >= min_volume
    index = np.nonzero(todo)[0]
    for start in range(0, len(index), CHUNK):
        rows = index[start:start + CHUNK]
        square, reduced = periodic_distances(matrices[rows], frac[rows])
        occ = occupied[rows]
        lengths = (IMAGES @ reduced) ** 2  # the site's own images: the lattice vectors
        lengths = lengths.sum(-1)
        lengths[:, CENTRE] = np.inf
        shortest = np.sqrt(lengths.min(axis=1))
        pair = occ[:, :, None] & occ[:, None, :] & ~np.eye(occ.shape[1], dtype=bool)[None]
        closest = np.sqrt(np.where(pair, square.min(axis=3), np.inf).min(axis=(1, 2)))
        for k, i in enumerate(rows):
            if shortest[k] < cutoff:
                why[i] = f"lattice vector {shortest[k]:.3g} Å < {cutoff} Å"
            elif closest[k] < cutoff:
                why[i] = f"atoms {closest[k]:.3g} Å apart < {cutoff} Å"
            else:
                ok[i] = True
    return ok, why


def reduced_counts(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Atoms of each species class per item (n, V), divided by their common divisor
    (class 0, empty, counts nothing): the reduced formula as integers."""
    classes = np.asarray(classes, dtype=np.int64)
    flat = (np.arange(len(classes))[:, None] * n_classes + classes).ravel()
    counts = np.bincount(flat, minlength=len(classes) * n_classes).reshape(-1, n_classes)
    counts[:, 0] = 0
    divisor = np.gcd.reduce(counts, axis=1)
    return counts // np.maximum(divisor, 1)[:, None]


def composition_validity_arrays(classes: np.ndarray, species: Sequence[str]
                                ) -> tuple[np.ndarray, list[str]]:
    """`composition_validity` for n decoded items at once from their species classes
    (n, S) (class c is species[c - 1], 0 empty): each distinct reduced formula is judged
    once. (valid, reasons); an item without atoms is invalid ("no atoms")."""
    counts = reduced_counts(classes, len(species) + 1)
    rows = np.ascontiguousarray(counts).view(np.dtype((np.void, counts.shape[1] * 8)))
    _, first, inverse = np.unique(rows.ravel(), return_index=True, return_inverse=True)
    unique = counts[first]
    verdicts = []
    for row in unique:
        present = np.nonzero(row)[0]
        if not len(present):
            verdicts.append((False, "no atoms"))
            continue
        items = sorted((species[c - 1], int(row[c])) for c in present)
        verdicts.append(_formula_validity(tuple(s for s, _ in items),
                                          tuple(k for _, k in items)))
    ok = np.array([v[0] for v in verdicts], dtype=bool)[inverse]
    reasons = np.array([v[1] for v in verdicts], dtype=object)[inverse]
    return ok, reasons.tolist()


# --- space groups of many cells ----------------------------------------------------------
def _space_group(cell: tuple[np.ndarray, np.ndarray, np.ndarray], symprec: float) -> str:
    """"SYMBOL (NUMBER)" of one (lattice, fractional coordinates, atomic numbers), as
    pymatgen's SpacegroupAnalyzer finds it (spglib, angle tolerance 5 degrees); "" when
    spglib fails (degenerate cells)."""
    import spglib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=5)
    except Exception:  # spglib raises on degenerate cells: no space group to report
        return ""
    return f"{data.international} ({data.number})" if data is not None else ""


def _space_group_batch(args: tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], float]
                       ) -> list[str]:
    cells, symprec = args
    return [_space_group(c, symprec) for c in cells]


POOL_MIN_CELLS = 2000  # fewer: starting worker processes costs more than it saves


def space_group_labels(cells: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                       symprec: float, workers: int = 1) -> list[str]:
    """`_space_group` of each cell; `workers` processes share them when there are at
    least POOL_MIN_CELLS (spglib takes milliseconds per cell: the slowest part of
    writing 100,000 candidates)."""
    cells = list(cells)
    if workers <= 1 or len(cells) < POOL_MIN_CELLS:
        return _space_group_batch((cells, symprec))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = max(1, len(cells) // (8 * workers))
    batches = [(cells[i:i + size], symprec) for i in range(0, len(cells), size)]
    # spawn, not fork: the parent holds torch and BLAS thread pools that fork would copy
    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        return [label for batch in pool.map(_space_group_batch, batches) for label in batch]

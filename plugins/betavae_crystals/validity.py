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
"""

from __future__ import annotations

import itertools
import math
import warnings
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

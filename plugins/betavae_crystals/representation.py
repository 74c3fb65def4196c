"""An invertible fixed-size tensor for a crystal: lattice, fractional coordinates, species.

One item is a 2-D array of shape (max_sites + 2, 3 + V), V = number of species classes
(the training vocabulary plus "empty" in column 3):

    row 0      columns 0-2: log L11, log L22, log L33       columns 3..: Z / 100 of each class
    row 1      columns 0-2: L21 / L11, L31 / L11, L32 / L22  columns 3..: 0
    row 2 + i  columns 0-2: fractional coordinates of site i columns 3..: one-hot species

L is the lower-triangular Cholesky factor of the metric tensor G = M M^T of the cell
matrix M (rows a, b, c): the same cell rotated so that a lies along x and b in the xy
plane. Any six real numbers give a valid, non-degenerate cell (the diagonal is exp of
the first three), so a decoder can never produce an impossible lattice; the off-diagonal
entries are divided by a length so the six numbers carry shape, not size, apart from
the logs. Row 0 also records the species vocabulary (atomic numbers), so the likelihood
can check that data and model agree.

Structures are first reduced to a canonical cell: the primitive cell (optional; kept only
when it still matches the structure under the protocol's StructureMatcher), then
Niggli reduction, with the basis made right-handed by flipping one axis (which keeps
every atom in place). Sites are ordered by species class (classes are sorted by Pauling
electronegativity, then atomic number), then by coordinates; the origin is moved onto
the first site of the first class, so a translation of the crystal does not change the
tensor. Empty slots come last, with coordinates 0. Shapes alone tell the layout:
`max_sites = rows - 2`, `V = columns - 3`. The order only makes the encoding unique: the
likelihood scores decoded slots against the true sites under their best assignment
(`likelihoods`, `site_matching`), so a decoder need not reproduce the order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any

import numpy as np
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Element, Lattice, Structure

from betavae_core import DataError

LATTICE_ROWS = 2
COORD_COLS = 3
EMPTY = 0  # species class 0 is "no atom in this slot"
Z_SCALE = 100.0
COORD_DECIMALS = 4
PRIMITIVE_TOLERANCE = 0.05  # Å; pymatgen's default 0.25 finds cells some structures lack


def single_blas_thread(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run `func` with one BLAS thread: matching, symmetry and relaxation do thousands of
    3x3 solves, where BLAS threads only contend (up to 100x slower on a busy host)."""
    from threadpoolctl import threadpool_limits

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1):
            return func(*args, **kwargs)

    return wrapper


@lru_cache(maxsize=1)
def protocol_matcher() -> StructureMatcher:
    """The matcher of the CDVAE protocol (stol 0.5, angle_tol 10, ltol 0.3)."""
    return StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)


def layout_of(event_shape: Sequence[int]) -> tuple[int, int]:
    """(max_sites, number of species classes incl. empty) from an item's shape."""
    if len(event_shape) != 2 or event_shape[0] < LATTICE_ROWS + 1 or event_shape[1] < 4:
        raise DataError(
            f"a crystal item has shape (max_sites + 2, 3 + species classes); got "
            f"{tuple(event_shape)}. Load structures with a betavae_crystals loader."
        )
    return int(event_shape[0]) - LATTICE_ROWS, int(event_shape[1]) - COORD_COLS


def species_order(symbols: Iterable[str]) -> list[str]:
    """Element symbols sorted by Pauling electronegativity, then atomic number (elements
    without an electronegativity, such as noble gases, go last)."""
    def key(symbol: str) -> tuple[float, int]:
        el = Element(symbol)
        try:
            x = float(el.X)
        except (TypeError, ValueError):
            x = math.nan
        return (x if math.isfinite(x) else 99.0, el.Z)

    return sorted(set(symbols), key=key)


# --- lattices --------------------------------------------------------------------------
def lattice_features(matrix: np.ndarray) -> np.ndarray:
    """Six numbers for a cell matrix (rows a, b, c): log of the Cholesky diagonal and the
    off-diagonal entries divided by the diagonal entry of their row's first length."""
    metric = matrix @ matrix.T
    chol = np.linalg.cholesky(metric)
    return np.array([
        math.log(chol[0, 0]), math.log(chol[1, 1]), math.log(chol[2, 2]),
        chol[1, 0] / chol[0, 0], chol[2, 0] / chol[0, 0], chol[2, 1] / chol[1, 1],
    ])


def lattice_matrices(features: np.ndarray) -> np.ndarray:
    """Inverse of `lattice_features` for many cells: (n, 6) -> (n, 3, 3) lower-triangular."""
    f = np.asarray(features, dtype=np.float64)
    diag = np.exp(np.clip(f[:, :3], -30.0, 30.0))
    out = np.zeros((len(f), 3, 3))
    out[:, 0, 0], out[:, 1, 1], out[:, 2, 2] = diag[:, 0], diag[:, 1], diag[:, 2]
    out[:, 1, 0] = f[:, 3] * diag[:, 0]
    out[:, 2, 0] = f[:, 4] * diag[:, 0]
    out[:, 2, 1] = f[:, 5] * diag[:, 1]
    return out


# --- canonical cells -------------------------------------------------------------------
def check_ordered(structure: Structure, name: str) -> None:
    """Raise `DataError` unless every site holds exactly one element with occupancy 1."""
    if not structure.is_ordered:
        site = next(s for s in structure if not s.is_ordered)
        raise DataError(f"{name}: partial occupancy ({site.species}) — only ordered "
                        f"structures can be learned; order it first (e.g. pymatgen's "
                        f"OrderDisorderedStructureTransformation).")
    for site in structure:
        el = site.specie
        if not isinstance(el, Element):
            el = getattr(el, "element", el)
        if not isinstance(el, Element) or el.Z < 1:
            raise DataError(f"{name}: site species {site.species_string!r} is not a chemical "
                            f"element.")


def canonical_cell(structure: Structure, primitive: bool = True) -> Structure:
    """The primitive (optional), Niggli-reduced, right-handed cell of `structure`,
    with plain elements as species (oxidation states and properties dropped)."""
    s = structure.copy()
    s.remove_oxidation_states()
    s = Structure(s.lattice, [site.specie for site in s], s.frac_coords)
    if primitive:
        reduced = s.get_primitive_structure(tolerance=PRIMITIVE_TOLERANCE)
        # A looser primitive cell than the structure supports would not match it again.
        if len(reduced) < len(s) and protocol_matcher().fit(s, reduced):
            s = reduced
    s = s.get_reduced_structure("niggli")
    matrix = s.lattice.matrix.copy()
    frac = s.frac_coords.copy()
    if np.linalg.det(matrix) < 0:  # flip c and its coordinate: same atoms, right-handed
        matrix[2] *= -1
        frac[:, 2] *= -1
    return Structure(Lattice(matrix), s.species, np.mod(frac, 1.0))


def _wrap(frac: np.ndarray) -> np.ndarray:
    f = np.round(np.mod(frac, 1.0), COORD_DECIMALS + 2)
    f[f >= 1.0 - 10 ** -(COORD_DECIMALS + 1)] = 0.0
    return f


def ordered_sites(classes: np.ndarray, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sites moved so the first site of the first class is at the origin, then sorted by
    class and coordinates. Among several sites of that class, the anchor is the one whose
    own coordinates sort first (a deterministic choice)."""
    frac = _wrap(frac)
    first = classes.min()
    candidates = np.nonzero(classes == first)[0]
    keyed = np.round(frac[candidates], COORD_DECIMALS)
    anchor = candidates[np.lexsort(keyed.T[::-1])[0]]
    shifted = _wrap(frac - frac[anchor])
    rounded = np.round(shifted, COORD_DECIMALS)
    order = np.lexsort((rounded[:, 2], rounded[:, 1], rounded[:, 0], classes))
    return classes[order], shifted[order]


def too_many_sites(cell: Structure, limit: int | None, primitive: bool) -> str:
    """Why `cell` (canonical) has more sites than `limit` allows ("" when it fits): the
    loaders' `max_sites` and a fitted model's size are checked by this one test."""
    if limit is None or len(cell) <= int(limit):
        return ""
    return (f"{len(cell)} sites in its {'primitive ' if primitive else ''}cell "
            f"({cell.composition.reduced_formula}); the maximum is {int(limit)}")


@dataclass(frozen=True)
class CrystalRepresentation:
    """The vocabulary and size that map structures to tensors and back.

    `species` lists element symbols in class order (class i + 1 is `species[i]`; class 0
    is empty); `max_sites` is the number of site slots.
    """

    species: tuple[str, ...]
    max_sites: int
    primitive: bool = True

    @classmethod
    def fit(cls, structures: Sequence[Structure], primitive: bool = True,
            max_sites: int | None = None) -> CrystalRepresentation:
        """Vocabulary and site count from (canonical) structures."""
        symbols = {site.specie.symbol for s in structures for site in s}
        n_max = max(len(s) for s in structures)
        return cls(tuple(species_order(symbols)), int(max_sites or n_max), primitive)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> CrystalRepresentation:
        """The representation a loader recorded in `DomainData.attrs["representation"]`."""
        rep = attrs.get("representation")
        if not rep:
            raise DataError("these attributes carry no crystal representation; the model was "
                            "not fit on data from a betavae_crystals loader.")
        return cls(tuple(rep["species"]), int(rep["max_sites"]), bool(rep["primitive"]))

    def to_attrs(self) -> dict[str, Any]:
        return {"species": list(self.species), "max_sites": self.max_sites,
                "primitive": self.primitive, "layout": "rows: lattice(2), sites(max_sites); "
                "columns: 3 values, species one-hot (class 0 empty)"}

    @property
    def n_classes(self) -> int:
        return len(self.species) + 1

    @property
    def event_shape(self) -> tuple[int, int]:
        return (self.max_sites + LATTICE_ROWS, COORD_COLS + self.n_classes)

    @property
    def atomic_numbers(self) -> np.ndarray:
        """Z of each class (0 for empty)."""
        return np.array([0] + [Element(s).Z for s in self.species], dtype=np.int64)

    # --- encoding -----------------------------------------------------------------------
    def encode_one(self, structure: Structure, name: str = "structure",
                   canonical: bool = False) -> np.ndarray:
        """One structure -> (max_sites + 2, 3 + V) float64 array."""
        check_ordered(structure, name)
        cell = structure if canonical else canonical_cell(structure, self.primitive)
        too_many = too_many_sites(cell, self.max_sites, self.primitive)
        if too_many:
            raise DataError(f"{name}: {too_many}.")
        index = {s: i + 1 for i, s in enumerate(self.species)}
        symbols = [site.specie.symbol for site in cell]
        unknown = sorted({s for s in symbols if s not in index})
        if unknown:
            raise DataError(f"{name}: {cell.composition.reduced_formula} holds element(s) "
                            f"{', '.join(unknown)} outside the training vocabulary "
                            f"({', '.join(self.species)}).")
        classes, frac = ordered_sites(np.array([index[s] for s in symbols]), cell.frac_coords)
        item = np.zeros(self.event_shape)
        item[0, :3] = lattice_features(cell.lattice.matrix)[:3]
        item[1, :3] = lattice_features(cell.lattice.matrix)[3:]
        item[0, COORD_COLS:] = self.atomic_numbers / Z_SCALE
        n = len(classes)
        item[LATTICE_ROWS:LATTICE_ROWS + n, :3] = frac
        item[LATTICE_ROWS + np.arange(n), COORD_COLS + classes] = 1.0
        item[LATTICE_ROWS + n:, COORD_COLS + EMPTY] = 1.0
        return item

    def encode(self, structures: Sequence[Structure], names: Sequence[str] | None = None
               ) -> torch.Tensor:
        """Many structures -> float tensor (n, max_sites + 2, 3 + V)."""
        names = names or [f"structure {i}" for i in range(len(structures))]
        return torch.as_tensor(np.stack([self.encode_one(s, n) for s, n in
                                         zip(structures, names, strict=True)]),
                               dtype=torch.float32)

    # --- decoding -----------------------------------------------------------------------
    def decode_arrays(self, lattice: np.ndarray, frac: np.ndarray, classes: np.ndarray
                      ) -> list[Structure | None]:
        """Structures from lattice features (n, 6), coordinates (n, S, 3) and classes
        (n, S); None where every slot is empty."""
        matrices = lattice_matrices(lattice)
        out: list[Structure | None] = []
        symbols = np.array(["X", *self.species], dtype=object)
        for m, f, c in zip(matrices, frac, classes, strict=True):
            keep = c != EMPTY
            if not keep.any():
                out.append(None)
                continue
            out.append(Structure(Lattice(m), list(symbols[c[keep]]), np.mod(f[keep], 1.0)))
        return out

    def split(self, x: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items (n, S + 2, 3 + V) -> lattice features (n, 6), coordinates (float64) and
        classes. Only the lattice and coordinate columns are widened; the class is the
        argmax of the species columns as they are (widening would not change it). At
        100,000 items the species columns are most of the array."""
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        lattice = np.concatenate([a[:, 0, :3], a[:, 1, :3]], axis=1).astype(np.float64)
        sites = a[:, LATTICE_ROWS:]
        return (lattice, sites[..., :3].astype(np.float64),
                sites[..., COORD_COLS:].argmax(axis=-1))

    def decode(self, x: torch.Tensor | np.ndarray) -> list[Structure | None]:
        """Items (n, S + 2, 3 + V) -> Structures (None for an all-empty item)."""
        return self.decode_arrays(*self.split(x))

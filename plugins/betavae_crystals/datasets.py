"""Crystals made on the spot from pymatgen's and ase's own constructors, for the demo,
the tests and a first try (`betavae train toy_perovskites`, registered in `plugin` with
the crystals training defaults): nothing is downloaded.

`toy_perovskites`: ideal cubic ABX3 perovskites (space group Pm-3m) over a grid of A, B
and X elements, each with a lattice constant from ionic radii (a = sqrt(2) (r_A + r_X),
the A-X contact) and its Goldschmidt tolerance factor t = (r_A + r_X) / (sqrt(2) (r_B +
r_X)) as the property, both from pymatgen's Shannon radii. Not DFT data: a stand-in that
has the shape of Perov-5.

`emt_metals` (Python only): fcc, bcc and hcp cells of the metals ASE's EMT calculator
covers, for trying relaxation (`-g relax=emt`).
"""

from __future__ import annotations

import math
import warnings
from itertools import product

import numpy as np
from pymatgen.core import Lattice, Species, Structure

from betavae_core import ConfigError, DomainData

from .crystal_data import from_structures

A_SITES = {"Ca": 2, "Sr": 2, "Ba": 2, "Pb": 2, "Na": 1, "K": 1, "La": 3, "Y": 3}
B_SITES = {"Ti": 4, "Zr": 4, "Sn": 4, "Hf": 4, "Nb": 5, "Ta": 5, "Mn": 4, "Al": 3,
           "Ga": 3, "Fe": 3, "Mg": 2, "Zn": 2}
X_SITES = {"O": -2, "F": -1}


def _radius(symbol: str, charge: int, cn: str) -> float:
    sp = Species(symbol, charge)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen notes which spin state it used
        try:
            return float(sp.get_shannon_radius(cn, spin="High Spin" if symbol in ("Mn", "Fe")
                                               else ""))
        except Exception:
            return float(sp.ionic_radius or sp.element.atomic_radius)


def perovskite(a_el: str, b_el: str, x_el: str) -> tuple[Structure, float]:
    """An ideal cubic perovskite and its tolerance factor."""
    ra = _radius(a_el, A_SITES[a_el], "XII" if a_el not in ("La", "Y") else "VIII")
    rb = _radius(b_el, B_SITES[b_el], "VI")
    rx = _radius(x_el, X_SITES[x_el], "VI")
    lattice = math.sqrt(2) * (ra + rx)
    structure = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(lattice), [a_el, b_el, x_el],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    return structure, (ra + rx) / (math.sqrt(2) * (rb + rx))


def toy_perovskites(charge_balanced: bool = True) -> tuple[list[Structure], list[float],
                                                          list[str]]:
    """(structures, tolerance factors, names) of the A x B x X grid; with
    `charge_balanced`, only combinations whose nominal charges sum to zero."""
    out, tol, names = [], [], []
    for a, b, x in product(A_SITES, B_SITES, X_SITES):
        if charge_balanced and A_SITES[a] + B_SITES[b] + 3 * X_SITES[x] != 0:
            continue
        s, t = perovskite(a, b, x)
        out.append(s)
        tol.append(t)
        names.append(f"{a}{b}{x}3")
    return out, tol, names


def load_toy_perovskites(jitter: float = 0.02, copies: int = 4, seed: int = 0) -> DomainData:
    """The toy perovskites as `DomainData`; `copies` > 1 repeats each with its lattice
    scaled by 1 +- `jitter` (uniform), so a fit has more than a few dozen items."""
    if int(copies) < 1 or not 0 <= float(jitter) < 0.5:
        raise ConfigError(f"copies must be >= 1 and jitter in [0, 0.5); got {copies}, "
                          f"{jitter}.")
    base, tol, names = toy_perovskites()
    rng = np.random.default_rng(seed)
    structures, values, labels = [], [], []
    for k in range(int(copies)):
        for s, t, name in zip(base, tol, names, strict=True):
            scaled = s.copy()
            if k and jitter:
                scaled.scale_lattice(s.volume * (1 + rng.uniform(-jitter, jitter)) ** 3)
            structures.append(scaled)
            values.append(t)
            labels.append(name if k == 0 else f"{name}#{k}")
    data = from_structures(structures, {"tolerance_factor": values}, names=labels,
                           property="tolerance_factor")
    data.attrs["source"] = {"kind": "dataset", "name": "toy_perovskites",
                            "options": {"jitter": jitter, "copies": copies, "seed": seed}}
    return data


EMT_METALS = {"Cu": 3.61, "Ni": 3.52, "Al": 4.05, "Ag": 4.09, "Au": 4.08, "Pd": 3.89,
              "Pt": 3.92}


def emt_metals(copies: int = 3, jitter: float = 0.03, seed: int = 0) -> list[Structure]:
    """fcc, bcc and hcp cells of EMT's metals, lattice constants jittered by +- jitter."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(copies)):
        for symbol, a in EMT_METALS.items():
            f = 1 + rng.uniform(-jitter, jitter)
            out.append(bulk(symbol, "fcc", a=a * f))
            out.append(bulk(symbol, "bcc", a=a * f / 2 ** (1 / 3)))
            out.append(bulk(symbol, "hcp", a=a * f / math.sqrt(2), c=a * f * 1.633 / math.sqrt(2)))
    return [AseAtomsAdaptor.get_structure(a) for a in out]

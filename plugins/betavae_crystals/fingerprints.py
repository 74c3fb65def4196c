"""Structural and compositional fingerprints for the coverage metrics, computed with
pymatgen alone (matminer is not a dependency).

Structural: for every site, CrystalNN's weight of each coordination number 1..24 (what
matminer's `CrystalNNFingerprint.from_preset("cn")` returns), averaged over sites.
CDVAE uses the "ops" preset, which adds local order parameters per coordination number;
ours is its coordination-weight part, so distances are comparable in kind but not equal.

Compositional ("Magpie-style"): six statistics (minimum, maximum, range, fraction-
weighted mean, mean absolute deviation, value of the most abundant element) of 16
element properties pymatgen has: atomic number, Mendeleev number, atomic mass, melting
point, group, row, atomic radius, Pauling electronegativity, s/p/d/f and total valence
electrons, and s/p/d/f unfilled valence states. Magpie's 132 features add covalent
radius, ground-state volume, band gap, magnetic moment and space group, which pymatgen
does not tabulate; we have 96. Distances are taken after standardising each feature
with the reference set's mean and standard deviation.
"""

from __future__ import annotations

import re
import warnings
from functools import cache, lru_cache

import numpy as np
from pymatgen.core import Composition, Element, Structure

MAX_CN = 24
ELEMENT_PROPERTIES = (
    "Z", "mendeleev_no", "atomic_mass", "melting_point", "group", "row", "atomic_radius",
    "X", "s_valence", "p_valence", "d_valence", "f_valence", "valence", "s_unfilled",
    "p_unfilled", "d_unfilled", "f_unfilled", "unfilled",
)
SHELL_CAPACITY = {"s": 2, "p": 6, "d": 10, "f": 14}


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _valence(el: Element) -> dict[str, float]:
    """Valence electrons per subshell outside the noble-gas core, and unfilled states."""
    text = el.electronic_structure
    text = re.sub(r"^\[[A-Za-z]+\]\.?", "", text)
    counts = {"s": 0.0, "p": 0.0, "d": 0.0, "f": 0.0}
    for _, shell, count in re.findall(r"(\d+)([spdf])(\d+)", text):
        counts[shell] += float(count)
    out = {f"{k}_valence": v for k, v in counts.items()}
    out["valence"] = sum(counts.values())
    for k, v in counts.items():
        out[f"{k}_unfilled"] = SHELL_CAPACITY[k] - v if v > 0 else 0.0
    out["unfilled"] = sum(out[f"{k}_unfilled"] for k in counts)
    return out


@cache
def element_vector(symbol: str) -> np.ndarray:
    """The element properties (NaN where pymatgen has no value)."""
    el = Element(symbol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = {
            "Z": el.Z, "mendeleev_no": _float(el.mendeleev_no),
            "atomic_mass": _float(el.atomic_mass), "melting_point": _float(el.melting_point),
            "group": el.group, "row": el.row, "atomic_radius": _float(el.atomic_radius),
            "X": _float(el.X), **_valence(el),
        }
    return np.array([_float(values[p]) for p in ELEMENT_PROPERTIES])


@cache
def _fill_values() -> np.ndarray:
    table = np.stack([element_vector(Element.from_Z(z).symbol) for z in range(1, 95)])
    return np.nanmedian(table, axis=0)


def composition_fingerprint(composition: Composition) -> np.ndarray:
    """Min, max, range, mean, mean absolute deviation and the most abundant element's
    value of each element property (len = 6 x number of properties)."""
    amounts = composition.fractional_composition.get_el_amt_dict()
    symbols = sorted(amounts)
    frac = np.array([amounts[s] for s in symbols])
    table = np.stack([element_vector(s) for s in symbols])
    table = np.where(np.isnan(table), _fill_values(), table)
    mean = frac @ table
    dev = frac @ np.abs(table - mean)
    mode = table[int(np.argmax(frac))]
    return np.concatenate([table.min(0), table.max(0), table.max(0) - table.min(0), mean,
                           dev, mode])


def structure_fingerprint(structure: Structure) -> np.ndarray:
    """CrystalNN coordination-number weights (1..24) averaged over sites."""
    cnn = _crystal_nn()
    out = np.zeros(MAX_CN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(structure)):
            try:
                weights = cnn.get_nn_data(structure, i).cn_weights
            except Exception:
                continue  # an isolated site has no neighbours: all-zero weights
            for cn, w in weights.items():
                if 1 <= cn <= MAX_CN:
                    out[cn - 1] += w
    return out / max(len(structure), 1)


@lru_cache(maxsize=1)
def _crystal_nn():
    from pymatgen.analysis.local_env import CrystalNN

    return CrystalNN()

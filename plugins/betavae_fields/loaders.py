"""The `lattice_npz` loader: one's own ensembles as an .npz archive.

The archive holds `configs` (n, L, L) and one control value per configuration
(`temperature`, or `kappa` for phi^4). Energies and magnetisations are recomputed from
the configurations, so they are the same observables the named datasets carry.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from betavae_core import ConfigError, DataError, DomainData, check_finite

from . import montecarlo as mc
from .datasets import ensemble_data
from .lattice import lattice_size

ZIP_MAGIC = b"PK\x03\x04"
CONTROL_KEYS = ("temperature", "kappa")


def claims_lattice_npz(path: Path) -> bool:
    """An .npz archive holding `configs` and `temperature` (or `kappa`)."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as fh:
            if fh.read(4) != ZIP_MAGIC:
                return False
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return "configs.npy" in names and any(f"{k}.npy" in names for k in CONTROL_KEYS)


def load_lattice_npz(path: Path, model: str = "auto", lam: float = 1.0) -> DomainData:
    """Configurations (n, L, L) with their control parameter; `model` is ising, xy or phi4
    ("auto": +-1 values mean ising, else a temperature means xy and kappa means phi4).
    Energies and magnetisations are recomputed from the configurations."""
    with np.load(path, allow_pickle=False) as arrays:
        configs = np.asarray(arrays["configs"])
        key = next(k for k in CONTROL_KEYS if k in arrays)
        control = np.asarray(arrays[key], dtype=np.float64).reshape(-1)
    if configs.ndim != 3:
        raise DataError(f"{path}: configs must have shape (n, L, L); got {configs.shape}.")
    L = lattice_size(configs.shape[1:], what=f"configurations in {path}")
    if len(control) != len(configs):
        raise DataError(f"{path}: {len(configs)} configurations but {len(control)} {key} "
                        f"values; give one per configuration.")
    check_finite(configs.astype(np.float64), f"{path}: configs")
    bad = np.flatnonzero(~(control > 0))
    if len(bad):
        raise DataError(f"{path}: {key} must be > 0; row {bad[0]} holds {control[bad[0]]}.")
    if model == "auto":
        model = "ising" if np.isin(configs, (-1, 1)).all() else (
            "xy" if key == "temperature" else "phi4")
    ens = _ensemble_from_arrays(model, configs, control, key, lam, L)
    return ensemble_data(ens, str(path))


def _ensemble_from_arrays(model: str, configs: np.ndarray, control: np.ndarray, key: str,
                          lam: float, L: int) -> mc.Ensemble:
    if model == "ising":
        bad = ~np.isin(configs, (-1, 1))
        if bad.any():
            item, row, col = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(f"Ising spins must be -1 or +1; configuration {item} holds "
                            f"{configs[item, row, col]} at site ({row}, {col}).")
        energy, mag = mc.ising_observables(configs)
    elif model == "xy":
        energy, mag = mc.xy_observables(configs)
    elif model == "phi4":
        energy, mag = mc.phi4_observables(configs, control, lam)
    else:
        raise ConfigError(f"model must be auto, ising, xy or phi4; got {model!r}.")
    return mc.Ensemble(
        model=model, configs=configs, control=control, energy=np.asarray(energy),
        magnetization=np.asarray(mag), tau={}, spacing={},
        params={"L": L, "n": len(configs), "lam": lam}, control_name=key,
    )

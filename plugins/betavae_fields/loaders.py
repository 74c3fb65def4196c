"""The `lattice_npz` loader: one's own ensembles as an .npz archive.

The archive holds `configs` (n, L, L) and one control value per configuration
(`temperature`, or `kappa` for phi^4). Energies and magnetisations are recomputed from
the configurations, so they are the same observables the named datasets carry.

Which lattice model the values are (`model="auto"`) is read from them, and an ambiguous
archive is never read one way in silence: +-1 values are Ising spins; 0/1 values are
Ising spins too, mapped to -1/+1 with a warning that says so (`-o model=xy` reads them
as angles instead); other values with a temperature are XY angles only when they look
like angles in radians (within [-2 pi, 2 pi], not all whole numbers), and otherwise the
archive is refused with the options to choose from.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from betavae_core import ConfigError, DataError, DomainData, check_finite

from . import montecarlo as mc
from .datasets import ensemble_data
from .lattice import check_spins, lattice_size

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
    ("auto": read from the values, see `guess_model`; ising reads 0/1 spins as -1/+1).
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
        model = guess_model(configs, key, path)
    extra = {}
    if model == "ising" and is_binary(configs):
        configs = 2 * configs.astype(np.int8) - 1  # 0/1 spins as -1/+1
        extra["spins_read_as"] = "0/1 mapped to -1/+1"
    ens = _ensemble_from_arrays(model, configs, control, key, lam, L, path)
    return ensemble_data(ens, str(path), extra)


def is_binary(configs: np.ndarray) -> bool:
    """True when every value is 0 or 1."""
    return bool(np.isin(configs, (0, 1)).all())


def guess_model(configs: np.ndarray, key: str, path: Path) -> str:
    """The lattice model the values of `configs` are, for `model="auto"`: ising for +-1
    (and for 0/1, with a warning naming the choice), phi4 for a kappa control, xy for
    values that look like angles in radians; `DataError` with the options otherwise."""
    if np.isin(configs, (-1, 1)).all():
        return "ising"
    if is_binary(configs):
        if key != "temperature":
            raise DataError(f"{path}: configs hold only 0 and 1, but the control is {key} "
                            f"(phi^4 fields); say which model they are: -o model=ising (0/1 "
                            f"read as -1/+1) or -o model=phi4.")
        warnings.warn(f"{path}: configs hold only 0 and 1: read as Ising spins, 0 -> -1 and "
                      f"1 -> +1 (pass -o model=ising to say so, or -o model=xy to read them "
                      f"as XY angles instead).", stacklevel=3)
        return "ising"
    if key != "temperature":
        return "phi4"
    low, high = float(configs.min()), float(configs.max())
    whole = bool((configs == np.round(configs)).all())
    if whole or low < -2 * math.pi or high > 2 * math.pi:
        raise DataError(f"{path}: configs hold values from {low:g} to {high:g}, neither "
                        f"+-1 or 0/1 spins nor angles in radians; say which model they are: "
                        f"-o model=xy (angles in radians: convert degrees with np.deg2rad "
                        f"first), -o model=ising or -o model=phi4.")
    return "xy"


def _ensemble_from_arrays(model: str, configs: np.ndarray, control: np.ndarray, key: str,
                          lam: float, L: int, path: Path) -> mc.Ensemble:
    if model == "ising":
        check_spins(torch.as_tensor(configs), f"{path}: the Ising model")
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

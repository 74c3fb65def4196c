"""The core's data: the procedural shapes demo set and a reader for numpy arrays."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from betavae_core.data import DomainData, check_finite
from betavae_core.errors import DataError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def load_shapes(n: int = 6000, size: int = 28, seed: int = 0) -> DomainData:
    """dSprites-style binary images (square/ellipse/triangle) with five known factors."""
    from betavae_datasets.shapes import make_shapes

    shapes = make_shapes(n=int(n), size=int(size), seed=int(seed))
    return DomainData(
        x=shapes.images,
        domain="shapes",
        likelihood="bernoulli",
        factors=shapes.factors,
        factor_names=shapes.factor_names,
        factor_discrete=shapes.factor_discrete,
        metadata={"shape": shapes.factors[:, 0].astype(int)},
        attrs={"source": "betavae_datasets.shapes", "n": n, "size": size, "seed": seed,
               "image": True},
        generator="arrays",
    )


def load_mixed_factors(
    n: int = 4000, n_factors: int = 4, dim: int = 16, noise: float = 0.05, seed: int = 0
) -> DomainData:
    """Independent uniform sources through a fixed nonlinear mixing (tabular, Gaussian)."""
    from betavae_datasets.factors import make_mixed_factors

    mixed = make_mixed_factors(n=int(n), n_factors=int(n_factors), dim=int(dim),
                               noise=float(noise), seed=int(seed))
    return DomainData(
        x=mixed.x, domain="factors", likelihood="gaussian", factors=mixed.factors,
        factor_names=mixed.factor_names, factor_discrete=(False,) * len(mixed.factor_names),
        attrs={"source": "betavae_datasets.factors", "n_factors": n_factors, "dim": dim,
               "noise": noise, "seed": seed},
    )


def claims_numpy(path: Path) -> bool:
    """A .npy file, or a .npz archive holding an array named `x`."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as fh:
            head = fh.read(6)
        if head == NPY_MAGIC:
            return True
        if head[:4] == ZIP_MAGIC:
            with zipfile.ZipFile(path) as zf:
                return "x.npy" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return False


def load_numpy(path: Path, likelihood: str = "auto") -> DomainData:
    """Items along the first axis; a .npz may add `factors` (n, k) and `covariates` (n, c).

    With `likelihood="auto"`, binary data gets Bernoulli and anything else Gaussian.
    """
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: cannot read as numpy arrays without pickle ({exc}).") from None
    arrays = dict(loaded) if isinstance(loaded, np.lib.npyio.NpzFile) else {"x": loaded}
    if "x" not in arrays:
        raise DataError(f"{path}: no array named 'x' (it holds {sorted(arrays)}).")
    x = np.asarray(arrays["x"])
    if x.ndim < 2:
        raise DataError(f"{path}: x has shape {x.shape}; expected (n_items, features...).")
    if np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{path}: x has dtype {x.dtype}; expected real numbers.")
    for name in ("x", "factors", "covariates"):
        if name in arrays:
            check_finite(np.asarray(arrays[name], dtype=np.float64), f"{path}: {name}")
    if np.abs(x).max(initial=0) > np.finfo(np.float32).max:
        raise DataError(f"{path}: x holds values beyond the float32 range "
                        f"(max |x| = {np.abs(x).max():.3g}); rescale the data.")
    if likelihood == "auto":
        finite = np.isfinite(x).all()
        likelihood = "bernoulli" if finite and np.isin(x, (0, 1)).all() else "gaussian"
    return DomainData(
        x=x.astype(np.float32),
        domain="array",
        likelihood=likelihood,
        factors=arrays.get("factors"),
        covariates=arrays.get("covariates"),
        attrs={"source": str(path), "image": x.ndim == 3},
    )

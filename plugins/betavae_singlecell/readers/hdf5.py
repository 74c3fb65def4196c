"""The HDF5 formats: AnnData's ``h5ad``, Cell Ranger's ``10x_h5`` (v3 ``/matrix`` or legacy
v2, one group per genome) and a plain ``h5_matrix`` (``X`` cells x genes, optional ``Y``
labels), told apart by their groups and attributes."""

from __future__ import annotations

from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from betavae_core import DataError

from .files import _CELLS_PER_CHUNK, _as_csr, _duplicate_names_allowed, _existing, _wrap

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)  # the superblock may follow a user block
_TENX_MATRIX_KEYS = ("data", "indices", "indptr", "shape", "barcodes")


def _is_hdf5(path: Path) -> bool:
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(_HDF5_OFFSETS[-1] + len(_HDF5_MAGIC))
    except OSError:
        return False
    return any(head[o : o + len(_HDF5_MAGIC)] == _HDF5_MAGIC for o in _HDF5_OFFSETS)


def _is_10x_group(group: h5py.Group) -> bool:
    return all(isinstance(group.get(k), h5py.Dataset) for k in _TENX_MATRIX_KEYS)


def _hdf5_kind(path: Path) -> str | None:
    """'h5ad', '10x_h5', 'h5_matrix' or None, from the HDF5 file's groups and attributes."""
    if not _is_hdf5(path):
        return None
    try:
        with h5py.File(path, "r") as f:
            encoding = f.attrs.get("encoding-type")
            if isinstance(encoding, bytes):
                encoding = encoding.decode(errors="replace")
            if encoding == "anndata" or ("obs" in f and "var" in f):
                return "h5ad"
            if isinstance(f.get("matrix"), h5py.Group):
                return "10x_h5" if _is_10x_group(f["matrix"]) else None
            members = [f.get(k) for k in f]
            if (
                members
                and all(isinstance(m, h5py.Group) for m in members)
                and all(_is_10x_group(m) and "genes" in m and "gene_names" in m for m in members)
            ):
                return "10x_h5"  # legacy (Cell Ranger 2) layout: one group per genome
            x = f.get("X")
            if not isinstance(x, h5py.Dataset) or x.ndim != 2 or x.dtype.kind not in "biuf":
                return None
            if "Y" in f:
                y = f["Y"]
                if not isinstance(y, h5py.Dataset) or y.ndim != 1 or y.shape[0] != x.shape[0]:
                    return None
            return "h5_matrix"
    except Exception:  # a claim never raises
        return None


def claims_h5ad(path: str | Path) -> bool:
    """True when ``path`` is an AnnData HDF5 file (``encoding-type`` anndata, or obs + var)."""
    return _hdf5_kind(Path(path)) == "h5ad"


def claims_10x_h5(path: str | Path) -> bool:
    """True when ``path`` is a Cell Ranger HDF5 matrix (v3 ``/matrix`` or legacy v2)."""
    return _hdf5_kind(Path(path)) == "10x_h5"


def claims_h5_matrix(path: str | Path) -> bool:
    """True when ``path`` is plain HDF5 with a 2-D ``X`` (and optional 1-D ``Y``) at the root,
    and is neither an h5ad nor a 10x h5 file."""
    return _hdf5_kind(Path(path)) == "h5_matrix"


def read_h5ad(path: str | Path, backed: bool = False) -> AnnData:
    """Read an .h5ad file; ``backed=True`` opens it read-only, leaving X on disk."""
    p = _existing(path)
    if backed:
        return _wrap(p, "h5ad", lambda: anndata.read_h5ad(p, backed="r"))

    def load() -> AnnData:
        adata = anndata.read_h5ad(p)
        if sp.issparse(adata.X) and not sp.isspmatrix_csr(adata.X):
            adata.X = sp.csr_matrix(adata.X)
        return adata

    return _wrap(p, "h5ad", load)


def read_10x_h5(path: str | Path) -> AnnData:
    """Read a Cell Ranger HDF5 matrix (gene-expression features; var_names = unique symbols,
    ``var['gene_ids']`` = gene IDs)."""
    p = _existing(path)

    def load() -> AnnData:
        import scanpy as sc

        with _duplicate_names_allowed():  # made unique right below
            adata = sc.read_10x_h5(p)
        adata.var_names_make_unique()
        adata.X = _as_csr(adata.X)
        return adata

    return _wrap(p, "a 10x h5 matrix", load)


def read_h5_matrix(path: str | Path) -> AnnData:
    """Read plain HDF5 with ``X`` (cells x genes) and optional ``Y`` (labels): X as CSR
    float32, ``obs['label']`` = Y as categorical strings."""
    p = _existing(path)
    if not claims_h5_matrix(p):
        raise DataError(f"{p}: not a plain HDF5 matrix (needs a 2-D numeric dataset 'X' at "
                        "the root and, optionally, a 1-D 'Y' with one label per row of X)")

    def load() -> AnnData:
        with h5py.File(p, "r") as f:
            x = f["X"]
            n_rows, n_cols = x.shape
            step = max(1, _CELLS_PER_CHUNK // max(1, n_cols))
            blocks = [_as_csr(x[i : i + step]) for i in range(0, n_rows, step)]
            labels = f["Y"][()] if "Y" in f else None
        matrix = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_cols))
        obs = pd.DataFrame(index=pd.Index([f"cell_{i}" for i in range(n_rows)]))
        if labels is not None:
            values = np.unique(labels)  # numeric order for numeric labels
            as_str = _label_strings(values)
            lookup = dict(zip(values.tolist(), as_str, strict=True))
            obs["label"] = pd.Categorical(
                [lookup[v] for v in labels.tolist()], categories=list(dict.fromkeys(as_str))
            )
        var = pd.DataFrame(index=pd.Index([f"gene_{j}" for j in range(n_cols)]))
        return AnnData(matrix.astype(np.float32), obs=obs, var=var)

    return _wrap(p, "a plain HDF5 matrix", load)


def _label_strings(values: np.ndarray) -> list[str]:
    out = []
    for v in values.tolist():
        if isinstance(v, bytes):
            out.append(v.decode(errors="replace"))
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out

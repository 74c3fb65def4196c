"""Single-cell files -> AnnData. Reading only: no model code, and no input is ever written.

Formats, each recognised by its content (never by its name alone):

* ``h5ad`` -- AnnData's HDF5 file (optionally opened backed, read-only).
* ``10x_h5`` -- Cell Ranger's HDF5 feature-barcode matrix (v3 ``/matrix`` or legacy v2).
* ``10x_mtx`` -- Cell Ranger's Matrix Market directory: ``matrix.mtx[.gz]`` with
  ``features.tsv[.gz]`` (or ``genes.tsv[.gz]``) and ``barcodes.tsv[.gz]``, optionally with a
  common file-name prefix such as ``GSM123_``.
* ``count_table`` -- a delimited text table (``.csv``/``.tsv``/``.txt``, optionally ``.gz``):
  first column = row names, header = column names (also the R ``write.csv`` layout whose
  header has no corner cell). Its orientation must be stated.
* ``h5_matrix`` -- a plain HDF5 file with a 2-D dataset ``X`` (cells x genes) at the root and
  an optional 1-D ``Y`` of cell labels.

The ``claims_*`` functions are cheap and never raise; the ``read_*`` functions raise
:class:`betavae_core.DataError` naming the file. Sparse matrices come back as CSR.
The HDF5 formats live in ``hdf5.py``, the text ones in ``text.py``, the helpers they share
in ``files.py``; this module picks the reader (``detect_format``, ``read``).
"""


from __future__ import annotations

from pathlib import Path
from typing import Any

from anndata import AnnData

from betavae_core import DataError

from .files import _existing
from .hdf5 import (
    _hdf5_kind,
    claims_10x_h5,
    claims_h5_matrix,
    claims_h5ad,
    read_10x_h5,
    read_h5_matrix,
    read_h5ad,
)
from .text import (
    ORIENTATIONS,
    claims_10x_mtx,
    claims_count_table,
    read_10x_mtx,
    read_count_table,
)

__all__ = [
    "FORMATS",
    "ORIENTATIONS",
    "claims_10x_h5",
    "claims_10x_mtx",
    "claims_count_table",
    "claims_h5_matrix",
    "claims_h5ad",
    "detect_format",
    "read",
    "read_10x_h5",
    "read_10x_mtx",
    "read_count_table",
    "read_h5_matrix",
    "read_h5ad",
]

FORMATS: tuple[str, ...] = ("10x_h5", "h5ad", "h5_matrix", "10x_mtx", "count_table")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "h5ad": ("backed",),
    "10x_h5": (),
    "h5_matrix": (),
    "10x_mtx": (),
    "count_table": ("orientation", "delimiter", "obs"),
}



def detect_format(path: str | Path) -> str | None:
    """The name of the format (one of ``FORMATS``) that claims ``path``, or None."""
    p = Path(path)
    kind = _hdf5_kind(p)
    if kind is not None:
        return kind
    if claims_10x_mtx(p):
        return "10x_mtx"
    if claims_count_table(p):
        return "count_table"
    return None


def _as_bool(value: Any, name: str, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "r"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise DataError(f"{path}: option {name}={value!r} must be true or false")


def read(path: str | Path, **options: Any) -> AnnData:
    """Read any supported single-cell file, chosen by content (see ``FORMATS``).

    Options: ``backed`` for h5ad; ``orientation`` (required), ``delimiter``, ``obs`` for count
    tables. An option the format does not take is refused.
    """
    p = _existing(path, directory_ok=True)
    fmt = detect_format(p)
    if fmt is None:
        raise DataError(
            f"{p}: not a recognised single-cell file (h5ad, 10x h5, 10x Matrix Market "
            "directory, plain HDF5 X/Y matrix, or a .csv/.tsv/.txt[.gz] count table)"
        )
    unknown = sorted(set(options) - set(_OPTIONS[fmt]))
    if unknown:
        accepted = ", ".join(_OPTIONS[fmt]) or "none"
        raise DataError(
            f"{p}: option(s) {', '.join(unknown)} do not apply to the {fmt} reader "
            f"(it accepts: {accepted})"
        )
    if fmt == "h5ad":
        return read_h5ad(p, backed=_as_bool(options.get("backed", False), "backed", p))
    if fmt == "10x_h5":
        return read_10x_h5(p)
    if fmt == "h5_matrix":
        return read_h5_matrix(p)
    if fmt == "10x_mtx":
        return read_10x_mtx(p)
    return read_count_table(
        p, options.get("orientation"), delimiter=options.get("delimiter"), obs=options.get("obs")
    )

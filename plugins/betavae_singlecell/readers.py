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
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from betavae_core import DataError

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

ORIENTATIONS: tuple[str, ...] = ("cells_by_genes", "genes_by_cells")
FORMATS: tuple[str, ...] = ("10x_h5", "h5ad", "h5_matrix", "10x_mtx", "count_table")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)  # the superblock may follow a user block
_GZIP_MAGIC = b"\x1f\x8b"
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
_PEEK_BYTES = 1 << 20  # enough for a header of ~50k labels
_CELLS_PER_CHUNK = 2_000_000  # table cells parsed at once when reading a count table
_TENX_MATRIX_KEYS = ("data", "indices", "indptr", "shape", "barcodes")
# spellings of a delimiter that survive a command line (`-o delimiter=tab`)
_DELIMITER_NAMES: dict[str, str | None] = {
    "\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "whitespace": None, "space": None,
}


# ----------------------------------------------------------------------------- helpers


def _existing(path: str | Path, *, directory_ok: bool = False) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if not directory_ok and not p.is_file():
        raise DataError(f"{p}: not a regular file")
    return p


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


def _compression(path: Path) -> str | None:
    """'gzip' when the file's bytes are gzip, whatever its name."""
    with open(path, "rb") as fh:
        return "gzip" if fh.read(2) == _GZIP_MAGIC else None


def _peek_lines(path: Path, n_lines: int, n_bytes: int = _PEEK_BYTES) -> tuple[list[str], bool]:
    """Up to ``n_lines`` non-blank lines from the start of a (possibly gzipped) text file, and
    whether they are all complete (a line longer than the byte budget comes back cut short).

    Raises OSError / ValueError on unreadable or binary content.
    """
    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    opener = gzip.open if gz else open
    with opener(path, "rb") as fh:
        raw = fh.read(n_bytes + 1)
    eof = len(raw) <= n_bytes
    raw = raw[:n_bytes]
    if b"\x00" in raw:
        raise ValueError("binary content")
    lines: list[str] = []
    complete = True
    for part in raw.decode("utf-8", errors="replace").splitlines(keepends=True):
        if not part.strip():
            continue
        lines.append(part.rstrip("\r\n"))
        complete = eof or part.endswith(("\n", "\r"))
        if len(lines) == n_lines:
            break
    return lines, complete


def _delimiter_of(line: str) -> str | None:
    """Tab, comma, or None for runs of whitespace."""
    if "\t" in line:
        return "\t"
    if "," in line:
        return ","
    return None


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter))


def _is_number(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


def _has_table_suffix(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(_TABLE_SUFFIXES)


def _preview_labels(path: Path, delimiter: str | None) -> tuple[list[str], list[str]]:
    """First few column labels (header) and row labels (first column) of a table."""
    lines, _ = _peek_lines(path, 6)
    if not lines:
        return [], []
    header = _split(lines[0], delimiter)
    rows = [_split(line, delimiter)[0] for line in lines[1:] if _split(line, delimiter)]
    return header[:5], rows[:5]


def _as_csr(x: Any) -> sp.csr_matrix:
    return sp.csr_matrix(x, dtype=np.float32)


@contextlib.contextmanager
def _duplicate_names_allowed() -> Iterator[None]:
    """Silence AnnData's duplicate-name warning where the names are made unique at once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(Variable|Observation) names are not unique")
        yield


def _wrap(path: Path, what: str, reader: Callable[[], AnnData]) -> AnnData:
    try:
        return reader()
    except DataError:
        raise
    except Exception as exc:  # every failure becomes a DataError naming the file
        raise DataError(f"{path}: could not read as {what}: {type(exc).__name__}: {exc}") from exc


# ----------------------------------------------------------------------------- claims


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


def _mtx_layout(path: Path) -> dict[str, Any] | None:
    """The files of a 10x Matrix Market layout at ``path`` (a directory or its matrix file)."""
    if path.is_dir():
        directory = path
        if (path / "matrix.mtx").is_file() or (path / "matrix.mtx.gz").is_file():
            prefix = ""
        else:
            found = sorted(
                p.name for p in path.iterdir()
                if p.is_file() and p.name.endswith(("matrix.mtx", "matrix.mtx.gz"))
            )
            if len(found) != 1:
                return None
            prefix = found[0][: found[0].rfind("matrix.mtx")]
    elif path.is_file() and path.name.endswith(("matrix.mtx", "matrix.mtx.gz")):
        directory = path.parent
        prefix = path.name[: path.name.rfind("matrix.mtx")]
    else:
        return None

    def first(*names: str) -> Path | None:
        for name in names:
            candidate = directory / f"{prefix}{name}"
            if candidate.is_file():
                return candidate
        return None

    matrix = first("matrix.mtx", "matrix.mtx.gz") if path.is_dir() else path
    features = first("features.tsv", "features.tsv.gz", "genes.tsv", "genes.tsv.gz")
    barcodes = first("barcodes.tsv", "barcodes.tsv.gz")
    if matrix is None or features is None or barcodes is None:
        return None
    return {
        "directory": directory, "prefix": prefix,
        "matrix": matrix, "features": features, "barcodes": barcodes,
    }


def claims_10x_mtx(path: str | Path) -> bool:
    """True for a 10x Matrix Market directory (matrix.mtx[.gz], features.tsv/genes.tsv[.gz],
    barcodes.tsv[.gz], optionally sharing a prefix) or the path of its matrix file."""
    try:
        layout = _mtx_layout(Path(path))
        if layout is None:
            return False
        lines, _ = _peek_lines(layout["matrix"], 1, n_bytes=256)
        return bool(lines) and lines[0].startswith("%%MatrixMarket")
    except Exception:  # a claim never raises
        return False


def claims_count_table(path: str | Path) -> bool:
    """True for a .csv/.tsv/.txt[.gz] file whose header is followed by a row of a label and
    (mostly) numbers, with a field count matching the header (with or without corner cell)."""
    try:
        p = Path(path)
        if not _has_table_suffix(p) or not p.is_file():
            return False
        lines, complete = _peek_lines(p, 2)
        if len(lines) < 2:
            return False
        delimiter = _delimiter_of(lines[0])
        header = _split(lines[0], delimiter)
        row = _split(lines[1], delimiter)
        if len(header) < 1 or len(row) < 2:
            return False
        values = row[1:51]
        if not complete and len(row) <= 51:
            values = values[:-1] or values  # the last field may be cut short
        if sum(_is_number(v) for v in values) * 2 < len(values):
            return False
        return not complete or len(row) in (len(header), len(header) + 1)
    except Exception:  # a claim never raises
        return False


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


# ----------------------------------------------------------------------------- readers


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


def _read_10x_mtx_files(layout: dict[str, Any]) -> AnnData:
    """Matrix Market layouts scanpy does not read (mixed compression, one-column genes)."""
    from scipy.io import mmread

    with _open_binary(layout["matrix"]) as fh:
        matrix = mmread(fh)  # genes x cells
    features, barcodes = (
        pd.read_csv(layout[key], sep="\t", header=None, dtype=str,
                    compression=_compression(layout[key]))
        for key in ("features", "barcodes")
    )
    n_genes, n_cells = matrix.shape
    if len(features) != n_genes:
        raise DataError(
            f"{layout['features']}: lists {len(features)} features but {layout['matrix']} "
            f"has {n_genes} rows"
        )
    if len(barcodes) != n_cells:
        raise DataError(
            f"{layout['barcodes']}: lists {len(barcodes)} barcodes but {layout['matrix']} "
            f"has {n_cells} columns"
        )
    ids = features[0].to_numpy()
    symbols = features[1].to_numpy() if features.shape[1] > 1 else ids
    var = pd.DataFrame({"gene_ids": ids}, index=pd.Index(symbols.astype(str)))
    var.index = anndata.utils.make_index_unique(var.index)
    if features.shape[1] > 2:
        var["feature_types"] = features[2].to_numpy()
    obs = pd.DataFrame(index=pd.Index(barcodes[0].to_numpy().astype(str)))
    adata = AnnData(_as_csr(sp.coo_matrix(matrix).T), obs=obs, var=var)
    if "feature_types" in adata.var and (adata.var["feature_types"] == "Gene Expression").any():
        adata = adata[:, adata.var["feature_types"] == "Gene Expression"].copy()
    return adata


def _open_binary(path: Path) -> io.BufferedIOBase:
    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_10x_mtx(path: str | Path) -> AnnData:
    """Read a 10x Matrix Market directory (or its matrix file): cells x genes CSR, var_names =
    unique gene symbols, ``var['gene_ids']`` = gene IDs, obs_names = barcodes."""
    p = _existing(path, directory_ok=True)
    layout = _mtx_layout(p)
    if layout is None:
        raise DataError(
            f"{p}: not a 10x Matrix Market layout (needs matrix.mtx[.gz], features.tsv[.gz] or "
            "genes.tsv[.gz], and barcodes.tsv[.gz] side by side)"
        )
    names = {key: layout[key].name[len(layout["prefix"]) :] for key in ("matrix", "features",
                                                                          "barcodes")}
    legacy = names == {"matrix": "matrix.mtx", "features": "genes.tsv",
                       "barcodes": "barcodes.tsv"}
    v3 = names == {"matrix": "matrix.mtx.gz", "features": "features.tsv.gz",
                   "barcodes": "barcodes.tsv.gz"}

    def load() -> AnnData:
        if legacy or v3:  # the layouts scanpy reads itself
            import scanpy as sc

            with _duplicate_names_allowed():  # scanpy makes them unique itself
                adata = sc.read_10x_mtx(
                    layout["directory"], var_names="gene_symbols", make_unique=True,
                    cache=False, prefix=layout["prefix"],
                )
            adata.X = _as_csr(adata.X)
            return adata
        return _read_10x_mtx_files(layout)

    return _wrap(layout["matrix"], "a 10x Matrix Market matrix", load)


def _orientation_error(path: Path, delimiter: str | None, orientation: Any) -> DataError:
    try:
        columns, rows = _preview_labels(path, delimiter)
        shown = (
            f" Its header (the column labels) starts {columns} and its first column (the row "
            f"labels) starts {rows}."
        )
    except Exception:  # the preview is a courtesy
        shown = ""
    if orientation is None:
        opening = f"{path}: the table's orientation must be stated"
    else:
        opening = f"{path}: orientation {orientation!r} is not understood; state it"
    return DataError(
        f"{opening} with `-o orientation=genes_by_cells` (rows are genes, columns are cells) "
        f"or `-o orientation=cells_by_genes` (rows are cells, columns are genes).{shown}"
    )


def _first_bad_cell(chunk: pd.DataFrame) -> tuple[Any, Any, Any] | None:
    """(row label, column label, value) of the first non-numeric, missing or infinite cell."""
    for column in chunk.columns:
        series = chunk[column]
        if series.dtype.kind == "b":
            bad = np.ones(len(series), dtype=bool)
        else:
            numbers = series if series.dtype.kind in "iuf" else pd.to_numeric(
                series, errors="coerce"
            )
            bad = ~np.isfinite(numbers.to_numpy(dtype=np.float64))
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            return chunk.index[position], column, series.iloc[position]
    return None


def read_count_table(
    path: str | Path,
    orientation: str | None,
    delimiter: str | None = None,
    obs: str | Path | None = None,
) -> AnnData:
    """Read a delimited count table (first column = row names, header = column names).

    ``orientation`` is ``"cells_by_genes"`` or ``"genes_by_cells"``; it cannot be guessed
    safely and must be stated. ``delimiter`` defaults to the one the header uses (tab, comma
    or whitespace). ``obs`` is an optional metadata table indexed by cell ID whose columns
    are joined into ``adata.obs``. The matrix comes back as cells x genes CSR float32.
    """
    p = _existing(path)
    try:
        header, _ = _peek_lines(p, 1)
    except Exception as exc:
        raise DataError(f"{p}: could not read as a text table: {exc}") from exc
    if not header:
        raise DataError(f"{p}: the table is empty")
    sep = _DELIMITER_NAMES.get(delimiter, delimiter) if delimiter else _delimiter_of(header[0])
    if orientation not in ORIENTATIONS:
        raise _orientation_error(p, sep, orientation)

    n_columns = max(1, len(_split(header[0], sep)))
    chunksize = max(1, _CELLS_PER_CHUNK // n_columns)
    blocks: list[sp.csr_matrix] = []
    row_names: list[str] = []
    column_names: list[str] | None = None
    try:
        reader = pd.read_csv(
            p, sep=sep if sep is not None else r"\s+", index_col=0, header=0,
            chunksize=chunksize, compression=_compression(p),
        )
        for chunk in reader:
            if column_names is None:
                column_names = [str(c) for c in chunk.columns]
            bad = _first_bad_cell(chunk)
            if bad is not None:
                row, column, value = bad
                if pd.isna(value):
                    shown = "a missing value"
                elif isinstance(value, (int, float, np.number)):
                    shown = f"a non-finite value {float(value)!r}"
                else:
                    shown = f"a non-numeric value {value!r}"
                raise DataError(
                    f"{p}: {shown} at row {str(row)!r}, column {str(column)!r}; "
                    "a count table holds numbers only (row names in the first column, "
                    "column names in the header)"
                )
            blocks.append(_as_csr(chunk.to_numpy(dtype=np.float64)))
            row_names.extend(str(r) for r in chunk.index)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{p}: could not read as a count table: {type(exc).__name__}: {exc}") \
            from exc
    if not row_names or not column_names:
        raise DataError(f"{p}: the table has no data rows or no value columns")

    matrix = sp.vstack(blocks, format="csr")
    if orientation == "genes_by_cells":
        matrix = matrix.T.tocsr()
        cells, genes = column_names, row_names
    else:
        cells, genes = row_names, column_names
    cell_index = pd.Index(cells)
    if not cell_index.is_unique:
        dupes = list(cell_index[cell_index.duplicated()].unique()[:5])
        raise DataError(f"{p}: cell IDs repeat, e.g. {dupes}; each cell needs its own ID")
    adata = AnnData(
        matrix.astype(np.float32),
        obs=pd.DataFrame(index=cell_index),
        var=pd.DataFrame(index=anndata.utils.make_index_unique(pd.Index(genes))),
    )
    if obs is not None:
        adata.obs = _read_metadata(Path(obs), adata.obs_names, p)
    return adata


def _read_metadata(path: Path, cells: pd.Index, table: Path) -> pd.DataFrame:
    """The rows of a metadata table (indexed by cell ID) for ``cells``, in their order."""
    path = _existing(path)
    try:
        first, _ = _peek_lines(path, 1)
        sep = _delimiter_of(first[0]) if first else ","
        meta = pd.read_csv(
            path, sep=sep if sep is not None else r"\s+", index_col=0, header=0,
            compression=_compression(path),
        )
    except Exception as exc:
        raise DataError(f"{path}: could not read as a cell metadata table: {exc}") from exc
    meta.index = meta.index.map(str)
    if not meta.index.is_unique:
        dupes = list(meta.index[meta.index.duplicated()].unique()[:5])
        raise DataError(f"{path}: cell IDs repeat in the metadata, e.g. {dupes}")
    missing = cells.difference(meta.index, sort=False)
    if len(missing):
        raise DataError(
            f"{path}: {len(missing)} of the {len(cells)} cells of {table} have no metadata "
            f"row, e.g. {list(missing[:5])}; the metadata's first column must hold the cell IDs"
        )
    out = meta.loc[cells].copy()
    out.index.name = None
    return out


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


# ----------------------------------------------------------------------------- dispatch


def _as_bool(value: Any, name: str, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "r"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise DataError(f"{path}: option {name}={value!r} must be true or false")


_OPTIONS: dict[str, tuple[str, ...]] = {
    "h5ad": ("backed",),
    "10x_h5": (),
    "h5_matrix": (),
    "10x_mtx": (),
    "count_table": ("orientation", "delimiter", "obs"),
}


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

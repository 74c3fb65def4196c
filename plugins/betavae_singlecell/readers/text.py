"""The text formats: Cell Ranger's Matrix Market directory (``10x_mtx``) and delimited
count tables (``count_table``, whose orientation must be stated)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from betavae_core import DataError

from .files import (
    _CELLS_PER_CHUNK,
    _as_csr,
    _compression,
    _duplicate_names_allowed,
    _existing,
    _open_binary,
    _peek_lines,
    _wrap,
)

ORIENTATIONS: tuple[str, ...] = ("cells_by_genes", "genes_by_cells")
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
# spellings of a delimiter that survive a command line (`-o delimiter=tab`)
_DELIMITER_NAMES: dict[str, str | None] = {
    "\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "whitespace": None, "space": None,
}


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
    header_names = _header_names(header[0], sep, column_names)
    if orientation == "genes_by_cells":
        matrix = matrix.T.tocsr()
        cells, genes = column_names, row_names
        _check_unique(header_names, p, "cell IDs repeat", "each cell needs its own ID")
    else:
        cells, genes = row_names, column_names
        _check_unique(header_names, p, "gene names repeat", _GENES_BY_NAME)
    cell_index, gene_index = pd.Index(cells), pd.Index(genes)
    _check_unique(cell_index, p, "cell IDs repeat", "each cell needs its own ID")
    _check_unique(gene_index, p, "gene names repeat", _GENES_BY_NAME)
    adata = AnnData(
        matrix.astype(np.float32),
        obs=pd.DataFrame(index=cell_index),
        var=pd.DataFrame(index=gene_index),
    )
    if obs is not None:
        adata.obs = _read_metadata(Path(obs), adata.obs_names, p)
    return adata


_GENES_BY_NAME = ("genes are matched by name, so each needs its own: rename or drop the "
                  "repeated ones")


def _header_names(line: str, sep: str | None, parsed: list[str]) -> list[str]:
    """The column names as the header spells them (pandas renames a repeated one "X.1",
    which would hide the repeat): its last len(parsed) fields, unquoted."""
    raw = [field.strip().strip('"') for field in _split(line, sep)]
    return raw[-len(parsed):] if len(raw) >= len(parsed) else parsed


def _check_unique(names: Any, path: Path, what: str, fix: str) -> None:
    """`DataError` naming the first few names that repeat."""
    index = pd.Index(names)
    if not index.is_unique:
        dupes = list(index[index.duplicated()].unique()[:5])
        raise DataError(f"{path}: {what}, e.g. {dupes}; {fix}")


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
    _check_unique(meta.index, path, "cell IDs repeat in the metadata",
                  "each row needs its own cell ID")
    missing = cells.difference(meta.index, sort=False)
    if len(missing):
        raise DataError(
            f"{path}: {len(missing)} of the {len(cells)} cells of {table} have no metadata "
            f"row, e.g. {list(missing[:5])}; the metadata's first column must hold the cell IDs"
        )
    out = meta.loc[cells].copy()
    out.index.name = None
    return out

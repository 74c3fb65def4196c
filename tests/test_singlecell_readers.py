"""Single-cell readers (files -> AnnData) and the synthetic counts generator.

Every format is written here, read back and compared exactly; each claim says yes to its own
format only; bad tables fail with a DataError naming the file, row and column; reading
changes no input file.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from betavae_core import DataError
from betavae_datasets.counts import synthetic_counts
from betavae_singlecell.readers import (
    claims_10x_h5,
    claims_10x_mtx,
    claims_count_table,
    claims_h5_matrix,
    claims_h5ad,
    detect_format,
    read,
    read_10x_h5,
    read_10x_mtx,
    read_count_table,
    read_h5_matrix,
    read_h5ad,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/singlecell"
PBMC = SHARED / "10X_PBMC_top2000.h5"
CELSEQ = SHARED / "sc_celseq2.count.csv.gz"
CELSEQ_META = SHARED / "sc_celseq2.metadata.csv.gz"

CELLS = ["AAAC-1", "AAAG-1", "AACT-1", "AAGT-1", "ACGT-1"]
GENE_IDS = ["ENSG01", "ENSG02", "ENSG03", "ENSG04"]
SYMBOLS = ["CD3E", "MS4A1", "CD3E", "LYZ"]  # a repeated symbol, made unique on reading
UNIQUE_SYMBOLS = ["CD3E", "MS4A1", "CD3E-1", "LYZ"]
CLAIMS = {
    "h5ad": claims_h5ad,
    "10x_h5": claims_10x_h5,
    "10x_mtx": claims_10x_mtx,
    "count_table": claims_count_table,
    "h5_matrix": claims_h5_matrix,
}


def _counts() -> np.ndarray:
    """5 cells x 4 genes of integer counts with zeros (so sparsity matters)."""
    return np.array(
        [[0, 3, 0, 1], [2, 0, 0, 0], [0, 0, 7, 0], [1, 1, 0, 12], [0, 0, 0, 0]], dtype=np.float32
    )


def _same(adata: anndata.AnnData, dense: np.ndarray, cells, genes) -> None:
    assert sp.isspmatrix_csr(adata.X)
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), dense)
    assert list(adata.obs_names) == list(cells)
    assert list(adata.var_names) == list(genes)


# ----------------------------------------------------------------------------- writers


def _gz(path: Path, text: str | bytes) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)


def write_h5ad(path: Path) -> Path:
    adata = anndata.AnnData(
        sp.csr_matrix(_counts()),
        obs=pd.DataFrame({"donor": ["a", "a", "b", "b", "b"]}, index=CELLS),
        var=pd.DataFrame({"gene_ids": GENE_IDS}, index=UNIQUE_SYMBOLS),
    )
    adata.write_h5ad(path)
    return path


def write_10x_mtx(directory: Path, layout: str = "v3") -> Path:
    """A Matrix Market directory: v3 (all gz, features.tsv), legacy (plain, genes.tsv),
    mixed (gz matrix, plain features.tsv) or prefixed (v3 with a GSM-style prefix)."""
    directory.mkdir(parents=True)
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, sp.coo_matrix(_counts().T.astype(np.int64)))  # genes x cells
    matrix = buffer.getvalue()
    pairs = list(zip(GENE_IDS, SYMBOLS, strict=True))
    features = "".join(f"{i}\t{s}\tGene Expression\n" for i, s in pairs)
    genes = "".join(f"{i}\t{s}\n" for i, s in pairs)
    barcodes = "".join(f"{c}\n" for c in CELLS)
    if layout in ("v3", "prefixed"):
        prefix = "GSM1_" if layout == "prefixed" else ""
        _gz(directory / f"{prefix}matrix.mtx.gz", matrix)
        _gz(directory / f"{prefix}features.tsv.gz", features)
        _gz(directory / f"{prefix}barcodes.tsv.gz", barcodes)
    elif layout == "legacy":
        (directory / "matrix.mtx").write_bytes(matrix)
        (directory / "genes.tsv").write_text(genes)
        (directory / "barcodes.tsv").write_text(barcodes)
    elif layout == "mixed":
        _gz(directory / "matrix.mtx.gz", matrix)
        (directory / "features.tsv").write_text(features)
        _gz(directory / "barcodes.tsv.gz", barcodes)
    else:
        raise AssertionError(layout)
    return directory


def write_10x_h5(path: Path) -> Path:
    """Cell Ranger v3 HDF5: /matrix holds the genes x cells CSC matrix (= cells x genes CSR)."""
    csr = sp.csr_matrix(_counts())
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"] = csr.data.astype(np.int32)
        m["indices"] = csr.indices.astype(np.int64)
        m["indptr"] = csr.indptr.astype(np.int64)
        m["shape"] = np.array([len(GENE_IDS), len(CELLS)], dtype=np.int32)
        m["barcodes"] = np.array(CELLS, dtype="S")
        feats = m.create_group("features")
        feats["id"] = np.array(GENE_IDS, dtype="S")
        feats["name"] = np.array(SYMBOLS, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * len(GENE_IDS), dtype="S")
        feats["genome"] = np.array(["GRCh38"] * len(GENE_IDS), dtype="S")
    return path


def write_h5_matrix(path: Path, labels: bool = True) -> Path:
    with h5py.File(path, "w") as f:
        f["X"] = _counts()
        if labels:
            f["Y"] = np.array([3, 1, 3, 2, 10], dtype=np.int32)
    return path


def write_table(path: Path, orientation: str, *, corner: bool = True, sep: str = ",") -> Path:
    """A count table; ``corner=False`` is R's write.csv header (no label over the names)."""
    frame = pd.DataFrame(_counts().astype(int), index=CELLS, columns=UNIQUE_SYMBOLS)
    if orientation == "genes_by_cells":
        frame = frame.T
    lines = [([""] if corner else []) + list(frame.columns)]
    rows = zip(frame.index, frame.to_numpy(), strict=True)
    lines += [[str(label), *map(str, values)] for label, values in rows]
    text = "".join(sep.join(f'"{v}"' if sep == "," and v and not v.isdigit() else v
                            for v in line) + "\n" for line in lines)
    if path.name.endswith(".gz"):
        _gz(path, text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """One file of every format, plus things that are none of them."""
    notes = tmp_path / "notes.txt"
    notes.write_text("These are my notes.\nNothing tabular here, just words.\n")
    binary = tmp_path / "noise.csv"
    binary.write_bytes(np.random.default_rng(0).bytes(4096))
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["something"] = np.arange(5)
    return {
        "h5ad": write_h5ad(tmp_path / "cells.h5ad"),
        "10x_h5": write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5"),
        "10x_mtx": write_10x_mtx(tmp_path / "mtx"),
        "count_table": write_table(tmp_path / "counts.csv", "genes_by_cells"),
        "h5_matrix": write_h5_matrix(tmp_path / "pbmc_like.h5"),
        "notes": notes,
        "binary": binary,
        "plain_h5": plain,
        "empty_dir": (tmp_path / "empty").mkdir() or tmp_path / "empty",
        "missing": tmp_path / "does_not_exist.h5ad",
    }


# ----------------------------------------------------------------------------- claims


def test_each_claim_says_yes_to_its_own_format_only(files):
    for name, path in files.items():
        said_yes = {fmt for fmt, claims in CLAIMS.items() if claims(path)}
        expected = {name} if name in CLAIMS else set()
        assert said_yes == expected, (name, said_yes)
        assert detect_format(path) == (name if name in CLAIMS else None)


def test_mtx_claim_accepts_the_matrix_file_itself_and_needs_its_siblings(files):
    matrix = files["10x_mtx"] / "matrix.mtx.gz"
    assert claims_10x_mtx(matrix)
    (files["10x_mtx"] / "barcodes.tsv.gz").unlink()
    assert not claims_10x_mtx(files["10x_mtx"])
    assert not claims_10x_mtx(matrix)


def test_unknown_or_missing_file_is_a_data_error(files):
    with pytest.raises(DataError, match="notes.txt.*not a recognised"):
        read(files["notes"])
    with pytest.raises(DataError, match="does_not_exist.h5ad.*no such file"):
        read(files["missing"])


# ----------------------------------------------------------------------------- round trips


def test_h5ad_round_trip_in_memory_and_backed(files):
    adata = read_h5ad(files["h5ad"])
    _same(adata, _counts(), CELLS, UNIQUE_SYMBOLS)
    assert list(adata.obs["donor"]) == ["a", "a", "b", "b", "b"]
    assert not adata.isbacked

    backed = read(files["h5ad"], backed="true")
    try:
        assert backed.isbacked
        assert backed.shape == (5, 4)
        np.testing.assert_array_equal(backed.X[:].toarray(), _counts())
    finally:
        backed.file.close()


def test_10x_h5_round_trip_keeps_gene_ids_and_makes_symbols_unique(files):
    for adata in (read_10x_h5(files["10x_h5"]), read(files["10x_h5"])):
        _same(adata, _counts(), CELLS, UNIQUE_SYMBOLS)
        assert list(adata.var["gene_ids"]) == GENE_IDS


@pytest.mark.parametrize("layout", ["v3", "legacy", "mixed", "prefixed"])
def test_10x_mtx_round_trip(tmp_path, layout):
    directory = write_10x_mtx(tmp_path / layout, layout)
    assert detect_format(directory) == "10x_mtx"
    matrix = next(directory.glob("*matrix.mtx*"))
    for source in (directory, matrix):
        adata = read_10x_mtx(source)
        _same(adata, _counts(), CELLS, UNIQUE_SYMBOLS)
        assert list(adata.var["gene_ids"]) == GENE_IDS
    _same(read(directory), _counts(), CELLS, UNIQUE_SYMBOLS)


@pytest.mark.parametrize("orientation", ["cells_by_genes", "genes_by_cells"])
@pytest.mark.parametrize(
    ("name", "corner", "sep"),
    [("t.csv", True, ","), ("r_style.csv.gz", False, ","), ("t.tsv", True, "\t"),
     ("t.txt", True, " ")],
)
def test_count_table_round_trip(tmp_path, orientation, name, corner, sep):
    path = write_table(tmp_path / name, orientation, corner=corner, sep=sep)
    assert claims_count_table(path)
    adata = read_count_table(path, orientation)
    _same(adata, _counts(), CELLS, UNIQUE_SYMBOLS)
    _same(read(path, orientation=orientation), _counts(), CELLS, UNIQUE_SYMBOLS)


def test_count_table_joins_cell_metadata(tmp_path):
    table = write_table(tmp_path / "counts.csv", "genes_by_cells")
    meta = tmp_path / "meta.csv"
    # R-style (no corner cell), rows in another order, one extra cell that is not in the table
    rows = ["B0-1", *CELLS[::-1]]
    lines = ['"cell_line","n_genes"'] + [f'"{c}","line_{c[:4]}",{i}' for i, c in enumerate(rows)]
    meta.write_text("\n".join(lines) + "\n")
    adata = read(table, orientation="genes_by_cells", obs=meta)
    assert list(adata.obs_names) == CELLS
    assert list(adata.obs["cell_line"]) == [f"line_{c[:4]}" for c in CELLS]
    assert list(adata.obs["n_genes"]) == [5, 4, 3, 2, 1]

    meta.write_text("\n".join(lines[:4]) + "\n")  # only two of the five cells
    with pytest.raises(DataError, match=r"meta\.csv.*3 of the 5 cells.*AAAG-1"):
        read_count_table(table, "genes_by_cells", obs=meta)


def test_h5_matrix_round_trip_with_and_without_labels(tmp_path):
    adata = read_h5_matrix(write_h5_matrix(tmp_path / "xy.h5"))
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), _counts())
    assert list(adata.obs["label"]) == ["3", "1", "3", "2", "10"]
    assert list(adata.obs["label"].cat.categories) == ["1", "2", "3", "10"]  # numeric order

    bare = read(write_h5_matrix(tmp_path / "x.h5", labels=False))
    np.testing.assert_array_equal(bare.X.toarray(), _counts())
    assert "label" not in bare.obs


def test_reading_changes_no_input_file(files, snapshot, tmp_path):
    before = snapshot(tmp_path)
    for name in CLAIMS:
        options = {"orientation": "genes_by_cells"} if name == "count_table" else {}
        read(files[name], **options)
    read_h5ad(files["h5ad"], backed=True).file.close()
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- bad input


def test_count_table_with_repeated_names_is_refused_naming_them(tmp_path):
    table = tmp_path / "repeats.csv"
    table.write_text(",CD3E,LYZ,CD3E\nAAAC-1,1,0,2\nAAAG-1,0,3,1\n")
    genes = r"repeats\.csv: gene names repeat, e\.g\. \['CD3E'\]; genes are matched by name"
    with pytest.raises(DataError, match=genes):  # in the header
        read_count_table(table, "cells_by_genes")
    with pytest.raises(DataError, match=r"repeats\.csv: cell IDs repeat, e\.g\. \['CD3E'\]"):
        read_count_table(table, "genes_by_cells")
    table.write_text(",AAAC-1,AAAG-1\nCD3E,1,0\nLYZ,0,3\nCD3E,2,1\n")
    with pytest.raises(DataError, match=genes):  # as row names
        read_count_table(table, "genes_by_cells")


def test_count_table_without_orientation_says_how_to_state_it(files):
    for call in (lambda: read(files["count_table"]),
                 lambda: read_count_table(files["count_table"], None)):
        with pytest.raises(DataError, match="orientation") as info:
            call()
        message = str(info.value)
        assert "counts.csv" in message
        assert "genes_by_cells" in message and "cells_by_genes" in message
        assert CELLS[0] in message and UNIQUE_SYMBOLS[0] in message  # the labels, to decide
    with pytest.raises(DataError, match="orientation 'sideways'"):
        read_count_table(files["count_table"], "sideways")


@pytest.mark.parametrize("value", ["abc", "", "NA", "inf"])
def test_non_numeric_cell_names_file_row_and_column(tmp_path, value):
    path = write_table(tmp_path / "bad.csv", "cells_by_genes")
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")  # the row of CELLS[2]
    fields[2] = value  # the column of UNIQUE_SYMBOLS[1]
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_count_table(path, "cells_by_genes")
    message = str(info.value)
    assert "bad.csv" in message
    assert repr(CELLS[2]) in message and repr(UNIQUE_SYMBOLS[1]) in message


def test_options_a_format_does_not_take_are_refused(files):
    with pytest.raises(DataError, match="orientation.*h5_matrix"):
        read(files["h5_matrix"], orientation="cells_by_genes")


# ----------------------------------------------------------------------------- shared data


@pytest.mark.skipif(not PBMC.is_file(), reason=f"{PBMC} is not present")
def test_shared_pbmc_h5_matrix():
    assert detect_format(PBMC) == "h5_matrix"
    adata = read(PBMC)
    assert adata.shape == (4271, 2000)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    assert np.array_equal(adata.X.data, np.round(adata.X.data)) and adata.X.data.min() >= 0
    counts = adata.obs["label"].value_counts()
    assert list(adata.obs["label"].cat.categories) == [str(i) for i in range(1, 9)]
    assert counts["1"] == 1292 and counts.sum() == 4271


@pytest.mark.skipif(
    not (CELSEQ.is_file() and CELSEQ_META.is_file()), reason=f"{CELSEQ} is not present"
)
def test_shared_celseq2_table_with_metadata():
    adata = read(CELSEQ, orientation="genes_by_cells", obs=CELSEQ_META)
    assert adata.shape == (274, 28204)
    assert adata.obs_names[0] == "A1" and adata.var_names[0] == "ENSG00000281131"
    assert set(adata.obs["cell_line"]) == {"H1975", "H2228", "HCC827"}
    assert np.array_equal(adata.X.data, np.round(adata.X.data))


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_counts_shapes_labels_and_integer_counts():
    d = synthetic_counts(n_cells=300, n_genes=80, n_types=3, n_batches=4, seed=1)
    counts = d["counts"]
    assert sp.isspmatrix_csr(counts) and counts.shape == (300, 80)
    assert np.array_equal(counts.data, np.round(counts.data)) and counts.data.min() >= 0
    assert set(d["cell_type"]) == {"type_0", "type_1", "type_2"}
    assert set(d["batch"]) == {f"batch_{b}" for b in range(4)}
    assert len(d["gene_names"]) == 80 and len(set(d["cell_names"])) == 300
    np.testing.assert_array_equal(d["library_size"], np.asarray(counts.sum(axis=1)).ravel())
    assert d["log_mean"].shape == (3, 80)
    np.testing.assert_allclose(np.log(np.exp(d["log_mean"]).sum(axis=1)), 0.0, atol=1e-9)
    assert np.median(d["library_size"]) > 500  # e^7.5 ~ 1800 expected per cell


def test_synthetic_counts_is_deterministic_in_seed():
    a, b = synthetic_counts(n_cells=200, seed=3), synthetic_counts(n_cells=200, seed=3)
    c = synthetic_counts(n_cells=200, seed=4)
    assert (a["counts"] != b["counts"]).nnz == 0
    for key in ("cell_type", "batch", "log_mean"):
        np.testing.assert_array_equal(a[key], b[key])
    assert (a["counts"] != c["counts"]).nnz > 0


def _log_normalised(counts: sp.csr_matrix) -> np.ndarray:
    library = np.asarray(counts.sum(axis=1)).ravel()
    return np.log1p(counts.multiply(1e4 / library[:, None]).toarray())


def test_synthetic_types_are_recovered_by_kmeans_on_pca():
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    d = synthetic_counts()
    z = PCA(n_components=10, random_state=0).fit_transform(_log_normalised(d["counts"]))
    found = KMeans(n_clusters=5, n_init=4, random_state=0).fit_predict(z)
    assert adjusted_rand_score(d["cell_type"], found) > 0.8


def test_synthetic_batch_effect_is_visible_and_switchable():
    def batch_gap(effect: float) -> float:
        d = synthetic_counts(n_cells=800, n_genes=200, n_types=2, batch_effect=effect, seed=5)
        y = _log_normalised(d["counts"])
        one_type = d["cell_type"] == "type_0"
        centroids = [y[one_type & (d["batch"] == b)].mean(axis=0) for b in ("batch_0", "batch_1")]
        return float(np.linalg.norm(centroids[0] - centroids[1]))

    assert batch_gap(0.5) > 3 * batch_gap(0.0)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("n_cells", 0), ("n_genes", 2.5), ("n_types", True), ("n_batches", -1),
     ("batch_effect", -0.1), ("dispersion", 0.0), ("seed", "x")],
)
def test_synthetic_counts_validates_arguments(argument, value):
    with pytest.raises(ValueError, match=argument):
        synthetic_counts(**{argument: value})


"""File helpers the format readers share: existence checks, gzip detection, peeking at
the first lines of a text file, CSR conversion, and turning any failure into a
`DataError` that names the file."""

from __future__ import annotations

import contextlib
import gzip
import io
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from betavae_core import DataError

_GZIP_MAGIC = b"\x1f\x8b"
_PEEK_BYTES = 1 << 20  # enough for a header of ~50k labels
_CELLS_PER_CHUNK = 2_000_000  # matrix cells parsed (or read from HDF5) at once


def _existing(path: str | Path, *, directory_ok: bool = False) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if not directory_ok and not p.is_file():
        raise DataError(f"{p}: not a regular file")
    return p


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


def _open_binary(path: Path) -> io.BufferedIOBase:
    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")

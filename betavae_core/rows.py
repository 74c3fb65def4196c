"""Items kept outside one dense tensor: densified one minibatch at a time.

A single-cell matrix of 200,000 cells × 2,000 genes is 1.6 GB dense but a few hundred
MB as a sparse matrix, and may live on disk (an AnnData opened with `backed="r"`).
`DomainData.x` may therefore be a `RowSource` instead of a tensor: the trainer,
posterior passes and evaluations index it with slices or index tensors and get dense
float32 rows back, so no code path densifies the whole dataset.
"""

from __future__ import annotations

import ctypes
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np
import torch

from .errors import DataError

CHUNK_ROWS = 4096


class RowSource(ABC):
    """Rows of a (n, *event_shape) array, read and densified on demand.

    Subclasses implement `shape` and `take(index)`; indexing (`rows[3:10]`,
    `rows[index_tensor]`) returns a dense float32 tensor, as indexing a tensor would.
    """

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """(n_items, *event_shape)."""

    @abstractmethod
    def take(self, index: np.ndarray) -> torch.Tensor:
        """Dense float32 rows at `index` (a 1-D int array, any order, may repeat)."""

    def subset(self, index: np.ndarray) -> RowSource:
        """A view of the rows at `index` (no data is read)."""
        return IndexedRows(self, np.asarray(index, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, key: Any) -> torch.Tensor:
        return self.take(_as_index(key, len(self)))

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, dense rows) for consecutive blocks of at most `size` rows."""
        for start in range(0, len(self), size):
            stop = min(len(self), start + size)
            yield start, self.take(np.arange(start, stop))


class IndexedRows(RowSource):
    """Rows `index` of another source, read lazily."""

    def __init__(self, base: RowSource, index: np.ndarray) -> None:
        self.base = base
        self.index = index

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    def take(self, index: np.ndarray) -> torch.Tensor:
        return self.base.take(self.index[index])

    def subset(self, index: np.ndarray) -> RowSource:
        return IndexedRows(self.base, self.index[np.asarray(index, dtype=np.int64)])


class SparseRows(RowSource):
    """Rows of a scipy sparse matrix (kept as CSR), densified per request."""

    def __init__(self, matrix: Any) -> None:
        self.matrix = matrix.tocsr()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.matrix.shape)

    def take(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.matrix[index].toarray(), dtype=np.float32))


def _as_index(key: Any, n: int) -> np.ndarray:
    if isinstance(key, slice):
        return np.arange(*key.indices(n))
    if isinstance(key, torch.Tensor):
        key = key.cpu().numpy()
    index = np.asarray(key)
    if index.dtype == bool:
        return np.nonzero(index)[0]
    if index.ndim == 0:
        raise TypeError("a RowSource is indexed by slices or index arrays, not one integer; "
                        "use rows[i:i + 1].")
    return index.astype(np.int64)


def check_in_chunks(check: Callable[[torch.Tensor], None], x: torch.Tensor | RowSource) -> None:
    """Run `check` (which names the bad row of what it sees) on a tensor at once, or on a
    row source block by block, saying which block held the bad row."""
    if not isinstance(x, RowSource):
        check(x)
        return
    for start, block in x.chunks():
        try:
            check(block)
        except DataError as exc:
            stop = start + len(block) - 1
            raise DataError(f"in the block of rows {start}-{stop} (item i below is row "
                            f"{start} + i of the data): {exc}") from exc


@cache
def steady_memory() -> None:
    """Keep the resident memory of a long minibatch loop flat (Linux, glibc).

    Densified minibatches and their temporaries are large, short-lived allocations.
    glibc raises its mmap threshold after the first of them is freed, and from then on
    serves them from the heap, which fragments: over a 200,000-cell epoch the peak RSS
    roughly doubled. A fixed threshold (1 MiB) sends them back to mmap, which returns
    them to the system when freed, at some 10-20 % more time per minibatch. Called once,
    by the trainer, for row-source data that would take over 1 GiB dense.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune

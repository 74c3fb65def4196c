"""The blocked checkerboard layout every chain holds its lattices in.

Chains hold their lattices in a blocked layout (C, 2, 2, L/2, L/2): [c, p, q, a, b] is
site (2a + p, 2b + q). Each sublattice (p, q) is then a (C, L/2, L/2) view with
contiguous rows, the two colours are {(0,0), (1,1)} and {(0,1), (1,0)}, and every
pass of an update is a plain unmasked numpy operation on one sublattice.
"""

from __future__ import annotations

import numpy as np

#: Sublattices (row parity, column parity) of the two checkerboard colours.
COLOURS = (((0, 0), (1, 1)), ((0, 1), (1, 0)))


def to_blocked(x: np.ndarray) -> np.ndarray:
    """(C, L, L) -> contiguous (C, 2, 2, L/2, L/2)."""
    c, n, _ = x.shape
    return np.ascontiguousarray(x.reshape(c, n // 2, 2, n // 2, 2).transpose(0, 2, 4, 1, 3))


def from_blocked(b: np.ndarray) -> np.ndarray:
    """(C, 2, 2, L/2, L/2) -> new (C, L, L) array."""
    c, _, _, h, _ = b.shape
    return b.transpose(0, 3, 1, 4, 2).reshape(c, 2 * h, 2 * h)


def _shift(x: np.ndarray, axis: int, d: int) -> np.ndarray:
    """np.roll(x, d, axis) for x (C, h, h) with contiguous rows, d = +-1, axis 1 or 2.

    Done as one shifted copy of each chain's flattened sublattice plus a fix of the
    wrapped row or column: several times faster than np.roll on these shapes.
    """
    c, h, _ = x.shape
    out = np.empty(x.shape, dtype=x.dtype)
    flat_out, flat_x = out.reshape(c, h * h), x.reshape(c, h * h)
    k = h if axis == 1 else 1
    first = (slice(None), 0) if axis == 1 else (slice(None), slice(None), 0)
    last = (slice(None), -1) if axis == 1 else (slice(None), slice(None), -1)
    if d == 1:
        flat_out[:, k:] = flat_x[:, :-k]
        out[first] = x[last]
    else:
        flat_out[:, :-k] = flat_x[:, k:]
        out[last] = x[first]
    return out


def neighbour_sum(b: np.ndarray, p: int, q: int) -> np.ndarray:
    """Sum of the 4 periodic neighbours of each site of sublattice (p, q) of blocked b.

    The vertical neighbours of (2a+p, 2b+q) are sublattice (1-p, q) at a and at a-1
    (p = 0) or a+1 (p = 1); the horizontal ones likewise with (p, 1-q) along b.
    """
    v = b[:, 1 - p, q]
    h = b[:, p, 1 - q]
    return v + h + _shift(v, 1, 1 - 2 * p) + _shift(h, 2, 1 - 2 * q)


def colour0_bond_sum(b: np.ndarray) -> np.ndarray:
    """Per chain, sum over all 2N bonds of x_i x_j (each bond has one colour-0 end)."""
    total = np.zeros(b.shape[0])
    for p, q in COLOURS[0]:
        total += (b[:, p, q] * neighbour_sum(b, p, q)).sum(axis=(1, 2), dtype=np.float64)
    return total


def neighbour_table(L: int) -> np.ndarray:
    """(L*L, 4) blocked flat indices of each site's right, left, down and up neighbours."""
    h = L // 2
    i, j = np.indices((L, L))
    pos = ((i % 2) * 2 + j % 2) * h * h + (i // 2) * h + j // 2  # blocked index of (i, j)
    table = np.empty((L * L, 4), dtype=np.int64)
    nbrs = [pos[i, (j + 1) % L], pos[i, (j - 1) % L], pos[(i + 1) % L, j], pos[(i - 1) % L, j]]
    table[pos.ravel()] = np.stack([n.ravel() for n in nbrs], axis=1)
    return table

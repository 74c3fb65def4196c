"""Checks and index helpers shared by everything that handles L x L lattice items."""

from __future__ import annotations

import torch

from betavae_core.errors import DataError

#: Sublattices of the square lattice in the order the checkerboard decoder fills them:
#: (row parity, column parity). Sites of one sublattice are at least two bonds apart, and
#: every nearest-neighbour bond joins {(0,0),(1,1)} to {(0,1),(1,0)}.
SUBLATTICE_ORDER: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (0, 1), (1, 0))


def lattice_size(shape: tuple[int, ...] | torch.Size, what: str = "items") -> int:
    """L of items shaped (L, L); `DataError` giving the expected shape otherwise."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise DataError(
            f"lattice {what} must be square L x L arrays, i.e. data of shape (n, L, L); "
            f"got items of shape {shape}."
        )
    return shape[0]


def first_bad_site(bad: torch.Tensor) -> tuple[int, int, int]:
    """(item, row, column) of the first True in a (n, L, L) mask."""
    item = int(torch.nonzero(bad.flatten(1).any(dim=1))[0, 0])
    row, col = (int(v) for v in torch.nonzero(bad[item])[0])
    return item, row, col


def check_spins(x: torch.Tensor, likelihood: str) -> None:
    """Raise `DataError` naming the first item and site whose value is not -1 or +1."""
    lattice_size(x.shape[1:])
    bad = (x != 1) & (x != -1)
    if bad.any():
        item, row, col = first_bad_site(bad)
        hint = (" The data look like 0/1 spins: map them with 2*x - 1, or use the bernoulli "
                "likelihood." if bool(((x == 0) | (x == 1)).all()) else "")
        raise DataError(
            f"the {likelihood} likelihood needs spins in {{-1, +1}}; item {item} holds "
            f"{x[item, row, col].item()} at site ({row}, {col}) "
            f"({int(bad.sum())} bad values in all).{hint}"
        )


def sublattice_masks(L: int, device: torch.device | None = None) -> torch.Tensor:
    """(4, L, L) float masks of the four sublattices, in `SUBLATTICE_ORDER`."""
    if L % 2:
        raise DataError(f"the checkerboard decoder needs an even lattice size L; got L={L}.")
    rows = torch.arange(L, device=device)[:, None] % 2
    cols = torch.arange(L, device=device)[None, :] % 2
    return torch.stack([((rows == r) & (cols == c)).float() for r, c in SUBLATTICE_ORDER])

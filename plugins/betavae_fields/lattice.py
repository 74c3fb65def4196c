"""Checks and index helpers shared by everything that handles L x L lattice items."""

from __future__ import annotations

import torch

from betavae_core import DataError


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


def check_spins(x: torch.Tensor, who: str) -> None:
    """Raise `DataError` naming the first item and site whose value is not -1 or +1.
    `who` needs them ("the spin likelihood", "FILE: the Ising model"): the spin
    likelihoods and the `lattice_npz` loader share this check."""
    lattice_size(x.shape[1:])
    bad = (x != 1) & (x != -1)
    if bad.any():
        item, row, col = first_bad_site(bad)
        hint = (" The data look like 0/1 spins: map them with 2*x - 1, or use the bernoulli "
                "likelihood." if bool(((x == 0) | (x == 1)).all()) else "")
        raise DataError(
            f"{who} needs spins in {{-1, +1}}; item {item} holds "
            f"{x[item, row, col].item()} at site ({row}, {col}) "
            f"({int(bad.sum())} bad values in all).{hint}"
        )


def coarsest_level(L: int) -> int:
    """Number of halvings K of the multiscale order: the largest K with L divisible by 2^K
    and 2^K <= L / 2 (so every level has at least two sites along each axis)."""
    if L % 2:
        raise DataError(f"the multiscale spin decoder needs an even lattice size L; got L={L}.")
    k = 1
    while L % 2 ** (k + 1) == 0 and 2 ** (k + 1) <= L // 2:
        k += 1
    return k


def multiscale_masks(L: int, levels: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Coarse-to-fine order of the sites of an L x L lattice, as (stages, L, L) masks.

    Stage 0 is the coarsest grid (rows and columns divisible by 2^K). Each finer level
    l = K-1, ..., 0 with spacing s = 2^l adds the sites of the s-grid that are not on the
    2s-grid in three stages: offset (s, s) (the centres of the 2s-cells, whose diagonal
    neighbours at distance s are known), then (0, s) and (s, 0) (whose four neighbours at
    distance s are known). `levels` caps K (1: a single checkerboard split of the finest
    level). Returns the masks and, per level, the spacing s, coarse first.
    """
    K = coarsest_level(L) if levels is None else min(int(levels), coarsest_level(L))
    rows = torch.arange(L)[:, None]
    cols = torch.arange(L)[None, :]
    top = 2**K
    masks = [((rows % top == 0) & (cols % top == 0)).float()]
    spacings = []
    for level in range(K - 1, -1, -1):
        s = 2**level
        on_grid = (rows % s == 0) & (cols % s == 0)
        for dr, dc in ((1, 1), (0, 1), (1, 0)):
            masks.append((on_grid & ((rows // s) % 2 == dr) & ((cols // s) % 2 == dc)).float())
        spacings.append(s)
    return torch.stack(masks), spacings

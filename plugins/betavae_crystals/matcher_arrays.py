"""StructureMatcher's test on decoded arrays, for the funnel's pairs: an emulation that
settles clear pairs in batches (`aligned_distances`), and a step-by-step replay of the
matcher's own `fit` for cells of one formula unit (`strict_fit`) for the pairs near its
tolerance. Both are checked against the matcher (tests/test_crystals_dedup.py and the
anchor of benchmarks/crystals_throughput.py); a pymatgen upgrade that changes the matcher
must be checked against them again.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .representation import protocol_matcher
from .validity import IMAGES, reduce_cells

# --- the matcher's test, emulated for small cells ----------------------------------------
SIGNED_AXES = np.array([np.diag(s) @ np.eye(3)[list(p)] for p in itertools.permutations(range(3))
                        for s in itertools.product((1, -1), repeat=3)])
# the same bases as (axis order, signs): (Q x)_j = sign_j * x[order_j]
AXIS_ORDERS = np.array([p for p in itertools.permutations(range(3))
                        for _ in itertools.product((1, -1), repeat=3)])
AXIS_SIGNS = np.array([s for _ in itertools.permutations(range(3))
                       for s in itertools.product((1, -1), repeat=3)], dtype=np.float32)
MAX_ASSIGNMENTS = 720  # species-preserving site orders tried at most; more: the matcher
PAIR_CHUNK = 1024  # pairs per batch of the emulation (memory ~ PAIR_CHUNK * 48 * K * S)


def cells_for_alignment(matrices: np.ndarray, frac: np.ndarray, occupied: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(pairwise-reduced cells scaled to one atom per unit volume, fractional coordinates
    in them): the matcher scales both structures to one volume before it compares."""
    reduced = reduce_cells(matrices)
    f = (np.asarray(frac, dtype=np.float64) @ matrices) @ np.linalg.inv(reduced)
    atoms = np.maximum(np.asarray(occupied).sum(axis=1), 1)
    reduced *= (atoms / np.abs(np.linalg.det(reduced)))[:, None, None] ** (1 / 3)
    return reduced, f - np.floor(f)


@lru_cache(maxsize=1024)
def site_assignments(classes: tuple[int, ...]) -> np.ndarray | None:
    """Every order of sites (sorted by class) that keeps each species on its own sites
    (K, S), or None when there are more than MAX_ASSIGNMENTS."""
    classes = np.asarray(classes)
    groups = [np.nonzero(classes == c)[0] for c in np.unique(classes)]
    total = 1
    for g in groups:
        total *= math.factorial(len(g))
    if total > MAX_ASSIGNMENTS:
        return None
    out = []
    for combo in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = np.empty(len(classes), dtype=np.int64)
        for g, p in zip(groups, combo, strict=True):
            order[g] = p
        out.append(order)
    return np.array(out)


def det3(m: np.ndarray) -> np.ndarray:
    """Determinants of (..., 3, 3) arrays by the rule of Sarrus (batched LU is slower)."""
    return (m[..., 0, 0] * (m[..., 1, 1] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 1])
            - m[..., 0, 1] * (m[..., 1, 0] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 0])
            + m[..., 0, 2] * (m[..., 1, 0] * m[..., 2, 1] - m[..., 1, 1] * m[..., 2, 0]))


def _shape(metric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, angles in degrees: alpha, beta, gamma) of cells given by their metric
    tensors (..., 3, 3)."""
    lengths = np.sqrt(np.diagonal(metric, axis1=-2, axis2=-1))
    cosines = np.stack([metric[..., 1, 2] / (lengths[..., 1] * lengths[..., 2]),
                        metric[..., 0, 2] / (lengths[..., 0] * lengths[..., 2]),
                        metric[..., 0, 1] / (lengths[..., 0] * lengths[..., 1])], axis=-1)
    return lengths, np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def _squared_lengths(g: np.ndarray, d: np.ndarray) -> np.ndarray:
    """d^T g d for displacements d (3, ..., N, K) under metrics g (N, 3, 3, 1), with
    few temporaries (the emulation's largest arrays)."""
    d0, d1, d2 = d
    out = g[:, 0, 0] * d0 + (2 * g[:, 0, 1]) * d1
    out += (2 * g[:, 0, 2]) * d2
    out *= d0
    part = g[:, 1, 1] * d1 + (2 * g[:, 1, 2]) * d2
    part *= d1
    out += part
    part = g[:, 2, 2] * d2
    part *= d2
    out += part
    return out


def aligned_distances(la: np.ndarray, fa: np.ndarray, lb: np.ndarray, fb: np.ndarray,
                      assignments: np.ndarray) -> np.ndarray:
    """The matcher's distance for P pairs of structures a, b of one composition and
    number of atoms: cells la, lb (P, 3, 3) scaled to one volume per atom, fractional
    coordinates fa, fb (P, S, 3) with the sites sorted by species (`sorted_sites`), and
    the species-preserving site orders to try (K, S, `site_assignments`). For the lattice
    bases the matcher would find among signed permutations of b's axes (lengths within
    ltol, angles within angle_tol of a's): the largest site displacement per
    (V/atom)^(1/3) after the best assignment, one site's translation and the mean shift
    removed (the matcher's `_cart_dists`), under the average metric of the two cells;
    inf where no basis passes the lattice tolerances."""
    matcher = protocol_matcher()
    metric_a = la @ la.transpose(0, 2, 1)
    metric_b = np.einsum("qij,pjk,qlk->pqil", SIGNED_AXES, lb @ lb.transpose(0, 2, 1),
                         SIGNED_AXES, optimize=True)
    len_a, ang_a = _shape(metric_a)
    len_b, ang_b = _shape(metric_b)
    ratio = len_b / len_a[:, None]
    ok = ((ratio < 1 + matcher.ltol) & (ratio > 1 / (1 + matcher.ltol))).all(axis=-1)
    ok &= (np.abs(ang_b - ang_a[:, None]) < matcher.angle_tol).all(axis=-1)
    pp, qq = np.nonzero(ok)
    out = np.full(len(la), np.inf)
    if not len(pp):
        return out
    # only the (pair, basis) combinations within the lattice tolerances, as offsets from
    # the first site (which then coincide, so it is left out: after the mean shift it
    # moves by minus the mean) in float32 (the verdicts keep a 5 % margin to stol, far
    # above its rounding), laid out (xyz, site, combination, order) so that every step
    # runs over contiguous memory; b's axes under basis Q are a signed permutation
    sites = fa.shape[1]
    rest = np.arange(sites - 1)
    ob = (fb[:, 1:] - fb[:, :1]).astype(np.float32).transpose(2, 1, 0)  # (3, S-1, P)
    fbq = ob[AXIS_ORDERS[qq].T[:, None, :], rest[None, :, None], pp[None, None, :]]
    fbq *= AXIS_SIGNS[qq].T[:, None, :]  # (3, S-1, N): b's offsets in basis Q
    fak = fa[:, assignments].transpose(3, 2, 0, 1).astype(np.float32)  # (3, S, P, K)
    fak = fak[:, 1:] - fak[:, :1]
    diff = fak[:, :, pp]
    diff -= fbq[..., None]  # (3, S-1, N, K)
    diff -= np.rint(diff)
    mean = np.zeros(diff.shape[:1] + diff.shape[2:], dtype=np.float32)  # (3, N, K)
    for k in range(sites - 1):  # site by site: faster than a sum over axis 1
        mean += diff[:, k]
    mean /= np.float32(sites)  # the first site moves by minus the mean
    diff -= mean[:, None]
    metric = (metric_a[pp] + metric_b[pp, qq]) / 2  # (N, 3, 3)
    g = metric.astype(np.float32)[..., None]  # (N, 3, 3, 1)
    worst = np.maximum(_squared_lengths(g, diff).max(axis=0, initial=0.0),
                       _squared_lengths(g, mean)).min(axis=-1)  # (N,)
    scale = (sites / np.sqrt(np.abs(det3(metric)))) ** (1 / 3)
    worst = np.sqrt(np.maximum(worst, 0.0)) * scale
    starts = np.flatnonzero(np.r_[True, pp[1:] != pp[:-1]])
    out[pp[starts]] = np.minimum.reduceat(worst, starts)
    return out


def sorted_sites(frac: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates, classes) of every item with its sites sorted by species class and
    the empty slots (class 0) last: the order `aligned_distances` compares."""
    key = np.where(classes == 0, np.iinfo(np.int64).max, classes)
    order = np.argsort(key, axis=1, kind="stable")
    return (np.take_along_axis(frac, order[..., None], axis=1),
            np.take_along_axis(classes, order, axis=1))


# --- the matcher's own test, replayed on arrays ------------------------------------------
# For two cells of one formula unit each and the same sites, `fit(s1, s2)` (no supercell,
# skip_structure_reduction on the Niggli cells) is: scale both to one volume; take every
# basis of s1's lattice whose vectors are within ltol of the lengths and angle_tol of the
# angles of s2's Niggli basis (`Lattice.find_all_mappings`, determinant 1); for each, and
# each translation putting an s1 site onto s2's first site of its rarest species, accept
# when every s2 site has an s1 site of its species within the fractional tolerance
# (`is_coord_subset_pbc`) and the assignment of least squared distance (periodic, on the
# cell of averaged parameters, pairs beyond the fractional tolerance excluded), its mean
# shift removed, moves no site more than stol (V/atom)^(1/3). `strict_fit` replays
# these steps with numpy. The verdict does not depend on the bases given: s1 enters only
# through its lattice points and Cartesian sites, and any two Buerger-reduced bases of a
# lattice without ties (checked) differ by a signed permutation, under which the steps
# are covariant. Where a comparison falls within STRICT_EPS of its threshold, the basis
# is not unique, the averaged cell is not LLL-reduced (pymatgen would then take images
# of another basis), or the search grid is too small, it answers None: ask the matcher.
STRICT_GRID = 2  # lattice points n @ basis with |n_k| <= STRICT_GRID are searched
_POINTS = np.array([n for n in itertools.product(range(-STRICT_GRID, STRICT_GRID + 1),
                                                 repeat=3) if any(n)], dtype=np.float64)
STRICT_EPS = 1e-7  # relative margin to every threshold; closer: the matcher decides
MAX_AXIS_VECTORS = 32  # lattice vectors fitting one target length, at most
MAX_STRICT_SITES = 12


def _angles(m: np.ndarray) -> np.ndarray:
    """(alpha, beta, gamma) in degrees of bases (..., 3, 3), as `Lattice.angles`."""
    lengths = np.linalg.norm(m, axis=-1)
    out = [np.einsum("...k,...k->...", m[..., (i + 1) % 3, :], m[..., (i + 2) % 3, :])
           / (lengths[..., (i + 1) % 3] * lengths[..., (i + 2) % 3]) for i in range(3)]
    return np.degrees(np.arccos(np.clip(np.stack(out, axis=-1), -1.0, 1.0)))


def unique_reduced(basis: np.ndarray, eps: float = 1e-6) -> bool:
    """True when `basis` (3, 3) holds the three shortest independent vectors of its
    lattice with no other vector as short (every sum or difference of basis vectors
    longer than the longest): its reduced bases then differ only by signed permutations."""
    longest = np.linalg.norm(basis, axis=1).max()
    combos = [basis[i] + s * basis[j] for i, j in ((0, 1), (0, 2), (1, 2)) for s in (1, -1)]
    combos += [basis[0] + s * basis[1] + t * basis[2] for s in (1, -1) for t in (1, -1)]
    return bool(np.linalg.norm(combos, axis=1).min() > longest * (1 + eps))


def _metric(lengths: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Metric tensors (..., 3, 3) of `Lattice.from_parameters` cells."""
    cos = np.cos(np.radians(angles))
    g = lengths[..., :, None] * lengths[..., None, :]
    pair = np.ones((*lengths.shape[:-1], 3, 3))
    pair[..., 1, 2] = pair[..., 2, 1] = cos[..., 0]
    pair[..., 0, 2] = pair[..., 2, 0] = cos[..., 1]
    pair[..., 0, 1] = pair[..., 1, 0] = cos[..., 2]
    return g * pair


def _lll_unchanged(g: np.ndarray, delta: float = 0.75, eps: float = STRICT_EPS
                   ) -> np.ndarray:
    """True where pymatgen's LLL reduction (delta 0.75) would leave the basis of metric
    g (..., 3, 3) as it is: size-reduced and Lovasz, each with a margin."""
    m21 = g[..., 0, 1] / g[..., 0, 0]
    b2 = g[..., 1, 1] - m21 ** 2 * g[..., 0, 0]
    m31 = g[..., 0, 2] / g[..., 0, 0]
    m32 = (g[..., 1, 2] - m21 * m31 * g[..., 0, 0]) / b2
    b3 = g[..., 2, 2] - m31 ** 2 * g[..., 0, 0] - m32 ** 2 * b2
    small = ((np.abs(np.stack([m21, m31, m32], axis=-1)) < 0.5 - eps).all(axis=-1))
    return (small & (b2 > (delta - m21 ** 2) * g[..., 0, 0] * (1 + eps))
            & (b3 > (delta - m32 ** 2) * b2 * (1 + eps)))


def _site_orders(c1: np.ndarray, c2: np.ndarray) -> np.ndarray | None:
    """Every species-preserving map of s2's sites to s1's (K, n): row k sends s2 site i
    to s1 site out[k, i]; None when there are more than MAX_ASSIGNMENTS."""
    o1, o2 = np.argsort(c1, kind="stable"), np.argsort(c2, kind="stable")
    orders = site_assignments(tuple(int(c) for c in c2[o2]))
    if orders is None:
        return None
    out = np.empty_like(orders)
    out[:, o2] = o1[orders]
    return out


@dataclass
class StrictCell:
    """What `strict_fit` needs of one cell, computed once per structure: its reduced
    basis, fractional coordinates in it, species, Cartesian sites, the basis lengths and
    angles, the lattice points of the search grid and the reciprocal lengths."""

    basis: np.ndarray
    frac: np.ndarray
    classes: np.ndarray
    cart: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    unique: bool
    points: np.ndarray
    point_lengths: np.ndarray
    reciprocal: np.ndarray
    volume: float


def strict_cell(m: np.ndarray, f: np.ndarray, c: np.ndarray) -> StrictCell:
    """The `StrictCell` of a cell given as basis m (3, 3, rows), fractional coordinates
    f (n, 3) and species classes c (n,) of its atoms."""
    b = reduce_cells(m[None])[0]
    frac = (f @ m) @ np.linalg.inv(b)
    frac -= np.floor(frac)
    points = _POINTS @ b
    return StrictCell(b, frac, np.asarray(c), f @ m, np.linalg.norm(b, axis=1), _angles(b),
                      unique_reduced(b), points, np.linalg.norm(points, axis=1),
                      np.linalg.norm(np.linalg.inv(b).T, axis=1), abs(float(np.linalg.det(m))))


def strict_fit(m1: np.ndarray, f1: np.ndarray, c1: np.ndarray, m2: np.ndarray,
               f2: np.ndarray, c2: np.ndarray) -> bool | None:
    """The protocol matcher's `fit(s1, s2)` for two primitive cells given as bases m
    (3, 3, rows), fractional coordinates f (n, 3) and species classes c (n,) of their
    atoms, both of one formula unit (see above); None where the replay cannot promise
    the matcher's answer."""
    return strict_fit_cells(strict_cell(m1, f1, c1), strict_cell(m2, f2, c2))


def strict_fit_cells(one: StrictCell, two: StrictCell) -> bool | None:
    """`strict_fit` of two `StrictCell`s."""
    matcher = protocol_matcher()
    ltol, stol, atol, eps = matcher.ltol, matcher.stol, matcher.angle_tol, STRICT_EPS
    c1, c2 = one.classes, two.classes
    n = len(c1)
    if (n != len(c2) or n > MAX_STRICT_SITES or not two.unique
            or not (one.volume > 0 and two.volume > 0 and np.isfinite(one.volume * two.volume))
            or sorted(c1.tolist()) != sorted(c2.tolist())):
        return None
    ratio = (two.volume / one.volume) ** (1 / 6)  # both scaled to one volume, as fit does
    lengths2, angles2 = two.lengths / ratio, two.angles
    if (lengths2.max() * (1 + ltol) * one.reciprocal / ratio).max() >= STRICT_GRID + 1:
        return None  # lattice vectors beyond the grid could fit
    vectors, length = one.points * ratio, one.point_lengths * ratio
    r = length[:, None] / lengths2[None]
    if ((np.abs(r - (1 + ltol)) < eps).any() or (np.abs(r - 1 / (1 + ltol)) < eps).any()):
        return None
    fitting = (r < 1 + ltol) & (r > 1 / (1 + ltol))
    axes = [np.nonzero(fitting[:, t])[0] for t in range(3)]
    if any(len(a) > MAX_AXIS_VECTORS for a in axes):
        return None
    if any(not len(a) for a in axes):
        return False

    def angle_ok(p: np.ndarray, q: np.ndarray, target: float) -> tuple[np.ndarray, bool]:
        cos = (vectors[p] @ vectors[q].T) / (length[p][:, None] * length[q][None])
        off = np.abs(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) - target)
        return off <= atol, bool((np.abs(off - atol) < eps * atol).any())

    a, b, c = axes
    gamma, c_g = angle_ok(a, b, angles2[2])
    beta, c_b = angle_ok(a, c, angles2[1])
    alpha, c_a = angle_ok(b, c, angles2[0])
    if c_g or c_b or c_a:
        return None
    ia, ib, ic = np.nonzero(gamma[:, :, None] & beta[:, None, :] & alpha[None, :, :])
    if not len(ia):
        return False
    det = np.abs(np.linalg.det(np.stack([_POINTS[a[ia]], _POINTS[b[ib]], _POINTS[c[ic]]],
                                        axis=1)))
    keep = (det >= 1e-8) & (np.abs(det - 1) <= 0.5)
    if not keep.any():
        return False
    lattices = np.stack([vectors[a[ia]], vectors[b[ib]], vectors[c[ic]]], axis=1)[keep]
    return _strict_sites(lattices, lengths2, angles2, one.cart * ratio, c1, two.frac, c2,
                         stol, eps)


def _strict_sites(lattices: np.ndarray, lengths2: np.ndarray, angles2: np.ndarray,
                  cart1: np.ndarray, c1: np.ndarray, f2: np.ndarray, c2: np.ndarray,
                  stol: float, eps: float) -> bool | None:
    """The site test of `strict_fit` over the fitting bases `lattices` (T, 3, 3) of s1."""
    n = len(c1)
    orders = _site_orders(c1, c2)
    if orders is None:
        return None
    fc = cart1 @ np.linalg.inv(lattices)  # (T, n, 3)
    fc -= np.floor(fc)
    mean_ang = (_angles(lattices) + angles2) / 2
    g = _metric((np.linalg.norm(lattices, axis=2) + lengths2) / 2, mean_ang)  # (T, 3, 3)
    cos, sin = np.cos(np.radians(mean_ang)), np.sin(np.radians(mean_ang))
    star = (cos[:, 0] * cos[:, 1] - cos[:, 2]) / (sin[:, 0] * sin[:, 1])
    if not ((np.abs(star) < 1 - eps) & (np.linalg.det(g) > 0)).all():
        return None  # an averaged cell pymatgen would build otherwise
    norm = (n / np.sqrt(np.linalg.det(g))) ** (1 / 3)
    tol = 2 * np.sqrt(np.diagonal(np.linalg.inv(g), axis1=1, axis2=2)) * stol / norm[:, None]
    counts = np.array([(c2 == k).sum() for k in c2])
    anchor = int(np.argmin(counts))  # the first s2 site of its rarest species
    shift = fc[:, c1 == c2[anchor]] - f2[anchor]  # (T, m, 3)
    moved = f2[None, None] + shift[:, :, None]  # (T, m, n, 3): s2's sites translated
    d = fc[:, None, None, :, :] - moved[:, :, :, None, :]  # (T, m, n2, n1, 3)
    excess = np.abs(d - np.rint(d)) - tol[:, None, None, None, :]
    same = c2[:, None] == c1[None, :]
    within = (excess <= 0).all(axis=-1) & same
    unsure = ((np.abs(excess) < eps * tol[:, None, None, None, :]).any(axis=-1)
              & same).any(axis=(-1, -2))
    subset = within.any(axis=-1).all(axis=-1)  # (T, m)
    tt, mm = np.nonzero(subset)  # only these go on to the distances, as in the matcher
    if not len(tt):
        return None if unsure.any() else False
    chol = np.linalg.cholesky(g[tt])  # x @ chol has the length of x under the metric
    # shortest periodic vectors only for the (s2 site, s1 site) pairs of one species: no
    # other pair enters a species-preserving order
    pi, pj = np.nonzero(same)
    delta = np.mod(fc[tt][:, pj], 1.0) - np.mod(moved[tt, mm][:, pi], 1.0)  # (S, p, 3)
    cart = np.einsum("spx,sxy->spy", delta, chol)
    images = np.einsum("kx,sxy->sky", IMAGES, chol)  # (S, 27, 3)
    cand = cart[:, :, None, :] + images[:, None]  # (S, p, 27, 3)
    sq = (cand * cand).sum(-1)
    best = sq.argmin(axis=-1)
    d2 = np.full((len(tt), n, n), np.inf)
    d2[:, pi, pj] = np.where(within[tt, mm][:, pi, pj],
                             np.take_along_axis(sq, best[..., None], axis=-1)[..., 0], np.inf)
    vec = np.zeros((len(tt), n, n, 3))
    vec[:, pi, pj] = np.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]
    rows = np.arange(n)
    cost = d2[:, rows, orders].sum(axis=-1)  # (S, K)
    chosen = vec[:, rows, orders]  # (S, K, n, 3)
    chosen = chosen - chosen.mean(axis=-2, keepdims=True)
    val = np.sqrt((chosen * chosen).sum(-1)).max(axis=-1) * norm[tt, None]
    lowest = cost.min(axis=-1, keepdims=True)
    tied = np.isfinite(lowest) & (cost <= lowest * (1 + eps) + 1e-12)
    hit, miss = (tied & (val < stol)).any(-1), (tied & (val >= stol)).any(-1)
    near = (tied & (np.abs(val - stol) < eps * stol)).any(-1)
    doubt = ~_lll_unchanged(g[tt]) | near | (hit & miss)
    if (hit & ~doubt & ~unsure[tt, mm]).any():
        return True
    return None if unsure.any() or doubt.any() else False

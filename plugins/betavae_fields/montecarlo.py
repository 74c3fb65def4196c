"""Monte Carlo ensembles of 2D lattice fields: Ising, XY and phi^4, with exact checks.

Every generator keeps all chains of all control values in one (C, L, L) array and
updates them together, so a spin update costs a share of a few numpy passes over one
large array instead of Python overhead on many small ones:

- chains store their lattices blocked by the four 2x2 sublattices, (C, 2, 2, L/2, L/2),
  so each checkerboard Metropolis pass is a plain numpy operation on one contiguous
  sublattice and touches only the sites it updates;
- Ising chains whose temperature lies in `wolff_window` (around Tc) use single-cluster
  Wolff updates instead, with the clusters of all those chains grown at once, one
  frontier step at a time.

Schedule, the same for every model: `n_therm` thermalisation sweeps (Metropolis step
sizes and the number of Wolff clusters per sweep adapt during the first 80%, then
freeze, so the kept chain is a fixed Markov kernel), a pilot of `n_pilot` sweeps whose
energy and |m| series give the integrated autocorrelation time tau per control value,
then one kept configuration every `spacing = max(1, ceil(2 tau))` sweeps (capped at
`max_spacing`) from each chain until `n_per_*` are collected.

phi^4 with the default lam = 1: the Ising-class transition lies at kappa_c = 0.339 +- 0.003
(KAPPA_C_PHI4), measured with this sampler from Binder-cumulant crossings (L = 8/16 cross
at 0.337, L = 16/32 at 0.339, with U ~ 0.60 there, close to the Ising value 0.611); the
ordered phase is kappa > kappa_c. For lam -> infinity kappa_c tends to the Ising value
beta_c / 2 = 0.2203.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ellipk

from betavae_core.errors import ConfigError, DataError

TC_ISING: float = 2.0 / math.log(1.0 + math.sqrt(2.0))
KAPPA_C_PHI4: float = 0.339  # for the default lam = 1.0 (measured, see the module docstring)
DEFAULT_LAM = 1.0
MAX_SPACING = 50
DEFAULT_CHAINS = 8
ADAPT_EVERY = 10  # sweeps between adaptation steps during thermalisation
ADAPT_FRACTION = 0.8  # share of the thermalisation during which step sizes adapt
TARGET_ACCEPTANCE = 0.5

_TWO_PI = np.float32(2.0 * np.pi)
_PI = np.float32(np.pi)
# Sublattices (row parity, column parity) of the two checkerboard colours.
_COLOURS = (((0, 0), (1, 1)), ((0, 1), (1, 0)))


@dataclass
class Ensemble:
    """Equilibrium configurations of one lattice model at several control values.

    Samples are grouped by control value (in the order requested), then ordered by
    sampling time; `chain` says which chain (0 .. chains-1, within its control value)
    each came from, so error bars can come from independent chains.
    """

    model: str
    configs: np.ndarray
    control: np.ndarray
    energy: np.ndarray
    magnetization: np.ndarray
    tau: dict[float, float]
    spacing: dict[float, int]
    params: dict
    control_name: str
    chain: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return int(self.configs.shape[0])


# --------------------------------------------------------------------------------------
# Parameter checks
# --------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _lattice_size(L: Any) -> int:
    """L as an int, checked: >= 2 and even (the checkerboard needs two colours)."""
    if not _is_int(L):
        raise ConfigError(f"L must be an even integer >= 2; got {L!r}")
    if L < 2:
        raise ConfigError(f"L must be an even integer >= 2; got L={L}")
    if L % 2:
        raise ConfigError(
            f"L must be even: the checkerboard update splits the periodic lattice into two "
            f"colours, which needs an even side; got L={L} (use {L + 1} or {L - 1})"
        )
    return int(L)


def _count(value: Any, name: str, minimum: int = 1) -> int:
    """A non-bool integer >= minimum."""
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _optional_count(value: Any, name: str, default: int, minimum: int) -> int:
    return default if value is None else _count(value, name, minimum)


def _control_values(values: Any, name: str, allow_zero: bool) -> np.ndarray:
    """Control values as a 1-D float64 array: finite, > 0 (or >= 0), no duplicates."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a sequence of numbers; got {values!r}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"{name} must be a non-empty 1-D sequence; got shape {arr.shape}")
    bound = "finite and >= 0" if allow_zero else "finite and > 0"
    for i, v in enumerate(arr):
        if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(f"{name}[{i}] = {float(v)!r} is invalid: each value must be {bound}")
    unique, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        repeated = unique[counts > 1].tolist()
        raise ConfigError(f"{name} must not repeat a value; repeated: {repeated}")
    return arr


def _seed(seed: Any) -> int:
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def _window(window: Any) -> tuple[float, float]:
    """The Wolff temperature window as (low, high) with low <= high."""
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"wolff_window must be two numbers (low, high); got {window!r}"
        ) from exc
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ConfigError(f"wolff_window must be finite with low <= high; got ({lo}, {hi})")
    return lo, hi


def _positive_float(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number > 0; got {value!r}") from exc
    if not np.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be finite and > 0; got {value!r}")
    return v


# --------------------------------------------------------------------------------------
# Observables (public: also used on generated configurations)
# --------------------------------------------------------------------------------------


def _as_lattices(x: Any, name: str) -> np.ndarray:
    """x as an (n, Lx, Ly) array (a single (Lx, Ly) lattice becomes n = 1), finite."""
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape[1:]) < 2:
        raise DataError(f"{name} must have shape (n, L, L) or (L, L) with L >= 2; got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains NaN or infinite values")
    return arr


def _bond_sum(x: np.ndarray, op) -> np.ndarray:
    """Sum over the 2N nearest-neighbour bonds of op(x_i, x_j), per lattice, periodic."""
    right = op(x, np.roll(x, -1, axis=2))
    down = op(x, np.roll(x, -1, axis=1))
    return right.sum(axis=(1, 2), dtype=np.float64) + down.sum(axis=(1, 2), dtype=np.float64)


def _ising_obs(spins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_sites = spins.shape[1] * spins.shape[2]
    energy = -_bond_sum(spins, np.multiply) / n_sites
    return energy, spins.mean(axis=(1, 2), dtype=np.float64)


def ising_observables(configs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Energy per site and signed magnetisation per site of Ising configurations.

    Periodic boundaries, J = 1: E = -(1/N) sum over bonds s_i s_j. Accepts int or float
    arrays of exactly +-1 (so generated configurations can be judged the same way).
    """
    spins = _as_lattices(configs, "configs")
    if not np.all((spins == 1) | (spins == -1)):
        raise DataError(
            "Ising configs must hold only -1 and +1; threshold generated values first "
            "(e.g. np.where(x > 0, 1, -1))"
        )
    return _ising_obs(spins)


def _xy_obs(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = angles.astype(np.float64, copy=False)
    n_sites = a.shape[1] * a.shape[2]
    energy = -_bond_sum(a, lambda u, v: np.cos(u - v)) / n_sites
    mx = np.cos(a).mean(axis=(1, 2))
    my = np.sin(a).mean(axis=(1, 2))
    return energy, np.hypot(mx, my)


def xy_observables(angles: Any) -> tuple[np.ndarray, np.ndarray]:
    """Energy per site, -(1/N) sum over bonds cos(theta_i - theta_j), and |mean spin vector|."""
    return _xy_obs(_as_lattices(angles, "angles"))


def _phi4_obs(phi: np.ndarray, kappa: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    f = phi.astype(np.float64, copy=False)
    n_sites = f.shape[1] * f.shape[2]
    hopping = _bond_sum(f, np.multiply)
    f2 = f * f
    local = (f2 + lam * (f2 - 1.0) ** 2).sum(axis=(1, 2))
    action = (-2.0 * kappa * hopping + local) / n_sites
    return action, f.mean(axis=(1, 2))


def phi4_observables(phi: Any, kappa: Any, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Action per site and mean field of phi^4 configurations.

    S = sum_x [-2 kappa sum_mu phi_x phi_{x+mu} + phi_x^2 + lam (phi_x^2 - 1)^2], mu over
    the two positive directions, periodic. kappa is one number or one per configuration.
    """
    f = _as_lattices(phi, "phi")
    k = np.asarray(kappa, dtype=np.float64)
    if k.ndim > 1 or (k.ndim == 1 and k.shape[0] != f.shape[0]):
        raise ConfigError(
            f"kappa must be a number or have shape ({f.shape[0]},) (one per configuration); "
            f"got shape {k.shape}"
        )
    if not np.all(np.isfinite(k)):
        raise ConfigError("kappa must be finite")
    return _phi4_obs(f, k, _positive_float(lam, "lam"))


# --------------------------------------------------------------------------------------
# Exact results and autocorrelation
# --------------------------------------------------------------------------------------


def _temperatures(T: Any) -> np.ndarray:
    arr = np.asarray(T, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if np.any(bad):
        raise ConfigError(f"temperatures must be finite and > 0; got {arr[bad].ravel()[:5]}")
    return arr


def onsager_energy(T: Any) -> np.ndarray:
    """Exact energy per site of the infinite 2D Ising model (J = 1), Onsager 1944.

    u = -coth(2b) [1 + (2/pi)(2 tanh^2(2b) - 1) K(k^2)], k = 2 sinh(2b) / cosh^2(2b).
    """
    b2 = 2.0 / _temperatures(T)
    m = (2.0 * np.sinh(b2) / np.cosh(b2) ** 2) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        bracket = 1.0 + (2.0 / np.pi) * (2.0 * np.tanh(b2) ** 2 - 1.0) * ellipk(m)
        u = -bracket / np.tanh(b2)
    return np.where(m >= 1.0, -math.sqrt(2.0), u)


def onsager_magnetization(T: Any) -> np.ndarray:
    """Exact spontaneous magnetisation (1 - sinh(2/T)^-4)^(1/8) below Tc, 0 above (Yang)."""
    t = _temperatures(T)
    with np.errstate(over="ignore"):
        inner = 1.0 - np.sinh(2.0 / t) ** -4.0
    return np.where(t < TC_ISING, np.clip(inner, 0.0, None) ** 0.125, 0.0)


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance (divided by T) of each row, lags 0 .. T-1, via FFT."""
    n = x.shape[1]
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=size, axis=1)
    return np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n] / n


def integrated_autocorr_time(series: Any, c: float = 5.0) -> float:
    """Integrated autocorrelation time tau_int = 1/2 + sum_t rho(t), in steps.

    Sokal's automatic window: the sum runs to the smallest M with M >= c tau_int(M).
    A (chains, T) array gives the chain-averaged autocorrelation (each chain centred on
    its own mean). A constant series has no measurable correlation: 0.5 is returned.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] < 4:
        raise DataError(f"series must have shape (T,) or (chains, T) with T >= 4; got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("series contains NaN or infinite values")
    c = _positive_float(c, "c")
    acov = _autocovariance(x - x.mean(axis=1, keepdims=True)).mean(axis=0)
    if acov[0] <= 1e-14 * max(1.0, float(np.abs(x).max()) ** 2):
        return 0.5
    taus = 0.5 + np.cumsum(acov[1:] / acov[0])  # taus[M - 1] = tau_int(M)
    window = np.arange(1, x.shape[1])
    ok = np.flatnonzero(window >= c * taus)
    return float(taus[ok[0]] if ok.size else taus[-1])


# --------------------------------------------------------------------------------------
# Checkerboard helpers: the blocked layout
# --------------------------------------------------------------------------------------
#
# Chains hold their lattices in a blocked layout (C, 2, 2, L/2, L/2): [c, p, q, a, b] is
# site (2a + p, 2b + q). Each sublattice (p, q) is then a (C, L/2, L/2) view with
# contiguous rows, the two colours are {(0,0), (1,1)} and {(0,1), (1,0)}, and every
# pass of an update is a plain unmasked numpy operation on one sublattice.


def _to_blocked(x: np.ndarray) -> np.ndarray:
    """(C, L, L) -> contiguous (C, 2, 2, L/2, L/2)."""
    c, n, _ = x.shape
    return np.ascontiguousarray(x.reshape(c, n // 2, 2, n // 2, 2).transpose(0, 2, 4, 1, 3))


def _from_blocked(b: np.ndarray) -> np.ndarray:
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


def _neighbour_sum(b: np.ndarray, p: int, q: int) -> np.ndarray:
    """Sum of the 4 periodic neighbours of each site of sublattice (p, q) of blocked b.

    The vertical neighbours of (2a+p, 2b+q) are sublattice (1-p, q) at a and at a-1
    (p = 0) or a+1 (p = 1); the horizontal ones likewise with (p, 1-q) along b.
    """
    v = b[:, 1 - p, q]
    h = b[:, p, 1 - q]
    return v + h + _shift(v, 1, 1 - 2 * p) + _shift(h, 2, 1 - 2 * q)


def _colour0_bond_sum(b: np.ndarray) -> np.ndarray:
    """Per chain, sum over all 2N bonds of x_i x_j (each bond has one colour-0 end)."""
    total = np.zeros(b.shape[0])
    for p, q in _COLOURS[0]:
        total += (b[:, p, q] * _neighbour_sum(b, p, q)).sum(axis=(1, 2), dtype=np.float64)
    return total


def _wrap(theta: np.ndarray) -> np.ndarray:
    """Angles into [-pi, pi) (float32)."""
    out = np.mod(theta + _PI, _TWO_PI) - _PI
    return np.where(out >= _PI, out - _TWO_PI, out).astype(np.float32, copy=False)


def _blocked_neighbour_table(L: int) -> np.ndarray:
    """(L*L, 4) blocked flat indices of each site's right, left, down and up neighbours."""
    h = L // 2
    i, j = np.indices((L, L))
    pos = ((i % 2) * 2 + j % 2) * h * h + (i // 2) * h + j // 2  # blocked index of (i, j)
    table = np.empty((L * L, 4), dtype=np.int64)
    nbrs = [pos[i, (j + 1) % L], pos[i, (j - 1) % L], pos[(i + 1) % L, j], pos[(i - 1) % L, j]]
    table[pos.ravel()] = np.stack([n.ravel() for n in nbrs], axis=1)
    return table


def _step_description(width, accepted, attempted, chain_ctrl, n_ctrl) -> dict:
    """Frozen Metropolis step width and acceptance since the last adaptation, per control."""
    return {
        "step_width": _per_control(width.ravel(), chain_ctrl, n_ctrl),
        "acceptance": _per_control(accepted / max(attempted, 1.0), chain_ctrl, n_ctrl, 3),
    }


def _adapted_width(width: np.ndarray, accepted: np.ndarray, attempted: float,
                   lo: float, hi: float) -> np.ndarray:
    """Scale Metropolis step widths toward TARGET_ACCEPTANCE (factor clipped to [1/2, 2])."""
    rate = accepted / max(attempted, 1.0)
    factor = np.clip(rate / TARGET_ACCEPTANCE, 0.5, 2.0).astype(np.float32)
    return np.clip(width * factor[:, None, None], lo, hi).astype(np.float32)


def _per_control(per_chain: np.ndarray, chain_ctrl: np.ndarray, n_ctrl: int,
                 digits: int = 4) -> list:
    """Mean of a per-chain quantity for each control value (None where no chain has it)."""
    out: list = [None] * n_ctrl
    for k in np.unique(chain_ctrl):
        out[int(k)] = round(float(per_chain[chain_ctrl == k].mean()), digits)
    return out


# --------------------------------------------------------------------------------------
# Batched chains: one object per model, all chains of all control values together
# --------------------------------------------------------------------------------------


class _IsingChains:
    """Ising chains, blocked (C, 2, 2, L/2, L/2) int8: Wolff chains first, Metropolis after."""

    def __init__(self, spins: np.ndarray, beta: np.ndarray, n_wolff: int, group: np.ndarray,
                 rng: np.random.Generator) -> None:
        self.spins = _to_blocked(spins)
        self.beta = beta
        self.n_wolff = n_wolff
        self.group = group
        self.rng = rng
        self.L = spins.shape[1]
        self.n_sites = self.L * self.L
        self.nbr = _blocked_neighbour_table(self.L)
        self.clusters = np.ones(n_wolff, dtype=np.int64)  # Wolff clusters per sweep
        self.mean_size = np.full(n_wolff, np.nan)  # mean Wolff cluster size, last block
        self._reset_stats()
        self._derive()

    def _derive(self) -> None:
        b = self.beta[self.n_wolff:].astype(np.float32)[:, None, None]
        self.a2 = np.exp(-4.0 * b)  # flip probability when s * h = 2 (dE = 4)
        self.a4 = np.exp(-8.0 * b)  # ... when s * h = 4 (dE = 8)
        self.p_add = (1.0 - np.exp(-2.0 * self.beta[: self.n_wolff])).astype(np.float32)
        self.in_cluster = np.zeros(self.n_wolff * self.n_sites, dtype=bool)
        self.slot = np.zeros(self.n_wolff * self.n_sites, dtype=np.int64)  # for de-duplication

    def _reset_stats(self) -> None:
        self.flipped = np.zeros(self.n_wolff)
        self.n_clusters = np.zeros(self.n_wolff)

    def sweep(self) -> None:
        if self.n_wolff:
            self._wolff_sweep()
        if self.n_wolff < self.spins.shape[0]:
            self._metropolis_sweep()

    def _metropolis_sweep(self) -> None:
        """One checkerboard sweep of the Metropolis chains.

        A flip changes the energy by 2 s h: always accepted for s h <= 0, else with
        probability a2 = exp(-4 beta) (s h = 2) or a4 = exp(-8 beta) (s h = 4).
        """
        b = self.spins[self.n_wolff:]
        for colour in _COLOURS:
            u = self.rng.random((2, b.shape[0], b.shape[3], b.shape[4]), dtype=np.float32)
            for k, (p, q) in enumerate(colour):
                s = b[:, p, q]
                sh = s * _neighbour_sum(b, p, q)
                flip = (sh <= 0) | (u[k] < self.a4) | ((sh == 2) & (u[k] < self.a2))
                np.multiply(s, 1 - 2 * flip.view(np.int8), out=s)

    def _wolff_sweep(self) -> None:
        for r in range(int(self.clusters.max())):
            self._wolff_round(np.flatnonzero(self.clusters > r))

    def _wolff_round(self, chains: np.ndarray) -> None:
        """Grow one Wolff cluster in each listed chain, all at once, and flip them.

        Each growth step looks at the 4 neighbours of every frontier site (a neighbour
        table: the frontier mask rolled in 4 directions, touching only frontier sites);
        a same-spin neighbour not yet in the cluster joins with probability p_add, one
        fresh random number per bond. Every site is on the frontier once, so every bond
        is tested at most once: exactly Wolff.
        """
        flat = self.spins[: self.n_wolff].reshape(-1)
        n = self.n_sites
        seeds = chains * n + self.rng.integers(0, n, size=chains.size)
        seed_spin = np.zeros(self.n_wolff, dtype=np.int8)
        seed_spin[chains] = flat[seeds]
        self.in_cluster[seeds] = True
        frontier, parts = seeds, [seeds]
        while frontier.size:
            owner = frontier // n
            base = owner * n
            cand = (self.nbr[frontier - base] + base[:, None]).ravel()
            owner = np.repeat(owner, 4)
            keep = ~self.in_cluster[cand] & (flat[cand] == seed_spin[owner])
            cand, owner = cand[keep], owner[keep]
            joins = self.rng.random(cand.size, dtype=np.float32) < self.p_add[owner]
            frontier = self._distinct(cand[joins])
            self.in_cluster[frontier] = True
            parts.append(frontier)
        members = np.concatenate(parts)
        flat[members] = -flat[members]
        self.in_cluster[members] = False
        self.flipped += np.bincount(members // n, minlength=self.n_wolff)
        self.n_clusters[chains] += 1

    def _distinct(self, sites: np.ndarray) -> np.ndarray:
        """sites without repeats (a site reached over two bonds joins once), no sorting."""
        rank = np.arange(sites.size)
        self.slot[sites] = rank
        return sites[self.slot[sites] == rank]

    def adapt(self) -> None:
        """Set clusters per sweep so a Wolff sweep flips about L*L sites (per temperature)."""
        if self.n_wolff:
            g = self.group[: self.n_wolff]
            flipped = np.bincount(g, weights=self.flipped)
            counted = np.bincount(g, weights=self.n_clusters)
            self.mean_size = flipped[g] / np.maximum(counted[g], 1.0)
            self.clusters = np.maximum(1, np.rint(self.n_sites / self.mean_size)).astype(np.int64)
        self._reset_stats()

    def describe(self, chain_ctrl: np.ndarray, n_ctrl: int) -> dict:
        """Adapted settings per temperature (None where Metropolis ran)."""
        g = chain_ctrl[: self.n_wolff]
        return {
            "wolff_clusters_per_sweep": [
                None if v is None else int(v) for v in _per_control(self.clusters, g, n_ctrl)
            ],
            "wolff_mean_cluster_size": _per_control(self.mean_size, g, n_ctrl, 2),
        }

    def observables(self) -> tuple[np.ndarray, np.ndarray]:
        energy = -_colour0_bond_sum(self.spins) / self.n_sites
        return energy, self.spins.mean(axis=(1, 2, 3, 4), dtype=np.float64)

    def states(self, idx: np.ndarray) -> np.ndarray:
        return _from_blocked(self.spins[idx])

    def keep(self, idx: np.ndarray) -> None:
        """Keep only chains idx (sorted), preserving the Wolff-first order."""
        wolff = idx[idx < self.n_wolff]
        self.clusters = self.clusters[wolff]
        self.flipped, self.n_clusters = self.flipped[wolff], self.n_clusters[wolff]
        self.mean_size = self.mean_size[wolff]
        self.n_wolff = wolff.size
        self.spins = np.ascontiguousarray(self.spins[idx])
        self.beta, self.group = self.beta[idx], self.group[idx]
        self._derive()


class _AdaptiveStep:
    """Per-chain Metropolis step widths, adapted toward TARGET_ACCEPTANCE (XY and phi^4)."""

    width: np.ndarray
    max_width: float

    def _reset_stats(self) -> None:
        self.accepted = np.zeros(self.width.shape[0])
        self.attempted = 0.0

    def adapt(self) -> None:
        self.width = _adapted_width(self.width, self.accepted, self.attempted, 1e-3,
                                    self.max_width)
        self._reset_stats()

    def describe(self, chain_ctrl: np.ndarray, n_ctrl: int) -> dict:
        return _step_description(self.width, self.accepted, self.attempted, chain_ctrl, n_ctrl)


class _XYChains(_AdaptiveStep):
    """XY chains: blocked angles float32, Metropolis plus over-relaxation sweeps."""

    max_width = float(np.pi)

    def __init__(self, theta: np.ndarray, beta: np.ndarray, overrelax: int,
                 rng: np.random.Generator) -> None:
        self.theta = _to_blocked(theta)
        self.beta = beta
        self.overrelax = overrelax
        self.rng = rng
        self.width = np.ones((theta.shape[0], 1, 1), dtype=np.float32)
        self._derive()
        self._reset_stats()

    def _derive(self) -> None:
        self.cos = np.cos(self.theta)
        self.sin = np.sin(self.theta)
        self.b32 = self.beta.astype(np.float32)[:, None, None]

    def sweep(self) -> None:
        for colour in _COLOURS:
            for p, q in colour:
                self._metropolis(p, q)
        for _ in range(self.overrelax):
            for colour in _COLOURS:
                for p, q in colour:
                    self._reflect(p, q)

    def _metropolis(self, p: int, q: int) -> None:
        th, co, si = self.theta[:, p, q], self.cos[:, p, q], self.sin[:, p, q]
        hx, hy = _neighbour_sum(self.cos, p, q), _neighbour_sum(self.sin, p, q)
        u = self.rng.random((2,) + th.shape, dtype=np.float32)
        new = _wrap(th + self.width * (2.0 * u[0] - 1.0))
        cn, sn = np.cos(new), np.sin(new)
        d_energy = hx * (co - cn) + hy * (si - sn)  # E_site = -h . (cos, sin)
        with np.errstate(over="ignore"):
            accept = u[1] < np.exp(-self.b32 * d_energy)
        th[...] = np.where(accept, new, th)
        co[...] = np.where(accept, cn, co)
        si[...] = np.where(accept, sn, si)
        self.accepted += accept.sum(axis=(1, 2))
        self.attempted += th[0].size

    def _reflect(self, p: int, q: int) -> None:
        """Over-relaxation: reflect each angle about its local field (energy unchanged)."""
        field_angle = np.arctan2(_neighbour_sum(self.sin, p, q), _neighbour_sum(self.cos, p, q))
        new = _wrap(2.0 * field_angle - self.theta[:, p, q])
        self.theta[:, p, q] = new
        self.cos[:, p, q] = np.cos(new)
        self.sin[:, p, q] = np.sin(new)

    def observables(self) -> tuple[np.ndarray, np.ndarray]:
        n_sites = self.theta[0].size
        energy = -(_colour0_bond_sum(self.cos) + _colour0_bond_sum(self.sin)) / n_sites
        mx = self.cos.mean(axis=(1, 2, 3, 4), dtype=np.float64)
        my = self.sin.mean(axis=(1, 2, 3, 4), dtype=np.float64)
        return energy, np.hypot(mx, my)

    def states(self, idx: np.ndarray) -> np.ndarray:
        return _from_blocked(self.theta[idx])

    def keep(self, idx: np.ndarray) -> None:
        self.theta = np.ascontiguousarray(self.theta[idx])
        self.beta, self.width, self.accepted = self.beta[idx], self.width[idx], self.accepted[idx]
        self._derive()


class _Phi4Chains(_AdaptiveStep):
    """phi^4 chains: blocked field float32, checkerboard Metropolis with adapted step."""

    max_width = 10.0

    def __init__(self, phi: np.ndarray, kappa: np.ndarray, lam: float,
                 rng: np.random.Generator) -> None:
        self.phi = _to_blocked(phi)
        self.kappa = kappa
        self.lam = np.float32(lam)
        self.rng = rng
        self.width = np.ones((phi.shape[0], 1, 1), dtype=np.float32)
        self._derive()
        self._reset_stats()

    def _derive(self) -> None:
        self.two_kappa = (2.0 * self.kappa).astype(np.float32)[:, None, None]

    def sweep(self) -> None:
        for colour in _COLOURS:
            for p, q in colour:
                self._metropolis(p, q)

    def _metropolis(self, p: int, q: int) -> None:
        f = self.phi[:, p, q]
        h = _neighbour_sum(self.phi, p, q)
        u = self.rng.random((2,) + f.shape, dtype=np.float32)
        new = f + self.width * (2.0 * u[0] - 1.0)
        f2, n2 = f * f, new * new
        d_action = (-self.two_kappa * h * (new - f) + (n2 - f2)
                    + self.lam * ((n2 - 1.0) ** 2 - (f2 - 1.0) ** 2))
        with np.errstate(over="ignore"):
            accept = u[1] < np.exp(-d_action)
        f[...] = np.where(accept, new, f)
        self.accepted += accept.sum(axis=(1, 2))
        self.attempted += f[0].size

    def observables(self) -> tuple[np.ndarray, np.ndarray]:
        f = self.phi.astype(np.float64)
        n_sites = f[0].size
        f2 = f * f
        local = (f2 + float(self.lam) * (f2 - 1.0) ** 2).sum(axis=(1, 2, 3, 4))
        action = (-2.0 * self.kappa * _colour0_bond_sum(f) + local) / n_sites
        return action, f.mean(axis=(1, 2, 3, 4))

    def states(self, idx: np.ndarray) -> np.ndarray:
        return _from_blocked(self.phi[idx])

    def keep(self, idx: np.ndarray) -> None:
        self.phi = np.ascontiguousarray(self.phi[idx])
        self.kappa, self.width, self.accepted = self.kappa[idx], self.width[idx], self.accepted[idx]
        self._derive()


# --------------------------------------------------------------------------------------
# The schedule shared by all models
# --------------------------------------------------------------------------------------


@dataclass
class _Run:
    configs: np.ndarray  # (n_total, L, L) grouped by control, then time
    ctrl: np.ndarray  # (n_total,) control index of each sample
    chain: np.ndarray  # (n_total,) chain rank within its control value
    tau: np.ndarray  # (n_ctrl,)
    spacing: np.ndarray  # (n_ctrl,) int
    capped: np.ndarray  # (n_ctrl,) bool: spacing hit max_spacing
    chain_sweeps: int  # lattice sweeps done in all, all chains together
    adapted: dict  # per-control settings fixed during thermalisation (JSON-ready)


def _thermalise(chains, n_therm: int) -> None:
    """n_therm sweeps; adapt every ADAPT_EVERY sweeps during the first ADAPT_FRACTION."""
    adapt_until = int(ADAPT_FRACTION * n_therm)
    for t in range(1, n_therm + 1):
        chains.sweep()
        if t <= adapt_until and t % ADAPT_EVERY == 0:
            chains.adapt()


def _pilot_tau(chains, chain_ctrl: np.ndarray, n_ctrl: int, n_pilot: int) -> np.ndarray:
    """tau per control value: max of the energy and |m| autocorrelation times."""
    energy = np.empty((chain_ctrl.size, n_pilot))
    absm = np.empty((chain_ctrl.size, n_pilot))
    for t in range(n_pilot):
        chains.sweep()
        e, m = chains.observables()
        energy[:, t], absm[:, t] = e, np.abs(m)
    tau = np.empty(n_ctrl)
    for k in range(n_ctrl):
        sel = chain_ctrl == k
        tau[k] = max(integrated_autocorr_time(energy[sel]), integrated_autocorr_time(absm[sel]))
    return tau


def _quotas(chain_rank: np.ndarray, n_chains: int, n_per: int) -> np.ndarray:
    """Samples each chain contributes so each control value gets exactly n_per."""
    return n_per // n_chains + (chain_rank < n_per % n_chains)


def _collect(chains, chain_ctrl, spacing_ctrl, quota) -> tuple[list, int]:
    """Sweep, keeping chain c's state every spacing sweeps until it has quota[c] samples."""
    count = np.zeros(chain_ctrl.size, dtype=np.int64)
    alive = np.flatnonzero(quota > 0)
    chains.keep(alive)
    records, t, sweeps = [], 0, 0
    spacing_alive = spacing_ctrl[chain_ctrl[alive]]
    while alive.size:
        chains.sweep()
        t += 1
        sweeps += alive.size
        due = np.flatnonzero(t % spacing_alive == 0)
        if not due.size:
            continue
        ids = alive[due]
        records.append((chains.states(due), ids, np.full(due.size, t)))
        count[ids] += 1
        done = count[alive] >= quota[alive]
        if done.any():
            stay = np.flatnonzero(~done)
            chains.keep(stay)
            alive, spacing_alive = alive[stay], spacing_alive[stay]
    return records, sweeps


def _run_schedule(chains, chain_ctrl: np.ndarray, chain_rank: np.ndarray, n_chains: int,
                  n_per: int, n_therm: int, n_pilot: int, max_spacing: int) -> _Run:
    """Thermalise, measure tau, then collect spaced samples; samples sorted by control."""
    n_ctrl = int(chain_ctrl.max()) + 1
    _thermalise(chains, n_therm)
    tau = _pilot_tau(chains, chain_ctrl, n_ctrl, n_pilot)
    adapted = chains.describe(chain_ctrl, n_ctrl)
    wanted = np.maximum(1, np.ceil(2.0 * tau)).astype(np.int64)
    spacing = np.minimum(wanted, max_spacing)
    quota = _quotas(chain_rank, n_chains, n_per)
    records, sweeps = _collect(chains, chain_ctrl, spacing, quota)
    configs = np.concatenate([r[0] for r in records])
    ids = np.concatenate([r[1] for r in records])
    times = np.concatenate([r[2] for r in records])
    order = np.lexsort((chain_rank[ids], times, chain_ctrl[ids]))
    ids = ids[order]
    total = sweeps + (n_therm + n_pilot) * chain_ctrl.size
    return _Run(np.ascontiguousarray(configs[order]), chain_ctrl[ids], chain_rank[ids], tau,
                spacing, wanted > max_spacing, int(total), adapted)


def _layout(ctrl_order: np.ndarray, n_chains: int) -> tuple[np.ndarray, np.ndarray]:
    """Chain -> control index and chain -> rank within its control, controls in ctrl_order."""
    chain_ctrl = np.repeat(ctrl_order, n_chains)
    chain_rank = np.tile(np.arange(n_chains), ctrl_order.size)
    return chain_ctrl, chain_rank


def _balanced_signs(rng: np.random.Generator, chain_ctrl, chain_rank, n_ctrl) -> np.ndarray:
    """+-1 per chain: alternating within each control value, times a random sign each."""
    flip = rng.choice(np.array([-1, 1], dtype=np.int8), size=n_ctrl)
    return np.where(chain_rank % 2 == 0, 1, -1).astype(np.int8) * flip[chain_ctrl]


def _schedule_params(n_therm: int, n_pilot: int, max_spacing: int,
                     values: np.ndarray, run: _Run) -> dict:
    """The JSON-ready record of how the samples were taken."""
    return {
        "n_therm": n_therm,
        "n_pilot": n_pilot,
        "max_spacing": max_spacing,
        "adapt_every": ADAPT_EVERY,
        "adapt_fraction": ADAPT_FRACTION,
        "spacing_rule": "max(1, ceil(2 * tau)), capped at max_spacing",
        "spacing_capped": [float(v) for v in values[run.capped]],
        "chain_sweeps": run.chain_sweeps,
        "boundary": "periodic",
        **run.adapted,
    }


def _ensemble(model: str, control_name: str, values: np.ndarray, run: _Run, energy, mag,
              params: dict) -> Ensemble:
    return Ensemble(
        model=model,
        configs=run.configs,
        control=values[run.ctrl].astype(np.float64),
        energy=np.asarray(energy, dtype=np.float64),
        magnetization=np.asarray(mag, dtype=np.float64),
        tau={float(v): float(t) for v, t in zip(values, run.tau, strict=True)},
        spacing={float(v): int(s) for v, s in zip(values, run.spacing, strict=True)},
        params=params,
        control_name=control_name,
        chain=run.chain.astype(np.int32),
    )


def _common_counts(L, n_per, seed, chains, n_therm, n_pilot, max_spacing, names, defaults):
    """Check the parameters every sampler takes; returns them as ints."""
    L = _lattice_size(L)
    n_per = _count(n_per, names[0])
    seed = _seed(seed)
    chains = _optional_count(chains, names[1], min(n_per, DEFAULT_CHAINS), 1)
    n_therm = _optional_count(n_therm, "n_therm", defaults[0], 0)
    n_pilot = _optional_count(n_pilot, "n_pilot", defaults[1], 10)
    max_spacing = _count(max_spacing, "max_spacing")
    return L, n_per, seed, chains, n_therm, n_pilot, max_spacing


# --------------------------------------------------------------------------------------
# Public samplers
# --------------------------------------------------------------------------------------


def sample_ising(
    L: int,
    temperatures: Sequence[float] | np.ndarray,
    n_per_temperature: int,
    seed: int = 0,
    *,
    chains_per_temperature: int | None = None,
    n_therm: int | None = None,
    n_pilot: int | None = None,
    max_spacing: int = MAX_SPACING,
    wolff_window: tuple[float, float] = (1.9, 2.7),
) -> Ensemble:
    """Equilibrium 2D Ising configurations (J = 1, periodic) at each temperature.

    Wolff single-cluster updates for temperatures inside wolff_window (where Metropolis
    slows down critically), batched checkerboard Metropolis elsewhere. Chains start
    ordered with balanced random signs: a quench from random gets stuck in stripes.
    Defaults: min(n_per_temperature, 8) chains per temperature, 200 thermalisation
    and 300 pilot sweeps.
    """
    L, n_per, seed, n_chains, n_therm, n_pilot, max_spacing = _common_counts(
        L, n_per_temperature, seed, chains_per_temperature, n_therm, n_pilot, max_spacing,
        ("n_per_temperature", "chains_per_temperature"), (200, 300))
    temps = _control_values(temperatures, "temperatures", allow_zero=False)
    lo, hi = _window(wolff_window)
    rng = np.random.default_rng(seed)
    wolff = (temps >= lo) & (temps <= hi)
    chain_ctrl, chain_rank = _layout(np.concatenate([np.flatnonzero(wolff),
                                                     np.flatnonzero(~wolff)]), n_chains)
    signs = _balanced_signs(rng, chain_ctrl, chain_rank, temps.size)
    spins = np.ascontiguousarray(np.broadcast_to(signs[:, None, None], (signs.size, L, L)))
    chains = _IsingChains(spins, 1.0 / temps[chain_ctrl], int(wolff.sum()) * n_chains,
                          chain_ctrl.copy(), rng)
    run = _run_schedule(chains, chain_ctrl, chain_rank, n_chains, n_per, n_therm, n_pilot,
                        max_spacing)
    energy, mag = ising_observables(run.configs)
    params = {
        "model": "ising", "L": L, "temperatures": temps.tolist(),
        "n_per_temperature": n_per, "seed": seed, "chains_per_temperature": n_chains,
        "coupling": 1.0, "wolff_window": [lo, hi],
        "update": ["wolff" if w else "metropolis" for w in wolff],
        **_schedule_params(n_therm, n_pilot, max_spacing, temps, run),
    }
    return _ensemble("ising", "temperature", temps, run, energy, mag, params)



def sample_xy(
    L: int,
    temperatures: Sequence[float] | np.ndarray,
    n_per_temperature: int,
    seed: int = 0,
    *,
    chains_per_temperature: int | None = None,
    n_therm: int | None = None,
    n_pilot: int | None = None,
    max_spacing: int = MAX_SPACING,
    overrelax: int = 1,
) -> Ensemble:
    """Equilibrium 2D XY configurations (angles in [-pi, pi), J = 1, periodic).

    Each sweep is one checkerboard Metropolis pass (uniform step whose width adapts
    toward 50% acceptance during thermalisation) and `overrelax` over-relaxation passes,
    which reflect every angle about its local field: free moves along the energy shell
    that shorten autocorrelations. The BKT transition is at T ~ 0.893.
    Defaults: min(n_per_temperature, 8) chains per temperature, 300 + 300 sweeps.
    """
    L, n_per, seed, n_chains, n_therm, n_pilot, max_spacing = _common_counts(
        L, n_per_temperature, seed, chains_per_temperature, n_therm, n_pilot, max_spacing,
        ("n_per_temperature", "chains_per_temperature"), (300, 300))
    overrelax = _count(overrelax, "overrelax", 0)
    temps = _control_values(temperatures, "temperatures", allow_zero=False)
    rng = np.random.default_rng(seed)
    chain_ctrl, chain_rank = _layout(np.arange(temps.size), n_chains)
    start = rng.uniform(-np.pi, np.pi, size=chain_ctrl.size).astype(np.float32)
    theta = np.ascontiguousarray(np.broadcast_to(start[:, None, None], (start.size, L, L)))
    chains = _XYChains(theta, 1.0 / temps[chain_ctrl], overrelax, rng)
    run = _run_schedule(chains, chain_ctrl, chain_rank, n_chains, n_per, n_therm, n_pilot,
                        max_spacing)
    energy, mag = xy_observables(run.configs)
    params = {
        "model": "xy", "L": L, "temperatures": temps.tolist(),
        "n_per_temperature": n_per, "seed": seed, "chains_per_temperature": n_chains,
        "coupling": 1.0, "overrelax": overrelax, "update": "metropolis+overrelaxation",
        "target_acceptance": TARGET_ACCEPTANCE,
        **_schedule_params(n_therm, n_pilot, max_spacing, temps, run),
    }
    return _ensemble("xy", "temperature", temps, run, energy, mag, params)


def sample_phi4(
    L: int,
    kappas: Sequence[float] | np.ndarray,
    n_per_kappa: int,
    seed: int = 0,
    *,
    lam: float = DEFAULT_LAM,
    chains_per_kappa: int | None = None,
    n_therm: int | None = None,
    n_pilot: int | None = None,
    max_spacing: int = MAX_SPACING,
) -> Ensemble:
    """Equilibrium 2D phi^4 configurations for each hopping parameter kappa (>= 0).

    Action S = sum_x [-2 kappa sum_mu phi_x phi_{x+mu} + phi_x^2 + lam (phi_x^2 - 1)^2],
    sampled with checkerboard Metropolis (step width adapted toward 50% acceptance).
    kappa = 0 decouples the sites. For lam = 1 the Ising-class transition is at
    kappa_c ~ 0.339 (KAPPA_C_PHI4; ordered above); Metropolis slows down there, so spacings may hit
    max_spacing (recorded in params["spacing_capped"]).
    Defaults: min(n_per_kappa, 8) chains per kappa, 300 + 300 sweeps.
    """
    L, n_per, seed, n_chains, n_therm, n_pilot, max_spacing = _common_counts(
        L, n_per_kappa, seed, chains_per_kappa, n_therm, n_pilot, max_spacing,
        ("n_per_kappa", "chains_per_kappa"), (300, 300))
    lam = _positive_float(lam, "lam")
    kappas = _control_values(kappas, "kappas", allow_zero=True)
    rng = np.random.default_rng(seed)
    chain_ctrl, chain_rank = _layout(np.arange(kappas.size), n_chains)
    signs = _balanced_signs(rng, chain_ctrl, chain_rank, kappas.size).astype(np.float32)
    phi = np.ascontiguousarray(np.broadcast_to(signs[:, None, None], (signs.size, L, L)))
    chains = _Phi4Chains(phi, kappas[chain_ctrl], lam, rng)
    run = _run_schedule(chains, chain_ctrl, chain_rank, n_chains, n_per, n_therm, n_pilot,
                        max_spacing)
    action, mag = phi4_observables(run.configs, kappas[run.ctrl], lam)
    params = {
        "model": "phi4", "L": L, "kappas": kappas.tolist(), "lam": lam,
        "n_per_kappa": n_per, "seed": seed, "chains_per_kappa": n_chains,
        "update": "metropolis", "target_acceptance": TARGET_ACCEPTANCE,
        **_schedule_params(n_therm, n_pilot, max_spacing, kappas, run),
    }
    return _ensemble("phi4", "kappa", kappas, run, action, mag, params)


def metropolis_reference(L: int, T: float, n_sweeps: int, seed: int = 0) -> np.ndarray:
    """Plain checkerboard Metropolis on one Ising lattice; returns the final (L, L) int8.

    The straightforward numpy loop (full-lattice masks, np.roll neighbours, a lookup
    table of acceptance probabilities, float32 random numbers), kept as the benchmark
    anchor for the batched generator.
    """
    L = _lattice_size(L)
    beta = 1.0 / _positive_float(T, "T")
    n_sweeps = _count(n_sweeps, "n_sweeps", 0)
    rng = np.random.default_rng(_seed(seed))
    spins = np.ones((L, L), dtype=np.int8)
    i, j = np.indices((L, L))
    masks = [(i + j) % 2 == 0, (i + j) % 2 == 1]
    accept = np.minimum(1.0, np.exp(-2.0 * beta * np.arange(-4, 5, 2))).astype(np.float32)
    for _ in range(n_sweeps):
        for mask in masks:
            field_sum = (np.roll(spins, 1, 0) + np.roll(spins, -1, 0)
                         + np.roll(spins, 1, 1) + np.roll(spins, -1, 1))
            u = rng.random((L, L), dtype=np.float32)
            flip = mask & (u < accept[(spins * field_sum + 4) // 2])
            spins[flip] *= -1
    return spins

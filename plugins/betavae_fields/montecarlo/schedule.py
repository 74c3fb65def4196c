"""The sampling schedule every model shares, and Metropolis step adaptation.

`n_therm` thermalisation sweeps (Metropolis step sizes and the number of Wolff clusters
per sweep adapt during the first ADAPT_FRACTION, then freeze, so the kept chain is a
fixed Markov kernel), a pilot of `n_pilot` sweeps whose energy and |m| series give the
integrated autocorrelation time tau per control value, then one kept configuration
every `spacing = max(1, ceil(2 tau))` sweeps (capped at `max_spacing`) from each chain
until every control value has its quota. A chains object (one per model) provides
`sweep`, `adapt`, `observables`, `states`, `keep` and `describe`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import checks
from .autocorrelation import integrated_autocorr_time
from .ensemble import Ensemble

MAX_SPACING = 50
DEFAULT_CHAINS = 8
ADAPT_EVERY = 10  # sweeps between adaptation steps during thermalisation
ADAPT_FRACTION = 0.8  # share of the thermalisation during which step sizes adapt
TARGET_ACCEPTANCE = 0.5


def _step_description(width, accepted, attempted, chain_ctrl, n_ctrl) -> dict:
    """Frozen Metropolis step width and acceptance since the last adaptation, per control."""
    return {
        "step_width": per_control(width.ravel(), chain_ctrl, n_ctrl),
        "acceptance": per_control(accepted / max(attempted, 1.0), chain_ctrl, n_ctrl, 3),
    }


def _adapted_width(width: np.ndarray, accepted: np.ndarray, attempted: float,
                   lo: float, hi: float) -> np.ndarray:
    """Scale Metropolis step widths toward TARGET_ACCEPTANCE (factor clipped to [1/2, 2])."""
    rate = accepted / max(attempted, 1.0)
    factor = np.clip(rate / TARGET_ACCEPTANCE, 0.5, 2.0).astype(np.float32)
    return np.clip(width * factor[:, None, None], lo, hi).astype(np.float32)


def per_control(per_chain: np.ndarray, chain_ctrl: np.ndarray, n_ctrl: int,
                 digits: int = 4) -> list:
    """Mean of a per-chain quantity for each control value (None where no chain has it)."""
    out: list = [None] * n_ctrl
    for k in np.unique(chain_ctrl):
        out[int(k)] = round(float(per_chain[chain_ctrl == k].mean()), digits)
    return out


class AdaptiveStep:
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


def run_schedule(chains, chain_ctrl: np.ndarray, chain_rank: np.ndarray, n_chains: int,
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


def chain_layout(ctrl_order: np.ndarray, n_chains: int) -> tuple[np.ndarray, np.ndarray]:
    """Chain -> control index and chain -> rank within its control, controls in ctrl_order."""
    chain_ctrl = np.repeat(ctrl_order, n_chains)
    chain_rank = np.tile(np.arange(n_chains), ctrl_order.size)
    return chain_ctrl, chain_rank


def balanced_signs(rng: np.random.Generator, chain_ctrl, chain_rank, n_ctrl) -> np.ndarray:
    """+-1 per chain: alternating within each control value, times a random sign each."""
    flip = rng.choice(np.array([-1, 1], dtype=np.int8), size=n_ctrl)
    return np.where(chain_rank % 2 == 0, 1, -1).astype(np.int8) * flip[chain_ctrl]


def schedule_params(n_therm: int, n_pilot: int, max_spacing: int,
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


def build_ensemble(model: str, control_name: str, values: np.ndarray, run: _Run, energy, mag,
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


def common_counts(L, n_per, seed, chains, n_therm, n_pilot, max_spacing, names, defaults):
    """Check the parameters every sampler takes; returns them as ints."""
    L = checks.lattice_side(L)
    n_per = checks.count(n_per, names[0])
    seed = checks.seed(seed)
    chains = checks.optional_count(chains, names[1], min(n_per, DEFAULT_CHAINS), 1)
    n_therm = checks.optional_count(n_therm, "n_therm", defaults[0], 0)
    n_pilot = checks.optional_count(n_pilot, "n_pilot", defaults[1], 10)
    max_spacing = checks.count(max_spacing, "max_spacing")
    return L, n_per, seed, chains, n_therm, n_pilot, max_spacing

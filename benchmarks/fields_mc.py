"""Monte Carlo throughput of betavae_fields: batched checkerboard Metropolis vs a plain loop,
and the autocorrelation times of the XY and phi^4 cluster updates against local sweeps.

Variants, all 2D Ising (J = 1, periodic, L x L), all in one run:

- plain loop: `metropolis_reference`, the straightforward numpy checkerboard Metropolis
  on one lattice at a time (full-lattice colour masks, np.roll neighbours, a lookup
  table of acceptance probabilities), run on `--ref-lattices` lattices in turn;
- batched Metropolis: the generator's kernel, `--chains` lattices in one (C, L, L) array
  (temperatures spread over 1.5 .. 3.5) updated together, sublattice by sublattice;
- sample_ising end to end: the public generator (thermalisation, pilot run with
  autocorrelation times, spaced sampling, observables) with Metropolis only, counting
  every sweep it did (params["chain_sweeps"]);
- batched Wolff: the cluster kernel at T = Tc on `--wolff-chains` lattices; its rate
  counts sites flipped, not sites visited, so its ratio is not like for like.

A spin update is one site visited by a Metropolis sweep (L*L per lattice per sweep).
Each timed variant runs `--repeats` times after an untimed warm-up and the table gives the
median. Goal: batched Metropolis >= 5x the plain loop in spin updates per second.

Second table (issue 15): integrated autocorrelation times of the energy and |m| per
sweep, local sweeps only (XY: Metropolis + over-relaxation; phi^4: Metropolis) against
the same sweeps plus Wolff clusters (XY: reflections, phi^4: the sign embedding), at and
near the transition (XY near T_BKT ~ 0.893, phi^4 near kappa_c ~ 0.339 for lam = 1), on
`--tau-chains` chains of side `--tau-L`, `--tau-sweeps` measured sweeps after 300
thermalisation sweeps (adaptation in the first 80 %). "cost" is the wall time of 2 tau
sweeps (one independent sample), so the ratio is like for like. Third: the public
samplers on the datasets' default grids, which control values hit the 50-sweep spacing
cap with cluster updates off and on. The exit code is 0 either way.

    python benchmarks/fields_mc.py [--L 32] [--chains 256] [--sweeps 300] [--repeats 3]
                                   [--tau-L 32] [--tau-sweeps 4000] [--cap-L 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from betavae_fields.montecarlo import (
    TC_ISING,
    integrated_autocorr_time,
    metropolis_reference,
    sample_ising,
    sample_phi4,
    sample_xy,
)
from betavae_fields.montecarlo.ising import IsingChains
from betavae_fields.montecarlo.phi4 import Phi4Chains
from betavae_fields.montecarlo.xy import XYChains

GOAL = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--L", type=int, default=32, help="lattice side (even)")
    p.add_argument("--chains", type=int, default=256, help="lattices in the batched run")
    p.add_argument("--sweeps", type=int, default=300, help="sweeps per timed batched run")
    p.add_argument("--ref-lattices", type=int, default=4, help="lattices for the plain loop")
    p.add_argument("--ref-sweeps", type=int, default=300, help="sweeps per plain-loop lattice")
    p.add_argument("--wolff-chains", type=int, default=64, help="lattices in the Wolff run")
    p.add_argument("--wolff-sweeps", type=int, default=20, help="Wolff sweeps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-end-to-end", action="store_true", help="skip the sample_ising row")
    p.add_argument("--tau-L", type=int, default=32, help="lattice side of the tau table")
    p.add_argument("--tau-chains", type=int, default=8, help="chains per tau measurement")
    p.add_argument("--tau-sweeps", type=int, default=4000, help="measured sweeps per tau")
    p.add_argument("--xy-temperatures", default="0.85,0.9,1.0")
    p.add_argument("--phi4-kappas", default="0.32,0.34,0.36")
    p.add_argument("--cap-L", type=int, default=32, help="lattice side of the cap table")
    p.add_argument("--cap-samples", type=int, default=32, help="samples per control value")
    p.add_argument("--only", choices=["throughput", "tau", "cap"], help="run one table")
    return p.parse_args(argv)


def median_time(run: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Warm up once, then (median seconds, work of one run) over `repeats` timed runs."""
    run()
    times, work = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        work = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), work


def plain_loop(args: argparse.Namespace) -> Callable[[], float]:
    def run() -> float:
        for k in range(args.ref_lattices):
            metropolis_reference(args.L, 2.5, args.ref_sweeps, seed=args.seed + k)
        return float(args.ref_lattices * args.ref_sweeps * args.L**2)

    return run


def batched_chains(n: int, L: int, temps: np.ndarray, n_wolff: int, seed: int) -> IsingChains:
    spins = np.ones((n, L, L), dtype=np.int8)
    return IsingChains(spins, 1.0 / temps, n_wolff, np.zeros(n, dtype=np.int64),
                        np.random.default_rng(seed))


def batched_metropolis(args: argparse.Namespace) -> Callable[[], float]:
    temps = np.linspace(1.5, 3.5, args.chains)
    chains = batched_chains(args.chains, args.L, temps, 0, args.seed)

    def run() -> float:
        for _ in range(args.sweeps):
            chains.sweep()
        return float(args.chains * args.sweeps * args.L**2)

    return run


def end_to_end(args: argparse.Namespace) -> Callable[[], float]:
    temps = np.linspace(1.5, 3.5, 16)
    per_t = max(1, args.chains // temps.size)

    def run() -> float:
        ens = sample_ising(args.L, temps, 4 * per_t, seed=args.seed, n_therm=100, n_pilot=100,
                           chains_per_temperature=per_t, wolff_window=(0.0, 0.0))
        return float(ens.params["chain_sweeps"] * args.L**2)

    return run


def batched_wolff(args: argparse.Namespace) -> Callable[[], float]:
    temps = np.full(args.wolff_chains, TC_ISING)
    chains = batched_chains(args.wolff_chains, args.L, temps, args.wolff_chains, args.seed)
    for t in range(1, 41):  # settle the clusters-per-sweep count, as thermalisation does
        chains.sweep()
        if t % 10 == 0:
            chains.adapt()

    def run() -> float:
        chains.flipped[:] = 0
        for _ in range(args.wolff_sweeps):
            chains.sweep()
        return float(chains.flipped.sum())

    return run


def row(name: str, work: float, seconds: float, ref_rate: float | None) -> str:
    rate = work / seconds
    ratio = f"{rate / ref_rate:8.1f}x" if ref_rate else "    1.0x"
    return f"| {name:<36} | {work:>13,.0f} | {seconds:>8.3f} | {rate:>15,.0f} | {ratio:>9} |"


def tau_chains(model: str, L: int, controls: np.ndarray, n: int, wolff: bool, seed: int):
    """n chains per control value of one model in one batch (as the samplers hold them),
    cluster updates on or off; returns (chains, control index of each chain)."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(controls.size), n)
    c, on = controls[group], np.full(group.size, wolff)
    if model == "xy":
        theta = np.zeros((group.size, L, L), dtype=np.float32)
        return XYChains(theta, 1.0 / c, 1, rng, on, group), group
    phi = np.ones((group.size, L, L), dtype=np.float32)
    return Phi4Chains(phi, c, 1.0, rng, on, group), group


def measure_tau(chains, group: np.ndarray, n_therm: int, n_sweeps: int) -> list[dict]:
    """Thermalise (adapting as the samplers do), then per control value: tau of the
    energy and |m|, the batch's time per sweep shared out per control value."""
    for t in range(1, n_therm + 1):
        chains.sweep()
        if t % 10 == 0 and t <= 0.8 * n_therm:
            chains.adapt()
    energy = np.empty((group.size, n_sweeps))
    absm = np.empty_like(energy)
    start = time.perf_counter()
    for t in range(n_sweeps):
        chains.sweep()
        e, m = chains.observables()
        energy[:, t], absm[:, t] = e, np.abs(m)
    n_ctrl = int(group.max()) + 1
    ms = 1e3 * (time.perf_counter() - start) / n_sweeps / n_ctrl
    rows = []
    for k in range(n_ctrl):
        sel = group == k
        tau_e = integrated_autocorr_time(energy[sel])
        tau_m = integrated_autocorr_time(absm[sel])
        rows.append({"tau_e": tau_e, "tau_m": tau_m, "ms": ms,
                     "clusters": int(chains.wolff.clusters[sel].max()),
                     "cost": 2 * max(tau_e, tau_m) * ms,
                     "e": float(energy[sel].mean()), "m": float(absm[sel].mean())})
    return rows


def tau_table(args: argparse.Namespace) -> None:
    print(f"\nIntegrated autocorrelation times per sweep, L = {args.tau_L}, {args.tau_chains} "
          f"chains per value, all values of a model in one batch, {args.tau_sweeps} sweeps; "
          f"ms/sweep = the batch's time per sweep / values; cost = 2 max(tau) x ms/sweep")
    print("| model | control | update | clusters/sweep | tau(E) | tau(|m|) | ms/sweep | "
          "cost (ms/indep. sample) | cost ratio | <E> | <|m|> |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    plan = {"xy": args.xy_temperatures, "phi4": args.phi4_kappas}
    for model, text in plan.items():
        controls = np.array([float(v) for v in text.split(",")])
        rows = {}
        for wolff in (False, True):
            chains, group = tau_chains(model, args.tau_L, controls, args.tau_chains, wolff,
                                       args.seed)
            rows[wolff] = measure_tau(chains, group, 300, args.tau_sweeps)
        for k, control in enumerate(controls):
            for wolff in (False, True):
                r = rows[wolff][k]
                name = "local + Wolff" if wolff else "local"
                ratio = rows[False][k]["cost"] / r["cost"]
                print(f"| {model} | {control:g} | {name} | {r['clusters']} | {r['tau_e']:.1f} | "
                      f"{r['tau_m']:.1f} | {r['ms']:.2f} | {r['cost']:.1f} | {ratio:.2f}x | "
                      f"{r['e']:.4f} | {r['m']:.4f} |", flush=True)


def cap_table(args: argparse.Namespace) -> None:
    """Which control values of the datasets' default grids hit the spacing cap."""
    grids = {"xy": np.round(np.linspace(0.4, 1.6, 13), 6).tolist(),
             "phi4": np.round(np.linspace(0.25, 0.45, 11), 6).tolist()}
    samplers = {"xy": sample_xy, "phi4": sample_phi4}
    print(f"\nSpacing cap (50 sweeps) on the datasets' default grids, L = {args.cap_L}, "
          f"{args.cap_samples} samples per value")
    print("| model | update | capped at | largest tau | spacing near the transition | "
          "seconds |")
    print("|---|---|---|---|---|---|")
    for model, grid in grids.items():
        for name, window in (("local", (0.0, 0.0)), ("default (Wolff window)", None)):
            extra = {} if window is None else {"wolff_window": window}
            start = time.perf_counter()
            ens = samplers[model](args.cap_L, grid, args.cap_samples, seed=args.seed, **extra)
            seconds = time.perf_counter() - start
            near = {k: v for k, v in ens.spacing.items()
                    if (0.8 <= k <= 1.1 if model == "xy" else 0.31 <= k <= 0.37)}
            capped = ens.params["spacing_capped"] or "none"
            print(f"| {model} | {name} | {capped} | {max(ens.tau.values()):.1f} | {near} | "
                  f"{seconds:.0f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only in (None, "throughput"):
        throughput(args)
    if args.only in (None, "tau"):
        tau_table(args)
    if args.only in (None, "cap"):
        cap_table(args)
    return 0


def throughput(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}, Python {platform.python_version()}; L={args.L}, "
          f"median of {args.repeats}", file=sys.stderr)
    t_ref, w_ref = median_time(plain_loop(args), args.repeats)
    ref_rate = w_ref / t_ref
    rows = [row(f"plain loop ({args.ref_lattices} lattices in turn)", w_ref, t_ref, None)]
    t_b, w_b = median_time(batched_metropolis(args), args.repeats)
    rows.append(row(f"batched Metropolis ({args.chains} chains)", w_b, t_b, ref_rate))
    if not args.no_end_to_end:
        t_e, w_e = median_time(end_to_end(args), 1)
        rows.append(row("sample_ising end to end", w_e, t_e, ref_rate))
    t_w, w_w = median_time(batched_wolff(args), args.repeats)
    rows.append(row(f"batched Wolff at Tc ({args.wolff_chains} ch., flips)", w_w, t_w, ref_rate))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    header = (f"| {'variant':<36} | {'spins updated':>13} | {'seconds':>8} | "
              f"{'spin updates/s':>15} | {'ratio':>9} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    print("\n".join(rows))
    ratio = (w_b / t_b) / ref_rate
    print(f"\ngoal >= {GOAL:.0f}x: {'PASS' if ratio >= GOAL else 'FAIL'} "
          f"(batched Metropolis / plain loop = {ratio:.1f}x)")
    print(f"1-min load average {load_before:.2f} before, {load_after:.2f} after")


if __name__ == "__main__":
    sys.exit(main())

"""Monte Carlo throughput of betavae_fields: batched checkerboard Metropolis vs a plain loop.

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
median. Goal: batched Metropolis >= 5x the plain loop in spin updates per second. The
exit code is 0 either way.

    python benchmarks/fields_mc.py [--L 32] [--chains 256] [--sweeps 300] [--repeats 3]
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

from betavae_fields.montecarlo import TC_ISING, metropolis_reference, sample_ising
from betavae_fields.montecarlo.ising import IsingChains

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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

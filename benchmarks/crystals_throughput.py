"""Throughput of the crystals generator: N candidates drawn (from the mixture over the
training encodings), decoded, checked for validity and deduplicated (goal: 100,000 under
60 s on 2 CPU cores), then checked for novelty against the training set and written.
Prints candidates/s for each stage of the funnel at each N.

The anchor is the deduplication before the prefilter (one group per reduced formula,
StructureMatcher on every representative of the group, both structures reduced at every
call), timed on the same valid candidates, with a check that both find the same
duplicates. It runs only up to --anchor-max candidates (it is the slow one).

    python benchmarks/crystals_throughput.py --run RUN [--sizes 10000,100000]

RUN is a fitted Perov-5 run folder (`betavae train .../perov_5_val.csv --out RUN`); when
it does not exist it is fitted first (200 epochs, the domain's defaults).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch

import betavae_core as bv
from betavae_crystals import matching, validity
from betavae_crystals.latents import latent_draws
from betavae_crystals.representation import CrystalRepresentation

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "crystals"
FUNNEL = ("latent_draws", "decode", "structural_validity", "compositional_validity",
          "deduplication")


def formula_only_deduplicate(structures, candidates, keys) -> dict[int, int]:
    """The deduplication before the prefilter (the anchor)."""
    first_of, by_key, groups = {}, {}, defaultdict(list)
    for i in candidates:
        if keys[i] in by_key:
            first_of[i] = by_key[keys[i]]
            continue
        s = structures[i]
        group = groups[s.composition.reduced_formula]
        match = next((j for j in group if matching._fits(s, structures[j])), None)
        if match is None:
            group.append(i)
            match = i
        first_of[i] = by_key[keys[i]] = match
    return first_of


def the_run(path: Path, epochs: int) -> bv.Run:
    if (path / bv.WEIGHTS).exists():
        return bv.load_run(path)
    data, _ = bv.load_data(str(SHARED / "perov_5_val.csv"))
    model, train, objective, from_domain = bv.configs_for(
        data, {"epochs": epochs, "progress": False, "threads": 1})
    bv.fit(data, model, train, objective, out_dir=path, from_domain=from_domain)
    return bv.load_run(path)


def anchor(run: bv.Run, context: bv.RunContext, n: int, seed: int) -> tuple[float, float, bool]:
    """(prefilter seconds, anchor seconds, same duplicates) on the valid candidates of the
    same draws the generator made."""
    rep = CrystalRepresentation.from_attrs(context.attrs)
    means = bv.encode(run.model, context.train)[0]
    z, _ = latent_draws(run.model, n, "posterior", means, context.torch_generator(), seed,
                        50)
    items = bv.decode(run.model, z, mean=True, seed=seed).mean
    structures = rep.decode(items)
    valid = [i for i, s in enumerate(structures) if s is not None
             and validity.structure_validity(s)[0]
             and validity.composition_validity(s.composition)[0]]
    keys = matching.tensor_keys(*rep.split(items))
    t0 = time.perf_counter()
    ours = matching.deduplicate(structures, valid, keys)
    t1 = time.perf_counter()
    theirs = formula_only_deduplicate(structures, valid, keys)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, ours == theirs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/crystals_bench/perov_5_throughput")
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--anchor-max", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    run = the_run(Path(args.run), args.epochs)
    context = run.context(seed=args.seed, lazy=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, CPU only; one "
          f"torch thread")
    for n in (int(v) for v in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = bv.generate(context, n, Path(tmp) / "cands", generator="crystals",
                                 seed=args.seed)
            total_s = time.perf_counter() - t0
        stages = report.summary["stages"]
        print(f"\n{n:,} candidates from the Perov-5 model ({args.run})\n")
        print("| stage | seconds | candidates | candidates/s |")
        print("|---|---|---|---|")
        for name, st in stages.items():
            print(f"| {name} | {st['seconds']:.2f} | {st['candidates']} | "
                  f"{st['per_second'] or 0:,.0f} |")
        core = sum(stages[s]["seconds"] for s in FUNNEL if s in stages)
        print(f"\ndrawn + decoded + validity + deduplication: {core:.1f} s "
              f"({n / core:,.0f} candidates/s; goal for 100,000: < 60 s)")
        print(f"whole generator incl. loading the training split, novelty and writing: "
              f"{total_s:.1f} s")
        print(f"funnel: {report.summary['funnel']}")
        if n <= args.anchor_max:
            ours, theirs, same = anchor(run, context, n, args.seed)
            print(f"\n| deduplication of {n:,} | seconds | ratio |\n|---|---|---|\n"
                  f"| formula groups only (before) | {theirs:.1f} | 1.0x |\n"
                  f"| + bucket key, lattice bound, cached reductions | {ours:.1f} | "
                  f"{theirs / ours:.1f}x |\nsame duplicates found: {same}")


if __name__ == "__main__":
    main()

"""Throughput of the crystals generator: 10,000 candidates drawn (from the mixture over the
training encodings), decoded, checked for validity and deduplicated (goal: under 60 s on
2 CPU cores), then checked for novelty against the training set and written. Prints
candidates/s for each stage of the funnel. The generator draws and decodes its own
latents (the core prepares no samples for it), so every stage is the generator's.

Uses the Perov-5 run that crystals_vs_cdvae.py fits (same --out), fitting it first when
it is missing. CDVAE, for comparison, spends 5,000 Langevin steps of its score network
per sample before any check.

    python benchmarks/crystals_throughput.py [--n 10000] [--out runs/crystals_bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch
from crystals_vs_cdvae import SHARED, fitted, split

import betavae_core as bv

FUNNEL = ("latent_draws", "decode", "structural_validity", "compositional_validity",
          "deduplication")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--out", default="runs/crystals_bench")
    p.add_argument("--epochs", type=int, default=None, help="default: the domain's (200)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, _ = bv.load_data(str(SHARED / "perov_5_val.csv"))
    train, _ = split(data, args.seed)
    run, _ = fitted("perov_5", train, args)
    context = bv.RunContext(model=run.model, train_data=train, config=run.config,
                            seed=args.seed, split="none")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = bv.generate(context, args.n, Path(tmp) / "cands", generator="crystals",
                             seed=args.seed)
        total_s = time.perf_counter() - t0
    stages = report.summary["stages"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, CPU only; one torch thread")
    print(f"{args.n} candidates from the Perov-5 model\n")
    print("| stage | seconds | candidates | candidates/s |")
    print("|---|---|---|---|")
    for name, st in stages.items():
        print(f"| {name} | {st['seconds']:.2f} | {st['candidates']} | "
              f"{st['per_second'] or 0:,.0f} |")
    core = sum(stages[s]["seconds"] for s in FUNNEL if s in stages)
    print(f"\ndrawn + decoded + validity + deduplication: {core:.1f} s "
          f"({args.n / core:,.0f} candidates/s; goal < 60 s)")
    print(f"whole generator incl. loading the training split, novelty and writing: "
          f"{total_s:.1f} s")
    print(f"funnel: {report.summary['funnel']}")


if __name__ == "__main__":
    main()

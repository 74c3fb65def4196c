"""Throughput of the crystals generator: N candidates drawn (from the mixture over the
training encodings), decoded, checked for validity and deduplicated (goal: 100,000 under
60 s on 2 CPU cores), then checked for novelty against the training set and written.
Prints candidates/s for each stage of the funnel at each N.

The anchor is the funnel as it ran before the arrays and the fingerprint prefilter:
per-structure validity on pymatgen Structures, deduplication with the exact prefilter
and StructureMatcher on every remaining pair, novelty with StructureMatcher against
every training structure of the same bucket. It runs on the first --anchor-max of the
same draws (it is the slow one), and the check says whether both find the same valid
set, the same duplicates (the same first match for every candidate) and the same novel
set, with the matcher calls our prefilter made.

    python benchmarks/crystals_throughput.py [--run RUN] [--sizes 10000,100000]
        [--anchor-max 2000] [--workers 2]

RUN is a fitted Perov-5 run folder (default: the 80/20 model of crystals_vs_cdvae.py,
runs/c2_final_perov_5/perov_5; when it does not exist one is fitted, 200 epochs). When
the run does not know its training split, novelty is checked against --training
(default the Perov-5 CSV of ../shared/data), loaded once and not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import betavae_core as bv
from betavae_crystals import matching, validity
from betavae_crystals.generation import DecodedCells
from betavae_crystals.latents import latent_draws
from betavae_crystals.loaders import load_like
from betavae_crystals.representation import CrystalRepresentation

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "crystals"
FUNNEL = ("latent_draws", "decode", "structural_validity", "compositional_validity",
          "deduplication")


def the_run(path: Path, epochs: int) -> bv.Run:
    if (path / bv.WEIGHTS).exists():
        return bv.load_run(path)
    data, _ = bv.load_data(str(SHARED / "perov_5_val.csv"))
    model, train, objective, from_domain = bv.configs_for(
        data, {"epochs": epochs, "progress": False, "threads": 1})
    bv.fit(data, model, train, objective, out_dir=path, from_domain=from_domain)
    return bv.load_run(path)


def stage_table(n: int, summary: dict, total_s: float) -> None:
    stages = summary["stages"]
    print(f"\n{n:,} candidates\n")
    print("| stage | seconds | CPU seconds | candidates | candidates/s |")
    print("|---|---|---|---|---|")
    for name, st in stages.items():
        print(f"| {name} | {st['seconds']:.2f} | {st['cpu_seconds']:.2f} | "
              f"{st['candidates']:,} | {st['per_second'] or 0:,.0f} |")
    core = sum(stages[s]["seconds"] for s in FUNNEL if s in stages)
    core_cpu = sum(stages[s]["cpu_seconds"] for s in FUNNEL if s in stages)
    rest = sum(st["seconds"] for name, st in stages.items() if name != "load_training")
    print(f"\ndrawn + decoded + validity + deduplication: {core:.1f} s "
          f"({n / core:,.0f} candidates/s; goal for 100,000: < 60 s); CPU {core_cpu:.1f} s "
          f"(this process and its workers; on a loaded machine the wall time is longer)")
    print(f"every stage but loading the training split (incl. novelty and writing): "
          f"{rest:.1f} s; the whole call {total_s:.1f} s")
    print(f"funnel: {summary['funnel']}")


def anchor(run: bv.Run, context: bv.RunContext, n: int, m: int, seed: int) -> None:
    """The funnel before (per structure, StructureMatcher) against ours on the first m of
    the same n draws; prints seconds, ratio and agreement."""
    rep = CrystalRepresentation.from_attrs(context.attrs)
    reference = context.train
    means = bv.encode(run.model, reference)[0]
    z, _ = latent_draws(run.model, n, "posterior", means, context.torch_generator(), seed, 50)
    items = bv.decode(run.model, z[:m], mean=True, seed=seed).mean
    names = [str(v) for v in reference.metadata.get("name", range(len(reference)))]
    times = {}

    t0 = time.perf_counter()
    structures = rep.decode(items)
    s_ok = [validity.structure_validity(s)[0] for s in structures]
    c_ok = [s is not None and validity.composition_validity(s.composition)[0]
            for s in structures]
    valid_before = [i for i in range(m) if s_ok[i] and c_ok[i]]
    times["validity"] = [time.perf_counter() - t0]
    t0 = time.perf_counter()
    cells = DecodedCells.from_items(rep, items)
    ok_s, _ = validity.structure_validity_arrays(cells.matrices, cells.frac, cells.occupied)
    ok_c, _ = validity.composition_validity_arrays(cells.classes, rep.species)
    valid = [int(i) for i in np.nonzero(ok_s & ok_c)[0]]
    times["validity"].append(time.perf_counter() - t0)

    keys = matching.tensor_keys(cells.lattice, cells.frac, cells.classes)
    t0 = time.perf_counter()
    before = matching.deduplicate(structures, valid, keys)
    times["deduplication"] = [time.perf_counter() - t0]
    t0 = time.perf_counter()
    pre = cells.prefilter(valid)
    ours = matching.deduplicate_prefiltered(pre, valid, keys)
    times["deduplication"].append(time.perf_counter() - t0)
    dedup_calls = pre.counts["matcher"]

    unique = [i for i in valid if before[i] == i]
    ref_structures = CrystalRepresentation.from_attrs(reference.attrs).decode(reference.x)
    t0 = time.perf_counter()
    train_set = matching.TrainingSet.build(ref_structures, names)
    novel_before = {i for i in unique if train_set.match(structures[i]) is None}
    times["novelty"] = [time.perf_counter() - t0]
    t0 = time.perf_counter()
    ref_cells = DecodedCells.from_items(CrystalRepresentation.from_attrs(reference.attrs),
                                        reference.x)
    pre_train = matching.PrefilteredTrainingSet.build(
        ref_cells.prefilter(range(len(reference))), names)
    calls = pre.counts["matcher"]
    novel = {i for i, name in pre_train.match_all(pre, unique).items() if name is None}
    times["novelty"].append(time.perf_counter() - t0)
    novelty_calls = pre.counts["matcher"] - calls

    print(f"\nanchor: the first {m:,} of the {n:,} draws, the funnel before vs ours\n")
    print("| stage | before (s) | ours (s) | ratio |\n|---|---|---|---|")
    for name, (a, b) in times.items():
        print(f"| {name} | {a:.1f} | {b:.2f} | {a / b:,.0f}x |")
    same_dups = sum(before[i] == ours[i] for i in valid)
    print(f"\nsame valid set: {valid == valid_before} ({len(valid):,} valid)")
    print(f"same first match (duplicate of / unique): {same_dups:,} of {len(valid):,}; "
          f"unique {sum(ours[i] == i for i in valid):,} (ours) vs {len(unique):,} (matcher)")
    print(f"same novel set: {novel == novel_before} ({len(novel):,} ours, "
          f"{len(novel_before):,} matcher; {len(novel ^ novel_before)} differ)")
    print(f"pairs decided in deduplication + novelty: {pre.counts}")
    print(f"matcher calls: {dedup_calls:,} (deduplication), "
          f"{novelty_calls:,} (novelty)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/c2_final_perov_5/perov_5")
    p.add_argument("--training", default=str(SHARED / "perov_5_val.csv"))
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--anchor-max", type=int, default=2_000)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1,
                   help="processes for deduplication and the space groups of the written "
                   "candidates")
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    run = the_run(Path(args.run), args.epochs)
    context = run.context(seed=args.seed, lazy=True)
    if context.train is None:
        context.train_data = load_like(Path(args.training), context.attrs)
        print(f"training split unknown to the run: novelty against {args.training} "
              f"({len(context.train_data):,} structures)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, CPU only; one "
          f"torch thread")
    for n in (int(v) for v in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = bv.generate(context, n, Path(tmp) / "cands", generator="crystals",
                                 seed=args.seed, options={"workers": args.workers})
            total_s = time.perf_counter() - t0
        stage_table(n, report.summary, total_s)
        print(f"load average {os.getloadavg()[0]:.1f}")
        if args.anchor_max:
            anchor(run, context, n, min(n, args.anchor_max), args.seed)


if __name__ == "__main__":
    main()

"""Crystals plugin vs CDVAE's published numbers on Perov-5 and Carbon-24 (CDVAE protocol).

Data: the validation splits of Perov-5 and Carbon-24 shipped in ../shared/data/crystals
(CDVAE's own files; see ../shared/data/MANIFEST.md). Each is split 80 / 20 with a fixed
seed; the model is fitted on the 80 % (of which the trainer holds 10 % out for early
stopping and best-weights selection) and every metric is computed on the other 20 %.

Metrics, as in CDVAE's scripts/compute_metrics.py: reconstruction match rate and RMSE
(StructureMatcher stol 0.5, angle_tol 10, ltol 0.3) of the 20 % encoded (posterior mean)
and decoded; 10,000 latent draws (from a Gaussian mixture over the training encodings, as
the generator draws them) for validity; coverage COV-R / COV-P (cutoffs 0.2 / 4) with
CDVAE's fingerprints (matminer CrystalNNFingerprint "ops" averaged over sites; Magpie
ElementProperty scaled by CDVAE's fixed CompScaler) on every draw, valid or not, as
CDVAE's GenEval does (`--coverage N`: a random N draws instead, counted in the printout);
Wasserstein distances of density, number of elements and (Perov-5) formation energy on
1,000 random valid draws. The last column scores real training structures as if they were
generated (all of them, or `--coverage N` of them): the coverage a perfect generator
would reach on this split. CDVAE's figures come from their 60/20/20 split of the full
datasets (18,928 / 10,153 structures), ours from the 3,787 / 2,032 validation
structures: same metric code in kind and constants, not a rerun of their model.

Training settings are the crystals domain's defaults (beta 0.05, latent 16, 200 epochs, no
early stopping; the core's lr 1e-3 and batch 128), as `betavae train` gives them.

    python benchmarks/crystals_vs_cdvae.py [--datasets perov_5,carbon_24] [--epochs 200]
        [--out runs/crystals_bench] [--samples 10000] [--coverage 0 (all)]
        [--wdist-samples 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import betavae_core as bv
from betavae_crystals import evaluations

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "crystals"
CDVAE = {  # Xie et al. 2022 (ICLR), as recorded in ../shared/data/MANIFEST.md
    "perov_5": {"match_rate": 0.9752, "rmse": 0.0156, "structural_validity": 1.0,
                "compositional_validity": 0.9859, "cov_recall": 0.9945,
                "cov_precision": 0.9846, "wdist_density": 0.1258,
                "wdist_property": 0.0264, "wdist_num_elements": 0.0628},
    "carbon_24": {"structural_validity": 1.0, "cov_recall": 0.9980,
                  "cov_precision": 0.8308},
}
ROWS = [("match_rate", "reconstruction match rate", "%"), ("rmse", "reconstruction RMSE", ""),
        ("structural_validity", "validity: structural", "%"),
        ("compositional_validity", "validity: compositional", "%"),
        ("cov_recall", "COV-R", "%"), ("cov_precision", "COV-P", "%"),
        ("wdist_density", "W-dist density (g/cm^3)", ""),
        ("wdist_property", "W-dist formation energy (eV/atom)", ""),
        ("wdist_num_elements", "W-dist number of elements", "")]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="perov_5,carbon_24")
    p.add_argument("--epochs", type=int, default=None, help="default: the domain's (200)")
    p.add_argument("--out", default="runs/crystals_bench")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--coverage", type=int, default=0,
                   help="coverage on a random N draws (0: all, as CDVAE)")
    p.add_argument("--wdist-samples", type=int, default=1000,
                   help="valid draws for the Wasserstein distances (CDVAE: 1000)")
    p.add_argument("--workers", type=int, default=2, help="fingerprint processes")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def split(data, seed: int):
    order = np.random.default_rng(seed).permutation(len(data))
    n_train = int(round(0.8 * len(data)))
    return data.subset(np.sort(order[:n_train])), data.subset(np.sort(order[n_train:]))


def fitted(name: str, train, args) -> tuple[bv.Run, float]:
    """Fit (or reuse) the run for one dataset with the domain's training defaults (and
    `--epochs`, when given); returns the run and the fit seconds."""
    run = Path(args.out) / name
    if (run / bv.WEIGHTS).exists() and (run / bv.CONFIG).exists():
        return bv.load_run(run), float("nan")
    t0 = time.perf_counter()
    settings = {"epochs": args.epochs, "seed": args.seed, "progress": False, "threads": 1}
    model, train_config, objective, from_domain = bv.configs_for(train, settings)
    bv.fit(train, model, train_config, objective, out_dir=run, from_domain=from_domain)
    return bv.load_run(run), time.perf_counter() - t0


def evaluate(name: str, args) -> dict:
    path = SHARED / f"{name}_val.csv"
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, _ = bv.load_data(str(path))
    load_s = time.perf_counter() - t0
    train, test = split(data, args.seed)
    run, fit_s = fitted(name, train, args)
    context = bv.RunContext(model=run.model, heldout=test, train_data=train,
                            config=run.config, seed=args.seed, split="benchmark 80/20")
    options = {"n_samples": args.samples, "n_coverage": args.coverage or None,
               "n_valid_samples": args.wdist_samples or None, "workers": args.workers}
    results = bv.evaluate(context, names=["crystal_reconstruction", "crystal_generation"],
                          options={"crystal_generation": options})
    rec, gen = results["crystal_reconstruction"], results["crystal_generation"]
    t0 = time.perf_counter()
    ceiling = training_as_generator(train, test, args)
    ceiling_s = time.perf_counter() - t0
    return {"dataset": name, "training_as_generator": ceiling, "n_train": len(train),
            "n_test": len(test), "config": run.config,
            "seconds": {"load": load_s, "fit": fit_s, "reconstruction": rec.pop("seconds"),
                        "generation": gen.pop("seconds"), "ceiling": ceiling_s},
            **rec, **gen}


def training_as_generator(train, test, args) -> dict:
    """COV-R / COV-P with real training structures in place of generated ones: the
    ceiling these fingerprints and cutoffs allow on this split."""
    from betavae_crystals.representation import CrystalRepresentation

    rep = CrystalRepresentation.from_attrs(train.attrs)
    pick = np.arange(len(train))
    if args.coverage and args.coverage < len(train):
        rng = np.random.default_rng(args.seed)
        pick = np.sort(rng.choice(len(train), args.coverage, replace=False))
    real = rep.decode(train.x[pick])
    reference = rep.decode(test.x)
    gen_fp = evaluations.fingerprint_arrays(real, workers=args.workers)
    ref_fp = evaluations.fingerprint_arrays(reference, workers=args.workers)
    return evaluations.coverage(*gen_fp, *ref_fp, n_generated=len(real))


def fmt(value, unit: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{100 * value:.2f} %" if unit == "%" else f"{value:.4f}"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    results = [evaluate(name, args) for name in args.datasets.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, CPU only")
    cfg = results[0]["config"]
    hidden = cfg["model"]["architecture_options"].get("hidden", [512, 256])
    print(f"model: {cfg['model']['architecture']} ({','.join(map(str, hidden))}), latent "
          f"{cfg['model']['latent_dim']}, beta {cfg['objective']['beta']}, "
          f"{cfg['train']['epochs']} epochs, lr {cfg['train']['lr']}, batch "
          f"{cfg['train']['batch_size']} (from the domain: {cfg.get('from_domain', {})}); "
          f"{args.samples} draws from the mixture over training "
          f"encodings; coverage on {args.coverage or 'all'} draws (CDVAE fingerprints, "
          f"cutoffs {evaluations.STRUCT_CUTOFF} / {evaluations.COMP_CUTOFF}); "
          f"Wasserstein distances on {args.wdist_samples or 'all'} valid draws\n")
    for r in results:
        ref = CDVAE.get(r["dataset"], {})
        print(f"## {r['dataset']}: train {r['n_train']} / test {r['n_test']} structures "
              f"(80/20 of the shared validation split, seed {args.seed})\n")
        ceiling = r["training_as_generator"]
        print("| metric | betavae_crystals | CDVAE (paper) | training set as generator |")
        print("|---|---|---|---|")
        for key, label, unit in ROWS:
            if key == "wdist_property" and r["dataset"] != "perov_5":
                continue
            print(f"| {label} | {fmt(r.get(key), unit)} | {fmt(ref.get(key), unit)} | "
                  f"{fmt(ceiling.get(key), unit)} |")
        print(f"\ncoverage: {r['coverage_on']}, {r['n_coverage_fingerprinted']} of "
              f"{r['n_coverage_generated']} fingerprinted, against "
              f"{r['n_reference_fingerprinted']} test structures; training set as generator: "
              f"{ceiling['n_coverage_generated']} structures. AMSD / AMCD recall "
              f"{fmt(r.get('amsd_recall'), '')} / {fmt(r.get('amcd_recall'), '')}, precision "
              f"{fmt(r.get('amsd_precision'), '')} / {fmt(r.get('amcd_precision'), '')}")
        secs = r["seconds"]
        print(f"seconds: load {secs['load']:.0f}, fit {secs['fit']:.0f}, reconstruction "
              f"{secs['reconstruction']:.0f}, generation metrics {secs['generation']:.0f} "
              f"(fingerprints {r['fingerprint_seconds']:.0f}), training-set ceiling "
              f"{secs['ceiling']:.0f}\n")
    out = Path(args.out) / "crystals_vs_cdvae.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

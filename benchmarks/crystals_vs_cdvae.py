"""Crystals plugin vs CDVAE's published numbers on Perov-5 and Carbon-24, one line per sampler.

Data: the validation splits of Perov-5 and Carbon-24 shipped in ../shared/data/crystals
(CDVAE's own files; see ../shared/data/MANIFEST.md). Each is split 80 / 20 with a fixed
seed; the model is fitted on the 80 % (of which the trainer holds 10 % out for early
stopping and best-weights selection) and every metric is computed on the other 20 %.

Samplers, each on its own line (`--samplers`):
* `normal`: z ~ N(0, I), whatever the model's prior: CDVAE's generation protocol;
* `prior`: the model's own prior (`model.sample_prior`), when it is a learned one
  (`--prior mog`: a mixture of Gaussians trained with the model and saved with it);
* `posterior`: a Gaussian mixture fitted after training to the training encodings (the
  `crystals` generator's default).

Metrics, as in CDVAE's scripts/compute_metrics.py and eval_utils.py:
* reconstruction (the same for every sampler): the 20 % encoded (posterior mean) and
  decoded; match rate and RMSE of StructureMatcher(stol 0.5, angle_tol 10, ltol 0.3)
  with CDVAE's validity gate (RecEval: a decoded structure that fails the structural or
  compositional check counts as unmatched); the ungated rate is printed beside it;
* per sampler, `--samples` draws (10,000 as CDVAE): structural validity (no two atoms
  closer than 0.5 Å, volume >= 0.1 Å^3, as `structure_validity`), compositional
  validity (SMACT charge neutrality with Pauling test, as `smact_validity`), COV-R /
  COV-P as `compute_cov` (cutoffs 0.2 / 4; CrystalNN "ops" site-mean fingerprints, Magpie
  scaled by CDVAE's CompScaler; all draws, valid or not, or a random `--coverage N`),
  Wasserstein distances of density and number of elements on `--wdist-samples` random
  valid draws;
* rediscovery: held-out structures that a novel valid draw matches (StructureMatcher;
  novel = matching no training structure). Draws are compared only with held-out
  structures of the same reduced formula, primitive site count and space group
  (spglib, symprec 0.1), so the count is a lower bound; `--rediscovery N` checks a
  random N of the valid draws (0: all).

CDVAE's figures come from their 60/20/20 split of the full datasets (18,928 / 10,153
structures), ours from the 3,787 / 2,032 validation structures: same metric code in
kind and constants, not a rerun of their model.

Training: the crystals domain's defaults (beta 0.05, latent 16, 200 epochs, no early
stopping, Hungarian site matching in the likelihood; the core's lr 1e-3, batch 128) and
`--prior` (default mog with `--components` 32), which the domain cannot suggest.

    python benchmarks/crystals_vs_cdvae.py [--datasets perov_5,carbon_24] [--epochs 200]
        [--out runs/crystals_bench] [--samples 10000] [--coverage 0 (all)]
        [--samplers normal,prior,posterior] [--prior mog] [--components 32]
        [--site-matching hungarian] [--rediscovery 2000] [--wdist-samples 1000]
        [--workers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wasserstein_distance

import betavae_core as bv
from betavae_crystals import evaluations, validity
from betavae_crystals.latents import latent_draws, prior_name
from betavae_crystals.representation import CrystalRepresentation, protocol_matcher

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "crystals"
CDVAE = {  # Xie et al. 2022 (ICLR), as recorded in ../shared/data/MANIFEST.md
    "perov_5": {"match_rate": 0.9752, "rmse": 0.0156, "structural_validity": 1.0,
                "compositional_validity": 0.9859, "cov_recall": 0.9945,
                "cov_precision": 0.9846, "wdist_density": 0.1258,
                "wdist_num_elements": 0.0628},
    "carbon_24": {"match_rate": 0.5522, "rmse": 0.1251, "structural_validity": 1.0,
                  "cov_recall": 0.9980, "cov_precision": 0.8308},
}
GOALS = {  # issue 16, for draws from the model's own prior
    "perov_5": {"structural_validity": 0.99, "cov_recall": 0.99, "cov_precision": 0.95,
                "match_rate": 0.975},
    "carbon_24": {"structural_validity": 0.99, "cov_recall": 0.95},
}
RMSE_GOALS = {"carbon_24": 0.125}
COLUMNS = [("match_rate", "match", "%"), ("rmse", "RMSE", ""),
           ("structural_validity", "struct. valid", "%"),
           ("compositional_validity", "comp. valid", "%"),
           ("cov_recall", "COV-R", "%"), ("cov_precision", "COV-P", "%"),
           ("wdist_density", "W1 density", ""), ("wdist_num_elements", "W1 #elem", ""),
           ("rediscovered", "rediscovered", "n")]
SAMPLER_NAMES = {"normal": "N(0, I) (CDVAE's protocol)", "prior": "learned prior",
                 "posterior": "mixture on encodings"}
SYMPREC = 0.1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="perov_5,carbon_24")
    p.add_argument("--epochs", type=int, default=None, help="default: the domain's (200)")
    p.add_argument("--out", default="runs/crystals_bench")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--coverage", type=int, default=0,
                   help="coverage on a random N draws (0: all, as CDVAE)")
    p.add_argument("--no-coverage", action="store_true",
                   help="skip COV-R / COV-P (CrystalNN fingerprints are the slow part)")
    p.add_argument("--wdist-samples", type=int, default=1000,
                   help="valid draws for the Wasserstein distances (CDVAE: 1000)")
    p.add_argument("--samplers", default="normal,prior,posterior")
    p.add_argument("--prior", default="mog", help="the model's prior (isotropic or mog)")
    p.add_argument("--components", type=int, default=32, help="mixture prior components")
    p.add_argument("--site-matching", default=None, help="hungarian or none (default: "
                   "the likelihood's, hungarian)")
    p.add_argument("--beta", type=float, default=None, help="default: the domain's (0.05)")
    p.add_argument("--rediscovery", type=int, default=2000,
                   help="valid draws checked for rediscovery (0: all)")
    p.add_argument("--workers", type=int, default=2, help="fingerprint processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the fit")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def split(data, seed: int):
    order = np.random.default_rng(seed).permutation(len(data))
    n_train = int(round(0.8 * len(data)))
    return data.subset(np.sort(order[:n_train])), data.subset(np.sort(order[n_train:]))


def fitted(name: str, train, args) -> tuple[bv.Run, float]:
    """Fit (or reuse) the run for one dataset with the domain's training defaults and the
    benchmark's prior; returns the run and the fit seconds."""
    run = Path(args.out) / name
    if (run / bv.WEIGHTS).exists() and (run / bv.CONFIG).exists():
        return bv.load_run(run), float("nan")
    t0 = time.perf_counter()
    settings = {"epochs": args.epochs, "seed": args.seed, "progress": False,
                "threads": args.threads, "beta": args.beta, "prior": args.prior}
    if args.prior == "mog":
        settings["prior_options"] = {"components": args.components}
    if args.site_matching:
        settings["likelihood_options"] = {"site_matching": args.site_matching}
    model, train_config, objective, from_domain = bv.configs_for(train, settings)
    bv.fit(train, model, train_config, objective, out_dir=run, from_domain=from_domain)
    return bv.load_run(run), time.perf_counter() - t0


def is_valid(structure) -> bool:
    return (structure is not None and validity.structure_validity(structure)[0]
            and validity.composition_validity(structure.composition)[0])


def reconstruction(model, test, rep: CrystalRepresentation) -> dict:
    """Match rate and RMSE with CDVAE's validity gate (RecEval), and the ungated rate."""
    items = bv.reconstruct(model, test, mean=True).mean
    decoded = rep.decode(items)
    rms = evaluations.rms_distances(rep.decode(test.x), decoded)
    gate = [is_valid(b) for b in decoded]
    gated = [r for r, ok in zip(rms, gate, strict=True) if r is not None and ok]
    return {"match_rate": len(gated) / len(rms),
            "rmse": float(np.mean(gated)) if gated else None,
            "match_rate_ungated": sum(r is not None for r in rms) / len(rms),
            "reconstruction_valid": float(np.mean(gate))}


def symmetry_key(structure) -> tuple:
    """(reduced formula, primitive site count, space group) under spglib, the prefilter
    before StructureMatcher (matched structures can differ in space group at these
    tolerances, so a key miss only makes the count a lower bound)."""
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords,
            [site.specie.Z for site in structure])
    formula = structure.composition.reduced_formula
    try:
        dataset = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
        primitive = spglib.find_primitive(cell, symprec=SYMPREC)
    except Exception:
        dataset, primitive = None, None
    if dataset is None or primitive is None:
        return (formula, len(structure), 1)
    return (formula, len(primitive[2]), int(dataset.number))


def _fits(a, b) -> bool:
    try:
        return bool(protocol_matcher().fit(a, b))
    except Exception:
        return False


def rediscovery(candidates: list, train: list, test: list) -> dict:
    """Held-out structures matched by a valid candidate, and by a novel one (one that
    matches no training structure of its formula and primitive site count)."""
    by_key = defaultdict(list)
    for i, c in enumerate(candidates):
        by_key[symmetry_key(c)].append(i)
    train_groups = defaultdict(list)
    for s in train:
        train_groups[symmetry_key(s)[:2]].append(s)
    novel: dict[int, bool] = {}
    matched = found = 0
    for t in test:
        hit = False
        for i in by_key.get(symmetry_key(t), ()):
            if not _fits(candidates[i], t):
                continue
            hit = True
            if i not in novel:
                key = symmetry_key(candidates[i])[:2]
                novel[i] = not any(_fits(candidates[i], s) for s in train_groups[key])
            if novel[i]:
                found += 1
                break
        matched += hit
    return {"rediscovered": found, "heldout_matched": matched,
            "rediscovery_checked": len(candidates)}


def draw_metrics(structures: list, test_structures: list, ref_fp, train_structures: list,
                 args) -> dict:
    """Validity, coverage, Wasserstein distances and rediscovery of decoded draws, as the
    `crystal_generation` evaluation computes the first three (the held-out fingerprints
    `ref_fp` are computed once for every sampler)."""
    rng = np.random.default_rng(args.seed)
    struct_ok = np.array([s is not None and validity.structure_validity(s)[0]
                          for s in structures])
    comp_ok = np.array([s is not None and validity.composition_validity(s.composition)[0]
                        for s in structures])
    drawn = np.arange(len(structures))
    if args.coverage and args.coverage < len(structures):
        drawn = np.sort(rng.choice(len(structures), args.coverage, replace=False))
    t0 = time.perf_counter()
    if ref_fp is None:  # --no-coverage
        drawn, cov = [], {"n_coverage_fingerprinted": 0}
    else:
        gen_fp = evaluations.fingerprint_arrays([structures[i] for i in drawn],
                                                workers=args.workers)
        cov = evaluations.coverage(*gen_fp, *ref_fp, n_generated=len(drawn))
    fingerprint_s = time.perf_counter() - t0
    valid = np.nonzero(struct_ok & comp_ok)[0]
    out = {"structural_validity": float(struct_ok.mean()),
           "compositional_validity": float(comp_ok.mean()),
           "validity": float((struct_ok & comp_ok).mean()), **cov,
           "coverage_on": ("no draws (not measured)" if ref_fp is None
                           else "all draws" if len(drawn) == len(structures)
                           else f"a random {len(drawn)} of {len(structures)} draws"),
           "fingerprint_seconds": fingerprint_s}
    if len(valid):
        some = valid if not args.wdist_samples or len(valid) <= args.wdist_samples else (
            np.sort(rng.choice(valid, args.wdist_samples, replace=False)))
        generated = [structures[i] for i in some]
        out["wdist_density"] = float(wasserstein_distance(
            [s.density for s in generated], [s.density for s in test_structures]))
        out["wdist_num_elements"] = float(wasserstein_distance(
            [len(s.composition) for s in generated],
            [len(s.composition) for s in test_structures]))
    checked = valid
    if args.rediscovery and len(valid) > args.rediscovery:
        checked = np.sort(rng.choice(valid, args.rediscovery, replace=False))
    t0 = time.perf_counter()
    out.update(rediscovery([structures[i] for i in checked], train_structures,
                           test_structures))
    out["rediscovery_seconds"] = time.perf_counter() - t0
    return out


def sampler_lines(run, train, test, rep, args, ref_fp=None) -> dict:
    """The generation metrics and rediscovery count of each sampler (`--samplers`; the
    learned-prior line only for a model whose prior is learned)."""
    model = run.model
    learned = model.config.prior != "isotropic"
    means = bv.encode(model, train)[0]
    train_structures = rep.decode(train.x)
    test_structures = [s for s in rep.decode(test.x) if s is not None]
    if ref_fp is None and not getattr(args, "no_coverage", False):
        ref_fp = evaluations.fingerprint_arrays(test_structures, workers=args.workers)
    out = {}
    for sampler in args.samplers.split(","):
        if sampler == "prior" and not learned:
            continue
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)
        z, source = latent_draws(model, args.samples, sampler, means, generator, args.seed)
        decoded = rep.decode(bv.decode(model, z, mean=True, sample=False,
                                       seed=args.seed).mean)
        line = draw_metrics(decoded, test_structures, ref_fp, train_structures, args)
        out[sampler] = {"latent": source, **line, "seconds": time.perf_counter() - t0}
    return out


def evaluate(name: str, args) -> dict:
    path = SHARED / f"{name}_val.csv"
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, _ = bv.load_data(str(path))
    load_s = time.perf_counter() - t0
    train, test = split(data, args.seed)
    run, fit_s = fitted(name, train, args)
    rep = CrystalRepresentation.from_attrs(train.attrs)
    t0 = time.perf_counter()
    rec = reconstruction(run.model, test, rep)
    rec_s = time.perf_counter() - t0
    samplers = sampler_lines(run, train, test, rep, args)
    return {"dataset": name, "n_train": len(train), "n_test": len(test),
            "config": run.config, "prior": prior_name(run.model), "reconstruction": rec,
            "samplers": samplers, "seconds": {"load": load_s, "fit": fit_s,
                                              "reconstruction": rec_s}}


def fmt(value, unit: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if unit == "n":
        return str(int(value))
    return f"{100 * value:.2f} %" if unit == "%" else f"{value:.4f}"


def goal_line(name: str, line: dict) -> str:
    """PASS/MISS of each of the issue's goals for one sampler's line."""
    marks = []
    for key, goal in GOALS.get(name, {}).items():
        if line.get(key) is None:
            marks.append(f"{key} not measured")
            continue
        marks.append(f"{key} {'PASS' if line[key] >= goal else 'MISS'}")
    if name in RMSE_GOALS and line.get("rmse") is not None:
        marks.append(f"rmse {'PASS' if line['rmse'] <= RMSE_GOALS[name] else 'MISS'}")
    return ", ".join(marks)


def print_dataset(r: dict, args) -> None:
    name = r["dataset"]
    print(f"## {name}: train {r['n_train']} / test {r['n_test']} structures (80/20 of the "
          f"shared validation split, seed {args.seed}); model prior: {r['prior']}\n")
    print("| sampler | " + " | ".join(label for _, label, _ in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    rec = r["reconstruction"]
    for sampler, line in r["samplers"].items():
        row = {**line, **rec}
        print(f"| {SAMPLER_NAMES[sampler]} | "
              + " | ".join(fmt(row.get(k), u) for k, _, u in COLUMNS) + " |")
    ref = CDVAE.get(name, {})
    print("| CDVAE (paper, Langevin sampling) | "
          + " | ".join(fmt(ref.get(k), u) for k, _, u in COLUMNS) + " |")
    print(f"\nreconstruction: ungated match {fmt(rec['match_rate_ungated'], '%')}, decoded "
          f"structures valid {fmt(rec['reconstruction_valid'], '%')}")
    for sampler, line in r["samplers"].items():
        print(f"{SAMPLER_NAMES[sampler]}: {line['latent']}; coverage on {line['coverage_on']} "
              f"({line['n_coverage_fingerprinted']} fingerprinted); rediscovery: "
              f"{line['rediscovered']} novel / {line['heldout_matched']} any of "
              f"{r['n_test']} held-out matched by {line['rediscovery_checked']} valid draws; "
              f"goals: {goal_line(name, {**line, **rec})}; {line['seconds']:.0f} s "
              f"(rediscovery {line['rediscovery_seconds']:.0f} s)")
    secs = r["seconds"]
    print(f"seconds: load {secs['load']:.0f}, fit {secs['fit']:.0f}, reconstruction "
          f"{secs['reconstruction']:.0f}\n")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    results = [evaluate(name, args) for name in args.datasets.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, CPU only, {args.threads} torch thread(s)")
    cfg = results[0]["config"]
    model = cfg["model"]
    print(f"model: {model['architecture']} {model['architecture_options'] or ''}, likelihood "
          f"{model['likelihood']} {model['likelihood_options'] or ''}, latent "
          f"{model['latent_dim']}, prior {model['prior']} {model.get('prior_options', '')}, "
          f"beta {cfg['objective']['beta']}, {cfg['train']['epochs']} epochs, lr "
          f"{cfg['train']['lr']}, batch {cfg['train']['batch_size']}; {args.samples} draws "
          f"per sampler; coverage on {args.coverage or 'all'} draws (CDVAE fingerprints, "
          f"cutoffs {evaluations.STRUCT_CUTOFF} / {evaluations.COMP_CUTOFF}); Wasserstein "
          f"distances on {args.wdist_samples or 'all'} valid draws\n")
    for r in results:
        print_dataset(r, args)
    out = Path(args.out) / "crystals_vs_cdvae.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

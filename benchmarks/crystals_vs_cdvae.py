"""Crystals plugin vs CDVAE's published numbers on Perov-5 and Carbon-24, one line per sampler.

Data: the validation splits of Perov-5 and Carbon-24 shipped in ../shared/data/crystals
(CDVAE's own files; see ../shared/data/MANIFEST.md). Each is split 80 / 20 with a fixed
seed; the model is fitted on the 80 % (of which the trainer holds 10 % out for early
stopping and best-weights selection) and every metric is computed on the other 20 %.

Samplers, each on its own line (`--samplers`):
* `normal`: z ~ N(0, I), whatever the model's prior: CDVAE's generation protocol;
* `prior`: the model's own prior (`model.sample_prior`), when it is a learned one
  (`--prior mog`: a mixture of Gaussians trained with the model and saved with it; the
  default prior is isotropic, which beat mog-32 on both datasets in session 23's screen:
  reconstruction +13.3 / +6.7 points on Perov-5 / Carbon-24, the same N(0, I) validity);
* `posterior`: a Gaussian mixture fitted after training to the training encodings (the
  `crystals` generator's default);
* `data`: a random `--data-draws` of the training structures themselves, no model: the
  coverage a perfect sampler of the data would reach against our held-out set (CDVAE's
  reference is its 3,786 / 2,031-structure test split, ours 757 / 406 structures, and
  fewer references lower COV-P: a draw is less likely to have one within the cutoffs).

Metrics, as in CDVAE's scripts/compute_metrics.py and eval_utils.py:
* reconstruction (the same for every sampler): the 20 % encoded (posterior mean) and
  decoded; match rate and RMSE of StructureMatcher(stol 0.5, angle_tol 10, ltol 0.3)
  with CDVAE's validity gate (RecEval: a decoded structure that fails the structural or
  compositional check counts as unmatched); the ungated rate is printed beside it;
* per sampler, `--samples` draws (10,000 as CDVAE): structural validity (no two atoms
  closer than 0.5 Å, volume >= 0.1 Å^3, as `structure_validity`), compositional
  validity (SMACT charge neutrality with Pauling test, as `smact_validity`), COV-R /
  COV-P as `compute_cov` (cutoffs 0.2 / 4; CrystalNN "ops" site-mean fingerprints, Magpie
  scaled by CDVAE's CompScaler; all draws, valid or not, as `GenEval.get_coverage`, or a
  random `--coverage N`, per sampler as `normal=0,posterior=2000`). CrystalNN (~0.1-0.4 s
  a Perov-5 structure) runs only on draws whose composition lies within the compositional
  cutoff of a held-out structure: no other draw can count in COV-R or COV-P, so both are
  exactly CDVAE's (`--no-prune` fingerprints every draw). Wasserstein distances of
  density and number of elements on `--wdist-samples` random valid draws (CDVAE: 1,000);
* diagnosis, per sampler: validity, coverage and the structural failure (atoms closer
  than 0.5 A, a lattice vector under 0.5 A), the volume per atom and the distance to the
  nearest training encoding, by quintile of the latent norm ||z||;
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
`--prior` (default isotropic; `--prior mog --components 32` for the learned prior).

    python benchmarks/crystals_vs_cdvae.py [--datasets perov_5,carbon_24] [--epochs 200]
        [--out runs/crystals_bench] [--samples 10000] [--coverage 0 (all)] [--no-prune]
        [--samplers normal,prior,posterior[,data]] [--data-draws 1000] [--prior isotropic]
        [--components 32]
        [--site-matching hungarian] [--rediscovery 2000] [--wdist-samples 1000]
        [--workers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import cdist
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
                 "posterior": "mixture on encodings",
                 "data": "training structures (ceiling)"}
SYMPREC = 0.1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="perov_5,carbon_24")
    p.add_argument("--epochs", type=int, default=None, help="default: the domain's (200)")
    p.add_argument("--out", default="runs/crystals_bench")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--coverage", default="0",
                   help="coverage on a random N draws (0: all, as CDVAE), or per sampler: "
                        "normal=0,posterior=2000 (a sampler not listed: all its draws)")
    p.add_argument("--no-prune", action="store_true",
                   help="fingerprint every draw (default: CrystalNN only on draws within "
                        "the compositional cutoff of a held-out structure; the same COV)")
    p.add_argument("--data-draws", type=int, default=1000,
                   help="training structures used as draws by the `data` sampler")
    p.add_argument("--no-coverage", action="store_true",
                   help="skip COV-R / COV-P (CrystalNN fingerprints are the slow part)")
    p.add_argument("--wdist-samples", type=int, default=1000,
                   help="valid draws for the Wasserstein distances (CDVAE: 1000)")
    p.add_argument("--samplers", default="normal,prior,posterior")
    p.add_argument("--prior", default="isotropic", help="the model's prior (isotropic or mog)")
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


def coverage_count(args, sampler: str) -> int:
    """Draws fingerprinted for coverage by `sampler` (0: all), from `--coverage`; a
    sampler the per-sampler form does not list gets all its draws, as CDVAE."""
    text = str(args.coverage)
    if "=" not in text:
        return int(text)
    counts = dict(item.split("=") for item in text.split(","))
    return int(counts.get(sampler, 0))


def reference_fingerprints(test_structures: list, test, args, cache_dir=None) -> tuple:
    """Fingerprints of the held-out structures, cached in the run folder `cache_dir` by a
    hash of their tensors (the split is seeded, so every run of the benchmark reuses
    them)."""
    if cache_dir is None:
        return evaluations.fingerprint_arrays(test_structures, workers=args.workers)
    key = hashlib.sha256(test.x.numpy().tobytes()).hexdigest()[:16]
    path = Path(cache_dir) / f"coverage_reference_{key}.npz"
    if path.exists():
        with np.load(path) as saved:
            return saved["struct"], saved["comp"]
    struct, comp = evaluations.fingerprint_arrays(test_structures, workers=args.workers)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez adds no ".npz"
            np.savez(handle, struct=struct, comp=comp)

    bv.atomic_write(path, write)  # a stopped run leaves no half-written cache
    return struct, comp


def recall_by_draws(gen_fp: tuple, ref_fp: tuple) -> dict[int, float]:
    """COV-R of the first 1/10, 1/3 and all of the (randomly drawn) fingerprinted draws:
    how recall grows with the number of draws, toward CDVAE's 10,000."""
    n = len(gen_fp[0])
    out = {}
    for k in sorted({max(1, n // 10), max(1, n // 3), n}):
        part = evaluations.coverage(gen_fp[0][:k], gen_fp[1][:k], *ref_fp)
        out[k] = part["cov_recall"]
    return out


def failure(ok: bool, reason: str) -> str:
    """A `structure_validity` result's failure, in a few words ('' when valid)."""
    if ok:
        return ""
    for word in ("atoms", "lattice vector", "volume"):
        if reason.startswith(word):
            return {"atoms": "close atoms"}.get(word, word)
    return reason


def diagnosis(structures: list, norms: np.ndarray, gaps: np.ndarray, struct_ok: np.ndarray,
              comp_ok: np.ndarray, covered: np.ndarray | None, volume_ref: float,
              failures: list[str]) -> list[dict]:
    """Validity, coverage and failure modes by quintile of the latent norm ||z||: where
    in latent space the draws fail and how (too-close atoms, a lattice vector under
    0.5 A, the volume per atom against the held-out median `volume_ref`), and how far
    the draws lie from the nearest training encoding (`gaps`); `failures`: `failure` of
    each draw."""
    edges = np.quantile(norms, np.linspace(0, 1, 6))
    rows = []
    for q in range(5):
        sel = (norms >= edges[q]) & ((norms <= edges[q + 1]) if q == 4
                                     else (norms < edges[q + 1]))
        idx = np.nonzero(sel)[0]
        reasons = [failures[i] for i in idx]
        vol = [structures[i].volume / len(structures[i]) for i in idx
               if structures[i] is not None]
        rows.append({"norm": (float(edges[q]), float(edges[q + 1])), "n": len(idx),
                     "structural": float(struct_ok[idx].mean()),
                     "compositional": float(comp_ok[idx].mean()),
                     "covered": (None if covered is None or np.isnan(covered[idx]).all()
                                 else float(np.nanmean(covered[idx]))),
                     "close_atoms": float(np.mean([r == "close atoms" for r in reasons])),
                     "short_lattice": float(np.mean([r == "lattice vector" for r in reasons])),
                     "volume_ratio": float(np.median(vol) / volume_ref) if vol else None,
                     "gap": float(np.median(gaps[idx]))})
    return rows


def draw_metrics(structures: list, test_structures: list, ref_fp, train_structures: list,
                 args, sampler: str = "normal", z: np.ndarray | None = None,
                 means: np.ndarray | None = None) -> dict:
    """Validity, coverage, Wasserstein distances and rediscovery of decoded draws, as the
    `crystal_generation` evaluation computes the first three (the held-out fingerprints
    `ref_fp` are computed once for every sampler), and the diagnosis by latent norm."""
    rng = np.random.default_rng(args.seed)
    checks = [validity.structure_validity(s) for s in structures]  # (ok, reason), once
    struct_ok = np.array([ok for ok, _ in checks])
    comp_ok = np.array([s is not None and validity.composition_validity(s.composition)[0]
                        for s in structures])
    drawn = np.arange(len(structures))
    n_cov = coverage_count(args, sampler)
    if n_cov and n_cov < len(structures):
        drawn = np.sort(rng.choice(len(structures), n_cov, replace=False))
    t0 = time.perf_counter()
    covered = None
    if ref_fp is None:  # --no-coverage
        drawn, cov = [], {"n_coverage_fingerprinted": 0}
    else:
        gen_fp = evaluations.coverage_fingerprints(
            [structures[i] for i in drawn], ref_fp, workers=args.workers,
            prune=not args.no_prune)
        cov = evaluations.coverage(*gen_fp, *ref_fp, n_generated=len(drawn))
        cov["cov_recall_by_draws"] = recall_by_draws(gen_fp, ref_fp)
        covered = np.zeros(len(structures), dtype=bool)
        covered[drawn] = evaluations.coverage_items(*gen_fp, *ref_fp)["precision"]
    fingerprint_s = time.perf_counter() - t0
    valid = np.nonzero(struct_ok & comp_ok)[0]
    out = {"structural_validity": float(struct_ok.mean()),
           "compositional_validity": float(comp_ok.mean()),
           "validity": float((struct_ok & comp_ok).mean()), **cov,
           "coverage_on": ("no draws (not measured)" if ref_fp is None
                           else "all draws" if len(drawn) == len(structures)
                           else f"a random {len(drawn)} of {len(structures)} draws"),
           "fingerprint_seconds": fingerprint_s}
    if z is not None:
        norms = np.linalg.norm(z, axis=1)
        gaps = np.concatenate([cdist(chunk, means).min(axis=1)
                               for chunk in np.array_split(z, max(1, len(z) // 2000))])
        in_cov = None
        if covered is not None:  # NaN for draws outside the coverage subset
            in_cov = np.full(len(structures), np.nan)
            in_cov[drawn] = covered[drawn]
        volume_ref = float(np.median([t.volume / len(t) for t in test_structures]))
        out["diagnosis"] = diagnosis(structures, norms, gaps, struct_ok, comp_ok, in_cov,
                                     volume_ref, [failure(*c) for c in checks])
    if len(valid):
        some = valid if not args.wdist_samples or len(valid) <= args.wdist_samples else (
            np.sort(rng.choice(valid, args.wdist_samples, replace=False)))
        generated = [structures[i] for i in some]
        out["wdist_density"] = float(wasserstein_distance(
            [s.density for s in generated], [s.density for s in test_structures]))
        out["wdist_num_elements"] = float(wasserstein_distance(
            [len(s.composition) for s in generated],
            [len(s.composition) for s in test_structures]))
    if train_structures is None:  # the training structures themselves: no rediscovery
        return out
    checked = valid
    if args.rediscovery and len(valid) > args.rediscovery:
        checked = np.sort(rng.choice(valid, args.rediscovery, replace=False))
    t0 = time.perf_counter()
    out.update(rediscovery([structures[i] for i in checked], train_structures,
                           test_structures))
    out["rediscovery_seconds"] = time.perf_counter() - t0
    return out


def sampler_lines(run, train, test, rep, args, ref_fp=None, cache_dir=None,
                  means=None) -> dict:
    """The generation metrics and rediscovery count of each sampler (`--samplers`; the
    learned-prior line only for a model whose prior is learned); `means`: the training
    posterior means, if the caller has them."""
    model = run.model
    learned = model.config.prior != "isotropic"
    means = bv.encode(model, train)[0] if means is None else means
    train_structures = rep.decode(train.x)
    test_structures = [s for s in rep.decode(test.x) if s is not None]
    if ref_fp is None and not getattr(args, "no_coverage", False):
        ref_fp = reference_fingerprints(test_structures, test, args, cache_dir)
    out = {}
    for sampler in args.samplers.split(","):
        if sampler == "prior" and not learned:
            continue
        t0 = time.perf_counter()
        if sampler == "data":  # the training structures themselves: the ceiling
            rng = np.random.default_rng(args.seed)
            pool = [s for s in train_structures if s is not None]
            pick = rng.choice(len(pool), min(args.data_draws, len(pool)), replace=False)
            line = draw_metrics([pool[i] for i in np.sort(pick)], test_structures, ref_fp,
                                None, args, sampler)
            out[sampler] = {"latent": f"{len(pick)} training structures (no model)",
                            **line, "seconds": time.perf_counter() - t0}
            _save_so_far(cache_dir, out)
            continue
        generator = torch.Generator().manual_seed(args.seed)
        z, source = latent_draws(model, args.samples, sampler, means, generator, args.seed)
        decoded = rep.decode(bv.decode(model, z, mean=True, sample=False,
                                       seed=args.seed).mean)
        line = draw_metrics(decoded, test_structures, ref_fp, train_structures, args,
                            sampler, z=z.detach().cpu().numpy(), means=np.asarray(means))
        out[sampler] = {"latent": source, **line, "seconds": time.perf_counter() - t0}
        _save_so_far(cache_dir, out)
    return out


def _save_so_far(cache_dir, lines: dict) -> None:
    """A long run's sampler lines so far, in the run folder, should it be stopped."""
    if cache_dir is not None:
        Path(cache_dir, "samplers_so_far.json").write_text(
            json.dumps(lines, indent=2, default=float))


def encoding_norm(means, latent_dim: int) -> dict[str, float]:
    """Quantiles of ||z|| of the training posterior means: N(0, I) draws sit near
    sqrt(latent_dim), so encodings far beyond it mean the prior has a hole where draws
    land (the gap between the prior and the aggregate posterior)."""
    norms = np.linalg.norm(np.asarray(means), axis=1)
    q05, q50, q95 = np.quantile(norms, [0.05, 0.5, 0.95])
    return {"q05": float(q05), "median": float(q50), "q95": float(q95),
            "normal_draws": float(np.sqrt(latent_dim))}


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
    means = bv.encode(run.model, train)[0]  # once, for the samplers and the norms
    samplers = sampler_lines(run, train, test, rep, args, cache_dir=Path(args.out) / name,
                             means=means)
    return {"dataset": name, "n_train": len(train), "n_test": len(test),
            "config": run.config, "prior": prior_name(run.model), "reconstruction": rec,
            "encoding_norm": encoding_norm(means, run.model.config.latent_dim),
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


def print_diagnosis(title: str, rows: list[dict]) -> None:
    """The diagnosis table of one sampler: a row per quintile of ||z||."""
    print(f"\n{title}, by quintile of ||z||:\n")
    print("| ||z|| | draws | struct. valid | comp. valid | covered (COV-P) | close atoms "
          "| lattice vector < 0.5 A | median volume/atom vs held-out "
          "| median distance to nearest training encoding |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        lo, hi = row["norm"]
        print(f"| {lo:.2f}–{hi:.2f} | {row['n']} | {fmt(row['structural'], '%')} | "
              f"{fmt(row['compositional'], '%')} | {fmt(row['covered'], '%')} | "
              f"{fmt(row['close_atoms'], '%')} | {fmt(row['short_lattice'], '%')} | "
              f"{fmt(row['volume_ratio'], '')} | {row['gap']:.2f} |")
    print()


def print_dataset(r: dict, args) -> None:
    name = r["dataset"]
    print(f"## {name}: train {r['n_train']} / test {r['n_test']} structures (80/20 of the "
          f"shared validation split, seed {args.seed}); model prior: {r['prior']}\n")
    print("| sampler | " + " | ".join(label for _, label, _ in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    rec = r["reconstruction"]
    for sampler, line in r["samplers"].items():
        row = line if sampler == "data" else {**line, **rec}
        print(f"| {SAMPLER_NAMES[sampler]} | "
              + " | ".join(fmt(row.get(k), u) for k, _, u in COLUMNS) + " |")
    ref = CDVAE.get(name, {})
    print("| CDVAE (paper, Langevin sampling) | "
          + " | ".join(fmt(ref.get(k), u) for k, _, u in COLUMNS) + " |")
    print(f"\nreconstruction: ungated match {fmt(rec['match_rate_ungated'], '%')}, decoded "
          f"structures valid {fmt(rec['reconstruction_valid'], '%')}")
    if "encoding_norm" in r:
        e = r["encoding_norm"]
        print(f"training encodings ||z||: 5 % {e['q05']:.1f}, median {e['median']:.1f}, "
              f"95 % {e['q95']:.1f} (N(0, I) draws: ~{e['normal_draws']:.1f})")
    for sampler, line in r["samplers"].items():
        text = (f"{SAMPLER_NAMES[sampler]}: {line['latent']}; coverage on "
                f"{line['coverage_on']} ({line['n_coverage_fingerprinted']} fingerprinted, "
                f"{line['fingerprint_seconds']:.0f} s); COV-R by draws: "
                + ", ".join(f"{k} {fmt(v, '%')}"
                            for k, v in line.get("cov_recall_by_draws", {}).items()))
        if sampler != "data":
            text += (f"; rediscovery: {line['rediscovered']} novel / "
                     f"{line['heldout_matched']} any of {r['n_test']} held-out matched by "
                     f"{line['rediscovery_checked']} valid draws; goals: "
                     f"{goal_line(name, {**line, **rec})}; {line['seconds']:.0f} s "
                     f"(rediscovery {line['rediscovery_seconds']:.0f} s)")
        print(text)
    for sampler, line in r["samplers"].items():
        if line.get("diagnosis"):
            print_diagnosis(SAMPLER_NAMES[sampler], line["diagnosis"])
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
    pruning = ("all fingerprinted" if args.no_prune
               else "CrystalNN on those within the compositional cutoff")
    print(f"model: {model['architecture']} {model['architecture_options'] or ''}, likelihood "
          f"{model['likelihood']} {model['likelihood_options'] or ''}, latent "
          f"{model['latent_dim']}, prior {model['prior']} {model.get('prior_options', '')}, "
          f"beta {cfg['objective']['beta']}, {cfg['train']['epochs']} epochs, lr "
          f"{cfg['train']['lr']}, batch {cfg['train']['batch_size']}; {args.samples} draws "
          f"per sampler; coverage on {args.coverage if args.coverage != '0' else 'all'} draws "
          f"({pruning}; CDVAE fingerprints, "
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

"""Clustering on four single-cell sets: betavae_singlecell vs scvi-tools SCVI vs PCA.

Anchors: scvi-tools `SCVI` with its defaults (Lopez et al. 2018: n_latent 10, one hidden
layer of 128, ZINB, Adam 1e-3, KL warm-up 400 epochs, `get_max_epochs_heuristic` epochs),
and 50-PC PCA on scanpy's standard path (`normalize_total` 1e4, `log1p`, `pca`), both as
in `singlecell_vs_scvi.py` (whose `fit_scvi` and `pca_latent` this script calls).
Ours: `bsc.tl.fit` with its defaults (only `batch_key` and `seed` given), unless
`--ours KEY=VALUE` overrides a keyword of `bsc.tl.fit` (for tuning).

Data (`shared/data/singlecell`, see its MANIFEST.md; raw counts given to every method):

* pbmc: 10X PBMC, 4,271 cells x its 2,000 most variable genes, 8 labels (`Y`; scDCC);
* cellbench: CEL-seq2 + Drop-seq mixture of 3 lung cancer cell lines (sc_mixology),
  genes joined on their intersection, batch = protocol (every method but PCA gets
  `batch_key="batch"`), label = `cell_line`;
* baron: Baron et al. 2016 mouse pancreas donor 2 (GSE84133), 1,064 cells, 13 types;
* paul15: Paul et al. 2015 myeloid progenitors (GSE72857), 2,730 cells, 19 clusters.

Apart from PBMC (already 2,000 genes) each set is cut to 2,000 highly variable genes by
`sc.pp.highly_variable_genes(flavor="seurat_v3", n_top_genes=2000)` on the counts (with
`batch_key` for cellbench), the step the scvi-tools tutorials take before `SCVI`.

Scores, on the posterior means (PCA: the 50 PCs), the same functions for every method
(`betavae_singlecell.metrics`): k-means (k = number of labels, n_init 10, seeded) ARI and
NMI; Leiden on a 15-NN graph at the resolution whose cluster count is closest to the
number of labels (bisection over [0.01, 10]; the same rule for every method), ARI and
NMI. Wall seconds of the fit (ours: `bsc.tl.fit`; scVI: setup + model + train; PCA:
normalise + log1p + PCA), after one untimed one-epoch fit of each VAE on 256 cells.

scVI's latents and wall times are cached per set and seed in `--cache` (default
`runs/benchmarks/singlecell_clustering/scvi_cache.npz`), so a tuning rerun does not pay
for scVI again; `--refresh-scvi` refits them in this run (the final table: the time
ratio ours/scVI is then measured in one run; with cached scVI rows the table says so).

Goal per set, from seed means: k-means ARI and Leiden ARI of ours >= max(scVI, PCA),
and wall(ours) <= 0.5 x wall(scVI). The exit code is 0 either way.

    python benchmarks/singlecell_clustering.py                         # seeds 0,1,2
    python benchmarks/singlecell_clustering.py --refresh-scvi          # the final table
    python benchmarks/singlecell_clustering.py --sets pbmc,baron --seeds 0 \\
        --ours n_latent=16 --ours epochs=200 --methods ours            # a tuning run
    python benchmarks/singlecell_clustering.py --seeds 0 --cached-scvi-only \\
        --steps 3000 --warmup-share 4 --ours n_latent=20               # a screened rule
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _tables import table
from singlecell_integration import load_cellbench
from singlecell_vs_scvi import (
    GOAL_TIME,
    fit_scvi,
    int_list,
    load_avg,
    load_pbmc,
    machine_line,
    need_file,
    pca_latent,
    quiet_libraries,
    scvi_version,
    shared_data_dir,
    str_list,
    verdict,
    write_json,
)

SETS = ("pbmc", "cellbench", "baron", "paul15")
N_TOP = 2000
CACHE = Path("runs/benchmarks/singlecell_clustering/scvi_cache.npz")


# ---------------------------------------------------------------- data


def hvg(adata, n_top: int = N_TOP, batch_key: str | None = None):
    """The `n_top` seurat_v3 highly variable genes of raw counts (all when fewer)."""
    import scanpy as sc

    adata = adata[:, np.asarray(adata.X.sum(0)).ravel() > 0].copy()
    if adata.n_vars <= n_top:
        return adata
    sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top,
                                batch_key=batch_key)
    return adata[:, adata.var["highly_variable"].to_numpy()].copy()


def load_baron():
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    path = need_file(shared_data_dir() / "singlecell" / "baron_mouse2_umifm.csv.zip")
    df = pd.read_csv(path, index_col=0)
    labels = df["assigned_cluster"].astype(str)
    x = df.drop(columns=["barcode", "assigned_cluster"])
    adata = anndata.AnnData(X=sp.csr_matrix(x.to_numpy(dtype=np.float32)))
    adata.obs_names = [str(c) for c in df.index]
    adata.var_names = [str(g) for g in x.columns]
    adata.obs["label"] = labels.to_numpy()
    return hvg(adata)


def load_paul15():
    import anndata
    import scipy.sparse as sp

    path = need_file(shared_data_dir() / "singlecell" / "paul15.h5ad")
    src = anndata.read_h5ad(path)
    adata = anndata.AnnData(X=sp.csr_matrix(np.asarray(src.X, dtype=np.float32)))
    adata.obs_names = list(src.obs_names)
    adata.var_names = list(src.var_names)
    adata.var_names_make_unique()
    adata.obs["label"] = src.obs["paul15_clusters"].astype(str).to_numpy()
    return hvg(adata)


def load_set(name: str) -> tuple[object, np.ndarray, str | None]:
    """(raw-count AnnData, labels, batch key or None) of one of `SETS`."""
    if name == "pbmc":
        adata, y = load_pbmc()
        return adata, y.astype(str), None
    if name == "cellbench":
        adata, _, _ = load_cellbench(N_TOP)
        return adata, adata.obs["cell_line"].astype(str).to_numpy(), "batch"
    adata = load_baron() if name == "baron" else load_paul15()
    return adata, adata.obs["label"].astype(str).to_numpy(), None


# ---------------------------------------------------------------- scores


def leiden_closest(z: np.ndarray, labels: np.ndarray, k: int, seed: int) -> dict:
    """Leiden ARI/NMI at the resolution whose cluster count is closest to `k`
    (bisection on log resolution over [0.01, 10], at most 14 runs; ties: the first met)."""
    from betavae_singlecell.metrics import leiden_scores

    lo, hi = np.log(0.01), np.log(10.0)
    best = None
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        s = leiden_scores(z, labels, resolution=float(np.exp(mid)), seed=seed)
        if best is None or abs(s["n_clusters"] - k) < abs(best["n_clusters"] - k):
            best = {**s, "resolution": float(np.exp(mid))}
        if s["n_clusters"] == k:
            break
        lo, hi = (mid, hi) if s["n_clusters"] < k else (lo, mid)
    return best


def scores(z: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    from betavae_singlecell.metrics import clustering_scores

    k = int(np.unique(labels).size)
    km = clustering_scores(z, labels, n_clusters=k, seed=seed)
    ld = leiden_closest(np.asarray(z, dtype=np.float64), labels, k, seed)
    return {"km_ari": km["ari"], "km_nmi": km["nmi"], "ld_ari": ld["ari"],
            "ld_nmi": ld["nmi"], "ld_k": ld["n_clusters"]}


# ---------------------------------------------------------------- methods


def tuned(n_obs: int, overrides: dict, steps: int | None,
          warmup_share: float | None, n_batches: int = 1) -> dict:
    """`overrides` plus the tuning rules: epochs from `steps` minibatches of 128 cells
    (of the 90 % that train; the defaults' epoch cap for one batch applies), warm-up as
    a multiple of the epochs."""
    from betavae_singlecell.plugin import default_epochs

    out = dict(overrides)
    size = out.get("batch_size", 128)
    if steps is not None:
        out["epochs"] = default_epochs(n_obs, size, steps, n_batches=n_batches)
    if warmup_share is not None:
        out["warmup_epochs"] = warmup_share * out.get(
            "epochs", default_epochs(n_obs, size, n_batches=n_batches))
    return out


def fit_ours_defaults(adata, seed: int, batch_key: str | None,
                      overrides: dict) -> tuple[np.ndarray, float]:
    """`bsc.tl.fit` with its defaults (plus `overrides`): posterior means, wall seconds."""
    import betavae_singlecell as bsc

    ad = adata.copy()
    start = time.perf_counter()
    bsc.tl.fit(ad, batch_key=batch_key, seed=seed, progress=False, **overrides)
    return np.asarray(ad.obsm["X_betavae"]), time.perf_counter() - start


def scvi_epochs(n_obs: int) -> int:
    """scvi-tools' default `max_epochs` (`get_max_epochs_heuristic`)."""
    from scvi.model._utils import get_max_epochs_heuristic

    return int(get_max_epochs_heuristic(n_obs))


def fit_scvi_defaults(adata, seed: int, batch_key: str | None) -> tuple[np.ndarray, float]:
    """`fit_scvi` of singlecell_vs_scvi.py at scVI's defaults (ZINB, its epoch heuristic;
    its other settings there are scVI's defaults already)."""
    return fit_scvi(adata, "zinb", scvi_epochs(adata.n_obs), seed, 128, batch_key=batch_key)


class ScviCache:
    """scVI latents and wall seconds per (set, seed), in one .npz file."""

    def __init__(self, path: Path):
        self.path = path
        self.items: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as f:
                self.items = {k: f[k] for k in f.files}

    def get(self, name: str, seed: int, n_obs: int) -> tuple[np.ndarray, float] | None:
        z = self.items.get(f"{name}/{seed}/z")
        if z is None or z.shape[0] != n_obs:
            return None
        return z, float(self.items[f"{name}/{seed}/wall"])

    def put(self, name: str, seed: int, z: np.ndarray, wall: float) -> None:
        self.items[f"{name}/{seed}/z"] = np.asarray(z, dtype=np.float32)
        self.items[f"{name}/{seed}/wall"] = np.asarray(wall)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, **self.items)
        tmp.replace(self.path)


# ---------------------------------------------------------------- main


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", type=str_list, default=list(SETS), help="comma list of " +
                   ",".join(SETS))
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    p.add_argument("--methods", type=str_list, default=["ours", "scvi"],
                   help="VAEs to run (ours,scvi); PCA always runs")
    p.add_argument("--ours", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword for bsc.tl.fit (tuning); repeatable")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="tuning: epochs per set = N minibatches / minibatches per epoch")
    p.add_argument("--warmup-share", type=float, default=None, metavar="W",
                   help="tuning: warmup_epochs = W x epochs (W > 1: beta ends at 1/W)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both (1)")
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--refresh-scvi", action="store_true",
                   help="refit scVI in this run (and update the cache)")
    p.add_argument("--json", type=Path, default=None, help="write per-seed rows here")
    p.add_argument("--cached-scvi-only", action="store_true",
                   help="fit no scVI: use the cached seeds, leave out the missing ones")
    p.add_argument("--no-fits", action="store_true",
                   help="fit nothing: --ours-rows and cached scVI only (a table of earlier "
                        "runs)")
    p.add_argument("--ours-rows", type=Path, action="append", default=[], metavar="JSON",
                   help="take our rows from these --json files of earlier runs instead of "
                        "fitting (to assemble one table from runs made in parallel)")
    args = p.parse_args(argv)
    args.cached_scvi_only = args.cached_scvi_only or args.no_fits
    bad = set(args.sets) - set(SETS)
    if bad:
        p.error(f"unknown sets {sorted(bad)}; use {','.join(SETS)}")
    args.overrides = {}
    for item in args.ours:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--ours takes KEY=VALUE; got {item!r}")
        args.overrides[key.strip()] = parse_value(value.strip())
    return args


def warm_up(adata, batch_key: str | None, methods: list[str]) -> None:
    """One untimed one-epoch fit per VAE on 256 cells (imports, one-time set-up)."""
    small = adata[np.sort(np.random.default_rng(0).choice(adata.n_obs, 256, replace=False))]
    small = small.copy()
    if "ours" in methods:
        fit_ours_defaults(small, 0, batch_key, {"epochs": 1})
    if "scvi" in methods:
        fit_scvi(small, "zinb", 1, 0, 128, batch_key=batch_key)


def run_set(name: str, args: argparse.Namespace, methods: list[str], cache: ScviCache,
            rows: list[dict]) -> None:
    adata, labels, batch_key = load_set(name)
    print(f"  {name}: {adata.n_obs} cells x {adata.n_vars} genes, "
          f"{np.unique(labels).size} labels", file=sys.stderr, flush=True)
    z_pca, t_pca = pca_latent(adata)
    for seed in args.seeds:
        rows.append({"set": name, "method": "PCA", "seed": seed, **scores(z_pca, labels, seed),
                     "wall_s": t_pca, "cached": False})
    earlier = [r for r in args.earlier if r["set"] == name and r["seed"] in args.seeds]
    rows.extend({**r, "cached": True} for r in earlier)
    if earlier or args.no_fits:
        methods = [m for m in methods if m != "ours"]
    cached = all(cache.get(name, s, adata.n_obs) is not None for s in args.seeds)
    warm_up(adata, batch_key, [m for m in methods if m == "ours" or (
        not args.cached_scvi_only and (not cached or args.refresh_scvi))])
    n_batches = adata.obs[batch_key].nunique() if batch_key else 1
    overrides = tuned(adata.n_obs, args.overrides, args.steps, args.warmup_share, n_batches)
    if overrides != args.overrides:
        print(f"    ours: {overrides}", file=sys.stderr, flush=True)
    fits: dict[str, Callable[[int], tuple[np.ndarray, float, bool]]] = {
        "ours": lambda s: (*fit_ours_defaults(adata, s, batch_key, overrides), False),
        "scvi": lambda s: scvi_fit(name, adata, s, batch_key, args.refresh_scvi, cache),
    }
    for i, seed in enumerate(args.seeds):
        for method in (methods if i % 2 == 0 else methods[::-1]):
            if (method == "scvi" and args.cached_scvi_only
                    and cache.get(name, seed, adata.n_obs) is None):
                continue
            z, wall, cached = fits[method](seed)
            measured = scores(z, labels, seed)
            rows.append({"set": name, "method": method, "seed": seed, **measured,
                         "wall_s": wall, "cached": cached, "load_1min": load_avg()})
            print(f"    {method:<4} seed {seed}: " + " ".join(
                f"{k} {v:.3f}" for k, v in measured.items()) + f" wall {wall:.1f} s"
                + (" (cached)" if cached else ""), file=sys.stderr, flush=True)


def scvi_fit(name: str, adata, seed: int, batch_key: str | None, refresh: bool,
             cache: ScviCache) -> tuple[np.ndarray, float, bool]:
    hit = None if refresh else cache.get(name, seed, adata.n_obs)
    if hit is not None:
        return hit[0], hit[1], True
    z, wall = fit_scvi_defaults(adata, seed, batch_key)
    cache.put(name, seed, z, wall)
    return z, wall, False


def mean_sd(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def summary(rows: list[dict], sets: list[str], methods: list[str]) -> tuple[str, str]:
    names = {"ours": "betavae_singlecell", "scvi": "scVI", "PCA": "PCA (50 PCs)"}
    body, goals = [], []
    for name in sets:
        means = {}
        for method in ["PCA", *methods]:
            sel = [r for r in rows if r["set"] == name and r["method"] == method]
            if not sel:
                continue
            means[method] = {k: statistics.fmean(r[k] for r in sel)
                             for k in ("km_ari", "ld_ari", "wall_s")}
            cached = " (cached)" if any(r["cached"] for r in sel) else ""
            body.append([name, names[method], str(len(sel)),
                         *(mean_sd([r[k] for r in sel]) for k in
                           ("km_ari", "km_nmi", "ld_ari", "ld_nmi")),
                         mean_sd([float(r["ld_k"]) for r in sel], 1),
                         mean_sd([r["wall_s"] for r in sel], 1) + cached])
        if "ours" in means:
            o = means["ours"]
            rivals = [m for m in ("scvi", "PCA") if m in means]
            best_km = max(means[m]["km_ari"] for m in rivals)
            best_ld = max(means[m]["ld_ari"] for m in rivals)
            ratio = o["wall_s"] / means["scvi"]["wall_s"] if "scvi" in means else float("nan")
            goals.append([name, f"{o['km_ari'] - best_km:+.3f}",
                          verdict(o["km_ari"] >= best_km), f"{o['ld_ari'] - best_ld:+.3f}",
                          verdict(o["ld_ari"] >= best_ld), f"{ratio:.3f}",
                          verdict(ratio <= GOAL_TIME)])
    main = table(["set", "method", "seeds", "k-means ARI", "k-means NMI", "Leiden ARI",
                  "Leiden NMI", "Leiden k", "fit wall s"], body)
    goal = table(["set", "k-means ARI - max(scVI, PCA)", "goal >= 0",
                  "Leiden ARI - max(scVI, PCA)", "goal >= 0", "time ours/scVI",
                  f"goal <= {GOAL_TIME}"], goals) if goals else ""
    return main, goal


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    quiet_libraries()
    torch.set_num_threads(args.threads)
    methods = list(args.methods)
    if "scvi" in methods and scvi_version() is None:
        print("scvi-tools is not installed: comparing against PCA only", file=sys.stderr)
        methods.remove("scvi")
    print(machine_line(args.threads))
    print(f"Sets {args.sets}; seeds {args.seeds}; ours: bsc.tl.fit defaults"
          + (f" with {args.overrides}" if args.overrides else "")
          + (f", epochs = {args.steps} minibatches" if args.steps else "")
          + (f", warm-up {args.warmup_share} x epochs" if args.warmup_share else "")
          + "; scVI: its defaults (ZINB, heuristic epochs)")
    load_before = load_avg()
    cache = ScviCache(args.cache)
    args.earlier = [r for path in args.ours_rows
                    for r in json.loads(path.read_text())["rows"] if r["method"] == "ours"]
    rows: list[dict] = []
    for name in args.sets:
        run_set(name, args, methods, cache, rows)
        if args.json:
            write_json(args.json, {"args": {"sets": args.sets, "seeds": args.seeds,
                                            "ours": args.overrides, "steps": args.steps,
                                            "warmup_share": args.warmup_share},
                                   "rows": rows})
    main_table, goal_table = summary(rows, args.sets, methods)
    print()
    print(main_table)
    if goal_table:
        print()
        print(goal_table)
    if any(r["cached"] for r in rows):
        print("\n(cached): rows fitted in an earlier run (scVI: " + str(args.cache) + "; "
              "ours: --ours-rows); rerun with --refresh-scvi and without --ours-rows for "
              "a ratio measured in one run.")
    print(f"\n1-min load average {load_before:.2f} before, {load_avg():.2f} after")
    if args.json:
        print(f"per-seed rows written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Single-cell latents on PBMC: betavae_singlecell vs scvi-tools SCVI vs PCA.

Anchor: scvi-tools `SCVI` (Lopez et al. 2018), the standard VAE for scRNA-seq counts,
and PCA of log-normalised counts as the floor.

Data: 10X PBMC, the 2,000 most variable genes (`shared/data/singlecell/10X_PBMC_top2000.h5`,
HDF5 datasets `X`, cells x genes integer counts stored as float, and `Y`, 8 cell-type
labels; 4,271 cells), given to every method as a sparse CSR AnnData of raw counts.

For each seed and likelihood (nb, zinb) both VAEs are fitted with matched settings:
n_latent 10, one hidden layer of 128, dropout 0.1, the same number of epochs (every epoch
runs: no early stopping), batch size 128, Adam lr 1e-3, a 10% validation split
(scVI: train_size 0.9), on the CPU with the same number of torch threads. The KL
schedule is each tool's own default unless `--warmup-epochs 400` is given: scVI ramps its
KL weight from 0 to 1 over 400 epochs (`n_epochs_kl_warmup`, so over the whole default
run); ours, matched, trains at `--beta` (default 1, as scVI's KL weight) and ramps it over
the domain's warm-up for a chosen β (a quarter of the epochs), and with `--warmup-epochs 400`
over the same 400 as scVI. With `--ours-defaults` ours runs at the domain's defaults
instead (β ramped to 0.25 over the whole fit, latent 20, ~3,000 minibatches). Ours also
validates every epoch (scVI runs no validation pass) and, like scVI, keeps the last epoch
(`--keep best` for the best validation epoch after the warm-up).

Measured per fit, after one untimed one-epoch fit of each method on 256 cells (imports
and one-time set-up are left out for both): wall seconds of the fit (ours: `bsc.tl.fit`;
scVI: `setup_anndata` + `SCVI(...)` + `train`), then k-means (k = 8, seeded) on the posterior means
(`bsc.tl.encode`; `get_latent_representation()`), scored against `Y` by ARI and NMI with
the same metric function for every method. PCA: 50 PCs of log1p(counts normalised to
1e4 per cell), `sc.pp.normalize_total` / `log1p` / `pca`; its k-means uses the same seeds.

Goals, per likelihood, from seed means: ARI(ours) >= ARI(scVI), ARI(ours) >= ARI(PCA),
and wall(ours) <= 0.5 x wall(scVI). The exit code is 0 either way.

    python benchmarks/singlecell_vs_scvi.py                     # 400 epochs, seeds 0,1,2, nb+zinb
    python benchmarks/singlecell_vs_scvi.py --quick             # 50 epochs, seed 0: smoke run
    python benchmarks/singlecell_vs_scvi.py --epochs 100 --likelihoods nb,zinb \\
        --warmup-epochs 400                                     # the same KL schedule
    python benchmarks/singlecell_vs_scvi.py --epochs 100 --seeds 0,1 --likelihoods nb \\
        --json runs/sc_vs_scvi.json
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from _tables import table

GOAL_TIME = 0.5


def shared_data_dir() -> Path:
    """`shared/data` beside the repository root; exit with a message when it is absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        sys.exit(f"error: the shared data directory {path} is absent; this benchmark needs "
                 f"the single-cell files under {path / 'singlecell'}.")
    return path


def need_file(path: Path) -> Path:
    if not path.is_file():
        sys.exit(f"error: the data file {path} is absent.")
    return path


def int_list(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def str_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


# ---------------------------------------------------------------- environment and logging


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore")
    for name in ("scvi", "lightning", "lightning.pytorch", "pytorch_lightning",
                 "lightning.fabric", "anndata", "scanpy"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def scvi_version() -> str | None:
    try:
        import scvi
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return scvi.__version__


def machine_line(threads: int) -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"Machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; "
            f"scvi-tools {scvi_version() or 'not installed'}; Python "
            f"{platform.python_version()}; {threads} torch threads; CPU; 1-min load {load:.2f}")


def load_avg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ---------------------------------------------------------------- metrics (same for all)


def _local_clustering_scores(z, labels, n_clusters: int, seed: int = 0) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(
        np.asarray(z, dtype=np.float64))
    return {"ari": float(adjusted_rand_score(labels, pred)),
            "nmi": float(normalized_mutual_info_score(labels, pred))}


def clustering_metric() -> tuple[Callable[..., dict], str]:
    """`betavae_singlecell.metrics.clustering_scores`, or a local k-means stand-in."""
    try:
        from betavae_singlecell import metrics

        return metrics.clustering_scores, "betavae_singlecell.metrics.clustering_scores"
    except (ImportError, AttributeError):
        return _local_clustering_scores, "local k-means + sklearn ARI/NMI (fallback)"


# ---------------------------------------------------------------- the three methods


def fit_ours(adata, likelihood: str, epochs: int | None, seed: int, batch_size: int,
             batch_key: str | None = None, beta: float = 1.0, keep: str | None = None,
             warmup_epochs: float | None = None, defaults: bool = False
             ) -> tuple[np.ndarray, float]:
    """Wall seconds of `bsc.tl.fit` and the posterior means from `bsc.tl.encode`: at the
    matched settings (β, 10 latents, `epochs`), or with `defaults` at the domain's (β,
    latents, epochs, warm-up and kept weights of `bsc.tl.fit`; `epochs` only when given,
    as the untimed warm-up fit gives 1)."""
    import betavae_singlecell as bsc

    ad = adata.copy()
    matched = {} if defaults else {"beta": beta, "n_latent": 10, "keep": keep,
                                   "warmup_epochs": warmup_epochs, "batch_size": batch_size}
    start = time.perf_counter()
    model = bsc.tl.fit(ad, likelihood=likelihood, batch_key=batch_key, epochs=epochs,
                       seed=seed, key_added="X_betavae", progress=False, **matched)
    wall = time.perf_counter() - start
    z = np.asarray(bsc.tl.encode(model, ad))
    if "X_betavae" not in ad.obsm:
        print("warning: bsc.tl.fit did not write adata.obsm['X_betavae']", file=sys.stderr)
    elif not np.allclose(np.asarray(ad.obsm["X_betavae"]), z, atol=1e-4):
        print("warning: adata.obsm['X_betavae'] differs from bsc.tl.encode(model, adata)",
              file=sys.stderr)
    return z, wall


def fit_scvi(adata, likelihood: str, epochs: int, seed: int, batch_size: int,
             batch_key: str | None = None) -> tuple[np.ndarray, float]:
    """Wall seconds of setup_anndata + SCVI(...) + train, and get_latent_representation()."""
    import scvi

    quiet_libraries()
    scvi.settings.verbosity = logging.ERROR
    scvi.settings.seed = seed
    ad = adata.copy()
    start = time.perf_counter()
    scvi.model.SCVI.setup_anndata(ad, batch_key=batch_key)
    model = scvi.model.SCVI(ad, n_latent=10, n_hidden=128, n_layers=1, dropout_rate=0.1,
                            gene_likelihood=likelihood)
    model.train(max_epochs=epochs, accelerator="cpu", devices=1, train_size=0.9,
                batch_size=batch_size, early_stopping=False, enable_progress_bar=False,
                enable_model_summary=False, logger=False)
    wall = time.perf_counter() - start
    return np.asarray(model.get_latent_representation()), wall


def pca_latent(adata, n_comps: int = 50) -> tuple[np.ndarray, float]:
    """50 PCs of log1p(counts normalised to 1e4 per cell); deterministic (random_state 0)."""
    import scanpy as sc

    ad = adata.copy()
    start = time.perf_counter()
    sc.pp.normalize_total(ad, target_sum=1e4)
    sc.pp.log1p(ad)
    sc.pp.pca(ad, n_comps=n_comps, random_state=0)
    return np.asarray(ad.obsm["X_pca"]), time.perf_counter() - start


# ---------------------------------------------------------------- summaries


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    vals = [float(v) for v in values]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt(values: Sequence[float], digits: int = 3) -> str:
    m, s = mean_sd(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def pick(rows: list[dict], method: str, likelihood: str | None, key: str) -> list[float]:
    return [r[key] for r in rows
            if r["method"] == method and (likelihood is None or r["likelihood"] == likelihood)]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def payload(args: argparse.Namespace, rows: list[dict], extra: dict, complete: bool) -> dict:
    """What --json holds: the settings, the machine, every per-seed row so far."""
    return {"benchmark": Path(sys.argv[0]).stem, "machine": machine_line(args.threads),
            "scvi_tools": scvi_version(), "epochs": args.epochs, "seeds": args.seeds,
            "likelihoods": args.likelihoods, **extra, "complete": complete, "rows": rows}


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


# ---------------------------------------------------------------- main


def load_pbmc():
    import anndata
    import h5py
    import scipy.sparse as sp

    path = need_file(shared_data_dir() / "singlecell" / "10X_PBMC_top2000.h5")
    with h5py.File(path, "r") as f:
        x = np.asarray(f["X"][:], dtype=np.float32)
        y = np.asarray(f["Y"][:]).astype(int).ravel()
    if not np.array_equal(x, np.round(x)) or x.min() < 0:
        sys.exit(f"error: {path}: X is not non-negative integer counts.")
    adata = anndata.AnnData(X=sp.csr_matrix(x))
    adata.obs_names = [f"cell{i}" for i in range(x.shape[0])]
    adata.var_names = [f"gene{j}" for j in range(x.shape[1])]
    adata.obs["label"] = y.astype(str)
    return adata, y


def comparison_args(argv: list[str] | None, description: str,
                    extra: Callable[[argparse.ArgumentParser], None] | None = None,
                    ) -> argparse.Namespace:
    """The options every ours-vs-scVI script takes (`extra` adds a script's own)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=400, help="epochs for both VAEs (default 400)")
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="comma list (0,1,2)")
    p.add_argument("--likelihoods", type=str_list, default=["nb", "zinb"],
                   help="comma list of nb, zinb (default both)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch threads for both (2)")
    if extra is not None:
        extra(p)
    p.add_argument("--methods", type=str_list, default=["ours", "scvi"],
                   help="VAEs to run (ours,scvi); PCA always runs")
    p.add_argument("--beta", type=float, default=1.0, help="our β (scVI has none); 1")
    p.add_argument("--warmup-epochs", type=float, default=None,
                   help="our β warm-up (default: bsc.tl.fit's, a quarter of the epochs; "
                        "400 is scVI's n_epochs_kl_warmup)")
    p.add_argument("--keep", choices=["best", "last"], default=None,
                   help="our kept weights (default: bsc.tl.fit's, last without patience)")
    p.add_argument("--ours-defaults", action="store_true",
                   help="ours at bsc.tl.fit's defaults (β, latents, epochs, warm-up: the "
                        "domain's); --epochs then sets scVI's epochs only, and --beta, "
                        "--warmup-epochs, --keep are not used")
    p.add_argument("--quick", action="store_true", help="smoke run: 50 epochs, seed 0")
    p.add_argument("--json", type=Path, default=None, help="write per-seed rows here")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 50, args.seeds[:1]
    bad = set(args.likelihoods) - {"nb", "zinb"}
    if bad:
        p.error(f"unknown likelihoods {sorted(bad)}; use nb, zinb")
    return args


def fitters(args: argparse.Namespace) -> dict[str, Callable[..., tuple[np.ndarray, float]]]:
    """Ours with the options given for it, and scVI."""
    return {"ours": functools.partial(fit_ours, beta=args.beta, keep=args.keep,
                                      warmup_epochs=args.warmup_epochs,
                                      defaults=args.ours_defaults),
            "scvi": fit_scvi}


def warm_up(fit_with: dict[str, Callable[..., tuple[np.ndarray, float]]], methods: list[str],
            adata, likelihoods: list[str], batch_key: str | None = None) -> None:
    """One untimed one-epoch fit per method and likelihood on 256 cells, so that imports
    and one-time set-up (torch's optimiser machinery, Lightning) stay out of every
    method's timings alike."""
    cells = np.random.default_rng(0).choice(adata.n_obs, min(256, adata.n_obs), replace=False)
    small = adata[np.sort(cells)].copy()
    for lik in likelihoods:
        for method in methods:
            fit_with[method](small, lik, 1, 0, 128, batch_key=batch_key)


def run_fits(args: argparse.Namespace, fit_with: dict[str, Callable[..., tuple]],
             methods: list[str], adata, rows: list[dict], extra: dict,
             scores: Callable[[np.ndarray, int], dict], batch_key: str | None = None) -> None:
    """Every likelihood x seed x method fit, appended to `rows` with `scores(z, seed)`.

    Which VAE goes first alternates, so a drift in machine load hits both; with --json
    the rows are written after every fit, so an interrupted run keeps what it measured.
    """
    order = 0
    for lik in args.likelihoods:
        for seed in args.seeds:
            seq = methods if order % 2 == 0 else methods[::-1]
            order += 1
            for method in seq:
                epochs = (None if method == "ours" and args.ours_defaults
                          else args.epochs)
                z, wall = fit_with[method](adata, lik, epochs, seed, args.batch_size,
                                          batch_key=batch_key)
                measured = scores(z, seed)
                rows.append({"method": method, "likelihood": lik, "seed": seed, **measured,
                             "wall_s": wall, "epochs": epochs or "default",
                             "load_1min": load_avg()})
                if args.json:
                    write_json(args.json, payload(args, rows, extra, complete=False))
                shown = " ".join(f"{k} {v:.3f}" for k, v in measured.items())
                print(f"  {method:<5} {lik:<4} seed {seed}: {shown} wall {wall:.1f} s",
                      file=sys.stderr, flush=True)


def method_table(rows: list[dict], methods: list[str], likelihoods: list[str], pca_name: str,
                 keys: Sequence[str]) -> list[list[str]]:
    """One table row per method and likelihood (PCA first): seeds, mean ± sd of each
    metric in `keys`, and of the fit wall seconds."""
    names = {"ours": "betavae_singlecell", "scvi": "scVI", "PCA": pca_name}
    out = []
    for method, lik in [("PCA", None)] + [(m, lk) for lk in likelihoods for m in methods]:
        sel = [r for r in rows if r["method"] == method
               and (lik is None or r["likelihood"] == lik)]
        out.append([names[method], lik or "-", str(len(sel)),
                    *(fmt([r[key] for r in sel]) for key in keys),
                    fmt([r["wall_s"] for r in sel], 1)])
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return comparison_args(argv, __doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    quiet_libraries()
    torch.set_num_threads(args.threads)
    adata, labels = load_pbmc()
    k = int(np.unique(labels).size)
    score, score_name = clustering_metric()
    methods = list(args.methods)
    if "scvi" in methods and scvi_version() is None:
        print("scvi-tools is not installed: comparing against PCA only", file=sys.stderr)
        methods.remove("scvi")
    fit_with = fitters(args)
    print(machine_line(args.threads))
    print(f"Data: PBMC {adata.n_obs} cells x {adata.n_vars} genes, {k} labels; epochs "
          f"{args.epochs}, seeds {args.seeds}, batch size {args.batch_size}; metric "
          f"{score_name}, k-means k = {k}")
    warm_up(fit_with, methods, adata, args.likelihoods)
    load_before = load_avg()
    extra = {"metric": score_name}

    rows: list[dict] = []
    z_pca, t_pca = pca_latent(adata)
    for seed in args.seeds:
        s = score(z_pca, labels, n_clusters=k, seed=seed)
        rows.append({"method": "PCA", "likelihood": "-", "seed": seed, "ari": s["ari"],
                     "nmi": s["nmi"], "wall_s": t_pca, "epochs": 0})

    def ari_nmi(z: np.ndarray, seed: int) -> dict:
        measured = score(z, labels, n_clusters=k, seed=seed)
        return {"ari": measured["ari"], "nmi": measured["nmi"]}

    run_fits(args, fit_with, methods, adata, rows, extra, ari_nmi)

    out = method_table(rows, methods, args.likelihoods, "PCA (50 PCs)", ("ari", "nmi"))
    print()
    print(table(["method", "likelihood", "seeds", "ARI", "NMI", "fit wall s"], out))

    if "ours" in methods:
        ratio_rows = []
        ari_pca = statistics.fmean(pick(rows, "PCA", None, "ari"))
        for lik in args.likelihoods:
            ari_o = statistics.fmean(pick(rows, "ours", lik, "ari"))
            t_o = statistics.fmean(pick(rows, "ours", lik, "wall_s"))
            r_pca = ari_o / ari_pca
            if "scvi" in methods:
                ari_s = statistics.fmean(pick(rows, "scvi", lik, "ari"))
                t_s = statistics.fmean(pick(rows, "scvi", lik, "wall_s"))
                r_ari, r_t = ari_o / ari_s, t_o / t_s
                ratio_rows.append([lik, f"{r_ari:.3f}", verdict(r_ari >= 1.0), f"{r_t:.3f}",
                                   verdict(r_t <= GOAL_TIME), f"{r_pca:.3f}",
                                   verdict(r_pca >= 1.0)])
            else:
                ratio_rows.append([lik, "-", "-", "-", "-", f"{r_pca:.3f}",
                                   verdict(r_pca >= 1.0)])
        print()
        print(table(["likelihood", "ARI ours/scVI", "goal >= 1", "time ours/scVI",
                     f"goal <= {GOAL_TIME}", "ARI ours/PCA", "goal >= 1"], ratio_rows))
    print(f"\n1-min load average {load_before:.2f} before, {load_avg():.2f} after; "
          f"PCA (normalise + log1p + 50 PCs) took {t_pca:.1f} s")

    if args.json:
        write_json(args.json, payload(args, rows, extra, complete=True))
        print(f"per-seed rows written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

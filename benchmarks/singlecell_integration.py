"""Batch integration on two protocols: betavae_singlecell vs scvi-tools SCVI vs PCA.

Anchor: scvi-tools `SCVI` with `batch_key` (Lopez et al. 2018), and uncorrected PCA as the
floor that does nothing about batch.

Data: the CellBench mixture of three lung adenocarcinoma cell lines (H1975, H2228,
HCC827) sequenced with two protocols, CEL-seq2 and Drop-seq
(`shared/data/singlecell/sc_{celseq2,dropseq}.count.csv.gz`, genes x cells with gene IDs
in the first column, and `*.metadata.csv.gz` with `cell_line`). Cell IDs are prefixed
with the batch name (the two files reuse IDs), genes are joined on their intersection,
and 2,000 highly variable genes are chosen with
`sc.pp.highly_variable_genes(flavor="seurat_v3", batch_key="batch", n_top_genes=2000)`
on the counts (falling back to flavor "seurat" on log-normalised data when scikit-misc is
missing). Every method gets the same raw-count AnnData.

Methods: ours (`bsc.tl.fit(..., batch_key="batch")`), scVI (`setup_anndata(batch_key=
"batch")`), both with the matched settings of `singlecell_vs_scvi.py` (n_latent 10, one
hidden layer of 128, same epochs, batch size 128, 10% validation, CPU, same threads), and
uncorrected PCA (50 PCs of log1p(counts normalised to 1e4 per cell)).

Measured, on posterior means, with the same metric functions for every method: cell-line
ARI and NMI of k-means (k = 3, seeded), batch silhouette (scIB style: 1 - |silhouette of
batch| within each cell line; 1 = mixed) and normalised iLISI (0 = batches apart,
1 = fully mixed), and wall seconds of the fit.

Goals, per likelihood, from seed means: ARI(ours) >= ARI(scVI) and >= ARI(PCA),
iLISI(ours) >= iLISI(scVI), wall(ours) <= 0.5 x wall(scVI). The exit code is 0 either way.

    python benchmarks/singlecell_integration.py            # 400 epochs, seeds 0,1,2, nb+zinb
    python benchmarks/singlecell_integration.py --quick    # 50 epochs, seed 0
    python benchmarks/singlecell_integration.py --epochs 200 --likelihoods nb,zinb \\
        --json runs/sc_integration.json
    python benchmarks/singlecell_integration.py --ours-defaults --likelihoods nb  # ours at
        # bsc.tl.fit's defaults, scVI at 400 epochs (its heuristic for 499 cells)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import numpy as np
from _tables import table
from singlecell_vs_scvi import (
    GOAL_TIME,
    clustering_metric,
    comparison_args,
    fitters,
    load_avg,
    machine_line,
    method_table,
    need_file,
    payload,
    pca_latent,
    pick,
    quiet_libraries,
    run_fits,
    scvi_version,
    shared_data_dir,
    verdict,
    warm_up,
    write_json,
)

BATCHES = ("celseq2", "dropseq")


# ---------------------------------------------------------------- metrics (same for all)


def _local_batch_silhouette(z, batches, labels) -> float:
    from sklearn.metrics import silhouette_samples

    z, batches, labels = np.asarray(z), np.asarray(batches), np.asarray(labels)
    per_label = []
    for lab in np.unique(labels):
        m = labels == lab
        if np.unique(batches[m]).size < 2:
            continue
        s = silhouette_samples(z[m], batches[m])
        per_label.append(float(np.mean(1.0 - np.abs(s))))
    return float(np.mean(per_label)) if per_label else float("nan")


def _local_ilisi(z, batches, k: int = 30) -> dict:
    from sklearn.neighbors import NearestNeighbors

    batches = np.asarray(batches)
    codes = np.unique(batches, return_inverse=True)[1]
    n_b = int(codes.max()) + 1
    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    props = np.stack([(codes[idx[:, 1:]] == b).mean(1) for b in range(n_b)], axis=1)
    lisi = float(np.mean(1.0 / (props**2).sum(1)))
    return {"ilisi": lisi, "ilisi_normalised": (lisi - 1.0) / max(n_b - 1, 1)}


def batch_metrics() -> tuple[Callable, Callable, str]:
    try:
        from betavae_singlecell import metrics

        return metrics.batch_silhouette, metrics.ilisi, "betavae_singlecell.metrics"
    except (ImportError, AttributeError):
        return (_local_batch_silhouette, _local_ilisi,
                "local silhouette / kNN(30) inverse-Simpson iLISI (fallback)")


# ---------------------------------------------------------------- data


def load_cellbench(n_top: int = 2000):
    import anndata
    import pandas as pd
    import scanpy as sc
    import scipy.sparse as sp

    root = shared_data_dir() / "singlecell"
    counts, meta = [], []
    for b in BATCHES:
        c = pd.read_csv(need_file(root / f"sc_{b}.count.csv.gz"), index_col=0)
        m = pd.read_csv(need_file(root / f"sc_{b}.metadata.csv.gz"), index_col=0)
        missing = c.columns.difference(m.index)
        if len(missing):
            sys.exit(f"error: sc_{b}: {len(missing)} cells have no metadata row "
                     f"(first: {missing[0]!r}).")
        m = m.loc[c.columns, ["cell_line"]].copy()
        m["batch"] = b
        c.columns = [f"{b}_{cell}" for cell in c.columns]
        m.index = c.columns
        counts.append(c)
        meta.append(m)
    genes = counts[0].index.intersection(counts[1].index)
    x = np.concatenate([c.loc[genes].to_numpy(dtype=np.float32).T for c in counts])
    obs = pd.concat(meta)
    obs["batch"] = obs["batch"].astype("category")
    obs["cell_line"] = obs["cell_line"].astype("category")
    adata = anndata.AnnData(X=sp.csr_matrix(x), obs=obs)
    adata.var_names = list(genes)
    adata = adata[:, np.asarray(adata.X.sum(0)).ravel() > 0].copy()
    n_joined = adata.n_vars
    try:
        sc.pp.highly_variable_genes(adata, flavor="seurat_v3", batch_key="batch",
                                    n_top_genes=n_top)
        flavor = "seurat_v3 on counts"
    except ImportError:
        norm = adata.copy()
        sc.pp.normalize_total(norm, target_sum=1e4)
        sc.pp.log1p(norm)
        sc.pp.highly_variable_genes(norm, flavor="seurat", batch_key="batch",
                                    n_top_genes=n_top)
        adata.var["highly_variable"] = norm.var["highly_variable"]
        flavor = "seurat on log-normalised data (scikit-misc missing)"
    adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    return adata, n_joined, flavor


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def genes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--n-top-genes", type=int, default=2000)

    return comparison_args(argv, __doc__.split("\n\n")[0], genes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    quiet_libraries()
    torch.set_num_threads(args.threads)
    adata, n_joined, flavor = load_cellbench(args.n_top_genes)
    labels = adata.obs["cell_line"].astype(str).to_numpy()
    batches = adata.obs["batch"].astype(str).to_numpy()
    k = int(np.unique(labels).size)
    score, score_name = clustering_metric()
    bsil, ilisi, batch_name = batch_metrics()
    methods = list(args.methods)
    if "scvi" in methods and scvi_version() is None:
        print("scvi-tools is not installed: comparing against PCA only", file=sys.stderr)
        methods.remove("scvi")
    print(machine_line(args.threads))
    sizes = ", ".join(f"{b} {int((batches == b).sum())}" for b in BATCHES)
    print(f"Data: CellBench {adata.n_obs} cells ({sizes}) x {adata.n_vars} HVGs ({flavor}, "
          f"of {n_joined} shared expressed genes), {k} cell lines; epochs {args.epochs}"
          f"{' (scVI; ours: bsc.tl.fit defaults)' if args.ours_defaults else ''}, "
          f"seeds {args.seeds}; metrics {score_name}, {batch_name}")
    load_before = load_avg()
    extra = {"hvg": flavor, "metrics": [score_name, batch_name]}

    def scores(z: np.ndarray, seed: int) -> dict:
        s = score(z, labels, n_clusters=k, seed=seed)
        li = ilisi(z, batches)
        return {"ari": s["ari"], "nmi": s["nmi"], "batch_sil": float(bsil(z, batches, labels)),
                "ilisi": float(li["ilisi_normalised"])}

    rows: list[dict] = []
    z_pca, t_pca = pca_latent(adata)
    for seed in args.seeds:
        rows.append({"method": "PCA", "likelihood": "-", "seed": seed, **scores(z_pca, seed),
                     "wall_s": t_pca, "epochs": 0})
    fit_with = fitters(args)
    warm_up(fit_with, methods, adata, args.likelihoods, batch_key="batch")
    run_fits(args, fit_with, methods, adata, rows, extra, scores, batch_key="batch")

    out = method_table(rows, methods, args.likelihoods, "PCA (uncorrected)",
                       ("ari", "nmi", "batch_sil", "ilisi"))
    print()
    print(table(["method", "likelihood", "seeds", "cell-line ARI", "NMI", "batch silhouette",
                 "iLISI (norm.)", "fit wall s"], out))

    if "ours" in methods:
        ratio_rows = []
        ari_pca = statistics.fmean(pick(rows, "PCA", None, "ari"))
        for lik in args.likelihoods:
            ari_o = statistics.fmean(pick(rows, "ours", lik, "ari"))
            r_pca = ari_o / ari_pca
            cells = [lik]
            if "scvi" in methods:
                r_ari = ari_o / statistics.fmean(pick(rows, "scvi", lik, "ari"))
                r_li = (statistics.fmean(pick(rows, "ours", lik, "ilisi"))
                        / statistics.fmean(pick(rows, "scvi", lik, "ilisi")))
                r_t = (statistics.fmean(pick(rows, "ours", lik, "wall_s"))
                       / statistics.fmean(pick(rows, "scvi", lik, "wall_s")))
                cells += [f"{r_ari:.3f}", verdict(r_ari >= 1.0), f"{r_li:.3f}",
                          verdict(r_li >= 1.0), f"{r_t:.3f}", verdict(r_t <= GOAL_TIME)]
            else:
                cells += ["-"] * 6
            cells += [f"{r_pca:.3f}", verdict(r_pca >= 1.0)]
            ratio_rows.append(cells)
        print()
        print(table(["likelihood", "ARI ours/scVI", "goal >= 1", "iLISI ours/scVI",
                     "goal >= 1", "time ours/scVI", f"goal <= {GOAL_TIME}", "ARI ours/PCA",
                     "goal >= 1"], ratio_rows))
    print(f"\n1-min load average {load_before:.2f} before, {load_avg():.2f} after")

    if args.json:
        write_json(args.json, payload(args, rows, extra, complete=True))
        print(f"per-seed rows written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Differential expression: betavae_singlecell vs scVI's "change" mode vs scanpy.

Anchors: scvi-tools `SCVI.differential_expression(mode="change")` (Boyeau et al. 2019)
and scanpy's `rank_genes_groups` (Wilcoxon rank-sum and Welch t-test on log1p counts
normalised to 1e4 per cell, Benjamini-Hochberg adjusted).

Simulated data (`betavae_datasets.de_counts.simulate_de`): two groups, two batches, NB
counts (θ = 5), log library sizes spread by s.d. 0.5 within a batch and shifted between
batches, a gene-wise batch effect (log s.d. 0.5) confounded with group (`--confounding`,
default 0.3: each group lands in "its" batch with that extra probability), and 10 % of
the genes planted as DE with |log2 FC| drawn from U(1, 2), half up and half down.
`group_1` is compared with `group_0`.

Per method and seed: AUPRC of the gene ranking against the planted genes (ours and scVI
rank by proba_de, ties by |lfc_mean|; scanpy by p-value, ties by |score|), the observed
FDR of the set called DE at a nominal 5 % (ours: `is_de_fdr_0.05`; scVI: its
`is_de_fdr_0.05`; scanpy: `pvals_adj < 0.05`), its size, and wall seconds (fit + DE for
the VAEs, with matched settings: n_latent 10, one hidden layer of 128, the same epochs,
batch size 128, lr 1e-3, batch as covariate, batch-corrected DE with delta 0.25).
scVI runs only when scvi-tools imports (use `/work/benchvenv`). The goal on FDR is
checked on every seed, and each seed's line gives the median true LFC of the genes not
planted: planted changes move the proportions of every other gene (a composition shift),
which the truth by planting ignores.

`--cache DIR` keeps the anchors' results (scVI and scanpy: their rankings, calls and
seconds), keyed by method, data and settings, so a rerun refits only ours.

`--celseq2` also fits on the CEL-seq2 cell lines (`shared/data/singlecell/sc_celseq2.*`,
2,000 highly variable genes) and reports, for H1975 vs H2228, the overlap of each pair
of methods' top-100 genes. The exit code is 0 either way.

    python benchmarks/singlecell_de.py --seeds 0,1,2 --celseq2
    python benchmarks/singlecell_de.py --quick        # 30 epochs, 800 cells, seed 0
    python benchmarks/singlecell_de.py --seeds 0,1,2 --cache /tmp/de_cache
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import table  # noqa: E402
from singlecell_vs_scvi import (  # noqa: E402
    fmt,
    int_list,
    machine_line,
    need_file,
    quiet_libraries,
    scvi_version,
    shared_data_dir,
    verdict,
)

NOMINAL_FDR = 0.05
TOP = 100
SETTINGS = {"n_latent": 10, "n_hidden": 128, "batch_size": 128, "lr": 1e-3}


def simulated(seed: int, n_cells: int, n_genes: int, confounding: float):
    """(AnnData of the simulated counts, planted DE per gene, composition shift: the
    median true log2 fold change of the genes not planted, 0 without a shift), all from
    one simulation."""
    import anndata
    import pandas as pd

    from betavae_datasets import de_counts

    sim = de_counts.simulate_de(n_cells=n_cells, n_genes=n_genes, n_groups=2, n_batches=2,
                                confounding=confounding, seed=seed)
    obs = pd.DataFrame({"group": pd.Categorical(sim["group"]),
                        "batch": pd.Categorical(sim["batch"])}, index=sim["cell_names"])
    adata = anndata.AnnData(sim["counts"], obs=obs, var=pd.DataFrame(index=sim["gene_names"]))
    planted = de_counts.planted(sim, 1, 0)
    shift = float(np.median(de_counts.true_lfc(sim, 1, 0)[~planted]))
    return adata, pd.Series(planted, index=sim["gene_names"]), shift


# ---------------------------------------------------------------- methods


def ours(adata, group1: str, group2: str, groupby: str, batch_key: str | None, epochs: int,
         seed: int):
    """(table indexed by gene with `rank` and `called`, seconds) for bsc fit + DE."""
    import betavae_singlecell as bsc
    from betavae_singlecell.differential import differential_expression

    ad = adata.copy()
    start = time.perf_counter()
    model = bsc.tl.fit(ad, likelihood="nb", batch_key=batch_key, epochs=epochs, seed=seed,
                       progress=False, **SETTINGS)
    de = differential_expression(model, ad, groupby, group1, group2, seed=seed)
    wall = time.perf_counter() - start
    return _posterior_ranking(de, "is_de_fdr_0.05"), wall


def scvi_de(adata, group1: str, group2: str, groupby: str, batch_key: str | None,
            epochs: int, seed: int):
    import logging

    import scvi

    quiet_libraries()
    scvi.settings.verbosity = logging.ERROR
    scvi.settings.seed = seed
    ad = adata.copy()
    start = time.perf_counter()
    scvi.model.SCVI.setup_anndata(ad, batch_key=batch_key)
    model = scvi.model.SCVI(ad, n_latent=SETTINGS["n_latent"], n_hidden=SETTINGS["n_hidden"],
                            n_layers=1, dropout_rate=0.1, gene_likelihood="nb")
    model.train(max_epochs=epochs, accelerator="cpu", devices=1, train_size=0.9,
                batch_size=SETTINGS["batch_size"], early_stopping=False,
                enable_progress_bar=False, enable_model_summary=False, logger=False)
    de = model.differential_expression(groupby=groupby, group1=group1, group2=group2,
                                       mode="change", delta=0.25,
                                       batch_correction=batch_key is not None,
                                       fdr_target=NOMINAL_FDR, silent=True)
    wall = time.perf_counter() - start
    return _posterior_ranking(de, f"is_de_fdr_{NOMINAL_FDR}"), wall


def _posterior_ranking(de, called: str):
    import pandas as pd

    score = de["proba_de"].to_numpy() + 1e-3 * np.tanh(de["lfc_mean"].abs().to_numpy())
    return pd.DataFrame({"score": score, "called": de[called].to_numpy().astype(bool),
                         "lfc": de["lfc_mean"].to_numpy()}, index=de.index.astype(str))


def scanpy_de(adata, group1: str, group2: str, groupby: str, method: str):
    import pandas as pd
    import scanpy as sc

    ad = adata.copy()
    start = time.perf_counter()
    sc.pp.normalize_total(ad, target_sum=1e4)
    sc.pp.log1p(ad)
    sc.tl.rank_genes_groups(ad, groupby, groups=[group1], reference=group2, method=method)
    df = sc.get.rank_genes_groups_df(ad, group=group1)
    wall = time.perf_counter() - start
    p = np.clip(df["pvals"].to_numpy(), 1e-300, 1.0)
    score = -np.log10(p) + 1e-3 * np.tanh(np.abs(df["scores"].to_numpy()))
    return pd.DataFrame({"score": score, "called": df["pvals_adj"].to_numpy() < NOMINAL_FDR,
                         "lfc": df["logfoldchanges"].to_numpy()},
                        index=df["names"].astype(str)), wall


def methods(args: argparse.Namespace) -> dict:
    out = {
        "betavae (ours)": lambda a, g1, g2, gb, bk, s: ours(a, g1, g2, gb, bk, args.epochs, s),
        "scanpy wilcoxon": lambda a, g1, g2, gb, bk, s: scanpy_de(a, g1, g2, gb, "wilcoxon"),
        "scanpy t-test": lambda a, g1, g2, gb, bk, s: scanpy_de(a, g1, g2, gb, "t-test"),
    }
    if scvi_version() is not None:
        out["scVI change"] = lambda a, g1, g2, gb, bk, s: scvi_de(a, g1, g2, gb, bk,
                                                                  args.epochs, s)
    return {name: run if name == "betavae (ours)" else cached(args, name, run)
            for name, run in out.items()}


def cached(args: argparse.Namespace, name: str, run: Callable) -> Callable:
    """`run` with its result kept under `args.cache` (when given), keyed by the method,
    the data (`args.data_key`, set per dataset), the seed and the settings it depends on."""
    if args.cache is None:
        return run

    def wrapper(adata, group1, group2, groupby, batch_key, seed):
        import pandas as pd

        settings = f"e{args.epochs}-scvi{scvi_version()}" if name.startswith("scVI") else ""
        slug = "_".join([name.replace(" ", "-"), args.data_key, f"s{seed}", settings])
        csv, meta = (Path(args.cache) / f"{slug.replace('.', 'p')}.{ext}" for ext in
                     ("csv", "json"))
        if csv.exists() and meta.exists():
            ranking = pd.read_csv(csv, index_col=0)
            ranking.index = ranking.index.astype(str)
            return ranking, json.loads(meta.read_text())["seconds"]
        ranking, wall = run(adata, group1, group2, groupby, batch_key, seed)
        csv.parent.mkdir(parents=True, exist_ok=True)
        ranking.to_csv(csv)
        meta.write_text(json.dumps({"seconds": wall}))
        return ranking, wall

    return wrapper


# ---------------------------------------------------------------- scores


def scores(ranking, truth) -> dict:
    from sklearn.metrics import average_precision_score

    y = truth.loc[ranking.index].to_numpy()
    called = ranking["called"].to_numpy()
    fdr = float(1.0 - y[called].mean()) if called.any() else 0.0
    return {"auprc": float(average_precision_score(y, ranking["score"].to_numpy())),
            "fdr": fdr, "n_called": int(called.sum()), "recall": float(y[called].sum() / y.sum())}


def simulated_table(args: argparse.Namespace) -> None:
    rows: dict[str, list[dict]] = {}
    for seed in args.seeds:
        adata, truth, shift = simulated(seed, args.cells, args.genes, args.confounding)
        args.data_key = f"sim-c{args.cells}-g{args.genes}-k{args.confounding}"
        print(f"  seed {seed}: median true LFC of the genes not planted {shift:+.3f}",
              flush=True)
        for name, run in methods(args).items():
            ranking, wall = run(adata, "group_1", "group_0", "group", "batch", seed)
            rows.setdefault(name, []).append({**scores(ranking, truth), "seconds": wall})
            print(f"  seed {seed} {name}: {rows[name][-1]}", flush=True)
    print(f"\nSimulated: {args.cells} cells x {args.genes} genes, 10 % planted DE, "
          f"confounding {args.confounding}, seeds {args.seeds}, {args.epochs} epochs "
          f"(mean ± s.d. over seeds; FDR per seed in brackets)\n")
    header = ["method", "AUPRC", f"observed FDR @ {NOMINAL_FDR:.0%}", "called", "recall",
              "seconds"]
    body = [[name, fmt([r["auprc"] for r in rs]), fdr_cell([r["fdr"] for r in rs]),
             fmt([r["n_called"] for r in rs], 1), fmt([r["recall"] for r in rs]),
             fmt([r["seconds"] for r in rs], 1)] for name, rs in rows.items()]
    print(table(header, body))
    mine = np.mean([r["auprc"] for r in rows["betavae (ours)"]])
    worst = max(r["fdr"] for r in rows["betavae (ours)"])
    goals = [("AUPRC >= Wilcoxon's", mine >= np.mean([r["auprc"] for r in
                                                     rows["scanpy wilcoxon"]])),
             (f"observed FDR <= {2 * NOMINAL_FDR:.0%} on every seed (worst {worst:.1%})",
              worst <= 2 * NOMINAL_FDR)]
    if "scVI change" in rows:
        goals.insert(0, ("AUPRC >= scVI's", mine >= np.mean([r["auprc"] for r in
                                                            rows["scVI change"]])))
    print("\n" + "\n".join(f"goal {g}: {verdict(ok)}" for g, ok in goals))


def fdr_cell(values: list[float]) -> str:
    return f"{fmt(values)} ({', '.join(f'{100 * v:.1f}' for v in values)} %)"


# ---------------------------------------------------------------- CEL-seq2 agreement


def load_celseq2(n_top: int = 2000):
    import anndata
    import pandas as pd
    import scanpy as sc
    import scipy.sparse as sp

    root = shared_data_dir() / "singlecell"
    counts = pd.read_csv(need_file(root / "sc_celseq2.count.csv.gz"), index_col=0)
    meta = pd.read_csv(need_file(root / "sc_celseq2.metadata.csv.gz"), index_col=0)
    obs = meta.loc[counts.columns, ["cell_line"]].astype("category")
    adata = anndata.AnnData(sp.csr_matrix(counts.to_numpy(np.float32).T), obs=obs)
    adata.var_names = [str(g) for g in counts.index]
    adata = adata[:, np.asarray(adata.X.sum(0)).ravel() > 0].copy()
    sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top)
    return adata[:, adata.var["highly_variable"].to_numpy()].copy()


def celseq2_table(args: argparse.Namespace) -> None:
    adata = load_celseq2()
    args.data_key = "celseq2"
    top = {}
    for name, run in methods(args).items():
        ranking, wall = run(adata, "H1975", "H2228", "cell_line", None, 0)
        top[name] = set(ranking.sort_values("score", ascending=False).index[:TOP])
        print(f"  celseq2 {name}: {wall:.1f} s", flush=True)
    names = list(top)
    print(f"\nCEL-seq2 ({adata.n_obs} cells x {adata.n_vars} HVGs), H1975 vs H2228: "
          f"overlap of the top-{TOP} genes\n")
    body = [[a, *[str(len(top[a] & top[b])) for b in names]] for a in names]
    print(table(["", *names], body))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int_list, default=[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--cells", type=int, default=1500)
    p.add_argument("--genes", type=int, default=500)
    p.add_argument("--confounding", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--celseq2", action="store_true")
    p.add_argument("--no-simulated", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--cache", default=None,
                   help="folder keeping scVI's and scanpy's results between runs")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.cells, args.seeds = 30, 800, [0]
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_libraries()
    print(machine_line(args.threads))
    if not args.no_simulated:
        simulated_table(args)
    if args.celseq2:
        celseq2_table(args)
    print("\n" + machine_line(args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())

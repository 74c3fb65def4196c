"""Single-cell demo: a β-VAE inside a scanpy workflow, on simulated counts (no download).

    python examples/singlecell_demo.py [--out runs/singlecell_demo] [--cells 3000]

Simulates UMI counts with known cell types and two batches, fits a negative-binomial
β-VAE conditioned on batch, builds the neighbour graph, Leiden clusters and a UMAP on
its latent space, encodes new cells, generates cells of one batch and of one cell type,
saves and reloads the model, and evaluates it. Then what comes after the embedding:
Bayesian differential expression of one cell type against the rest, and the gene
programs of the latent dimensions (`latent_genes`), both on these cells and on counts
with four planted programs, where the recovered genes are scored against the truth.
Figures go to --out: UMAPs coloured by cell type, batch and Leiden cluster; KL per latent
dimension; rate and distortion per epoch; generated vs real per-gene statistics; a DE
volcano plot; gene-program heatmaps and traversals.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scanpy as sc  # noqa: E402

import betavae_singlecell as bsc  # noqa: E402
from betavae_datasets.programs import planted_programs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/singlecell_demo")
    parser.add_argument("--cells", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc.settings.figdir = out

    adata = bsc.datasets.synthetic(n_cells=args.cells, n_genes=1000, n_types=6, n_batches=2,
                                   batch_effect=0.8, seed=0)
    train, new = adata[: int(0.8 * adata.n_obs)].copy(), adata[int(0.8 * adata.n_obs):].copy()
    print(f"simulated {adata.n_obs} cells x {adata.n_vars} genes, 6 types, 2 batches")

    model = bsc.tl.fit(train, layer="counts", likelihood="nb", beta=1.0, n_latent=10,
                       batch_key="batch", label_key="cell_type", epochs=args.epochs)
    uns = train.uns["X_betavae"]
    print(f"fit: rate {uns['rate']:.1f} nats ({uns['active_dims']} of 10 dimensions active), "
          f"distortion {uns['distortion']:.1f} nats per cell")

    sc.pp.neighbors(train, use_rep="X_betavae")
    sc.tl.leiden(train, flavor="igraph", n_iterations=2, directed=False)
    sc.tl.umap(train)
    sc.pl.umap(train, color=["cell_type", "batch", "leiden"], show=False,
               save="_betavae.png")
    ari = bsc.metrics.clustering_scores(train.obsm["X_betavae"], train.obs["cell_type"])["ari"]
    mixing = bsc.metrics.ilisi(train.obsm["X_betavae"], train.obs["batch"])
    print(f"k-means ARI vs cell type {ari:.3f}; batch mixing iLISI (0-1) "
          f"{mixing['ilisi_normalised']:.3f}")

    z_new = bsc.tl.encode(model, new)
    print(f"encoded {len(z_new)} new cells into new.obsm['X_betavae']")

    fake = bsc.tl.generate(model, n=2000, batch="batch_1", seed=1)
    real = train[train.obs["batch"] == "batch_1", fake.var_names]  # genes the fit kept
    agree = bsc.metrics.expression_agreement(real.X, fake.X)["summary"]
    print(f"generated 2000 cells of batch_1: per-gene mean r {agree['mean_log1p_r']:.3f}, "
          f"variance r {agree['variance_log1p_r']:.3f}, zero fraction r "
          f"{agree['zero_fraction_r']:.3f}")
    typed = bsc.tl.generate(model, n=500, cell_type="type_2", seed=2)
    print(f"generated 500 cells around type_2's latent cloud: {typed.obs.iloc[0].to_dict()}")

    model.save(out / "model", overwrite=True)
    again = bsc.load(out / "model", adata=train)
    same = np.allclose(bsc.tl.encode(again, key_added=None), train.obsm["X_betavae"], atol=1e-5)
    print(f"saved to {out / 'model'} and reloaded: same encodings {same}")

    metrics = bsc.tl.evaluate(model, new, label_key="cell_type")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    latent = metrics["singlecell_latent"]
    print(f"held-out cells: ARI ours {latent['ours']['ari']:.3f} vs PCA "
          f"{latent['pca_scores']['ari']:.3f}; importance-weighted NLL "
          f"{metrics['singlecell_heldout']['iw_nll']:.1f} nats per cell")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    bsc.pl.rate_per_dim(model, ax=axes[0])
    bsc.pl.history(model, ax=axes[1])
    fig.tight_layout()
    fig.savefig(out / "rate_and_history.png", dpi=120)
    fig = bsc.pl.generated_vs_real(real, fake)
    fig.savefig(out / "generated_vs_real.png", dpi=120)

    differential(model, train, out)
    programs_of(model, train, out, "celltypes")
    planted(out, args.epochs)
    print(f"figures in {out}/: umap_betavae.png, rate_and_history.png, generated_vs_real.png, "
          f"de_volcano.png, programs_celltypes_*.png, programs_planted_*.png")


def differential(model, adata, out: Path) -> None:
    """type_0 against all other cells: posterior LFC and P(|LFC| > 0.25), as a volcano."""
    table = bsc.tl.differential_expression(model, adata, "cell_type", "type_0", seed=0)
    called = table["is_de_fdr_0.05"].to_numpy()
    top = table[called].sort_values("lfc_mean", key=np.abs, ascending=False).head(5)
    print(f"DE type_0 vs rest: {int(called.sum())} genes at FDR 5 %; largest LFC: "
          + ", ".join(f"{g} {v:+.2f}" for g, v in top["lfc_mean"].items()))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(table["lfc_mean"], table["proba_de"], s=6, c=np.where(called, "tab:red", "grey"))
    for i, (gene, row) in enumerate(top.iterrows()):  # staggered: the top genes crowd
        ax.annotate(gene, (row["lfc_mean"], row["proba_de"]), xytext=(-30, -10 - 9 * i),
                    textcoords="offset points", fontsize="x-small",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"})
    ax.set_xlabel("posterior mean log2 fold change (type_0 vs rest)")
    ax.set_ylabel("P(|LFC| > 0.25)")
    ax.set_title(f"Differential expression: {int(called.sum())} genes at FDR 5 % (red)")
    fig.tight_layout()
    fig.savefig(out / "de_volcano.png", dpi=120)
    plt.close(fig)


def programs_of(model, adata, out: Path, name: str, n_top: int = 30) -> None:
    """Rank the genes of each active latent dimension; heatmap and traversal figures."""
    table = bsc.tl.latent_genes(model, adata, n_top=n_top)
    for d, rows in table.groupby("dimension", sort=False):
        genes = ", ".join(f"{g}{'+' if s > 0 else '-'}" for g, s in
                          zip(rows.gene[:5], rows.score[:5], strict=True))
        print(f"  z{d} ({rows.rate_nats.iloc[0]:.2f} nats): {genes}")
    figures = bsc.pl.latent_genes(adata, n_genes=8)
    figures.heatmap.savefig(out / f"programs_{name}_heatmap.png", dpi=120)
    figures.traversals.savefig(out / f"programs_{name}_traversals.png", dpi=120)
    plt.close(figures.heatmap)
    plt.close(figures.traversals)


def planted(out: Path, epochs: int) -> None:
    """Counts with four planted gene programs: is each found by one latent dimension?"""
    import anndata as ad
    import pandas as pd

    sim = planted_programs(n_cells=2000, n_genes=600, n_programs=4, program_size=15, seed=0)
    cells = ad.AnnData(sim["counts"], obs=pd.DataFrame(index=sim["cell_names"]),
                       var=pd.DataFrame(index=sim["gene_names"]))
    model = bsc.tl.fit(cells, likelihood="nb", beta=2.0, n_latent=6, epochs=epochs,
                       progress=False)
    print("planted programs (4 x 15 of 600 genes): latent dimensions and their top genes")
    programs_of(model, cells, out, "planted", n_top=15)
    table = bsc.tl.latent_genes(model, cells, n_top=15, key_added=None)
    for k, genes in enumerate(sim["program_genes"]):
        best = max((len(set(rows.gene) & set(genes)) / 15, d)
                   for d, rows in table.groupby("dimension"))
        print(f"  program {k}: best dimension z{best[1]}, precision at 15 {best[0]:.2f} "
              f"(chance {15 / 600:.3f})")


if __name__ == "__main__":
    main()

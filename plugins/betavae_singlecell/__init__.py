"""betavae_singlecell: β-VAE for single-cell expression inside a scanpy workflow.

    import scanpy as sc, betavae_singlecell as bsc
    model = bsc.tl.fit(adata, layer="counts", likelihood="nb", batch_key="batch")
    sc.pp.neighbors(adata, use_rep="X_betavae"); sc.tl.umap(adata)
    z = bsc.tl.encode(model, other_adata)
    fake = bsc.tl.generate(model, n=5000, batch="b1")
    model.save("model/"); model = bsc.load("model/", adata=adata)

Registered with betavae through the `betavae` entry point `singlecell`, like any
third-party plugin: count likelihoods (nb, zinb, poisson), the `expression_mlp`
architecture, the `expression` loader, evaluations and the `cells` generator.
"""

from . import datasets, metrics, pl, tl
from .model import SingleCellModel, load

__all__ = ["SingleCellModel", "datasets", "load", "metrics", "pl", "tl"]

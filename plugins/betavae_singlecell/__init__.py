"""betavae_singlecell: β-VAE for single-cell expression inside a scanpy workflow.

    import scanpy as sc, betavae_singlecell as bsc
    model = bsc.tl.fit(adata, layer="counts", likelihood="nb", batch_key="batch")
    sc.pp.neighbors(adata, use_rep="X_betavae"); sc.tl.umap(adata)
    z = bsc.tl.encode(model, other_adata)
    fake = bsc.tl.generate(model, n=5000, batch="b1")
    model.save("model/"); model = bsc.load("model/", adata=adata)

Registered with betavae through the `betavae` entry point `singlecell` (module
`betavae_singlecell.plugin`), like any third-party plugin: count likelihoods (nb, zinb,
poisson), the `expression_mlp` architecture, the `expression` loader, evaluations and
the `cells` generator.

The names below load on first use, so importing the package (as `betavae --help` does,
through the entry point) imports neither torch nor scanpy.
"""

from __future__ import annotations

from betavae_core import lazy_exports

_MODULES = ("datasets", "metrics", "pl", "tl", "readers")
_NAMES = {"SingleCellModel": "model", "load": "model"}  # name -> module defining it

__all__ = sorted([*_MODULES, *_NAMES])

__getattr__ = lazy_exports(__name__, _NAMES, modules=_MODULES)

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

import importlib
from typing import Any

# name -> (module of this package, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "datasets": ("datasets", None), "metrics": ("metrics", None), "pl": ("pl", None),
    "tl": ("tl", None), "readers": ("readers", None),
    "SingleCellModel": ("model", "SingleCellModel"), "load": ("model", "load"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'betavae_singlecell' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

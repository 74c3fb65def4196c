"""Plots (`bsc.pl`): the rate per latent dimension, the rate/distortion history, generated
against real cells, and the gene programs of the latent dimensions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from betavae_core import ConfigError

from . import plots
from .model import SingleCellModel


def _record(model_or_record: Any) -> dict[str, Any]:
    if isinstance(model_or_record, SingleCellModel):
        return model_or_record.record
    return dict(model_or_record)


def rate_per_dim(model: Any, ax: Any = None, show: bool | None = None) -> Any:
    """Bar chart of KL (nats) per latent dimension: collapsed dimensions sit near zero.
    Takes a fitted model or its `adata.uns['X_betavae']`-style record."""
    record = _record(model)
    if "kl_per_dim" not in record and "rate_per_dim" in record:
        record = {**record, "kl_per_dim": list(record["rate_per_dim"])}
    return plots.rate_per_dim(record, ax=ax, show=show)


def history(model: Any, ax: Any = None, show: bool | None = None) -> Any:
    """Rate and distortion per epoch (training and validation)."""
    return plots.history(_record(model), ax=ax, show=show)


def generated_vs_real(real: Any, generated: Any) -> Any:
    """Per-gene mean, variance and zero fraction of generated cells against real ones
    (AnnData or cells x genes matrices), one panel each, with Pearson r in the titles.
    Returns the matplotlib Figure."""
    from .evaluations import gene_statistics_figure
    from .metrics import expression_agreement

    def matrix(x: Any) -> Any:
        return x.X if hasattr(x, "X") else x

    return gene_statistics_figure(expression_agreement(matrix(real), matrix(generated)))


class LatentGenesFigures(NamedTuple):
    """The two figures of `latent_genes`: the score heatmap and the traversal panels."""

    heatmap: Any
    traversals: Any


def latent_genes(model_or_adata: Any, *, key: str = "latent_genes", n_genes: int = 10,
                 dims: Sequence[int] | None = None,
                 show: bool | None = None) -> LatentGenesFigures:
    """Gene programs written by `bsc.tl.latent_genes`: a heatmap of the top `n_genes`
    genes' scores per latent dimension (rows: dimensions, with their rate in nats), and
    one traversal panel per dimension (decoded expression of its top genes as z_d runs
    from -2 to +2 prior s.d.). Takes the AnnData, or a model whose `.adata` holds the
    record; `dims` picks dimensions (default: every active one, by rate).

    Returns `LatentGenesFigures(heatmap, traversals)`, two matplotlib Figures.
    """
    from .programs import latent_genes_record

    record = latent_genes_record(model_or_adata, key)
    available = [int(d) for d in np.asarray(record["dims"])]
    chosen = available if dims is None else [int(d) for d in dims]
    unknown = [d for d in chosen if d not in available]
    if unknown or not chosen:
        raise ConfigError(f"dims {unknown or list(dims or [])} are not among the active "
                          f"dimensions of uns[{key!r}]: {available}.")
    if isinstance(n_genes, bool) or int(n_genes) < 1:
        raise ConfigError(f"n_genes must be a positive integer; got {n_genes!r}.")
    n_genes = min(int(n_genes), len(record[f"z{chosen[0]}"]["genes"]))
    figures = LatentGenesFigures(plots.latent_genes_heatmap(record, chosen, n_genes),
                                 plots.latent_traversals(record, chosen, n_genes))
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return figures

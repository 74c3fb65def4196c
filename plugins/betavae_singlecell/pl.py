"""Plots (`bsc.pl`): the rate per latent dimension and the rate/distortion history."""

from __future__ import annotations

from typing import Any

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

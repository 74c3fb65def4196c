"""Plots of a fitted model's record, in the style of scanpy's `pl` functions.

`record` is the dict the fit leaves beside the embedding (like `adata.uns["betavae"]`):
"kl_per_dim" (held-out KL per latent dimension, nats) and "history" (one dict per epoch
with epoch, train_rate, train_distortion, val_rate, val_distortion, beta; a dict of
equal-length lists, as it comes back from an .h5ad file, is accepted too).

Each function draws into `ax` when given, otherwise into a new figure, and returns the
Axes (its figure is `ax.figure`). Nothing is shown unless `show=True`, so the functions
are safe under the Agg backend and in scripts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COLLAPSE_THRESHOLD = 0.01  # nats: a dimension with less held-out KL carries no information
_FLOOR = 1e-5  # KL values below this are drawn at it (log axis)


def _new_axes(figsize: tuple[float, float]):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _finish(ax, show: bool | None):
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return ax


def _record_value(record: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(record, Mapping):
        raise TypeError(f"record must be a dict like adata.uns['betavae']; got "
                        f"{type(record).__name__}.")
    if key not in record:
        raise KeyError(f"record has no {key!r} entry (needed for {what}); it holds "
                       f"{sorted(record)}.")
    return record[key]


def rate_per_dim(
    record: Mapping[str, Any],
    ax=None,
    show: bool | None = None,
    threshold: float = COLLAPSE_THRESHOLD,
):
    """Bar chart of the KL (nats) of every latent dimension, sorted descending, on a log
    axis, with a dashed line at the collapse `threshold` (default 0.01 nats). Bars are
    labelled with the dimension's index; collapsed dimensions are grey."""
    kl = np.asarray(_record_value(record, "kl_per_dim", "rate_per_dim"), dtype=np.float64)
    if kl.ndim != 1 or kl.size == 0:
        raise ValueError(f"record['kl_per_dim'] must be a non-empty list of numbers; got "
                         f"shape {kl.shape}.")
    order = np.argsort(-kl, kind="stable")
    values = kl[order]
    if ax is None:
        ax = _new_axes((max(4.0, 0.4 * kl.size + 1.5), 3.0))
    active = values > threshold
    colors = np.where(active, "tab:blue", "lightgrey")
    pos = np.arange(kl.size)
    ax.bar(pos, np.clip(values, _FLOOR, None), color=colors.tolist())
    ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"collapse threshold "
               f"({threshold:g} nats)")
    ax.set_yscale("log")
    ax.set_xticks(pos)
    ax.set_xticklabels([f"z{d}" for d in order], rotation=90 if kl.size > 20 else 0)
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("KL (nats)")
    ax.set_title(f"Rate per latent dimension: {int(active.sum())} of {kl.size} active")
    ax.legend(frameon=False, fontsize="small")
    return _finish(ax, show)


def _history_columns(history: Any) -> dict[str, np.ndarray]:
    """Columns epoch, train_rate, ... as float arrays (NaN where a row lacks a value)."""
    keys = ("epoch", "train_rate", "train_distortion", "val_rate", "val_distortion", "beta")
    if isinstance(history, Mapping):
        rows = None
        n = len(next(iter(history.values()))) if history else 0
    elif isinstance(history, Sequence) and not isinstance(history, str):
        rows = list(history)
        n = len(rows)
    else:
        raise TypeError(f"record['history'] must be a list of per-epoch dicts; got "
                        f"{type(history).__name__}.")
    if n == 0:
        raise ValueError("record['history'] holds no epochs.")

    def number(v: Any) -> float:
        return float("nan") if v is None or v == "" else float(v)

    cols = {}
    for key in keys:
        if rows is None:
            column = history.get(key)
            values = [number(v) for v in column] if column is not None else [np.nan] * n
        else:
            values = [number(row.get(key)) for row in rows]
        cols[key] = np.asarray(values, dtype=np.float64)
    if np.isnan(cols["epoch"]).all():
        cols["epoch"] = np.arange(1, n + 1, dtype=np.float64)
    return cols


def history(record: Mapping[str, Any], ax=None, show: bool | None = None):
    """Distortion (left axis, blue) and rate (right axis, orange) per epoch, training
    (solid) and validation (dashed). Returns the distortion Axes; the rate Axes is its
    twin (`ax.figure.axes`)."""
    cols = _history_columns(_record_value(record, "history", "history"))
    if ax is None:
        ax = _new_axes((5.5, 3.4))
    epoch = cols["epoch"]
    lines = []
    for split, style in (("train", "-"), ("val", "--")):
        y = cols[f"{split}_distortion"]
        if np.isfinite(y).any():
            lines += ax.plot(epoch, y, style, color="tab:blue", label=f"{split} distortion")
    ax.set_xlabel("epoch")
    ax.set_ylabel("distortion  −log p(x|z)  (nats)", color="tab:blue")
    rate_ax = ax.twinx()
    for split, style in (("train", "-"), ("val", "--")):
        y = cols[f"{split}_rate"]
        if np.isfinite(y).any():
            lines += rate_ax.plot(epoch, y, style, color="tab:orange", label=f"{split} rate")
    rate_ax.set_ylabel("rate  KL (nats)", color="tab:orange")
    beta = cols["beta"][np.isfinite(cols["beta"])]
    title = "Rate and distortion per epoch"
    if beta.size:
        title += (f" (β = {beta[0]:g})" if np.ptp(beta) == 0
                  else f" (β {beta.min():g} → {beta.max():g})")
    ax.set_title(title)
    if lines:
        ax.legend(lines, [ln.get_label() for ln in lines], frameon=False, fontsize="small")
    return _finish(ax, show)

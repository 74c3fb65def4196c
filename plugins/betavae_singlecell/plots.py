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


def _dimension_label(record: Mapping[str, Any], dim: int) -> str:
    return f"z{dim} ({float(record[f'z{dim}']['rate_nats']):.2g} nats)"


def latent_genes_heatmap(record: Mapping[str, Any], dims: Sequence[int], n_genes: int):
    """Heatmap of gene scores: one row per latent dimension in `dims`, one column per
    gene among each dimension's top `n_genes` (in blocks, first occurrence kept), signed
    scores on a diverging scale centred at zero. Returns the Figure."""
    import matplotlib.pyplot as plt

    names = [str(g) for g in np.asarray(record["var_names"])]
    position = {g: i for i, g in enumerate(names)}
    all_dims = [int(d) for d in np.asarray(record["dims"])]
    rows = [all_dims.index(d) for d in dims]
    columns: list[str] = []
    for d in dims:
        columns += [str(g) for g in record[f"z{d}"]["genes"][:n_genes] if str(g) not in columns]
    matrix = np.asarray(record["score_matrix"], dtype=np.float64)[rows][
        :, [position[g] for g in columns]]
    limit = float(np.abs(matrix).max()) or 1.0
    fig, ax = plt.subplots(figsize=(max(4.0, 0.22 * len(columns) + 2.5),
                                    max(2.0, 0.35 * len(dims) + 1.4)))
    image = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                      interpolation="nearest")
    ax.set_yticks(range(len(dims)))
    ax.set_yticklabels([_dimension_label(record, d) for d in dims], fontsize="small")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=90, fontsize="x-small")
    ax.set_xlabel(f"top {n_genes} genes of each dimension")
    fig.colorbar(image, ax=ax, label=str(record["params"]["score_unit"]), shrink=0.8)
    ax.set_title(f"Gene programs of the latent dimensions ({record['params']['method']})")
    fig.tight_layout()
    return fig


def latent_traversals(record: Mapping[str, Any], dims: Sequence[int], n_genes: int):
    """One panel per dimension in `dims`: the decoded expression (mean over cells) of
    its top `n_genes` genes as z_d runs from -2 to +2 prior s.d., up genes in warm and
    down genes in cool colours, on a log axis for counts. Returns the Figure."""
    import matplotlib.pyplot as plt

    n_cols = min(4, len(dims))
    n_rows = -(-len(dims) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.9 * n_rows),
                             squeeze=False)
    grid = np.asarray(record["grid"], dtype=np.float64)
    log_axis = "log1p" not in str(record["params"]["expression"])
    for ax, d in zip(axes.ravel(), dims, strict=False):
        entry = record[f"z{d}"]
        curves = np.asarray(entry["traversal"], dtype=np.float64)[:, :n_genes]
        ups = iter(plt.cm.Reds(np.linspace(0.9, 0.4, n_genes)))
        downs = iter(plt.cm.Blues(np.linspace(0.9, 0.4, n_genes)))
        for j, gene in enumerate(entry["genes"][:n_genes]):
            color = next(ups) if str(entry["directions"][j]) == "up" else next(downs)
            ax.plot(grid, curves[:, j], color=color, lw=1.4, label=str(gene))
        if log_axis:
            ax.set_yscale("log")
        ax.set_title(_dimension_label(record, d), fontsize="medium")
        ax.set_xlabel(f"z{d} (prior s.d.)")
        ax.legend(fontsize="xx-small", frameon=False, ncol=2, loc="best")
    for ax in axes.ravel()[len(dims):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("expression (per 10⁴)" if log_axis else "log1p expression")
    fig.suptitle("Decoded expression along each latent dimension (mean over cells)")
    fig.tight_layout()
    return fig

"""Figures a person would rather look at than read (matplotlib, no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .checkpoint import atomic_write


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write a figure as PNG, atomically."""
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))


def kl_per_dim(kl: Sequence[float], threshold: float | None = None) -> Figure:
    fig = Figure(figsize=(max(4.0, 0.45 * len(kl) + 1.5), 3.0))
    ax = fig.add_subplot()
    order = np.arange(len(kl))
    ax.bar(order, kl, color="tab:blue")
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"{threshold} nats")
        ax.legend(frameon=False)
    ax.set_xticks(order)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    ax.set_title("Rate per latent dimension (held-out)")
    return fig


def correlation_heatmap(cov: np.ndarray, title: str) -> Figure:
    std = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    corr = cov / np.outer(std, std)
    fig = Figure(figsize=(4.4, 3.8))
    ax = fig.add_subplot()
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    fig.colorbar(im, ax=ax, label="correlation")
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("latent dimension")
    ax.set_title(title)
    return fig


def image_rows(rows: Sequence[np.ndarray], labels: Sequence[str], title: str) -> Figure:
    """A grid: one row per array of images (k, H, W), labelled on the left."""
    n_cols = max(len(r) for r in rows)
    fig = Figure(figsize=(0.9 * n_cols + 1.2, 0.95 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for i, (images, label) in enumerate(zip(rows, labels, strict=True)):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(images):
                ax.imshow(images[j], cmap="gray_r", vmin=0, vmax=1)
            else:
                ax.axis("off")
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def rate_distortion(
    betas: Sequence[float], rates: Sequence[float], distortions: Sequence[float]
) -> Figure:
    """The rate-distortion curve of a beta sweep, each point labelled by its beta."""
    fig = Figure(figsize=(8.5, 3.4))
    ax_rd, ax_beta = fig.subplots(1, 2)
    ax_rd.plot(rates, distortions, "o-", color="tab:purple")
    for b, r, d in zip(betas, rates, distortions, strict=True):
        ax_rd.annotate(f"β={b:g}", (r, d), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax_rd.set_xlabel("rate: KL(q(z|x) || p(z)) (nats)")
    ax_rd.set_ylabel("distortion: −log p(x|z) (nats)")
    ax_rd.set_title("Rate–distortion (held-out)")
    ax_beta.plot(betas, rates, "o-", label="rate")
    ax_beta.plot(betas, distortions, "s-", label="distortion")
    ax_beta.set_xscale("log")
    ax_beta.set_xlabel("β (price of information)")
    ax_beta.set_ylabel("nats")
    ax_beta.legend(frameon=False)
    ax_beta.set_title("Both terms against β")
    fig.tight_layout()
    return fig


def training_history(history: Sequence[dict], kept_epoch: int | None = None) -> Figure:
    """Rate and distortion per epoch (train and validation) with beta in force, and the
    epoch whose weights the fit kept (`TrainConfig.keep`) marked on both panels."""
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(8.5, 3.2))
    ax_d, ax_r = fig.subplots(1, 2)
    ax_d.plot(epochs, [r["train_distortion"] for r in history], label="train")
    ax_d.plot(epochs, [r["val_distortion"] for r in history], label="validation")
    ax_d.set_title("Distortion")
    ax_r.plot(epochs, [r["train_rate"] for r in history], label="train")
    ax_r.plot(epochs, [r["val_rate"] for r in history], label="validation")
    ax_r.set_title("Rate")
    ax_b = ax_r.twinx()
    ax_b.plot(epochs, [r["beta"] for r in history], color="grey", ls=":", label="β")
    ax_b.set_ylabel("β in force", color="grey")
    for ax in (ax_d, ax_r):
        if kept_epoch is not None and kept_epoch > 0:
            ax.axvline(kept_epoch, color="black", lw=0.8, ls="--", label="kept weights")
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats")
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig

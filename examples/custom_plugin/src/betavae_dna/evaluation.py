"""`dna_reconstruction`: how well a fitted model reads sequences back, and whether one
latent dimension tracks GC content.

Works on any DNA data (generated or from FASTA): GC content is computed from the
sequences themselves, so no ground-truth factors are needed.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

import betavae_core as bv

from .sequences import ALPHABET, gc_fraction

CHANCE = 1.0 / len(ALPHABET)


def abs_correlations(latents: np.ndarray, target: np.ndarray) -> np.ndarray:
    """|Pearson r| of each latent column with `target`; 0 where either is constant."""
    zc = latents - latents.mean(axis=0)
    tc = target - target.mean()
    denom = np.sqrt((zc**2).sum(axis=0) * (tc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (zc * tc[:, None]).sum(axis=0) / denom, 0.0)
    return np.abs(r)


def dna_reconstruction(run: bv.RunContext, batch_size: int = 1024) -> bv.EvaluationResult:
    """Per-position accuracy of the decoded argmax base, against chance (0.25) and the
    per-position majority base, plus the best |r| between a latent mean and GC content.

    `run.heldout` is the data to evaluate; the core's batched passes do the work:
    `bv.encode` for the posterior means, `bv.reconstruct` for the decoded letter
    probabilities at those means."""
    data = run.heldout
    x = data.x.double().numpy()
    mu, _ = bv.encode(run.model, data, batch_size=int(batch_size))
    probs = bv.reconstruct(run.model, data, batch_size=int(batch_size)).mean.double().numpy()
    truth = x.argmax(axis=-1)
    hits = probs.argmax(axis=-1) == truth
    per_position = hits.mean(axis=0)
    majority = float(_majority_hits(truth).mean())
    r = abs_correlations(mu, gc_fraction(x))
    best = int(np.argmax(r))
    metrics = {
        "n_items": len(data),
        "base_accuracy": float(hits.mean()),
        "chance_accuracy": CHANCE,
        "majority_accuracy": majority,
        "accuracy_per_position": [round(float(a), 4) for a in per_position],
        "gc_abs_correlation": float(r[best]),
        "gc_best_dim": best,
        "gc_abs_correlation_per_dim": [round(float(v), 4) for v in r],
    }
    return bv.EvaluationResult(metrics=metrics,
                            figures={"accuracy": _accuracy_figure(per_position, majority)})


def _majority_hits(truth: np.ndarray) -> np.ndarray:
    """Hits (n, L) of always guessing each position's most common base."""
    counts = np.stack([(truth == b).sum(axis=0) for b in range(len(ALPHABET))])
    return truth == counts.argmax(axis=0)[None, :]


def _accuracy_figure(per_position: np.ndarray, majority: float) -> Figure:
    fig = Figure(figsize=(max(4.0, 0.12 * len(per_position) + 2.0), 3.0))
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(per_position) + 1), per_position, marker=".",
            label="reconstruction")
    ax.axhline(majority, color="tab:orange", ls="--", lw=1, label="majority base")
    ax.axhline(CHANCE, color="grey", ls=":", lw=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("position")
    ax.set_ylabel("base accuracy")
    ax.set_title("Decoded argmax base vs. the held-out sequence")
    ax.legend(frameon=False, fontsize=8)
    return fig

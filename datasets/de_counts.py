"""Synthetic counts with planted differentially expressed genes, to score DE methods.

The truth is known per gene, so a DE method's ranking (AUPRC) and its called set
(observed FDR) can be checked without any download (numpy and scipy only):

* gene base log-expression ``b_g ~ N(-1, 1.5^2)`` (natural log, relative scale);
* group 0 is the reference; every other group moves its own ``de_fraction`` of the genes
  by a planted log2 fold change ``± U(*lfc_range)`` (half up, half down, so the
  renormalisation over genes hardly moves the other genes);
* each batch multiplies every gene by ``exp(N(0, batch_effect^2))`` (gene-wise) and has
  its own depth: ``log L ~ N(m_batch, library_sd^2)`` with ``m_batch ~ N(7.5, 0.3^2)``;
* groups are spread unevenly over batches when ``confounding > 0`` (group g's cells fall in
  batch ``g mod n_batches`` with extra probability ``confounding``), so a method that
  ignores batch sees batch genes as DE;
* counts are negative binomial (Gamma-Poisson) with mean
  ``L * softmax(b + ln2 * lfc[group] + batch effect)`` and inverse dispersion θ.

`true_lfc(sim, a, b)` gives the exact log2 fold change between two groups of the batch-free
fractions, and `planted(sim, a, b)` the genes planted as DE between them.
"""

from __future__ import annotations

import math

import numpy as np

from .counts import _check_int, _check_real, _log_softmax, nb_counts

__all__ = ["planted", "simulate_de", "true_lfc"]

BASE_LOG_MEAN: float = -1.0
BASE_LOG_SD: float = 1.5
LIBRARY_LOG_MEAN: float = 7.5
LIBRARY_LOG_MEAN_SD: float = 0.3


def _plant(rng: np.random.Generator, n_groups: int, n_genes: int, de_fraction: float,
           lfc_range: tuple[float, float]) -> np.ndarray:
    """(n_groups, n_genes) planted log2 fold changes against group 0 (row 0 is zero)."""
    lfc = np.zeros((n_groups, n_genes))
    n_de = max(2, round(de_fraction * n_genes))
    for g in range(1, n_groups):
        genes = rng.choice(n_genes, size=n_de, replace=False)
        sign = np.where(np.arange(n_de) % 2 == 0, 1.0, -1.0)
        lfc[g, genes] = sign * rng.uniform(*lfc_range, size=n_de)
    return lfc


def _assign(rng: np.random.Generator, n_cells: int, n_groups: int, n_batches: int,
            confounding: float) -> tuple[np.ndarray, np.ndarray]:
    """Group and batch per cell; with `confounding`, group g leans to batch g mod B."""
    groups = rng.integers(n_groups, size=n_cells)
    batches = rng.integers(n_batches, size=n_cells)
    lean = rng.random(n_cells) < confounding
    batches[lean] = groups[lean] % n_batches
    return groups, batches


def simulate_de(
    n_cells: int = 2000,
    n_genes: int = 500,
    n_groups: int = 2,
    n_batches: int = 2,
    de_fraction: float = 0.1,
    lfc_range: tuple[float, float] = (1.0, 2.0),
    batch_effect: float = 0.5,
    library_sd: float = 0.5,
    confounding: float = 0.3,
    dispersion: float = 5.0,
    seed: int = 0,
) -> dict:
    """Draw counts with planted DE genes between groups. Deterministic in ``seed``.

    Returns a dict: ``counts`` (CSR float32 cells x genes), ``group`` ("group_0", ...),
    ``batch`` ("batch_0", ...), ``gene_names``, ``cell_names``, ``library_size`` (observed
    totals), ``lfc`` ((n_groups, n_genes) planted log2 fold changes against group 0),
    ``log_fraction`` ((n_groups, n_genes) natural-log expected fraction per gene, batch-free)
    and ``batch_log_effect`` ((n_batches, n_genes), natural log).
    """
    n_cells = _check_int("n_cells", n_cells, 4)
    n_genes = _check_int("n_genes", n_genes, 4)
    n_groups = _check_int("n_groups", n_groups, 2)
    n_batches = _check_int("n_batches", n_batches, 1)
    de_fraction = _check_real("de_fraction", de_fraction, positive=True)
    batch_effect = _check_real("batch_effect", batch_effect, positive=False)
    library_sd = _check_real("library_sd", library_sd, positive=False)
    dispersion = _check_real("dispersion", dispersion, positive=True)
    if not 0.0 <= confounding < 1.0:
        raise ValueError(f"confounding must be in [0, 1), got {confounding!r}")
    if not 0.0 < lfc_range[0] <= lfc_range[1]:
        raise ValueError(f"lfc_range must be (low, high) with 0 < low <= high, got {lfc_range}")

    rng = np.random.default_rng(seed)
    base = rng.normal(BASE_LOG_MEAN, BASE_LOG_SD, size=n_genes)
    lfc = _plant(rng, n_groups, n_genes, de_fraction, lfc_range)
    log_fraction = _log_softmax(base[None, :] + math.log(2.0) * lfc)
    batch_log_effect = rng.normal(0.0, batch_effect, size=(n_batches, n_genes))
    depth = rng.normal(LIBRARY_LOG_MEAN, LIBRARY_LOG_MEAN_SD, size=n_batches)
    groups, batches = _assign(rng, n_cells, n_groups, n_batches, confounding)
    library = np.exp(rng.normal(depth[batches], library_sd))
    fractions = np.exp(_log_softmax(log_fraction[:, None, :] + batch_log_effect[None]))
    mu = library[:, None] * fractions[groups, batches]
    counts = nb_counts(rng, mu, dispersion)
    return {
        "counts": counts,
        "group": np.array([f"group_{g}" for g in groups]),
        "batch": np.array([f"batch_{b}" for b in batches]),
        "gene_names": np.array([f"gene_{g}" for g in range(n_genes)]),
        "cell_names": np.array([f"cell_{c}" for c in range(n_cells)]),
        "library_size": np.asarray(counts.sum(axis=1), dtype=np.float64).ravel(),
        "lfc": lfc,
        "log_fraction": log_fraction,
        "batch_log_effect": batch_log_effect,
    }


def _index(name: str | int) -> int:
    return int(str(name).rsplit("_", 1)[-1])


def true_lfc(sim: dict, a: str | int, b: str | int) -> np.ndarray:
    """Exact log2 fold change per gene of group `a`'s batch-free fractions over `b`'s."""
    frac = sim["log_fraction"]
    return (frac[_index(a)] - frac[_index(b)]) / math.log(2.0)


def planted(sim: dict, a: str | int, b: str | int) -> np.ndarray:
    """Boolean per gene: planted as DE between groups `a` and `b`."""
    return sim["lfc"][_index(a)] != sim["lfc"][_index(b)]

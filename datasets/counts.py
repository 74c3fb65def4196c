"""Synthetic single-cell counts with known cell types, batches and true expression.

A small generative model, so a single-cell β-VAE can be checked against known truth without
any download (numpy and scipy only):

* gene base log-expression ``b_g ~ N(-1, 1.5^2)`` (relative scale);
* each cell type moves about 10% of the genes (its markers) up or down by ``U(1.5, 3)`` in log
  space: ``log_mean[t] = log softmax(b + delta_t)``, the expected fraction of a cell's library
  that goes to each gene;
* each batch multiplies every gene by ``exp(N(0, batch_effect^2))`` (a gene-wise batch effect)
  and has its own library-size distribution: ``log L ~ N(m_batch, 0.3^2)`` with
  ``m_batch ~ N(7.5, 0.3^2)``;
* counts are negative binomial with mean ``L * softmax(log_mean[type] + log batch factor)``
  and inverse dispersion ``theta = dispersion`` (variance ``mu + mu^2 / theta``), drawn as a
  Gamma-Poisson mixture.

Types and batches are drawn independently and uniformly for each cell, so batch is a nuisance
factor orthogonal to type.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.sparse as sp

__all__ = ["synthetic_counts"]

BASE_LOG_MEAN: float = -1.0
BASE_LOG_SD: float = 1.5
MARKER_FRACTION: float = 0.10
MARKER_SHIFT: tuple[float, float] = (1.5, 3.0)
LIBRARY_LOG_MEAN: float = 7.5
LIBRARY_LOG_MEAN_SD: float = 0.3  # spread of the per-batch mean log library size
LIBRARY_LOG_SD: float = 0.3  # spread of log library size within a batch
_CHUNK = 4096  # cells drawn at once; bounds the dense (chunk, n_genes) temporaries


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_real(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if math.isnan(x) or (positive and x <= 0) or (not positive and x < 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if math.isinf(x) and name != "dispersion":
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def nb_counts(rng: np.random.Generator, mu: np.ndarray, dispersion: float) -> sp.csr_matrix:
    """Negative-binomial counts of mean `mu` and inverse dispersion `dispersion` (a
    Gamma-Poisson mixture; Poisson when `dispersion` is infinite), as float32 CSR."""
    rate = mu if math.isinf(dispersion) else rng.gamma(dispersion, mu / dispersion)
    return sp.csr_matrix(rng.poisson(rate).astype(np.float32))


def synthetic_counts(
    n_cells: int = 2000,
    n_genes: int = 500,
    n_types: int = 5,
    n_batches: int = 2,
    batch_effect: float = 0.5,
    dispersion: float = 5.0,
    seed: int = 0,
) -> dict:
    """Draw a cells x genes count matrix with known cell types, batches and true means.

    ``dispersion`` is the negative-binomial inverse dispersion θ (``inf`` gives Poisson).
    Deterministic in ``seed``. Returns a dict of numpy/scipy objects:

    * ``counts`` -- ``scipy.sparse.csr_matrix`` float32 of integer counts, cells x genes;
    * ``cell_type`` -- str array, ``"type_0"`` ...; ``batch`` -- str array, ``"batch_0"`` ...;
    * ``gene_names`` (``"gene_0"`` ...), ``cell_names`` (``"cell_0"`` ...) -- str arrays;
    * ``library_size`` -- float64 array, the observed total count of each cell;
    * ``log_mean`` -- float64 (n_types, n_genes): the true log expected fraction of a
      cell's library per gene for each type, before batch effects (each row log-sums to 0);
    * ``batch_log_effect`` -- float64 (n_batches, n_genes): the gene-wise log batch factors.
    """
    n_cells = _check_int("n_cells", n_cells, 1)
    n_genes = _check_int("n_genes", n_genes, 1)
    n_types = _check_int("n_types", n_types, 1)
    n_batches = _check_int("n_batches", n_batches, 1)
    batch_effect = _check_real("batch_effect", batch_effect, positive=False)
    dispersion = _check_real("dispersion", dispersion, positive=True)
    seed = _check_int("seed", seed, 0)

    rng = np.random.default_rng(seed)
    base = rng.normal(BASE_LOG_MEAN, BASE_LOG_SD, size=n_genes)
    n_markers = max(1, round(MARKER_FRACTION * n_genes))
    shifts = np.zeros((n_types, n_genes))
    for t in range(n_types):
        markers = rng.choice(n_genes, size=n_markers, replace=False)
        sign = rng.choice((-1.0, 1.0), size=n_markers)
        shifts[t, markers] = sign * rng.uniform(*MARKER_SHIFT, size=n_markers)
    log_mean = _log_softmax(base[None, :] + shifts)

    batch_log_effect = rng.normal(0.0, batch_effect, size=(n_batches, n_genes))
    library_log_mean = rng.normal(LIBRARY_LOG_MEAN, LIBRARY_LOG_MEAN_SD, size=n_batches)

    types = rng.integers(n_types, size=n_cells)
    batches = rng.integers(n_batches, size=n_cells)
    library = np.exp(rng.normal(library_log_mean[batches], LIBRARY_LOG_SD))
    # expected fractions per (type, batch) pair, normalised after the batch factor
    fractions = np.exp(_log_softmax(log_mean[:, None, :] + batch_log_effect[None, :, :]))

    blocks = []
    for start in range(0, n_cells, _CHUNK):
        stop = min(start + _CHUNK, n_cells)
        mu = library[start:stop, None] * fractions[types[start:stop], batches[start:stop]]
        blocks.append(nb_counts(rng, mu, dispersion))
    counts = sp.vstack(blocks, format="csr")

    return {
        "counts": counts,
        "cell_type": np.array([f"type_{t}" for t in types]),
        "batch": np.array([f"batch_{b}" for b in batches]),
        "gene_names": np.array([f"gene_{g}" for g in range(n_genes)]),
        "cell_names": np.array([f"cell_{c}" for c in range(n_cells)]),
        "library_size": np.asarray(counts.sum(axis=1), dtype=np.float64).ravel(),
        "log_mean": log_mean,
        "batch_log_effect": batch_log_effect,
    }

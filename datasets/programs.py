"""Synthetic single-cell counts with planted gene programs: known truth for reading genes
off latent dimensions.

A small generative model (numpy and scipy only), so a tool that ranks the genes behind
each latent dimension can be scored against the programs that made the data:

* gene base log-expression ``b_g ~ N(-1, 1.5^2)`` (relative scale);
* ``n_programs`` disjoint gene sets of ``program_size`` genes each, drawn at random;
  gene ``g`` of program ``k`` has a log-scale weight ``w_g = strength * U(1.5, 3)``, times
  ``1 - spread * k / (n_programs - 1)`` (``spread > 0`` makes later programs weaker);
* every cell has one activity per program, drawn independently: ``U(0, 1)``
  (``activity="uniform"``) or ``Gamma(2, 1/4)`` (``activity="gamma"``: mean 0.5, skewed,
  most cells low and a few high, as in real programs), and
  ``log_mean[c] = log softmax(b + sum_k a_ck w_k)``, the expected fraction of the cell's
  library that goes to each gene: a program raises its genes only (the other genes'
  shares shrink a little, because fractions sum to one);
* library sizes vary from cell to cell: ``log L ~ N(7.5, library_sd^2)``;
* counts are negative binomial with mean ``L * exp(log_mean)`` and inverse dispersion
  ``theta = dispersion``, drawn as a Gamma-Poisson mixture.

Activities are independent of each other and of the library size, so each program is one
factor of variation that a disentangling model can put on one latent dimension. Keep
the programs a small share of the genes (the defaults: 4 x 20 of 500): when they hold
much of every library, their common side effect (all other genes shrink together) is a
shared direction, and a model may mix the programs along it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .counts import _check_int, _check_real, _log_softmax, nb_counts

__all__ = ["ACTIVITIES", "planted_programs"]

ACTIVITIES = ("uniform", "gamma")
BASE_LOG_MEAN: float = -1.0
BASE_LOG_SD: float = 1.5
PROGRAM_WEIGHT: tuple[float, float] = (1.5, 3.0)
GAMMA_SHAPE: float = 0.5
GAMMA_SCALE: float = 1.0
LIBRARY_LOG_MEAN: float = 7.5
_CHUNK = 4096  # cells drawn at once; bounds the dense (chunk, n_genes) temporaries


def _activities(rng: np.random.Generator, n_cells: int, n_programs: int,
                activity: str) -> np.ndarray:
    if activity == "uniform":
        return rng.uniform(0.0, 1.0, size=(n_cells, n_programs))
    return rng.gamma(GAMMA_SHAPE, GAMMA_SCALE, size=(n_cells, n_programs))


def planted_programs(
    n_cells: int = 2000,
    n_genes: int = 500,
    n_programs: int = 4,
    program_size: int = 20,
    activity: str = "uniform",
    dispersion: float = 5.0,
    library_sd: float = 0.4,
    strength: float = 1.5,
    spread: float = 0.0,
    seed: int = 0,
) -> dict:
    """Draw a cells x genes count matrix with ``n_programs`` planted gene programs.

    Deterministic in ``seed``. ``n_programs * program_size`` must not exceed ``n_genes``
    (the programs are disjoint). Returns a dict of numpy/scipy objects:

    * ``counts`` -- ``scipy.sparse.csr_matrix`` float32 of integer counts, cells x genes;
    * ``activities`` -- float64 (n_cells, n_programs), each cell's program activities;
    * ``programs`` -- int64 (n_programs, program_size): the gene indices of each program;
    * ``program_genes`` -- list of ``n_programs`` str arrays, the same as gene names;
    * ``weights`` -- float64 (n_genes,): each gene's log-scale program weight (0 outside);
    * ``base_log_mean`` -- float64 (n_genes,), the genes' base log-expression ``b``;
    * ``gene_names`` (``"gene_0"`` ...), ``cell_names`` (``"cell_0"`` ...) -- str arrays;
    * ``library_size`` -- float64, the observed total count of each cell.
    """
    n_cells = _check_int("n_cells", n_cells, 1)
    n_genes = _check_int("n_genes", n_genes, 1)
    n_programs = _check_int("n_programs", n_programs, 1)
    program_size = _check_int("program_size", program_size, 1)
    dispersion = _check_real("dispersion", dispersion, positive=True)
    library_sd = _check_real("library_sd", library_sd, positive=False)
    strength = _check_real("strength", strength, positive=True)
    spread = _check_real("spread", spread, positive=False)
    if spread >= 1:
        raise ValueError(f"spread must be below 1 (the weakest program keeps 1 - spread of "
                         f"the strongest's weights), got {spread!r}")
    seed = _check_int("seed", seed, 0)
    if activity not in ACTIVITIES:
        raise ValueError(f"activity must be one of {ACTIVITIES}, got {activity!r}")
    if n_programs * program_size > n_genes:
        raise ValueError(f"{n_programs} disjoint programs of {program_size} genes need at "
                         f"least {n_programs * program_size} genes, got n_genes={n_genes}")

    rng = np.random.default_rng(seed)
    base = rng.normal(BASE_LOG_MEAN, BASE_LOG_SD, size=n_genes)
    programs = rng.permutation(n_genes)[: n_programs * program_size].reshape(
        n_programs, program_size)
    weights = np.zeros(n_genes)
    weights[programs.ravel()] = strength * rng.uniform(*PROGRAM_WEIGHT, size=programs.size)
    weights[programs] *= 1.0 - spread * np.arange(n_programs)[:, None] / max(1, n_programs - 1)
    loading = np.zeros((n_programs, n_genes))  # loading[k, g] = w_g for g in program k
    for k, genes in enumerate(programs):
        loading[k, genes] = weights[genes]
    activities = _activities(rng, n_cells, n_programs, activity)
    library = np.exp(rng.normal(LIBRARY_LOG_MEAN, library_sd, size=n_cells))

    blocks = []
    for start in range(0, n_cells, _CHUNK):
        stop = min(start + _CHUNK, n_cells)
        log_mean = _log_softmax(base[None, :] + activities[start:stop] @ loading)
        mu = library[start:stop, None] * np.exp(log_mean)
        blocks.append(nb_counts(rng, mu, dispersion))
    counts = sp.vstack(blocks, format="csr")
    gene_names = np.array([f"gene_{g}" for g in range(n_genes)])

    return {
        "counts": counts,
        "activities": activities,
        "programs": programs.astype(np.int64),
        "program_genes": [gene_names[p] for p in programs],
        "weights": weights,
        "base_log_mean": base,
        "gene_names": gene_names,
        "cell_names": np.array([f"cell_{c}" for c in range(n_cells)]),
        "library_size": np.asarray(counts.sum(axis=1), dtype=np.float64).ravel(),
    }

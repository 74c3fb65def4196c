"""Information statistics of a diagonal-Gaussian encoder's posteriors.

These are the numbers that show beta as the price of information: how many nats
each latent dimension spends (rate / KL to the prior), how many dimensions are in
use (active units), how much the aggregate posterior's dimensions depend on each
other (covariance off-diagonal mass, total correlation) and how much the code
says about the item (mutual information I(X;Z)).

Inputs are posterior means ``mu`` and log-variances ``logvar`` of shape (n, d) for
n items, and optionally the prior's per-dimension standard deviations
``prior_scale`` of shape (d,) (default: ones, i.e. an isotropic N(0, I) prior).
Everything is pure numpy/scipy, computed in float64, in nats.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "active_unit_counts",
    "active_units",
    "aggregate_covariance",
    "gaussian_total_correlation",
    "kl_per_dim",
    "mutual_information",
    "offdiag_mass",
    "posterior_summary",
    "total_correlation",
]

_LOG_2PI = math.log(2.0 * math.pi)
_ZERO_VAR = 1e-12
_CHUNK_BYTES = 8 * 1024 * 1024  # small chunks are cache friendly; well under 200 MB
_TEMPORARIES = 2  # float64 (chunk, M, d) arrays alive at once in the mixture loop


# --------------------------------------------------------------------------- validation


def _as_matrix(name: str, a: object) -> np.ndarray:
    """Return ``a`` as a finite float64 2-D array with at least one row, else raise."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has non-finite values; first bad row is {row}")
    return arr


def _as_posteriors(mu: object, logvar: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (mu, logvar) pair: both 2-D, same shape, finite."""
    m = _as_matrix("mu", mu)
    lv = _as_matrix("logvar", logvar)
    if m.shape != lv.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {m.shape} and {lv.shape}")
    return m, lv


def _as_prior_scale(prior_scale: object, d: int) -> np.ndarray:
    """Return the prior's per-dimension std as a positive finite (d,) array."""
    if prior_scale is None:
        return np.ones(d)
    s = np.asarray(prior_scale, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(d, float(s))
    if s.shape != (d,):
        raise ValueError(f"prior_scale must have shape ({d},), got {s.shape}")
    bad = ~(np.isfinite(s) & (s > 0))
    if bad.any():
        raise ValueError(
            f"prior_scale must be finite and > 0; first bad entry is {int(np.flatnonzero(bad)[0])}"
        )
    return s


def _as_cov(cov: object) -> np.ndarray:
    """Validate a square, finite covariance matrix."""
    c = _as_matrix("cov", cov)
    if c.shape[0] != c.shape[1]:
        raise ValueError(f"cov must be square, got shape {c.shape}")
    return c


def _correlation(cov: np.ndarray) -> np.ndarray:
    """Correlation matrix of the dims of ``cov`` whose variance exceeds 1e-12."""
    var = np.diag(cov)
    keep = var > _ZERO_VAR
    sub = cov[np.ix_(keep, keep)]
    sd = np.sqrt(var[keep])
    corr = sub / np.outer(sd, sd)
    return 0.5 * (corr + corr.T)


# --------------------------------------------------------------------------- closed forms


def kl_per_dim(
    mu: np.ndarray, logvar: np.ndarray, prior_scale: np.ndarray | None = None
) -> np.ndarray:
    """Mean over items of KL(N(mu, exp(logvar)) || N(0, prior_scale^2)) per dimension.

    Exact closed form (no estimator), in nats, shape (d,). Its sum is the rate term
    that beta multiplies in the beta-VAE objective, so it prices each dimension.
    """
    m, lv = _as_posteriors(mu, logvar)
    s = _as_prior_scale(prior_scale, m.shape[1])
    prior_var = s**2
    kl = 0.5 * (np.log(prior_var) - lv + (np.exp(lv) + m**2) / prior_var - 1.0)
    return kl.mean(axis=0)


ACTIVE_VARIANCE = 0.01  # Var_x E[z_j|x] above which a dimension varies (Burda et al.)
ACTIVE_KL = 0.1  # nats: KL per dimension above which a dimension carries rate


def active_units(
    mu: np.ndarray,
    threshold: float = ACTIVE_VARIANCE,
    kl_per_dim: np.ndarray | None = None,
    kl_threshold: float = ACTIVE_KL,
) -> tuple[int, np.ndarray]:
    """Count of active latent dimensions and the per-dimension activity Var_x(E[z|x]).

    Burda et al. (2016): dimension j is active when the variance over items of its
    posterior mean exceeds ``threshold`` (exact population variance, ddof=0). Given
    ``kl_per_dim`` (mean KL to the prior per dimension, nats) the count is the strict
    one: the dimension must also carry more than ``kl_threshold`` nats, since a
    posterior mean can wander (variance 0.02, say) while the dimension spends 0.03 nats,
    which is noise, not information.
    """
    m = _as_matrix("mu", mu)
    activity = m.var(axis=0)
    active = activity > threshold
    if kl_per_dim is not None:
        kl = np.asarray(kl_per_dim, dtype=np.float64)
        if kl.shape != (m.shape[1],):
            raise ValueError(f"kl_per_dim must have shape ({m.shape[1]},), got {kl.shape}")
        active &= kl > kl_threshold
    return int(np.count_nonzero(active)), activity


def active_unit_counts(
    mu: np.ndarray,
    kl_per_dim: np.ndarray,
    threshold: float = ACTIVE_VARIANCE,
    kl_threshold: float = ACTIVE_KL,
) -> dict[str, int]:
    """Both rules: ``active_units`` (variance and KL, the strict rule, the one to quote)
    and ``active_units_variance`` (the variance rule alone, the older count)."""
    strict, _ = active_units(mu, threshold, kl_per_dim, kl_threshold)
    loose, _ = active_units(mu, threshold)
    return {"active_units": strict, "active_units_variance": loose}


def aggregate_covariance(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Covariance (d, d) of the aggregate posterior q(z) = E_x q(z|x).

    Exact by the law of total covariance, Cov(z) = E_x[Cov(z|x)] + Cov_x(E[z|x]),
    over the empirical item distribution (population moments, ddof=0). Posteriors
    are diagonal, so the first term is diag(mean_x exp(logvar)).
    """
    m, lv = _as_posteriors(mu, logvar)
    centred = m - m.mean(axis=0)
    between = centred.T @ centred / m.shape[0]
    cov = between + np.diag(np.exp(lv).mean(axis=0))
    return 0.5 * (cov + cov.T)


def offdiag_mass(cov: np.ndarray) -> float:
    """Normalised off-diagonal mass of a covariance matrix, in [0, 1].

    Definition: the mean squared off-diagonal *correlation*,
    sum_{i != j} rho_ij^2 / (k (k - 1)), computed on the correlation matrix so that
    the scale of each dimension does not matter. Dimensions with variance <= 1e-12
    are excluded first (k = number remaining); returns 0.0 when k < 2. 0 means
    uncorrelated dimensions, 1 means all dimensions are perfectly (anti)correlated.
    A cheap second-order proxy for entanglement of the aggregate posterior.
    """
    corr = _correlation(_as_cov(cov))
    k = corr.shape[0]
    if k < 2:
        return 0.0
    off = corr[~np.eye(k, dtype=bool)]
    return float(np.clip(np.sum(off**2) / (k * (k - 1)), 0.0, 1.0))


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation of a Gaussian with covariance ``cov``, in nats.

    Exact closed form TC = 0.5 * (sum_j log cov_jj - log det cov) = -0.5 log det R
    (R the correlation matrix), via slogdet on R. Applied to the aggregate
    covariance it is the TC of the moment-matched Gaussian, i.e. the second-order
    part of the dependence. Dimensions with variance <= 1e-12 are excluded;
    returns 0.0 with fewer than 2 dims and inf if R is singular.
    """
    corr = _correlation(_as_cov(cov))
    if corr.shape[0] < 2:
        return 0.0
    sign, logdet = np.linalg.slogdet(corr)
    if sign <= 0 or not np.isfinite(logdet):
        return math.inf
    return float(max(0.0, -0.5 * logdet))


# --------------------------------------------------------------------------- mixture Monte Carlo


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(a))) along ``axis`` for finite ``a``; overwrites ``a`` to save memory."""
    top = a.max(axis=axis, keepdims=True)
    a -= top
    np.exp(a, out=a)
    return np.log(a.sum(axis=axis)) + np.squeeze(top, axis=axis)


def _mixture_terms(
    mu: np.ndarray, logvar: np.ndarray, n_samples: int, seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Monte Carlo log-densities under the mixture approximation of q(z).

    Subsamples M = min(n, n_samples) items (without replacement), uses
    q(z) ~ (1/M) sum_m q(z|x_m) over them and draws one z_i ~ q(z|x_i) per
    subsampled item. Returns per-sample log q(z_i|x_i), log q(z_i),
    sum_j log q_j(z_ij) (marginals of the same mixture) and M.
    """
    m, lv = _as_posteriors(mu, logvar)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    rng = np.random.default_rng(seed)
    n, d = m.shape
    if n > n_samples:
        idx = np.sort(rng.choice(n, size=n_samples, replace=False))
        m, lv = m[idx], lv[idx]
    big_m = m.shape[0]
    std = np.exp(0.5 * lv)
    z = m + std * rng.standard_normal(m.shape)
    inv_var = np.exp(-lv)
    norm = -0.5 * (_LOG_2PI + lv)  # (M, d) per-component log-normaliser
    log_m = math.log(big_m)

    chunk = max(1, _CHUNK_BYTES // (8 * _TEMPORARIES * big_m * d))
    log_cond = np.empty(big_m)
    log_joint = np.empty(big_m)
    log_marg = np.empty(big_m)
    for start in range(0, big_m, chunk):
        stop = min(start + chunk, big_m)
        logp = z[start:stop, None, :] - m[None]  # (c, M, d)
        np.square(logp, out=logp)
        logp *= -0.5 * inv_var[None]
        logp += norm[None]  # log q(z_ij | x_m) per dimension
        joint = logp.sum(axis=2)  # (c, M): log q(z_i | x_m)
        rows = np.arange(stop - start)
        log_cond[start:stop] = joint[rows, rows + start]
        log_joint[start:stop] = _logsumexp(joint, axis=1) - log_m
        log_marg[start:stop] = (_logsumexp(logp, axis=1) - log_m).sum(axis=1)
    return log_cond, log_joint, log_marg, big_m


def total_correlation(
    mu: np.ndarray, logvar: np.ndarray, n_samples: int = 2000, seed: int | None = 0
) -> float:
    """Monte Carlo estimate of TC(q(z)) = KL(q(z) || prod_j q(z_j)), in nats.

    q(z) is the aggregate posterior approximated by the mixture
    (1/M) sum_m q(z|x_m) over M = min(n, n_samples) subsampled items, with its
    marginals q(z_j) taken from the same mixture; one z is drawn per component and
    log-densities use logsumexp over the components. This plug-in (mixture / KDE)
    estimator is biased: with very narrow, sparse posteriors the joint is
    overestimated and so is TC. Its value is bounded by the number of components:
    every sample's log-ratio is <= (d - 1) * log M (log M for d = 2), so dependence
    beyond that cannot be resolved. Not clipped, so it can be slightly negative.
    Measures entanglement of the code (beta-TCVAE's penalised term).
    """
    _, log_joint, log_marg, _ = _mixture_terms(mu, logvar, n_samples, seed)
    return float(np.mean(log_joint - log_marg))


def mutual_information(
    mu: np.ndarray, logvar: np.ndarray, n_samples: int = 2000, seed: int | None = 0
) -> float:
    """Monte Carlo estimate of I(X;Z) under the empirical data distribution, in nats.

    I = E_x E_{q(z|x)}[log q(z|x) - log q(z)], with q(z) the same mixture
    (1/M) sum_m q(z|x_m) over M = min(n, n_samples) subsampled items and one z per
    item. As a mixture estimate every sample's log-ratio is <= log M, so the
    estimate is bounded above by log M (it saturates when posteriors do not
    overlap). The rate E_x KL(q(z|x) || p(z)) is an upper bound on I(X;Z), which
    is why beta, by pricing the rate, prices information. Not clipped at 0.
    """
    log_cond, log_joint, _, _ = _mixture_terms(mu, logvar, n_samples, seed)
    return float(np.mean(log_cond - log_joint))


# --------------------------------------------------------------------------- summary


def posterior_summary(
    mu: np.ndarray,
    logvar: np.ndarray,
    prior_scale: np.ndarray | None = None,
    threshold: float = ACTIVE_VARIANCE,
    n_samples: int = 2000,
    seed: int | None = 0,
    kl: np.ndarray | None = None,
    kl_threshold: float = ACTIVE_KL,
) -> dict[str, float | list[float]]:
    """All statistics above in one JSON-ready dict (plain floats/ints/lists).

    ``kl`` (mean KL per dimension, nats) replaces the closed-form Gaussian KL, for a
    prior that is not N(0, diag(prior_scale^2)) (e.g. the model's Monte Carlo KL).
    Keys: rate (sum of kl_per_dim, exact for a Gaussian prior), kl_per_dim,
    active_units (strict: variance above ``threshold`` and KL above ``kl_threshold``),
    active_units_variance (the variance rule alone), active_unit_variance (the
    per-dimension Var E[z|x]), offdiag_mass and total_correlation_gaussian (of the
    aggregate covariance, exact), total_correlation and mutual_information
    (mixture Monte Carlo, sharing one draw), mutual_information_bound (log M, the
    ceiling of the mixture estimate) and mutual_information_upper_bound (the rate,
    an upper bound on the true I(X;Z)).
    """
    m, lv = _as_posteriors(mu, logvar)
    if kl is None:
        kl = kl_per_dim(m, lv, prior_scale)
    kl = np.asarray(kl, dtype=np.float64)
    n_active, activity = active_units(m, threshold, kl, kl_threshold)
    n_variance, _ = active_units(m, threshold)
    cov = aggregate_covariance(m, lv)
    log_cond, log_joint, log_marg, big_m = _mixture_terms(m, lv, n_samples, seed)
    rate = float(kl.sum())
    return {
        "rate": rate,
        "kl_per_dim": [float(v) for v in kl],
        "active_units": n_active,
        "active_units_variance": n_variance,
        "active_unit_variance": [float(v) for v in activity],
        "offdiag_mass": offdiag_mass(cov),
        "total_correlation": float(np.mean(log_joint - log_marg)),
        "total_correlation_gaussian": gaussian_total_correlation(cov),
        "mutual_information": float(np.mean(log_cond - log_joint)),
        "mutual_information_bound": math.log(big_m),
        "mutual_information_upper_bound": rate,
    }

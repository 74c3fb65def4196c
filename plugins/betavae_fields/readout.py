"""The latent read back through the decoder: an order parameter in the data's own units.

A posterior mean is a monotone but nonlinear function of the magnetisation: with a
factorised, translation-invariant decoder the reconstruction depends on a configuration
only through m, so every monotone warp g(m) reconstructs equally well and the KL term
picks one (for the Ising model of issue 15, |z|/|m| runs from 0.83 at small |m| to 1.04
near 1 at every L). A warp g(m) = c m (1 + a m^2 + ...) changes the Binder cumulant at
Tc by ~ a <m^2> ~ L^(-1/4): a slow correction that makes crossings drift. The decoder is
the latent's own map back to spins: the spin it expects at z estimates E[m | z], which
undoes the warp. `decoded_magnetization` reads that, for every likelihood of the plugin
(the XY von Mises decoder: |mean spin vector|; spins and fields: the signed site mean);
`decoded_odd` makes it exactly odd under a spin flip, as m is, for Z2 models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import betavae_core as bv
from betavae_core import DataError

DECODE_BATCH = 2048
UNIFORM_SIDE = 4  # torus a uniform decoder is read on: its values do not depend on the side


def _site_means(values: np.ndarray, sides: np.ndarray | None) -> np.ndarray:
    """Mean of (n, top, top) values over each item's top-left L x L square."""
    if sides is None:
        return values.mean(axis=(1, 2))
    out = np.empty(len(values))
    for L in np.unique(sides):
        rows = sides == L
        out[rows] = values[rows, :L, :L].mean(axis=(1, 2))
    return out


def _von_mises_mean(params: np.ndarray) -> np.ndarray:
    """|site mean of the expected spin vector| from von Mises natural parameters
    (a, b) = kappa (cos mu, sin mu): the mean spin is A(kappa) (cos mu, sin mu),
    A = I1 / I0."""
    from scipy.special import i0e, i1e

    a, b = params[:, 0], params[:, 1]
    kappa = np.sqrt(a * a + b * b) + 1e-12
    weight = i1e(kappa) / i0e(kappa) / kappa
    return np.hypot((weight * a).mean(axis=(1, 2)), (weight * b).mean(axis=(1, 2)))


def decoded_magnetization(model: bv.BetaVAE, mu: np.ndarray,
                          sides: np.ndarray | None = None,
                          covariates: Any = None) -> np.ndarray:
    """The magnetisation the decoder expects at each posterior mean `mu` (n, d).

    von_mises (XY): |site mean of the expected spin vector| (a magnitude). Otherwise
    (spins, padded spins, phi^4 fields): the signed site mean of the likelihood's mean
    over each item's L x L square (`sides`, one L per item, for padded data of several
    sizes; None: the whole lattice). `covariates` (n, c): the data's, for a model
    conditioned on them (e.g. on temperature); None for one that is not."""
    mu = np.asarray(mu, dtype=np.float32)
    if sides is not None:
        sides = np.asarray(sides).astype(np.int64).ravel()
        if sides.size != len(mu):
            raise DataError(f"decoded_magnetization: sides has {sides.size} entries for "
                            f"{len(mu)} posterior means; pass one L per item.")
    if covariates is not None:
        import torch

        covariates = torch.as_tensor(np.asarray(covariates), dtype=torch.float32)
        if len(covariates) != len(mu):
            raise DataError(f"decoded_magnetization: covariates has {len(covariates)} rows "
                            f"for {len(mu)} posterior means; pass the data's covariates.")
    angles = getattr(model.config, "likelihood", None) == "von_mises"
    uniform = getattr(model.decoder, "uniform", False) and not angles
    out = np.empty(len(mu))
    for start in range(0, len(mu), DECODE_BATCH):  # (n, L, L) per chunk: bounded memory
        sl = slice(start, start + DECODE_BATCH)
        if uniform:  # the same value at every site, so on every square: a small torus
            out[sl] = _uniform_means(model, mu[sl], _rows(covariates, sl))
            continue
        dec = bv.decode(model, mu[sl], covariates=_rows(covariates, sl), mean=not angles,
                        sample=False, params=angles)
        if angles:
            out[sl] = _von_mises_mean(np.asarray(dec.params, dtype=np.float64))
        else:
            out[sl] = _site_means(np.asarray(dec.mean, dtype=np.float64),
                                  None if sides is None else sides[sl])
    return out


def _rows(covariates: Any, sl: slice) -> Any:
    return None if covariates is None else covariates[sl]


def _uniform_means(model: bv.BetaVAE, mu: np.ndarray, covariates: Any = None) -> np.ndarray:
    """The site mean of the likelihood's mean for a decoder whose parameters are the
    same at every site (`uniform`, e.g. multisize.BroadcastDecoder), read on an
    UNIFORM_SIDE torus: 60 x cheaper than the full 32 x 32 lattice, the same values."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z = torch.as_tensor(mu, dtype=torch.float32).to(model.device)
            cov = None if covariates is None else covariates.to(model.device)
            params = model.decoder(z, model.conditioning(cov, None, len(z)), None,
                                   side=UNIFORM_SIDE)
            mean = model.likelihood.distribution(params, None).mean
    finally:
        model.train(was_training)
    return mean.double().cpu().numpy().reshape(len(mu), -1).mean(axis=1)


def decoded_odd(model: bv.BetaVAE, mu: np.ndarray, flipped: np.ndarray,
                sides: np.ndarray | None = None, covariates: Any = None) -> np.ndarray:
    """(m_dec(mu(x)) - m_dec(mu(-x))) / 2: the decoded magnetisation's spin-flip odd
    part, from the posterior means of the configurations (`mu`) and of their flips
    (`flipped`, `evaluations.flipped_means`). Exactly odd: flipping x swaps the two
    terms. The even part (an energy-like offset the decoder may carry) cancels.
    `covariates`: as in `decoded_magnetization` (a flip leaves them as they are)."""
    if np.shape(mu) != np.shape(flipped):
        raise DataError(f"decoded_odd: mu {np.shape(mu)} and flipped {np.shape(flipped)} "
                        f"must be the posterior means of the same configurations.")
    return 0.5 * (decoded_magnetization(model, mu, sides, covariates)
                  - decoded_magnetization(model, flipped, sides, covariates))

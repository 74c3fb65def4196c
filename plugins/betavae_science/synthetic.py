"""Synthetic data whose true sources are known, for the identifiability experiment.

`segmented_sources` is the setting of nonlinear ICA with an auxiliary variable (Hyvarinen
& Morioka 2016, time-contrastive learning; Khemakhem et al. 2020, iVAE): the data come in
segments u = 1..M; within segment m source i is N(μ_{m,i}, λ_{m,i}²) with a scale λ_{m,i}
drawn once per segment (log-uniform in `scale_range`; means μ uniform in ±`mean_range`,
0 by default), so the sources are independent given u, their variances move with u, and
each source's marginal is a scale mixture of Gaussians (non-Gaussian, heavy-tailed).
Means and scales are then rescaled per source (`unit_marginals`) so that every source has
mean 0 and variance 1: no second-order statistic singles out the sources' axes, and a
model that finds principal directions cannot match the sources by accident.
The observations are the sources pushed through a random invertible MLP,

    x = standardise(B · σ(A_L · ... σ(A_1 · s))) + noise,  σ = leaky ReLU (slope 0.2),

with square, well-conditioned A_l (singular values in [1, `condition`]) and an injective
B to `dim` features: a strong, piecewise-linear, invertible mixing (a linear read-out of
s from x explains about two thirds of its variance, against 95 % for `mixed_factors`). u is given
as a one-hot `covariates` matrix, what a conditional prior p(z|u) reads.

`gaussian=True` is the control: every source is N(0, 1) in every segment (u carries no
information about s). The distribution of s is then invariant under rotations, so no
method can tell the sources from any rotation of them.

The mixing is drawn from `mixing_seed`, the items from `seed`, so a training and a
held-out draw with different `seed` share one generative map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from betavae_core import ConfigError, DomainData

LEAKY_SLOPE = 0.2
SCALE_RANGE = (0.3, 3.0)  # per-segment source scales are log-uniform in this range
# (before `unit_marginals`, which keeps only their ratios across segments)
_REFERENCE_N = 20000  # items of the fixed draw that standardises x


@dataclass(frozen=True)
class Mixing:
    """A random invertible leaky-ReLU MLP: square matrices, per-layer biases."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def __call__(self, s: np.ndarray) -> np.ndarray:
        h = s
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.where(h > 0, h, LEAKY_SLOPE * h)
        return h


def _conditioned(rows: int, cols: int, condition: float,
                 rng: np.random.Generator) -> np.ndarray:
    """A random (rows, cols) matrix of full rank min(rows, cols) whose singular values are
    log-spaced in [1, condition], rescaled to unit mean (random orthogonal factors)."""
    q1, _ = np.linalg.qr(rng.normal(size=(rows, rows)))
    q2, _ = np.linalg.qr(rng.normal(size=(cols, cols)))
    k = min(rows, cols)
    sv = np.geomspace(1.0, condition, k)
    return q1[:, :k] @ np.diag(sv / sv.mean()) @ q2[:k]


def random_mixing(n_sources: int, dim: int, layers: int, condition: float,
                  rng: np.random.Generator) -> Mixing:
    """`layers` leaky-ReLU layers of square well-conditioned matrices (invertible), then
    one injective linear map to `dim` >= n_sources observed features."""
    weights = [_conditioned(n_sources, n_sources, condition, rng) for _ in range(layers)]
    weights.append(_conditioned(n_sources, dim, condition, rng))
    biases = [rng.normal(scale=0.1, size=w.shape[1]) for w in weights]
    return Mixing(tuple(weights), tuple(biases))


def _check(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ConfigError(f"synthetic data: {name} must be an integer >= {minimum}, got "
                          f"{value!r}.")
    return int(value)


def _positive_range(value: object) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not 0.0 < lo <= hi < float("inf"):
        raise ConfigError(f"segmented_sources: scale_range must be (lo, hi) with "
                          f"0 < lo <= hi, got {value!r}.")
    return lo, hi


def unit_marginals(means: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segment means and scales rescaled so that every source has mean 0 and variance 1
    over the (equal-sized) segments: E_m[μ_m] = 0 and E_m[μ_m² + λ_m²] = 1 per source.

    Without this the sources' marginal variances differ, so the principal axes of the
    sources' covariance are the sources themselves, and any model that finds principal
    directions (a VAE with a diagonal posterior does, Rolinek et al. 2019) matches them
    without identifying anything. With unit marginals no second-order statistic singles
    out the sources' axes; only the segment-wise variances (what u reveals) and the
    higher moments do."""
    centred = means - means.mean(0)
    spread = np.sqrt((centred**2 + scales**2).mean(0))
    return centred / spread, scales / spread


def draw_sources(n_segments: int, per_segment: int, n_sources: int, gaussian: bool,
                 means: np.ndarray, scales: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Segment labels (n,) and sources (n, n_sources): N(m, λ²) with the segment's means
    and scales, or N(0, 1) everywhere for the Gaussian control."""
    u = np.repeat(np.arange(n_segments), per_segment)
    n = u.size
    if gaussian:
        return u, rng.normal(size=(n, n_sources))
    return u, means[u] + rng.normal(size=(n, n_sources)) * scales[u]


def segmented_sources(n_segments: int = 20, per_segment: int = 200, n_sources: int = 5,
                      dim: int = 20, layers: int = 3, condition: float = 3.0, noise: float = 0.05,
                      mean_range: float = 0.0, scale_range: tuple[float, float] = SCALE_RANGE,
                      gaussian: bool = False, seed: int = 0,
                      mixing_seed: int = 0) -> DomainData:
    """Segmented independent sources through a random invertible leaky-ReLU MLP.

    Returns `DomainData` with x (n, dim), factors = the sources, covariates = the
    one-hot segment, metadata["segment"], and the source scales per segment in attrs.
    """
    n_segments = _check("n_segments", n_segments, 2)
    per_segment = _check("per_segment", per_segment, 2)
    n_sources = _check("n_sources", n_sources, 2)
    dim = _check("dim", dim, n_sources)
    layers = _check("layers", layers, 0)
    if not condition >= 1.0:
        raise ConfigError(f"segmented_sources: condition must be >= 1, got {condition!r}.")
    if not noise >= 0.0:
        raise ConfigError(f"segmented_sources: noise must be >= 0, got {noise!r}.")
    scale_range = _positive_range(scale_range)
    mix_rng = np.random.default_rng(mixing_seed)
    mixing = random_mixing(n_sources, dim, layers, condition, mix_rng)
    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    scales = np.exp(mix_rng.uniform(lo, hi, size=(n_segments, n_sources)))
    means = mix_rng.uniform(-mean_range, mean_range, size=(n_segments, n_sources))
    means, scales = unit_marginals(means, scales)
    # Standardise with the map's own moments on a fixed large draw, not this sample's.
    _, ref = draw_sources(n_segments, -(-_REFERENCE_N // n_segments), n_sources, gaussian,
                          means, scales, np.random.default_rng(mixing_seed + 1))
    ref_x = mixing(ref)
    rng = np.random.default_rng(seed)
    u, s = draw_sources(n_segments, per_segment, n_sources, gaussian, means, scales, rng)
    x = (mixing(s) - ref_x.mean(0)) / ref_x.std(0)
    x = x + rng.normal(scale=noise, size=x.shape)
    return DomainData(
        x=x.astype(np.float32), domain="factors", likelihood="gaussian",
        covariates=np.eye(n_segments, dtype=np.float32)[u],
        factors=s, factor_names=tuple(f"s{i}" for i in range(n_sources)),
        factor_discrete=(False,) * n_sources,
        metadata={"segment": u.tolist()},
        attrs={"source": "betavae_science.synthetic.segmented_sources",
               "n_segments": n_segments, "per_segment": per_segment,
               "n_sources": n_sources, "dim": dim, "layers": layers, "condition": condition,
               "noise": noise, "gaussian": bool(gaussian), "seed": seed,
               "mixing_seed": mixing_seed,
               "mean_range": mean_range, "scale_range": list(scale_range),
               "segment_means": (np.zeros_like(means) if gaussian else means).tolist(),
               "segment_scales": (np.ones_like(scales) if gaussian else scales).tolist()},
    )


def without_covariates(data: DomainData) -> DomainData:
    """The same items with no covariates: what an unconditional model is fitted on, so
    the segment reaches only the conditional prior."""
    return DomainData(x=data.x, domain=data.domain, likelihood=data.likelihood,
                      factors=data.factors, factor_names=data.factor_names,
                      factor_discrete=data.factor_discrete, metadata=data.metadata,
                      attrs=data.attrs)


PALETTE = np.array([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.4, 1.0], [1.0, 0.9, 0.2]])
HARD_FACTOR_NAMES = ("shape", "scale", "rotation", "pos_x", "pos_y", "colour")
HARD_FACTOR_DISCRETE = (True, False, False, False, False, True)


def hard_shapes(n: int = 6000, size: int = 16, noise: float = 0.3,
                seed: int = 0) -> DomainData:
    """The shapes data made harder: RGB images (3, size, size) with a sixth factor, the
    shape's colour (one of four, `PALETTE`), on a background of uniform noise in
    [0, `noise`] per pixel and channel (a nuisance no factor explains). Gaussian
    likelihood (the values are no longer binary)."""
    from betavae_datasets.shapes import make_shapes

    n = _check("n", n, 1)
    if not 0.0 <= noise < 1.0:
        raise ConfigError(f"hard_shapes: noise must lie in [0, 1), got {noise!r}.")
    shapes = make_shapes(n=n, size=int(size), seed=int(seed))
    rng = np.random.default_rng(seed + 7919)
    colour = rng.integers(0, len(PALETTE), size=n)
    mask = shapes.images[:, None]  # (n, 1, size, size)
    background = rng.uniform(0.0, noise, size=(n, 3, size, size))
    x = mask * PALETTE[colour][:, :, None, None] + (1.0 - mask) * background
    factors = np.concatenate([shapes.factors, colour[:, None].astype(np.float64)], axis=1)
    return DomainData(
        x=x.astype(np.float32), domain="shapes", likelihood="gaussian", factors=factors,
        factor_names=HARD_FACTOR_NAMES, factor_discrete=HARD_FACTOR_DISCRETE,
        metadata={"shape": shapes.factors[:, 0].astype(int).tolist()},
        attrs={"source": "betavae_science.synthetic.hard_shapes", "n": n, "size": size,
               "noise": noise, "seed": seed},
    )

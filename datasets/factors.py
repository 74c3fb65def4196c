"""Independent factors mixed by a fixed smooth nonlinear map: tabular data whose true
sources are known exactly, for identifiability and decorrelation experiments.

x = standardise(W2 · leaky_relu(W1 · s + b1)) + noise, with s uniform on [-√3, √3]
(unit variance, non-Gaussian, independent). The mixing weights are drawn once from
`mixing_seed`, so datasets with different `seed` share one generative map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MixedFactors:
    """Observations x (n, dim) float32 and their sources (n, n_factors) float64."""

    x: np.ndarray
    factors: np.ndarray
    factor_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _check_positive(name: str, value: int, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def make_mixed_factors(
    n: int = 4000,
    n_factors: int = 4,
    dim: int = 16,
    noise: float = 0.05,
    seed: int = 0,
    mixing_seed: int = 0,
) -> MixedFactors:
    """Draw n items; `noise` is the s.d. of Gaussian noise added to standardised x."""
    n = _check_positive("n", n)
    n_factors = _check_positive("n_factors", n_factors)
    dim = _check_positive("dim", dim, minimum=n_factors)
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got noise={noise!r}")
    mix = np.random.default_rng(mixing_seed)
    hidden = 2 * dim
    w1 = mix.normal(size=(n_factors, hidden)) / np.sqrt(n_factors)
    b1 = mix.normal(scale=0.5, size=hidden)
    w2 = mix.normal(size=(hidden, dim)) / np.sqrt(hidden)
    rng = np.random.default_rng(seed)
    s = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size=(n, n_factors))
    h = s @ w1 + b1
    h = np.where(h > 0, h, 0.2 * h)
    x = h @ w2
    # Standardise with the map's own moments (estimated on a fixed large draw), so the
    # scaling does not depend on this sample.
    ref = np.random.default_rng(mixing_seed + 1).uniform(-np.sqrt(3.0), np.sqrt(3.0),
                                                         size=(20000, n_factors))
    ref_h = ref @ w1 + b1
    ref_x = np.where(ref_h > 0, ref_h, 0.2 * ref_h) @ w2
    x = (x - ref_x.mean(0)) / ref_x.std(0)
    x = x + rng.normal(scale=noise, size=x.shape)
    names = tuple(f"s{i}" for i in range(n_factors))
    return MixedFactors(x.astype(np.float32), s, names)

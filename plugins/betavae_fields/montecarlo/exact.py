"""Exact results of the 2D Ising model (Onsager, Yang), the samplers' reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import ellipk

from betavae_core import ConfigError

#: Exact critical temperature of the 2D square-lattice Ising model (Onsager), J = k_B = 1.
TC_ISING: float = 2.0 / math.log(1.0 + math.sqrt(2.0))


def _temperatures(T: Any) -> np.ndarray:
    arr = np.asarray(T, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if np.any(bad):
        raise ConfigError(f"temperatures must be finite and > 0; got {arr[bad].ravel()[:5]}")
    return arr


def onsager_energy(T: Any) -> np.ndarray:
    """Exact energy per site of the infinite 2D Ising model (J = 1), Onsager 1944.

    u = -coth(2b) [1 + (2/pi)(2 tanh^2(2b) - 1) K(k^2)], k = 2 sinh(2b) / cosh^2(2b).
    """
    b2 = 2.0 / _temperatures(T)
    m = (2.0 * np.sinh(b2) / np.cosh(b2) ** 2) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        bracket = 1.0 + (2.0 / np.pi) * (2.0 * np.tanh(b2) ** 2 - 1.0) * ellipk(m)
        u = -bracket / np.tanh(b2)
    return np.where(m >= 1.0, -math.sqrt(2.0), u)


def onsager_magnetization(T: Any) -> np.ndarray:
    """Exact spontaneous magnetisation (1 - sinh(2/T)^-4)^(1/8) below Tc, 0 above (Yang)."""
    t = _temperatures(T)
    with np.errstate(over="ignore"):
        inner = 1.0 - np.sinh(2.0 / t) ** -4.0
    return np.where(t < TC_ISING, np.clip(inner, 0.0, None) ** 0.125, 0.0)

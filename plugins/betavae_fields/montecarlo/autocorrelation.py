"""Integrated autocorrelation times: how far apart kept samples must be."""

from __future__ import annotations

from typing import Any

import numpy as np

from betavae_core import DataError

from . import checks


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance (divided by T) of each row, lags 0 .. T-1, via FFT."""
    n = x.shape[1]
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=size, axis=1)
    return np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n] / n


def integrated_autocorr_time(series: Any, c: float = 5.0) -> float:
    """Integrated autocorrelation time tau_int = 1/2 + sum_t rho(t), in steps.

    Sokal's automatic window: the sum runs to the smallest M with M >= c tau_int(M).
    A (chains, T) array gives the chain-averaged autocorrelation (each chain centred on
    its own mean). A constant series has no measurable correlation: 0.5 is returned.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] < 4:
        raise DataError(f"series must have shape (T,) or (chains, T) with T >= 4; got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("series contains NaN or infinite values")
    c = checks.positive_float(c, "c")
    acov = _autocovariance(x - x.mean(axis=1, keepdims=True)).mean(axis=0)
    if acov[0] <= 1e-14 * max(1.0, float(np.abs(x).max()) ** 2):
        return 0.5
    taus = 0.5 + np.cumsum(acov[1:] / acov[0])  # taus[M - 1] = tau_int(M)
    window = np.arange(1, x.shape[1])
    ok = np.flatnonzero(window >= c * taus)
    return float(taus[ok[0]] if ok.size else taus[-1])

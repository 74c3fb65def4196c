"""Checks of the samplers' parameters: each bad value is a `ConfigError` saying what and
why, before any sweep runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from betavae_core import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def lattice_side(L: Any) -> int:
    """L as an int, checked: >= 2 and even (the checkerboard needs two colours)."""
    if not _is_int(L):
        raise ConfigError(f"L must be an even integer >= 2; got {L!r}")
    if L < 2:
        raise ConfigError(f"L must be an even integer >= 2; got L={L}")
    if L % 2:
        raise ConfigError(
            f"L must be even: the checkerboard update splits the periodic lattice into two "
            f"colours, which needs an even side; got L={L} (use {L + 1} or {L - 1})"
        )
    return int(L)


def count(value: Any, name: str, minimum: int = 1) -> int:
    """A non-bool integer >= minimum."""
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def optional_count(value: Any, name: str, default: int, minimum: int) -> int:
    return default if value is None else count(value, name, minimum)


def control_values(values: Any, name: str, allow_zero: bool) -> np.ndarray:
    """Control values as a 1-D float64 array: finite, > 0 (or >= 0), no duplicates."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a sequence of numbers; got {values!r}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"{name} must be a non-empty 1-D sequence; got shape {arr.shape}")
    bound = "finite and >= 0" if allow_zero else "finite and > 0"
    for i, v in enumerate(arr):
        if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(f"{name}[{i}] = {float(v)!r} is invalid: each value must be {bound}")
    unique, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        repeated = unique[counts > 1].tolist()
        raise ConfigError(f"{name} must not repeat a value; repeated: {repeated}")
    return arr


def seed(seed: Any) -> int:
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def window(window: Any) -> tuple[float, float]:
    """The Wolff temperature window as (low, high) with low <= high."""
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"wolff_window must be two numbers (low, high); got {window!r}"
        ) from exc
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ConfigError(f"wolff_window must be finite with low <= high; got ({lo}, {hi})")
    return lo, hi


def positive_float(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number > 0; got {value!r}") from exc
    if not np.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be finite and > 0; got {value!r}")
    return v

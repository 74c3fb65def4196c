"""`Ensemble`: what every sampler returns, and what the cache stores."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Ensemble:
    """Equilibrium configurations of one lattice model at several control values.

    Samples are grouped by control value (in the order requested), then ordered by
    sampling time; `chain` says which chain (0 .. chains-1, within its control value)
    each came from, so error bars can come from independent chains.
    """

    model: str
    configs: np.ndarray
    control: np.ndarray
    energy: np.ndarray
    magnetization: np.ndarray
    tau: dict[float, float]
    spacing: dict[float, int]
    params: dict
    control_name: str
    chain: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return int(self.configs.shape[0])

"""The training objective and its schedules: how distortion and rate are weighted.

loss = distortion + beta(t) * rate                          (constant, warm-up, cyclical)
loss = distortion + gamma * |rate - C(t)|                   (capacity target)
Free bits replace each dimension's batch-mean KL by max(KL_j, lambda) in the loss
(the logged rate is always the true KL). `t` is training progress in epochs (fractional).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from .errors import ConfigError
from .model import LossRecord

SCHEDULES = ("constant", "warmup", "cyclical")


@dataclass
class Objective:
    """Weighting of rate against distortion; owned by the trainer, never by the model.

    - `schedule="warmup"`: beta rises linearly from 0 to `beta` over `warmup_epochs`.
    - `schedule="cyclical"`: within each cycle of `cycle_epochs`, beta rises from 0 to
      `beta` over the first `cycle_ramp` fraction, then holds (Fu et al. 2019).
    - `capacity` (nats): target rate C rising linearly from 0 to `capacity` over
      `capacity_epochs`; loss = distortion + gamma * |rate - C| (Burgess et al. 2018).
    - `free_bits` (nats per dimension): no pressure on a dimension's KL below it
      (Kingma et al. 2016).
    """

    beta: float = 1.0
    schedule: str = "constant"
    warmup_epochs: float = 10.0
    cycle_epochs: float = 10.0
    cycle_ramp: float = 0.5
    capacity: float | None = None
    capacity_epochs: float = 20.0
    gamma: float = 100.0
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ConfigError(f"beta must be > 0; got {self.beta}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}.")
        for name in ("warmup_epochs", "cycle_epochs", "capacity_epochs"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)}.")
        if not 0 < self.cycle_ramp <= 1:
            raise ConfigError(f"cycle_ramp must lie in (0, 1]; got {self.cycle_ramp}.")
        if self.capacity is not None and self.capacity < 0:
            raise ConfigError(f"capacity must be >= 0 nats; got {self.capacity}.")
        if self.free_bits < 0 or self.gamma <= 0:
            raise ConfigError("free_bits must be >= 0 and gamma > 0.")

    def beta_at(self, t: float) -> float:
        """The rate weight in force at progress `t` (epochs); gamma in capacity mode."""
        if self.capacity is not None:
            return self.gamma
        if self.schedule == "warmup":
            return self.beta * min(1.0, t / self.warmup_epochs)
        if self.schedule == "cyclical":
            phase = (t % self.cycle_epochs) / self.cycle_epochs
            return self.beta * min(1.0, phase / self.cycle_ramp)
        return self.beta

    def capacity_at(self, t: float) -> float | None:
        if self.capacity is None:
            return None
        return self.capacity * min(1.0, t / self.capacity_epochs)

    def settled_at(self, t: float) -> bool:
        """Whether the schedule has reached the objective asked for (beta, capacity).

        Before that (warm-up, a cycle's ramp, a rising capacity) the loss weighs rate
        less than asked, so a model from then is not the one the user wants to keep.
        """
        if self.capacity is not None:
            return t >= self.capacity_epochs
        if self.schedule == "cyclical":  # a cycle's end closes its hold phase
            phase = ((t % self.cycle_epochs) or self.cycle_epochs) / self.cycle_epochs
            return phase >= self.cycle_ramp
        return self.beta_at(t) >= self.beta

    def loss(self, record: LossRecord, t: float) -> torch.Tensor:
        """Scalar loss for one minibatch (means over items)."""
        return self._combine(record.distortion.mean(), record.kl_per_dim.mean(dim=0),
                             self.beta_at(t), self.capacity_at(t))

    def target_value(self, distortion: float, kl_per_dim: Any) -> float:
        """The settled objective for mean distortion and KL per dimension (nats).

        It ranks validation epochs for the weights a fit keeps: the ELBO when beta = 1.
        """
        kl = torch.as_tensor(kl_per_dim, dtype=torch.float64)
        d = torch.tensor(float(distortion), dtype=torch.float64)
        return float(self._combine(d, kl, self.beta, self.capacity))

    def _combine(self, distortion: torch.Tensor, kl_dims: torch.Tensor, beta: float,
                 capacity: float | None) -> torch.Tensor:
        if self.free_bits > 0:
            kl_dims = torch.clamp(kl_dims, min=self.free_bits)
        rate = kl_dims.sum()
        if capacity is not None:
            return distortion + self.gamma * (rate - capacity).abs()
        return distortion + beta * rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

"""The training objective and its schedules: how distortion and rate are weighted.

loss = distortion + beta(t) * rate                          (constant, warm-up, cyclical)
loss = distortion + gamma * |rate - C(t)|                   (capacity target)
loss = distortion + beta(t) * rate + (tc_beta - beta) * w(t) * TC   (beta-TCVAE)
Free bits replace each dimension's batch-mean KL by max(KL_j, lambda) in the loss
(the logged rate is always the true KL). `t` is training progress in epochs (fractional).
A multi-rate fit passes its beta to `loss` (`beta=`): one per minibatch, or one per item.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .errors import ConfigError
from .model import LossRecord
from .priors import log_normal

SCHEDULES = ("constant", "warmup", "cyclical")
TC_ESTIMATORS = ("mws", "mss")


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
    - `tc_beta`: beta-TCVAE (Chen et al. 2018). The rate KL = MI + TC + dimension-wise KL
      keeps weight beta except its total correlation, which gets `tc_beta`: the loss
      adds (tc_beta - beta) * TC, TC estimated on the minibatch with `tc_estimator`
      ("mws": minibatch-weighted sampling, "mss": minibatch-stratified sampling; both
      need the training set size). A warm-up or cycle scales the TC weight alike.
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
    tc_beta: float | None = None
    tc_estimator: str = "mws"

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
        if self.tc_beta is not None:
            if not self.tc_beta >= 0:
                raise ConfigError(f"tc_beta must be >= 0 (or None: off); got {self.tc_beta}.")
            if self.capacity is not None:
                raise ConfigError("tc_beta (beta-TCVAE) weighs the rate's parts against "
                                  "beta; it does not combine with a capacity target. Drop "
                                  "one of --tc-beta and --capacity.")
        if self.tc_estimator not in TC_ESTIMATORS:
            raise ConfigError(f"tc_estimator must be one of {TC_ESTIMATORS}; got "
                              f"{self.tc_estimator!r}.")

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

    def loss(self, record: LossRecord, t: float, *, dataset_size: int | None = None,
             beta: float | torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss for one minibatch (means over items)."""
        return self.loss_and_tc(record, t, dataset_size=dataset_size, beta=beta)[0]

    def loss_and_tc(self, record: LossRecord, t: float, *, dataset_size: int | None = None,
                    beta: float | torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss and, with `tc_beta`, the minibatch's TC estimate (else None).

        `beta` is a multi-rate fit's beta: one number for the minibatch, or a tensor of
        one per item, giving mean_i(D_i + beta_i R_i) (see `_combine_per_item` for free
        bits); the schedule scales it as it scales `self.beta`. `dataset_size` (the
        training items) is needed for the TC estimate.
        """
        factor = self.beta_at(t) / self.beta if self.capacity is None else 1.0
        if isinstance(beta, torch.Tensor):
            full: float | torch.Tensor = beta.to(record.kl_per_dim)
            loss = self._combine_per_item(record.distortion.mean(), record.kl_per_dim,
                                          full * factor)
            full = full.mean()
        else:
            weight = self.beta_at(t) if beta is None else beta * factor
            loss = self._combine(record.distortion.mean(), record.kl_per_dim.mean(dim=0),
                                 weight, self.capacity_at(t))
            full = self.beta if beta is None else beta
        if self.tc_beta is None:
            return loss, None
        if record.z is None or dataset_size is None:
            raise ConfigError("tc_beta needs the minibatch's z (LossRecord.z) and the "
                              "training set size (dataset_size=).")
        tc = minibatch_tc(record.z, record.mu, record.logvar, dataset_size, self.tc_estimator)
        return loss + (self.tc_beta - full) * factor * tc, tc.detach()

    def target_value(self, distortion: float, kl_per_dim: Any, beta: float | None = None
                     ) -> float:
        """The settled objective for mean distortion and KL per dimension (nats).

        It ranks validation epochs for the weights a fit keeps: the ELBO when beta = 1
        (a multi-rate fit passes the beta it validates at).
        """
        kl = torch.as_tensor(kl_per_dim, dtype=torch.float64)
        d = torch.tensor(float(distortion), dtype=torch.float64)
        return float(self._combine(d, kl, self.beta if beta is None else beta, self.capacity))

    def _combine(self, distortion: torch.Tensor, kl_dims: torch.Tensor, beta: float,
                 capacity: float | None) -> torch.Tensor:
        if self.free_bits > 0:
            kl_dims = torch.clamp(kl_dims, min=self.free_bits)
        rate = kl_dims.sum()
        if capacity is not None:
            return distortion + self.gamma * (rate - capacity).abs()
        return distortion + beta * rate

    def _combine_per_item(self, distortion: torch.Tensor, kl: torch.Tensor,
                          betas: torch.Tensor) -> torch.Tensor:
        """distortion + sum_j mean_i(beta_i KL_ij) for KL (n, d) and betas (n,).

        Free bits floor each dimension's beta-weighted KL at mean(beta) * free_bits: for
        equal betas this is beta * max(KL_j, free_bits), free bits at one beta.
        """
        weighted = (betas[:, None] * kl).mean(dim=0)
        if self.free_bits > 0:
            weighted = torch.clamp(weighted, min=betas.mean() * self.free_bits)
        return distortion + weighted.sum()

    def to_dict(self) -> dict[str, Any]:
        """As JSON; the TC settings only when the TC penalty is on, so a fit without it
        reads (and fingerprints) as it did before the option existed."""
        d = asdict(self)
        if self.tc_beta is None:
            del d["tc_beta"], d["tc_estimator"]
        return d


def minibatch_tc(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int,
                 estimator: str = "mws") -> torch.Tensor:
    """Total correlation KL(q(z) || prod_j q(z_j)) of the aggregate posterior, estimated
    on a minibatch of M samples z_i ~ q(z|x_i) out of N = `dataset_size` items (nats).

    q(z_i) is estimated from the batch's posteriors q(z_i|x_m) (Chen et al. 2018):
    "mws" (minibatch-weighted sampling) weighs every term 1/(N M); "mss" (minibatch-
    stratified sampling) weighs the item's own term 1/N and the others (N-1)/(N(M-1)).
    Marginals q(z_ij) likewise. MWS is what the beta-TCVAE paper trains with; its value
    carries an offset of (d - 1) log N (exactly that over MSS when N = M), a constant, so
    its gradients are the paper's. MSS is consistent as M grows: use it for the number.
    """
    m, d = z.shape
    n = max(int(dataset_size), m)
    per = log_normal(z[:, None, :], mu[None], logvar[None])  # (M, M, d): log q(z_ij|x_m)
    if estimator == "mws" or m < 2:
        log_w = torch.full((m, m), -math.log(n * m), dtype=z.dtype, device=z.device)
    else:
        log_w = torch.full((m, m), math.log((n - 1) / (n * (m - 1))), dtype=z.dtype,
                           device=z.device)
        log_w.fill_diagonal_(-math.log(n))
    log_qz = torch.logsumexp(per.sum(dim=2) + log_w, dim=1)
    log_marginals = torch.logsumexp(per + log_w[:, :, None], dim=1).sum(dim=1)
    return (log_qz - log_marginals).mean()

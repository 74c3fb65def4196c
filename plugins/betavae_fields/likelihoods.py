"""Decoder likelihoods for lattice fields: spins (+-1), angles (XY) and their checks.

* `spin`: independent Bernoulli per site on +-1 spins. Every site is drawn on its own
  given z, so nearest-neighbour correlations are missing and generated configurations
  have too-high energies.
* `spin_checkerboard`: the four sublattices of the square lattice (see
  `lattice.SUBLATTICE_ORDER`) are drawn one after another; a site's logit is a field from
  z plus a learned, periodic convolution of the spins already drawn, scaled by a gain
  from z (the effective coupling beta*J varies with temperature). For a nearest-neighbour
  model the second half of the sites are exactly independent given the first half, so
  this decoder can carry the energy, which lives on exactly those bonds.
* `von_mises`: angles on the circle, parameterised by the natural parameters
  kappa * (cos mu, sin mu), so the mean direction has no wrap-around seam.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from betavae_core.errors import ConfigError
from betavae_core.likelihoods import Likelihood

from .lattice import check_spins, lattice_size, sublattice_masks


def _item_sum(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).sum(dim=1)


def _draw_spins(logits: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.rand_like(logits) < torch.sigmoid(logits), 1.0, -1.0)


class SpinField:
    """Independent +-1 spins with P(s = +1) = sigmoid(logit), one distribution per item."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return _item_sum(F.logsigmoid(x * self.logits))

    @property
    def mean(self) -> torch.Tensor:
        return torch.tanh(0.5 * self.logits)

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            return _draw_spins(self.logits)


class Spin(Likelihood):
    """Factorised Bernoulli on +-1 spins (the baseline decoder)."""

    params_per_element = 1

    def __init__(self, event_shape: tuple[int, ...], **options: Any) -> None:
        super().__init__(event_shape, **options)
        lattice_size(self.event_shape)

    def check_data(self, x: torch.Tensor) -> None:
        super().check_data(x)
        check_spins(x, "spin")

    def distribution(self, params, context=None) -> SpinField:
        return SpinField(params[:, 0])


class CheckerboardSpins:
    """+-1 spins drawn sublattice by sublattice (see the module docstring).

    `field` (n, L, L) and `gain` (n, L, L) come from z; `kernels` (3, 1, k, k) are the
    learned couplings of sublattices 2-4 to the spins drawn before them.
    """

    def __init__(self, field: torch.Tensor, gain: torch.Tensor, kernels: torch.Tensor,
                 masks: torch.Tensor) -> None:
        self.field, self.gain, self.kernels, self.masks = field, gain, kernels, masks
        self.before = torch.cumsum(masks, dim=0) - masks  # sites filled before stage k

    def _coupling(self, x: torch.Tensor, stages: slice) -> torch.Tensor:
        """Conv of the spins filled before each stage in `stages` -> (n, stages, L, L)."""
        kernels = self.kernels[stages.start - 1: stages.stop - 1]
        inputs = x[:, None] * self.before[stages]
        pad = kernels.shape[-1] // 2
        padded = F.pad(inputs, (pad, pad, pad, pad), mode="circular")
        return F.conv2d(padded, kernels, groups=kernels.shape[0])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Conditional logit of every site given the sites of earlier sublattices in x."""
        coupling = (self._coupling(x, slice(1, 4)) * self.masks[1:]).sum(dim=1)
        return self.field + self.gain * coupling

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return _item_sum(F.logsigmoid(x * self.logits(x)))

    def _fill(self, draw) -> torch.Tensor:
        x = torch.zeros_like(self.field)
        for k in range(4):
            logit = self.field
            if k:
                logit = logit + self.gain * self._coupling(x, slice(k, k + 1))[:, 0]
            x = x + self.masks[k] * draw(logit)
        return x

    @property
    def mean(self) -> torch.Tensor:
        """Sublattice-by-sublattice mean field: each stage sees the earlier stages' means."""
        return self._fill(lambda logit: torch.tanh(0.5 * logit))

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            return self._fill(_draw_spins)


class CheckerboardSpin(Likelihood):
    """+-1 spins with learned neighbour couplings between sublattices (option `kernel`,
    the odd width of the coupling stencil, default 3: nearest and diagonal neighbours)."""

    params_per_element = 2

    def __init__(self, event_shape: tuple[int, ...], kernel: int = 3) -> None:
        super().__init__(event_shape, kernel=kernel)
        L = lattice_size(self.event_shape)
        if kernel < 1 or kernel % 2 == 0 or kernel > L:
            raise ConfigError(f"kernel must be an odd width between 1 and L={L}; got {kernel}.")
        self.kernels = nn.Parameter(torch.zeros(3, 1, kernel, kernel))
        self.register_buffer("masks", sublattice_masks(L), persistent=False)

    def check_data(self, x: torch.Tensor) -> None:
        super().check_data(x)
        check_spins(x, "spin_checkerboard")

    def distribution(self, params, context=None) -> CheckerboardSpins:
        gain = params[:, 1].clamp(-6.0, 4.0).exp()
        return CheckerboardSpins(params[:, 0], gain, self.kernels, self.masks)


class VonMisesField:
    """Independent angles with natural parameters (a, b) = kappa (cos mu, sin mu)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b
        self.kappa = torch.sqrt(a * a + b * b + 1e-8)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        log_i0 = torch.log(torch.special.i0e(self.kappa)) + self.kappa
        density = self.a * torch.cos(x) + self.b * torch.sin(x) - log_i0 - math.log(2 * math.pi)
        return _item_sum(density)

    @property
    def mean(self) -> torch.Tensor:
        """The mean direction mu in [-pi, pi]."""
        return torch.atan2(self.b, self.a)

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            draw = D.VonMises(self.mean, self.kappa, validate_args=False).sample()
            return torch.remainder(draw + math.pi, 2 * math.pi) - math.pi


class VonMises(Likelihood):
    """Von Mises per site, for angles in radians (any range; they are read mod 2 pi)."""

    params_per_element = 2

    def __init__(self, event_shape: tuple[int, ...], **options: Any) -> None:
        super().__init__(event_shape, **options)
        lattice_size(self.event_shape)

    def check_data(self, x: torch.Tensor) -> None:
        lattice_size(x.shape[1:])
        super().check_data(x)

    def distribution(self, params, context=None) -> VonMisesField:
        return VonMisesField(params[:, 0], params[:, 1])

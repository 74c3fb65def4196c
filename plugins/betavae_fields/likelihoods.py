"""Decoder likelihoods for lattice fields: spins (+-1), angles (XY) and their checks.

* `spin`: independent Bernoulli per site on +-1 spins. Every site is drawn on its own
  given z, so nearest-neighbour correlations are missing and generated configurations
  have too-high energies.
* `spin_multiscale`: the sites are drawn in stages, coarse to fine, by recursively
  splitting the lattice into checkerboards (see `lattice.multiscale_masks`); a site's
  logit is a field from z times a learned scale per stage, plus a learned, periodic
  convolution of the spins already drawn (dilated to the stage's spacing), scaled by a
  gain from z raised to a learned power per stage (the effective coupling beta*J varies
  with temperature, and the coarse stages' effective couplings vary differently). The
  per-stage field scale matters in the ordered phase: the coarsest sites have only the
  field to go on and need a strong one, the finest follow their neighbours and need
  almost none; with one field for every stage the coarse sites flipped 2.4x too often
  at T = 1.8 (a high-energy tail in generated configurations). At the finest level, for
  a nearest-neighbour model, half the sites are exactly independent given the other
  half, which carries
  every bond, so this decoder can reproduce the energy; the coarser levels give the
  other half its correlations too. Sampling takes 3 log2(L) + 1 passes, not L^2.
* `von_mises`: angles on the circle, parameterised by the natural parameters
  kappa * (cos mu, sin mu), so the mean direction has no wrap-around seam.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from betavae_core import ConfigError, Likelihood

from .lattice import check_spins, lattice_size, multiscale_masks


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

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__(event_shape)
        lattice_size(self.event_shape)

    def check_data(self, x: torch.Tensor) -> None:
        super().check_data(x)
        check_spins(x, "the spin likelihood")

    def distribution(self, params, context=None) -> SpinField:
        return SpinField(params[:, 0])


class MultiscaleSpins:
    """+-1 spins drawn stage by stage, coarse to fine (see `lattice.multiscale_masks`).

    `field` (n, L, L) and `gain` (n, L, L) come from z; `kernels` (stages - 1, 1, k, k)
    couple each stage to the spins drawn before it, through a convolution dilated by the
    spacing of the stage's level, wrapping around the torus.
    """

    def __init__(self, field: torch.Tensor, gain: torch.Tensor, kernels: torch.Tensor,
                 masks: torch.Tensor, spacings: list[int]) -> None:
        self.field, self.gain, self.kernels = field, gain, kernels
        self.masks, self.spacings = masks, spacings
        self.before = torch.cumsum(masks, dim=0) - masks  # sites filled before each stage

    def _coupling(self, x: torch.Tensor, first: int, count: int) -> torch.Tensor:
        """Dilated conv of the spins filled before stages first..first+count-1 (one level)
        -> (n, count, L, L)."""
        spacing = self.spacings[(first - 1) // 3]
        kernels = self.kernels[first - 1: first - 1 + count]
        inputs = x[:, None] * self.before[first: first + count]
        pad = spacing * (kernels.shape[-1] // 2)
        padded = F.pad(inputs, (pad, pad, pad, pad), mode="circular")
        return F.conv2d(padded, kernels, dilation=spacing, groups=count)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Conditional logit of every site given the sites of earlier stages in x."""
        coupling = torch.zeros_like(self.field)
        for level in range(len(self.spacings)):
            first = 1 + 3 * level
            part = self._coupling(x, first, 3) * self.masks[first: first + 3]
            coupling = coupling + part.sum(dim=1)
        return self.field + self.gain * coupling

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return _item_sum(F.logsigmoid(x * self.logits(x)))

    def _fill(self, draw) -> torch.Tensor:
        x = torch.zeros_like(self.field)
        for stage in range(len(self.masks)):
            logit = self.field
            if stage:
                logit = logit + self.gain * self._coupling(x, stage, 1)[:, 0]
            x = x + self.masks[stage] * draw(logit)
        return x

    @property
    def mean(self) -> torch.Tensor:
        """Stage-by-stage mean field: each stage sees the earlier stages' means."""
        return self._fill(lambda logit: torch.tanh(0.5 * logit))

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            return self._fill(_draw_spins)


class MultiscaleSpin(Likelihood):
    """+-1 spins with learned couplings to coarser and earlier sites.

    Options: `kernel`, the odd width of each stage's stencil (default 3: neighbours at the
    level's spacing); `levels`, how many levels, finest first, are drawn autoregressively
    (default 2; the sites of the coarsest grid are independent given z). Every level
    added lets the decoder model longer-range order without z, so fewer levels keep the
    order parameter in the latent space (see the README of the plugin). Learned, one
    per stage and starting at 1: `field_scales` weigh the field from z, `gain_powers`
    raise the gain from z to a power (coupling ~ gain ** power).
    """

    params_per_element = 2

    def __init__(self, event_shape: tuple[int, ...], kernel: int = 3, levels: int = 2) -> None:
        super().__init__(event_shape, kernel=kernel, levels=levels)
        L = lattice_size(self.event_shape)
        if kernel < 1 or kernel % 2 == 0 or kernel > L:
            raise ConfigError(f"kernel must be an odd width between 1 and L={L}; got {kernel}.")
        if int(levels) < 1:
            raise ConfigError(f"levels must be >= 1; got {levels}.")
        masks, self.spacings = multiscale_masks(L, int(levels))
        self.kernels = nn.Parameter(torch.zeros(len(masks) - 1, 1, kernel, kernel))
        self.field_scales = nn.Parameter(torch.ones(len(masks)))
        self.gain_powers = nn.Parameter(torch.ones(len(masks)))
        self.register_buffer("masks", masks, persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Weights saved before the per-stage scales existed load with every scale 1
        (the decoder they were trained as)."""
        for name in ("field_scales", "gain_powers"):
            state_dict.setdefault(prefix + name, torch.ones(len(self.masks)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _per_site(self, values: torch.Tensor) -> torch.Tensor:
        """One value per stage -> (L, L), each site taking its stage's."""
        return (values[:, None, None] * self.masks).sum(dim=0)

    def check_data(self, x: torch.Tensor) -> None:
        super().check_data(x)
        check_spins(x, "the spin_multiscale likelihood")

    def distribution(self, params, context=None) -> MultiscaleSpins:
        log_gain = params[:, 1].clamp(-6.0, 4.0) * self._per_site(self.gain_powers)
        gain = log_gain.clamp(-6.0, 4.0).exp()
        field = params[:, 0] * self._per_site(self.field_scales)
        return MultiscaleSpins(field, gain, self.kernels, self.masks, self.spacings)


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

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__(event_shape)
        lattice_size(self.event_shape)

    def check_data(self, x: torch.Tensor) -> None:
        lattice_size(x.shape[1:])
        super().check_data(x)

    def distribution(self, params, context=None) -> VonMisesField:
        return VonMisesField(params[:, 0], params[:, 1])

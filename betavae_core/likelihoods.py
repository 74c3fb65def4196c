"""Decoder likelihoods p(x | z): the base class plugins extend and the core's own ones.

Data are checked against the support once, by `check_data`, before a fit; distributions
are then built with `validate_args=False` so no minibatch pays for the check again.

A likelihood turns decoder output of shape (n, params_per_element, *event_shape) into a
`torch.distributions` object over one item, so `log_prob(x)` gives one value per item
(summed over the item's elements, in nats). Per-likelihood parameters that do not depend
on z (a Gaussian's per-feature scale, a count model's dispersion) live in the module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import distributions as D
from torch import nn

from .data import check_finite
from .errors import DataError


class Likelihood(nn.Module):
    """Base class of decoder likelihoods; subclasses set `params_per_element` and override
    `element_distribution` (and `check_data` when their support is restricted)."""

    params_per_element: int = 1

    def __init__(self, event_shape: tuple[int, ...], **options: Any) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.options = dict(options)

    def check_data(self, x: torch.Tensor) -> None:
        """Raise `DataError` naming the first item whose values are outside the support."""
        check_finite(x, "data")
        if tuple(x.shape[1:]) != self.event_shape:
            raise DataError(
                f"{type(self).__name__} expects items of shape {self.event_shape}; "
                f"got {tuple(x.shape[1:])}."
            )

    def element_distribution(
        self, params: torch.Tensor, context: dict[str, torch.Tensor] | None
    ) -> D.Distribution:
        """Distribution of each element: batch shape (n, ...), with everything after the
        item axis (batch dims and event dims alike) making up one item."""
        raise NotImplementedError

    def distribution(
        self, params: torch.Tensor, context: dict[str, torch.Tensor] | None = None
    ) -> D.Distribution:
        """p(x | z) for each item: an `Independent` over the item's elements."""
        expected = (self.params_per_element, *self.event_shape)
        if tuple(params.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__} needs decoder output of shape (n, {expected}); "
                f"got {tuple(params.shape)}. The architecture must emit "
                f"params_per_element={self.params_per_element} channels."
            )
        base = self.element_distribution(params, context)
        return D.Independent(base, len(base.batch_shape) - 1, validate_args=False)


def _first_bad_item(mask: torch.Tensor) -> tuple[int, int]:
    flat = mask.reshape(mask.shape[0], -1)
    row = int(torch.nonzero(flat.any(dim=1))[0, 0])
    return row, int(torch.nonzero(flat[row])[0, 0])


class Bernoulli(Likelihood):
    """Independent Bernoulli per element, for binary data (pixels, spins as 0/1)."""

    def check_data(self, x: torch.Tensor) -> None:
        super().check_data(x)
        bad = (x != 0) & (x != 1)
        if bad.any():
            row, col = _first_bad_item(bad)
            value = x.reshape(x.shape[0], -1)[row, col].item()
            raise DataError(
                f"the Bernoulli likelihood needs values in {{0, 1}}; item {row} holds "
                f"{value} at flat position {col}. Binarise the data, or choose the "
                f"gaussian likelihood (--likelihood gaussian)."
            )

    def element_distribution(self, params, context):
        return D.Bernoulli(logits=params[:, 0], validate_args=False)


class Gaussian(Likelihood):
    """Gaussian per element with a mean from the decoder and a scale that is either
    learned per element (default; independent of z, so it cannot blow up per item) or
    fixed (`scale=0.1`)."""

    def __init__(self, event_shape: tuple[int, ...], scale: float | None = None) -> None:
        super().__init__(event_shape, scale=scale)
        if scale is not None and not scale > 0:
            raise DataError(f"Gaussian scale must be > 0; got {scale}.")
        init = torch.zeros(self.event_shape) if scale is None else torch.full(
            self.event_shape, float(torch.log(torch.tensor(scale)))
        )
        self.log_scale = nn.Parameter(init, requires_grad=scale is None)

    def element_distribution(self, params, context):
        scale = self.log_scale.clamp(-7.0, 5.0).exp()
        return D.Normal(params[:, 0], scale.expand_as(params[:, 0]), validate_args=False)

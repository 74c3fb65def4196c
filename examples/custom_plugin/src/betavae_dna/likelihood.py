"""A one-hot categorical decoder likelihood: one choice among K letters per position.

Items are one-hot arrays (..., K) (K = 4 for DNA); the decoder emits one logit per
letter and position (params_per_element = 1, so decoder output is (n, 1, ..., K)), and
the likelihood normalises them over the last axis. Nothing in it is DNA-specific, so
it serves any fixed-length sequence over a small alphabet.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import distributions as D

from betavae_core import ConfigError, DataError, Likelihood


class OneHotCategorical(Likelihood):
    """Independent categorical per position over the last axis of the item."""

    params_per_element = 1

    def __init__(self, event_shape: tuple[int, ...], **options: Any) -> None:
        if options:
            raise ConfigError(f"the categorical likelihood takes no options; got "
                              f"{sorted(options)}.")
        super().__init__(event_shape)
        if len(self.event_shape) < 2 or self.event_shape[-1] < 2:
            raise ConfigError(
                f"the categorical likelihood needs items of shape (positions, letters) "
                f"with at least 2 letters, one-hot over the last axis; got items of shape "
                f"{self.event_shape}."
            )

    def check_data(self, x: torch.Tensor) -> None:
        """Raise `DataError` naming the first row and position that is not one-hot."""
        super().check_data(x)
        k = self.event_shape[-1]
        flat = x.reshape(x.shape[0], -1, k)
        binary = ((flat == 0) | (flat == 1)).all(dim=-1)
        bad = ~(binary & (flat.sum(dim=-1) == 1))
        if bad.any():
            row = int(torch.nonzero(bad.any(dim=1))[0, 0])
            pos = int(torch.nonzero(bad[row])[0, 0])
            values = [round(float(v), 4) for v in flat[row, pos]]
            shown = values if k <= 8 else f"values summing to {sum(values):g}"
            raise DataError(
                f"the categorical likelihood needs one-hot items (exactly one 1 per "
                f"position, the rest 0); item {row} holds {shown} at position {pos} "
                f"({int(bad.sum())} such positions in all). Encode the data as one-hot, "
                f"or choose another likelihood (--likelihood gaussian)."
            )

    def element_distribution(
        self, params: torch.Tensor, context: dict[str, torch.Tensor] | None
    ) -> D.Distribution:
        """OneHotCategorical with batch shape (n, positions...) and event shape (K,); the
        base class folds the positions into one item, so log_prob gives one value per
        item and `mean` gives per-position letter probabilities."""
        return D.OneHotCategorical(logits=params[:, 0])

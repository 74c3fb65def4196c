"""`DomainData`: the one object passed from a loader to the fit, evaluations and generation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .rows import RowSource, check_in_chunks


@dataclass
class DomainData:
    """Items of one domain as tensors, with what the later stages need to read them.

    Attributes:
        x: float tensor (n, *event_shape), one row per item, or a `RowSource` (sparse or
            on-disk rows, densified one minibatch at a time).
        domain: name of the domain ("shapes", "singlecell", ...).
        likelihood: name of the registered likelihood the domain suggests.
        covariates: optional float tensor (n, c) the encoder and decoder are conditioned
            on (batch one-hot, temperature, ...).
        context: optional per-item tensors (each with n rows) handed to the likelihood,
            e.g. an observed library size used as an offset.
        factors: optional ground-truth factors (n, k) for disentanglement metrics.
        factor_names: names of the k factors.
        factor_discrete: which factors are categorical.
        metadata: per-item columns (each of length n), e.g. labels or temperatures.
        attrs: dataset-level information, JSON-ready (feature names, source path, loader
            options); `attrs["image"] = True` marks 2-D items as images to plot.
        generator: name of the registered candidate generator for this domain.
        architecture: name of the registered architecture the domain suggests.
        defaults: training settings the domain suggests for this data (keys in
            `registry.DEFAULTABLE`, e.g. {"beta": 0.05, "epochs": 200}); the fit uses
            each one the user did not set.
    """

    x: torch.Tensor | RowSource
    domain: str
    likelihood: str = "gaussian"
    covariates: torch.Tensor | None = None
    context: dict[str, torch.Tensor] = field(default_factory=dict)
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] = ()
    factor_discrete: tuple[bool, ...] = ()
    metadata: dict[str, Sequence[Any]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    generator: str = "arrays"
    architecture: str = "mlp"
    defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.x, RowSource):
            self.x = torch.as_tensor(self.x, dtype=torch.float32)
        if self.x.ndim < 2:
            raise DataError(
                f"DomainData.x must have shape (n_items, *event_shape); got shape "
                f"{tuple(self.x.shape)}. Add an item axis, e.g. x[None] or x[:, None]."
            )
        if len(self) == 0:
            raise DataError(f"DomainData for domain {self.domain!r} holds no items.")
        n = len(self)
        if self.covariates is not None:
            self.covariates = torch.as_tensor(self.covariates, dtype=torch.float32)
            if self.covariates.ndim != 2 or self.covariates.shape[0] != n:
                raise DataError(
                    f"covariates must have shape ({n}, c); got {tuple(self.covariates.shape)}."
                )
        self.context = {k: torch.as_tensor(v) for k, v in self.context.items()}
        for key, value in self.context.items():
            if value.shape[0] != n:
                raise DataError(f"context[{key!r}] has {value.shape[0]} rows; expected {n}.")
        if self.factors is not None:
            self.factors = np.asarray(self.factors, dtype=np.float64)
            if self.factors.ndim != 2 or self.factors.shape[0] != n:
                raise DataError(
                    f"factors must have shape ({n}, k); got {self.factors.shape}."
                )
            k = self.factors.shape[1]
            if not self.factor_names:
                self.factor_names = tuple(f"factor_{i}" for i in range(k))
            if not self.factor_discrete:
                self.factor_discrete = (False,) * k
            if len(self.factor_names) != k or len(self.factor_discrete) != k:
                raise DataError(
                    f"factor_names and factor_discrete must each have {k} entries, one per "
                    f"factor column."
                )
        for key, column in self.metadata.items():
            if len(column) != n:
                raise DataError(f"metadata[{key!r}] has {len(column)} entries; expected {n}.")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one item, without the item axis."""
        return tuple(self.x.shape[1:])

    @property
    def covariate_dim(self) -> int:
        return 0 if self.covariates is None else int(self.covariates.shape[1])

    @property
    def has_factors(self) -> bool:
        return self.factors is not None

    def check_finite(self) -> None:
        """Raise `DataError` naming the first item (and position) that holds NaN or inf."""
        check_in_chunks(lambda block: check_finite(block, "x"), self.x)
        if self.covariates is not None:
            check_finite(self.covariates, "covariates")

    def subset(self, index: np.ndarray | torch.Tensor | Sequence[int]) -> DomainData:
        """Items at `index` (a new object; tensors are indexed, not copied needlessly)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        idx_np = idx.numpy()
        return DomainData(
            x=self.x.subset(idx_np) if isinstance(self.x, RowSource) else self.x[idx],
            domain=self.domain,
            likelihood=self.likelihood,
            covariates=None if self.covariates is None else self.covariates[idx],
            context={k: v[idx] for k, v in self.context.items()},
            factors=None if self.factors is None else self.factors[idx_np],
            factor_names=self.factor_names,
            factor_discrete=self.factor_discrete,
            metadata={k: _take(v, idx_np) for k, v in self.metadata.items()},
            attrs=dict(self.attrs),
            generator=self.generator,
            architecture=self.architecture,
            defaults=dict(self.defaults),
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for reports and `config.json`."""
        return {
            "domain": self.domain,
            "n_items": len(self),
            "event_shape": list(self.event_shape),
            "likelihood": self.likelihood,
            "covariate_dim": self.covariate_dim,
            "factors": list(self.factor_names),
            "generator": self.generator,
            "architecture": self.architecture,
        }


def _take(column: Sequence[Any], idx: np.ndarray) -> Sequence[Any]:
    if isinstance(column, (np.ndarray, torch.Tensor)):
        return column[idx]
    return [column[i] for i in idx]


def check_finite(values: torch.Tensor | np.ndarray, name: str) -> None:
    """Raise `DataError` naming the first row (and column) of `values` that is not finite."""
    t = torch.as_tensor(values)
    if not t.is_floating_point():
        return
    bad = ~torch.isfinite(t)
    if bad.any():
        flat = bad.reshape(bad.shape[0], -1)
        row = int(torch.nonzero(flat.any(dim=1))[0, 0])
        col = int(torch.nonzero(flat[row])[0, 0])
        value = t.reshape(t.shape[0], -1)[row, col].item()
        raise DataError(
            f"{name} holds a non-finite value ({value}) at row {row}, flat position {col} "
            f"({int(flat.sum())} non-finite values in all). Remove or impute them first."
        )

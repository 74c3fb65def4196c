"""What evaluations and generators hand back to the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EvaluationResult:
    """JSON-ready metrics and optional matplotlib figures (the core saves them as PNG)."""

    metrics: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class GeneratedSamples:
    """Prior draws decoded by a fitted model, handed to a generator plugin.

    `mean` and `sample` have shape (n, *event_shape); `params` is the raw decoder output
    (n, params_per_element, *event_shape), for generators that need more than the mean.
    `attrs` are the training data's attributes (feature names, vocabularies, ...).
    """

    z: torch.Tensor
    params: torch.Tensor
    mean: torch.Tensor
    sample: torch.Tensor
    covariates: torch.Tensor | None
    domain: str
    attrs: dict[str, Any]
    model: Any = None


@dataclass
class CandidateReport:
    """Domain objects made from generated samples and the validity funnel.

    `summary` is JSON-ready (counts per stage, rates); `files` lists what was written.
    """

    objects: Any
    summary: dict[str, Any]
    files: list[str] = field(default_factory=list)

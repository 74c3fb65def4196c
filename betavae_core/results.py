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
    """What the core prepared for a generator plugin (see `Generator.samples`).

    `n` items were asked for. `z` holds the prior draws (n, d) unless the generator draws
    its own; `mean` and `sample` (n, *event_shape) and `params`, the raw decoder output
    (n, params_per_element, *event_shape), are there only when the core decoded them.
    `covariates` are those the draws were decoded with. `attrs` are the training data's
    attributes (feature names, vocabularies, ...).
    """

    n: int
    z: torch.Tensor | None
    params: torch.Tensor | None
    mean: torch.Tensor | None
    sample: torch.Tensor | None
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

"""Synthetic data generators and small shipped data files, with provenance
(PROVENANCE.md): shapes images and mixed factors (numpy only), and single-cell counts
with known truth (numpy and scipy): cell types and batches (`synthetic_counts`), planted
differentially expressed genes (`simulate_de`, `true_lfc`, `planted`) and planted gene
programs (`planted_programs`).

The single-cell simulators are imported on first use, so `import betavae_datasets`
(which the core's shapes and factors datasets do) does not pull in scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

from .factors import MixedFactors, make_mixed_factors
from .shapes import ShapesData, make_shapes

_LAZY = {"synthetic_counts": "counts", "simulate_de": "de_counts", "true_lfc": "de_counts",
         "planted": "de_counts", "planted_programs": "programs", "ACTIVITIES": "programs"}

__all__ = ["ACTIVITIES", "MixedFactors", "ShapesData", "make_mixed_factors", "make_shapes",
           "planted", "planted_programs", "simulate_de", "synthetic_counts", "true_lfc"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

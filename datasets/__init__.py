"""Synthetic data generators and small shipped data files, with provenance."""

from .factors import MixedFactors, make_mixed_factors
from .shapes import ShapesData, make_shapes

__all__ = ["MixedFactors", "ShapesData", "make_mixed_factors", "make_shapes"]

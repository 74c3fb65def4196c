"""Synthetic data generators and small shipped data files, with provenance."""

from .shapes import ShapesData, make_shapes

__all__ = ["ShapesData", "make_shapes"]

"""Procedural dSprites-style shapes with known ground-truth factors of variation.

Each image is a single white shape (square, ellipse or triangle) on a black background.
The five generative factors are sampled independently and uniformly, so the data set is a
controlled test bed for disentanglement: a model's latents can be compared against factors
that are known exactly. Nothing is downloaded; see ``PROVENANCE.md``.

Factor conventions (columns of ``ShapesData.factors``):

* ``shape`` -- discrete, 0 = square, 1 = ellipse (2:1 axis ratio), 2 = equilateral triangle.
* ``scale`` -- continuous in ``[SCALE_MIN, SCALE_MAX)`` = ``[0.25, 0.55)``: the diameter of the
  shape's circumscribed circle as a fraction of the image side. The rendered shape therefore
  spans about 25%-55% of the image, whatever its rotation.
* ``rotation`` -- continuous in ``[0, pi/2)`` radians, counter-clockwise as displayed. The
  shapes have rotational symmetries: a square repeats every pi/2, so for squares the factor
  is cyclic (0 and pi/2 give the same image); an ellipse repeats every pi and a triangle every
  2*pi/3, so for them the range covers only part of a period and is not cyclic. No two
  distinct rotations in the range give the same image.
* ``pos_x``, ``pos_y`` -- continuous in ``[0, 1)``: the shape's centre as a fraction of the
  range of centres that keep the circumscribed circle inside the image (0 = touching the
  left/top edge, 1 = touching the right/bottom edge). Defined this way, position is
  independent of scale.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "rotation", "pos_x", "pos_y")
FACTOR_DISCRETE: tuple[bool, ...] = (True, False, False, False, False)
SHAPE_NAMES: tuple[str, ...] = ("square", "ellipse", "triangle")
SCALE_MIN: float = 0.25
SCALE_MAX: float = 0.55
ROTATION_MAX: float = np.pi / 2
ELLIPSE_AXIS_RATIO: float = 0.5  # minor / major semi-axis; makes rotation visible

_CHUNK = 1024  # items rasterised at once; bounds the temporary (chunk, size, size) arrays


@dataclass(frozen=True)
class ShapesData:
    """Images and their ground-truth generative factors.

    ``images`` is ``(n, size, size)`` float32 with values exactly 0.0 or 1.0; ``factors`` is
    ``(n, 5)`` float64 with columns named by ``factor_names``.
    """

    images: np.ndarray
    factors: np.ndarray
    factor_names: tuple[str, ...] = FACTOR_NAMES
    factor_discrete: tuple[bool, ...] = FACTOR_DISCRETE

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _as_int(value: object, name: str) -> int:
    """Return ``value`` as an int, rejecting bools and non-integers with a named error."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def _inside(kind: int, u: np.ndarray, v: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Point-in-shape test in the shape's own (un-rotated) frame.

    ``u``, ``v`` are pixel-centre offsets from the shape centre, already inverse-rotated;
    ``radius`` (broadcastable) is the circumscribed radius in pixels.
    """
    if kind == 0:  # square with circumradius ``radius``
        half = radius / np.sqrt(2.0)
        return np.maximum(np.abs(u), np.abs(v)) <= half
    if kind == 1:  # ellipse: major semi-axis along u
        minor = radius * ELLIPSE_AXIS_RATIO
        return (u / radius) ** 2 + (v / minor) ** 2 <= 1.0
    # Equilateral triangle with circumradius ``radius``, apex towards -v (up on screen):
    # inside all three half-planes whose outward normals point away from the vertices,
    # at distance inradius = radius / 2.
    inr = radius / 2.0
    s = np.sqrt(3.0) / 2.0
    return (v <= inr) & (s * u - 0.5 * v <= inr) & (-s * u - 0.5 * v <= inr)


def _rasterise(
    kind: int,
    radius: np.ndarray,
    rotation: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    size: int,
) -> np.ndarray:
    """Render items of one shape class as a boolean ``(m, size, size)`` array."""
    grid = np.arange(size, dtype=np.float64) + 0.5  # pixel centres
    r = radius[:, None, None]
    dx = grid[None, None, :] - cx[:, None, None]
    dy = grid[None, :, None] - cy[:, None, None]
    # Image y points down, so a counter-clockwise on-screen rotation by theta maps shape
    # coordinates (u, v) to (u cos + v sin, -u sin + v cos); invert it here.
    c = np.cos(rotation)[:, None, None]
    s = np.sin(rotation)[:, None, None]
    u = c * dx - s * dy
    v = s * dx + c * dy
    mask = _inside(kind, u, v, r)
    # The centre is always inside the shape; lighting its pixel guarantees a non-empty image
    # even for tiny shapes on small canvases (a no-op at the default size).
    rows = np.minimum(cy.astype(np.int64), size - 1)
    cols = np.minimum(cx.astype(np.int64), size - 1)
    mask[np.arange(len(cx)), rows, cols] = True
    return mask


def make_shapes(n: int = 6000, size: int = 28, seed: int = 0) -> ShapesData:
    """Generate ``n`` binary ``size`` x ``size`` shape images with independent uniform factors.

    Deterministic: the same ``(n, size, seed)`` gives identical arrays. Raises ``ValueError``
    if ``n < 1`` or ``size < 8``.
    """
    n = _as_int(n, "n")
    size = _as_int(size, "size")
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got size={size}")

    rng = np.random.default_rng(seed)
    shape = rng.integers(0, len(SHAPE_NAMES), size=n)
    scale = rng.uniform(SCALE_MIN, SCALE_MAX, size=n)
    rotation = rng.uniform(0.0, ROTATION_MAX, size=n)
    pos_x = rng.uniform(0.0, 1.0, size=n)
    pos_y = rng.uniform(0.0, 1.0, size=n)

    radius = scale * size / 2.0  # circumscribed radius in pixels
    travel = size - 2.0 * radius  # range of centres keeping the circle inside the image
    cx = radius + pos_x * travel
    cy = radius + pos_y * travel

    images = np.zeros((n, size, size), dtype=np.float32)
    for kind in range(len(SHAPE_NAMES)):
        idx = np.flatnonzero(shape == kind)
        for start in range(0, idx.size, _CHUNK):
            sel = idx[start : start + _CHUNK]
            images[sel] = _rasterise(kind, radius[sel], rotation[sel], cx[sel], cy[sel], size)

    factors = np.stack([shape.astype(np.float64), scale, rotation, pos_x, pos_y], axis=1)
    return ShapesData(images=images, factors=factors)

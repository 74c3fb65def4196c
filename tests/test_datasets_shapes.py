"""Tests for the procedural shapes data set: determinism, format and factor semantics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from betavae_datasets.shapes import make_shapes

SIZE = 28


@pytest.fixture(scope="module")
def data():
    """One moderately sized sample shared by the property tests."""
    return make_shapes(n=3000, size=SIZE, seed=123)


def _col(d, name: str) -> np.ndarray:
    return d.factors[:, d.factor_names.index(name)]


def test_shapes_dtypes_and_metadata(data) -> None:
    assert data.images.shape == (3000, SIZE, SIZE)
    assert data.images.dtype == np.float32
    assert data.factors.shape == (3000, 5)
    assert data.factors.dtype == np.float64
    assert data.factor_names == ("shape", "scale", "rotation", "pos_x", "pos_y")
    assert data.factor_discrete == (True, False, False, False, False)
    assert len(data) == 3000


def test_defaults() -> None:
    d = make_shapes()
    assert d.images.shape == (6000, 28, 28)
    assert d.factors.shape == (6000, 5)


def test_images_are_binary(data) -> None:
    assert set(np.unique(data.images).tolist()) == {0.0, 1.0}


def test_every_image_has_lit_pixels(data) -> None:
    lit = data.images.reshape(len(data), -1).sum(axis=1)
    assert lit.min() >= 8
    assert lit.max() < SIZE * SIZE / 2


def test_small_canvas_never_empty() -> None:
    d = make_shapes(n=500, size=8, seed=1)
    assert d.images.reshape(500, -1).sum(axis=1).min() >= 1


def test_deterministic_for_same_seed() -> None:
    a = make_shapes(n=200, size=SIZE, seed=7)
    b = make_shapes(n=200, size=SIZE, seed=7)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.factors, b.factors)


def test_different_seeds_differ() -> None:
    a = make_shapes(n=200, size=SIZE, seed=7)
    b = make_shapes(n=200, size=SIZE, seed=8)
    assert not np.array_equal(a.factors, b.factors)
    assert not np.array_equal(a.images, b.images)


def test_factor_ranges(data) -> None:
    shape = _col(data, "shape")
    assert set(np.unique(shape).tolist()) == {0.0, 1.0, 2.0}
    scale = _col(data, "scale")
    assert scale.min() >= 0.25 and scale.max() < 0.55
    rot = _col(data, "rotation")
    assert rot.min() >= 0.0 and rot.max() < np.pi / 2
    for name in ("pos_x", "pos_y"):
        pos = _col(data, name)
        assert pos.min() >= 0.0 and pos.max() < 1.0
        # Uniform sampling should cover the range.
        assert pos.min() < 0.05 and pos.max() > 0.95


def test_shape_classes_roughly_balanced(data) -> None:
    counts = np.bincount(_col(data, "shape").astype(int), minlength=3)
    assert counts.size == 3
    assert np.all(np.abs(counts / len(data) - 1 / 3) < 0.05)


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_lit_area_grows_with_scale(data, kind: int) -> None:
    mask = _col(data, "shape") == kind
    area = data.images[mask].reshape(mask.sum(), -1).sum(axis=1)
    rho = spearmanr(_col(data, "scale")[mask], area).statistic
    assert rho > 0.8


def test_shape_classes_have_distinct_areas(data) -> None:
    """At equal circumradius a square covers more area than an ellipse, which beats a triangle."""
    area = data.images.reshape(len(data), -1).sum(axis=1)
    norm = area / (_col(data, "scale") * SIZE / 2) ** 2  # area / circumradius^2
    means = [norm[_col(data, "shape") == k].mean() for k in range(3)]
    # Analytic ratios: square 2, ellipse (2:1) pi/2, triangle 3*sqrt(3)/4.
    np.testing.assert_allclose(means, [2.0, np.pi / 2, 3 * np.sqrt(3) / 4], rtol=0.1)


def test_shapes_stay_inside_image(data) -> None:
    """Lit area matches the analytic area, so no shape is clipped by the image border."""
    area = data.images.reshape(len(data), -1).sum(axis=1)
    r2 = (_col(data, "scale") * SIZE / 2) ** 2
    ratio = np.array([2.0, np.pi / 2, 3 * np.sqrt(3) / 4])[_col(data, "shape").astype(int)]
    expected = ratio * r2
    # Clipping would remove a large fraction of area for shapes near the border.
    edge = (np.minimum(_col(data, "pos_x"), 1 - _col(data, "pos_x")) < 0.02) | (
        np.minimum(_col(data, "pos_y"), 1 - _col(data, "pos_y")) < 0.02
    )
    assert edge.sum() > 50
    rel = area[edge] / expected[edge]
    assert rel.min() > 0.6
    assert abs(np.median(rel) - 1.0) < 0.1


def test_center_of_mass_tracks_position(data) -> None:
    img = data.images
    mass = img.sum(axis=(1, 2))
    coords = np.arange(SIZE) + 0.5
    com_x = (img.sum(axis=1) * coords).sum(axis=1) / mass
    com_y = (img.sum(axis=2) * coords).sum(axis=1) / mass
    assert np.corrcoef(com_x, _col(data, "pos_x"))[0, 1] > 0.95
    assert np.corrcoef(com_y, _col(data, "pos_y"))[0, 1] > 0.95
    # x and y are not confused with each other.
    assert abs(np.corrcoef(com_x, _col(data, "pos_y"))[0, 1]) < 0.1


def test_rotation_matches_ellipse_orientation() -> None:
    """The ellipse's major axis, from image second moments, follows the rotation factor."""
    d = make_shapes(n=3000, size=SIZE, seed=5)
    mask = _col(d, "shape") == 1
    img = d.images[mask]
    coords = np.arange(SIZE) + 0.5
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    m = img.sum(axis=(1, 2))
    mx = (img * xs).sum(axis=(1, 2)) / m
    my = (img * ys).sum(axis=(1, 2)) / m
    cxx = (img * (xs - mx[:, None, None]) ** 2).sum(axis=(1, 2)) / m
    cyy = (img * (ys - my[:, None, None]) ** 2).sum(axis=(1, 2)) / m
    cxy = (img * (xs - mx[:, None, None]) * (ys - my[:, None, None])).sum(axis=(1, 2)) / m
    # Major-axis angle, counter-clockwise on screen (image y points down).
    angle = 0.5 * np.arctan2(-2 * cxy, cxx - cyy)
    rot = _col(d, "rotation")[mask]
    err = np.abs(angle - rot)
    assert np.median(err) < 0.15


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"n": -3}, "n"),
        ({"size": 7}, "size"),
        ({"size": 0}, "size"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, name: str) -> None:
    value = next(iter(kwargs.values()))
    with pytest.raises(ValueError, match=rf"{name}.*{value}"):
        make_shapes(**kwargs)


@pytest.mark.parametrize("kwargs", [{"n": 2.5}, {"size": "28"}, {"n": True}])
def test_non_integer_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        make_shapes(**kwargs)

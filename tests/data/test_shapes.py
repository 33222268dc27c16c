import jax.numpy as jnp
import pytest

from impl.data import make_shapes
from impl.data.shapes import COLOURS, POSITIONS, SHAPES, caption


def test_shapes_arrays_have_documented_shapes_and_ranges():
    s = make_shapes(0, 24, size=32)
    assert s.images.shape == (24, 32, 32, 3) and s.images.dtype == jnp.float32
    assert s.masks.shape == (24, 32, 32, 1) and s.edges.shape == (24, 32, 32, 1)
    assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
    assert set(jnp.unique(s.masks).tolist()) <= {0.0, 1.0}
    assert set(jnp.unique(s.edges).tolist()) <= {0.0, 1.0}
    for labels, count in (
        (s.shape, len(SHAPES)),
        (s.colour, len(COLOURS)),
        (s.position, len(POSITIONS)),
    ):
        assert labels.dtype == jnp.int32 and int(labels.min()) >= 0 and int(labels.max()) < count


def test_shapes_are_deterministic_given_key():
    a, b, c = make_shapes(5, 8), make_shapes(5, 8), make_shapes(6, 8)
    assert jnp.array_equal(a.images, b.images)
    assert not jnp.array_equal(a.images, c.images)


def test_shapes_masks_edges_and_pixels_agree():
    s = make_shapes(1, 32, size=32, noise=0.0)
    area = s.masks.sum(axis=(1, 2, 3))
    assert bool(jnp.all(area > 10))  # every shape covers pixels
    assert bool(jnp.all(s.edges <= s.masks))  # edges lie on the shape
    assert bool(jnp.all(s.edges.sum(axis=(1, 2, 3)) < area))  # and are thinner than it
    colours = jnp.asarray(list(COLOURS.values()), dtype=jnp.float32)[s.colour]  # [n, 3]
    inside = s.images * s.masks  # shape pixels carry exactly the caption's colour
    mean_inside = inside.sum(axis=(1, 2)) / s.masks.sum(axis=(1, 2))
    assert jnp.allclose(mean_inside, colours, atol=1e-5)


def test_shape_sits_in_its_named_position():
    s = make_shapes(2, 64, size=48)
    ys, xs = jnp.meshgrid(jnp.arange(48.0), jnp.arange(48.0), indexing="ij")
    m = s.masks[..., 0]
    cy = (m * ys[None]).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
    cx = (m * xs[None]).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
    assert jnp.array_equal(
        (cy // 16).astype(jnp.int32) * 3 + (cx // 16).astype(jnp.int32), s.position
    )


def test_captions_name_colour_shape_and_position():
    s = make_shapes(3, 4)
    assert len(s.captions) == 4
    assert caption(0, 0, 0) == "a red circle, top left"
    assert caption(2, 2, 8) == "a blue triangle, bottom right"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n: expected a positive integer"),
        ({"size": 8}, "size: expected at least 12"),
        ({"min_radius": 0.0}, "min_radius"),
        ({"max_radius": 0.5}, "max_radius"),
        ({"noise": 0.9}, "noise"),
    ],
)
def test_shapes_reject_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_shapes(0, **{"n": 4, **kwargs})

"""Procedural shapes: a coloured circle, square or triangle at one of nine positions.

Each sample comes with everything the vision topics need: the RGB image, the binary
segmentation mask (U-Net), the edge map (ControlNet), integer labels for shape, colour and
position (classification, CLIP), and an English caption such as ``"a red circle, top left"``
(text-to-image). All of it is drawn with ``jax.numpy`` from one PRNG key, vectorised with ``vmap``.

Shapes (``size`` = image side):
    images ``float32[n, size, size, 3]`` in ``[0, 1]``; masks and edges
    ``float32[n, size, size, 1]`` in ``{0, 1}``; ``shape``, ``colour``, ``position`` are
    ``int32[n]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks

__all__ = ["COLOURS", "POSITIONS", "SHAPES", "Shapes", "caption", "make_shapes"]

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (0.90, 0.20, 0.20),
    "green": (0.20, 0.75, 0.30),
    "blue": (0.20, 0.40, 0.95),
    "yellow": (0.95, 0.85, 0.20),
}
# Row-major 3x3 grid of named positions; (row, column) of the cell centre in [0, 1].
POSITIONS = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip


class Shapes(NamedTuple):
    """A batch of drawn shapes; see the module docstring for shapes."""

    images: jax.Array
    masks: jax.Array
    edges: jax.Array
    shape: jax.Array
    colour: jax.Array
    position: jax.Array

    @property
    def captions(self) -> list[str]:
        """One caption per sample, e.g. ``"a blue triangle, bottom right"``."""
        return [
            caption(int(s), int(c), int(p))
            for s, c, p in zip(self.shape, self.colour, self.position)
        ]


def caption(shape: int, colour: int, position: int) -> str:
    """The English caption for integer labels."""
    return f"a {list(COLOURS)[colour]} {SHAPES[shape]}, {POSITIONS[position]}"


def _draw_one(
    key, size: int, shape, colour, position, min_radius: float, max_radius: float, noise: float
):
    """Rasterise one sample. Returns ``(image [s,s,3], mask [s,s,1], edges [s,s,1])``."""
    k_jitter, k_radius, k_noise = jax.random.split(key, 3)
    row, col = position // 3, position % 3
    cell_centre = (jnp.stack([row, col]).astype(jnp.float32) + 0.5) / 3.0
    jitter = jax.random.uniform(k_jitter, (2,), minval=-0.06, maxval=0.06)
    cy, cx = (cell_centre + jitter) * size
    r = jax.random.uniform(k_radius, (), minval=min_radius, maxval=max_radius) * size
    yy, xx = jnp.meshgrid(jnp.arange(size) + 0.5, jnp.arange(size) + 0.5, indexing="ij")
    dy, dx = yy - cy, xx - cx
    circle = dx**2 + dy**2 <= r**2
    square = (jnp.abs(dx) <= 0.85 * r) & (jnp.abs(dy) <= 0.85 * r)
    # Upward triangle: below the two slanted edges and above the base.
    triangle = (dy <= 0.75 * r) & (2 * jnp.abs(dx) - dy <= 1.25 * r) & (dy >= -r)
    mask = jnp.select([shape == 0, shape == 1], [circle, square], triangle).astype(jnp.float32)
    # Edge = mask minus its 4-neighbour erosion (pad with zeros so borders count as outside).
    padded = jnp.pad(mask, 1)
    eroded = jnp.minimum(
        jnp.minimum(padded[:-2, 1:-1], padded[2:, 1:-1]),
        jnp.minimum(padded[1:-1, :-2], padded[1:-1, 2:]),
    )
    edges = mask * (1.0 - eroded)
    rgb = jnp.asarray(np.array(list(COLOURS.values()), dtype=np.float32))[colour]
    background = 0.1 + noise * jax.random.normal(k_noise, (size, size, 3))
    image = jnp.where(mask[..., None] > 0, rgb, background)
    return jnp.clip(image, 0.0, 1.0), mask[..., None], edges[..., None]


def make_shapes(
    key: jax.Array | int,
    n: int = 256,
    *,
    size: int = 32,
    min_radius: float = 0.10,
    max_radius: float = 0.15,
    noise: float = 0.02,
) -> Shapes:
    """Draw ``n`` random shapes.

    Args:
        key: PRNG key or int seed; the same key always draws the same images.
        n: number of samples.
        size: image side in pixels (at least 12, so a shape covers a few pixels).
        min_radius: smallest shape radius as a fraction of ``size``, in ``(0, 1/6]``.
        max_radius: largest radius, in ``[min_radius, 1/6]``, so a shape stays inside its
            cell of the 3x3 grid.
        noise: standard deviation of the background's pixel noise, in ``[0, 0.5]``.
    """
    key = checks.prng_key("key", key)
    checks.positive_int("n", n)
    checks.positive_int("size", size)
    if size < 12:
        raise ValueError(f"size: expected at least 12 pixels, got {size}")
    checks.in_range("min_radius", min_radius, 0.0, 1 / 6, low_inclusive=False)
    checks.in_range("max_radius", max_radius, min_radius, 1 / 6)
    checks.in_range("noise", noise, 0.0, 0.5)
    k_shape, k_colour, k_pos, k_draw = jax.random.split(key, 4)
    shape = jax.random.randint(k_shape, (n,), 0, len(SHAPES), dtype=jnp.int32)
    colour = jax.random.randint(k_colour, (n,), 0, len(COLOURS), dtype=jnp.int32)
    position = jax.random.randint(k_pos, (n,), 0, len(POSITIONS), dtype=jnp.int32)
    keys = jax.random.split(k_draw, n)
    draw = jax.vmap(_draw_one, in_axes=(0, None, 0, 0, 0, None, None, None))
    images, masks, edges = jax.jit(draw, static_argnums=1)(
        keys, size, shape, colour, position, min_radius, max_radius, noise
    )
    return Shapes(images, masks, edges, shape, colour, position)

"""5.1 GAN — a generator and a discriminator trained against each other.

Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville & Bengio, *Generative
adversarial nets*, Advances in Neural Information Processing Systems 27 (NeurIPS 2014).
https://arxiv.org/abs/1406.2661

The idea: to learn to sample from a distribution without ever writing down its density, train
two networks in a game. The generator ``G`` maps noise ``z`` to a sample; the discriminator
``D`` outputs the probability that its input came from the data rather than from ``G``. ``D``
is trained to tell the two apart, ``G`` to fool it. At the game's equilibrium ``G``'s samples
are distributed as the data and ``D`` outputs 1/2 everywhere (the paper's Theorem 1). Both
players are plain networks trained by backpropagation: no Markov chain, no inference network.

Section 3 of the paper notes that ``G``'s minimax loss ``log(1 - D(G(z)))`` *saturates*: early
on, when ``D`` rejects ``G``'s samples with confidence, its gradient vanishes. Maximising
``log D(G(z))`` instead has the same fixed point and strong gradients early; both are here
(:func:`generator_loss`). Section 7 adds that a *conditional* model ``p(x | c)`` follows from
giving ``c`` to both players; the optional one-hot ``c`` below does exactly that.

Layout: pure functions (:func:`generator`, :func:`discriminator`, the losses); `init_player`
declares either player's parameters (a list of dense layers, topic 1.1's tree);
`LinenGenerator`/`NnxGenerator` and `LinenDiscriminator`/`NnxDiscriminator` hold them. The
training step (Algorithm 1), the tasks and the figure are in `impl.generation.gan_experiment`.

Shapes: noise ``z float32[batch, z_dim]``; condition ``c float32[batch, n_classes]`` (one-hot)
or ``None``; samples ``x float32[batch, d_data]`` (a 2-D point, or a flattened 8x8 digit);
discriminator logits ``float32[batch]`` (``D(x) = sigmoid(logit)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.deep_networks.dnn import dense, init_mlp
from impl.optimization.relu import leaky_relu, relu, softplus

__all__ = [
    "GENERATOR_LOSSES",
    "OUTPUTS",
    "LinenDiscriminator",
    "LinenGenerator",
    "NnxDiscriminator",
    "NnxGenerator",
    "discriminator",
    "discriminator_loss",
    "generator",
    "generator_loss",
    "init_player",
]

Layer = dict[str, jax.Array]
OUTPUTS = ("linear", "sigmoid")  # generator output: free 2-D points, or pixels in (0, 1)
GENERATOR_LOSSES = ("saturating", "non_saturating")
_SLOPE = 0.2  # leaky ReLU slope of the discriminator's hidden layers


def _with_condition(x: jax.Array, c: jax.Array | None) -> jax.Array:
    """``x [batch, d]`` and a one-hot ``c [batch, n_classes]`` -> ``[batch, d + n_classes]``."""
    return x if c is None else jnp.concatenate([x, c.astype(x.dtype)], axis=-1)


# --8<-- [start:core]
def generator(
    params: Sequence[Layer], z: jax.Array, c=None, *, output: str = "linear"
) -> jax.Array:
    """``G(z | c)``: ReLU hidden layers, then a linear output (2-D points) or a sigmoid
    (pixels in (0, 1)). ``z [b, z_dim]``, ``c [b, n_classes]`` or ``None`` -> ``[b, d_data]``."""
    h = _with_condition(z, c)  # [b, z_dim (+ n_classes)]
    for layer in params[:-1]:
        h = relu(dense(layer, h))  # [b, hidden]
    x = dense(params[-1], h)  # [b, d_data]
    return jax.nn.sigmoid(x) if output == "sigmoid" else x


def discriminator(params: Sequence[Layer], x: jax.Array, c=None) -> jax.Array:
    """The logit of ``D(x | c)``, the probability that ``x`` is data: leaky-ReLU hidden layers,
    one linear output unit. ``x [b, d_data]`` -> ``[b]``."""
    h = _with_condition(x, c)  # [b, d_data (+ n_classes)]
    for layer in params[:-1]:
        h = leaky_relu(dense(layer, h), _SLOPE)  # [b, hidden]
    return dense(params[-1], h)[:, 0]  # [b]


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """``-V(D, G)`` of eq. 1, which ``D`` minimises:
    ``-E[log D(x)] - E[log(1 - D(G(z)))]``, with ``-log sigmoid(l) = softplus(-l)`` and
    ``-log(1 - sigmoid(l)) = softplus(l)`` (stable for any logit). ``[b], [b]`` -> scalar."""
    return jnp.mean(softplus(-real_logits)) + jnp.mean(softplus(fake_logits))


def generator_loss(fake_logits: jax.Array, kind: str = "non_saturating") -> jax.Array:
    """What ``G`` minimises, from ``D``'s logits on its samples ``[b]`` -> scalar.

    * ``"saturating"`` — the minimax game of eq. 1: ``E[log(1 - D(G(z)))] = -E[softplus(l)]``.
      Its gradient in the logit is ``-sigmoid(l)``: when ``D`` rejects the samples
      (``l -> -inf``) it vanishes.
    * ``"non_saturating"`` — section 3's fix: ``-E[log D(G(z))] = E[softplus(-l)]``, gradient
      ``-sigmoid(-l) -> -1`` in the same place. Same fixed point, strong early gradients.
    """
    check_kind(kind)
    if kind == "saturating":
        return -jnp.mean(softplus(fake_logits))
    return jnp.mean(softplus(-fake_logits))


# --8<-- [end:core]


def init_player(key: jax.Array, sizes: Sequence[int]) -> list[Layer]:
    """Either player's parameters for ``sizes = [d_in, hidden..., d_out]``: topic 1.1's list
    of dense layers. ``d_in`` counts the condition: ``z_dim + n_classes`` for ``G``,
    ``d_data + n_classes`` for ``D``; ``d_out`` is ``d_data`` for ``G`` and 1 for ``D``."""
    return init_mlp(key, sizes)


# ---------------------------------------------------------------------------------------
# Argument checks (before any compute).
# ---------------------------------------------------------------------------------------
def check_sizes(name: str, sizes: Sequence[int]) -> None:
    """``sizes`` holds at least an input and an output size, each a positive integer."""
    if isinstance(sizes, str) or not isinstance(sizes, Sequence) or len(sizes) < 2:
        raise ValueError(
            f"{name}: expected [d_in, hidden..., d_out] (at least 2 sizes), got {sizes!r}"
        )
    for i, s in enumerate(sizes):
        checks.positive_int(f"{name}[{i}]", s)


def check_inputs(name: str, x, c, d_in: int | None = None) -> None:
    """``x [batch, d]`` and an optional one-hot ``c [batch, n_classes]``; together ``d_in`` wide."""
    checks.array_shape(name, x, ("batch", "features"))
    width = x.shape[1]
    if c is not None:
        checks.array_shape(
            "c", c, (x.shape[0], "n_classes"), dims=f"[{x.shape[0]}, n_classes] (one-hot)"
        )
        width += c.shape[1]
    if d_in is not None and width != d_in:
        what = f"{name} ({x.shape[1]})" + (f" + c ({c.shape[1]})" if c is not None else "")
        raise ValueError(f"{name}: the player expects {d_in} input features, got {what} = {width}")


def check_kind(kind: str) -> str:
    """The generator loss: one of `GENERATOR_LOSSES`."""
    return checks.one_of("kind", kind, GENERATOR_LOSSES)


# --8<-- [start:linen]
class LinenGenerator(nn.Module):
    """Functional twin of ``G``: ``init(key, z, c=None)`` returns ``{"params": {"layers": ...}}``
    — the tree `generator` takes. ``features = [hidden..., d_data]``; the input width is read
    from ``z`` (and ``c``) at ``init``."""

    features: Sequence[int]
    output: str = "linear"

    @nn.compact
    def __call__(self, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        checks.one_of("output", self.output, OUTPUTS)
        check_inputs("z", z, c)
        sizes = [z.shape[1] + (0 if c is None else c.shape[1]), *self.features]
        check_sizes("features", sizes)
        layers = self.param("layers", init_player, sizes)  # [{"kernel", "bias"}, ...]
        return generator(layers, z, c, output=self.output)


class LinenDiscriminator(nn.Module):
    """Functional twin of ``D``: ``features = [hidden...]``, then one output logit."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array | None = None) -> jax.Array:
        check_inputs("x", x, c)
        sizes = [x.shape[1] + (0 if c is None else c.shape[1]), *self.features, 1]
        check_sizes("features", sizes)
        layers = self.param("layers", init_player, sizes)
        return discriminator(layers, x, c)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxGenerator(nnx.Module):
    """Object-oriented twin of ``G``: ``sizes = [z_dim + n_classes, hidden..., d_data]``;
    ``self.layers`` holds the same tree as Linen's ``params["layers"]``."""

    def __init__(self, sizes: Sequence[int], *, output: str = "linear", rngs: nnx.Rngs):
        check_sizes("sizes", sizes)
        self.output = checks.one_of("output", output, OUTPUTS)
        self.layers = twins.to_nnx(init_player(rngs.params(), sizes))

    def __call__(self, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        layers = twins.pure(self.layers)
        check_inputs("z", z, c, layers[0]["kernel"].shape[0])
        return generator(layers, z, c, output=self.output)


class NnxDiscriminator(nnx.Module):
    """Object-oriented twin of ``D``: ``sizes = [d_data + n_classes, hidden...]`` (the output
    unit is added)."""

    def __init__(self, sizes: Sequence[int], *, rngs: nnx.Rngs):
        if isinstance(sizes, str) or not isinstance(sizes, Sequence):
            raise TypeError(f"sizes: expected [d_in, hidden...], got {sizes!r}")
        check_sizes("sizes", [*sizes, 1])
        self.layers = twins.to_nnx(init_player(rngs.params(), [*sizes, 1]))

    def __call__(self, x: jax.Array, c: jax.Array | None = None) -> jax.Array:
        layers = twins.pure(self.layers)
        check_inputs("x", x, c, layers[0]["kernel"].shape[0])
        return discriminator(layers, x, c)


# --8<-- [end:nnx]

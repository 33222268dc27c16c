"""5.2 VAE and VQ-VAE — a latent code learned by variational inference, then made discrete.

Kingma & Welling, *Auto-encoding variational Bayes*, ICLR 2014 (arXiv 2013).
https://arxiv.org/abs/1312.6114
van den Oord, Vinyals & Kavukcuoglu, *Neural discrete representation learning*, NeurIPS 2017.
https://arxiv.org/abs/1711.00937

The idea: an encoder ``q(z|x)`` proposes a Gaussian over latent codes for an image, a decoder
``p(x|z)`` maps a code back to pixel probabilities, and both are trained together by maximising
the *evidence lower bound* (ELBO): the expected log-likelihood of the image under codes drawn
from ``q``, minus the KL divergence from ``q`` to the prior ``N(0, I)``. Drawing
``z = mean + sigma * eps`` with ``eps ~ N(0, I)`` (the *reparameterisation trick*) makes the
sample a differentiable function of the encoder's outputs, so one backward pass trains both.

The VQ-VAE replaces the Gaussian by a lookup: the encoder emits ``T`` vectors, each is replaced
by its nearest entry of a learned *codebook* of ``K`` vectors, and the decoder sees only those
entries — so an image becomes ``T`` integers, the tokens that topic 5.6 (DALL·E) models. The
argmin has no gradient; the *straight-through estimator* copies the decoder's gradient from the
quantised vectors onto the encoder's, a *codebook loss* pulls each used code toward the vectors
it replaced, and a *commitment loss* keeps the encoder close to its codes.

Layout: pure functions hold the math; `init_vae`, `init_codebook` and `init_vqvae` declare the
parameter trees; `LinenVAE`/`NnxVAE`, `LinenVectorQuantizer`/`NnxVectorQuantizer` and
`LinenVQVAE`/`NnxVQVAE` hold them and call the same functions. Encoders and decoders are 1.1's
one-hidden-layer tanh MLPs (the paper's Appendix C). The experiment lives in
`impl.generation.vae_experiment`.

Shapes: images ``float32[batch, H, W, C]`` in ``[0, 1]`` (the digits: ``[batch, 8, 8, 1]``);
VAE codes ``[batch, Z]``; VQ-VAE encoder outputs and quantised vectors ``[batch, T, D]``, tokens
``int32[batch, T]``, codebook ``[K, D]``; decoder logits ``[batch, H, W, C]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from impl import checks, twins
from impl.deep_networks.cnn import check_images
from impl.deep_networks.dnn import dense, init_layer, init_mlp, mlp

__all__ = [
    "DIGIT_SHAPE",
    "Elbo",
    "LinenVAE",
    "LinenVQVAE",
    "LinenVectorQuantizer",
    "NnxVAE",
    "NnxVQVAE",
    "NnxVectorQuantizer",
    "Quantized",
    "bernoulli_log_likelihood",
    "codebook_usage",
    "decode_from_indices",
    "elbo",
    "encode_to_indices",
    "gaussian_kl",
    "init_codebook",
    "init_vae",
    "init_vqvae",
    "interpolate",
    "quantize",
    "reparameterize",
    "vae",
    "vae_decode",
    "vae_encode",
    "vq_decode",
    "vq_encode",
    "vqvae",
    "vqvae_loss",
]

DIGIT_SHAPE = (8, 8, 1)  # the digits of `impl.data.digits`, NHWC without the batch
Layer = dict[str, jax.Array]


class Elbo(NamedTuple):
    """The ELBO of each image and its two terms, in nats: ``elbo = reconstruction - kl``, each
    ``[batch]``."""

    elbo: jax.Array  # [batch]
    reconstruction: jax.Array  # [batch]: log p(x|z) at one sample z ~ q(z|x)
    kl: jax.Array  # [batch]: KL(q(z|x) || N(0, I)), analytic


class Quantized(NamedTuple):
    """What `quantize` returns.

    Attributes:
        z_q: ``[..., D]`` the nearest codes, passed straight through: equal to the codes in the
            forward pass, with the gradient of ``z`` (identity) in the backward pass.
        indices: ``int32[...]`` which code each vector took.
        codebook_loss: scalar, mean over vectors of ``||sg[z] - e||^2`` (trains the codebook only).
        commitment_loss: scalar, mean over vectors of ``||z - sg[e]||^2`` (trains the encoder only).
    """

    z_q: jax.Array
    indices: jax.Array
    codebook_loss: jax.Array
    commitment_loss: jax.Array


# --8<-- [start:vae]
def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """``z = mean + sigma * eps``, ``eps ~ N(0, I)`` (section 2.4): a sample of ``q(z|x)`` that is a
    differentiable function of ``mean`` and ``log_var`` (each ``[batch, Z]``). ``-> [batch, Z]``."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)  # [batch, Z]: all the randomness
    return mean + jnp.exp(0.5 * log_var) * eps


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """``KL(N(mean, sigma^2) || N(0, I))`` per example, in nats (Appendix B).
    ``[batch, Z] -> [batch]``."""
    return -0.5 * jnp.sum(1.0 + log_var - mean**2 - jnp.exp(log_var), axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, images: jax.Array) -> jax.Array:
    """``log p(x|z)`` of a Bernoulli decoder (Appendix C.1), summed over pixels, in nats.

    ``x log p + (1 - x) log(1 - p)`` with ``p = sigmoid(logits)``, written as
    ``x * logits - softplus(logits)`` for stability. For grey pixels ``x in [0, 1]`` it is the
    expected log-likelihood of a binarised image ``b ~ Bernoulli(x)``.
    ``logits, images [batch, H, W, C] -> [batch]``.
    """
    per_pixel = images * logits - jax.nn.softplus(logits)  # [batch, H, W, C]
    return jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=-1)


def vae_encode(params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``q(z|x)`` (Appendix C.2): ``images [b, H, W, C] -> (mean, log_var)``, each ``[b, Z]``."""
    _check_images(images, params["encoder"]["kernel"].shape[0])
    h = jnp.tanh(dense(params["encoder"], images.reshape(images.shape[0], -1)))  # [batch, hidden]
    return dense(params["mean"], h), dense(params["log_var"], h)


def vae_decode(params: dict, z: jax.Array, image_shape: Sequence[int] = DIGIT_SHAPE) -> jax.Array:
    """``p(x|z)``: codes ``[b, Z] -> logits [b, *image_shape]``; their sigmoid is the pixels."""
    return _unflatten(mlp(params["decoder"], z), image_shape)


def vae(params: dict, images: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Encode, sample a code, decode: ``-> (logits [b, H, W, C], mean [b, Z], log_var [b, Z])``."""
    mean, log_var = vae_encode(params, images)
    z = reparameterize(key, mean, log_var)  # [batch, Z]
    return vae_decode(params, z, images.shape[1:]), mean, log_var


def elbo(params: dict, images: jax.Array, key: jax.Array) -> Elbo:
    """The ELBO of each image from one sample (section 2.3's estimator with the KL term analytic,
    eq. 10): ``E_q[log p(x|z)] - KL(q(z|x) || p(z))``. ``-> Elbo`` of ``[batch]`` arrays."""
    logits, mean, log_var = vae(params, images, key)
    reconstruction = bernoulli_log_likelihood(logits, images)  # [batch]
    kl = gaussian_kl(mean, log_var)  # [batch]
    return Elbo(reconstruction - kl, reconstruction, kl)


def interpolate(z_a: jax.Array, z_b: jax.Array, steps: int) -> jax.Array:
    """``steps`` evenly spaced points on the segment from ``z_a`` to ``z_b`` (``[batch, Z]`` each),
    both ends included: ``-> [steps, batch, Z]``."""
    checks.positive_int("steps", steps)
    if steps < 2:
        raise ValueError(f"steps: expected at least 2 points (the two ends), got {steps}")
    t = jnp.linspace(0.0, 1.0, steps, dtype=z_a.dtype).reshape(-1, 1, 1)  # [steps, 1, 1]
    return (1.0 - t) * z_a[None] + t * z_b[None]


# --8<-- [end:vae]


# --8<-- [start:vq]
def quantize(codebook: jax.Array, z: jax.Array) -> Quantized:
    """Replace each vector of ``z [..., D]`` by its nearest code in ``codebook [K, D]`` (eq. 1–2).

    Returns a `Quantized`: ``z_q [..., D]`` through the straight-through estimator,
    ``indices int32[...]``, and the codebook and commitment losses of eq. 3 (scalars).
    """
    _check_codebook(codebook)
    _check_vectors(z, codebook.shape[1])
    flat = z.reshape(-1, z.shape[-1])  # [N, D]
    distances = (  # [N, K]: ||z||^2 - 2 z.e + ||e||^2
        jnp.sum(flat**2, axis=-1, keepdims=True)
        - 2.0 * flat @ codebook.T
        + jnp.sum(codebook**2, axis=-1)[None, :]
    )
    indices = jnp.argmin(distances, axis=-1).astype(jnp.int32)  # [N]: eq. 1
    codes = codebook[indices]  # [N, D]: eq. 2, z_q = e_k
    sg = jax.lax.stop_gradient
    codebook_loss = jnp.mean(jnp.sum((sg(flat) - codes) ** 2, axis=-1))  # eq. 3, 2nd term
    commitment_loss = jnp.mean(jnp.sum((flat - sg(codes)) ** 2, axis=-1))  # eq. 3, 3rd term
    z_q = flat + sg(codes - flat)  # forward: the codes; backward: the identity to z
    return Quantized(
        z_q.reshape(z.shape), indices.reshape(z.shape[:-1]), codebook_loss, commitment_loss
    )


def codebook_usage(indices: jax.Array, n_codes: int) -> tuple[jax.Array, jax.Array]:
    """How evenly ``indices`` (``int[...]``, values in ``0..n_codes-1``) use the codebook.

    Returns ``(perplexity, dead_codes)``: ``exp`` of the entropy of the codes' frequencies (1 if
    one code takes everything, ``n_codes`` if all are used equally) and how many are never used.
    """
    checks.positive_int("n_codes", n_codes)
    counts = jnp.bincount(indices.reshape(-1), length=n_codes)  # [K]
    p = counts / jnp.maximum(jnp.sum(counts), 1)  # [K]
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.exp(entropy), jnp.sum(counts == 0)


def vq_encode(params: dict, images: jax.Array) -> jax.Array:
    """The encoder ``z_e(x)``: ``images [batch, H, W, C] -> [batch, T, D]`` (D: the code width)."""
    _check_images(images, params["encoder"][0]["kernel"].shape[0])
    z = mlp(params["encoder"], images.reshape(images.shape[0], -1))  # [batch, T * D]
    return z.reshape(images.shape[0], -1, params["codebook"].shape[1])


def vq_decode(params: dict, z_q: jax.Array, image_shape: Sequence[int] = DIGIT_SHAPE) -> jax.Array:
    """The decoder ``p(x|z_q)``: ``z_q [batch, T, D] -> logits [batch, *image_shape]``."""
    return _unflatten(mlp(params["decoder"], z_q.reshape(z_q.shape[0], -1)), image_shape)


def vqvae(params: dict, images: jax.Array) -> tuple[jax.Array, Quantized]:
    """Encode, quantise, decode: ``images [b, H, W, C] -> (logits [b, H, W, C], Quantized)``."""
    q = quantize(params["codebook"], vq_encode(params, images))
    return vq_decode(params, q.z_q, images.shape[1:]), q


def vqvae_loss(params: dict, images: jax.Array, *, beta: float = 0.25) -> tuple[jax.Array, dict]:
    """Eq. 3, batch mean: ``-log p(x|z_q) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2``.

    The reconstruction term is `bernoulli_log_likelihood` (nats per image); ``beta`` weighs the
    commitment loss (0.25 in the paper).
    ``-> (loss, {"reconstruction", "codebook", "commitment"})``.
    """
    checks.in_range("beta", beta, 0.0, math.inf)
    logits, q = vqvae(params, images)
    reconstruction = jnp.mean(bernoulli_log_likelihood(logits, images))
    loss = -reconstruction + q.codebook_loss + beta * q.commitment_loss
    return loss, {
        "reconstruction": reconstruction,
        "codebook": q.codebook_loss,
        "commitment": q.commitment_loss,
    }


def encode_to_indices(params: dict, images: jax.Array) -> jax.Array:
    """The tokenizer: ``images [batch, H, W, C] -> int32[batch, T]``, each a code in ``0..K-1``."""
    return quantize(params["codebook"], vq_encode(params, images)).indices


def decode_from_indices(
    params: dict, indices: jax.Array, image_shape: Sequence[int] = DIGIT_SHAPE
) -> jax.Array:
    """Tokens back to images: ``int[batch, T] -> [batch, *image_shape]``, pixel probabilities."""
    d_code = params["codebook"].shape[1]
    n_tokens = params["decoder"][0]["kernel"].shape[0] // d_code
    checks.array_shape("indices", indices, ("batch", n_tokens), dims=f"[batch, {n_tokens}]")
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"indices: expected integer token ids, got {indices.dtype}")
    return jax.nn.sigmoid(vq_decode(params, params["codebook"][indices], image_shape))


# --8<-- [end:vq]


def _check_vectors(z, d_code: int) -> None:
    """``z`` must be ``[..., D]``: at least one leading axis, then the codebook's width."""
    if not hasattr(z, "shape") or not hasattr(z, "dtype"):
        raise TypeError(f"z: expected an array [..., {d_code}], got {type(z).__name__}")
    if z.ndim < 2 or z.shape[-1] != d_code:
        raise ValueError(
            f"z: expected shape [..., {d_code}] (the codebook's width last), got {tuple(z.shape)}"
        )


def _unflatten(flat: jax.Array, image_shape: Sequence[int]) -> jax.Array:
    shape = tuple(image_shape)
    if math.prod(shape) != flat.shape[-1] or len(shape) != 3:
        raise ValueError(
            f"image_shape: expected (H, W, C) with H*W*C = {flat.shape[-1]} pixels, got {shape}"
        )
    return flat.reshape(flat.shape[0], *shape)


def _check_images(images, n_pixels: int | None = None, *, shape: tuple | None = None) -> None:
    check_images("images", images)
    if shape is not None and tuple(images.shape[1:]) != shape:
        dims = f"[batch, {', '.join(map(str, shape))}]"
        raise ValueError(f"images: expected shape {dims}, got {tuple(images.shape)}")
    if n_pixels is not None and math.prod(images.shape[1:]) != n_pixels:
        raise ValueError(
            f"images: expected [batch, H, W, C] with H*W*C = {n_pixels} pixels, "
            f"got shape {tuple(images.shape)}"
        )


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(image_shape)
    if len(shape) != 3:
        raise ValueError(f"image_shape: expected (H, W, C), got {shape}")
    for name, value in zip(("H", "W", "C"), shape):
        checks.positive_int(f"image_shape {name}", value)
    return shape


def _check_codebook(codebook) -> None:
    checks.array_shape("codebook", codebook, ("K", "D"), dims="[K, D]")
    if codebook.shape[0] == 0 or codebook.shape[1] == 0:
        raise ValueError(
            f"codebook: expected [K, D] with K, D > 0, got shape {tuple(codebook.shape)}"
        )


# --8<-- [start:init]
def init_vae(key: jax.Array, image_shape: Sequence[int], d_hidden: int, d_latent: int) -> dict:
    """The VAE's tree, each layer 1.1's ``{"kernel", "bias"}`` (``P = H * W * C`` pixels):
    ``{"encoder": [P, hidden], "mean", "log_var": [hidden, Z], "decoder": [Z, hidden, P]}``."""
    pixels = math.prod(_check_image_shape(image_shape))
    checks.positive_int("d_hidden", d_hidden)
    checks.positive_int("d_latent", d_latent)
    k = jax.random.split(key, 4)
    return {
        "encoder": init_layer(k[0], pixels, d_hidden),
        "mean": init_layer(k[1], d_hidden, d_latent),
        "log_var": init_layer(k[2], d_hidden, d_latent),
        "decoder": init_mlp(k[3], [d_latent, d_hidden, pixels]),
    }


def init_codebook(key: jax.Array, n_codes: int, d_code: int) -> jax.Array:
    """``[K, D]`` codes drawn from ``N(0, 1)``."""
    checks.positive_int("n_codes", n_codes)
    checks.positive_int("d_code", d_code)
    return jax.random.normal(key, (n_codes, d_code))


def init_vqvae(
    key: jax.Array,
    image_shape: Sequence[int],
    d_hidden: int,
    n_tokens: int,
    d_code: int,
    n_codes: int,
) -> dict:
    """The VQ-VAE's tree:
    ``{"encoder": [P, hidden, T * D], "codebook": [K, D], "decoder": [T * D, hidden, P]}``."""
    pixels = math.prod(_check_image_shape(image_shape))
    checks.positive_int("d_hidden", d_hidden)
    checks.positive_int("n_tokens", n_tokens)
    k = jax.random.split(key, 3)
    codebook = init_codebook(k[1], n_codes, d_code)
    return {
        "encoder": init_mlp(k[0], [pixels, d_hidden, n_tokens * d_code]),
        "codebook": codebook,
        "decoder": init_mlp(k[2], [n_tokens * d_code, d_hidden, pixels]),
    }


# --8<-- [end:init]


# --8<-- [start:linen]
class LinenVAE(nn.Module):
    """``apply(variables, images, key) -> (logits [b, H, W, C], mean [b, Z], log_var [b, Z])``.

    ``variables["params"]`` is `init_vae`'s tree; ``init`` reads the image shape from ``images``.
    """

    d_hidden: int = 128
    d_latent: int = 16

    @nn.compact
    def __call__(self, images: jax.Array, key: jax.Array):
        _check_images(images)
        params = twins.declare(self, init_vae, images.shape[1:], self.d_hidden, self.d_latent)
        return vae(params, images, key)


class LinenVectorQuantizer(nn.Module):
    """``apply(variables, z [..., D]) -> Quantized``; its params: ``{"codebook": [K, D]}``."""

    n_codes: int
    d_code: int

    @nn.compact
    def __call__(self, z: jax.Array) -> Quantized:
        codebook = self.param("codebook", init_codebook, self.n_codes, self.d_code)  # [K, D]
        return quantize(codebook, z)


class LinenVQVAE(nn.Module):
    """``apply(variables, images) -> (logits [b, H, W, C], Quantized)``; ``variables["params"]``
    is `init_vqvae`'s tree."""

    d_hidden: int = 128
    n_tokens: int = 16
    d_code: int = 4
    n_codes: int = 32

    @nn.compact
    def __call__(self, images: jax.Array):
        _check_images(images)
        params = twins.declare(
            self,
            init_vqvae,
            images.shape[1:],
            self.d_hidden,
            self.n_tokens,
            self.d_code,
            self.n_codes,
        )
        return vqvae(params, images)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxVAE(nnx.Module):
    """``model(images, key) -> (logits [b, H, W, C], mean [b, Z], log_var [b, Z])``; one attribute
    per entry of `init_vae`'s tree."""

    def __init__(
        self, image_shape=DIGIT_SHAPE, d_hidden: int = 128, d_latent: int = 16, *, rngs: nnx.Rngs
    ):
        self.image_shape = tuple(image_shape)
        for name, entry in init_vae(rngs.params(), image_shape, d_hidden, d_latent).items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, images: jax.Array, key: jax.Array):
        _check_images(images, shape=self.image_shape)
        return vae(twins.pure(self), images, key)


class NnxVectorQuantizer(nnx.Module):
    """``model(z [..., D]) -> Quantized``; ``self.codebook`` is an ``nnx.Param`` ``[K, D]``."""

    def __init__(self, n_codes: int, d_code: int, *, rngs: nnx.Rngs):
        self.codebook = twins.to_nnx(init_codebook(rngs.params(), n_codes, d_code))

    def __call__(self, z: jax.Array) -> Quantized:
        return quantize(twins.pure(self)["codebook"], z)


class NnxVQVAE(nnx.Module):
    """``model(images) -> (logits [b, H, W, C], Quantized)``; one attribute per entry of
    `init_vqvae`'s tree."""

    def __init__(
        self,
        image_shape=DIGIT_SHAPE,
        d_hidden: int = 128,
        n_tokens: int = 16,
        d_code: int = 4,
        n_codes: int = 32,
        *,
        rngs: nnx.Rngs,
    ):
        self.image_shape = tuple(image_shape)
        tree = init_vqvae(rngs.params(), image_shape, d_hidden, n_tokens, d_code, n_codes)
        for name, entry in tree.items():
            setattr(self, name, twins.to_nnx(entry))

    def __call__(self, images: jax.Array):
        _check_images(images, shape=self.image_shape)
        return vqvae(twins.pure(self), images)


# --8<-- [end:nnx]

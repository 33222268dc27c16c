"""Judges shared by the image-generation topics 5.1–5.6: how good, and how varied, are samples?

A generative model is not scored by its own loss (a GAN has no likelihood at all), so section 5
judges samples from the outside, the same way on every page:

* **Digits.** A small CNN of topic 1.2, trained once on the canonical digits split
  (`impl.data.digits.load_digits(seed=0)`) and then frozen, is the *judge*: its predicted class
  says which digit a sample looks like (class accuracy for a class-conditional model; the
  judge's confidence and class histogram for an unconditional one), and its penultimate layer
  gives the features in which the Fréchet distance is measured. This is the recipe of the FID
  (Heusel et al. 2017, arXiv:1706.08500) with our judge in place of Inception: the numbers are
  comparable across the pages of this site, not with published FIDs.
* **2-D mixtures.** On a ring or grid of Gaussians the modes are known, so coverage can be
  *counted*: :func:`mixture_modes` follows the counting of Metz et al. 2016 (unrolled GAN,
  arXiv:1611.02163) and Srivastava et al. 2017 (VEEGAN, arXiv:1705.07761).

Experiments import this module; model files do not (a model must not depend on its judge).

Shapes: digit images ``float32[n, 8, 8, 1]`` in ``[0, 1]`` (``float32[n, 64]`` accepted);
points ``float32[n, 2]``; centres ``float32[k, 2]``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data
from impl.deep_networks.cnn import cnn, conv2d, init_cnn, max_pool
from impl.deep_networks.dnn import cross_entropy, dense
from impl.optimization.adam import adam
from impl.training import train

__all__ = [
    "JUDGE_CHANNELS",
    "JUDGE_HIDDEN",
    "DigitsJudge",
    "as_digit_images",
    "digit_scores",
    "digits_judge",
    "frechet_distance",
    "grid_centres",
    "grid_mixture",
    "judge_features",
    "judge_logits",
    "mixture_modes",
    "ring_centres",
    "sample_grid",
]

JUDGE_CHANNELS = (16, 32)  # two conv + pool blocks: 8x8 -> 4x4 -> 2x2
JUDGE_HIDDEN = 64  # width of the penultimate layer = the Fréchet features
_JUDGE_STEPS = 800
_JUDGE_SEED = 0
_DIGITS_DIMS = "[n, 8, 8, 1] or [n, 64]"


class DigitsJudge(NamedTuple):
    """A fixed digits classifier: ``params`` of `impl.deep_networks.cnn.cnn` and its accuracy
    on the test split of ``load_digits(seed=0)``."""

    params: dict
    test_accuracy: float


# ---------------------------------------------------------------------------------------
# The digits judge.
# ---------------------------------------------------------------------------------------
def as_digit_images(name: str, images) -> jax.Array:
    """``images`` as ``float32[n, 8, 8, 1]``; ``[n, 64]`` is reshaped, anything else raises."""
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise TypeError(f"{name}: expected an array {_DIGITS_DIMS}, got {type(images).__name__}")
    shape = tuple(images.shape)
    if len(shape) == 2 and shape[1] == 64:
        images = jnp.reshape(images, (shape[0], 8, 8, 1))
    elif len(shape) != 4 or shape[1:] != (8, 8, 1):
        raise ValueError(f"{name}: expected digit images {_DIGITS_DIMS}, got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got shape {shape}")
    return jnp.asarray(images, jnp.float32)


def _features(params: dict, x: jax.Array) -> jax.Array:
    """The judge's penultimate layer: the body of `cnn` up to (and including) its tanh hidden
    layer. ``x [n, 8, 8, 1] -> [n, JUDGE_HIDDEN]``; ``dense(params["out"], ·)`` of it is `cnn`."""
    for layer in params["convs"]:
        x = max_pool(jnp.tanh(conv2d(x, layer["kernel"], layer["bias"], padding="SAME")), 2)
    return jnp.tanh(dense(params["hidden"], x.reshape(x.shape[0], -1)))


def _judge_loss(params, batch, key):
    del key
    return cross_entropy(cnn(params, batch["x"]), batch["y"])


@functools.cache
def digits_judge() -> DigitsJudge:
    """Train the judge once per process (fixed key, deterministic): a 1.2 CNN with
    ``JUDGE_CHANNELS`` and a ``JUDGE_HIDDEN``-unit hidden layer, Adam (lr 3e-3), 800 steps of
    64 on the training split of ``load_digits(seed=0)``; a few seconds on a CPU."""
    digits = data.load_digits(as_images=True, seed=0)
    key = jax.random.key(_JUDGE_SEED, impl="rbg")
    k_init, k_train = jax.random.split(key)
    params = init_cnn(k_init, (8, 8, 1), JUDGE_CHANNELS, JUDGE_HIDDEN)
    batches = {"x": digits.x_train, "y": digits.y_train}
    result = train(
        _judge_loss,
        params,
        adam(3e-3),
        batches,
        key=k_train,
        steps=_JUDGE_STEPS,
        batch_size=64,
        chunk=_JUDGE_STEPS // 2,
        progress=False,
        label="digits judge",
    )
    logits = cnn(result.params, jnp.asarray(digits.x_test))
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == digits.y_test))
    return DigitsJudge(result.params, accuracy)


_logits_jit = jax.jit(cnn)
_features_jit = jax.jit(_features)


def judge_logits(judge: DigitsJudge, images) -> jax.Array:
    """The judge's logits ``[n, 10]`` for ``images`` ``[n, 8, 8, 1]`` (or ``[n, 64]``) in [0, 1]."""
    return _logits_jit(judge.params, as_digit_images("images", images))


def judge_features(judge: DigitsJudge, images) -> jax.Array:
    """The judge's penultimate features ``[n, JUDGE_HIDDEN]`` for ``images`` (as `judge_logits`)."""
    return _features_jit(judge.params, as_digit_images("images", images))


# --8<-- [start:frechet]
def frechet_distance(feats_a, feats_b) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets ``[n_a, F]``, ``[n_b, F]``:

    $$d^2 = \lVert\mu_a-\mu_b\rVert^2
          + \operatorname{Tr}\bigl(\Sigma_a+\Sigma_b-2(\Sigma_a\Sigma_b)^{1/2}\bigr).$$

    Computed in float64 with symmetric eigendecompositions only, through
    $\operatorname{Tr}(\Sigma_a\Sigma_b)^{1/2}
    = \operatorname{Tr}(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}$: the matrix on the right
    is symmetric positive semi-definite, so its trace root is the sum of the square roots of its
    eigenvalues (clipped at 0) — no general matrix square root, no complex round-off.
    Covariances use ``n - 1``; the result is clipped at 0.
    """
    a = np.asarray(feats_a, np.float64)
    b = np.asarray(feats_b, np.float64)
    for name, f in (("feats_a", a), ("feats_b", b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name}: expected features [n, F] with n >= 2, got shape {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError(f"{name}: expected finite features, got NaN or inf")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_b: expected {a.shape[1]} features like feats_a, got {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False, ddof=1), np.cov(b, rowvar=False, ddof=1)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # Σa^½
    middle = root_a @ cov_b @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_root = np.sum(np.sqrt(np.clip(eig, 0.0, None)))
    d2 = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root
    return float(max(d2, 0.0))


# --8<-- [end:frechet]


@functools.cache
def _reference_features() -> tuple[np.ndarray, float]:
    """The default judge's test-split features and their Fréchet distance to the training split."""
    return _features_of_test(digits_judge())


def digit_scores(images, labels=None, *, judge: DigitsJudge | None = None) -> dict:
    """Score digit samples with the judge (default: :func:`digits_judge`).

    Returns a dict of floats:
        ``class_accuracy`` (only when ``labels`` ``int[n]`` are given: the share of samples the
        judge assigns to the class they were generated for), ``confidence`` (the mean of the
        judge's largest class probability), ``class_histogram`` (a list of 10 shares of the
        judge's predicted classes), ``frechet`` (Fréchet distance in judge features to the test
        split of ``load_digits(seed=0)``; use at least a few hundred samples) and
        ``frechet_test_vs_train`` (the same distance from the test split to the training
        split: the floor a perfect sampler would reach, up to sample size).
    """
    x = as_digit_images("images", images)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (x.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels: expected int[{x.shape[0]}], got {labels.dtype}{labels.shape}"
            )
    if judge is None:
        judge = digits_judge()
        test_feats, floor = _reference_features()
    else:
        test_feats, floor = _features_of_test(judge)
    logits = judge_logits(judge, x)
    probs = np.asarray(jax.nn.softmax(logits, -1), np.float64)
    predicted = probs.argmax(-1)
    scores = {}
    if labels is not None:
        scores["class_accuracy"] = float(np.mean(predicted == labels))
    scores["confidence"] = float(probs.max(-1).mean())
    scores["class_histogram"] = (np.bincount(predicted, minlength=10) / len(predicted)).tolist()
    scores["frechet"] = frechet_distance(np.asarray(judge_features(judge, x)), test_feats)
    scores["frechet_test_vs_train"] = floor
    return scores


def _features_of_test(judge: DigitsJudge) -> tuple[np.ndarray, float]:
    digits = data.load_digits(as_images=True, seed=0)
    test = np.asarray(judge_features(judge, digits.x_test))
    return test, frechet_distance(test, np.asarray(judge_features(judge, digits.x_train)))


# ---------------------------------------------------------------------------------------
# 2-D mixtures of Gaussians: centres, a grid sampler, and mode counting.
# ---------------------------------------------------------------------------------------
def ring_centres(n_modes: int = 8, radius: float = 2.0) -> jax.Array:
    """``[n_modes, 2]`` centres evenly spaced on a circle, first at angle 0 — the centres of
    `impl.data.points.gaussian_mixture` with the same arguments."""
    checks.positive_int("n_modes", n_modes)
    checks.in_range("radius", radius, 0.0, 100.0, low_inclusive=False)
    angles = 2 * jnp.pi * jnp.arange(n_modes) / n_modes
    return (radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)).astype(jnp.float32)


def grid_centres(side: int = 5, spacing: float = 2.0) -> jax.Array:
    """``[side**2, 2]`` centres on a ``side x side`` grid centred at the origin (row-major):
    for the defaults, every pair of ``{-4, -2, 0, 2, 4}``."""
    checks.positive_int("side", side)
    checks.in_range("spacing", spacing, 0.0, 100.0, low_inclusive=False)
    ticks = (jnp.arange(side) - (side - 1) / 2) * spacing
    gx, gy = jnp.meshgrid(ticks, ticks, indexing="ij")
    return jnp.stack([gx.ravel(), gy.ravel()], axis=1).astype(jnp.float32)


def grid_mixture(
    key, n: int = 1000, side: int = 5, spacing: float = 2.0, std: float = 0.05
) -> tuple[jax.Array, jax.Array]:
    """``n`` points from ``side**2`` equally likely Gaussians (std ``std``) on `grid_centres`.

    Returns ``(x float32[n, 2], component int32[n])``; components are assigned round-robin, so
    every mode gets ``n // side**2`` or one more points.
    """
    key = checks.prng_key("key", key)
    checks.positive_int("n", n)
    checks.in_range("std", std, 0.0, 100.0, low_inclusive=False)
    centres = grid_centres(side, spacing)
    y = jnp.arange(n, dtype=jnp.int32) % centres.shape[0]
    x = centres[y] + std * jax.random.normal(key, (n, 2))
    return x.astype(jnp.float32), y


# --8<-- [start:modes]
def mixture_modes(
    samples, centres, std: float, *, within: float = 3.0, min_share: float = 0.01
) -> dict:
    """Count the modes of a 2-D Gaussian mixture that ``samples`` ``[n, 2]`` cover.

    Rule: each sample goes to its nearest centre; it is *high quality* when that distance is at
    most ``within * std`` (three standard deviations, as in Metz et al. 2016 and Srivastava et
    al. 2017). A mode is *covered* when at least ``min_share`` (1%) of all samples are high
    quality and assigned to it — a floor of this project, so that a handful of strays does not
    count as covering a mode.

    Returns:
        ``modes`` (int: modes covered), ``n_modes`` (int: centres), ``high_quality`` (float:
        share of samples within ``within * std`` of some centre) and ``counts`` (list of ints:
        high-quality samples per centre).
    """
    x = np.asarray(samples, np.float64)
    c = np.asarray(centres, np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] == 0:
        raise ValueError(f"samples: expected points [n, 2] with n >= 1, got shape {x.shape}")
    if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] == 0:
        raise ValueError(f"centres: expected centres [k, 2] with k >= 1, got shape {c.shape}")
    checks.in_range("std", std, 0.0, math.inf, low_inclusive=False)
    checks.in_range("within", within, 0.0, math.inf, low_inclusive=False)
    checks.in_range("min_share", min_share, 0.0, 1.0)
    dist = np.linalg.norm(x[:, None, :] - c[None, :, :], axis=-1)  # [n, k]
    nearest = dist.argmin(1)
    good = dist[np.arange(len(x)), nearest] <= within * std
    counts = np.bincount(nearest[good], minlength=len(c))
    return {
        "modes": int(np.sum(counts >= max(min_share * len(x), 1))),
        "n_modes": len(c),
        "high_quality": float(good.mean()),
        "counts": counts.tolist(),
    }


# --8<-- [end:modes]


def sample_grid(ax, images, *, rows: int, title: str | None = None) -> None:
    """Draw digit ``images`` (``[n, 8, 8, 1]`` or ``[n, 64]``, in [0, 1]) as a ``rows``-row grid
    on one matplotlib axis, ink dark on white, one blank pixel between digits."""
    x = np.asarray(as_digit_images("images", images))[..., 0]
    checks.positive_int("rows", rows)
    n = x.shape[0]
    cols = -(-n // rows)
    canvas = np.zeros((rows * 9 + 1, cols * 9 + 1))
    for i in range(n):
        r, col = divmod(i, cols)
        if r >= rows:
            break
        canvas[1 + 9 * r : 9 + 9 * r, 1 + 9 * col : 9 + 9 * col] = np.clip(x[i], 0.0, 1.0)
    ax.imshow(canvas, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title)

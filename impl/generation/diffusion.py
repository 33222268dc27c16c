"""5.3 Diffusion — learn to remove noise, then generate by removing it step by step.

Ho, Jain & Abbeel, *Denoising diffusion probabilistic models*, NeurIPS 2020.
https://arxiv.org/abs/2006.11239
Nichol & Dhariwal, *Improved denoising diffusion probabilistic models*, ICML 2021.
https://arxiv.org/abs/2102.09672
Dhariwal & Nichol, *Diffusion models beat GANs on image synthesis*, NeurIPS 2021.
https://arxiv.org/abs/2105.05233
Song, Meng & Ermon, *Denoising diffusion implicit models*, ICLR 2021.
https://arxiv.org/abs/2010.02502

The idea: a fixed *forward process* adds a little Gaussian noise at each of ``T`` steps until
the data are pure noise. Its one-step posteriors are Gaussian, so a network that predicts the
noise ``eps`` in a noisy ``x_t`` — trained by plain regression, the "simple" loss — is all the
*reverse process* needs: start from noise and take ``T`` small denoising steps (ancestral
sampling). A classifier trained on noisy images steers the steps towards a class (classifier
guidance); DDIM takes a deterministic short cut through fewer steps with the same network.

Conventions: the paper's steps ``t = 1..T`` are array indices ``t = 0..T-1`` here (index
``t`` holds the paper's ``t + 1``); ``alpha_bars[t] = prod_{s <= t} (1 - betas[s])``. The reverse
variance is the posterior's, ``sigma_t^2 = beta~_t`` (one of the paper's two choices, section
3.2), which is exactly 0 at the last step.

Reused: the U-Net's `conv_block`, `down_path`, `up_path` (topic 1.4) for the image denoiser,
`dense` and `mlp` (1.1), GELU (2.7). The timestep embedding is the Transformer's sinusoid
(Vaswani et al. 2017) applied to ``t``, as in Ho et al. (appendix B).

Shapes: data ``float32[batch, ...]`` (points ``[batch, 2]``, images ``[batch, H, W, C]`` NHWC,
``H`` and ``W`` divisible by ``2**depth``); timesteps ``int32[batch]`` in ``0..T-1``; a
schedule holds three ``float32[T]`` arrays. The experiment lives in
`impl.generation.diffusion_experiment`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, twins
from impl.deep_networks.cnn import conv2d, init_conv
from impl.deep_networks.dnn import dense, init_layer, init_mlp, mlp
from impl.deep_networks.unet import (
    check_unet_input,
    conv_block,
    down_path,
    init_conv_block,
    init_down_path,
    init_up_path,
    up_path,
)
from impl.optimization.gelu import gelu

__all__ = [
    "LinenDenoiser",
    "NnxDenoiser",
    "Schedule",
    "ancestral_sample",
    "check_schedule",
    "classifier_guide",
    "cosine_schedule",
    "ddim_sample",
    "denoiser",
    "init_denoiser",
    "init_noisy_classifier",
    "init_point_denoiser",
    "init_time_mlp",
    "linear_schedule",
    "noisy_classifier",
    "point_denoiser",
    "q_sample",
    "q_step",
    "schedule_from_alpha_bars",
    "schedule_from_betas",
    "simple_loss",
    "time_mlp",
    "timestep_embedding",
]

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t [b, ...], t int[b]) -> eps [b, ...]


class Schedule(NamedTuple):
    """The noise schedule: ``betas``, ``alphas = 1 - betas``, ``alpha_bars`` (cumulative product),
    each ``float32[T]``. Build it with a constructor below, which validates it."""

    betas: jax.Array
    alphas: jax.Array
    alpha_bars: jax.Array


# --8<-- [start:schedules]
def schedule_from_betas(betas) -> Schedule:
    """A schedule from ``betas [T]``, each in ``(0, 1)``;
    ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``."""
    b = np.asarray(betas, np.float64)
    if b.ndim != 1 or b.shape[0] == 0:
        raise ValueError(f"betas: expected a non-empty vector [T], got shape {b.shape}")
    if not np.all((b > 0) & (b < 1)):
        bad = b[~((b > 0) & (b < 1))][0]
        raise ValueError(f"betas: expected every beta_t in (0, 1), got {bad:g}")
    alpha_bars = np.cumprod(1.0 - b)  # eq. 4's alpha-bar, in float64 before the cast
    return Schedule(*(jnp.asarray(a, jnp.float32) for a in (b, 1.0 - b, alpha_bars)))


def schedule_from_alpha_bars(alpha_bars) -> Schedule:
    """A schedule from ``alpha_bars [T]``, strictly decreasing inside ``(0, 1)``;
    ``beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}`` (``alpha_bar_{-1} = 1``)."""
    a = np.asarray(alpha_bars, np.float64)
    if a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"alpha_bars: expected a non-empty vector [T], got shape {a.shape}")
    if not np.all((a > 0) & (a < 1)):
        raise ValueError(
            f"alpha_bars: expected every value in (0, 1), got {a.min():g}..{a.max():g}"
        )
    if np.any(np.diff(a) >= 0):
        t = int(np.flatnonzero(np.diff(a) >= 0)[0]) + 1
        raise ValueError(f"alpha_bars: expected a strictly decreasing sequence, rises at t={t}")
    return schedule_from_betas(1.0 - a / np.concatenate([[1.0], a[:-1]]))


def linear_schedule(T: int, beta_1: float | None = None, beta_T: float | None = None) -> Schedule:
    """Ho et al. (section 4): ``betas`` linear from ``beta_1 = 1e-4`` to ``beta_T = 0.02`` for
    ``T = 1000``. For other ``T`` both ends are scaled by ``1000 / T``, as Nichol & Dhariwal do,
    so that ``alpha_bar_T`` stays near 0 (about ``exp(-10)``)."""
    T = checks.positive_int("T", T)
    if beta_T is None and T <= 20:
        raise ValueError(
            f"T: the scaled default beta_T = 20 / T needs T > 20, got {T}; pass beta_T"
        )
    beta_1 = 1e-4 * 1000 / T if beta_1 is None else beta_1
    beta_T = 0.02 * 1000 / T if beta_T is None else beta_T
    checks.in_range("beta_1", beta_1, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    checks.in_range("beta_T", beta_T, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    return schedule_from_betas(np.linspace(beta_1, beta_T, T))


def cosine_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal, eq. 17: ``alpha_bar(t) = f(t) / f(0)`` with
    ``f(t) = cos((t/T + s)/(1 + s) pi/2)^2``; ``beta_t`` clipped at ``max_beta`` so that the last
    step stays finite."""
    T = checks.positive_int("T", T)
    checks.in_range("s", s, 0.0, 1.0, high_inclusive=False)
    checks.in_range("max_beta", max_beta, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2  # eq. 17, t = 0..T
    betas = np.clip(1.0 - f[1:] / f[:-1], 1e-8, max_beta)  # section 3.2: beta_t = 1 - a_t / a_{t-1}
    return schedule_from_betas(betas)


# --8<-- [end:schedules]


def check_schedule(schedule) -> int:
    """Return ``T`` if ``schedule`` is a `Schedule` of three ``[T]`` vectors (values checked
    where concrete: ``betas`` in (0, 1)); raise naming ``schedule`` otherwise."""
    if not isinstance(schedule, Schedule):
        raise TypeError(
            "schedule: expected a Schedule (linear_schedule, cosine_schedule, ...), "
            f"got {type(schedule).__name__}"
        )
    T = schedule.betas.shape[0] if schedule.betas.ndim == 1 else 0
    if T == 0 or any(a.shape != (T,) for a in schedule):
        raise ValueError(
            f"schedule: expected three vectors [T] with T >= 1, got {[a.shape for a in schedule]}"
        )
    if not isinstance(schedule.betas, jax.core.Tracer):
        b = np.asarray(schedule.betas)
        if not np.all((b > 0) & (b < 1)):
            raise ValueError(
                "schedule: expected every beta_t in (0, 1); build it with schedule_from_betas"
            )
    return T


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
    """A per-example scalar ``[b]`` shaped to broadcast against ``x [b, ...]``."""
    return v.reshape((-1,) + (1,) * (x.ndim - 1))


# --8<-- [start:core]
def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """The forward process in closed form, eq. 4:
    ``x_t = sqrt(a_bar_t) x0 + sqrt(1 - a_bar_t) eps``.

    ``x0``, ``noise``: ``[b, ...]``; ``t``: ``int[b]``. Returns ``x_t [b, ...]``.
    """
    a_bar = _bcast(schedule.alpha_bars[t], x0)  # [b, 1, ...]
    return jnp.sqrt(a_bar) * x0 + jnp.sqrt(1.0 - a_bar) * noise


def q_step(schedule: Schedule, x_prev: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """One step of the forward process, eq. 2:
    ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps``."""
    beta = _bcast(schedule.betas[t], x_prev)
    return jnp.sqrt(1.0 - beta) * x_prev + jnp.sqrt(beta) * noise


def simple_loss(eps_fn: EpsFn, schedule: Schedule, x0: jax.Array, key: jax.Array) -> jax.Array:
    """The simple objective, eq. 14: ``E_{t, x0, eps} |eps - eps_theta(x_t, t)|^2`` with ``t``
    uniform over the ``T`` steps (Algorithm 1). ``x0 [b, ...]`` -> a scalar (mean over entries)."""
    k_t, k_eps = jax.random.split(key)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, schedule.betas.shape[0])  # int[b]
    noise = jax.random.normal(k_eps, x0.shape)
    return jnp.mean((noise - eps_fn(q_sample(schedule, x0, t, noise), t)) ** 2)


def _posterior(schedule: Schedule, t: jax.Array):
    """``(a_bar_{t-1}, beta~_t)`` with ``a_bar_{-1} = 1`` and, eq. 7,
    ``beta~_t = (1 - a_bar_{t-1}) / (1 - a_bar_t) beta_t``."""
    a_bar_prev = jnp.where(t > 0, schedule.alpha_bars[jnp.maximum(t - 1, 0)], 1.0)
    return a_bar_prev, (1.0 - a_bar_prev) / (1.0 - schedule.alpha_bars[t]) * schedule.betas[t]


def ancestral_sample(
    eps_fn: EpsFn,
    schedule: Schedule,
    key: jax.Array,
    shape: Sequence[int],
    *,
    guide: EpsFn | None = None,
    scale=0.0,
    clip: float | None = None,
) -> jax.Array:
    """Algorithm 2: from ``x_T ~ N(0, I)`` take ``T`` reverse steps, all inside one ``lax.scan``,

    ``x_{t-1} = (x_t - beta_t / sqrt(1 - a_bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z``
    (eq. 11), ``sigma_t^2 = beta~_t``. With ``guide(x_t, t) = grad_x log p(y | x_t)`` the mean
    moves by ``scale * sigma_t^2 * guide`` (Dhariwal & Nichol, Algorithm 1); ``scale = 0`` is
    unguided sampling. With ``clip = c`` the step goes through the predicted ``x_0``, clipped
    to ``[-c, c]`` (the data's range), and the posterior mean of eq. 7 — without clipping the
    same mean as eq. 11, as Ho et al.'s code samples. ``shape = (batch, ...)``; returns ``x_0``.
    """
    T = check_schedule(schedule)
    shape = _check_shape(shape)
    checks.hyperparameter("scale", scale, 0.0)
    if clip is not None:
        checks.in_range("clip", clip, 0.0, math.inf, low_inclusive=False)
    k_T, k_steps = jax.random.split(checks.prng_key("key", key))

    def step(x, inputs):  # x: [b, ...]
        t, k = inputs
        tb = jnp.full((shape[0],), t)  # int[b]
        beta, alpha, a_bar = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
        a_bar_prev, var = _posterior(schedule, t)  # sigma_t^2 = beta~_t; 0 at the last step
        eps = eps_fn(x, tb)
        if clip is None:
            mean = (x - beta / jnp.sqrt(1.0 - a_bar) * eps) / jnp.sqrt(alpha)  # eq. 11
        else:
            x0 = jnp.clip((x - jnp.sqrt(1.0 - a_bar) * eps) / jnp.sqrt(a_bar), -clip, clip)
            mean = (jnp.sqrt(a_bar_prev) * beta * x0 + jnp.sqrt(alpha) * (1.0 - a_bar_prev) * x) / (
                1.0 - a_bar
            )  # eq. 7: the mean of q(x_{t-1} | x_t, x_0)
        if guide is not None:
            mean = mean + scale * var * guide(x, tb)  # Dhariwal & Nichol, Algorithm 1
        return mean + jnp.sqrt(var) * jax.random.normal(k, shape), None

    x_T = jax.random.normal(k_T, shape)
    x0, _ = jax.lax.scan(step, x_T, (jnp.arange(T - 1, -1, -1), jax.random.split(k_steps, T)))
    return x0


def ddim_sample(
    eps_fn: EpsFn, schedule: Schedule, key: jax.Array, shape: Sequence[int], *, steps: int, eta=0.0
) -> jax.Array:
    """DDIM (Song et al., eq. 12) over ``steps`` of the ``T`` timesteps, evenly spaced:

    ``x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps + sigma z``, with
    ``x0_hat = (x_t - sqrt(1 - a_bar_t) eps) / sqrt(a_bar_t)`` and ``sigma = eta * sqrt(beta~)``
    between the two visited steps (eq. 16). ``eta = 0`` is deterministic; ``eta = 1`` and
    ``steps = T`` is `ancestral_sample` (same keys, same numbers up to rounding).
    """
    T = check_schedule(schedule)
    shape = _check_shape(shape)
    steps = checks.positive_int("steps", steps)
    if steps > T:
        raise ValueError(f"steps: expected at most T = {T} steps, got {steps}")
    checks.hyperparameter("eta", eta, 0.0, 1.0)
    taus = (np.arange(1, steps + 1) * T // steps - 1).astype(
        np.int32
    )  # visited steps, ending at T-1
    prevs = np.concatenate([[-1], taus[:-1]]).astype(np.int32)  # the step each one jumps to
    k_T, k_steps = jax.random.split(checks.prng_key("key", key))

    def step(x, inputs):
        t, t_prev, k = inputs
        a_bar = schedule.alpha_bars[t]
        a_prev = jnp.where(t_prev >= 0, schedule.alpha_bars[jnp.maximum(t_prev, 0)], 1.0)
        eps = eps_fn(x, jnp.full((shape[0],), t))
        x0_hat = (x - jnp.sqrt(1.0 - a_bar) * eps) / jnp.sqrt(a_bar)  # eq. 9 solved for x_0
        var = eta**2 * (1.0 - a_prev) / (1.0 - a_bar) * (1.0 - a_bar / a_prev)  # eq. 16
        direction = (
            jnp.sqrt(jnp.maximum(1.0 - a_prev - var, 0.0)) * eps
        )  # "direction pointing to x_t"
        return jnp.sqrt(a_prev) * x0_hat + direction + jnp.sqrt(var) * jax.random.normal(
            k, shape
        ), None

    x_T = jax.random.normal(k_T, shape)
    keys = jax.random.split(k_steps, T)[
        T - 1 - taus[::-1]
    ]  # each visited step's key, as in ancestral
    x0, _ = jax.lax.scan(step, x_T, (taus[::-1], prevs[::-1], keys))
    return x0


# --8<-- [end:core]


def _check_shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, tuple | list) or len(shape) < 2:
        raise ValueError(f"shape: expected (batch, ...) with at least two entries, got {shape!r}")
    return tuple(checks.positive_int(f"shape[{i}]", s) for i, s in enumerate(shape))


# --8<-- [start:networks]
def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
    """The Transformer's sinusoid for timestep ``t``: ``int[b] -> [b, dim]``, half sines, half
    cosines, wavelengths from ``2 pi`` to ``10000 * 2 pi`` (Vaswani et al. 2017, section 3.5)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half) / half)  # [dim / 2]
    angles = t.astype(jnp.float32).reshape(-1, 1) * freqs.reshape(1, -1)  # [b, dim / 2]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def init_time_mlp(key: jax.Array, dim: int) -> list[dict]:
    """Two dense layers ``dim -> dim -> dim`` on top of `timestep_embedding`."""
    k1, k2 = jax.random.split(key)
    return [init_layer(k1, dim, dim), init_layer(k2, dim, dim)]


def time_mlp(params: list[dict], t: jax.Array) -> jax.Array:
    """``t int[b] -> [b, dim]``: sinusoid, dense, GELU, dense (Ho et al., appendix B, with GELU)."""
    dim = params[0]["kernel"].shape[0]
    return dense(params[1], gelu(dense(params[0], timestep_embedding(t, dim))))


def init_denoiser(
    key: jax.Array, in_channels: int = 1, *, base: int = 16, depth: int = 1, time_dim: int = 32
) -> dict:
    """Parameters of :func:`denoiser`: a U-Net of topic 1.4 (``base * 2**level`` channels) whose
    input gets ``base`` extra channels carrying the timestep, plus a shift of the bottleneck."""
    widths = [base * 2**level for level in range(depth)]
    keys = jax.random.split(key, 5 * depth + 6)
    return {
        "time": init_time_mlp(keys[0], time_dim),
        "time_in": init_layer(keys[1], time_dim, base),  # -> base input channels
        "time_mid": init_layer(keys[2], time_dim, widths[-1]),  # -> shift of the bottleneck input
        "down": init_down_path(keys[3 : 3 + 2 * depth], in_channels + base, widths),
        "bottom": init_conv_block(keys[3 + 2 * depth : 5 + 2 * depth], widths[-1], 2 * widths[-1]),
        "up": init_up_path(keys[5 + 2 * depth : 5 + 5 * depth], widths, 2 * widths[-1]),
        "out": init_conv(keys[5 + 5 * depth], 1, base, in_channels),
    }


def denoiser(params: dict, x: jax.Array, t: jax.Array) -> jax.Array:
    """The noise predictor ``eps_theta``: ``x [b, H, W, C]``, ``t int[b]`` -> ``[b, H, W, C]``.

    The timestep enters twice: as constant input channels beside the image, and as a
    per-channel shift of the bottleneck's input. Everything else is the U-Net's blocks.
    """
    check_unet_input(x, params["out"]["kernel"].shape[-1], len(params["down"]))
    emb = gelu(time_mlp(params["time"], t))  # [b, time_dim]
    b, h, w, _ = x.shape
    t_in = dense(params["time_in"], emb).reshape(b, 1, 1, -1)  # [b, 1, 1, base]
    x = jnp.concatenate([x, jnp.broadcast_to(t_in, (b, h, w, t_in.shape[-1]))], axis=-1)
    h_, skips = down_path(params["down"], x)  # [b, H / 2**depth, W / 2**depth, widths[-1]]
    h_ = h_ + dense(params["time_mid"], emb).reshape(b, 1, 1, -1)
    h_ = conv_block(params["bottom"], h_)  # [b, H / 2**depth, W / 2**depth, 2 widths[-1]]
    h_ = up_path(params["up"], h_, skips)  # [b, H, W, base]
    return conv2d(h_, **params["out"])  # 1x1 conv back to the image's channels


def init_point_denoiser(
    key: jax.Array, d: int = 2, *, hidden: int = 128, depth: int = 3, time_dim: int = 32
) -> dict:
    """Parameters of :func:`point_denoiser`: a time MLP and ``depth`` dense layers."""
    k_time, k_mlp = jax.random.split(key)
    sizes = [d + time_dim] + [hidden] * (depth - 1) + [d]
    return {"time": init_time_mlp(k_time, time_dim), "mlp": init_mlp(k_mlp, sizes)}


def point_denoiser(params: dict, x: jax.Array, t: jax.Array) -> jax.Array:
    """``eps_theta`` for points: ``x [b, d]``, ``t int[b]`` -> ``[b, d]``: an MLP with GELU on
    ``[x, emb(t)]``."""
    h = jnp.concatenate([x, time_mlp(params["time"], t)], axis=-1)  # [b, d + time_dim]
    for layer in params["mlp"][:-1]:
        h = gelu(dense(layer, h))  # [b, hidden]
    return dense(params["mlp"][-1], h)


def init_noisy_classifier(
    key: jax.Array, d_in: int = 64, n_classes: int = 10, *, hidden: int = 128, time_dim: int = 32
) -> list[dict]:
    """Parameters of :func:`noisy_classifier`: a tanh MLP of topic 1.1,
    ``[d_in + time_dim, hidden, hidden, n_classes]``."""
    return init_mlp(key, [d_in + time_dim, hidden, hidden, n_classes])


def noisy_classifier(params: list[dict], x: jax.Array, t: jax.Array) -> jax.Array:
    """``log p(y | x_t)`` up to a constant: logits ``[b, n_classes]`` of a classifier that sees the
    noisy ``x [b, ...]`` and its timestep ``t int[b]`` (Dhariwal & Nichol, section 4)."""
    time_dim = params[0]["kernel"].shape[0] - math.prod(x.shape[1:])
    h = jnp.concatenate([x.reshape(x.shape[0], -1), timestep_embedding(t, time_dim)], axis=-1)
    return mlp(params, h)


def classifier_guide(params: list[dict], y: jax.Array) -> EpsFn:
    """``guide(x_t, t) = grad_x log softmax(noisy_classifier(x_t, t))[y]``, per example, for
    `ancestral_sample`; ``y int[b]`` is the class asked of each sample."""

    def log_prob(x, t):
        logp = jax.nn.log_softmax(noisy_classifier(params, x, t))  # [b, n_classes]
        return jnp.sum(jnp.take_along_axis(logp, y.reshape(-1, 1), axis=1))  # examples independent

    return jax.grad(log_prob)


# --8<-- [end:networks]


def _check_config(in_channels: int, base: int, depth: int, time_dim: int) -> None:
    checks.positive_int("in_channels", in_channels)
    checks.positive_int("base", base)
    checks.positive_int("depth", depth)
    checks.positive_int("time_dim", time_dim)
    if time_dim % 2:
        raise ValueError(
            f"time_dim: expected an even number (half sines, half cosines), got {time_dim}"
        )


def _check_call(x, t, in_channels: int, depth: int) -> None:
    check_unet_input(x, in_channels, depth)
    checks.array_shape("t", t, (x.shape[0],), dims=f"int[batch={x.shape[0]}]")
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise TypeError(f"t: expected integer timesteps, got {t.dtype}")


# --8<-- [start:linen]
class LinenDenoiser(nn.Module):
    """Functional twin: ``init`` returns ``{"params": {"layers": init_denoiser(key, ...)}}``."""

    in_channels: int = 1
    base: int = 16
    depth: int = 1
    time_dim: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        _check_config(self.in_channels, self.base, self.depth, self.time_dim)
        _check_call(x, t, self.in_channels, self.depth)
        layers = self.param(
            "layers",
            init_denoiser,
            self.in_channels,
            base=self.base,
            depth=self.depth,
            time_dim=self.time_dim,
        )  # {"time", "time_in", "time_mid", "down", "bottom", "up", "out"}
        return denoiser(layers, x, t)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxDenoiser(nnx.Module):
    """Object-oriented twin: ``self.layers`` holds the same tree as Linen's ``params["layers"]``."""

    def __init__(
        self,
        in_channels: int = 1,
        *,
        base: int = 16,
        depth: int = 1,
        time_dim: int = 32,
        rngs: nnx.Rngs,
    ):
        _check_config(in_channels, base, depth, time_dim)
        self.in_channels, self.depth = in_channels, depth
        self.layers = twins.to_nnx(
            init_denoiser(rngs.params(), in_channels, base=base, depth=depth, time_dim=time_dim)
        )

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        _check_call(x, t, self.in_channels, self.depth)
        return denoiser(twins.pure(self.layers), x, t)


# --8<-- [end:nnx]

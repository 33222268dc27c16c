"""Learning-rate schedules and gradient clipping: the controls around an optimizer's step.

A schedule is a function ``count -> learning rate`` (``count`` an ``int32[]`` number of updates
so far); every optimizer in :mod:`impl.optimization.adam` takes one wherever it takes a float.

* :func:`warmup_cosine_decay_schedule` — a linear warm-up to a peak, then half a cosine down
  to ``end_value`` (Loshchilov & Hutter, *SGDR*, ICLR 2017, eq. 5, without restarts; the
  warm-up of Goyal et al. 2017). Same arguments and values as Optax's function of that name.
* :func:`warmup_inverse_sqrt_schedule` — the Transformer's rate (Vaswani et al., *Attention is
  all you need*, NeurIPS 2017, section 5.3, eq. 3): linear warm-up, then decay as
  $1/\\sqrt{\\text{step}}$.
* :func:`clip_by_global_norm` — rescale the whole gradient when its norm exceeds a threshold
  (Pascanu, Mikolov & Bengio, *On the difficulty of training recurrent neural networks*,
  ICML 2013, Algorithm 1).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from impl import checks

__all__ = [
    "clip_by_global_norm",
    "global_norm",
    "warmup_cosine_decay_schedule",
    "warmup_inverse_sqrt_schedule",
]

Schedule = Callable[[jax.Array], jax.Array]


# --8<-- [start:schedules]
def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
) -> Schedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    $$\eta(t) = \begin{cases}
    \eta_0 + (\eta_{\max} - \eta_0)\, t / T_w & t < T_w \\
    \eta_{\text{end}} + \tfrac12 (\eta_{\max} - \eta_{\text{end}})
    \left(1 + \cos \pi \tfrac{\min(t - T_w,\; T - T_w)}{T - T_w}\right) & t \ge T_w
    \end{cases}$$

    with $T_w$ = ``warmup_steps`` and $T$ = ``decay_steps`` (the total, warm-up included).
    """
    for name, value in [
        ("init_value", init_value),
        ("peak_value", peak_value),
        ("end_value", end_value),
    ]:
        checks.in_range(name, value, 0.0, float("inf"))
    warmup_steps = checks.non_negative_int("warmup_steps", warmup_steps)
    decay_steps = checks.positive_int("decay_steps", decay_steps)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"decay_steps: expected more than warmup_steps={warmup_steps}, got {decay_steps}"
        )

    # the floor, as a fraction of the peak
    alpha = end_value / peak_value if peak_value > 0 else 0.0
    span = float(decay_steps - warmup_steps)  # T - T_w

    def schedule(count):
        # 1 -> 0 over the warm-up
        frac = 1 - jnp.clip(count, 0, warmup_steps) / max(warmup_steps, 1)
        warm = (init_value - peak_value) * frac + peak_value
        progress = jnp.minimum(count - warmup_steps, span) / span  # 0 -> 1 after the warm-up
        cosine = peak_value * ((1 - alpha) * (0.5 * (1 + jnp.cos(jnp.pi * progress))) + alpha)
        return jnp.where(count < warmup_steps, warm, cosine)

    return schedule


def warmup_inverse_sqrt_schedule(
    d_model: int, warmup_steps: int = 4000, scale: float = 1.0
) -> Schedule:
    r"""The Transformer's learning rate (Vaswani et al. 2017, eq. 3), times ``scale``.

    $$\text{lrate} = d_{\text{model}}^{-0.5} \cdot
    \min\left(\text{step}^{-0.5},\; \text{step} \cdot \text{warmup\_steps}^{-1.5}\right)$$

    It rises linearly for ``warmup_steps`` steps, peaks at
    $(d_{\text{model}} \cdot \text{warmup\_steps})^{-0.5}$, then falls as $1/\sqrt{\text{step}}$.
    The paper counts steps from 1, so update number ``count`` (from 0) is step ``count + 1``.
    """
    d_model = checks.positive_int("d_model", d_model)
    warmup_steps = checks.positive_int("warmup_steps", warmup_steps)
    checks.in_range("scale", scale, 0.0, float("inf"))

    def schedule(count):
        step = jnp.asarray(count, jnp.float32) + 1.0
        return scale * d_model**-0.5 * jnp.minimum(jax.lax.rsqrt(step), step * warmup_steps**-1.5)

    return schedule


# --8<-- [end:schedules]


# --8<-- [start:clip]
def global_norm(tree: optax.Updates) -> jax.Array:
    """$\\lVert g \\rVert_2$ over every leaf of a pytree, as one vector; complex leaves count
    $|g|^2$.

    Returns ``float32[]``."""

    def squares(x):  # |x|^2 summed over one leaf
        return (
            jnp.sum(jnp.square(x.real) + jnp.square(x.imag))
            if jnp.iscomplexobj(x)
            else jnp.sum(jnp.square(x))
        )

    return jnp.sqrt(sum((squares(x) for x in jax.tree.leaves(tree)), jnp.zeros([])))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    r"""If $\lVert g \rVert > c$, replace $g$ by $c\, g / \lVert g \rVert$ (Pascanu et al. 2013,
    Algorithm 1).

    The direction is kept; only an exploding step is shortened. ``max_norm`` $= c \ge 0$ (a
    number or a scalar array, as ``optax.inject_hyperparams`` passes it); $c = 0$ zeroes every
    step. Keeps no state (``optax.EmptyState``).
    """
    checks.hyperparameter("max_norm", max_norm, 0.0)

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        norm = global_norm(updates)  # float32[]
        # a zero gradient stays zero, even for c = 0 (not 0/0)
        keep = (norm < max_norm) | (norm == 0)
        updates = jax.tree.map(
            lambda g: jax.lax.select(keep, g, (g / norm.astype(g.dtype)) * max_norm), updates
        )
        return updates, state

    return optax.GradientTransformation(init, update)


# --8<-- [end:clip]

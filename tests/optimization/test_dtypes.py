"""The dtype matrix: every optimizer and every normalisation, in every dtype Optax and Flax support.

For each of float32, float64 (under ``jax.enable_x64``), bfloat16, float16 and complex64, ours
and the library's own run side by side from the same start; the test checks the output dtype
(the library's), finiteness, and agreement within what the dtype can hold.
"""

import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from impl.optimization import adam, batch_norm, layer_norm, schedules, weight_decay

DTYPES = ["float32", "float64", "bfloat16", "float16", "complex64"]
# Relative agreement with the library after STEPS updates (or one normalisation), per dtype: a
# few units in the last place of that dtype, since the two compute the same operations.
RTOL = {"float32": 1e-5, "float64": 1e-12, "bfloat16": 3e-2, "float16": 3e-3, "complex64": 1e-5}
STEPS = 10


def dtype_context(name: str):
    """float64 needs x64 switched on; every other dtype runs as usual."""
    return jax.enable_x64(True) if name == "float64" else contextlib.nullcontext()


def start(dtype) -> dict:
    """A small pytree in ``dtype`` (complex: a non-zero imaginary part everywhere)."""
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    if jnp.issubdtype(dtype, jnp.complexfloating):
        w, b = w + 1j * rng.standard_normal((3, 4)), b - 0.5j
    return {"w": jnp.asarray(w, dtype), "b": jnp.asarray(b, dtype)}


def run(opt, dtype):
    """``STEPS`` updates in one compiled scan; returns the parameters and each step's first update
    element."""

    params = start(dtype)
    state = opt.init(params)

    @jax.jit
    def scan(params, state):
        def body(carry, t):
            p, s = carry
            grads = jax.tree.map(lambda x: x + jnp.cos(x.real * t + 1.0).astype(x.dtype) + 0.1, p)
            u, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, u), s), jax.tree.map(lambda x: x[0], u)

        return jax.lax.scan(body, (params, state), jnp.arange(STEPS, dtype=jnp.float32))

    (params, _), updates = scan(params, state)
    return params, updates


def weights_only(params):
    return {"w": True, "b": False}


# name -> (ours, Optax's): settings valid in every dtype (an eps float16 can hold)
OPTIMIZERS = {
    "sgd": (adam.sgd(0.05), optax.sgd(0.05)),
    "sgd-nesterov": (adam.sgd(0.05, 0.9, nesterov=True), optax.sgd(0.05, 0.9, nesterov=True)),
    "adagrad": (adam.adagrad(0.1), optax.adagrad(0.1)),
    "rmsprop": (adam.rmsprop(0.01, eps=1e-4), optax.rmsprop(0.01, eps=1e-4)),
    "rmsprop-centered-corrected": (
        adam.rmsprop(0.01, eps=1e-3, centered=True, bias_correction=True, momentum=0.5),
        optax.rmsprop(0.01, eps=1e-3, centered=True, bias_correction=True, momentum=0.5),
    ),
    "rmsprop-corrected": (
        adam.rmsprop(0.01, eps=1e-4, bias_correction=True),
        optax.rmsprop(0.01, eps=1e-4, bias_correction=True),
    ),
    "adam": (adam.adam(0.01, eps=1e-4), optax.adam(0.01, eps=1e-4)),
    "adam-nesterov-eps-root": (
        adam.adam(0.01, eps=1e-4, eps_root=1e-4, nesterov=True),
        optax.adam(0.01, eps=1e-4, eps_root=1e-4, nesterov=True),
    ),
    "adamw-masked-schedule": (
        adam.adamw(
            optax.linear_schedule(0.02, 0.0, STEPS), eps=1e-4, weight_decay=0.1, mask=weights_only
        ),
        optax.adamw(
            optax.linear_schedule(0.02, 0.0, STEPS), eps=1e-4, weight_decay=0.1, mask=weights_only
        ),
    ),
    "clip-then-sgd": (
        optax.chain(schedules.clip_by_global_norm(0.5), adam.sgd(0.1)),
        optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1)),
    ),
    "l2-to-gradient": (
        optax.chain(weight_decay.add_l2_to_gradient(0.3), adam.sgd(0.05)),
        optax.chain(optax.add_decayed_weights(0.3), optax.sgd(0.05)),
    ),
}


def assert_close(ours, theirs, rtol):
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        a, b = np.asarray(a, np.complex128), np.asarray(b, np.complex128)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_dtype_matrix(name, dtype):
    ours, theirs = OPTIMIZERS[name]
    with dtype_context(dtype):
        dt = jnp.dtype(dtype)
        mine, my_updates = run(ours, dt)
        reference, their_updates = run(theirs, dt)
    for leaf, ref in zip(
        jax.tree.leaves((mine, my_updates)),
        jax.tree.leaves((reference, their_updates)),
        strict=True,
    ):
        # Optax's dtype, for the parameters and each update
        assert leaf.dtype == ref.dtype, (name, dtype)
    assert all(leaf.dtype == dt for leaf in jax.tree.leaves(mine))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(mine))
    if name == "rmsprop-centered-corrected" and dtype in ("bfloat16", "float16"):
        # In half precision E|g|^2 - |E g|^2 rounds below 0: ours clips
        # it at 0 (as Flax's batch norm does), Optax takes rsqrt of a
        # negative number plus eps (NaN in bfloat16, where eps is small).
        if dtype == "bfloat16":
            assert not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(reference))
        return
    assert_close(mine, reference, RTOL[dtype])


# ---------------------------------------------------------------------------------------
# The normalisations against Flax's, in every dtype (parameters float32 as Flax's default).
# ---------------------------------------------------------------------------------------
def norm_input(dtype, shape=(16, 6)):
    rng = np.random.default_rng(1)
    x = 3.0 + 2.0 * rng.standard_normal(shape)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        x = x + 1j * (rng.standard_normal(shape) - 1.0)
    return jnp.asarray(x, dtype)


def norm_params(d, param_dtype=jnp.float32):
    rng = np.random.default_rng(2)
    return {"scale": jnp.asarray(1 + 0.1 * rng.standard_normal(d), param_dtype),
            "bias": jnp.asarray(0.1 * rng.standard_normal(d), param_dtype)}  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_dtype", [None, "input"], ids=["inferred", "dtype=input"])
def test_layer_norm_dtype_matrix(dtype, output_dtype):
    with dtype_context(dtype):
        x = norm_input(jnp.dtype(dtype))
        kwargs = {"dtype": x.dtype} if output_dtype else {}
        variables = {"params": norm_params(6)}
        ours = layer_norm.LinenLayerNorm(**kwargs).apply(variables, x)
        theirs = nn.LayerNorm(use_fast_variance=False, **kwargs).apply(variables, x)
    assert ours.dtype == theirs.dtype
    assert bool(jnp.all(jnp.isfinite(ours)))
    assert_close(ours, theirs, RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_dtype_matrix(dtype):
    """Two training steps and one evaluation, ours against ``flax.linen.BatchNorm``."""
    with dtype_context(dtype):
        x = norm_input(jnp.dtype(dtype))
        ours, theirs = batch_norm.LinenBatchNorm(), nn.BatchNorm(use_fast_variance=False)
        v = w = {
            "params": norm_params(6),
            "batch_stats": {"mean": jnp.zeros(6), "var": jnp.ones(6)},
        }
        outs = []
        for step in range(2):
            xs = x * (step + 1)
            y1, s1 = ours.apply(v, xs, use_running_average=False, mutable=["batch_stats"])
            y2, s2 = theirs.apply(w, xs, use_running_average=False, mutable=["batch_stats"])
            v, w = {**v, **s1}, {**w, **s2}
            outs.append((y1, y2))
        outs.append(
            (
                ours.apply(v, x, use_running_average=True),
                theirs.apply(w, x, use_running_average=True),
            )
        )
    for y_ours, y_theirs in outs:
        assert y_ours.dtype == y_theirs.dtype
        assert bool(jnp.all(jnp.isfinite(y_ours)))
        assert_close(y_ours, y_theirs, RTOL[dtype])
    for a, b in zip(
        jax.tree.leaves(v["batch_stats"]), jax.tree.leaves(w["batch_stats"]), strict=True
    ):
        assert a.dtype == b.dtype and bool(jnp.all(jnp.isfinite(a)))
    assert_close(v["batch_stats"], w["batch_stats"], RTOL[dtype])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_normalisations_can_stay_in_half_precision(dtype):
    """Half-precision parameters and input: the output stays half precision, as in Flax."""
    x = norm_input(jnp.dtype(dtype))
    variables = {"params": norm_params(6, jnp.dtype(dtype))}
    ours = layer_norm.LinenLayerNorm(param_dtype=dtype).apply(variables, x)
    theirs = nn.LayerNorm(param_dtype=dtype, use_fast_variance=False).apply(variables, x)
    assert ours.dtype == theirs.dtype == jnp.dtype(dtype)
    assert_close(ours, theirs, RTOL[dtype])

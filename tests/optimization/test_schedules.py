import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from impl.optimization import adam, schedules


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 1e-3, 100, 1000, 0.0),
        (1e-5, 0.1, 10, 50, 1e-3),
        (0.5, 0.5, 0, 300, 0.05),
        (0.0, 3.0, 1, 2, 0.0),
    ],
)
def test_warmup_cosine_decay_equals_optax(args):
    ours = schedules.warmup_cosine_decay_schedule(*args)
    theirs = optax.warmup_cosine_decay_schedule(*args)
    counts = jnp.arange(0, args[3] + 20)
    a, b = jax.vmap(ours)(counts), jax.vmap(theirs)(counts)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7 * args[1])
    chex.assert_type(a, jnp.float32)


def test_warmup_inverse_sqrt_is_the_transformers_rate():
    d_model, warmup = 512, 4000
    rate = schedules.warmup_inverse_sqrt_schedule(d_model, warmup)
    step = np.arange(1, 20001, dtype=np.float64)
    # Vaswani et al. 2017, eq. 3
    paper = d_model**-0.5 * np.minimum(step**-0.5, step * warmup**-1.5)
    np.testing.assert_allclose(jax.vmap(rate)(jnp.arange(20000)), paper, rtol=1e-5)
    values = np.asarray(jax.vmap(rate)(jnp.arange(20000)))
    assert int(np.argmax(values)) == warmup - 1  # count warmup-1 is step `warmup`: the peak
    np.testing.assert_allclose(values.max(), (d_model * warmup) ** -0.5, rtol=1e-5)


def test_schedules_drive_an_optimizer_without_recompiling():
    opt = adam.adam(schedules.warmup_inverse_sqrt_schedule(64, 10, scale=0.5))
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        updates, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jnp.zeros((3,))}
    state = opt.init(params)
    moved = []
    for _ in range(20):
        new, state = step(params, state)
        moved.append(float(jnp.abs(new["w"] - params["w"])[0]))
        params = new
    assert len(traces) == 1
    assert int(np.argmax(moved)) == 9  # the step size follows the warm-up, then decays


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 100.0])
def test_clip_by_global_norm_equals_optax(max_norm):
    k = jax.random.split(jax.random.key(0), 3)
    grads = {
        "a": jax.random.normal(k[0], (4, 3)),
        "b": [jax.random.normal(k[1], (5,)), 3.0 * jax.random.normal(k[2], ())],
    }
    ours, theirs = schedules.clip_by_global_norm(max_norm), optax.clip_by_global_norm(max_norm)
    a, _ = ours.update(grads, ours.init(grads))
    b, _ = theirs.update(grads, theirs.init(grads))
    chex.assert_trees_all_close(a, b, rtol=1e-6)
    chex.assert_trees_all_close(schedules.global_norm(grads), optax.tree.norm(grads), rtol=1e-6)
    assert float(schedules.global_norm(a)) <= max_norm * (1 + 1e-6)


def test_clip_composes_with_adam_like_optax():
    def run(opt):
        def step(carry, t):
            params, state = carry
            grads = jax.tree.map(lambda w: 20.0 * jnp.sin(w + 0.1 * t), params)  # norm > 1: clipped
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        params = {"w": jnp.linspace(-2.0, 2.0, 6), "v": jnp.ones((2, 2))}
        (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(50.0)))(
            (params, opt.init(params))
        )
        return params

    ours = optax.chain(schedules.clip_by_global_norm(1.0), adam.adam(0.05))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05))
    chex.assert_trees_all_close(run(ours), run(theirs), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: schedules.warmup_cosine_decay_schedule(0.0, 0.1, 100, 100), "decay_steps"),
        (lambda: schedules.warmup_cosine_decay_schedule(0.0, -0.1, 10, 100), "peak_value"),
        (lambda: schedules.warmup_cosine_decay_schedule(0.0, 0.1, -1, 100), "warmup_steps"),
        (lambda: schedules.warmup_inverse_sqrt_schedule(0, 100), "d_model"),
        (lambda: schedules.warmup_inverse_sqrt_schedule(64, 0), "warmup_steps"),
        (lambda: schedules.clip_by_global_norm(float("nan")), "max_norm"),
        (lambda: schedules.clip_by_global_norm(-1.0), "max_norm"),
    ],
)
def test_schedules_reject_bad_settings(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_clip_by_global_norm_takes_injected_hyperparameters():
    """``inject_hyperparams`` passes ``max_norm`` as a scalar array (it raised TypeError before)."""
    grads = {"a": jnp.asarray([3.0, 4.0])}
    for max_norm in (1.0, 1):
        ours = optax.inject_hyperparams(schedules.clip_by_global_norm)(max_norm=max_norm)
        clipped, _ = ours.update(grads, ours.init(grads))
        chex.assert_trees_all_close(clipped, {"a": jnp.asarray([0.6, 0.8])}, rtol=1e-6)


def test_clip_to_zero_and_complex_norms():
    zero = schedules.clip_by_global_norm(0.0)
    grads = {"a": jnp.asarray([3.0, 4.0]), "b": jnp.zeros(2)}
    clipped, state = zero.update(grads, zero.init(grads))
    chex.assert_trees_all_equal(clipped, jax.tree.map(jnp.zeros_like, grads))
    assert state == optax.EmptyState()
    nothing, _ = zero.update({"b": jnp.zeros(2)}, zero.init(grads))  # 0 / 0 would be NaN
    chex.assert_tree_all_finite(nothing)
    z = {"a": jnp.asarray([3j, 4.0 + 0j])}
    chex.assert_trees_all_close(schedules.global_norm(z), optax.tree.norm(z), rtol=1e-6)
    np.testing.assert_allclose(schedules.global_norm(z), 5.0, rtol=1e-6)

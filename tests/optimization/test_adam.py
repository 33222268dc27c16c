import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from impl import twins
from impl.deep_networks import dnn
from impl.optimization import adam, adam_experiment, schedules

from optimizer_runs import relative_difference
from optimizer_runs import run_steps as run_on
from twin_checks import load_twins

RTOL = 1e-6  # parameters after 200 steps agree with Optax's to this relative difference


@pytest.mark.parametrize(
    "kwargs",
    [
        {"learning_rate": 0.01},
        {"learning_rate": 0.01, "momentum": 0.9},
        {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True},
        {"learning_rate": optax.linear_schedule(0.02, 0.0, 200), "momentum": 0.5},
    ],
)
def test_sgd_equals_optax(kwargs):
    assert (
        relative_difference(run_steps(adam.sgd(**kwargs), 0), run_steps(optax.sgd(**kwargs), 0))
        <= RTOL
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: adam.sgd(float("nan")), "learning_rate"),
        (lambda: adam.sgd(float("inf")), "learning_rate"),
        (lambda: adam.sgd(0.1, momentum=1.5), "momentum"),
        (lambda: adam.trace(-1.5), "decay"),
    ],
)
def test_sgd_rejects_bad_settings(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------
# Every optimizer against Optax's, 200 steps on random nested pytrees.
# ---------------------------------------------------------------------------------------
def random_tree(seed: int) -> dict:
    """A nested dict shaped like a tiny network: matrices, vectors, a scalar, a 3-D kernel.

    Drawn with NumPy: eager ``jax.random`` would compile once per leaf shape.
    """
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape), jnp.float32)

    return {
        "embed": normal(11, 6),
        "layers": [
            {"kernel": normal(6, 6, scale=0.3), "bias": normal(6)},
            {"kernel": normal(6, 2, scale=0.3), "bias": jnp.zeros((2,))},
        ],
        "conv": normal(3, 3, 2),
        "temperature": jnp.asarray(rng.uniform() + 0.5, jnp.float32),
    }


def run_steps(opt, seed: int, steps: int = 200):
    """``steps`` updates of ``opt`` from ``random_tree(seed)`` in one compiled scan."""
    return run_on(opt, random_tree, seed, steps)


def weights_only(params):
    """A mask: decay matrices and kernels, not biases, scalars or embeddings."""
    return {
        k: jax.tree.map(lambda x: x.ndim > 1, v) if k != "embed" else False
        for k, v in params.items()
    }


MASK_TREE = {
    "embed": False,
    "layers": [{"kernel": True, "bias": False}, {"kernel": True, "bias": False}],
    "conv": True,
    "temperature": False,
}
# our schedule in ours,
OURS_COSINE = schedules.warmup_cosine_decay_schedule(0.0, 0.05, 20, 200, 0.001)
OPTAX_COSINE = optax.warmup_cosine_decay_schedule(0.0, 0.05, 20, 200, 0.001)  # Optax's in Optax's

# (name, our factory, optax's factory, kwargs for ours, kwargs for optax's)
CASES = [
    ("adam-default", adam.adam, optax.adam, {"learning_rate": 1e-3}, None),
    (
        "adam-fast",
        adam.adam,
        optax.adam,
        {"learning_rate": 0.05, "b1": 0.5, "b2": 0.9, "eps": 1e-6},
        None,
    ),
    (
        "adam-no-momentum",
        adam.adam,
        optax.adam,
        {"learning_rate": 0.01, "b1": 0.0, "b2": 0.99},
        None,
    ),
    (
        "adam-cosine",
        adam.adam,
        optax.adam,
        {"learning_rate": OURS_COSINE},
        {"learning_rate": OPTAX_COSINE},
    ),
    ("adamw-default", adam.adamw, optax.adamw, {"learning_rate": 1e-3}, None),
    (
        "adamw-mask-tree",
        adam.adamw,
        optax.adamw,
        {"learning_rate": 0.02, "weight_decay": 0.1, "mask": MASK_TREE},
        None,
    ),
    (
        "adamw-mask-fn-cosine",
        adam.adamw,
        optax.adamw,
        {"learning_rate": OURS_COSINE, "weight_decay": 0.3, "mask": weights_only},
        {"learning_rate": OPTAX_COSINE, "weight_decay": 0.3, "mask": weights_only},
    ),
    (
        "adamw-decay-schedule",
        adam.adamw,
        optax.adamw,
        {"learning_rate": 0.01, "weight_decay": optax.linear_schedule(0.5, 0.0, 200)},
        None,
    ),
    ("adagrad-default", adam.adagrad, optax.adagrad, {"learning_rate": 0.1}, None),
    (
        "adagrad-zero-start",
        adam.adagrad,
        optax.adagrad,
        {"learning_rate": 0.3, "initial_accumulator_value": 0.0},
        None,
    ),
    (
        "adagrad-cosine",
        adam.adagrad,
        optax.adagrad,
        {"learning_rate": OURS_COSINE},
        {"learning_rate": OPTAX_COSINE},
    ),
    ("rmsprop-default", adam.rmsprop, optax.rmsprop, {"learning_rate": 0.01}, None),
    (
        "rmsprop-centered",
        adam.rmsprop,
        optax.rmsprop,
        {"learning_rate": 0.01, "centered": True, "eps": 1e-4},
        None,
    ),
    (
        "rmsprop-momentum",
        adam.rmsprop,
        optax.rmsprop,
        {
            "learning_rate": 0.005,
            "decay": 0.95,
            "momentum": 0.9,
            "nesterov": True,
            "initial_scale": 1.0,
        },
        None,
    ),
    (
        "rmsprop-corrected",
        adam.rmsprop,
        optax.rmsprop,
        {
            "learning_rate": 0.01,
            "bias_correction": True,
            "eps_in_sqrt": False,
            "centered": True,
            "eps": 1e-3,
        },
        None,
    ),
    (
        "sgd-nesterov-cosine",
        adam.sgd,
        optax.sgd,
        {"learning_rate": OURS_COSINE, "momentum": 0.9, "nesterov": True},
        {"learning_rate": OPTAX_COSINE, "momentum": 0.9, "nesterov": True},
    ),
]


@pytest.mark.parametrize(
    ("name", "ours", "theirs", "kwargs", "their_kwargs"), CASES, ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_optimizer_equals_optax(name, ours, theirs, kwargs, their_kwargs, seed):
    mine = run_steps(ours(**kwargs), seed)
    reference = run_steps(theirs(**(their_kwargs or kwargs)), seed)
    chex.assert_trees_all_equal_shapes_and_dtypes(mine, reference)
    assert relative_difference(mine, reference) <= RTOL, name


def test_optimizers_compose_with_optax_transformations():
    ours = optax.chain(
        optax.clip_by_global_norm(1.0), adam.adam(0.01), optax.add_noise(0.0, 0.55, 0)
    )
    theirs = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(0.01), optax.add_noise(0.0, 0.55, 0)
    )
    assert relative_difference(run_steps(ours, 3), run_steps(theirs, 3)) <= RTOL
    # Our building blocks inside Optax's scaffolding, and Optax's inside ours.
    mixed = optax.chain(
        adam.scale_by_adam(), optax.add_decayed_weights(1e-2), adam.scale_by_learning_rate(0.02)
    )
    assert (
        relative_difference(run_steps(mixed, 4), run_steps(optax.adamw(0.02, weight_decay=1e-2), 4))
        <= RTOL
    )
    accumulated = optax.MultiSteps(adam.rmsprop(0.01), every_k_schedule=3)
    reference = optax.MultiSteps(optax.rmsprop(0.01), every_k_schedule=3)
    assert relative_difference(run_steps(accumulated, 5, 60), run_steps(reference, 5, 60)) <= RTOL


@pytest.mark.parametrize("factory", [adam.adam, adam.adamw, adam.rmsprop, adam.adagrad, adam.sgd])
def test_optimizer_hyperparameters_can_be_injected(factory):
    """``optax.inject_hyperparams`` passes numbers as arrays and changes them between steps."""
    ours = optax.inject_hyperparams(factory)(learning_rate=0.02)
    theirs = optax.inject_hyperparams(getattr(optax, factory.__name__))(learning_rate=0.02)
    assert relative_difference(run_steps(ours, 0, 50), run_steps(theirs, 0, 50)) <= RTOL


@pytest.mark.parametrize(
    "opt",
    [
        adam.adam(0.01),
        adam.adamw(schedules.warmup_cosine_decay_schedule(0.0, 0.1, 5, 50), mask=weights_only),
        adam.rmsprop(0.01, centered=True, momentum=0.9),
        adam.adagrad(0.1),
    ],
    ids=["adam", "adamw", "rmsprop", "adagrad"],
)
def test_update_does_not_recompile_for_new_values(opt):
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)  # runs only while tracing
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = random_tree(0)
    state = opt.init(params)
    params, state = step(params, state, random_tree(1))
    params, state = step(params, state, random_tree(2))  # new values, same shapes
    params, state = step(random_tree(3), state, random_tree(4))
    assert len(traces) == 1


def test_states_are_named_tuples_shaped_like_params():
    params = random_tree(0)
    state = adam.scale_by_adam().init(params)
    assert state._fields == ("count", "mu", "nu")
    chex.assert_trees_all_equal_shapes_and_dtypes(state.mu, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(state.nu, params)
    chex.assert_shape(state.count, ())
    chex.assert_type(state.count, jnp.int32)


def test_adam_first_step_has_the_size_of_the_learning_rate():
    """With bias correction, step 1 is ``-lr * sign(g)``; without, it is ``(1-b1)/sqrt(1-b2)`` times
    that."""
    g = {"w": jnp.array([1e-4, -3.0, 250.0])}
    corrected, _ = adam.scale_by_adam(eps=1e-12).update(g, adam.scale_by_adam().init(g))
    raw, _ = adam.scale_by_adam(eps=1e-12, bias_correction=False).update(
        g, adam.scale_by_adam().init(g)
    )
    np.testing.assert_allclose(corrected["w"], jnp.sign(g["w"]), rtol=1e-5)
    np.testing.assert_allclose(raw["w"], jnp.sign(g["w"]) * 0.1 / np.sqrt(0.001), rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adam_step_is_invariant_to_diagonal_rescaling(seed):
    """Multiplying each gradient coordinate by a positive constant leaves Adam's steps unchanged."""
    params = random_tree(seed)
    rng = np.random.default_rng(seed)
    scale = jax.tree.map(
        lambda p: jnp.asarray(np.exp(rng.uniform(-7, 7, p.shape)), jnp.float32), params
    )
    opt = adam.scale_by_adam(eps=1e-12)
    s1, s2 = opt.init(params), opt.init(params)
    for i in range(20):
        g = jax.tree.map(lambda p, t=i + 1.0: jnp.sin(p * t) + 0.5, params)
        u1, s1 = opt.update(g, s1)
        u2, s2 = opt.update(jax.tree.map(jnp.multiply, g, scale), s2)
        chex.assert_trees_all_close(u1, u2, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------
# The same optimizer driving the functional and the object-oriented model.
# ---------------------------------------------------------------------------------------
def test_linen_and_nnx_steps_agree():
    x = jax.random.normal(jax.random.key(0), (16, 3))
    y = jnp.arange(16) % 2
    linen = dnn.LinenMLP(features=(8, 2))  # a tuple: the module is a static (hashed) argument
    model = dnn.NnxMLP([3, 8, 2], rngs=nnx.Rngs(0))
    variables = load_twins(linen, model, (x,))  # the Linen weights, copied into the NNX object
    tx = adam.adam(0.05)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    opt_state = tx.init(variables)
    for _ in range(5):
        variables, opt_state, loss_linen = adam_experiment.linen_step(
            linen, tx, variables, opt_state, x, y
        )
        loss_nnx = adam_experiment.nnx_step(model, optimizer, x, y)
        chex.assert_trees_all_close(loss_linen, loss_nnx, rtol=1e-6)
    chex.assert_trees_all_close(twins.pure(model), variables["params"], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Bad input: named, at build time (or first init for a mask).
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: adam.adam(float("nan")), "learning_rate"),
        (lambda: adam.adamw(float("inf")), "learning_rate"),
        (lambda: adam.rmsprop(float("-inf")), "learning_rate"),
        (lambda: adam.adagrad(float("nan")), "learning_rate"),
        (lambda: adam.adam(1e-3, b1=1.0), "b1"),
        (lambda: adam.adam(1e-3, b1=-0.1), "b1"),
        (lambda: adam.adamw(1e-3, b2=1.0), "b2"),
        (lambda: adam.adam(1e-3, b2=1.5), "b2"),
        (lambda: adam.adam(1e-3, eps=-1e-8), "eps"),
        (lambda: adam.adamw(1e-3, eps=-1e-8), "eps"),
        (lambda: adam.adam(1e-3, eps_root=-1e-8), "eps_root"),
        (lambda: adam.rmsprop(1e-3, eps=-1.0), "eps"),
        (lambda: adam.adagrad(1e-3, eps=-1.0), "eps"),
        # 0/0 at a zero gradient
        (lambda: adam.adam(1e-3, eps=0.0).init({"w": jnp.ones(2)}), "eps"),
        (lambda: adam.adam(1e-3).init({"w": jnp.ones(2, jnp.float16)}), "eps"),
        (lambda: adam.rmsprop(1e-3).init({"w": jnp.ones(2, jnp.float16)}), "eps"),
        (lambda: adam.rmsprop(1e-3, decay=1.0), "decay"),
        (lambda: adam.adagrad(1e-3, initial_accumulator_value=-1.0), "initial_accumulator_value"),
        (lambda: adam.adamw(1e-3, weight_decay=-0.1), "weight_decay"),
        (lambda: adam.adamw(1e-3, mask={"a": 1.0}), "mask"),
    ],
)
def test_optimizers_reject_bad_settings(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "mask",
    [
        {"embed": True},  # missing keys
        {**MASK_TREE, "extra": True},  # a key the parameters lack
        lambda params: [True, False],  # a callable returning the wrong tree
    ],
)
def test_adamw_rejects_a_mask_that_does_not_fit_at_init(mask):
    opt = adam.adamw(1e-3, mask=mask)
    with pytest.raises(ValueError, match="mask"):
        opt.init(random_tree(0))


def test_optimizer_rejects_a_non_number():
    with pytest.raises(TypeError, match="b1"):
        adam.adam(1e-3, b1="0.9")


# ---------------------------------------------------------------------------------------
# The claim: invariance to gradient rescaling, bias correction early, Adam beats SGD.
# ---------------------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_adam_in_a_badly_conditioned_valley(seed):
    m = adam_experiment.experiment(seed=seed).metrics
    assert m["adam_over_sgd_loss"] < 0.05  # at each one's best rate (0.003-0.006 seen)
    assert m["adam_rescaled_path_change"] < 1e-5  # the same path under diag(100, 0.01) (1e-7 seen)
    assert m["sgd_rescaled_path_change"] > 0.5  # SGD's path changes completely
    # Bias correction: without it the first steps are longer, which helps at
    # small rates and hurts at large ones. Seeds 0-9: ratio 0.43-0.49 at rate
    # 0.01, 2.11-2.88 at rate 0.56 (docs/claims.md). At Adam's own best rate
    # the sign depends on the start (worse on 6 of 10 seeds): not asserted.
    assert m["early_loss_ratio_at_low_rate"] < 0.65
    assert m["early_loss_ratio_at_high_rate"] > 1.6
    assert m["uncorrected_max_step_multiplier"] > 5  # (1 - b1^t) / sqrt(1 - b2^t) peaks near 6.6


@pytest.mark.parametrize(
    "opt",
    [
        adam.adam(0.01),
        adam.adamw(0.01, mask=weights_only),
        adam.rmsprop(0.01, centered=True),
        adam.adagrad(0.1),
    ],
    ids=["adam", "adamw", "rmsprop", "adagrad"],
)
def test_state_buffers_are_distinct_so_they_can_be_donated(opt):
    """A training loop may donate params and state to ``jit``; no two state leaves may share a
    buffer."""
    step = jax.jit(lambda p, s, g: opt.update(g, s, p)[1], donate_argnums=(1,))
    params = random_tree(0)
    state = step(params, opt.init(params), random_tree(1))
    chex.assert_tree_all_finite(state)


def test_adam_agrees_with_optax_op_by_op_too():
    """Without ``jit`` (eager), the bias correction must stay accurate: within 1e-6 after 100
    steps."""

    def run(opt):
        params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.zeros(3)}
        state = opt.init(params)
        for step in range(100):
            grads = jax.tree.map(lambda x, s=float(step): jnp.sin(3.0 * x) + 0.1 * s, params)
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params

    assert relative_difference(run(adam.adam(0.01)), run(optax.adam(0.01))) <= RTOL


# ---------------------------------------------------------------------------------------
# Regressions (issue #11): complex gradients, half precision, integer gradients.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (adam.scale_by_adam(), optax.scale_by_adam()),
        (adam.scale_by_rms(), optax.scale_by_rms()),
        (adam.scale_by_rss(), optax.scale_by_rss()),
    ],
    ids=["adam", "rms", "rss"],
)
def test_second_moments_of_complex_gradients_are_squared_magnitudes(ours, theirs):
    """For g = 1j the second moment grows by |g|^2 = +1, not g*g = -1."""
    g = {"w": jnp.asarray([1j, 3.0 - 4.0j], jnp.complex64)}
    u_ours, s_ours = ours.update(g, ours.init(g))
    u_theirs, s_theirs = theirs.update(g, theirs.init(g))
    second = jax.tree.leaves(s_ours)[-1]  # nu or sum_of_squares
    assert float(jnp.min(second.real)) > 0 and float(jnp.max(jnp.abs(second.imag))) == 0
    chex.assert_trees_all_close(jax.tree.leaves(s_ours), jax.tree.leaves(s_theirs), rtol=1e-6)
    chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_bias_corrected_rms_keeps_the_gradient_dtype(dtype):
    g = {"w": jnp.asarray([0.5, -2.0], dtype)}
    opt = adam.scale_by_rms(bias_correction=True, eps=1e-4)
    updates, state = opt.update(g, opt.init(g))
    chex.assert_type([updates["w"], state.nu["w"]], dtype)


def test_sgd_does_not_truncate_integer_gradients():
    g = {"w": jnp.asarray([3, -3])}
    for lr in (0.5, optax.constant_schedule(0.5)):
        opt = adam.sgd(lr)
        updates, _ = opt.update(g, opt.init(g))
        np.testing.assert_array_equal(updates["w"], [-1.5, 1.5])

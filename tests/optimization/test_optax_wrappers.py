"""Drop-in for Optax: same signatures, same state structures, and every Optax wrapper composes.

Each of our optimizers runs inside ``optax.inject_hyperparams``, ``optax.masked``,
``optax.MultiSteps``, ``optax.chain`` and ``optax.apply_if_finite`` next to Optax's namesake in
the same wrapper, and must give the same parameters.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from impl import checks
from impl.optimization import adam, schedules, weight_decay

from optimizer_runs import relative_difference, run_steps

RTOL = 1e-6


def tree(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "dense": {
            "kernel": jnp.asarray(rng.standard_normal((5, 3)), jnp.float32),
            "bias": jnp.zeros(3),
        },
        "scale": jnp.asarray(rng.standard_normal(()), jnp.float32),
    }


# a JAX bool among them
MASK = {"dense": {"kernel": True, "bias": False}, "scale": jnp.asarray(False)}

# name -> (our factory, Optax's factory, kwargs for both)
FACTORIES = {
    "sgd": (adam.sgd, optax.sgd, {"learning_rate": 0.05}),
    "sgd-momentum": (
        adam.sgd,
        optax.sgd,
        {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
    ),
    "adagrad": (adam.adagrad, optax.adagrad, {"learning_rate": 0.1}),
    "rmsprop": (adam.rmsprop, optax.rmsprop, {"learning_rate": 0.01}),
    "rmsprop-centered": (
        adam.rmsprop,
        optax.rmsprop,
        {"learning_rate": 0.01, "centered": True, "momentum": 0.5},
    ),
    "rmsprop-corrected": (
        adam.rmsprop,
        optax.rmsprop,
        {"learning_rate": 0.01, "bias_correction": True},
    ),
    "adam": (adam.adam, optax.adam, {"learning_rate": 0.01}),
    "adam-nesterov": (
        adam.adam,
        optax.adam,
        {"learning_rate": 0.01, "nesterov": True, "eps_root": 1e-8},
    ),
    "adamw": (adam.adamw, optax.adamw, {"learning_rate": 0.01, "weight_decay": 0.1, "mask": MASK}),
}
IDS = list(FACTORIES)


def both(name, wrap=lambda f, kw: f(**kw)):
    ours, theirs, kwargs = FACTORIES[name]
    return wrap(ours, kwargs), wrap(theirs, kwargs)


def assert_same_run(ours, theirs, steps=60):
    assert (
        relative_difference(run_steps(ours, tree, 0, steps), run_steps(theirs, tree, 0, steps))
        <= RTOL
    )


def paths(state) -> list:
    """Every leaf of a state as (path, shape, dtype): field names included, class identity not."""
    return [
        (jax.tree_util.keystr(p), x.shape, x.dtype)
        for p, x in jax.tree_util.tree_flatten_with_path(state)[0]
    ]


@pytest.mark.parametrize("name", IDS)
def test_state_structure_is_optaxs(name):
    ours, theirs = both(name)
    params = tree(0)
    assert paths(ours.init(params)) == paths(theirs.init(params))
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    assert paths(ours.update(params, s_ours, params)[1]) == paths(
        theirs.update(params, s_theirs, params)[1]
    )
    # one count per counter Optax keeps: a constant learning rate keeps none
    assert len(optax.tree.get_all_with_path(s_ours, "count")) == len(
        optax.tree.get_all_with_path(s_theirs, "count")
    )


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (adam.scale_by_adam, optax.scale_by_adam),
        (adam.scale_by_rms, optax.scale_by_rms),
        (adam.scale_by_stddev, optax.scale_by_stddev),
        (adam.scale_by_rss, optax.scale_by_rss),
        (adam.trace, optax.trace),
        (adam.sgd, optax.sgd),
        (adam.adagrad, optax.adagrad),
        (adam.rmsprop, optax.rmsprop),
        (adam.adam, optax.adam),
        (adam.adamw, optax.adamw),
        (weight_decay.add_decayed_weights, optax.add_decayed_weights),
        (schedules.clip_by_global_norm, optax.clip_by_global_norm),
    ],
    ids=lambda f: f.__module__.split(".")[0] + "." + f.__name__,
)
def test_signature_is_optaxs(ours, theirs):
    """Optax's parameters, in Optax's order and kinds, with Optax's defaults (ours may add
    keyword-only ones)."""
    mine, reference = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    for name, p in reference.items():
        assert name in mine, name
        assert (mine[name].kind, mine[name].default) == (p.kind, p.default), name
    positional = [n for n, p in mine.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [n for n, p in reference.items() if p.kind is p.POSITIONAL_OR_KEYWORD]


def test_constant_and_scheduled_states():
    params = tree(0)
    for lr in (0.1, optax.constant_schedule(0.1)):
        ours, theirs = adam.adam(lr), optax.adam(lr)
        assert paths(ours.init(params)) == paths(theirs.init(params))
    for decay in (0.1, optax.constant_schedule(0.1)):
        ours = weight_decay.add_decayed_weights(decay, MASK)
        theirs = optax.add_decayed_weights(decay, MASK)
        assert paths(ours.init(params)) == paths(theirs.init(params))
    assert paths(schedules.clip_by_global_norm(1.0).init(params)) == []


@pytest.mark.parametrize("name", IDS)
def test_inject_hyperparams(name):
    ours, theirs = both(name, lambda f, kw: optax.inject_hyperparams(f)(**kw))
    assert_same_run(ours, theirs)


@pytest.mark.parametrize("name", IDS)
def test_masked(name):
    mask = {"dense": {"kernel": True, "bias": True}, "scale": False}
    ours, theirs = both(name, lambda f, kw: optax.masked(f(**kw), mask))
    assert_same_run(ours, theirs)


@pytest.mark.parametrize("name", IDS)
def test_multi_steps(name):
    ours, theirs = both(name, lambda f, kw: optax.MultiSteps(f(**kw), every_k_schedule=3))
    assert_same_run(ours, theirs)


@pytest.mark.parametrize("name", IDS)
def test_chain_and_apply_if_finite(name):
    ours, theirs = both(
        name,
        lambda f, kw: optax.apply_if_finite(
            optax.chain(optax.clip_by_global_norm(1.0), f(**kw)), max_consecutive_errors=2
        ),
    )
    assert_same_run(ours, theirs)
    params = tree(0)
    nan = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
    state = ours.init(params)
    updates, state = ours.update(nan, state, params)  # a NaN gradient is skipped, not applied
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
    assert int(state.notfinite_count) == 1


def test_inject_hyperparams_into_clipping_and_decay():
    """Defect 5: ``inject_hyperparams`` hands the check a scalar array, float or int."""
    for max_norm in (1.0, 1):
        ours = optax.chain(
            optax.inject_hyperparams(schedules.clip_by_global_norm)(max_norm=max_norm),
            adam.sgd(0.1),
        )
        theirs = optax.chain(
            optax.inject_hyperparams(optax.clip_by_global_norm)(max_norm=max_norm), optax.sgd(0.1)
        )
        assert_same_run(ours, theirs)
    ours = optax.inject_hyperparams(weight_decay.add_decayed_weights)(weight_decay=0.1, mask=MASK)
    theirs = optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=0.1, mask=MASK)
    assert_same_run(optax.chain(ours, adam.sgd(0.1)), optax.chain(theirs, optax.sgd(0.1)))


def test_hyperparameter_checks_do_not_depend_on_jit():
    """The same scalar arrays pass inside and outside ``jit``; a non-scalar fails in both."""
    for value in (
        jnp.asarray(3),
        jnp.asarray(0.5),
        jnp.asarray(0.5, jnp.bfloat16),
        jnp.asarray(0.5 + 0j),
    ):
        checks.hyperparameter("x", value, 0.0)
        jax.jit(lambda v: checks.hyperparameter("x", v, 0.0))(value)
    for value in (jnp.ones(2), jnp.asarray(True)):
        with pytest.raises(TypeError, match="x"):
            checks.hyperparameter("x", value, 0.0)
        with pytest.raises(TypeError, match="x"):
            jax.jit(lambda v: checks.hyperparameter("x", v, 0.0))(value)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (adam.sgd(-0.05), optax.sgd(-0.05)),  # gradient ascent
        # trace(decay=1): a running sum
        (adam.sgd(0.01, momentum=1.0), optax.sgd(0.01, momentum=1.0)),
        (adam.sgd(0.01, momentum=-0.3), optax.sgd(0.01, momentum=-0.3)),  # negative momentum
        (adam.adam(0.01, eps=0.0, eps_root=1e-10), optax.adam(0.01, eps=0.0, eps_root=1e-10)),
        (adam.adagrad(0.1, eps=0.0), optax.adagrad(0.1, eps=0.0)),
        (
            optax.chain(schedules.clip_by_global_norm(0.0), adam.sgd(0.1)),
            optax.chain(optax.clip_by_global_norm(0.0), optax.sgd(0.1)),
        ),
        (
            adam.adamw(0.01, mask=jax.tree.map(np.bool_, {"dense": True, "scale": False})),
            optax.adamw(0.01, mask={"dense": True, "scale": False}),
        ),
    ],
    ids=[
        "negative-rate",
        "momentum-1",
        "negative-momentum",
        "eps-0-eps-root",
        "adagrad-eps-0",
        "clip-0",
        "numpy-mask",
    ],
)
def test_values_optax_accepts_with_a_meaning_are_accepted(ours, theirs):
    assert_same_run(ours, theirs)


def test_accumulator_and_moment_dtypes():
    params = tree(0)
    for ours, theirs in [
        (
            adam.sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16),
            optax.sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16),
        ),
        (adam.adam(0.01, mu_dtype=jnp.bfloat16), optax.adam(0.01, mu_dtype=jnp.bfloat16)),
    ]:
        assert paths(ours.init(params)) == paths(theirs.init(params))
        assert_same_run(ours, theirs)
    with pytest.raises(TypeError, match="mu_dtype"):
        adam.adam(0.01, mu_dtype="not a dtype")

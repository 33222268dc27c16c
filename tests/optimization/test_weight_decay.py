import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from impl import twins
from impl.deep_networks import dnn
from impl.optimization import adam, weight_decay, weight_decay_experiment

from optimizer_runs import relative_difference
from optimizer_runs import run_steps as run_on
from twin_checks import load_twins

RTOL = 1e-6


def random_tree(seed: int) -> dict:
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)

    return {
        "encoder": {"kernel": normal(5, 4), "bias": normal(4)},
        "decoder": [
            {"kernel": normal(4, 4), "bias": normal(4)},
            {"kernel": normal(4, 3, 2), "bias": normal(2)},
        ],
        "scale": normal(),
    }


def run_steps(opt, seed: int = 0, steps: int = 200):
    """``steps`` updates of ``opt`` from ``random_tree(seed)`` in one compiled scan."""
    return run_on(opt, random_tree, seed, steps)


MASK_TREE = {
    "encoder": {"kernel": True, "bias": False},
    "decoder": [{"kernel": True, "bias": False}, {"kernel": True, "bias": False}],
    "scale": False,
}
PREFIX_MASK = {"encoder": True, "decoder": False, "scale": True}  # a bool heads a whole subtree


@pytest.mark.parametrize(
    ("decay", "mask"),
    [
        (1e-2, None),
        (0.3, MASK_TREE),
        (0.3, PREFIX_MASK),
        (0.1, weight_decay.matrices_only),
        (optax.linear_schedule(0.5, 0.0, 200), MASK_TREE),
    ],
    ids=["plain", "mask-tree", "mask-prefix", "mask-callable", "schedule"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_add_decayed_weights_equals_optax(decay, mask, seed):
    ours = optax.chain(weight_decay.add_decayed_weights(decay, mask), adam.sgd(0.05, momentum=0.9))
    theirs = optax.chain(optax.add_decayed_weights(decay, mask), optax.sgd(0.05, momentum=0.9))
    assert relative_difference(run_steps(ours, seed), run_steps(theirs, seed)) <= RTOL


def test_add_decayed_weights_composes_inside_optax_adamw_scaffolding():
    ours = optax.chain(
        optax.scale_by_adam(), weight_decay.add_decayed_weights(0.1, MASK_TREE), optax.scale(-0.01)
    )
    theirs = optax.adamw(0.01, weight_decay=0.1, mask=MASK_TREE)
    assert relative_difference(run_steps(ours), run_steps(theirs)) <= RTOL


@pytest.mark.parametrize("mask", [None, MASK_TREE, weight_decay.matrices_only])
def test_l2_penalty_gradient_is_add_l2_to_gradient(mask):
    """The coupled form two ways: a penalty on the loss, or ``lambda * w`` added to the gradient."""
    params, lam = random_tree(3), 0.7
    data_grads = jax.tree.map(jnp.cos, params)
    via_loss = jax.tree.map(
        jnp.add, data_grads, jax.grad(weight_decay.l2_penalty)(params, lam, mask)
    )
    transform = weight_decay.add_l2_to_gradient(lam, mask)
    via_transform, _ = transform.update(data_grads, transform.init(params), params)
    chex.assert_trees_all_close(via_loss, via_transform, rtol=1e-6)


def test_l2_penalty_equals_optax_l2_loss():
    params = random_tree(4)
    # l2_loss = x^2 / 2
    reference = 0.25 * sum(jnp.sum(optax.l2_loss(p)) for p in jax.tree.leaves(params))
    chex.assert_trees_all_close(weight_decay.l2_penalty(params, 0.25), reference, rtol=1e-6)
    chex.assert_shape(weight_decay.l2_penalty(params, 0.25), ())


def test_sgd_coupled_and_decoupled_decay_are_the_same():
    """For plain SGD, L2 on the loss and decay added to the step give identical parameters."""
    coupled = optax.chain(weight_decay.add_l2_to_gradient(0.2), adam.sgd(0.05))
    decoupled = optax.chain(weight_decay.add_decayed_weights(0.2), adam.sgd(0.05))
    chex.assert_trees_all_equal(run_steps(coupled), run_steps(decoupled))


def test_adam_with_l2_is_not_adamw():
    coupled = weight_decay_experiment.adam_with_l2(0.01, 0.1)
    decoupled = adam.adamw(0.01, weight_decay=0.1)
    assert relative_difference(run_steps(coupled), run_steps(decoupled)) > 1e-2


def test_pure_decay_adamw_shrinks_geometrically_adam_l2_ignores_lambda():
    w0 = jnp.array([3.0, 1.0, 0.3])
    path = weight_decay_experiment.pure_decay(adam.adamw(0.01, weight_decay=0.5), w0, 100)
    chex.assert_shape(path, (101, 3))
    np.testing.assert_allclose(path[-1], w0 * (1 - 0.01 * 0.5) ** 100, rtol=1e-5)
    small = weight_decay_experiment.pure_decay(
        weight_decay_experiment.adam_with_l2(0.01, 0.1), w0, 100
    )
    large = weight_decay_experiment.pure_decay(
        weight_decay_experiment.adam_with_l2(0.01, 10.0), w0, 100
    )
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mask", [MASK_TREE, weight_decay.matrices_only])
def test_add_decayed_weights_does_not_recompile(mask):
    opt = weight_decay.add_decayed_weights(0.1, mask)
    traces = []

    @jax.jit
    def step(grads, state, params):
        traces.append(1)
        return opt.update(grads, state, params)

    state = opt.init(random_tree(0))
    for seed in range(3):
        _, state = step(random_tree(seed + 1), state, random_tree(seed + 5))
    assert len(traces) == 1


def test_linen_and_nnx_losses_and_gradients_agree():
    x = jax.random.normal(jax.random.key(0), (12, 3))
    y = jnp.sin(x[:, 0])
    linen = dnn.LinenMLP(features=(8, 1))
    model = dnn.NnxMLP([3, 8, 1], rngs=nnx.Rngs(0))
    variables = load_twins(linen, model, (x,))  # the Linen weights, copied into the NNX object
    loss_linen, grads_linen = jax.value_and_grad(
        lambda v: weight_decay_experiment.linen_loss(linen, v, x, y, weight_decay=0.3)
    )(variables)
    loss_nnx, grads_nnx = nnx.value_and_grad(
        lambda m: weight_decay_experiment.nnx_loss(m, x, y, weight_decay=0.3)
    )(model)
    chex.assert_trees_all_close(loss_linen, loss_nnx, rtol=1e-6)
    chex.assert_trees_all_close(twins.pure(grads_nnx), grads_linen["params"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: weight_decay.add_decayed_weights(-0.1), "weight_decay"),
        (lambda: weight_decay.add_l2_to_gradient(-1.0), "weight_decay"),
        (lambda: weight_decay.l2_penalty(random_tree(0), -0.1), "weight_decay"),
        (lambda: weight_decay.add_decayed_weights(0.1, mask={"encoder": 1}), "mask"),
        (lambda: weight_decay.l2_penalty(random_tree(0), 0.1, mask={"encoder": True}), "mask"),
    ],
)
def test_weight_decay_rejects_bad_settings(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "mask",
    [
        {"encoder": True},
        {**MASK_TREE, "head": True},
        lambda params: {"encoder": True},
        [True, False],
    ],
    ids=["missing", "extra", "callable", "list"],
)
def test_add_decayed_weights_rejects_a_mask_that_does_not_fit_at_init(mask):
    opt = weight_decay.add_decayed_weights(0.1, mask)
    with pytest.raises(ValueError, match="mask"):
        opt.init(random_tree(0))


def test_add_decayed_weights_needs_params():
    opt = weight_decay.add_decayed_weights(0.1)
    params = random_tree(0)
    with pytest.raises(ValueError, match="params"):
        opt.update(params, opt.init(params))


@pytest.mark.claim
def test_claim_test_error_is_u_shaped_in_decay(seed):
    report = weight_decay_experiment.experiment(seed=seed)
    m = report.metrics
    assert m["best_lambda"] > 0
    assert m["best_over_no_decay"] < 0.75  # the best decay beats no decay clearly (0.37-0.51 seen)
    # and too much decay hurts again
    assert m["test_error_largest_lambda"] > 1.2 * m["test_error_best"]
    assert m["train_error_no_decay"] < 1e-3  # without decay the network fits the noise
    # L2 inside Adam ignores lambda under the penalty alone; AdamW does not.
    assert m["adam_l2_tenfold_decay_change"] < 1e-4
    assert m["adamw_tenfold_decay_change"] > 0.3
    assert m["adamw_shrink_factor_spread"] < 1e-5  # every weight shrinks by the same factor


def test_masks_of_jax_and_numpy_booleans_are_accepted():
    mask = {"encoder": jnp.asarray(True), "decoder": np.bool_(False), "scale": True}
    ours = optax.chain(weight_decay.add_decayed_weights(0.3, mask), adam.sgd(0.05))
    theirs = optax.chain(optax.add_decayed_weights(0.3, mask), optax.sgd(0.05))
    assert relative_difference(run_steps(ours), run_steps(theirs)) <= RTOL
    python_mask = {"encoder": True, "decoder": False, "scale": True}
    chex.assert_trees_all_close(
        weight_decay.l2_penalty(random_tree(0), 0.5, mask),
        weight_decay.l2_penalty(random_tree(0), 0.5, python_mask),
    )


@pytest.mark.parametrize("decay", [0.1, optax.constant_schedule(0.1)])
@pytest.mark.parametrize("mask", [None, MASK_TREE])
def test_decay_state_is_optaxs(decay, mask):
    params = random_tree(0)
    ours = weight_decay.add_decayed_weights(decay, mask).init(params)
    theirs = optax.add_decayed_weights(decay, mask).init(params)
    assert type(ours).__name__ == type(theirs).__name__
    assert jax.tree.structure(ours).num_leaves == jax.tree.structure(theirs).num_leaves

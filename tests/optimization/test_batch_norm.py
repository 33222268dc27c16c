import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl import twins
from impl.optimization import batch_norm as bn
from impl.optimization import batch_norm_experiment

from twin_checks import assert_twins_agree


def _x(shape=(32, 6), seed=0):
    return 1.5 + 2.0 * jax.random.normal(jax.random.key(seed), shape)


def _params(d, seed=1):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return 1.0 + 0.1 * jax.random.normal(k1, (d,)), 0.1 * jax.random.normal(k2, (d,))


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 3, 7), (2, 9, 4)])
def test_batch_norm_shapes_and_dtypes(shape):
    d = shape[-1]
    scale, bias = _params(d)
    y, (mean, var) = bn.batch_norm(
        _x(shape), scale, bias, jnp.zeros(d), jnp.ones(d), use_running_average=False
    )
    chex.assert_shape(y, shape)
    chex.assert_shape([mean, var], (d,))
    chex.assert_type([y, mean, var], jnp.float32)


def test_batch_norm_standardises_each_feature_over_the_batch():
    x = _x((256, 4))
    d = x.shape[-1]
    y, _ = bn.batch_norm(
        x, jnp.ones(d), jnp.zeros(d), jnp.zeros(d), jnp.ones(d), use_running_average=False
    )
    chex.assert_trees_all_close(y.mean(axis=0), jnp.zeros(d), atol=1e-5)
    chex.assert_trees_all_close(y.std(axis=0), jnp.ones(d), atol=1e-4)


def _run_both(x_batches, axis=-1, eval_x=None):
    """Apply ours and flax.linen.BatchNorm in training mode to each batch; return outputs and
    variables."""
    ours, theirs = bn.LinenBatchNorm(axis=axis), nn.BatchNorm(axis=axis, use_fast_variance=False)
    v = ours.init(jax.random.key(0), x_batches[0], use_running_average=False)
    w = theirs.init(jax.random.key(0), x_batches[0], use_running_average=False)
    chex.assert_trees_all_equal_structs(v, w)
    scale, bias = _params(x_batches[0].shape[axis])
    v = w = {"params": {"scale": scale, "bias": bias}, "batch_stats": v["batch_stats"]}
    outs = []
    for x in x_batches:
        y1, s1 = ours.apply(v, x, use_running_average=False, mutable=["batch_stats"])
        y2, s2 = theirs.apply(w, x, use_running_average=False, mutable=["batch_stats"])
        v, w = {**v, **s1}, {**w, **s2}
        outs.append((y1, y2))
    if eval_x is not None:
        outs.append(
            (
                ours.apply(v, eval_x, use_running_average=True),
                theirs.apply(w, eval_x, use_running_average=True),
            )
        )
    return outs, v, w


@pytest.mark.parametrize(("shape", "axis"), [((16, 5), -1), ((4, 5, 5, 3), -1), ((4, 3, 5, 5), 1)])
def test_batch_norm_matches_flax_linen_batchnorm_in_train_and_eval_mode(shape, axis):
    batches = [_x(shape, seed=s) * (1 + s) + s for s in range(4)]  # statistics that drift
    outs, v, w = _run_both(batches, axis=axis, eval_x=_x(shape, seed=9))
    for ours, theirs in outs:
        chex.assert_trees_all_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # running averages
    chex.assert_trees_all_close(v["batch_stats"], w["batch_stats"], rtol=1e-5, atol=1e-6)


def test_linen_init_leaves_the_running_statistics_untouched():
    v = bn.LinenBatchNorm().init(jax.random.key(0), _x(), use_running_average=False)
    chex.assert_trees_all_equal(v["batch_stats"], {"mean": jnp.zeros(6), "var": jnp.ones(6)})


@pytest.mark.parametrize("use_running_average", [False, True])
def test_linen_and_nnx_twins_agree_on_outputs_and_gradients(use_running_average):
    x = _x(seed=10)
    target = jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape) / x.size
    linen = bn.LinenBatchNorm(momentum=0.9)
    assert_twins_agree(
        linen,
        bn.NnxBatchNorm(6, momentum=0.9, use_running_average=use_running_average),
        (x,),
        loss=lambda y: jnp.mean((y - target) ** 2),
        linen_apply=lambda v, x: linen.apply(
            v, x, use_running_average=use_running_average, mutable=["batch_stats"]
        )[0],
        init_kwargs={"use_running_average": False},
        rtol=1e-5,
    )


def test_linen_and_nnx_twins_keep_the_same_running_statistics():
    linen, model = bn.LinenBatchNorm(momentum=0.9), bn.NnxBatchNorm(6, momentum=0.9)
    variables = linen.init(jax.random.key(0), _x((4, 6)), use_running_average=False)
    scale, bias = _params(6)
    variables = {"params": {"scale": scale, "bias": bias}, "batch_stats": variables["batch_stats"]}
    twins.load_linen(model, variables)  # params and batch_stats, key for key
    for step in range(5):
        x = _x(seed=step) * (step + 1)
        y_linen, updates = linen.apply(
            variables, x, use_running_average=False, mutable=["batch_stats"]
        )
        chex.assert_trees_all_close(y_linen, model(x), rtol=1e-6, atol=1e-6)
        variables = {**variables, **updates}
        # running statistics too
        chex.assert_trees_all_close(twins.variables(model), variables, rtol=1e-6)
    # evaluation mode: both normalise with the running averages they collected
    x = _x(seed=11)
    model.eval()
    chex.assert_trees_all_close(
        linen.apply(variables, x, use_running_average=True), model(x), rtol=1e-6
    )


def test_nnx_batchnorm_matches_flax_nnx_batchnorm_state():
    ours, theirs = bn.NnxBatchNorm(6), nnx.BatchNorm(6, use_fast_variance=False, rngs=nnx.Rngs(0))
    for step in range(4):
        x = _x(seed=step) + step
        chex.assert_trees_all_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(
        (ours.mean[...], ours.var[...]), (theirs.mean[...], theirs.var[...]), rtol=1e-5
    )


def test_batch_norm_of_a_constant_input_is_finite_and_honours_eps():
    d = 4
    x = jnp.full((8, d), 3.0)
    scale, bias = _params(d)
    y, (mean, var) = bn.batch_norm(
        x, scale, bias, jnp.zeros(d), jnp.ones(d), use_running_average=False
    )
    chex.assert_tree_all_finite(y)
    chex.assert_trees_all_close(y, jnp.broadcast_to(bias, x.shape))  # x - mu = 0: only beta is left
    grads = jax.grad(
        lambda v: jnp.sum(bn.batch_norm(v, scale, bias, mean, var, use_running_average=False)[0])
    )(x)
    chex.assert_tree_all_finite(grads)
    # eval mode with a zero running variance: the output is (x - mean) / sqrt(eps) exactly
    y, _ = bn.batch_norm(
        x,
        jnp.ones(d),
        jnp.zeros(d),
        jnp.full(d, 2.0),
        jnp.zeros(d),
        use_running_average=True,
        epsilon=0.25,
    )
    chex.assert_trees_all_close(y, jnp.full(x.shape, (3.0 - 2.0) / 0.5))


def test_batch_norm_with_batch_size_one_in_eval_mode():
    d = 6
    running_mean, running_var = jnp.linspace(-1, 1, d), jnp.linspace(0.5, 2.0, d)
    scale, bias = _params(d)
    x = _x((1, d))
    y, stats = bn.batch_norm(x, scale, bias, running_mean, running_var, use_running_average=True)
    row = lambda v: v.reshape(1, -1)  # noqa: E731
    expected = (x - row(running_mean)) / jnp.sqrt(row(running_var) + 1e-5) * row(scale) + row(bias)
    chex.assert_trees_all_close(y, expected, rtol=1e-6)
    chex.assert_trees_all_equal(stats, (running_mean, running_var))  # evaluation never updates them
    # in training mode a batch of one is its own mean: every feature collapses to beta
    y_train, _ = bn.batch_norm(x, scale, bias, running_mean, running_var, use_running_average=False)
    chex.assert_trees_all_close(y_train, bias.reshape(1, -1))


def test_batch_norm_rejects_a_missing_axis():
    d = 6
    with pytest.raises(ValueError, match="axis"):
        bn.batch_norm(
            _x(),
            jnp.ones(d),
            jnp.zeros(d),
            jnp.zeros(d),
            jnp.ones(d),
            use_running_average=False,
            axis=2,
        )
    with pytest.raises(ValueError, match="axis"):
        bn.LinenBatchNorm(axis=-3).init(jax.random.key(0), _x(), use_running_average=False)
    with pytest.raises(TypeError, match="axis"):
        bn.batch_norm(
            _x(),
            jnp.ones(d),
            jnp.zeros(d),
            jnp.zeros(d),
            jnp.ones(d),
            use_running_average=False,
            axis=1.0,
        )


def test_batch_norm_rejects_a_feature_size_that_does_not_match_the_parameters():
    with pytest.raises(ValueError, match=r"x: expected 5 features along axis 1 to match scale"):
        bn.batch_norm(
            _x(), jnp.ones(5), jnp.zeros(5), jnp.zeros(5), jnp.ones(5), use_running_average=False
        )
    with pytest.raises(ValueError, match="running_var"):
        bn.batch_norm(
            _x(),
            jnp.ones(6),
            jnp.zeros(6),
            jnp.zeros(6),
            jnp.ones((6, 1)),
            use_running_average=False,
        )
    with pytest.raises(ValueError, match="x: expected 4 features"):
        bn.NnxBatchNorm(4)(_x())


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"momentum": 1.0}, "momentum"), ({"epsilon": 0.0}, "epsilon")]
)
def test_batch_norm_rejects_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        bn.batch_norm(
            _x(),
            jnp.ones(6),
            jnp.zeros(6),
            jnp.zeros(6),
            jnp.ones(6),
            use_running_average=False,
            **kwargs,
        )
    with pytest.raises(ValueError, match="num_features"):
        bn.NnxBatchNorm(0)


def test_linen_batchnorm_needs_a_mode():
    with pytest.raises(ValueError, match="use_running_average"):
        bn.LinenBatchNorm().init(jax.random.key(0), _x())


def test_forward_in_train_mode_updates_statistics_and_eval_mode_does_not():
    params, stats = bn.init_net(jax.random.key(0), [64, 16, 10], use_bn=True)
    x = _x((32, 64))
    logits, new = bn.forward(params, stats, x, training=True)
    chex.assert_shape(logits, (32, 10))
    assert not np.allclose(new[0]["mean"], stats[0]["mean"])
    _, same = bn.forward(params, stats, x, training=False)
    chex.assert_trees_all_equal(same, stats)


@pytest.mark.claim
def test_claim_bn_trains_at_rates_where_the_plain_net_fails(seed):
    m = batch_norm_experiment.experiment(seed=seed).metrics
    assert m["bn_max_rate"] >= 10 * m["plain_max_rate"]  # 3 vs 0.3
    assert m["bn_rates_that_train"] >= m["plain_rates_that_train"] + 2
    for lr in ("1", "3"):  # the plain net blows up or sticks at chance; the BN net trains
        assert m[f"plain_final_loss_rate_{lr}"] > 1.0
        assert m[f"bn_final_loss_rate_{lr}"] < batch_norm_experiment.TRAINED
    assert m["bn_steps_to_train"] < 0.5 * m["plain_steps_to_train"]
    # train vs eval mode: a batch of one normalises every
    # unit to beta; large batches agree with eval
    assert m["bn_eval_test_accuracy"] > 0.95
    assert m["bn_train_mode_test_accuracy_batch_1"] < 0.2
    assert abs(m["bn_train_mode_test_accuracy_batch_448"] - m["bn_eval_test_accuracy"]) < 0.02


# ---------------------------------------------------------------------------------------
# Drop-in for Flax (issue #11): statistics in float32,
# complex inputs, Flax's keywords and variables.
# ---------------------------------------------------------------------------------------
def test_float16_input_of_scale_300_does_not_overflow_the_variance():
    """In float16 the variance 9e4 overflows (max 65504): outputs were zeroed and running_var
    infinite."""
    x = (300.0 * jax.random.normal(jax.random.key(0), (64, 4))).astype(jnp.float16)
    d = 4
    y, (mean, var) = bn.batch_norm(
        x, jnp.ones(d), jnp.zeros(d), jnp.zeros(d), jnp.ones(d), use_running_average=False
    )
    chex.assert_tree_all_finite((y, mean, var))
    chex.assert_type([mean, var], jnp.float32)  # running statistics stay float32, as Flax's
    chex.assert_trees_all_close(jnp.std(y.astype(jnp.float32), axis=0), jnp.ones(d), atol=1e-2)
    theirs = nn.BatchNorm(use_running_average=False)
    w = theirs.init(jax.random.key(0), x)
    expected, _ = theirs.apply(w, x, mutable=["batch_stats"])
    chex.assert_trees_all_close(y, expected, rtol=1e-3, atol=1e-3)


def test_complex_batch_statistics_use_the_squared_magnitude():
    x = _x((32, 6)) + 1j * _x((32, 6), seed=5)
    mean, var = bn.batch_stats(x)
    chex.assert_type(var, jnp.float32)
    np.testing.assert_allclose(
        var, np.mean(np.abs(np.asarray(x) - np.asarray(mean)) ** 2, axis=0), rtol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"use_bias": False, "momentum": 0.9},
        {"use_scale": False, "epsilon": 1e-3},
        {"axis": 1},
        {"axis": (1, 3)},
        {"dtype": jnp.bfloat16, "param_dtype": jnp.bfloat16},
    ],
    ids=[
        "default",
        "no-bias",
        "no-scale-epsilon",
        "channels-first",
        "two-feature-axes",
        "bfloat16",
    ],
)
def test_flax_batchnorm_variables_load_into_ours(kwargs):
    """Init ``flax.linen.BatchNorm`` (Flax's defaults), load its variables into ours: same
    outputs."""
    x = _x((4, 3, 5, 6))
    theirs, ours = nn.BatchNorm(**kwargs), bn.LinenBatchNorm(**kwargs)
    variables = theirs.init(jax.random.key(0), x, use_running_average=False)
    variables = jax.tree.map(lambda v: v + 0.1, variables)  # not the identity
    chex.assert_trees_all_equal_shapes_and_dtypes(
        ours.init(jax.random.key(0), x, use_running_average=False), variables
    )
    tol = 2e-2 if kwargs.get("dtype") == jnp.bfloat16 else 1e-4
    y1, s1 = ours.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    y2, s2 = theirs.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    chex.assert_type(y1, y2.dtype)
    chex.assert_trees_all_close((y1, s1), (y2, s2), rtol=tol, atol=tol)
    evaluated = ours.apply(variables, x, use_running_average=True)
    chex.assert_trees_all_close(
        evaluated, theirs.apply(variables, x, use_running_average=True), rtol=tol, atol=tol
    )
    # NNX takes one feature axis, as nnx.BatchNorm
    if not isinstance(kwargs.get("axis", -1), tuple):
        size = x.shape[kwargs.get("axis", -1)]
        model = bn.NnxBatchNorm(size, use_running_average=True, **kwargs)
        twins.load_linen(model, variables)
        chex.assert_trees_all_close(model(x), evaluated, rtol=tol, atol=tol)

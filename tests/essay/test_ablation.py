import chex
import jax
import jax.numpy as jnp
import pytest

from impl.essay import ablation


def test_deep_net_shapes_for_every_switch_setting():
    params = ablation.init_deep_net(jax.random.key(0), depth=3, width=8)
    x = jax.random.uniform(jax.random.key(1), (5, 64))
    for v in ablation.VARIANTS:
        logits = ablation.deep_net(
            params, x, jnp.asarray([v.relu, v.residual, v.norm], jnp.float32)
        )
        chex.assert_shape(logits, (5, 10))
        chex.assert_tree_all_finite(logits)


def test_switches_select_the_trick():
    params = ablation.init_deep_net(jax.random.key(0), depth=1, width=8)
    x = jax.random.uniform(jax.random.key(1), (4, 64))
    h = x @ params["inp"]["kernel"] + params["inp"]["bias"].reshape(1, -1)
    z = h @ params["blocks"]["kernel"][0] + params["blocks"]["bias"][0].reshape(1, -1)
    plain_sigmoid = jax.nn.sigmoid(z)
    residual_relu = h + jax.nn.relu(z)

    def out(hidden):
        return hidden @ params["out"]["kernel"] + params["out"]["bias"].reshape(1, -1)

    chex.assert_trees_all_close(
        ablation.deep_net(params, x, jnp.asarray([0.0, 0.0, 0.0])), out(plain_sigmoid), rtol=1e-5
    )
    chex.assert_trees_all_close(
        ablation.deep_net(params, x, jnp.asarray([1.0, 1.0, 0.0])), out(residual_relu), rtol=1e-5
    )


def test_the_norm_switch_uses_topic_2_6s_layer_norm():
    from impl.optimization.layer_norm import layer_norm

    params = ablation.init_deep_net(jax.random.key(0), depth=1, width=8)
    params["gain"] = params["gain"] * 2.0
    x = jax.random.uniform(jax.random.key(1), (4, 64))
    h = x @ params["inp"]["kernel"] + params["inp"]["bias"].reshape(1, -1)
    z = layer_norm(h, params["gain"][0], params["shift"][0])
    z = jax.nn.relu(z @ params["blocks"]["kernel"][0] + params["blocks"]["bias"][0].reshape(1, -1))
    expected = z @ params["out"]["kernel"] + params["out"]["bias"].reshape(1, -1)
    chex.assert_trees_all_close(
        ablation.deep_net(params, x, jnp.asarray([1.0, 0.0, 1.0])), expected, rtol=1e-5
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ablation.init_deep_net(jax.random.key(0), depth=0)
    with pytest.raises((ValueError, TypeError), match="steps"):
        ablation.experiment(steps=0)
    with pytest.raises((ValueError, TypeError), match="seed"):
        ablation.experiment(seed=-2)


@pytest.mark.slow
def test_experiment_is_deterministic():
    a, b = ablation.experiment(4, steps=250), ablation.experiment(4, steps=250)
    assert a.metrics == b.metrics
    assert len([k for k in a.metrics if k.startswith("test_acc_")]) == len(ablation.VARIANTS)


@pytest.mark.claim
def test_the_tricks_are_redundant_one_at_a_time_but_not_all_at_once(seed):
    r = ablation.experiment(seed).metrics
    assert r["test_acc_full_recipe"] > 0.9
    for trick in ("relu_sigmoid", "residuals", "normalisation", "adam_plain_sgd"):
        assert r[f"test_acc_without_{trick}"] > 0.85, trick  # observed: 90-97%
    assert r["test_acc_bare_1986_style_network"] < 0.2  # chance is 10%
    assert r["test_acc_plus_residuals_only"] > 0.9
    assert r["test_acc_plus_normalisation_only"] > 0.9
    assert r["test_acc_plus_adam_only"] < 0.2

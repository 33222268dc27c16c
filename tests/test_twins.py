import chex
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from impl import twins

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code


def _tree(key=0):
    k1, k2 = jax.random.split(jax.random.key(key))
    return {
        "layers": [
            {"kernel": jax.random.normal(k1, (2, 3)), "bias": jnp.zeros(3)},
            {"kernel": jnp.ones((3, 1))},
        ],
        "scale": jax.random.normal(k2, (4,)),
    }


class Holder(nnx.Module):
    def __init__(self, tree, stats=None):
        self.layers = twins.to_nnx(tree["layers"])
        self.scale = twins.to_nnx(tree["scale"])
        if stats is not None:
            self.stats = twins.to_nnx(stats, nnx.BatchStat)


def test_pure_gives_back_exactly_the_declared_tree():
    tree = _tree()
    model = Holder(tree)
    chex.assert_trees_all_equal_structs(twins.pure(model), tree)
    chex.assert_trees_all_equal(twins.pure(model), tree)
    assert isinstance(twins.pure(model.layers), list)


def test_load_linen_copies_every_collection_in_place():
    model = Holder(_tree(0), stats={"mean": jnp.zeros(3)})
    new = _tree(1)
    twins.load_linen(model, {"params": new, "batch_stats": {"stats": {"mean": jnp.ones(3)}}})
    chex.assert_trees_all_equal(twins.pure(model), new)
    chex.assert_trees_all_equal(
        twins.variables(model)["batch_stats"], {"stats": {"mean": jnp.ones(3)}}
    )


def test_load_linen_names_the_paths_that_differ():
    model = Holder(_tree())
    wrong = _tree()
    wrong["offset"] = wrong.pop("scale")
    with pytest.raises(
        ValueError, match=r"only in Linen: \[\"\['offset'\]\"\], only in NNX: \[\"\['scale'\]\"\]"
    ):
        twins.load_linen(model, {"params": wrong})
    bad_shape = _tree()
    bad_shape["scale"] = jnp.zeros(5)
    with pytest.raises(ValueError, match=r"\['scale'\]: expected shape \(4,\), got \(5,\)"):
        twins.load_linen(model, {"params": bad_shape})
    with pytest.raises(ValueError, match="unknown collection 'cache'"):
        twins.load_linen(model, {"cache": {}})


def test_to_nnx_rejects_non_array_leaves():
    with pytest.raises(TypeError, match="tree: expected dicts, lists and arrays"):
        twins.to_nnx({"a": "string"})


def test_pure_works_under_nnx_grad():
    model = Holder(_tree())
    grads = nnx.grad(lambda m: jnp.sum(twins.pure(m.layers)[0]["kernel"] ** 2))(model)
    grads = twins._lists_back(nnx.to_pure_dict(grads))
    chex.assert_trees_all_close(grads["layers"][0]["kernel"], 2 * _tree()["layers"][0]["kernel"])


def test_declare_registers_one_linen_param_per_entry_of_the_init_tree():
    import flax.linen as nn

    def init(key, d):
        k1, k2 = jax.random.split(key)
        return {
            "w": jax.random.normal(k1, (d, 2)),
            "layers": [{"b": jnp.zeros(2)}],
            "s": jax.random.normal(k2, (1,)),
        }

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            params = twins.declare(self, init, x.shape[-1])
            return (
                x @ params["w"] + params["layers"][0]["b"].reshape(1, 2) + params["s"].reshape(1, 1)
            )

    variables = Model().init(jax.random.key(0), jnp.ones((3, 4)))
    chex.assert_trees_all_equal_structs(
        twins._plain(variables["params"]), init(jax.random.key(0), 4)
    )
    with pytest.raises(TypeError, match="init_fn: expected a function returning a dict"):

        class Bad(nn.Module):
            @nn.compact
            def __call__(self, x):
                return twins.declare(self, lambda key: jnp.zeros(2))

        Bad().init(jax.random.key(0), jnp.ones(2))

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl.deep_networks import unet


def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape)


# ---------------------------------------------------------------------------------------
# Shapes and dtypes
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("skips", [True, False])
@pytest.mark.parametrize(("depth", "size"), [(1, 6), (2, 16), (3, 24)])
def test_unet_shapes_and_dtypes(skips, depth, size):
    params = unet.init_unet(jax.random.key(0), 3, 2, base=4, depth=depth, skips=skips)
    logits = unet.unet(params, _normal(1, (2, size, size, 3)))
    chex.assert_shape(logits, (2, size, size, 2))
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)


def test_skips_double_the_input_of_each_expanding_level():
    with_skips = unet.init_unet(jax.random.key(0), base=4, depth=2, skips=True)
    without = unet.init_unet(jax.random.key(0), base=4, depth=2, skips=False)
    assert [u["convs"][0]["kernel"].shape[2] for u in with_skips["up"]] == [16, 8]
    assert [u["convs"][0]["kernel"].shape[2] for u in without["up"]] == [8, 4]


def test_skip_connections_carry_fine_detail_to_the_output():
    """With skips, the output depends on the first level's features directly: perturbing one input
    pixel changes the logits in a small neighbourhood even when the bottleneck is blind to it."""
    params = unet.init_unet(jax.random.key(0), base=4, depth=2, skips=True)
    x = _normal(1, (1, 16, 16, 3))
    jac = jax.grad(lambda x: unet.unet(params, x)[0, 5, 5, 0])(x)  # d logit(5, 5) / d pixels
    assert float(jnp.abs(jac[0, 5, 5]).sum()) > 0


# ---------------------------------------------------------------------------------------
# Up-convolution against Flax; the loss against Optax
# ---------------------------------------------------------------------------------------
def test_up_conv_paints_one_block_per_input_pixel():
    x, w, b = _normal(0, (1, 3, 2, 4)), _normal(1, (2, 2, 4, 5)), _normal(2, (5,))
    y = unet.up_conv(x, w, b)
    chex.assert_shape(y, (1, 6, 4, 5))
    for i in range(3):
        for j in range(2):
            for a in range(2):
                for c in range(2):
                    chex.assert_trees_all_close(y[0, 2 * i + a, 2 * j + c], x[0, i, j] @ w[a, c] + b, rtol=1e-5)


def test_up_conv_matches_flax_conv_transpose():
    """Flax's ConvTranspose (like lax.conv_transpose) slides the kernel flipped in space:
    ours with ``w`` equals theirs with ``w[::-1, ::-1]``."""
    x, w, b = _normal(0, (2, 4, 4, 3)), _normal(1, (2, 2, 3, 6)), _normal(2, (6,))
    ref = nn.ConvTranspose(6, (2, 2), strides=(2, 2), padding="VALID")
    theirs = lambda x, w, b: ref.apply({"params": {"kernel": w[::-1, ::-1], "bias": b}}, x)  # noqa: E731
    chex.assert_trees_all_close(unet.up_conv(x, w, b), theirs(x, w, b), rtol=1e-5, atol=1e-6)
    grad = lambda f: jax.grad(lambda *a: jnp.sum(f(*a) ** 2), argnums=(0, 1, 2))(x, w, b)  # noqa: E731
    chex.assert_trees_all_close(grad(unet.up_conv), grad(theirs), rtol=1e-5, atol=1e-5)


def test_binary_cross_entropy_matches_optax():
    import optax

    logits, targets = 4 * _normal(0, (3, 5, 5, 1)), (jax.random.uniform(jax.random.key(1), (3, 5, 5, 1)) > 0.5)
    targets = targets.astype(jnp.float32)
    ref = optax.sigmoid_binary_cross_entropy(logits, targets).mean()
    chex.assert_trees_all_close(unet.binary_cross_entropy(logits, targets), ref, rtol=1e-6)


def test_iou_on_hand_made_masks():
    truth = jnp.zeros((2, 4, 4, 1)).at[:, :2, :2].set(1.0)  # 4 pixels each
    perfect = jnp.where(truth > 0, 5.0, -5.0)
    chex.assert_trees_all_close(unet.iou(perfect, truth), 1.0)
    shifted = jnp.where(jnp.roll(truth, 1, axis=2) > 0, 5.0, -5.0)  # 2 of 4 pixels overlap
    chex.assert_trees_all_close(unet.iou(shifted, truth), 2 / 6)
    chex.assert_trees_all_close(unet.iou(-perfect, truth), 0.0)


# ---------------------------------------------------------------------------------------
# Linen / NNX twins
# ---------------------------------------------------------------------------------------
def _copy_into_nnx(p, model):
    def put(conv, layer):
        conv.kernel[...], conv.bias[...] = layer["kernel"], layer["bias"]

    for block, convs in zip(model.down, p["down"]):
        for conv, layer in zip(block.convs, convs):
            put(conv, layer)
    for conv, layer in zip(model.bottom.convs, p["bottom"]):
        put(conv, layer)
    for up, stage in zip(model.up, p["up"]):
        put(up, stage["up"])
        for conv, layer in zip(up.block.convs, stage["convs"]):
            put(conv, layer)
    put(model.out, p["out"])


def _as_linen(g):
    """NNX gradients (``nnx.to_pure_dict``) in the Linen parameters' layout."""
    listed = lambda d: [d[i] for i in sorted(d)]  # noqa: E731
    return {
        "down": [listed(b["convs"]) for b in listed(g["down"])],
        "bottom": listed(g["bottom"]["convs"]),
        "up": [
            {"up": {"kernel": u["kernel"], "bias": u["bias"]}, "convs": listed(u["block"]["convs"])}
            for u in listed(g["up"])
        ],
        "out": g["out"],
    }


@pytest.mark.parametrize("skips", [True, False])
def test_linen_and_nnx_twins_agree(skips):
    x = _normal(0, (2, 12, 12, 3))
    masks = (jax.random.uniform(jax.random.key(1), (2, 12, 12, 1)) > 0.7).astype(jnp.float32)
    linen = unet.LinenUNet(base=4, skips=skips)
    variables = linen.init(jax.random.key(0), x)
    model = unet.NnxUNet(base=4, skips=skips, rngs=nnx.Rngs(1))
    _copy_into_nnx(variables["params"], model)
    chex.assert_trees_all_close(linen.apply(variables, x), model(x), rtol=1e-5, atol=1e-6)
    grads_linen = jax.grad(lambda v: unet.binary_cross_entropy(linen.apply(v, x), masks))(variables)["params"]
    grads_nnx = nnx.to_pure_dict(nnx.grad(lambda m: unet.binary_cross_entropy(m(x), masks))(model))
    chex.assert_trees_all_close(grads_linen, _as_linen(grads_nnx), rtol=1e-4, atol=1e-6)


def test_linen_module_matches_the_pure_function():
    x = _normal(0, (1, 12, 12, 3))
    linen = unet.LinenUNet(base=4)
    variables = linen.init(jax.random.key(0), x)
    chex.assert_trees_all_close(linen.apply(variables, x), unet.unet(variables["params"], x), rtol=1e-6)


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: unet.NnxUNet(rngs=nnx.Rngs(0))(jnp.ones((2, 3, 16, 16))), ValueError, "x: .*channels-first"),
        (
            lambda: unet.LinenUNet().init(jax.random.key(0), jnp.ones((2, 3, 16, 16))),
            ValueError,
            r"x: expected NHWC .* with 3 channels, got shape \(2, 3, 16, 16\); it looks channels-first",
        ),
        (
            lambda: unet.NnxUNet(rngs=nnx.Rngs(0))(jnp.ones((1, 15, 15, 3))),
            ValueError,
            r"x: height and width must be divisible by 2\*\*depth = 4 .* got 15x15",
        ),
        (
            lambda: unet.LinenUNet(depth=3).init(jax.random.key(0), jnp.ones((1, 12, 12, 3))),
            ValueError,
            r"divisible by 2\*\*depth = 8",
        ),
        (
            lambda: unet.unet(unet.init_unet(jax.random.key(0), base=2), jnp.ones((1, 18, 18, 3))),
            ValueError,
            "x: height and width",
        ),
        (
            lambda: unet.NnxUNet(rngs=nnx.Rngs(0))(jnp.ones((1, 8, 8, 3))),
            ValueError,
            "x: a 8x8 image pooled 2 times leaves a bottleneck smaller than its 3x3 kernels",
        ),
        (lambda: unet.NnxUNet(depth=0, rngs=nnx.Rngs(0)), ValueError, "depth"),
        (lambda: unet.NnxUNet(base=-2, rngs=nnx.Rngs(0)), ValueError, "base"),
        (lambda: unet.LinenUNet(in_channels=0).init(jax.random.key(0), jnp.ones((1, 8, 8, 3))), ValueError, "in_"),
        (lambda: unet.experiment(size=18), ValueError, "size: expected a multiple of 4"),
        (lambda: unet.experiment(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_input_is_rejected_before_compute(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ---------------------------------------------------------------------------------------
# The claim
# ---------------------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_skip_connections_clearly_raise_iou(seed):
    m = unet.experiment(seed=seed).metrics
    assert m["iou_with_skips"] > 0.9
    assert m["iou_with_skips"] > m["iou_without_skips"] + 0.1
    assert m["train_loss_with_skips"] < m["train_loss_without_skips"]
    assert np.isfinite(m["iou_without_skips"])

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl.deep_networks import cnn, unet, unet_experiment
from impl.optimization.relu import relu

from twin_checks import assert_twins_agree


def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape)


# ---------------------------------------------------------------------------------------
# Shapes and dtypes
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("skips", [True, False])
@pytest.mark.parametrize(("depth", "size"), [(1, 6), (2, 16), (3, 24)])
def test_unet_shapes_and_dtypes(skips, depth, size):
    params = unet.init_unet(jax.random.key(0), 3, 2, base=4, depth=depth, skips=skips)
    logits = unet.unet(params, _normal(1, (2, size, size, 3)), skips=skips)
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
# The reusable blocks: shapes, explicit skips, and the U-Net they build
# ---------------------------------------------------------------------------------------
def test_conv_block_keeps_the_size_and_sets_the_channels():
    block = unet.init_conv_block(jax.random.split(jax.random.key(0)), 3, 5)
    assert [layer["kernel"].shape for layer in block] == [(3, 3, 3, 5), (3, 3, 5, 5)]
    h = unet.conv_block(block, _normal(1, (2, 7, 6, 3)))
    chex.assert_shape(h, (2, 7, 6, 5))
    chex.assert_type(h, jnp.float32)
    assert float(jnp.min(h)) >= 0.0  # ends in a ReLU


@pytest.mark.parametrize("widths", [(4,), (4, 8), (3, 6, 12)])
def test_down_path_returns_the_pooled_features_and_one_skip_per_level(widths):
    depth = len(widths)
    params = unet.init_down_path(jax.random.split(jax.random.key(0), 2 * depth), 2, widths)
    size = 3 * 2**depth
    h, skips = unet.down_path(params, _normal(1, (2, size, size, 2)))
    chex.assert_shape(h, (2, 3, 3, widths[-1]))
    assert len(skips) == depth
    for level, (skip, c) in enumerate(zip(skips, widths)):
        chex.assert_shape(skip, (2, size >> level, size >> level, c))


@pytest.mark.parametrize("skips", [True, False])
@pytest.mark.parametrize("widths", [(4,), (4, 8), (3, 6, 12)])
def test_up_path_takes_the_skips_explicitly_and_restores_the_size(widths, skips):
    depth, bottom = len(widths), 2 * widths[-1]
    k_down, k_bottom, k_up = jax.random.split(jax.random.key(0), 3)
    down = unet.init_down_path(jax.random.split(k_down, 2 * depth), 2, widths)
    middle = unet.init_conv_block(jax.random.split(k_bottom), widths[-1], bottom)
    up = unet.init_up_path(jax.random.split(k_up, 3 * depth), widths, bottom, skips=skips)
    assert [stage["up"]["kernel"].shape for stage in up] == [
        (2, 2, c_in, c) for c_in, c in zip([bottom, *widths[::-1]], widths[::-1])
    ]
    size = 3 * 2**depth
    h, features = unet.down_path(down, _normal(1, (2, size, size, 2)))
    out = unet.up_path(up, unet.conv_block(middle, h), features if skips else None)
    chex.assert_shape(out, (2, size, size, widths[0]))


def test_up_path_uses_each_skip_at_its_own_level():
    """Perturbing only the finest skip tensor changes the output; the bottleneck input is zero."""
    widths = (4, 8)
    up = unet.init_up_path(jax.random.split(jax.random.key(0), 6), widths, 16)
    skips = [_normal(1, (1, 12, 12, 4)), _normal(2, (1, 6, 6, 8))]
    h = jnp.zeros((1, 3, 3, 16))
    base = unet.up_path(up, h, skips)
    moved = unet.up_path(up, h, [skips[0].at[0, 5, 5].add(3.0), skips[1]])
    assert float(jnp.max(jnp.abs(moved - base))) > 0
    with pytest.raises(
        ValueError, match=r"skips\[-1\]: expected \[batch, height, width\] = \[1, 6, 6\]"
    ):
        unet.up_path(up, h, skips[::-1])  # the finest skip where the deepest belongs


def _init_unet_by_hand(key, in_channels, out_channels, base, depth, skips):
    """``init_unet`` as one loop drawing keys in order — the order the experiment's numbers depend
    on."""
    keys = iter(jax.random.split(key, 6 * depth + 3))
    conv = lambda c_in, c_out: cnn.init_conv(next(keys), 3, c_in, c_out, gain=2.0)  # noqa: E731
    pair = lambda c_in, c_out: [conv(c_in, c_out), conv(c_out, c_out)]  # noqa: E731
    params, c_in = {"down": [], "up": []}, in_channels
    for level in range(depth):
        params["down"].append(pair(c_in, base * 2**level))
        c_in = base * 2**level
    params["bottom"] = pair(c_in, base * 2**depth)
    for level in reversed(range(depth)):
        c = base * 2**level
        up = unet.init_up_conv(next(keys), 2 * c, c)
        params["up"].append({"up": up, "convs": pair(2 * c if skips else c, c)})
    params["out"] = cnn.init_conv(next(keys), 1, base, out_channels)
    return params


def _unet_by_hand(params, x, skips):
    """The forward pass as one function, without the blocks."""

    def block(convs, h):
        return relu(cnn.conv2d(relu(cnn.conv2d(h, **convs[0])), **convs[1]))

    features, h = [], x
    for convs in params["down"]:
        h = block(convs, h)
        features.append(h)
        h = cnn.max_pool(h, 2)
    h = block(params["bottom"], h)
    for level, stage in zip(reversed(range(len(features))), params["up"]):
        h = unet.up_conv(h, **stage["up"])
        if skips:
            h = jnp.concatenate([features[level], h], axis=-1)
        h = block(stage["convs"], h)
    return cnn.conv2d(h, **params["out"])


@pytest.mark.parametrize("skips", [True, False])
@pytest.mark.parametrize(
    ("depth", "size", "impl"), [(1, 6, "threefry2x32"), (2, 16, "rbg"), (3, 24, "threefry2x32")]
)
def test_unet_built_from_the_blocks_equals_the_one_piece_network(depth, size, impl, skips):
    key = jax.random.key(3, impl=impl)  # the experiment uses "rbg" keys
    params = unet.init_unet(key, 3, 2, base=4, depth=depth, skips=skips)
    chex.assert_trees_all_equal(params, _init_unet_by_hand(key, 3, 2, 4, depth, skips))
    x = _normal(1, (2, size, size, 3))
    chex.assert_trees_all_equal(unet.unet(params, x, skips=skips), _unet_by_hand(params, x, skips))


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
                    chex.assert_trees_all_close(
                        y[0, 2 * i + a, 2 * j + c], x[0, i, j] @ w[a, c] + b, rtol=1e-5
                    )


def test_up_conv_matches_flax_conv_transpose():
    """Flax's ConvTranspose (like lax.conv_transpose) slides the kernel flipped in space:
    ours with ``w`` equals theirs with ``w[::-1, ::-1]``."""
    x, w, b = _normal(0, (2, 4, 4, 3)), _normal(1, (2, 2, 3, 6)), _normal(2, (6,))
    ref = nn.ConvTranspose(6, (2, 2), strides=(2, 2), padding="VALID")

    def theirs(x, w, b):
        return ref.apply({"params": {"kernel": w[::-1, ::-1], "bias": b}}, x)

    chex.assert_trees_all_close(unet.up_conv(x, w, b), theirs(x, w, b), rtol=1e-5, atol=1e-6)

    def grad(f):
        return jax.grad(lambda *a: jnp.sum(f(*a) ** 2), argnums=(0, 1, 2))(x, w, b)

    chex.assert_trees_all_close(grad(unet.up_conv), grad(theirs), rtol=1e-5, atol=1e-5)


def test_binary_cross_entropy_matches_optax():
    import optax

    logits = 4 * _normal(0, (3, 5, 5, 1))
    targets = jax.random.uniform(jax.random.key(1), (3, 5, 5, 1)) > 0.5
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
@pytest.mark.parametrize("skips", [True, False])
def test_linen_and_nnx_twins_agree(skips):
    x = _normal(0, (2, 12, 12, 3))
    masks = (jax.random.uniform(jax.random.key(1), (2, 12, 12, 1)) > 0.7).astype(jnp.float32)
    assert_twins_agree(
        unet.LinenUNet(base=4, skips=skips),
        unet.NnxUNet(base=4, skips=skips, rngs=nnx.Rngs(1)),
        (x,),
        loss=lambda logits: unet.binary_cross_entropy(logits, masks),
    )


def test_linen_params_are_the_tree_init_unet_declares():
    x = _normal(0, (1, 12, 12, 3))
    linen = unet.LinenUNet(base=4)
    variables = linen.init(jax.random.key(0), x)
    layers = variables["params"]["layers"]
    chex.assert_trees_all_equal_structs(layers, unet.init_unet(jax.random.key(0), base=4))
    chex.assert_trees_all_close(linen.apply(variables, x), unet.unet(layers, x), rtol=1e-6)


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: unet.NnxUNet(rngs=nnx.Rngs(0))(jnp.ones((2, 3, 16, 16))),
            ValueError,
            "x: .*channels-first",
        ),
        (
            lambda: unet.LinenUNet().init(jax.random.key(0), jnp.ones((2, 3, 16, 16))),
            ValueError,
            r"x: expected NHWC .* with 3 channels, got shape \(2, 3, 16, 16\); it looks "
            r"channels-first",
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
        (
            lambda: unet.LinenUNet(in_channels=0).init(jax.random.key(0), jnp.ones((1, 8, 8, 3))),
            ValueError,
            "in_",
        ),
        (
            lambda: unet.unet(
                unet.init_unet(jax.random.key(0), base=4, skips=False), jnp.ones((1, 16, 16, 3))
            ),
            ValueError,
            r"skips\[-1\]: .* were the parameters made with skips=False",
        ),
        (
            lambda: unet.up_path(
                unet.init_up_path(jax.random.split(jax.random.key(0), 6), (4, 8), 16),
                jnp.ones((1, 3, 3, 16)),
                [jnp.ones((1, 12, 12, 4))],
            ),
            ValueError,
            r"skips: expected one tensor per level \(2\), got 1",
        ),
        (
            lambda: unet.init_conv_block(jax.random.key(0), 3, 4),
            ValueError,
            r"keys: expected 2 PRNG keys",
        ),
        (
            lambda: unet.init_down_path(jax.random.split(jax.random.key(0), 3), 3, (4, 8)),
            ValueError,
            "keys: expected 4",
        ),
        (lambda: unet_experiment.experiment(size=18), ValueError, "size: expected a multiple of 4"),
        (lambda: unet_experiment.experiment(seed=-1), ValueError, "seed"),
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
    m = unet_experiment.experiment(seed=seed).metrics
    assert m["iou_with_skips"] > 0.9
    assert m["iou_with_skips"] > m["iou_without_skips"] + 0.1
    assert m["train_loss_with_skips"] < m["train_loss_without_skips"]
    assert np.isfinite(m["iou_without_skips"])

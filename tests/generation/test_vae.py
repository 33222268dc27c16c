import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from impl import plotting
from impl.generation import vae as V  # noqa: N812
from impl.generation import vae_experiment

from twin_checks import assert_twins_agree

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code


def _images(seed=0, n=6, shape=V.DIGIT_SHAPE):
    return jax.random.uniform(jax.random.key(seed), (n, *shape))


def _vqvae_params(seed=0, n_tokens=4, d_code=3, n_codes=8):
    return V.init_vqvae(jax.random.key(seed), V.DIGIT_SHAPE, 16, n_tokens, d_code, n_codes)


# ---------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------
def test_vae_shapes_and_dtypes():
    params, x = V.init_vae(jax.random.key(0), V.DIGIT_SHAPE, 32, 5), _images()
    logits, mean, log_var = V.vae(params, x, jax.random.key(1))
    chex.assert_shape([logits, mean, log_var], [(6, 8, 8, 1), (6, 5), (6, 5)])
    bound = V.elbo(params, x, jax.random.key(1))
    chex.assert_shape(list(bound), [(6,)] * 3)
    chex.assert_type([logits, *bound], jnp.float32)
    chex.assert_shape(V.interpolate(mean[:2], mean[2:4], 7), (7, 2, 5))


def test_vqvae_shapes_and_dtypes():
    params, x = _vqvae_params(), _images()
    z = V.vq_encode(params, x)
    chex.assert_shape(z, (6, 4, 3))
    logits, q = V.vqvae(params, x)
    chex.assert_shape(
        [logits, q.z_q, q.indices, q.codebook_loss], [(6, 8, 8, 1), (6, 4, 3), (6, 4), ()]
    )
    chex.assert_type([logits, q.z_q, q.indices], [jnp.float32, jnp.float32, jnp.int32])
    tokens = V.encode_to_indices(params, x)
    chex.assert_shape(tokens, (6, 4))
    images = V.decode_from_indices(params, tokens)
    chex.assert_shape(images, (6, 8, 8, 1))
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_tokens_round_trip_to_the_vqvae_reconstruction():
    """Tokens decode to the VQ-VAE's own reconstruction: the tokenizer topic 5.6 uses."""
    params, x = _vqvae_params(1), _images(1)
    logits, _ = V.vqvae(params, x)
    chex.assert_trees_all_close(
        V.decode_from_indices(params, V.encode_to_indices(params, x)),
        jax.nn.sigmoid(logits),
        atol=1e-6,
    )


# ---------------------------------------------------------------------------------------
# The VAE: reparameterisation, KL, likelihood
# ---------------------------------------------------------------------------------------
def test_gaussian_kl_matches_the_per_dimension_formula_and_zero_at_the_prior():
    mean = jax.random.normal(jax.random.key(0), (5, 4))
    log_var = 0.5 * jax.random.normal(jax.random.key(1), (5, 4))
    sigma2 = np.exp(np.asarray(log_var, np.float64))
    mu = np.asarray(mean, np.float64)
    expected = np.sum(np.log(1.0 / np.sqrt(sigma2)) + (sigma2 + mu**2) / 2.0 - 0.5, axis=-1)
    np.testing.assert_allclose(V.gaussian_kl(mean, log_var), expected, rtol=1e-5)
    chex.assert_trees_all_close(V.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 3))), jnp.zeros(2))


def test_elbo_kl_term_matches_a_monte_carlo_estimate():
    """The analytic KL inside `elbo` equals E_q[log q(z|x) - log p(z)] from 20,000 samples."""
    params, x = V.init_vae(jax.random.key(2), V.DIGIT_SHAPE, 32, 3), _images(2, n=2)
    mean, log_var = V.vae_encode(params, x)
    kl = V.elbo(params, x, jax.random.key(3)).kl
    chex.assert_trees_all_close(kl, V.gaussian_kl(mean, log_var))
    z = jax.vmap(lambda k: V.reparameterize(k, mean, log_var))(
        jax.random.split(jax.random.key(4), 20_000)
    )
    std = jnp.exp(0.5 * log_var)
    log_q = jnp.sum(jax.scipy.stats.norm.logpdf(z, mean[None], std[None]), -1)  # [samples, batch]
    log_p = jnp.sum(jax.scipy.stats.norm.logpdf(z), -1)
    estimate = jnp.mean(log_q - log_p, axis=0)
    stderr = jnp.std(log_q - log_p, axis=0) / np.sqrt(20_000)
    assert bool(jnp.all(jnp.abs(estimate - kl) < 5 * stderr + 1e-4)), (estimate, kl, stderr)


def test_reparameterize_samples_the_posterior_and_is_differentiable():
    mean, log_var = jnp.array([[1.0, -2.0]]), jnp.array([[0.0, np.log(0.25)]], jnp.float32)
    z = jax.vmap(lambda k: V.reparameterize(k, mean, log_var))(
        jax.random.split(jax.random.key(0), 50_000)
    )
    np.testing.assert_allclose(np.asarray(z.mean(0)), [[1.0, -2.0]], atol=0.02)
    np.testing.assert_allclose(np.asarray(z.std(0)), [[1.0, 0.5]], atol=0.02)
    key = jax.random.key(1)
    eps = (V.reparameterize(key, mean, log_var) - mean) / jnp.exp(0.5 * log_var)
    d_mean, d_log_var = jax.grad(
        lambda m, lv: jnp.sum(V.reparameterize(key, m, lv)), argnums=(0, 1)
    )(mean, log_var)
    chex.assert_trees_all_close(d_mean, jnp.ones_like(mean))  # dz/dmean = 1
    chex.assert_trees_all_close(
        d_log_var, 0.5 * jnp.exp(0.5 * log_var) * eps, atol=1e-6
    )  # dz/dlog_var = sigma eps / 2


def test_bernoulli_log_likelihood_matches_optax_cross_entropy():
    logits, x = 3.0 * jax.random.normal(jax.random.key(0), (4, 8, 8, 1)), _images(1, n=4)
    theirs = -optax.sigmoid_binary_cross_entropy(logits, x).reshape(4, -1).sum(-1)
    chex.assert_trees_all_close(V.bernoulli_log_likelihood(logits, x), theirs, rtol=1e-5)


def test_interpolate_ends_at_both_codes_and_is_evenly_spaced():
    z_a, z_b = jnp.zeros((2, 3)), jnp.ones((2, 3))
    path = V.interpolate(z_a, z_b, 5)
    chex.assert_trees_all_close(path[0], z_a)
    chex.assert_trees_all_close(path[-1], z_b)
    chex.assert_trees_all_close(jnp.diff(path, axis=0), jnp.full((4, 2, 3), 0.25), atol=1e-6)


# ---------------------------------------------------------------------------------------
# The VQ layer: nearest codes, straight-through gradient, losses, usage
# ---------------------------------------------------------------------------------------
def test_quantize_picks_the_nearest_code():
    codebook = jax.random.normal(jax.random.key(0), (10, 3))
    z = jax.random.normal(jax.random.key(1), (4, 5, 3))
    q = V.quantize(codebook, z)
    brute = np.argmin(
        np.linalg.norm(np.asarray(z)[..., None, :] - np.asarray(codebook), axis=-1), axis=-1
    )
    np.testing.assert_array_equal(np.asarray(q.indices), brute)
    chex.assert_trees_all_close(q.z_q, codebook[q.indices], atol=1e-6)
    expected = np.mean(np.sum((np.asarray(z) - np.asarray(codebook)[brute]) ** 2, -1))
    np.testing.assert_allclose(
        [q.codebook_loss, q.commitment_loss], [expected, expected], rtol=1e-5
    )


def test_straight_through_gradient_of_z_q_is_the_identity():
    codebook = jax.random.normal(jax.random.key(0), (6, 3))
    z = jax.random.normal(jax.random.key(1), (2, 3))
    jacobian = jax.jacobian(lambda v: V.quantize(codebook, v).z_q)(z)  # [2, 3, 2, 3]
    chex.assert_trees_all_close(jacobian.reshape(6, 6), jnp.eye(6))


def test_codebook_gets_gradient_only_from_the_codebook_loss():
    codebook = jax.random.normal(jax.random.key(0), (6, 3))
    z = jax.random.normal(jax.random.key(1), (5, 3))
    probe = jax.random.normal(jax.random.key(2), (5, 3))
    term = {
        "decoder": lambda c, v: jnp.sum(probe * V.quantize(c, v).z_q),
        "commitment": lambda c, v: V.quantize(c, v).commitment_loss,
        "codebook": lambda c, v: V.quantize(c, v).codebook_loss,
    }
    grads = {name: jax.grad(f, argnums=(0, 1))(codebook, z) for name, f in term.items()}
    chex.assert_trees_all_equal(
        grads["decoder"][0], jnp.zeros_like(codebook)
    )  # no path to the codebook
    chex.assert_trees_all_equal(grads["commitment"][0], jnp.zeros_like(codebook))
    chex.assert_trees_all_equal(
        grads["codebook"][1], jnp.zeros_like(z)
    )  # sg[z]: the encoder is untouched
    chex.assert_trees_all_close(grads["decoder"][1], probe)  # straight through to z
    idx = V.quantize(codebook, z).indices
    chex.assert_trees_all_close(grads["commitment"][1], 2.0 * (z - codebook[idx]) / 5, atol=1e-6)
    expected = (
        jnp.zeros_like(codebook).at[idx].add(2.0 * (codebook[idx] - z) / 5)
    )  # d/de_k of mean ||sg[z] - e_k||^2
    chex.assert_trees_all_close(grads["codebook"][0], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("indices", "perplexity", "dead"),
    [
        (jnp.arange(32) % 8, 8.0, 0),  # uniform over all 8 codes
        (jnp.full((5, 4), 3), 1.0, 7),  # one code takes everything
        (jnp.array([0, 1, 0, 1]), 2.0, 6),  # two codes, evenly
    ],
)
def test_codebook_usage_perplexity_and_dead_codes(indices, perplexity, dead):
    p, d = V.codebook_usage(indices, 8)
    np.testing.assert_allclose(float(p), perplexity, rtol=1e-6)
    assert int(d) == dead


def test_vqvae_loss_is_eq_3():
    params, x = _vqvae_params(3), _images(3)
    loss, terms = V.vqvae_loss(params, x, beta=0.5)
    logits, q = V.vqvae(params, x)
    expected = (
        -jnp.mean(V.bernoulli_log_likelihood(logits, x)) + q.codebook_loss + 0.5 * q.commitment_loss
    )
    chex.assert_trees_all_close(loss, expected, rtol=1e-6)
    chex.assert_trees_all_close(terms["commitment"], q.commitment_loss)


# ---------------------------------------------------------------------------------------
# Linen and NNX twins
# ---------------------------------------------------------------------------------------
def test_vae_twins_agree():
    x, key = _images(4, n=3), jax.random.key(5)

    def loss(out):
        logits, mean, log_var = out
        return -jnp.mean(V.bernoulli_log_likelihood(logits, x) - V.gaussian_kl(mean, log_var))

    assert_twins_agree(
        V.LinenVAE(d_hidden=16, d_latent=3),
        V.NnxVAE(V.DIGIT_SHAPE, 16, 3, rngs=nnx.Rngs(0)),
        (x, key),
        loss=loss,
    )


def test_vector_quantizer_twins_agree_through_the_straight_through_estimator():
    z = jax.random.normal(jax.random.key(6), (4, 5, 3))
    probe = jax.random.normal(jax.random.key(7), (4, 5, 3))

    def loss(q):
        return jnp.sum(probe * q.z_q) + q.codebook_loss + 0.25 * q.commitment_loss

    linen, nnx_model = (
        V.LinenVectorQuantizer(n_codes=8, d_code=3),
        V.NnxVectorQuantizer(8, 3, rngs=nnx.Rngs(0)),
    )
    assert_twins_agree(linen, nnx_model, (z,), loss=loss)


def test_vqvae_twins_agree():
    x = _images(8, n=3)

    def loss(out):
        logits, q = out
        return (
            -jnp.mean(V.bernoulli_log_likelihood(logits, x))
            + q.codebook_loss
            + 0.25 * q.commitment_loss
        )

    assert_twins_agree(
        V.LinenVQVAE(d_hidden=16, n_tokens=4, d_code=3, n_codes=8),
        V.NnxVQVAE(V.DIGIT_SHAPE, 16, 4, 3, 8, rngs=nnx.Rngs(0)),
        (x,),
        loss=loss,
    )


def test_linen_params_are_the_trees_the_init_functions_declare():
    x = _images(n=2)
    variables = V.LinenVQVAE(d_hidden=16, n_tokens=4, d_code=3, n_codes=8).init(
        jax.random.key(0), x
    )
    chex.assert_trees_all_equal_shapes(variables["params"], _vqvae_params())
    variables = V.LinenVAE(d_hidden=16, d_latent=3).init(jax.random.key(0), x, jax.random.key(1))
    chex.assert_trees_all_equal_shapes(
        variables["params"], V.init_vae(jax.random.key(0), V.DIGIT_SHAPE, 16, 3)
    )


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: V.init_codebook(jax.random.key(0), 0, 4), ValueError, "n_codes"),
        (lambda: V.init_codebook(jax.random.key(0), 8, -1), ValueError, "d_code"),
        (lambda: V.NnxVQVAE(n_codes=0, rngs=nnx.Rngs(0)), ValueError, "n_codes"),
        (lambda: V.NnxVQVAE(n_tokens=0, rngs=nnx.Rngs(0)), ValueError, "n_tokens"),
        (lambda: V.NnxVAE(d_latent=0, rngs=nnx.Rngs(0)), ValueError, "d_latent"),
        (lambda: V.NnxVAE(d_hidden=2.5, rngs=nnx.Rngs(0)), TypeError, "d_hidden"),
        (lambda: V.NnxVAE(image_shape=(8, 8), rngs=nnx.Rngs(0)), ValueError, "image_shape"),
        (
            lambda: V.LinenVAE(d_latent=-3).init(jax.random.key(0), _images(), jax.random.key(1)),
            ValueError,
            "d_latent",
        ),
        (lambda: V.LinenVQVAE(n_codes=0).init(jax.random.key(0), _images()), ValueError, "n_codes"),
        (
            lambda: V.NnxVAE(rngs=nnx.Rngs(0))(jnp.ones((2, 64)), jax.random.key(0)),
            ValueError,
            "images: expected",
        ),
        (
            lambda: V.NnxVAE(rngs=nnx.Rngs(0))(jnp.ones((2, 4, 16, 1)), jax.random.key(0)),
            ValueError,
            r"images: expected shape \[batch, 8, 8, 1\]",
        ),
        (lambda: V.NnxVQVAE(rngs=nnx.Rngs(0))(jnp.ones((2, 1, 8, 8))), ValueError, "images"),
        (lambda: V.vqvae(_vqvae_params(), jnp.ones((2, 6, 6, 1))), ValueError, "64 pixels"),
        (lambda: V.vqvae_loss(_vqvae_params(), _images(), beta=-0.1), ValueError, "beta"),
        (lambda: V.quantize(jnp.ones((4, 3)), jnp.ones((2, 5))), ValueError, "z: expected"),
        (lambda: V.quantize(jnp.ones((4,)), jnp.ones((2, 4))), ValueError, "codebook"),
        (lambda: V.quantize(jnp.ones((0, 3)), jnp.ones((2, 3))), ValueError, "codebook"),
        (
            lambda: V.decode_from_indices(_vqvae_params(), jnp.zeros((2, 5), jnp.int32)),
            ValueError,
            "indices",
        ),
        (lambda: V.decode_from_indices(_vqvae_params(), jnp.zeros((2, 4))), TypeError, "indices"),
        (lambda: V.codebook_usage(jnp.zeros(3, jnp.int32), 0), ValueError, "n_codes"),
        (lambda: V.interpolate(jnp.zeros((1, 2)), jnp.ones((1, 2)), 1), ValueError, "steps"),
        (lambda: vae_experiment.experiment(seed=-1), ValueError, "seed"),
        (lambda: vae_experiment.experiment(steps=0), ValueError, "steps"),
    ],
)
def test_bad_input_is_rejected_before_compute(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ---------------------------------------------------------------------------------------
# The claim
# ---------------------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_elbo_improves_interpolation_is_smooth_and_vq_reconstructs_sharper(seed):
    # The model code above runs under strict dtype promotion; topic 2.8's Adam raises its decay to
    # an int32 step count (`decay ** count`), which strict promotion refuses, so training runs
    # under the standard rules.
    with jax.numpy_dtype_promotion("standard"):
        report = vae_experiment.experiment(seed=seed)
    m = report.metrics
    # Thresholds from seeds 0-9 (worst of ten in brackets): the ELBO improves, nats per test image,
    # and its KL term is positive.
    assert m["vae_elbo"] > m["vae_elbo_start"] + 20.0  # [+24.5]
    assert m["vae_kl"] > 1.0  # [3.27]
    # Latent interpolation is smooth: no step much larger than the average one.
    assert m["interp_step_ratio"] < 1.6  # [1.31]
    # The VQ-VAE reconstructs with less error and sharper than the VAE; its codebook is in use.
    assert m["vq_mse"] < 0.5 * m["vae_mse"]  # [0.35x]
    assert m["vq_sharpness_ratio"] > m["vae_sharpness_ratio"] + 0.25  # [+0.36]
    assert m["vq_recon_class_accuracy"] > m["vae_recon_class_accuracy"] + 0.03  # [+0.076]
    assert m["vq_perplexity"] > 25.0  # [30.1 of 32]
    assert m["vq_dead_codes"] <= 2  # [0]
    plotting.to_svg(report.figure)  # the figure passes the site's size and font checks
    assert report.seconds < 120

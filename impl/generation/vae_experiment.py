"""5.2 VAE and VQ-VAE, the experiment: a VAE and a VQ-VAE on the digits, side by side.

A VAE with 16 Gaussian latents and a VQ-VAE with 16 tokens from a codebook of 32 codes, both
with 1.1's one-hidden-layer tanh MLPs of the same width and a Bernoulli decoder, train on the
same mini-batches of the digits in one compiled loop (the hand-written Adam of topic 2.8). Then,
on the test split: the VAE's ELBO and its KL term; both models' reconstruction error and
sharpness; the codebook's perplexity and dead codes; VAE samples from the prior and both
models' reconstructions scored by the shared digits judge (`impl.generation.judges`); and
interpolations in the VAE's latent space against plain pixel blends. The model lives in
`impl.generation.vae`.

Run it: ``python -m impl 5.2`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.generation import judges
from impl.generation.vae import (
    DIGIT_SHAPE,
    codebook_usage,
    elbo,
    init_vae,
    init_vqvae,
    interpolate,
    vae_decode,
    vae_encode,
    vqvae,
    vqvae_loss,
)
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import even_chunk, train

__all__ = ["BETA", "OPTIMIZER", "SIZES", "experiment", "fit", "init_models", "loss_fn", "sharpness"]


# --8<-- [start:experiment]
SIZES = {"d_hidden": 256, "d_latent": 16, "n_tokens": 16, "d_code": 4, "n_codes": 32}
BETA = 0.25  # the commitment weight of the VQ-VAE paper


def loss_fn(params, batch, key):
    """Minus the VAE's ELBO plus the VQ-VAE's eq. 3, on the same batch: one loop, two models."""
    bound = elbo(params["vae"], batch["x"], key)  # Elbo of [batch], nats per image
    vq, vq_terms = vqvae_loss(params["vqvae"], batch["x"], beta=BETA)
    metrics = {
        "vae_elbo": jnp.mean(bound.elbo),
        "vae_kl": jnp.mean(bound.kl),
        "vq_reconstruction": vq_terms["reconstruction"],
        "vq_commitment": vq_terms["commitment"],
    }
    return -jnp.mean(bound.elbo) + vq, metrics


OPTIMIZER = adam(learning_rate=1e-3)


def init_models(key: jax.Array) -> dict:
    s, k_vae, k_vq = SIZES, *jax.random.split(key)
    return {
        "vae": init_vae(k_vae, DIGIT_SHAPE, s["d_hidden"], s["d_latent"]),
        "vqvae": init_vqvae(
            k_vq, DIGIT_SHAPE, s["d_hidden"], s["n_tokens"], s["d_code"], s["n_codes"]
        ),
    }


def fit(key: jax.Array, *, steps: int, progress=None):
    """Train both models on the training digits, mini-batches of 128, test ELBO every chunk."""
    k_init, k_train = jax.random.split(key)
    digits = _digits()
    return train(
        loss_fn, init_models(k_init), OPTIMIZER, {"x": digits.x_train}, key=k_train, steps=steps,
        batch_size=128, chunk=even_chunk(steps, 250), eval_fn=_test_bound, progress=progress,
        label="5.2 vae",
    )  # fmt: skip


# --8<-- [end:experiment]


@functools.cache
def _digits():
    return data.load_digits(as_images=True, seed=0)


@functools.cache
def _test_images() -> np.ndarray:
    return _digits().x_test  # numpy: a constant inside jit, never a cached tracer


def _test_bound(params) -> dict:
    """Test-split ELBO and KL (nats per image, one fixed sample) and the VQ-VAE's log-likelihood."""
    x = _test_images()
    bound = elbo(params["vae"], x, jax.random.key(0))
    _, vq = vqvae_loss(params["vqvae"], x, beta=BETA)
    return {
        "elbo": jnp.mean(bound.elbo),
        "kl": jnp.mean(bound.kl),
        "vq_reconstruction": vq["reconstruction"],
    }


def _entropy_floor() -> float:
    """The pixels' own entropy, nats per test image: no ``log p(x|z)`` exceeds minus this."""
    x = np.clip(
        _test_images().reshape(len(_test_images()), -1).astype(np.float64), 1e-12, 1 - 1e-12
    )
    return float(np.mean(np.sum(-(x * np.log(x) + (1 - x) * np.log(1 - x)), axis=1)))


def sharpness(images) -> float:
    """Mean squared difference between neighbouring pixels (across and down), ``[n, H, W, C]``:
    a blurred image has smaller steps between pixels than a crisp one."""
    x = np.asarray(images, np.float64)
    across = np.mean((x[:, :, 1:] - x[:, :, :-1]) ** 2)
    down = np.mean((x[:, 1:] - x[:, :-1]) ** 2)
    return float((across + down) / 2)


@jax.jit
def _reconstruct(params, x):
    """Reconstructions in [0, 1]: the VAE decodes its posterior mean, the VQ-VAE its codes."""
    mean, _ = vae_encode(params["vae"], x)
    vae_images = jax.nn.sigmoid(vae_decode(params["vae"], mean))
    logits, q = vqvae(params["vqvae"], x)
    return vae_images, jax.nn.sigmoid(logits), q.indices


def _path_steps(path) -> np.ndarray:
    """Pixel distance between consecutive images of paths:
    ``[steps, pairs, H, W, C] -> [steps - 1, pairs]``."""
    p = np.asarray(path, np.float64).reshape(path.shape[0], path.shape[1], -1)
    return np.linalg.norm(np.diff(p, axis=0), axis=-1)


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 3000) -> Report:
    """Train the VAE and the VQ-VAE side by side; score ELBO, reconstructions, samples, codebook
    usage and latent interpolations on the test split.

    Metrics (test split, nats per image): ``vae_elbo``, ``vae_kl``, ``vae_reconstruction``,
    ``vae_elbo_start``; ``{vae,vq}_mse`` (per pixel), ``{vae,vq}_sharpness_ratio`` (see
    `sharpness`, relative to the test digits), ``{vae,vq}_recon_class_accuracy`` and
    ``{vae,vq}_recon_frechet`` (judge), ``vae_sample_frechet``, ``vae_sample_confidence``;
    ``vq_perplexity``, ``vq_dead_codes``; ``interp_step_ratio`` (largest step / mean step along
    latent paths), ``interp_confidence_{latent,pixel}`` (judge confidence at the path's midpoints).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed)
    k_fit, k_prior, k_pairs = jax.random.split(key, 3)
    result = fit(k_fit, steps=steps, progress=progress)
    params, digits, x_test = result.params, _digits(), _test_images()
    judge = judges.digits_judge()
    x, labels = np.asarray(x_test), digits.y_test

    # The bound on the test split, before and after training (nats per image).
    start_bound, final = _test_bound(init_models(jax.random.split(k_fit)[0])), _test_bound(params)
    m = {"vae_elbo_start": float(start_bound["elbo"]), "vae_elbo": float(final["elbo"])}
    m["vae_kl"] = float(final["kl"])
    m["vae_reconstruction"] = m["vae_elbo"] + m["vae_kl"]
    m["entropy_floor"] = _entropy_floor()
    mean, log_var = vae_encode(params["vae"], x_test)
    kl_per_latent = np.mean(-0.5 * (1.0 + log_var - mean**2 - jnp.exp(log_var)), axis=0)  # [Z]
    m["vae_active_dims"] = float(np.sum(kl_per_latent > 0.1))
    m["vq_reconstruction"] = float(final["vq_reconstruction"])
    prior_kl = SIZES["n_tokens"] * math.log(SIZES["n_codes"])  # uniform prior over codes, sec. 3.1
    m["vq_bound"] = m["vq_reconstruction"] - prior_kl

    # Reconstructions: error, sharpness, and what the judge reads in them.
    vae_rec, vq_rec, indices = _reconstruct(params, x_test)
    for name, rec in (("vae", vae_rec), ("vq", vq_rec)):
        m[f"{name}_mse"] = float(np.mean((np.asarray(rec) - x) ** 2))
        m[f"{name}_sharpness_ratio"] = sharpness(rec) / sharpness(x)
        scores = judges.digit_scores(rec, labels, judge=judge)
        m[f"{name}_recon_class_accuracy"] = scores["class_accuracy"]
        m[f"{name}_recon_frechet"] = scores["frechet"]
    perplexity, dead = codebook_usage(indices, SIZES["n_codes"])
    m["vq_perplexity"], m["vq_dead_codes"] = float(perplexity), float(dead)

    # Samples from the prior p(z) = N(0, I), shown as pixel probabilities.
    z = jax.random.normal(k_prior, (len(x), SIZES["d_latent"]))
    samples = jax.nn.sigmoid(vae_decode(params["vae"], z))
    scores = judges.digit_scores(samples, judge=judge)
    m["vae_sample_frechet"], m["vae_sample_confidence"] = scores["frechet"], scores["confidence"]
    m["vae_sample_sharpness_ratio"] = sharpness(samples) / sharpness(x)
    m["frechet_test_vs_train"] = scores["frechet_test_vs_train"]
    m["judge_test_accuracy"] = judge.test_accuracy

    # Interpolation between test digits of different classes: latent path vs pixel blend.
    a, b = _pairs(k_pairs, labels, 64)
    path_z = interpolate(mean[a], mean[b], 9)  # [9, pairs, Z]
    decode = jax.vmap(lambda codes: jax.nn.sigmoid(vae_decode(params["vae"], codes)))
    latent = decode(path_z)  # [9, pairs, 8, 8, 1]
    t = jnp.linspace(0.0, 1.0, 9).reshape(-1, 1, 1, 1, 1)
    pixel = (1.0 - t) * latent[:1] + t * latent[-1:]  # the straight blend between the same ends
    steps_latent = _path_steps(latent)  # [8, pairs]
    m["interp_step_ratio"] = float(np.median(steps_latent.max(0) / steps_latent.mean(0)))
    conf = {}
    for name, path in (("latent", latent), ("pixel", pixel)):
        probs = jax.nn.softmax(judges.judge_logits(judge, path.reshape(-1, *DIGIT_SHAPE)), -1)
        conf[name] = np.asarray(probs.max(-1)).reshape(9, -1).mean(1)  # [9]: mean over pairs
        m[f"interp_confidence_{name}"] = float(conf[name][2:7].mean())  # the middle of the path

    fig = _figure(result, start_bound, x, vae_rec, vq_rec, samples, latent, pixel, conf, indices)
    title = "5.2 VAE and VQ-VAE — continuous and discrete codes"
    return Report(title, m, _summary(m, len(a)), fig, time.perf_counter() - start)


# --8<-- [end:run]


def _summary(m: dict, n_pairs: int) -> list[str]:
    capacity = SIZES["n_tokens"] * math.log(SIZES["n_codes"])
    lines = [
        f"VAE, test split (nats per image): ELBO {m['vae_elbo_start']:.1f} at the start -> "
        f"{m['vae_elbo']:.1f} = reconstruction {m['vae_reconstruction']:.1f} "
        f"- KL {m['vae_kl']:.1f}",
        f"  {m['vae_active_dims']:.0f} of {SIZES['d_latent']} latents carry over 0.1 nats; "
        f"no model's reconstruction term can exceed -{m['entropy_floor']:.1f} "
        "(the grey pixels' entropy)",
        f"VQ-VAE: log p(x|z_q) {m['vq_reconstruction']:.1f}; minus the uniform prior's KL "
        f"{SIZES['n_tokens']} ln {SIZES['n_codes']} = {capacity:.1f}: bound {m['vq_bound']:.1f}",
        f"{'':16} {'MSE/pixel':>9} {'sharpness':>9} {'judge acc':>9} {'Fréchet':>8}",
        f"{'test digits':16} {0:>9.4f} {1:>9.2f} {m['judge_test_accuracy']:>9.1%} "
        f"{m['frechet_test_vs_train']:>8.2f}  (Fréchet: to the training split)",
    ]
    for name, label in (("vae", "VAE recon"), ("vq", "VQ-VAE recon")):
        lines.append(
            f"{label:16} {m[name + '_mse']:>9.4f} {m[name + '_sharpness_ratio']:>9.2f} "
            f"{m[name + '_recon_class_accuracy']:>9.1%} {m[name + '_recon_frechet']:>8.2f}"
        )
    return [
        *lines,
        f"{'VAE samples':16} {'':>9} {m['vae_sample_sharpness_ratio']:>9.2f} {'':>9} "
        f"{m['vae_sample_frechet']:>8.2f}  (judge confidence {m['vae_sample_confidence']:.0%})",
        f"codebook: perplexity {m['vq_perplexity']:.1f} of {SIZES['n_codes']} codes, "
        f"{m['vq_dead_codes']:.0f} never used",
        f"interpolation, {n_pairs} test pairs, 9 points: largest step / mean step "
        f"{m['interp_step_ratio']:.2f}; judge confidence mid-path "
        f"{m['interp_confidence_latent']:.0%} (latent) "
        f"vs {m['interp_confidence_pixel']:.0%} (pixels)",
        "(sharpness relative to the test digits; Fréchet distance in the digits judge's features)",
    ]


def _pairs(key, labels, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of test indices whose digits differ."""
    k_a, k_b = jax.random.split(key)
    a = np.asarray(jax.random.randint(k_a, (4 * n,), 0, len(labels)))
    b = np.asarray(jax.random.randint(k_b, (4 * n,), 0, len(labels)))
    keep = np.flatnonzero(labels[a] != labels[b])[:n]
    return a[keep], b[keep]


def _figure(result, start_bound, x, vae_rec, vq_rec, samples, latent, pixel, conf, indices):
    fig, axes = plotting.figure(3, 2, height=5.0)
    n = 6
    grid = np.concatenate([x[:n], np.asarray(vae_rec[:n]), np.asarray(vq_rec[:n])])
    judges.sample_grid(axes[0, 0], grid, rows=3, title="test digits, VAE,\nVQ-VAE (rows)")
    judges.sample_grid(
        axes[0, 1], np.asarray(samples[:18]), rows=3, title="VAE samples\nfrom N(0, I)"
    )
    rows = np.concatenate(
        [np.asarray(latent[:, 0]), np.asarray(pixel[:, 0]), np.asarray(latent[:, 1])]
    )
    judges.sample_grid(axes[0, 2], rows, rows=3, title="latent path, pixel blend,\nlatent path")
    ax = axes[1, 0]
    steps = np.concatenate([[0], result.evals["step"]])
    elbo_curve = np.concatenate([[start_bound["elbo"]], result.evals["elbo"]])
    kl_curve = np.concatenate([[start_bound["kl"]], result.evals["kl"]])
    ax.plot(steps, elbo_curve, label="ELBO")
    ax.plot(steps, elbo_curve + kl_curve, label="reconstruction")
    ax.plot(steps, -kl_curve, label="−KL")
    ax.set(title="VAE, test split (nats)", xlabel="step")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    t = np.linspace(0, 1, len(conf["latent"]))
    ax.plot(t, conf["latent"], "o-", label="latent path")
    ax.plot(t, conf["pixel"], "s-", label="pixel blend")
    ax.set(title="judge confidence on paths", xlabel="t", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower left")
    ax = axes[1, 2]
    counts = np.bincount(np.asarray(indices).ravel(), minlength=SIZES["n_codes"])
    ax.bar(np.arange(len(counts)), counts / counts.sum())
    ax.set(title="codebook usage, test", xlabel="code", ylabel="share")
    return fig

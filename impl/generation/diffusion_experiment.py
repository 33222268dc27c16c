"""5.3 Diffusion, the experiment: samples of a ring of Gaussians and of digits, and guidance.

Two denoising diffusion models trained with the simple loss (Ho et al., eq. 14) and sampled
ancestrally (Algorithm 2), both with ``T = 50`` steps:

* **2-D**: a ring of eight Gaussians, an MLP noise predictor, trained with the linear and the
  cosine schedule side by side. The samples are compared with the data by an energy distance,
  against a Gaussian fitted to the data and against a second draw of the data itself; DDIM
  (Song et al.) samples the same model in 10 steps.
* **Digits**: the 8x8 digits, a small U-Net noise predictor (topic 1.4's blocks), the cosine
  schedule; a noise-aware classifier guides the sampler (Dhariwal & Nichol), and the shared
  digits judge (`impl.generation.judges`) scores the samples at each guidance scale.

Run it: ``python -m impl 5.3`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.deep_networks.dnn import cross_entropy
from impl.generation import judges
from impl.generation.diffusion import (
    ancestral_sample,
    classifier_guide,
    cosine_schedule,
    ddim_sample,
    denoiser,
    init_denoiser,
    init_noisy_classifier,
    init_point_denoiser,
    linear_schedule,
    noisy_classifier,
    point_denoiser,
    q_sample,
    simple_loss,
)
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import even_chunk, train

__all__ = [
    "GUIDANCE_SCALES",
    "OPTIMIZER",
    "T",
    "classifier_loss",
    "digits_loss",
    "energy_distance",
    "experiment",
    "points_loss",
    "within_class_spread",
]

T = 50  # diffusion steps for both models (Ho et al. use 1000; see the page)
GUIDANCE_SCALES = (0.0, 1.0, 3.0, 10.0)
SCHEDULES = {"linear": linear_schedule(T), "cosine": cosine_schedule(T)}
CLIP = 1.0  # digits live in [-1, 1]: the predicted x_0 is clipped there while sampling
RING = {"n_components": 8, "radius": 1.0, "std": 0.05}


# --8<-- [start:experiment]
def points_loss(params, batch, key):
    """Eq. 14 for the 2-D model under each schedule, side by side: ``params`` is
    ``{"linear": tree, "cosine": tree}``; the summed loss trains both in one compiled loop."""
    losses = {
        name: simple_loss(
            functools.partial(point_denoiser, params[name]), SCHEDULES[name], batch["x"], key
        )
        for name in SCHEDULES
    }
    return sum(losses.values()), losses


def digits_loss(params, batch, key):
    """Eq. 14 for the U-Net noise predictor on digits scaled to ``[-1, 1]``."""
    return simple_loss(functools.partial(denoiser, params), SCHEDULES["cosine"], batch["x"], key)


def classifier_loss(params, batch, key):
    """Cross-entropy of the noise-aware classifier on digits noised to a random step ``t``."""
    k_t, k_eps = jax.random.split(key)
    x0 = batch["x"]
    t = jax.random.randint(k_t, (x0.shape[0],), 0, T)
    x_t = q_sample(SCHEDULES["cosine"], x0, t, jax.random.normal(k_eps, x0.shape))
    return cross_entropy(noisy_classifier(params, x_t, t), batch["y"])


OPTIMIZER = adam(2e-3)  # topic 2.8's Adam (Ho et al. used 2e-4 with batch 128 for far longer)


@functools.partial(jax.jit, static_argnames="n")
def sample_points(params, key, n: int):
    """Ancestral samples of both 2-D models (same key); DDIM (10 steps) of the cosine one."""
    out = {
        name: ancestral_sample(
            functools.partial(point_denoiser, params[name]), SCHEDULES[name], key, (n, 2)
        )
        for name in SCHEDULES
    }
    eps_fn = functools.partial(point_denoiser, params["cosine"])
    out["ddim"] = ddim_sample(eps_fn, SCHEDULES["cosine"], key, (n, 2), steps=10)
    return out


@jax.jit
def sample_digits(params, classifier, labels, scales, key):
    """Guided ancestral samples, ``[len(scales), n, 8, 8, 1]`` in ``[-1, 1]``: the same key at
    every scale, so scale 0 (unguided) and the others start from the same noise."""
    eps_fn = functools.partial(denoiser, params)
    guide = classifier_guide(classifier, labels)
    shape = (labels.shape[0], 8, 8, 1)
    return jax.vmap(
        lambda s: ancestral_sample(
            eps_fn, SCHEDULES["cosine"], key, shape, guide=guide, scale=s, clip=CLIP
        )
    )(scales)


def energy_distance(a, b) -> float:
    """``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between point sets ``[n, d]`` and ``[m, d]``:
    zero exactly when the two distributions are equal (Székely & Rizzo 2013)."""

    def mean_dist(u, v):
        return float(np.mean(np.linalg.norm(u[:, None, :] - v[None, :, :], axis=-1)))

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1500) -> Report:
    """Train and sample the 2-D and the digits diffusion models; score them and guidance.

    ``steps``: training steps of the digits model (the 2-D model takes 1,500 of its own).
    Metrics: energy distances of the 2-D samples (each schedule, DDIM), of a fitted Gaussian and
    of fresh data to the data; modes covered; for digits, the judge's confidence, Fréchet
    distance and class shares of unguided samples and of a fitted Gaussian's, and at each
    guidance scale the class accuracy, the Fréchet distance and the within-class spread.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    k_points, k_digits, k_clf, k_sample = jax.random.split(jax.random.key(seed), 4)

    # 2-D: a ring of eight Gaussians; both schedules trained side by side from the same start.
    k_data, k_test, k_init, k_train, k_gen = jax.random.split(k_points, 5)
    x_ring, _ = data.gaussian_mixture(k_data, 2000, **RING)
    x_fresh, _ = data.gaussian_mixture(k_test, 1000, **RING)
    params = {name: init_point_denoiser(k_init) for name in SCHEDULES}
    fit_points = train(
        points_loss,
        params,
        OPTIMIZER,
        {"x": x_ring},
        key=k_train,
        steps=1500,
        batch_size=256,
        chunk=750,
        progress=progress,
        label="5.3 points",
    )
    points = jax.device_get(sample_points(fit_points.params, k_gen, 1000))
    ring = np.asarray(x_ring)
    rng = np.random.default_rng(
        seed
    )  # the Gaussian baselines: numpy's sampler takes singular covariances
    gaussian = rng.multivariate_normal(ring.mean(0), np.cov(ring, rowvar=False), 1000)
    points |= {"gaussian": np.asarray(gaussian), "fresh data": np.asarray(x_fresh)}
    energy = {name: energy_distance(p, ring) for name, p in points.items()}
    modes = judges.mixture_modes(
        points["cosine"], judges.ring_centres(8, RING["radius"]), RING["std"]
    )

    # Digits: the U-Net noise predictor and the noise-aware classifier, on [-1, 1] pixels.
    digits = data.load_digits(as_images=True, seed=0)
    x_digits = jnp.asarray(digits.x_train) * 2.0 - 1.0  # [n, 8, 8, 1]
    k_init, k_train = jax.random.split(k_digits)
    fit_digits = train(
        digits_loss,
        init_denoiser(k_init, 1, base=8, depth=1),
        OPTIMIZER,
        {"x": x_digits},
        key=k_train,
        steps=steps,
        batch_size=64,
        chunk=even_chunk(steps, 750),
        progress=progress,
        label="5.3 digits",
    )
    k_init, k_train = jax.random.split(k_clf)
    fit_clf = train(
        classifier_loss,
        init_noisy_classifier(k_init),
        OPTIMIZER,
        {"x": x_digits, "y": jnp.asarray(digits.y_train)},
        key=k_train,
        steps=600,
        batch_size=128,
        chunk=600,
        progress=progress,
        label="5.3 classifier",
    )
    labels = jnp.arange(200, dtype=jnp.int32) % 10  # 20 samples asked of each class
    scales = jnp.asarray(GUIDANCE_SCALES, jnp.float32)
    samples = sample_digits(fit_digits.params, fit_clf.params, labels, scales, k_sample)
    samples = np.clip((np.asarray(samples) + 1.0) / 2.0, 0.0, 1.0)  # [scales, 200, 8, 8, 1]
    guided = [judges.digit_scores(s, np.asarray(labels)) for s in samples]
    judge = judges.digits_judge()
    spread = [within_class_spread(s, judges.judge_logits(judge, s).argmax(-1)) for s in samples]
    flat = np.asarray(digits.x_train).reshape(len(digits.x_train), 64)
    gauss = rng.multivariate_normal(flat.mean(0), np.cov(flat, rowvar=False), 200).astype(
        np.float32
    )
    gauss_scores = judges.digit_scores(np.clip(gauss, 0.0, 1.0).reshape(200, 8, 8, 1))
    test_scores = judges.digit_scores(digits.x_test)
    test_spread = within_class_spread(digits.x_test, digits.y_test)

    metrics = {f"points_energy_{name.split()[0]}": value for name, value in energy.items()}
    metrics |= {"points_modes": float(modes["modes"]), "points_high_quality": modes["high_quality"]}
    metrics |= {
        "digits_confidence": guided[0]["confidence"],
        "digits_frechet": guided[0]["frechet"],
        "digits_min_class_share": float(min(guided[0]["class_histogram"])),
        "gaussian_confidence": gauss_scores["confidence"],
        "gaussian_frechet": gauss_scores["frechet"],
        "gaussian_min_class_share": float(min(gauss_scores["class_histogram"])),
        "test_confidence": test_scores["confidence"],
        "test_spread": test_spread,
        "frechet_test_vs_train": test_scores["frechet_test_vs_train"],
    }
    for s, scores, sp in zip(GUIDANCE_SCALES, guided, spread):
        metrics[f"accuracy_scale_{s:g}"] = scores["class_accuracy"]
        metrics[f"frechet_scale_{s:g}"] = scores["frechet"]
        metrics[f"spread_scale_{s:g}"] = sp

    names = {
        "linear": "diffusion, linear schedule",
        "cosine": "diffusion, cosine schedule",
        "ddim": "DDIM, 10 steps (cosine model)",
        "gaussian": "Gaussian fitted to the data",
        "fresh data": "a fresh draw of the data",
    }
    lines = ["2-D ring of 8 Gaussians: energy distance to the data (lower is closer)"]
    lines += [f"  {names[name]:<32} {value:8.4f}" for name, value in energy.items()]
    lines.append(
        f"  cosine model: {modes['modes']}/8 modes, {modes['high_quality']:.0%} within 3 std of one"
    )
    lines.append(
        "digits, scored by the shared judge (Fréchet distance in its features, not Inception's)"
    )
    lines.append(f"  {'':<26} {'confidence':>10} {'Fréchet':>8} {'rarest class':>12}")
    for label, sc in (
        ("real test digits", test_scores),
        ("diffusion, unguided", guided[0]),
        ("Gaussian fitted to pixels", gauss_scores),
    ):
        fr = sc["frechet_test_vs_train"] if sc is test_scores else sc["frechet"]
        rarest = min(sc["class_histogram"])
        lines.append(f"  {label:<26} {sc['confidence']:>10.3f} {fr:>8.2f} {rarest:>12.1%}")
    lines.append(f"  {'guidance scale':<26} {'class acc.':>10} {'Fréchet':>8} {'spread':>12}")
    for s, scores, sp in zip(GUIDANCE_SCALES, guided, spread):
        lines.append(
            f"  {s:<26g} {scores['class_accuracy']:>10.1%} {scores['frechet']:>8.2f} {sp:>12.2f}"
        )
    lines.append(f"  (spread of real test digits within their class: {test_spread:.2f})")
    fig = _figure(ring, points, fit_points, fit_digits, samples, guided, spread, test_spread)
    title = "5.3 Diffusion — a ring of Gaussians and digits, with classifier guidance"
    return Report(title, metrics, lines, fig, time.perf_counter() - start)


# --8<-- [end:run]


def within_class_spread(images, classes) -> float:
    """Mean pixel distance between two different images of the same class, averaged over the
    classes with at least two images: how varied the samples of one digit are."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    classes = np.asarray(classes)
    means = []
    for c in np.unique(classes):
        v = x[classes == c]
        if len(v) > 1:
            d = np.linalg.norm(v[:, None, :] - v[None, :, :], axis=-1)  # [m, m], zero diagonal
            means.append(d.sum() / (len(v) * (len(v) - 1)))
    return float(np.mean(means))


def _figure(ring, points, fit_points, fit_digits, samples, guided, spread, test_spread):
    fig, axes = plotting.figure(3, 2, height=5.4)
    for ax, name, title in (
        (axes[0, 0], "cosine", "diffusion samples"),
        (axes[0, 1], "gaussian", "Gaussian fit"),
    ):
        ax.scatter(*ring[::4].T, s=3, color="0.7", label="data")
        ax.scatter(
            *np.asarray(points[name])[:500].T, s=3, color=plotting.PALETTE[0], label="samples"
        )
        ax.set(title=f"2-D: {title}", xticks=[], yticks=[], xlim=(-1.6, 1.6), ylim=(-1.6, 1.6))
        ax.set_aspect("equal")
    ax = axes[0, 2]
    for i, name in enumerate(("linear", "cosine")):
        ax.plot(_smooth(fit_points.history[name]), color=plotting.PALETTE[i], label=f"2-D, {name}")
    ax.plot(_smooth(fit_digits.history["loss"]), color=plotting.PALETTE[2], label="digits, cosine")
    ax.set(title="training loss (eq. 14)", xlabel="step", yscale="log")
    ax.legend()
    judges.sample_grid(axes[1, 0], samples[0][:40], rows=4, title="digits, unguided")
    judges.sample_grid(
        axes[1, 1], samples[-1][:40], rows=4, title=f"guided to 0-9, scale {GUIDANCE_SCALES[-1]:g}"
    )
    ax = axes[1, 2]
    x = np.arange(len(GUIDANCE_SCALES))
    ax.plot(
        x,
        [g["class_accuracy"] for g in guided],
        "o-",
        color=plotting.PALETTE[0],
        label="class accuracy",
    )
    ax.plot(
        x, np.asarray(spread) / test_spread, "^-", color=plotting.PALETTE[2], label="spread / real"
    )
    ax.set(
        title="guidance scale",
        xticks=x,
        xticklabels=[f"{s:g}" for s in GUIDANCE_SCALES],
        ylim=(0, 1.3),
    )
    twin = ax.twinx()
    twin.plot(x, [g["frechet"] for g in guided], "s--", color=plotting.PALETTE[1], label="Fréchet")
    twin.set(ylabel="Fréchet distance")
    twin.set_ylim(bottom=0)
    twin.grid(False)
    ax.legend(handles=ax.get_lines() + twin.get_lines(), loc="lower right", fontsize=8)
    return fig


def _smooth(values, window: int = 50) -> np.ndarray:
    v = np.asarray(values)
    return np.convolve(v, np.ones(window) / window, mode="valid") if len(v) > window else v

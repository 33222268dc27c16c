"""5.1 GAN, the experiment: a ring of Gaussians and the digits, both generator losses side by side.

Two tasks, each one compiled `impl.training.run` loop whose step is Algorithm 1 of the paper
(one discriminator step, then one generator step) for two GANs at once — the same
initialisation and the same mini-batches, one trained with the saturating (minimax) generator
loss, one with the non-saturating loss:

* **Ring**: eight Gaussians on a circle (`impl.data.points.gaussian_mixture`); the modes each
  GAN covers and the share of high-quality samples (`impl.generation.judges.mixture_modes`),
  and the generator's gradient norm over the first steps — where the saturating loss stalls.
* **Digits**: a class-conditional GAN (the paper's section 7: the class is given to both
  players) on the training digits of `load_digits(seed=0)`; the shared judge
  (`impl.generation.judges`) reports its class accuracy and the Fréchet distance of its samples.

Run it: ``python -m impl 5.1`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, data, plotting
from impl.generation import judges
from impl.generation.gan import (
    GENERATOR_LOSSES,
    discriminator,
    discriminator_loss,
    generator,
    generator_loss,
    init_player,
)
from impl.optimization.adam import adam
from impl.report import Report
from impl.training import run

__all__ = [
    "DIGITS",
    "D_OPTIMIZER",
    "EARLY",
    "OPTIMIZER",
    "RING",
    "experiment",
    "fit",
    "init_state",
    "make_step",
]


# --8<-- [start:experiment]
RING = {"n_modes": 8, "radius": 2.0, "std": 0.05, "z_dim": 2, "hidden": 64, "steps": 2000}
DIGITS = {"z_dim": 16, "hidden": 128, "steps": 3000, "n_classes": 10}
# Adam with b1 = 0.5 as in DCGAN (Radford et al. 2015); D learns 4x faster than G, the
# two-time-scale rule of Heusel et al. 2017 — and the setting in which D gets ahead early.
OPTIMIZER = adam(learning_rate=5e-4, b1=0.5)  # the generator's
D_OPTIMIZER = adam(learning_rate=2e-3, b1=0.5)  # the discriminator's
EARLY = 500  # "early in learning": the first EARLY steps


def init_state(key, g_sizes, d_sizes, optimizer=OPTIMIZER, d_optimizer=None) -> dict:
    """Both GANs (one per generator loss, stacked on a leading axis of 2) from the *same*
    ``G`` and ``D``: ``{"g", "d", "g_opt", "d_opt"}``, each leaf ``[2, ...]``."""
    d_optimizer = optimizer if d_optimizer is None else d_optimizer
    k_g, k_d = jax.random.split(key)
    g, d = init_player(k_g, g_sizes), init_player(k_d, d_sizes)
    one = {"g": g, "d": d, "g_opt": optimizer.init(g), "d_opt": d_optimizer.init(d)}
    return jax.tree.map(lambda leaf: jnp.stack([leaf] * len(GENERATOR_LOSSES)), one)


def _norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(tree)))


def make_step(optimizer, *, z_dim: int, output: str, n_classes: int = 0, d_optimizer=None):
    """Algorithm 1 with k = 1 for both GANs of the state (vmapped), on one shared mini-batch
    and the same noise.

    ``batch = {"x": [b, d_data]}`` (and ``"y": int[b]`` when ``n_classes > 0``: the class is
    given to both players, and ``G`` draws digits of the batch's classes).
    """
    d_optimizer = optimizer if d_optimizer is None else d_optimizer

    def play(gan, real, c, key, saturating):
        k_d, k_g = jax.random.split(key)
        z = jax.random.normal(k_d, (real.shape[0], z_dim))
        fake = jax.lax.stop_gradient(generator(gan["g"], z, c, output=output))  # [b, d_data]

        def d_loss(d):  # ascend V(D, G): descend its negative
            return discriminator_loss(discriminator(d, real, c), discriminator(d, fake, c))

        loss_d, grads = jax.value_and_grad(d_loss)(gan["d"])
        updates, d_opt = d_optimizer.update(grads, gan["d_opt"], gan["d"])
        d = jax.tree.map(jnp.add, gan["d"], updates)

        z = jax.random.normal(k_g, (real.shape[0], z_dim))

        def g_loss(g):  # then one generator step against the updated D
            logits = discriminator(d, generator(g, z, c, output=output), c)  # [b]
            loss = jnp.where(
                saturating,
                generator_loss(logits, "saturating"),
                generator_loss(logits, "non_saturating"),
            )
            return loss, logits

        (loss_g, logits), grads = jax.value_and_grad(g_loss, has_aux=True)(gan["g"])
        updates, g_opt = optimizer.update(grads, gan["g_opt"], gan["g"])
        g = jax.tree.map(jnp.add, gan["g"], updates)
        metrics = {
            "d_loss": loss_d,
            "g_loss": loss_g,
            "g_grad_norm": _norm(grads),
            "d_of_fake": jnp.mean(jax.nn.sigmoid(logits)),  # D(G(z)) seen by the G step
        }
        return {"g": g, "d": d, "g_opt": g_opt, "d_opt": d_opt}, metrics

    saturating = jnp.array([kind == "saturating" for kind in GENERATOR_LOSSES])  # [2]

    def step(state, batch, key):
        c = jax.nn.one_hot(batch["y"], n_classes) if n_classes else None
        state, metrics = jax.vmap(play, in_axes=(0, None, None, None, 0))(
            state, batch["x"], c, key, saturating
        )  # every metric [2]
        return state, {
            kind: jax.tree.map(lambda m, i=i: m[i], metrics)
            for i, kind in enumerate(GENERATOR_LOSSES)
        }

    return step


def fit(
    key,
    x,
    y=None,
    *,
    z_dim,
    hidden,
    steps,
    output,
    n_classes=0,
    batch_size=64,
    optimizer=OPTIMIZER,
    d_optimizer=D_OPTIMIZER,
    **kwargs,
):
    """Train both GANs on ``x [n, d_data]`` (labels ``y`` for a conditional GAN) with `run`."""
    k_init, k_run = jax.random.split(key)
    d_data = x.shape[1]
    g_sizes = [z_dim + n_classes, hidden, hidden, d_data]
    d_sizes = [d_data + n_classes, hidden, hidden, 1]
    state = init_state(k_init, g_sizes, d_sizes, optimizer, d_optimizer)
    step = make_step(
        optimizer, z_dim=z_dim, output=output, n_classes=n_classes, d_optimizer=d_optimizer
    )
    batches = {"x": x} if y is None else {"x": x, "y": y}
    return run(step, state, batches, key=k_run, steps=steps, batch_size=batch_size, **kwargs)


# --8<-- [end:experiment]


def _samples(state, kind, key, n, z_dim, output, c=None):
    """``n`` samples of the GAN trained with loss ``kind``."""
    g = jax.tree.map(lambda leaf: leaf[GENERATOR_LOSSES.index(kind)], state["g"])
    return generator(g, jax.random.normal(key, (n, z_dim)), c, output=output)


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, scale: float = 1.0) -> Report:
    """Both generator losses on the ring of Gaussians and on the digits.

    ``seed`` drives the ring's data, every initialisation, noise and mini-batch; ``scale``
    multiplies the step counts (for a quick look). Metrics per loss (``sat``/``nonsat``): the
    ring's modes covered and high-quality share; the generator's gradient norm and the mean
    ``D(G(z))`` over the first ``EARLY`` steps; for the digits the judge's class accuracy,
    confidence and Fréchet distance, and the within-class diversity of the samples.
    """
    checks.non_negative_int("seed", seed)
    checks.in_range("scale", scale, 0.0, 10.0, low_inclusive=False)
    start = time.perf_counter()
    k_data, k_ring, k_digits, k_sample = jax.random.split(jax.random.key(seed, impl="rbg"), 4)
    short = {"saturating": "sat", "non_saturating": "nonsat"}
    metrics, samples = {}, {}

    r = RING
    x, _ = data.points.gaussian_mixture(
        k_data, 4000, n_components=r["n_modes"], radius=r["radius"], std=r["std"]
    )
    steps = max(int(r["steps"] * scale), 100)
    ring = fit(
        k_ring,
        x,
        z_dim=r["z_dim"],
        hidden=r["hidden"],
        steps=steps,
        output="linear",
        chunk=steps // 2 if steps % 2 == 0 else steps,
        progress=progress,
        label="5.1 ring",
    )
    centres = judges.ring_centres(r["n_modes"], r["radius"])
    for kind, s in short.items():
        pts = _samples(ring.state, kind, k_sample, 2000, r["z_dim"], "linear")
        samples[f"ring_{s}"] = np.asarray(pts)
        m = judges.mixture_modes(pts, centres, r["std"])
        metrics[f"ring_{s}_modes"] = m["modes"]
        metrics[f"ring_{s}_high_quality"] = m["high_quality"]
        metrics[f"ring_{s}_early_grad_norm"] = float(
            np.mean(ring.history[f"{kind}/g_grad_norm"][:EARLY])
        )
        metrics[f"ring_{s}_early_d_of_fake"] = float(
            np.mean(ring.history[f"{kind}/d_of_fake"][:EARLY])
        )

    dg = DIGITS
    digits = data.load_digits(seed=0)  # the judge's split: train on its training digits
    steps = max(int(dg["steps"] * scale), 100)
    gan = fit(
        k_digits,
        digits.x_train,
        digits.y_train,
        z_dim=dg["z_dim"],
        hidden=dg["hidden"],
        steps=steps,
        output="sigmoid",
        n_classes=dg["n_classes"],
        chunk=steps // 2 if steps % 2 == 0 else steps,
        progress=progress,
        label="5.1 digits",
    )
    labels = jnp.arange(1000) % dg["n_classes"]
    real_spread = _within_class_spread(digits.x_test, digits.y_test)
    judge = judges.digits_judge()
    for kind, s in short.items():
        imgs = _samples(
            gan.state,
            kind,
            k_sample,
            1000,
            dg["z_dim"],
            "sigmoid",
            jax.nn.one_hot(labels, dg["n_classes"]),
        )
        samples[f"digits_{s}"] = np.asarray(imgs)
        scores = judges.digit_scores(imgs, labels, judge=None)
        metrics[f"digits_{s}_class_accuracy"] = scores["class_accuracy"]
        metrics[f"digits_{s}_confidence"] = scores["confidence"]
        metrics[f"digits_{s}_frechet"] = scores["frechet"]
        metrics[f"digits_{s}_diversity"] = _within_class_spread(imgs, labels) / real_spread
        metrics[f"digits_{s}_early_grad_norm"] = float(
            np.mean(gan.history[f"{kind}/g_grad_norm"][:EARLY])
        )
        metrics[f"digits_{s}_early_d_of_fake"] = float(
            np.mean(gan.history[f"{kind}/d_of_fake"][:EARLY])
        )
    metrics["digits_frechet_test_vs_train"] = scores["frechet_test_vs_train"]
    metrics["judge_test_accuracy"] = judge.test_accuracy

    lines = [f"{'':<24}{'saturating':>12}{'non-saturating':>16}"]
    rows = [
        ("ring: modes covered /8", "ring_{}_modes", "{:>12d}", "{:>16d}"),
        ("ring: high quality", "ring_{}_high_quality", "{:>12.1%}", "{:>16.1%}"),
        ("ring: early |grad G|", "ring_{}_early_grad_norm", "{:>12.3f}", "{:>16.3f}"),
        ("ring: early D(G(z))", "ring_{}_early_d_of_fake", "{:>12.3f}", "{:>16.3f}"),
        ("digits: early |grad G|", "digits_{}_early_grad_norm", "{:>12.3f}", "{:>16.3f}"),
        ("digits: early D(G(z))", "digits_{}_early_d_of_fake", "{:>12.3f}", "{:>16.3f}"),
        ("digits: class accuracy", "digits_{}_class_accuracy", "{:>12.1%}", "{:>16.1%}"),
        ("digits: confidence", "digits_{}_confidence", "{:>12.1%}", "{:>16.1%}"),
        ("digits: Fréchet", "digits_{}_frechet", "{:>12.3f}", "{:>16.3f}"),
        ("digits: diversity", "digits_{}_diversity", "{:>12.2f}", "{:>16.2f}"),
    ]
    for name, key, f_sat, f_non in rows:
        lines.append(
            f"{name:<24}"
            + f_sat.format(metrics[key.format("sat")])
            + f_non.format(metrics[key.format("nonsat")])
        )
    lines.append(
        f"judge: test accuracy {judge.test_accuracy:.1%}; Fréchet of the test digits to the"
        f" training digits {metrics['digits_frechet_test_vs_train']:.3f} (the floor)"
    )
    metrics["digits_early_grad_ratio"] = (
        metrics["digits_nonsat_early_grad_norm"] / metrics["digits_sat_early_grad_norm"]
    )
    lines.append(
        f"early = the first {EARLY} steps; digits: non-saturating / saturating early |grad G| = "
        f"{metrics['digits_early_grad_ratio']:.1f}"
    )
    fig = _figure(gan.history, x, samples, centres)
    return Report(
        "5.1 GAN — saturating vs non-saturating, ring and digits",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _within_class_spread(x, y) -> float:
    """Mean over classes of the per-pixel standard deviation within the class: how much the
    digits of one class differ from each other (0 = every sample of a class identical)."""
    x, y = np.asarray(x).reshape(len(y), -1), np.asarray(y)
    return float(np.mean([x[y == k].std(0).mean() for k in np.unique(y)]))


def _figure(history, x, samples, centres):
    fig, axes = plotting.figure(3, 2, height=4.2, gridspec_kw={"height_ratios": [1.7, 1]})
    ax = axes[0, 0]
    for kind, colour in (("saturating", "C3"), ("non_saturating", "C0")):
        ax.plot(history[f"{kind}/g_grad_norm"], color=colour, lw=0.8, label=kind.replace("_", "-"))
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("digits: |grad G| per step")
    ax.legend()
    for ax, s, title in (
        (axes[0, 1], "sat", "saturating"),
        (axes[0, 2], "nonsat", "non-saturating"),
    ):
        ax.scatter(*np.asarray(x[:1000]).T, s=2, color="0.7")
        ax.scatter(*samples[f"ring_{s}"][:1000].T, s=2, color="C0")
        ax.scatter(*np.asarray(centres).T, marker="x", color="k", s=20)
        ax.set_aspect("equal")
        ax.set_title(f"ring, {title}")
    judges.sample_grid(
        axes[1, 0], data.load_digits(seed=0).x_test[:30], rows=3, title="test digits"
    )
    judges.sample_grid(axes[1, 1], samples["digits_sat"][:30], rows=3, title="digits, saturating")
    judges.sample_grid(
        axes[1, 2], samples["digits_nonsat"][:30], rows=3, title="digits, non-saturating"
    )
    return fig

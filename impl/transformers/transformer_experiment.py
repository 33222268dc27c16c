"""4.1 Transformer, the experiment: 3.7's toy translation, the Transformer against 3.7's RNN.

A small Transformer (one encoder and one decoder layer, width 32, 4 heads) and 3.7's attentive
GRU translator (32-unit GRUs) learn the toy translation of `impl.data.translation` from the same
batches. Each has its own timed training loop (wall-clock time must be per model); the two take
turns, a chunk of `CHUNK` steps each, so both are timed under the same load. After each chunk,
off the clock, each translates 200 long sentences (13–16 words) greedily. The claim is how many
steps and seconds of training each needs to get `TARGET` of their words right. Then one
gradient step of each is timed at several sentence lengths, and two trained heads are drawn.
The model lives in `impl.transformers.transformer`.

Run it: ``python -m impl 4.1`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, plotting
from impl.data.sequences import FIRST_SYMBOL, PAD
from impl.data.translation import MAX_LEN, MIN_LEN, VOCAB, score_by_length, translation_task
from impl.optimization.adam import adam
from impl.optimization.schedules import warmup_inverse_sqrt_schedule
from impl.report import Report
from impl.sequence import attention as rnn
from impl.training import train
from impl.transformers import transformer as tf

__all__ = [
    "CHUNK", "CONFIG", "OPTIMIZERS", "STEPS", "TARGET",
    "experiment", "fit", "init_params", "loss_fns",
]  # fmt: skip


# --8<-- [start:experiment]
CONFIG = tf.TransformerConfig(
    vocab_size=VOCAB, d_model=32, n_heads=4, d_ff=64, n_layers=1, max_len=MAX_LEN + 1
)  # post-LN and ReLU, as in the paper (its base model: D=512, H=8, F=2048, L=6)
SMOOTHING = 0.1  # label smoothing, section 5.4
OPTIMIZERS = {
    # section 5.3: Adam with b2 = 0.98, eps = 1e-9 and eq. 3's warm-up, here over 100 steps
    "transformer": adam(warmup_inverse_sqrt_schedule(32, warmup_steps=100), b2=0.98, eps=1e-9),
    "rnn": adam(learning_rate=3e-3),  # 3.7's run, unchanged
}
STEPS = {"transformer": 400, "rnn": 500}  # training steps of each model
CHUNK = 50  # steps between evaluations
TARGET = 0.98  # greedy word accuracy on 13-16-word sentences (3.7's page: 97-100% at 1000 steps)


def transformer_loss(params, batch, key):
    del key  # no dropout in this small run
    logits = tf.transformer(params, batch["src"], batch["tgt_in"], CONFIG)
    mask = batch["tgt_out"] != PAD
    return tf.smoothed_cross_entropy(logits, batch["tgt_out"], SMOOTHING, mask=mask)


def rnn_loss(params, batch, key):
    del key
    return rnn.sequence_loss(params, batch)  # 3.7's loss, unchanged


loss_fns = {"transformer": transformer_loss, "rnn": rnn_loss}


def init_params(name, key):
    if name == "transformer":
        return tf.init_transformer(key, CONFIG)
    return rnn.init_attention_model(key, VOCAB, 16, 32, 32)  # 3.7's sizes


def fit(key, data, evaluate, *, progress=None):
    """Train both models on ``data`` in chunks of `CHUNK` steps, each with its own clock.

    The two loops take turns, a chunk each, so that both are timed under the same load on the
    machine; after each chunk, off the clock, ``evaluate[name](params)`` is recorded with the
    step and the training seconds so far. The same key gives both models the same batches.
    A first chunk, run and thrown away, compiles each loop: ``compile_seconds`` is its time
    less that of a compiled chunk.
    """
    k_init, k_train = jax.random.split(key)
    params = {name: init_params(name, k_init) for name in STEPS}
    run = lambda name, p, state, i: train(  # noqa: E731
        loss_fns[name], p, OPTIMIZERS[name], data, key=jax.random.fold_in(k_train, i),
        steps=CHUNK, batch_size=64, chunk=CHUNK, opt_state=state, progress=progress,
        label=f"4.1 {name}",
    )  # fmt: skip
    warm_up = {name: run(name, params[name], None, 10_000).seconds for name in STEPS}  # compiles
    opt_state, seconds, logs = (
        dict.fromkeys(STEPS),
        dict.fromkeys(STEPS, 0.0),
        {n: [] for n in STEPS},
    )
    for i in range(max(STEPS.values()) // CHUNK):
        for name in [n for n in STEPS if CHUNK * i < STEPS[n]]:
            result = run(name, params[name], opt_state[name], i)
            params[name], opt_state[name] = jax.block_until_ready((result.params, result.opt_state))
            seconds[name] += result.seconds
            logs[name].append((CHUNK * (i + 1), seconds[name], float(evaluate[name](params[name]))))
    logs = {name: np.array(log) for name, log in logs.items()}  # [chunks, 3]: step, s, accuracy
    chunk_seconds = {
        name: float(np.median(np.diff(log[:, 1], prepend=0.0))) for name, log in logs.items()
    }
    return params, logs, {name: warm_up[name] - chunk_seconds[name] for name in STEPS}


# --8<-- [end:experiment]

LENGTHS = (16, 64, 128)  # sentence lengths for the timing of one training step
TIMING_BATCH = 16


def _greedy_accuracy(out, batch):
    """The fraction of the target's words (not ``EOS``, not padding) a translation gets right."""
    words = jnp.arange(out.shape[1]).reshape(1, -1) < batch["length"].reshape(-1, 1)
    return jnp.sum((out == batch["tgt_out"]) & words) / jnp.sum(words)


def _step_seconds(name, params, length: int, key, repeats: int = 3) -> float:
    """Median seconds of one gradient evaluation (the bulk of a training step) at ``length``."""
    config = dataclasses.replace(CONFIG, max_len=length + 1)  # positions are not parameters
    words = jax.random.randint(key, (TIMING_BATCH, length), FIRST_SYMBOL, VOCAB)
    full = jnp.full((TIMING_BATCH,), length)
    batch = {"src": words, "tgt_in": words, "tgt_out": words, "length": full}
    if name == "transformer":
        loss = lambda p: tf.smoothed_cross_entropy(  # noqa: E731
            tf.transformer(p, batch["src"], batch["tgt_in"], config), batch["tgt_out"], SMOOTHING
        )
    else:
        loss = lambda p: rnn.sequence_loss(p, batch)  # noqa: E731
    grad = jax.jit(jax.grad(loss))
    jax.block_until_ready(grad(params))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(params))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _reached(log: np.ndarray, target: float) -> tuple[float, float]:
    """``(steps, seconds)`` at the first evaluation at or above ``target``; ``inf`` if none."""
    hits = np.flatnonzero(log[:, 2] >= target)
    return (float(log[hits[0], 0]), float(log[hits[0], 1])) if hits.size else (np.inf, np.inf)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else np.inf


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None) -> Report:
    """Train the Transformer and 3.7's RNN on the same batches, each with its own clock;
    find the steps and seconds each needs to reach `TARGET` on long sentences; time one
    training step at several lengths; draw two trained heads.

    Metrics: ``{model}_steps_to_target`` and ``{model}_seconds_to_target`` (training time,
    compilation excluded; ``inf`` if never reached), ``{model}_compile_seconds``,
    ``steps_ratio``, ``seconds_ratio`` and ``seconds_ratio_with_compile`` (RNN over
    Transformer), ``{model}_word_acc_long`` (greedy, 13–16 words, after training),
    ``{model}_step_ms_len{n}``, ``step_time_ratio_longest`` (RNN over Transformer at 128 words) and
    ``cross_head_diagonal`` (the most diagonal cross-attention head: the share of a 16-word
    sentence's target words whose largest weight is on the source word they translate).
    """
    checks.non_negative_int("seed", seed)
    start = time.perf_counter()
    k_data, k_fit, k_eval, k_test, k_time = jax.random.split(jax.random.key(seed, impl="rbg"), 5)
    data = translation_task(k_data, 20_000, min_len=MIN_LEN, max_len=MAX_LEN)
    long = translation_task(k_eval, 200, min_len=13, max_len=MAX_LEN)  # evaluated every chunk
    translate = {
        "transformer": lambda p, src: tf.greedy_translate(p, src, MAX_LEN + 1, CONFIG),
        "rnn": lambda p, src: rnn.greedy_translate(p, src, MAX_LEN + 1)[0],
    }
    evaluate = {
        name: jax.jit(lambda p, f=f: _greedy_accuracy(f(p, long["src"]), long))
        for name, f in translate.items()
    }
    params, logs, compile_seconds = fit(k_fit, data, evaluate, progress=progress)

    metrics = {"target_accuracy": TARGET}
    for name in logs:
        steps, seconds = _reached(logs[name], TARGET)
        metrics[f"{name}_steps_to_target"], metrics[f"{name}_seconds_to_target"] = steps, seconds
        metrics[f"{name}_compile_seconds"] = compile_seconds[name]
        metrics[f"{name}_ms_per_step"] = 1000 * float(logs[name][-1, 1]) / STEPS[name]
    m = metrics
    m["steps_ratio"] = _ratio(m["rnn_steps_to_target"], m["transformer_steps_to_target"])
    m["seconds_ratio"] = _ratio(m["rnn_seconds_to_target"], m["transformer_seconds_to_target"])
    m["seconds_ratio_with_compile"] = _ratio(
        m["rnn_seconds_to_target"] + m["rnn_compile_seconds"],
        m["transformer_seconds_to_target"] + m["transformer_compile_seconds"],
    )

    test = translation_task(k_test, 60 * (MAX_LEN - MIN_LEN + 1), min_len=MIN_LEN, max_len=MAX_LEN)
    lengths = np.arange(MIN_LEN, MAX_LEN + 1)
    by_length = {n: score_by_length(translate[n](params[n], test["src"]), test)[0] for n in params}
    for name, words in by_length.items():
        metrics[f"{name}_word_acc_long"] = float(words[lengths >= 13].mean())

    timing = {n: [_step_seconds(n, params[n], t, k_time) for t in LENGTHS] for n in params}
    for name, times in timing.items():
        for t, s in zip(LENGTHS, times):
            metrics[f"{name}_step_ms_len{t}"] = 1000 * s
        metrics[f"{name}_time_growth"] = times[-1] / times[0]
    m["step_time_ratio_longest"] = timing["rnn"][-1] / timing["transformer"][-1]

    example = int(np.flatnonzero(np.asarray(long["length"]) == MAX_LEN)[0])
    one = {k: v[example : example + 1] for k, v in long.items()}
    maps = tf.attention_maps(params["transformer"], one["src"], one["tgt_in"], CONFIG)
    cross = np.asarray(maps["cross"][-1, 0])  # [H, T, S]: the last decoder layer's heads
    n = MAX_LEN
    diagonal = (np.argmax(cross[:, :n, :n], axis=-1) == np.arange(n)).mean(axis=-1)  # [H]
    head = int(np.argmax(diagonal))
    metrics["cross_head_diagonal"] = float(diagonal[head])

    lines = [
        f"to reach {TARGET:.0%} of the words right on 13-16-word sentences (greedy, 200 sentences,"
        f" checked every {CHUNK} steps):",
        f"{'':>12} {'steps':>6} {'train s':>8} {'compile s':>10} {'ms/step':>8}",
    ]
    for name, label in (("transformer", "Transformer"), ("rnn", "3.7 RNN")):
        lines.append(
            f"{label:>12} {m[f'{name}_steps_to_target']:>6.0f} "
            f"{m[f'{name}_seconds_to_target']:>8.1f} {m[f'{name}_compile_seconds']:>10.1f} "
            f"{m[f'{name}_ms_per_step']:>8.1f}"
        )
    lines.append(
        f"RNN / Transformer: {m['steps_ratio']:.1f}x the steps, {m['seconds_ratio']:.1f}x the "
        f"training seconds ({m['seconds_ratio_with_compile']:.1f}x with compilation)"
    )
    lines.append(
        f"after training, greedy, 13-16 words: Transformer {m['transformer_word_acc_long']:.1%} "
        f"({STEPS['transformer']} steps), RNN {m['rnn_word_acc_long']:.1%} ({STEPS['rnn']} steps)"
    )
    lines.append(
        f"one gradient step, batch {TIMING_BATCH}, at {', '.join(map(str, LENGTHS))} words (ms):"
    )
    for name, label in (("transformer", "Transformer"), ("rnn", "3.7 RNN")):
        lines.append(f"{label:>12} " + " ".join(f"{1000 * s:>7.1f}" for s in timing[name]))
    lines.append(
        f"cross-attention head {head + 1}: the largest weight is on the word being translated "
        f"for {m['cross_head_diagonal']:.0%} of a 16-word sentence's words"
    )
    fig = _figure(logs, lengths, by_length, timing, cross[head], maps, n)
    title = "4.1 Transformer — attention alone, no recurrence"
    return Report(title, metrics, lines, fig, time.perf_counter() - start, extra={"logs": logs})


# --8<-- [end:run]

LABELS = {"transformer": "Transformer (4.1)", "rnn": "attentive RNN (3.7)"}


def _figure(logs, lengths, by_length, timing, cross, maps, n):
    fig, axes = plotting.figure(3, 2, height=6.4)
    axes = axes.ravel()
    for i, name in enumerate(("transformer", "rnn")):
        color, log = plotting.PALETTE[i], logs[name]
        axes[0].plot(log[:, 0], 100 * log[:, 2], "o-", ms=3, color=color, label=LABELS[name])
        axes[1].plot(log[:, 1], 100 * log[:, 2], "o-", ms=3, color=color, label=LABELS[name])
        axes[2].plot(LENGTHS, 1000 * np.array(timing[name]), "o-", color=color, label=LABELS[name])
        axes[3].plot(lengths, 100 * by_length[name], "o-", ms=3, color=color, label=LABELS[name])
    for ax in axes[:2]:
        ax.axhline(100 * TARGET, color="gray", lw=1, ls=":", label="target")
        ax.set(ylim=(0, 102), ylabel="% words right, 13-16 words")
    axes[0].set(title="accuracy by training step", xlabel="step")
    axes[1].set(title="accuracy by training time", xlabel="seconds (compilation excluded)")
    axes[2].set(
        title="one gradient step", xlabel="sentence length", ylabel="ms", xscale="log",
        yscale="log",
    )  # fmt: skip
    axes[2].set_xticks(LENGTHS, [str(t) for t in LENGTHS])
    axes[2].minorticks_off()
    axes[3].set(
        title="greedy translation", xlabel="source length (words)", ylabel="% words right",
        ylim=(0, 102),
    )  # fmt: skip
    axes[3].legend(fontsize=8, loc="lower center")  # the panel's empty half
    image = axes[4].imshow(cross[: n + 1, :n], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=axes[4], fraction=0.05)
    axes[4].set(title="a cross-attention head", xlabel="source word", ylabel="target word")
    enc = np.asarray(maps["encoder"][0, 0])  # [H, S, S]: the first encoder layer's heads
    spread = [np.mean(np.abs(np.argmax(w, -1) - np.arange(n))) for w in enc]
    other = enc[int(np.argmax(spread))]  # the head that looks furthest from its own word
    image = axes[5].imshow(other, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=axes[5], fraction=0.05)
    axes[5].set(title="an encoder self-attention head", xlabel="key word", ylabel="query word")
    for ax in axes[4:]:
        ax.grid(False)
        ax.set_xticks(range(0, n, 3), [str(j + 1) for j in range(0, n, 3)])
        ax.set_yticks(range(0, n, 3), [str(j + 1) for j in range(0, n, 3)])
    return fig

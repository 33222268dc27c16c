"""3.5 Encoder–decoder, the experiment: a toy translation, and accuracy against source length.

Two encoder–decoders whose fixed vectors have 32 and 96 units learn the toy translation of
`impl.data.translation` side by side, in one compiled loop, with the hand-written Adam of topic
2.8; their greedy translations are then scored by source length. The model lives in
`impl.sequence.encoder_decoder`.

Run it: ``python -m impl 3.5`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from impl import checks, plotting
from impl.data.translation import (
    MAX_LEN,
    MIN_LEN,
    N_WORDS,
    VOCAB,
    score_by_length,
    translation_task,
)
from impl.optimization.adam import adam
from impl.report import Report
from impl.sequence.encoder_decoder import greedy_decode, init_encoder_decoder, sequence_loss
from impl.training import even_chunk, train

__all__ = ["HIDDEN_SIZES", "OPTIMIZER", "accuracy_by_length", "experiment", "fit", "loss_fn"]


# --8<-- [start:experiment]
HIDDEN_SIZES = (32, 96)  # two sizes of the fixed vector c, trained side by side


def loss_fn(params, batch, key):
    """Both models side by side (``params = {"H=32": ..., "H=96": ...}``): one compiled loop."""
    del key
    losses = {name: sequence_loss(p, batch) for name, p in params.items()}
    return sum(losses.values()), losses


OPTIMIZER = adam(learning_rate=3e-3)


def fit(key: jax.Array, *, steps: int, n_train: int = 20_000, progress=None):
    k_data, k_init, k_train = jax.random.split(key, 3)
    data = translation_task(k_data, n_train, min_len=MIN_LEN, max_len=MAX_LEN)
    params = {
        f"H={h}": init_encoder_decoder(jax.random.fold_in(k_init, h), VOCAB, 16, h)
        for h in HIDDEN_SIZES
    }
    return train(
        loss_fn, params, OPTIMIZER, data, key=k_train, steps=steps, batch_size=64,
        chunk=even_chunk(steps, 500), progress=progress, label="3.5 encoder-decoder",
    )  # fmt: skip


# --8<-- [end:experiment]


def accuracy_by_length(params, test: dict) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_by_length` of this model's greedy translations."""
    return score_by_length(_greedy(params, test["src"]), test)


_greedy = jax.jit(lambda params, src: greedy_decode(params, src, MAX_LEN + 1))


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1200) -> Report:
    """Train two encoder–decoders (vectors of 32 and 96 units) on a toy translation; score
    their greedy translations by source length.

    Metrics: ``{model}_word_acc_len{n}`` and ``{model}_sentence_acc_len{n}`` for every length,
    and summaries over short (2–5) and long (13–16) sources.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed, impl="rbg")  # quicker to compile on CPU than threefry
    k_fit, k_test = jax.random.split(key)
    result = fit(k_fit, steps=steps, progress=progress)
    n_lengths = MAX_LEN - MIN_LEN + 1
    test = translation_task(k_test, 200 * n_lengths, min_len=MIN_LEN, max_len=MAX_LEN)
    metrics, curves = {}, {}
    lengths = np.arange(MIN_LEN, MAX_LEN + 1)
    short, long = lengths <= 5, lengths >= 13
    for name in (f"H={h}" for h in HIDDEN_SIZES):  # smallest vector first
        words, sentences = accuracy_by_length(result.params[name], test)
        curves[name] = (words, sentences)
        slug = name.replace("=", "").lower()  # "h32"
        for n, w, s in zip(lengths, words, sentences):
            metrics[f"{slug}_word_acc_len{n}"] = float(w)
            metrics[f"{slug}_sentence_acc_len{n}"] = float(s)
        metrics[f"{slug}_word_acc_short"] = float(words[short].mean())
        metrics[f"{slug}_word_acc_long"] = float(words[long].mean())
        metrics[f"{slug}_sentence_acc_short"] = float(sentences[short].mean())
        metrics[f"{slug}_sentence_acc_long"] = float(sentences[long].mean())
        metrics[f"{slug}_final_loss"] = float(np.mean(result.history[name][-50:]))

    lines = [f"{'source length':>13} " + " ".join(f"{n:>5}" for n in lengths[::2])]
    for name, (words, sentences) in curves.items():
        lines.append(f"{name + ' words':>13} " + " ".join(f"{w:>5.0%}" for w in words[::2]))
        lines.append(f"{name + ' sentences':>13} " + " ".join(f"{s:>5.0%}" for s in sentences[::2]))
    lines.append(
        f"chance per word: {1 / N_WORDS:.0%}; 200 test sentences per length, greedy decoding"
    )
    lines.append(
        f"{steps} steps of Adam, batch 64, sources of {MIN_LEN}-{MAX_LEN} words from {N_WORDS}"
    )
    fig = _figure(result.history, curves, lengths)
    return Report(
        "3.5 Encoder-decoder — one vector for the whole sentence",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _figure(history, curves, lengths):
    fig, axes = plotting.figure(3, height=3.3)
    for i, (name, (words, sentences)) in enumerate(curves.items()):
        color = plotting.PALETTE[i]
        axes[0].plot(lengths, 100 * words, "o-", color=color, label=f"{name}")
        axes[1].plot(lengths, 100 * sentences, "o-", color=color, label=f"{name}")
        loss = np.asarray(history[name])
        smooth = np.convolve(loss, np.ones(25) / 25, mode="valid")
        axes[2].plot(np.arange(len(smooth)) + 25, smooth, color=color, label=name)
    axes[0].axhline(100 / N_WORDS, color="gray", lw=1, ls=":", label="chance")
    axes[0].set(
        title="words translated right", xlabel="source length (words)", ylabel="%", ylim=(0, 102)
    )
    axes[1].set(title="whole sentences right", xlabel="source length (words)", ylim=(0, 102))
    axes[2].set(title="training loss (25-step mean)", xlabel="step", yscale="log")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig

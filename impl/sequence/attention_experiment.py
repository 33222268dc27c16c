"""3.7 Attention, the experiment: 3.5's toy translation, attention against one fixed vector.

An attention translator and 3.5's encoder–decoder, both with GRUs of 32 units, learn the toy
translation of `impl.data.translation` side by side, on the same batches, in one compiled loop
(the hand-written Adam of topic 2.8); their greedy translations are scored by source length and
one long sentence's alignment is drawn. The model lives in `impl.sequence.attention`.

Run it: ``python -m impl 3.7`` (or ``experiment(seed=0)`` from Python).
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
from impl.sequence import encoder_decoder as ed
from impl.sequence.attention import greedy_translate, init_attention_model, sequence_loss
from impl.training import even_chunk, train

__all__ = ["HIDDEN", "OPTIMIZER", "experiment", "fit", "loss_fn"]


# --8<-- [start:experiment]
HIDDEN = 32  # every GRU's state size, in both models (3.5's smaller vector)


def loss_fn(params, batch, key):
    """Both translators on the same batch: one compiled loop, per-model losses as metrics."""
    del key
    losses = {
        "attention": sequence_loss(params["attention"], batch),
        "3.5": ed.sequence_loss(params["3.5"], batch),
    }
    return sum(losses.values()), losses


OPTIMIZER = adam(learning_rate=3e-3)  # 3.5's


def fit(key: jax.Array, *, steps: int, n_train: int = 20_000, progress=None):
    # 3.5's keys: the same data and batches as its run, and the same start for its H=32 model.
    k_data, k_init, k_train = jax.random.split(key, 3)
    data = translation_task(k_data, n_train, min_len=MIN_LEN, max_len=MAX_LEN)
    params = {
        "attention": init_attention_model(jax.random.fold_in(k_init, 1), VOCAB, 16, HIDDEN, HIDDEN),
        "3.5": ed.init_encoder_decoder(jax.random.fold_in(k_init, HIDDEN), VOCAB, 16, HIDDEN),
    }
    return train(
        loss_fn, params, OPTIMIZER, data, key=k_train, steps=steps, batch_size=64,
        chunk=even_chunk(steps, 500), progress=progress, label="3.7 attention",
    )  # fmt: skip


# --8<-- [end:experiment]


_translate = {
    "attention": jax.jit(lambda p, src: greedy_translate(p, src, MAX_LEN + 1)),
    "3.5": jax.jit(lambda p, src: (ed.greedy_decode(p, src, MAX_LEN + 1), None)),
}


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 1000) -> Report:
    """Train an attention translator and 3.5's encoder–decoder side by side (32-unit GRUs);
    score greedy translations by source length; draw one long sentence's alignment.

    Metrics: ``{model}_word_acc_len{n}``, ``{model}_sentence_acc_len{n}``, summaries over short
    (2–5) and long (13–16) sources; for long sentences, ``alignment_diagonal`` (the fraction of
    target words whose largest weight falls on the source word they translate) and the mean
    weight on that word, the one before and the one after (``alignment_weight_*``).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    # rbg: quicker to compile on CPU
    k_fit, k_test = jax.random.split(jax.random.key(seed, impl="rbg"))
    result = fit(k_fit, steps=steps, progress=progress)
    test = translation_task(k_test, 200 * (MAX_LEN - MIN_LEN + 1), min_len=MIN_LEN, max_len=MAX_LEN)
    lengths = np.arange(MIN_LEN, MAX_LEN + 1)
    short, long = lengths <= 5, lengths >= 13
    metrics, curves = {}, {}
    for name in ("attention", "3.5"):
        out, alpha = _translate[name](result.params[name], test["src"])
        words, sentences = curves[name] = score_by_length(out, test)
        slug = "attention" if name == "attention" else "ed"
        for n, w, s in zip(lengths, words, sentences):
            metrics[f"{slug}_word_acc_len{n}"] = float(w)
            metrics[f"{slug}_sentence_acc_len{n}"] = float(s)
        for part, where in (("short", short), ("long", long)):
            metrics[f"{slug}_word_acc_{part}"] = float(words[where].mean())
            metrics[f"{slug}_sentence_acc_{part}"] = float(sentences[where].mean())
        metrics[f"{slug}_final_loss"] = float(np.mean(result.history[name][-50:]))
        if name == "attention":
            alignment = np.asarray(alpha)  # [n, MAX_LEN + 1, MAX_LEN]
    length = np.asarray(test["length"])
    rows = [(k, i) for k in np.flatnonzero(length >= 13) for i in range(length[k])]
    metrics["alignment_diagonal"] = float(
        np.mean([np.argmax(alignment[k, i]) == i for k, i in rows])
    )
    # a zero column before word 1 and after word N
    edged = np.pad(alignment, ((0, 0), (0, 0), (1, 1)))
    # mean weight one word off, or on
    for offset, where in ((-1, "previous"), (0, "aligned"), (1, "next")):
        metrics[f"alignment_weight_{where}"] = float(
            np.mean([edged[k, i, i + 1 + offset] for k, i in rows])
        )
    metrics["alignment_mass_near"] = sum(
        metrics[f"alignment_weight_{w}"] for w in ("previous", "aligned", "next")
    )

    lines = [f"{'source length':>22} " + " ".join(f"{n:>5}" for n in lengths[::2])]
    for name, label in (("attention", "attention"), ("3.5", "3.5 enc-dec")):
        words, sentences = curves[name]
        lines.append(f"{label + ' words':>22} " + " ".join(f"{w:>5.0%}" for w in words[::2]))
        lines.append(
            f"{label + ' sentences':>22} " + " ".join(f"{s:>5.0%}" for s in sentences[::2])
        )
    lines.append(
        f"alignment, 13-16-word sentences: largest weight on the word being translated for "
        f"{metrics['alignment_diagonal']:.0%} of target words; mean weight on it "
        f"{metrics['alignment_weight_aligned']:.0%}, on the word before "
        f"{metrics['alignment_weight_previous']:.0%}, "
        f"after {metrics['alignment_weight_next']:.0%}"
    )
    lines.append(
        f"both models: GRUs of {HIDDEN} units; {steps} steps of Adam, batch 64, same batches"
    )
    example = int(np.flatnonzero(length == MAX_LEN)[0])
    fig = _figure(
        result.history, curves, lengths, alignment[example], np.asarray(test["src"][example])
    )
    title = "3.7 Attention — a context vector per target word"
    return Report(
        title,
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
        extra={"alignment": alignment[example]},
    )


# --8<-- [end:run]


def _figure(history, curves, lengths, alpha, src):
    fig, axes = plotting.figure(2, 2, height=6.4)
    axes = axes.ravel()
    labels = {"attention": "attention (3.7)", "3.5": "one vector (3.5)"}
    for i, (name, (words, sentences)) in enumerate(curves.items()):
        color = plotting.PALETTE[i]
        axes[0].plot(lengths, 100 * words, "o-", color=color, label=labels[name])
        axes[1].plot(lengths, 100 * sentences, "o-", color=color, label=labels[name])
        smooth = np.convolve(np.asarray(history[name]), np.ones(25) / 25, mode="valid")
        axes[2].plot(np.arange(len(smooth)) + 25, smooth, color=color, label=labels[name])
    axes[0].axhline(100 / N_WORDS, color="gray", lw=1, ls=":", label="chance")
    axes[0].set(
        title="words translated right", xlabel="source length (words)", ylabel="%", ylim=(0, 102)
    )
    axes[1].set(title="whole sentences right", xlabel="source length (words)", ylim=(0, 102))
    axes[2].set(title="training loss (25-step mean)", xlabel="step", yscale="log")
    for ax in axes[:3]:
        ax.legend(fontsize=8)
    n = len(src)  # a sentence of MAX_LEN words: n target words, then EOS
    image = axes[3].imshow(alpha[: n + 1], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=axes[3], fraction=0.05)
    axes[3].set(
        title=f"alignment α, a {n}-word sentence", xlabel="source word j", ylabel="target word i"
    )
    axes[3].set_xticks(range(0, n, 3), [str(j + 1) for j in range(0, n, 3)])
    axes[3].set_yticks([*range(0, n, 3), n], [*(str(i + 1) for i in range(0, n, 3)), "EOS"])
    axes[3].grid(False)
    return fig

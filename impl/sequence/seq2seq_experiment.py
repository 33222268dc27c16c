"""3.6 Seq2Seq, the experiment: 3.5's toy translation, source in order vs reversed; greedy vs beam.

Two 2-layer LSTM seq2seq models, from the same start, learn the toy translation of
`impl.data.translation` side by side — one reads every source backwards (section 3.3) — as one
``vmap``-ed model in one compiled loop, with the hand-written Adam of topic 2.8; then their
greedy and beam-search translations (section 3.2) are scored by source length. The model lives
in `impl.sequence.seq2seq`.

Run it: ``python -m impl 3.6`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
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
from impl.sequence.encoder_decoder import token_loss
from impl.sequence.seq2seq import beam_search, greedy_decode, init_seq2seq, reverse_source, seq2seq
from impl.training import even_chunk, first_step, train

__all__ = ["BEAM", "LOSS_MARK", "OPTIMIZER", "ORDERS", "experiment", "fit", "loss_fn", "steps_to"]


# --8<-- [start:experiment]
HIDDEN, EMBED, LAYERS, BATCH = 48, 16, 2, 32
BEAM = 4
ORDERS = {"in order": lambda src: src, "reversed": reverse_source}


def loss_fn(params, batch, key):
    """Both models side by side, on the same batches; one reads every source backwards.

    The two are stacked and run as one ``vmap``-ed model: half as many small ops for the CPU.
    """
    del key
    stacked = jax.tree.map(lambda *p: jnp.stack(p), *(params[name] for name in ORDERS))  # [2, ...]
    srcs = jnp.stack([flip(batch["src"]) for flip in ORDERS.values()])  # [2, b, T]
    # [2, b, T_out, V]
    logits = jax.vmap(seq2seq, in_axes=(0, 0, None))(stacked, srcs, batch["tgt_in"])
    losses = {name: token_loss(logits[i], batch) for i, name in enumerate(ORDERS)}
    return sum(losses.values()), losses


OPTIMIZER = adam(learning_rate=6e-3)


def fit(key: jax.Array, *, steps: int, n_train: int = 20_000, progress=None):
    k_data, k_init, k_train = jax.random.split(key, 3)
    data = translation_task(k_data, n_train, min_len=MIN_LEN, max_len=MAX_LEN)
    p0 = init_seq2seq(k_init, VOCAB, EMBED, HIDDEN, LAYERS)  # the same start for both
    return train(
        loss_fn,
        {name: p0 for name in ORDERS},
        OPTIMIZER,
        data,
        key=k_train,
        steps=steps,
        batch_size=BATCH,
        chunk=even_chunk(steps, 500),
        progress=progress,
        label="3.6 seq2seq",
    )


# --8<-- [end:experiment]


LOSS_MARK = (
    0.6  # "learned faster": steps until the 50-step mean training loss first falls below this
)


def steps_to(loss: np.ndarray, level: float, window: int = 50) -> float:
    """The first step at which the ``window``-step mean of ``loss`` is below ``level``
    (``len(loss)`` if never)."""
    reached = first_step(loss, level, window=window)
    return float(len(loss) if reached is None else reached)


@jax.jit
def _decode_all(params, src):
    """Greedy and beam translations of ``src`` and their log-probabilities, for one model."""
    greedy, greedy_lp = greedy_decode(params, src, MAX_LEN + 1)
    beam, beam_lp = beam_search(params, src, MAX_LEN + 1, BEAM)
    return greedy, greedy_lp, beam, beam_lp


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 700) -> Report:
    """Train two 2-layer LSTM seq2seq models (source in order, source reversed) side by side;
    score greedy and beam-search translations by source length.

    Metrics per model (``inorder``, ``reversed``): ``{m}_loss_auc`` (mean training loss over all
    steps), ``{m}_final_loss``, ``{m}_{greedy|beam}_{word|sentence}_acc`` (all lengths),
    ``..._long`` (13–16 words), ``{m}_beam_minus_greedy_logp_min`` and ``..._mean``.
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    key = jax.random.key(seed, impl="rbg")  # quicker to compile on CPU than threefry
    k_fit, k_test = jax.random.split(key)
    result = fit(k_fit, steps=steps, progress=progress)
    test = translation_task(k_test, 100 * (MAX_LEN - MIN_LEN + 1), min_len=MIN_LEN, max_len=MAX_LEN)
    lengths = np.arange(MIN_LEN, MAX_LEN + 1)
    long = lengths >= 13
    metrics, curves = {}, {}
    for name, flip in ORDERS.items():
        slug = name.replace(" ", "")
        greedy, greedy_lp, beam, beam_lp = _decode_all(result.params[name], flip(test["src"]))
        # >= 0 when beam search found at least as likely a sentence
        gap = np.asarray(beam_lp - greedy_lp)
        loss = np.asarray(result.history[name])
        metrics[f"{slug}_loss_auc"] = float(loss.mean())
        metrics[f"{slug}_final_loss"] = float(loss[-50:].mean())
        metrics[f"{slug}_beam_minus_greedy_logp_min"] = float(gap.min())
        metrics[f"{slug}_beam_minus_greedy_logp_mean"] = float(gap.mean())
        metrics[f"{slug}_beam_more_likely_frac"] = float(np.mean(gap > 1e-4))
        metrics[f"{slug}_beam_less_likely_frac"] = float(np.mean(gap < -1e-4))
        metrics[f"{slug}_steps_to_loss_{LOSS_MARK}"] = steps_to(loss, LOSS_MARK)
        for how, out in (("greedy", greedy), ("beam", beam)):
            words, sentences = score_by_length(out, test)
            curves[name, how] = words, sentences
            metrics[f"{slug}_{how}_word_acc"] = float(words.mean())
            metrics[f"{slug}_{how}_sentence_acc"] = float(sentences.mean())
            metrics[f"{slug}_{how}_word_acc_long"] = float(words[long].mean())
            metrics[f"{slug}_{how}_sentence_acc_long"] = float(sentences[long].mean())
    lines = [
        f"{'':>20} {'steps to loss ' + str(LOSS_MARK):>16} "
        f"{'words':>6} {'sentences':>9} {'words 13-16':>11}"
    ]
    for name in ORDERS:
        slug = name.replace(" ", "")
        for how in ("greedy", f"beam {BEAM}"):
            h = how.split()[0]
            lines.append(
                f"{name + ', ' + how:>20} {metrics[f'{slug}_steps_to_loss_{LOSS_MARK}']:>16.0f} "
                f"{metrics[f'{slug}_{h}_word_acc']:>6.1%} "
                f"{metrics[f'{slug}_{h}_sentence_acc']:>9.1%} "
                f"{metrics[f'{slug}_{h}_word_acc_long']:>11.1%}"
            )
    for name in ORDERS:
        slug = name.replace(" ", "")
        lines.append(
            f"{name}: beam log p - greedy log p: min "
            f"{metrics[f'{slug}_beam_minus_greedy_logp_min']:+.3f}, "
            f"mean {metrics[f'{slug}_beam_minus_greedy_logp_mean']:+.3f} nats; beam more likely on "
            f"{metrics[f'{slug}_beam_more_likely_frac']:.1%}, "
            f"less likely on {metrics[f'{slug}_beam_less_likely_frac']:.1%}"
        )
    lines.append(
        f"{steps} steps of Adam, batch {BATCH}; {LAYERS} x "
        f"{HIDDEN} LSTM cells; 100 test sentences per length"
    )
    fig = _figure(result.history, curves, lengths)
    return Report(
        "3.6 Seq2Seq — reversed sources, beam search",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


# --8<-- [end:run]


def _figure(history, curves, lengths):
    fig, axes = plotting.figure(3, height=3.3)
    for i, name in enumerate(ORDERS):
        color = plotting.PALETTE[i]
        loss = np.asarray(history[name])
        smooth = np.convolve(loss, np.ones(25) / 25, mode="valid")
        axes[0].plot(np.arange(len(smooth)) + 25, smooth, color=color, label=f"source {name}")
        for how, style in (("greedy", "o-"), ("beam", "s--")):
            words, sentences = curves[name, how]
            axes[1].plot(lengths, 100 * words, style, color=color, ms=3, label=f"{name}, {how}")
            axes[2].plot(lengths, 100 * sentences, style, color=color, ms=3, label=f"{name}, {how}")
    axes[0].set(title="training loss (25-step mean)", xlabel="step", yscale="log")
    axes[1].axhline(100 / N_WORDS, color="gray", lw=1, ls=":", label="chance")
    axes[1].set(
        title="words translated right", xlabel="source length (words)", ylabel="%", ylim=(0, 102)
    )
    axes[2].set(title="whole sentences right", xlabel="source length (words)", ylim=(0, 102))
    for ax in axes:
        ax.legend(fontsize=8)
    return fig

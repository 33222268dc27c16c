"""3.6 Seq2Seq — a deep LSTM reads the sentence backwards, another writes its translation.

Sutskever, Vinyals & Le, *Sequence to sequence learning with neural networks*, NeurIPS 2014.
https://arxiv.org/abs/1409.3215

The idea: one multi-layer LSTM (the *encoder*) reads the source sentence; a second one (the
*decoder*) starts from the encoder's final cell and output states, layer by layer, and
generates the target one token at a time until it emits ``EOS`` (section 2). There is no
separate summary vector: the encoder's last states *are* the summary. Two tricks made it work:
the source is fed in **reversed** (section 3.3), which puts the first source words right next
to the first target words they translate, and translations are produced by a left-to-right
**beam search** (section 3.2) that keeps the ``B`` most probable partial hypotheses instead of
committing to the single best next word.

The paper used four layers of 1000 cells; the experiment here uses two small layers. The cell is
the LSTM with a forget gate of topic 3.3 (`forget_step`); the recurrences run through 3.1's
`scan_over_time`; the toy translation task, its loss and its scoring come from topic 3.5.

Shapes: token ids ``int32[batch, T]`` with ``PAD = 0`` after each sentence; the state of an
``L``-layer LSTM is a tuple of ``L`` pairs ``(c, h)``, each ``[batch, H]``; logits
``[batch, T_out, vocab]``; decoded sequences ``int32[batch, T_out]`` with their log-probabilities
``[batch]``.
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, plotting
from impl.data.sequences import BOS, EOS, PAD
from impl.deep_networks.dnn import NnxLayer, dense, init_layer
from impl.optimization.adam import adam
from impl.report import Report
from impl.sequence.encoder_decoder import (
    MAX_LEN,
    MIN_LEN,
    N_WORDS,
    VOCAB,
    check_pair,
    check_sizes,
    check_tokens,
    score_by_length,
    token_loss,
    translation_task,
)
from impl.sequence.forget_gate import NnxForgetLSTM, forget_step, init_forget_lstm
from impl.sequence.rnn import scan_over_time
from impl.training import even_chunk, first_step, train

__all__ = [
    "LinenSeq2Seq",
    "NnxSeq2Seq",
    "beam_search",
    "deep_lstm_step",
    "encode",
    "experiment",
    "greedy_decode",
    "init_deep_lstm",
    "init_seq2seq",
    "reverse_source",
    "seq2seq",
    "sequence_log_prob",
]

IN_BIAS = 0.0  # input gates start half open (3.2's -2 is for long silent delays, not needed here)
NEG = -1e9  # the log-probability of an impossible hypothesis (finite, so sums never make NaN)


# --8<-- [start:core]
def init_deep_lstm(key: jax.Array, d_in: int, d_hidden: int, n_layers: int) -> tuple[dict, ...]:
    """``n_layers`` forget-gate LSTM layers (topic 3.3); layer 0 reads ``d_in`` inputs, the others ``d_hidden``."""
    checks.positive_int("n_layers", n_layers)
    keys = jax.random.split(key, n_layers)
    return tuple(
        init_forget_lstm(k, d_in if i == 0 else d_hidden, d_hidden, in_bias=IN_BIAS) for i, k in enumerate(keys)
    )


def deep_lstm_step(layers, carry, x: jax.Array):
    """One tick of a stack of LSTMs: each layer's output is the next layer's input.

    ``carry``: one ``(c, h)`` per layer, each ``[b, H]``; ``x [b, d_in]`` -> ``(carry, h_top [b, H])``.
    """
    new = []
    for params, state in zip(layers, carry):
        state, x = forget_step(params, state, x)  # 3.3's cell: scale the old state, add the new input
        new.append(state)
    return tuple(new), x


def _encoder_tick(layers, carry, x_and_mask: jax.Array):
    """One encoder tick on ``[embedding; 1 if a real token else 0]``; padding leaves the state as it was."""
    x, keep = x_and_mask[:, :-1], x_and_mask[:, -1:] > 0  # [b, d_embed], [b, 1]
    moved, _ = deep_lstm_step(layers, carry, x)
    carry = jax.tree.map(lambda new, old: jnp.where(keep, new, old), moved, carry)
    return carry, carry


def encode(params: dict, src: jax.Array):
    """The encoder's final states, one ``(c, h)`` per layer (each ``[b, H]``): the whole summary."""
    emb = params["src_embed"][src]  # [b, T, d_embed]
    keep = (src != PAD).astype(emb.dtype)[..., None]  # [b, T, 1]
    hidden = params["readout"]["kernel"].shape[0]
    zeros = jnp.zeros((src.shape[0], hidden), emb.dtype)
    carry0 = tuple((zeros, zeros) for _ in params["encoder"])
    states = scan_over_time(_encoder_tick, params["encoder"], jnp.concatenate([emb, keep], -1), carry0)
    return jax.tree.map(lambda s: s[:, -1], states)  # [b, T, H] -> [b, H]: after the last real token


def reverse_source(src: jax.Array) -> jax.Array:
    """Each sentence's words in reverse order, padding still at the end (section 3.3).

    ``[a, b, c, PAD, PAD] -> [c, b, a, PAD, PAD]``: the first source word becomes the last one read.
    """
    length = jnp.sum(src != PAD, axis=1, keepdims=True)  # [b, 1]
    pos = jnp.arange(src.shape[1]).reshape(1, -1)  # [1, T]
    return jnp.take_along_axis(src, jnp.where(pos < length, length - 1 - pos, pos), axis=1)


def _decoder_tick(layers, carry, x):
    return deep_lstm_step(layers, carry, x)


def seq2seq(params: dict, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
    """Logits of ``p(y_t | y_{<t}, x)`` with the true previous tokens fed in (teacher forcing), eq. 1.

    ``src int[b, T_src]``, ``tgt_in int[b, T_out]`` (``BOS`` + target shifted right) ->
    ``[b, T_out, vocab]``. The decoder starts from the encoder's final states.
    """
    carry0 = encode(params, src)
    hs = scan_over_time(_decoder_tick, params["decoder"], params["tgt_embed"][tgt_in], carry0)  # [b, T_out, H]
    return dense(params["readout"], hs)  # softmax over the vocabulary follows in the loss


def decoder_step(params: dict, carry, y_prev: jax.Array):
    """One step of generation: ``y_prev int[n]`` -> ``(carry, log p(. | ...) [n, vocab])``."""
    carry, h = deep_lstm_step(params["decoder"], carry, params["tgt_embed"][y_prev])
    return carry, jax.nn.log_softmax(dense(params["readout"], h))


def sequence_log_prob(params: dict, src: jax.Array, out: jax.Array) -> jax.Array:
    """``log p(out | src)`` (eq. 1), counting tokens up to and including the first ``EOS``. ``-> [b]``."""
    tgt_in = jnp.concatenate([jnp.full((out.shape[0], 1), BOS, out.dtype), out[:, :-1]], axis=1)
    logp = jax.nn.log_softmax(seq2seq(params, src, tgt_in))  # [b, T, V]
    picked = jnp.take_along_axis(logp, out[..., None], axis=-1)[..., 0]  # [b, T]
    ended_before = jnp.cumsum(out == EOS, axis=1) - (out == EOS)  # EOSs strictly before t
    return jnp.sum(jnp.where(ended_before == 0, picked, 0.0), axis=1)


def greedy_decode(params: dict, src: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """The most probable next token, ``length`` times: ``-> (int[b, length], log-probability [b])``.

    After ``EOS`` the output is ``PAD`` and the log-probability stops growing.
    """
    carry = encode(params, src)
    start = (jnp.full((src.shape[0],), BOS, jnp.int32), jnp.zeros(src.shape[0]), jnp.zeros(src.shape[0], bool))

    def tick(state, _):
        carry, y_prev, score, done = state
        carry, logp = decoder_step(params, carry, y_prev)  # [b, V]
        y = jnp.argmax(logp, axis=-1).astype(jnp.int32)
        score = score + jnp.where(done, 0.0, jnp.max(logp, axis=-1))
        out = jnp.where(done, PAD, y)
        return (carry, y, score, done | (y == EOS)), out

    (_, _, score, _), ys = jax.lax.scan(tick, (carry, *start), None, length=length)  # ys [length, b]
    return ys.T, score


def beam_search(params: dict, src: jax.Array, length: int, beam_width: int) -> tuple[jax.Array, jax.Array]:
    """Left-to-right beam search (section 3.2): ``-> (best int[b, length], its log-probability [b])``.

    Keeps the ``beam_width`` most probable hypotheses per sentence, all sentences and beams in one
    ``[b * B]`` batch. A hypothesis that has emitted ``EOS`` is finished: it may only be extended
    by ``PAD`` at no cost, so it keeps its score and competes with the unfinished ones. Scores are
    plain log-probabilities, as in the paper (no length normalisation).
    """
    b, k = src.shape[0], beam_width
    tile = lambda a: jnp.repeat(a, k, axis=0)  # noqa: E731  [b, ...] -> [b * k, ...]
    carry = jax.tree.map(tile, encode(params, src))  # every beam starts from the same encoder state
    score = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, NEG).reshape(1, k), (b, 1))  # [b, k]: one live beam
    tokens = jnp.zeros((b, k, length), jnp.int32)
    state = (carry, jnp.full((b * k,), BOS, jnp.int32), score, jnp.zeros((b, k), bool), tokens)
    vocab = params["readout"]["kernel"].shape[1]
    pad_only = jnp.where(jnp.arange(vocab) == PAD, 0.0, NEG).reshape(1, 1, vocab)  # [1, 1, V]

    def tick(state, t):
        carry, y_prev, score, done, tokens = state
        carry, logp = decoder_step(params, carry, y_prev)  # [b * k, V]
        logp = jnp.where(done[..., None], pad_only, logp.reshape(b, k, vocab))  # finished: PAD, free
        total = (score[..., None] + logp).reshape(b, k * vocab)  # [b, k * V]: every one-word extension
        score, best = jax.lax.top_k(total, k)  # [b, k]
        parent, y = best // vocab, (best % vocab).astype(jnp.int32)  # which beam, which word
        rows = (jnp.arange(b).reshape(-1, 1) * k + parent).reshape(-1)  # [b * k] into the flat batch
        carry = jax.tree.map(lambda s: s[rows], carry)
        tokens = jnp.take_along_axis(tokens, parent[..., None], axis=1).at[:, :, t].set(y)
        done = jnp.take_along_axis(done, parent, axis=1) | (y == EOS)
        return (carry, y.reshape(-1), score, done, tokens), None

    (_, _, score, _, tokens), _ = jax.lax.scan(tick, state, jnp.arange(length))
    return tokens[:, 0], score[:, 0]  # top_k sorts: beam 0 is the best


# --8<-- [end:core]


def init_seq2seq(key: jax.Array, vocab: int, d_embed: int, d_hidden: int, n_layers: int = 2) -> dict:
    """Two embedding tables, the encoder and decoder stacks, and the softmax readout."""
    check_sizes(vocab, d_embed, d_hidden)
    k = jax.random.split(checks.prng_key("key", key), 5)
    return {
        "src_embed": jax.random.normal(k[0], (vocab, d_embed)),  # [V, d_embed]
        "tgt_embed": jax.random.normal(k[1], (vocab, d_embed)),
        "encoder": init_deep_lstm(k[2], d_embed, d_hidden, n_layers),
        "decoder": init_deep_lstm(k[3], d_embed, d_hidden, n_layers),
        "readout": init_layer(k[4], d_hidden, vocab),  # [H, V]
    }


def check_decode(src, length: int, beam_width: int, vocab: int) -> None:
    """Arguments of the decoders, checked before any compute."""
    check_tokens("src", src, vocab)
    checks.positive_int("length", length)
    checks.positive_int("beam_width", beam_width)
    if beam_width > vocab:
        raise ValueError(f"beam_width: expected at most the vocabulary size {vocab}, got {beam_width}")


# --8<-- [start:linen]
class LinenSeq2Seq(nn.Module):
    """Functional twin: ``apply(variables, src, tgt_in) -> logits [b, T_out, vocab]``.

    ``method="greedy"`` / ``method="beam"`` decode with the same parameters.
    """

    vocab: int
    d_embed: int = 16
    d_hidden: int = 64
    n_layers: int = 2

    def setup(self):
        check_sizes(self.vocab, self.d_embed, self.d_hidden)
        checks.positive_int("n_layers", self.n_layers)
        e, h, v, n = self.d_embed, self.d_hidden, self.vocab, self.n_layers
        self.src_embed = self.param("src_embed", lambda k: jax.random.normal(k, (v, e)))
        self.tgt_embed = self.param("tgt_embed", lambda k: jax.random.normal(k, (v, e)))
        self.encoder = self.param("encoder", init_deep_lstm, e, h, n)
        self.decoder = self.param("decoder", init_deep_lstm, e, h, n)
        self.readout = self.param("readout", init_layer, h, v)

    def params(self) -> dict:
        names = ("src_embed", "tgt_embed", "encoder", "decoder", "readout")
        return {name: getattr(self, name) for name in names}

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        check_pair(src, tgt_in, self.vocab)
        return seq2seq(self.params(), src, tgt_in)

    def greedy(self, src: jax.Array, length: int):
        check_decode(src, length, 1, self.vocab)
        return greedy_decode(self.params(), src, length)

    def beam(self, src: jax.Array, length: int, beam_width: int):
        check_decode(src, length, beam_width, self.vocab)
        return beam_search(self.params(), src, length, beam_width)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxSeq2Seq(nnx.Module):
    """Object-oriented twin: two stacks of 3.3's `NnxForgetLSTM`, embeddings and a readout."""

    def __init__(self, vocab: int, d_embed: int = 16, d_hidden: int = 64, n_layers: int = 2, *, rngs: nnx.Rngs):
        check_sizes(vocab, d_embed, d_hidden)
        checks.positive_int("n_layers", n_layers)
        self.vocab = vocab
        self.src_embed = nnx.Param(jax.random.normal(rngs.params(), (vocab, d_embed)))
        self.tgt_embed = nnx.Param(jax.random.normal(rngs.params(), (vocab, d_embed)))
        stack = lambda: nnx.List(  # noqa: E731
            [
                NnxForgetLSTM(d_embed if i == 0 else d_hidden, d_hidden, in_bias=IN_BIAS, rngs=rngs)
                for i in range(n_layers)
            ]
        )
        self.encoder, self.decoder = stack(), stack()
        self.readout = NnxLayer(d_hidden, vocab, rngs=rngs)

    def params(self) -> dict:
        """The same dict the pure functions take."""
        return {
            "src_embed": self.src_embed[...],
            "tgt_embed": self.tgt_embed[...],
            "encoder": tuple(layer.params() for layer in self.encoder),
            "decoder": tuple(layer.params() for layer in self.decoder),
            "readout": self.readout.read(),
        }

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
        check_pair(src, tgt_in, self.vocab)
        return seq2seq(self.params(), src, tgt_in)

    def greedy(self, src: jax.Array, length: int):
        check_decode(src, length, 1, self.vocab)
        return greedy_decode(self.params(), src, length)

    def beam(self, src: jax.Array, length: int, beam_width: int):
        check_decode(src, length, beam_width, self.vocab)
        return beam_search(self.params(), src, length, beam_width)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: 3.5's toy translation, source in order vs reversed; greedy vs beam.
# ---------------------------------------------------------------------------------------
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
    logits = jax.vmap(seq2seq, in_axes=(0, 0, None))(stacked, srcs, batch["tgt_in"])  # [2, b, T_out, V]
    losses = {name: token_loss(logits[i], batch) for i, name in enumerate(ORDERS)}
    return sum(losses.values()), losses


OPTIMIZER = adam(learning_rate=6e-3)


def fit(key: jax.Array, *, steps: int, n_train: int = 20_000, progress=None):
    k_data, k_init, k_train = jax.random.split(key, 3)
    data = translation_task(k_data, n_train, min_len=MIN_LEN, max_len=MAX_LEN)
    p0 = init_seq2seq(k_init, VOCAB, EMBED, HIDDEN, LAYERS)  # the same start for both
    return train(
        loss_fn, {name: p0 for name in ORDERS}, OPTIMIZER, data, key=k_train, steps=steps, batch_size=BATCH,
        chunk=even_chunk(steps, 500), progress=progress, label="3.6 seq2seq",
    )  # fmt: skip


# --8<-- [end:experiment]


LOSS_MARK = 0.6  # "learned faster": steps until the 50-step mean training loss first falls below this


def steps_to(loss: np.ndarray, level: float, window: int = 50) -> float:
    """The first step at which the ``window``-step mean of ``loss`` is below ``level`` (``len(loss)`` if never)."""
    reached = first_step(loss, level, window=window)
    return float(len(loss) if reached is None else reached)


@jax.jit
def _decode_all(params, src):
    """Greedy and beam translations of ``src`` and their log-probabilities, for one model."""
    greedy, greedy_lp = greedy_decode(params, src, MAX_LEN + 1)
    beam, beam_lp = beam_search(params, src, MAX_LEN + 1, BEAM)
    return greedy, greedy_lp, beam, beam_lp


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
        gap = np.asarray(beam_lp - greedy_lp)  # >= 0 when beam search found at least as likely a sentence
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
    lines = [f"{'':>20} {'steps to loss ' + str(LOSS_MARK):>16} {'words':>6} {'sentences':>9} {'words 13-16':>11}"]
    for name in ORDERS:
        slug = name.replace(" ", "")
        for how in ("greedy", f"beam {BEAM}"):
            h = how.split()[0]
            lines.append(
                f"{name + ', ' + how:>20} {metrics[f'{slug}_steps_to_loss_{LOSS_MARK}']:>16.0f} "
                f"{metrics[f'{slug}_{h}_word_acc']:>6.1%} {metrics[f'{slug}_{h}_sentence_acc']:>9.1%} "
                f"{metrics[f'{slug}_{h}_word_acc_long']:>11.1%}"
            )
    for name in ORDERS:
        slug = name.replace(" ", "")
        lines.append(
            f"{name}: beam log p - greedy log p: min {metrics[f'{slug}_beam_minus_greedy_logp_min']:+.3f}, "
            f"mean {metrics[f'{slug}_beam_minus_greedy_logp_mean']:+.3f} nats; beam more likely on "
            f"{metrics[f'{slug}_beam_more_likely_frac']:.1%}, "
            f"less likely on {metrics[f'{slug}_beam_less_likely_frac']:.1%}"
        )
    lines.append(f"{steps} steps of Adam, batch {BATCH}; {LAYERS} x {HIDDEN} LSTM cells; 100 test sentences per length")
    fig = _figure(result.history, curves, lengths)
    return Report("3.6 Seq2Seq — reversed sources, beam search", metrics, lines, fig, time.perf_counter() - start)


def _figure(history, curves, lengths):
    fig, axes = plotting.figure(3, width=10.5, height=3.3)
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
    axes[1].set(title="words translated right", xlabel="source length (words)", ylabel="%", ylim=(0, 102))
    axes[2].set(title="whole sentences right", xlabel="source length (words)", ylim=(0, 102))
    for ax in axes:
        ax.legend(fontsize=7)
    return fig

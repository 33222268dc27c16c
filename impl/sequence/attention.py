"""3.7 Attention — the decoder looks back at every source word instead of one summary vector.

Bahdanau, Cho & Bengio, *Neural machine translation by jointly learning to align and
translate*, ICLR 2015. https://arxiv.org/abs/1409.0473

The idea: topic 3.5's encoder–decoder squeezes the whole source into one fixed-length vector
``c``. Here the encoder keeps one *annotation* ``h_j`` per source word — the states of a
forward and a backward GRU, concatenated, so each describes its word in the context of the
whole sentence (section 3.2). Before emitting target word ``i`` the decoder scores every
annotation against its own state, ``e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)`` (the *alignment
model*, appendix A.1.2), turns the scores into weights ``alpha_ij`` with a softmax over ``j``
(eq. 6), and reads the weighted mean ``c_i = sum_j alpha_ij h_j`` (eq. 5): a *different*
context vector for every target word. The alignment is learned with the translation, from
the translation loss alone, and the weights ``alpha`` show it as a heatmap.

Everything recurrent is reused from topic 3.5 (``gru_step``, its padding-aware encoder tick,
the toy translation data and loss) and topic 3.1 (``scan_over_time``); the readout is 1.1's
:func:`~impl.deep_networks.dnn.dense`.

Shapes: token ids ``int32[batch, T]`` with ``PAD = 0`` after each source's end; annotations
``float32[batch, T, 2H]``; attention weights ``[batch, T_out, T]``; logits ``[batch, T_out, vocab]``.
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impl import checks, plotting
from impl.data.sequences import BOS, PAD
from impl.deep_networks.dnn import NnxLayer, dense, init_layer
from impl.report import Report
from impl.sequence import encoder_decoder as ed
from impl.sequence.encoder_decoder import encoder_tick, gru_inputs, gru_step, init_gru
from impl.sequence.rnn import scan_over_time
from impl.training import even_chunk, train

__all__ = [
    "LinenAttentionModel",
    "NnxAlignment",
    "NnxAttentionModel",
    "align",
    "annotate",
    "attention_model",
    "decoder_step",
    "experiment",
    "greedy_translate",
    "init_alignment",
    "init_attention_model",
    "masked_softmax",
    "sequence_loss",
]


# --8<-- [start:core]
def annotate(params: dict, src: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The bidirectional encoder (section 3.2). ``src int[b, T] -> (h [b, T, 2H], h_back_1 [b, H])``.

    ``h_j = [h_fwd_j ; h_back_j]``: the forward GRU has read words ``1..j``, the backward GRU
    words ``N..j``. Both use 3.5's tick, which leaves the state unchanged on ``PAD``, so the
    backward GRU starts from zero at each sentence's own last word. Also returns
    ``h_back_1``, the backward state at the first word, from which the decoder starts.
    """
    emb = params["src_embed"][src]  # [b, T, E]
    keep = (src != PAD).astype(emb.dtype)[..., None]  # [b, T, 1]: 1 on real tokens
    xs = {d: jnp.concatenate([gru_inputs(params[d], emb), keep], axis=-1) for d in ("forward", "backward")}
    h0 = jnp.zeros((src.shape[0], params["forward"]["u_r"].shape[0]), emb.dtype)  # [b, H]
    fwd = scan_over_time(encoder_tick, params["forward"], xs["forward"], h0)  # [b, T, H]
    bwd = jnp.flip(scan_over_time(encoder_tick, params["backward"], jnp.flip(xs["backward"], axis=1), h0), axis=1)
    return jnp.concatenate([fwd, bwd], axis=-1), bwd[:, 0]  # [b, T, 2H], [b, H]


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Eq. 6 over the real source words only: ``softmax`` of ``scores [b, T]`` where ``mask``
    is true, exactly 0 on ``PAD``. Every row needs at least one true entry."""
    top = jax.lax.stop_gradient(jnp.max(jnp.where(mask, scores, -jnp.inf), axis=-1, keepdims=True))  # [b, 1]
    weights = jnp.exp(jnp.where(mask, scores - top, -jnp.inf))  # [b, T]: exp(-inf) = 0 on PAD, and so is its gradient
    return weights / jnp.sum(weights, axis=-1, keepdims=True)


def align(params: dict, s_prev: jax.Array, keys: jax.Array, mask: jax.Array) -> jax.Array:
    """The attention weights ``alpha_ij`` for one target step. ``s_prev [b, H]`` is the decoder's
    state ``s_{i-1}``, ``keys [b, T, A]`` the precomputed ``U_a h_j`` -> ``alpha [b, T]``."""
    query = (s_prev @ params["w_a"])[:, None, :]  # [b, 1, A]: W_a s_{i-1}
    scores = jnp.tanh(query + keys) @ params["v_a"]  # [b, T]: e_ij = v_a^T tanh(W_a s + U_a h_j), A.1.2
    return masked_softmax(scores, mask)  # eq. 6


def decoder_step(params: dict, memory: tuple, s_prev: jax.Array, y_prev: jax.Array):
    """One target word: attend, update the state, read out (eqs. 4–6).

    ``memory = (annotations [b, T, 2H], keys [b, T, A], mask [b, T])`` from the encoder;
    ``s_prev [b, H]``; ``y_prev [b, E]``, the previous target word's embedding.
    Returns ``(s_i [b, H], (logits [b, vocab], alpha [b, T]))``.
    """
    annotations, keys, mask = memory
    alpha = align(params["align"], s_prev, keys, mask)  # [b, T]
    c = jnp.einsum("bt,btd->bd", alpha, annotations)  # [b, 2H]: c_i = sum_j alpha_ij h_j, eq. 5
    x = jnp.concatenate([y_prev, c], axis=-1)  # [b, E + 2H]
    s = gru_step(params["decoder"], s_prev, x)  # s_i = f(s_{i-1}, y_{i-1}, c_i), eq. 4
    logits = dense(params["readout"], jnp.concatenate([s, x], axis=-1))  # g(y_{i-1}, s_i, c_i), eq. 4
    return s, (logits, alpha)


def _start(params: dict, src: jax.Array):
    """Encode once: the memory every decoder step reads, and ``s_0 = tanh(W_s h_back_1)`` (A.2.2)."""
    annotations, back_first = annotate(params, src)
    keys = annotations @ params["align"]["u_a"]  # [b, T, A]: U_a h_j, computed once for all i
    memory = (annotations, keys, src != PAD)
    return memory, jnp.tanh(dense(params["init"], back_first))  # s_0 [b, H]


def attention_model(params: dict, src: jax.Array, tgt_in: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Teacher forcing: ``src int[b, T]``, ``tgt_in int[b, T_out]`` (``BOS`` + target shifted
    right) -> ``(logits [b, T_out, vocab], alpha [b, T_out, T])``."""
    memory, s0 = _start(params, src)
    tick = lambda p, s, y: decoder_step(p, memory, s, y)  # noqa: E731
    return scan_over_time(tick, params, params["tgt_embed"][tgt_in], s0)


def greedy_translate(params: dict, src: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Emit ``length`` words, each the most probable given those before.
    ``-> (tokens int[b, length], alpha [b, length, T])``."""
    memory, s0 = _start(params, src)

    def tick(carry, _):
        s, y_prev = carry
        s, (logits, alpha) = decoder_step(params, memory, s, params["tgt_embed"][y_prev])
        y = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return (s, y), (y, alpha)

    start = jnp.full((src.shape[0],), BOS, jnp.int32)
    _, (ys, alphas) = jax.lax.scan(tick, (s0, start), None, length=length)  # [length, b], [length, b, T]
    return ys.T, jnp.swapaxes(alphas, 0, 1)


# --8<-- [end:core]


def init_alignment(key: jax.Array, d_state: int, d_annotation: int, d_align: int) -> dict:
    """``W_a [H, A]``, ``U_a [2H, A]``, ``v_a [A]`` (A.1.2; no biases, as in the paper)."""
    for name, value in (("d_state", d_state), ("d_annotation", d_annotation), ("d_align", d_align)):
        checks.positive_int(name, value)
    k = jax.random.split(key, 3)
    return {
        "w_a": jax.random.normal(k[0], (d_state, d_align)) / jnp.sqrt(d_state),
        "u_a": jax.random.normal(k[1], (d_annotation, d_align)) / jnp.sqrt(d_annotation),
        "v_a": jax.random.normal(k[2], (d_align,)) / jnp.sqrt(d_align),
    }


def init_attention_model(key: jax.Array, vocab: int, d_embed: int, d_hidden: int, d_align: int) -> dict:
    """All parameters: embeddings, two encoder GRUs, ``W_s``, the alignment model, the decoder
    GRU and the readout. ``d_hidden`` is each GRU's size ``H``; annotations have ``2H`` units."""
    _check_sizes(vocab, d_embed, d_hidden, d_align)
    e, h = d_embed, d_hidden
    k = jax.random.split(key, 8)
    return {
        "src_embed": jax.random.normal(k[0], (vocab, e)),  # [V, E]
        "tgt_embed": jax.random.normal(k[1], (vocab, e)),
        "forward": init_gru(k[2], e, h),
        "backward": init_gru(k[3], e, h),
        "init": init_layer(k[4], h, h),  # W_s: h_back_1 -> s_0
        "align": init_alignment(k[5], h, 2 * h, d_align),
        "decoder": init_gru(k[6], e + 2 * h, h),
        "readout": init_layer(k[7], h + e + 2 * h, vocab),
    }


def _check_sizes(vocab: int, d_embed: int, d_hidden: int, d_align: int) -> None:
    ed.check_sizes(vocab, d_embed, d_hidden)
    checks.positive_int("d_align", d_align)


# --8<-- [start:linen]
class LinenAttentionModel(nn.Module):
    """Functional twin: ``apply(variables, src, tgt_in) -> (logits [b, T_out, V], alpha [b, T_out, T])``."""

    vocab: int
    d_embed: int = 16
    d_hidden: int = 32
    d_align: int = 32

    @nn.compact
    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> tuple[jax.Array, jax.Array]:
        _check_sizes(self.vocab, self.d_embed, self.d_hidden, self.d_align)
        ed.check_pair(src, tgt_in, self.vocab)
        e, h, v = self.d_embed, self.d_hidden, self.vocab
        params = {
            "src_embed": self.param("src_embed", lambda k: jax.random.normal(k, (v, e))),
            "tgt_embed": self.param("tgt_embed", lambda k: jax.random.normal(k, (v, e))),
            "forward": self.param("forward", init_gru, e, h),
            "backward": self.param("backward", init_gru, e, h),
            "init": self.param("init", init_layer, h, h),
            "align": self.param("align", init_alignment, h, 2 * h, self.d_align),
            "decoder": self.param("decoder", init_gru, e + 2 * h, h),
            "readout": self.param("readout", init_layer, 3 * h + e, v),
        }
        return attention_model(params, src, tgt_in)


# --8<-- [end:linen]


# --8<-- [start:nnx]
class NnxAlignment(nnx.Module):
    """The alignment model's ``W_a``, ``U_a``, ``v_a`` as attributes."""

    def __init__(self, d_state: int, d_annotation: int, d_align: int, *, rngs: nnx.Rngs):
        for name, value in init_alignment(rngs.params(), d_state, d_annotation, d_align).items():
            setattr(self, name, nnx.Param(value))

    def read(self) -> dict:
        return {name: getattr(self, name)[...] for name in ("w_a", "u_a", "v_a")}


class NnxAttentionModel(nnx.Module):
    """Object-oriented twin: ``model(src, tgt_in) -> (logits [b, T_out, V], alpha [b, T_out, T])``."""

    def __init__(self, vocab: int, d_embed: int = 16, d_hidden: int = 32, d_align: int = 32, *, rngs: nnx.Rngs):
        _check_sizes(vocab, d_embed, d_hidden, d_align)
        e, h = d_embed, d_hidden
        self.vocab = vocab
        self.src_embed = nnx.Param(jax.random.normal(rngs.params(), (vocab, e)))
        self.tgt_embed = nnx.Param(jax.random.normal(rngs.params(), (vocab, e)))
        self.forward = ed.NnxGRU(e, h, rngs=rngs)
        self.backward = ed.NnxGRU(e, h, rngs=rngs)
        self.init = NnxLayer(h, h, rngs=rngs)
        self.align = NnxAlignment(h, 2 * h, d_align, rngs=rngs)
        self.decoder = ed.NnxGRU(e + 2 * h, h, rngs=rngs)
        self.readout = NnxLayer(3 * h + e, vocab, rngs=rngs)

    def params(self) -> dict:
        """The same dict the pure functions take."""
        return {
            "src_embed": self.src_embed[...],
            "tgt_embed": self.tgt_embed[...],
            "forward": self.forward.read(),
            "backward": self.backward.read(),
            "init": self.init.read(),
            "align": self.align.read(),
            "decoder": self.decoder.read(),
            "readout": self.readout.read(),
        }

    def __call__(self, src: jax.Array, tgt_in: jax.Array) -> tuple[jax.Array, jax.Array]:
        ed.check_pair(src, tgt_in, self.vocab)
        return attention_model(self.params(), src, tgt_in)


# --8<-- [end:nnx]


# ---------------------------------------------------------------------------------------
# The experiment: 3.5's toy translation, attention against one fixed vector.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
HIDDEN = 32  # every GRU's state size, in both models (3.5's smaller vector)
MIN_LEN, MAX_LEN = ed.MIN_LEN, ed.MAX_LEN


def sequence_loss(params, batch) -> jax.Array:
    """3.5's :func:`~impl.sequence.encoder_decoder.token_loss` of the attention model, teacher-forced."""
    return ed.token_loss(attention_model(params, batch["src"], batch["tgt_in"])[0], batch)


def loss_fn(params, batch, key):
    """Both translators on the same batch: one compiled loop, per-model losses as metrics."""
    del key
    losses = {"attention": sequence_loss(params["attention"], batch), "3.5": ed.sequence_loss(params["3.5"], batch)}
    return sum(losses.values()), losses


def fit(key: jax.Array, *, steps: int, n_train: int = 20_000, progress=None):
    # 3.5's keys: the same data and batches as its run, and the same start for its H=32 model.
    k_data, k_init, k_train = jax.random.split(key, 3)
    data = ed.translation_task(k_data, n_train, min_len=MIN_LEN, max_len=MAX_LEN)
    params = {
        "attention": init_attention_model(jax.random.fold_in(k_init, 1), ed.VOCAB, 16, HIDDEN, HIDDEN),
        "3.5": ed.init_encoder_decoder(jax.random.fold_in(k_init, HIDDEN), ed.VOCAB, 16, HIDDEN),
    }
    return train(
        loss_fn, params, ed.OPTIMIZER, data, key=k_train, steps=steps, batch_size=64,
        chunk=even_chunk(steps, 500), progress=progress, label="3.7 attention",
    )  # fmt: skip


# --8<-- [end:experiment]


_translate = {
    "attention": jax.jit(lambda p, src: greedy_translate(p, src, MAX_LEN + 1)),
    "3.5": jax.jit(lambda p, src: (ed.greedy_decode(p, src, MAX_LEN + 1), None)),
}


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
    k_fit, k_test = jax.random.split(jax.random.key(seed, impl="rbg"))  # rbg: quicker to compile on CPU
    result = fit(k_fit, steps=steps, progress=progress)
    test = ed.translation_task(k_test, 200 * (MAX_LEN - MIN_LEN + 1), min_len=MIN_LEN, max_len=MAX_LEN)
    lengths = np.arange(MIN_LEN, MAX_LEN + 1)
    short, long = lengths <= 5, lengths >= 13
    metrics, curves = {}, {}
    for name in ("attention", "3.5"):
        out, alpha = _translate[name](result.params[name], test["src"])
        words, sentences = curves[name] = ed.score_by_length(out, test)
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
    metrics["alignment_diagonal"] = float(np.mean([np.argmax(alignment[k, i]) == i for k, i in rows]))
    edged = np.pad(alignment, ((0, 0), (0, 0), (1, 1)))  # a zero column before word 1 and after word N
    for offset, where in ((-1, "previous"), (0, "aligned"), (1, "next")):  # mean weight one word off, or on
        metrics[f"alignment_weight_{where}"] = float(np.mean([edged[k, i, i + 1 + offset] for k, i in rows]))
    metrics["alignment_mass_near"] = sum(metrics[f"alignment_weight_{w}"] for w in ("previous", "aligned", "next"))

    lines = [f"{'source length':>22} " + " ".join(f"{n:>5}" for n in lengths[::2])]
    for name, label in (("attention", "attention"), ("3.5", "3.5 enc-dec")):
        words, sentences = curves[name]
        lines.append(f"{label + ' words':>22} " + " ".join(f"{w:>5.0%}" for w in words[::2]))
        lines.append(f"{label + ' sentences':>22} " + " ".join(f"{s:>5.0%}" for s in sentences[::2]))
    lines.append(
        f"alignment, 13-16-word sentences: largest weight on the word being translated for "
        f"{metrics['alignment_diagonal']:.0%} of target words; mean weight on it "
        f"{metrics['alignment_weight_aligned']:.0%}, on the word before {metrics['alignment_weight_previous']:.0%}, "
        f"after {metrics['alignment_weight_next']:.0%}"
    )
    lines.append(f"both models: GRUs of {HIDDEN} units; {steps} steps of Adam, batch 64, same batches")
    example = int(np.flatnonzero(length == MAX_LEN)[0])
    fig = _figure(result.history, curves, lengths, alignment[example], np.asarray(test["src"][example]))
    title = "3.7 Attention — a context vector per target word"
    return Report(title, metrics, lines, fig, time.perf_counter() - start, extra={"alignment": alignment[example]})


def _figure(history, curves, lengths, alpha, src):
    fig, axes = plotting.figure(4, width=13.5, height=3.4)
    labels = {"attention": "attention (3.7)", "3.5": "one vector (3.5)"}
    for i, (name, (words, sentences)) in enumerate(curves.items()):
        color = plotting.PALETTE[i]
        axes[0].plot(lengths, 100 * words, "o-", color=color, label=labels[name])
        axes[1].plot(lengths, 100 * sentences, "o-", color=color, label=labels[name])
        smooth = np.convolve(np.asarray(history[name]), np.ones(25) / 25, mode="valid")
        axes[2].plot(np.arange(len(smooth)) + 25, smooth, color=color, label=labels[name])
    axes[0].axhline(100 / ed.N_WORDS, color="gray", lw=1, ls=":", label="chance")
    axes[0].set(title="words translated right", xlabel="source length (words)", ylabel="%", ylim=(0, 102))
    axes[1].set(title="whole sentences right", xlabel="source length (words)", ylim=(0, 102))
    axes[2].set(title="training loss (25-step mean)", xlabel="step", yscale="log")
    for ax in axes[:3]:
        ax.legend(fontsize=8)
    n = len(src)  # a sentence of MAX_LEN words: n target words, then EOS
    image = axes[3].imshow(alpha[: n + 1], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=axes[3], fraction=0.05)
    axes[3].set(title=f"alignment α, a {n}-word sentence", xlabel="source word j", ylabel="target word i")
    axes[3].set_xticks(range(0, n, 3), [str(j + 1) for j in range(0, n, 3)])
    axes[3].set_yticks([*range(0, n, 3), n], [*(str(i + 1) for i in range(0, n, 3)), "EOS"])
    axes[3].grid(False)
    return fig

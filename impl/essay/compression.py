"""Chapter 5, *Intelligence* — prediction is compression: a language model against gzip, bzip2 and
xz.

A model that assigns probability ``p`` to the character that actually comes next can, with an
arithmetic coder, write that character in ``-log2 p`` bits, to within a couple of bits for the
whole message (Shannon 1948; Witten, Neal & Cleary 1987). So a language model's cross-entropy
on a text, in bits per character, *is* the size of the compressed text it would produce — no
coder needs to be run to know it. This module measures that size for two predictors trained on
the first 90% of the project's own prose (:func:`impl.data.load_corpus`) and compares it with
what Python's general-purpose compressors make of the same held-out 10%:

* ``gzip`` (:mod:`gzip`, DEFLATE at level 9), ``bzip2`` (:mod:`bz2`, level 9) and ``xz``
  (:mod:`lzma`, preset 9 extreme) — each twice: **cold**, given only the held-out bytes, and
  **primed**, given the training text first, counting only the extra bytes the held-out text
  costs (``len(C(train + test)) - len(C(train))``). Primed is the fair comparison: the models
  have read the training text too.
* a count-based **character n-gram** with Witten-Bell interpolation (:func:`ngram_bits`), the
  classical baseline;
* a character-level **LSTM with a forget gate** — the cell of topic 3.3
  (:func:`impl.sequence.forget_gate.forget_step`) — trained with :func:`impl.training.train`.
  When topic 4.5 (GPT-2) exists, its Transformer will replace the LSTM here.

Both models code the held-out text from a cold start (the LSTM from a zero state, the n-gram
with no history), the first character with a uniform code over the alphabet. Bits per
character divide by the number of characters (Unicode code points), for the compressors too,
which work on the UTF-8 bytes; all of them include their headers.

A compressor must also ship whatever its decoder needs. For gzip, bzip2 and xz that is a small
program; for the primed compressors and the n-gram it is the training text; for the LSTM it is
its weights, which :func:`experiment` reports in bytes beside the size of the text.

Shapes: a text is a ``str``; ids are ``int32[N]``; the LSTM reads ``int32[b, T]`` and returns
logits ``float32[b, T, V]`` with ``V`` the alphabet size.
"""

from __future__ import annotations

import bz2
import collections
import gzip
import lzma
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impl import checks, plotting
from impl.data import load_corpus
from impl.deep_networks import dnn
from impl.optimization.adam import adam
from impl.report import Report
from impl.sequence.forget_gate import forget_step, init_forget_lstm
from impl.training import train

__all__ = [
    "COMPRESSORS",
    "bits_per_char",
    "char_lstm",
    "compressed_bits",
    "encode",
    "experiment",
    "init_char_lstm",
    "lstm_stream_bits",
    "ngram_bits",
    "ngram_counts",
    "ngram_probability",
    "param_bytes",
    "split_text",
]

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    # mtime=0: same bytes every run
    "gzip": lambda data: gzip.compress(data, compresslevel=9, mtime=0),
    "bzip2": lambda data: bz2.compress(data, compresslevel=9),
    "xz": lambda data: lzma.compress(data, preset=9 | lzma.PRESET_EXTREME),
}
D_EMBED = 32
TEST_FRACTION = 0.1


# ---------------------------------------------------------------------------------------
# Text, alphabet and the general-purpose compressors.
# ---------------------------------------------------------------------------------------
def split_text(text: str, test_fraction: float = TEST_FRACTION) -> tuple[str, str]:
    """``(train, test)``: the text's leading part and its last ``test_fraction``, contiguous."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    fraction = checks.in_range(
        "test_fraction", test_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False
    )
    n_test = round(len(text) * fraction)
    if n_test == 0 or n_test == len(text):
        raise ValueError(
            f"text: {len(text)} characters are too few to hold out test_fraction={test_fraction}"
        )
    return text[:-n_test], text[-n_test:]


def encode(text: str, alphabet: str) -> np.ndarray:
    """``int32[len(text)]``: each character's index in ``alphabet`` (which must contain them
    all)."""
    index = {c: i for i, c in enumerate(alphabet)}
    if len(index) != len(alphabet):
        raise ValueError("alphabet: expected distinct characters")
    missing = sorted(set(text) - index.keys())
    if missing:
        raise ValueError(f"alphabet: does not contain {missing[:5]!r}")
    return np.fromiter((index[c] for c in text), dtype=np.int32, count=len(text))


def compressed_bits(name: str, data: bytes, *, prime: bytes = b"") -> int:
    """Bits the compressor ``name`` spends on ``data``; with ``prime``, on ``data`` after ``prime``.

    Primed, the cost is ``8 · (len(C(prime + data)) - len(C(prime)))``: what ``data`` adds to an
    archive that already holds ``prime``, so the compressor may reuse everything it saw there.
    """
    checks.one_of("name", name, COMPRESSORS)
    for arg, value in (("data", data), ("prime", prime)):
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"{arg}: expected bytes, got {type(value).__name__}")
    if not data:
        raise ValueError("data: expected at least one byte")
    compress = COMPRESSORS[name]
    if not prime:
        return 8 * len(compress(bytes(data)))
    return 8 * (len(compress(bytes(prime) + bytes(data))) - len(compress(bytes(prime))))


def bits_per_char(bits: float, n_chars: int) -> float:
    """Code length per character: ``bits / n_chars``."""
    checks.positive_int("n_chars", n_chars)
    checks.in_range("bits", bits, 0.0, float("inf"))
    return float(bits) / n_chars


# ---------------------------------------------------------------------------------------
# The classical baseline: a character n-gram with Witten-Bell interpolation.
# ---------------------------------------------------------------------------------------
NGramCounts = list[dict[str, collections.Counter]]


def ngram_counts(text: str, order: int) -> NGramCounts:
    """``counts[k][context][char]``: how often ``char`` followed each ``k``-character context,
    ``k = 0..order``."""
    checks.non_negative_int("order", order)
    counts: NGramCounts = []
    for k in range(order + 1):
        table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for i in range(k, len(text)):
            table[text[i - k : i]][text[i]] += 1
        counts.append(dict(table))
    return counts


def ngram_probability(counts: NGramCounts, history: str, char: str, alphabet_size: int) -> float:
    """``p(char | history)``, interpolating from order 0 up (Witten-Bell).

    At each order ``k`` with context ``c`` seen ``n`` times, followed by ``u`` distinct
    characters: ``p_k = (count(c, char) + u · p_{k-1}) / (n + u)``; ``p_{-1}`` is uniform.
    An unseen context ends the climb. The probabilities over an alphabet sum to one.
    """
    p = 1.0 / alphabet_size
    for k in range(len(counts)):
        if k > len(history):
            break
        following = counts[k].get(history[len(history) - k :] if k else "")
        if not following:
            break
        n, u = following.total(), len(following)
        p = (following.get(char, 0) + u * p) / (n + u)
    return p


def ngram_bits(counts: NGramCounts, text: str, alphabet_size: int) -> float:
    """Total code length of ``text``, in bits, under the n-gram, coding from an empty history."""
    checks.positive_int("alphabet_size", alphabet_size)
    order = len(counts) - 1
    total = 0.0
    for i, char in enumerate(text):
        total -= math.log2(
            ngram_probability(counts, text[max(0, i - order) : i], char, alphabet_size)
        )
    return total


# ---------------------------------------------------------------------------------------
# The neural model: a character LSTM built on topic 3.3's cell.
# ---------------------------------------------------------------------------------------
# --8<-- [start:model]
def init_char_lstm(key: jax.Array, vocab: int, d_hidden: int, d_embed: int = D_EMBED) -> dict:
    """``{"embed": [V, E], "lstm": 3.3's forget-gate cell,
    "out": {"kernel": [H, V], "bias": [V]}}``.

    The input gates start open (bias 0), not shut as in the 1997 recipe: on a short training
    budget a cell that writes from the first step learns faster.
    """
    checks.positive_int("vocab", vocab)
    checks.positive_int("d_hidden", d_hidden)
    checks.positive_int("d_embed", d_embed)
    k_embed, k_lstm, k_out = jax.random.split(checks.prng_key("key", key), 3)
    return {
        "embed": jax.random.normal(k_embed, (vocab, d_embed)),
        "lstm": init_forget_lstm(k_lstm, d_embed, d_hidden, in_bias=0.0),
        "out": {
            "kernel": jax.random.normal(k_out, (d_hidden, vocab)) / np.sqrt(d_hidden),
            "bias": jnp.zeros(vocab),
        },
    }


def char_lstm(params: dict, ids: jax.Array, carry=None):
    """``ids int32[b, T] -> (carry, logits [b, T, V])``; ``carry = (c, h)`` of ``[b, H]``, zeros if
    ``None``."""
    b = ids.shape[0]
    h = params["out"]["kernel"].shape[0]
    if carry is None:
        carry = (jnp.zeros((b, h)), jnp.zeros((b, h)))
    xs = jnp.swapaxes(params["embed"][ids], 0, 1)  # [T, b, E]: scan runs over time
    # hs [T, b, H]
    carry, hs = jax.lax.scan(lambda c, x: forget_step(params["lstm"], c, x), carry, xs)
    return carry, dnn.dense(params["out"], jnp.swapaxes(hs, 0, 1))  # [b, T, V]


def loss_fn(params, batch, key):
    """Mean cross-entropy of next-character prediction, in bits:
    ``batch = {"window": int32[b, T + 1]}``."""
    del key
    window = batch["window"]
    _, logits = char_lstm(params, window[:, :-1])
    nats = optax.softmax_cross_entropy_with_integer_labels(logits, window[:, 1:])
    return jnp.mean(nats) / jnp.log(2.0)


def lstm_stream_bits(params: dict, ids: jax.Array) -> float:
    """Code length of the whole stream ``ids int32[N]``, in bits, read once from a zero state.

    The first character is coded uniformly over the alphabet (``log2 V`` bits); each later one
    costs ``-log2 p(next | everything before it)``.
    """
    ids = jnp.asarray(ids, jnp.int32)
    if ids.ndim != 1 or ids.shape[0] < 1:
        raise ValueError(f"ids: expected a non-empty 1-D stream, got shape {tuple(ids.shape)}")
    vocab = params["embed"].shape[0]
    return float(_stream_bits(params, ids)) + math.log2(vocab)


@jax.jit
def _stream_bits(params, ids):
    _, logits = char_lstm(params, ids[None, :-1])  # [1, N - 1, V]
    nats = optax.softmax_cross_entropy_with_integer_labels(logits[0], ids[1:])
    return jnp.sum(nats) / jnp.log(2.0)


# --8<-- [end:model]


def param_bytes(params, bytes_per_number: int = 4) -> int:
    """Size of the parameters stored at ``bytes_per_number`` each (4 for float32)."""
    checks.positive_int("bytes_per_number", bytes_per_number)
    return bytes_per_number * sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))


def _windows(ids: np.ndarray, context: int) -> np.ndarray:
    """Every window of ``context + 1`` characters starting at a multiple of ``context // 2``."""
    starts = np.arange(0, len(ids) - context - 1, max(1, context // 2))
    if starts.size == 0:
        raise ValueError(f"context: expected fewer than {len(ids) - 1} characters, got {context}")
    return ids[starts[:, None] + np.arange(context + 1)[None, :]]


def experiment(
    seed: int = 0,
    *,
    progress: bool | None = None,
    steps: int = 250,
    d_hidden: int = 128,
    context: int = 32,
    batch_size: int = 128,
    learning_rate: float = 2e-2,
    order: int = 4,
    test_fraction: float = TEST_FRACTION,
    text: str | None = None,
) -> Report:
    """Compress the held-out end of the project's prose with gzip, bzip2, xz, an n-gram and an LSTM.

    Metrics (all code lengths in bits per character of the held-out text): ``bpc_lstm``,
    ``bpc_ngram``, ``bpc_{gzip,bzip2,xz}`` (cold) and ``bpc_{gzip,bzip2,xz}_primed``; ``raw_bpc``
    (the UTF-8 text as it is); ``lstm_train_bpc`` (the last 20 steps' training loss);
    ``lstm_params`` and ``lstm_bytes`` (float32 weights); ``train_chars``, ``test_chars``,
    ``test_bytes``; and ``lstm_seconds`` (the LSTM's training time, compilation included).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    checks.positive_int("d_hidden", d_hidden)
    checks.positive_int("context", context)
    checks.positive_int("batch_size", batch_size)
    checks.in_range("learning_rate", learning_rate, 0.0, 1.0, low_inclusive=False)
    checks.non_negative_int("order", order)
    start = time.perf_counter()
    text = load_corpus() if text is None else text
    train_text, test_text = split_text(text, test_fraction)
    alphabet = "".join(sorted(set(text)))  # the decoder must know it too: a few hundred bytes
    test_bytes, train_bytes = test_text.encode("utf-8"), train_text.encode("utf-8")
    n = len(test_text)
    bpc = {"raw_bpc": bits_per_char(8 * len(test_bytes), n)}
    for name in COMPRESSORS:
        bpc[f"bpc_{name}"] = bits_per_char(compressed_bits(name, test_bytes), n)
        bpc[f"bpc_{name}_primed"] = bits_per_char(
            compressed_bits(name, test_bytes, prime=train_bytes), n
        )
    bpc["bpc_ngram"] = bits_per_char(
        ngram_bits(ngram_counts(train_text, order), test_text, len(alphabet)), n
    )

    ids_train, ids_test = encode(train_text, alphabet), encode(test_text, alphabet)
    k_init, k_train = jax.random.split(jax.random.key(seed))
    params = init_char_lstm(k_init, len(alphabet), d_hidden)
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0), adam(optax.cosine_decay_schedule(learning_rate, steps))
    )
    result = train(
        loss_fn,
        params,
        optimizer,
        {"window": jnp.asarray(_windows(ids_train, context))},
        key=k_train,
        steps=steps,
        batch_size=batch_size,
        progress=progress,
        label="5 compression",
    )
    bpc["bpc_lstm"] = bits_per_char(lstm_stream_bits(result.params, ids_test), n)
    history = np.asarray(result.history["loss"])
    metrics = dict(bpc)
    metrics |= {
        "lstm_train_bpc": float(history[-20:].mean()),
        "lstm_params": float(param_bytes(result.params, 1)),
        "lstm_bytes": float(param_bytes(result.params)),
        "train_chars": float(len(train_text)),
        "test_chars": float(n),
        "test_bytes": float(len(test_bytes)),
        "lstm_seconds": float(result.seconds),
    }
    lines = _table(metrics, order, steps, d_hidden, len(alphabet))
    fig = _figure(metrics, history, order)
    return Report(
        "5 Intelligence — prediction is compression",
        metrics,
        lines,
        fig,
        time.perf_counter() - start,
    )


def _rows(m: dict[str, float], order: int) -> list[tuple[str, float, str]]:
    """``(label, bits per character, what the decoder needs besides the code)`` for every method."""
    kb = lambda b: f"{b / 1000:,.0f} KB"  # noqa: E731
    train = kb(m["train_chars"])
    return [
        ("raw UTF-8 text", m["raw_bpc"], "nothing"),
        ("gzip, cold", m["bpc_gzip"], "the program"),
        ("bzip2, cold", m["bpc_bzip2"], "the program"),
        ("xz, cold", m["bpc_xz"], "the program"),
        (
            "gzip, primed with the training text",
            m["bpc_gzip_primed"],
            f"the program + the training text ({train})",
        ),
        (
            "bzip2, primed with the training text",
            m["bpc_bzip2_primed"],
            f"the program + the training text ({train})",
        ),
        (
            "xz, primed with the training text",
            m["bpc_xz_primed"],
            f"the program + the training text ({train})",
        ),
        (
            f"{order + 1}-gram (Witten-Bell)",
            m["bpc_ngram"],
            f"its counts, or the training text ({train})",
        ),
        (
            "LSTM (topic 3.3's cell)",
            m["bpc_lstm"],
            f"its weights ({kb(m['lstm_bytes'])} as float32)",
        ),
    ]


def _table(m: dict[str, float], order: int, steps: int, d_hidden: int, vocab: int) -> list[str]:
    n, nbytes = int(m["test_chars"]), int(m["test_bytes"])
    lines = [
        f"held-out text: the last {n:,} characters ({nbytes:,} bytes) of the "
        f"project's prose; models trained on the {int(m['train_chars']):,} "
        f"before them; alphabet of {vocab} characters",
        f"{'method':<38} {'bits/char':>9} {'held-out size':>14}   decoder also needs",
    ]
    for label, value, needs in _rows(m, order):
        lines.append(f"{label:<38} {value:>9.3f} {value * n / 8000:>11.1f} KB   {needs}")
    lines.append(
        f"LSTM: {d_hidden} cells, {int(m['lstm_params']):,} parameters, {steps} steps in "
        f"{m['lstm_seconds']:.0f} s; training loss at the end {m['lstm_train_bpc']:.3f} bits/char"
    )
    lines.append(
        f"the LSTM's weights ({m['lstm_bytes'] / 1000:,.0f} KB) are "
        f"{m['lstm_bytes'] / nbytes:.0f}× the raw held-out "
        "text: shipped with it, this compressor would make the file bigger"
    )
    return lines


def _figure(m: dict[str, float], history: np.ndarray, order: int):
    fig, (ax_bar, ax_curve) = plotting.figure(2, 1, height=3.8)
    rows = _rows(m, order)[1:]  # the raw text is the axis limit, drawn as a line
    labels = [r[0].replace(", primed with the training text", ", primed") for r in rows]
    values = [r[1] for r in rows]
    colors = (
        [plotting.PALETTE[0]] * 3
        + [plotting.PALETTE[1]] * 3
        + [plotting.PALETTE[2], plotting.PALETTE[3]]
    )
    y = np.arange(len(rows))[::-1]
    ax_bar.barh(y, values, color=colors)
    for yi, v in zip(y, values):
        ax_bar.annotate(
            f"{v:.2f}", (v, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax_bar.axvline(m["raw_bpc"], color=plotting.PALETTE[4], ls=":", lw=1.2)
    ax_bar.annotate(
        "raw text", (m["raw_bpc"], y[-1] - 0.6), ha="right", fontsize=8, color=plotting.PALETTE[4]
    )
    ax_bar.set_yticks(y, labels, fontsize=8)
    ax_bar.set(
        xlabel="bits per character of the held-out text",
        xlim=(0, m["raw_bpc"] * 1.08),
        title="Code length",
    )
    ax_bar.grid(axis="y", visible=False)
    window = 10
    smooth = np.convolve(history, np.ones(window) / window, mode="valid")
    ax_curve.plot(
        np.arange(window, len(history) + 1),
        smooth,
        color=plotting.PALETTE[3],
        label="LSTM, training text",
    )
    ax_curve.plot(
        [len(history)], [m["bpc_lstm"]], "o", color=plotting.PALETTE[3], label="LSTM, held-out text"
    )
    for key, label, color in (
        ("bpc_gzip", "gzip, cold", plotting.PALETTE[0]),
        ("bpc_bzip2_primed", "bzip2, primed", plotting.PALETTE[1]),
        ("bpc_ngram", f"{order + 1}-gram", plotting.PALETTE[2]),
    ):
        ax_curve.axhline(m[key], color=color, ls="--", lw=1.2, label=label)
    ax_curve.set(
        xlabel="training step", ylabel="bits per character", title="The LSTM learning to compress"
    )
    ax_curve.set_ylim(1.5, 5.0)
    ax_curve.legend(fontsize=8)
    return fig

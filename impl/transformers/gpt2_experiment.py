"""4.5 GPT-2, the experiment: a small GPT-2 learns the project's own prose.

The corpus is this project's essays and pages (`impl.data.corpus`), cut by a byte-level BPE
(`impl.data.tokenizers`) into a stream of tokens whose last tenth is held out. Five small GPT-2s
train side by side, on the same batches, in one compiled loop (the hand-written AdamW of topic
2.8): three pre-LN models of growing size, and, at the middle size, depth and learning rate,
the original post-LN wiring with and without a learning-rate warm-up (Xiong et al., 2020). The
middle pre-LN model is then measured on held-out text against unigram and bigram baselines,
asked zero-shot which of two orderings of a held-out sentence is real, and sampled from. The
model lives in `impl.transformers.gpt2`.

Run it: ``python -m impl 4.5`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import functools
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, plotting
from impl.data.corpus import load_corpus
from impl.data.lm import lm_windows, train_test_split
from impl.data.tokenizers import BPETokenizer
from impl.optimization.adam import adamw
from impl.optimization.schedules import warmup_cosine_decay_schedule
from impl.report import Report
from impl.training import run
from impl.transformers.gpt2 import (
    GPT2Config,
    count_parameters,
    generate,
    init_gpt2,
    lm_loss,
    logits,
)

__all__ = [
    "CONTEXT",
    "VARIANTS",
    "VOCAB_SIZE",
    "experiment",
    "fit",
    "ngram_losses",
    "word_order_test",
]

VOCAB_SIZE = 512  # BPE ids, the 7 special tokens and 256 bytes included
CONTEXT = 64


# --8<-- [start:experiment]
def _config(d_model: int, n_layers: int, *, pre_ln: bool = True) -> GPT2Config:
    return GPT2Config(
        vocab_size=VOCAB_SIZE,
        d_model=d_model,
        n_heads=4,
        n_layers=n_layers,
        max_len=CONTEXT,
        pre_ln=pre_ln,
    )


# name -> (config, warm-up steps). Same peak learning rate for all; only the wiring, the size
# and the warm-up differ.
VARIANTS = {
    "pre-LN, small": (_config(16, 2), 0),
    "pre-LN, medium": (_config(24, 3), 0),
    "pre-LN": (_config(32, 6), 0),
    "post-LN": (_config(32, 6, pre_ln=False), 0),
    "post-LN + warm-up": (_config(32, 6, pre_ln=False), 100),
}
PEAK_LR, BATCH = 5e-3, 16


def _optimizers(steps: int) -> dict:
    return {
        name: adamw(
            warmup_cosine_decay_schedule(0.0, PEAK_LR, warmup, steps), b2=0.99, weight_decay=0.01
        )
        for name, (_, warmup) in VARIANTS.items()
    }


def _step_fn(steps: int):
    optimizers = _optimizers(steps)

    def step(state, batch, key):
        """One AdamW step for every variant, on the same batch; the losses are independent."""
        del key
        params, opt_states = state

        def losses(params):
            out = {
                n: lm_loss(logits(VARIANTS[n][0], params[n], batch["inputs"]), batch["targets"])
                for n in params
            }
            return sum(out.values()), out

        grads, out = jax.grad(losses, has_aux=True)(params)
        new_params, new_states = {}, {}
        for name, opt in optimizers.items():
            updates, new_states[name] = opt.update(grads[name], opt_states[name], params[name])
            new_params[name] = jax.tree.map(jnp.add, params[name], updates)
        return (new_params, new_states), {"loss": sum(out.values()), **out}

    return step


def fit(key: jax.Array, train_ids: np.ndarray, *, steps: int, progress=None):
    """Train every variant of `VARIANTS` on ``BATCH`` windows of ``CONTEXT`` tokens per step."""
    k_data, k_init, k_train = jax.random.split(key, 3)
    data = lm_windows(train_ids, context=CONTEXT, n=16_384, key=k_data)
    params = {
        n: init_gpt2(jax.random.fold_in(k_init, i), c)
        for i, (n, (c, _)) in enumerate(VARIANTS.items())
    }
    opt_states = {n: opt.init(params[n]) for n, opt in _optimizers(steps).items()}
    return run(
        _step_fn(steps), (params, opt_states), data, key=k_train, steps=steps, batch_size=BATCH,
        chunk=steps, progress=progress, label="4.5 gpt-2",
    )  # fmt: skip


# --8<-- [end:experiment]


def ngram_losses(train_ids: np.ndarray, test_ids: np.ndarray, vocab: int) -> dict[str, float]:
    """Held-out cross-entropy (nats/token) of a unigram and an interpolated bigram model fit on
    ``train_ids``: counts plus add-one smoothing, the bigram mixed with the unigram by the weight
    (of 0.05, 0.1, ..., 0.95) that scores best on the last tenth of the training ids."""
    fit_ids, tune_ids = train_ids[: len(train_ids) * 9 // 10], train_ids[len(train_ids) * 9 // 10 :]

    def tables(ids):
        uni = (np.bincount(ids, minlength=vocab) + 1.0) / (len(ids) + vocab)  # [V]
        pairs = np.zeros((vocab, vocab))
        np.add.at(pairs, (ids[:-1], ids[1:]), 1.0)
        bi = (pairs + 1e-3) / (pairs.sum(1, keepdims=True) + 1e-3 * vocab)  # [V, V]: p(next | prev)
        return uni, bi

    def nll(uni, bi, ids, w):
        return float(-np.mean(np.log(w * bi[ids[:-1], ids[1:]] + (1 - w) * uni[ids[1:]])))

    uni, bi = tables(fit_ids)
    w = min(np.arange(0.05, 1.0, 0.05), key=lambda w: nll(uni, bi, tune_ids, w))
    uni, bi = tables(train_ids)
    return {
        "unigram": float(-np.mean(np.log(uni[test_ids]))),
        "bigram": nll(uni, bi, test_ids, w),
        "mix": float(w),
    }


def _sentences(text: str, rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """Held-out sentences of 8-24 words, each with a copy in which two words changed places."""
    found = [
        s for s in re.split(r"(?<=[.!?])\s+", text) if 8 <= len(s.split()) <= 24 and "\n" not in s
    ]
    pairs = []
    for s in rng.permutation(found)[:n]:
        words = s.split()
        i, j = sorted(rng.choice(len(words), 2, replace=False))
        if words[i] == words[j]:
            continue
        swapped = words.copy()
        swapped[i], swapped[j] = words[j], words[i]
        pairs.append((s, " ".join(swapped)))
    return pairs


@functools.partial(jax.jit, static_argnums=0)
def _sequence_logprob(config: GPT2Config, params, tokens, mask):
    """Sum of ``log p(token_t | tokens before)`` over the masked positions: ``[N, T] -> [N]``."""
    logp = jax.nn.log_softmax(logits(config, params, tokens[:, :-1]), axis=-1)  # [N, T-1, V]
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]  # [N, T-1]
    return jnp.sum(jnp.where(mask[:, 1:], picked, 0.0), axis=-1)


def word_order_test(tokenizer, config, params, pairs, bigram_logprob) -> dict[str, float]:
    """Zero-shot: how often the model gives the real sentence a higher probability than the same
    words with two swapped. Each sentence follows a blank line, as paragraphs do in the corpus."""
    encoded = [[tokenizer.encode("\n\n" + s) for s in pair] for pair in pairs]
    width = min(CONTEXT, max(len(e) for pair in encoded for e in pair))
    flat = [e[:width] for pair in encoded for e in pair]
    tokens = np.zeros((len(flat), width), np.int32)
    mask = np.zeros((len(flat), width), bool)
    for i, e in enumerate(flat):
        tokens[i, : len(e)], mask[i, : len(e)] = e, True
    scores = np.asarray(
        _sequence_logprob(config, params, jnp.asarray(tokens), jnp.asarray(mask))
    ).reshape(-1, 2)
    bigram = np.array([bigram_logprob(e) for e in flat]).reshape(-1, 2)
    return {
        "model": float(np.mean(scores[:, 0] > scores[:, 1])),
        "bigram": float(np.mean(bigram[:, 0] > bigram[:, 1])),
    }


def _bigram_scorer(train_ids: np.ndarray, vocab: int, w: float):
    uni = (np.bincount(train_ids, minlength=vocab) + 1.0) / (len(train_ids) + vocab)
    pairs = np.zeros((vocab, vocab))
    np.add.at(pairs, (train_ids[:-1], train_ids[1:]), 1.0)
    bi = (pairs + 1e-3) / (pairs.sum(1, keepdims=True) + 1e-3 * vocab)
    return lambda ids: float(np.sum(np.log(w * bi[ids[:-1], ids[1:]] + (1 - w) * uni[ids[1:]])))


@functools.partial(jax.jit, static_argnums=0)
def _held_out_loss(config: GPT2Config, params, windows):
    return lm_loss(logits(config, params, windows[:, :-1]), windows[:, 1:])


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 400) -> Report:
    """Train the five variants of `VARIANTS` on the project's prose; report held-out losses
    against n-gram baselines, the zero-shot word-order test, and samples."""
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    start = time.perf_counter()
    text = load_corpus()
    tokenizer = BPETokenizer.train(text, VOCAB_SIZE)
    ids = tokenizer.encode(text)  # int32[N]
    train_ids, test_ids = train_test_split(ids, 0.1)
    test_chars = len(tokenizer.decode(test_ids))
    key = jax.random.key(seed)
    result = fit(key, train_ids, steps=steps, progress=progress)
    params = result.state[0]
    trained = time.perf_counter() - start

    n = (len(test_ids) - 1) // CONTEXT
    starts = np.arange(n) * CONTEXT
    windows = jnp.asarray(
        test_ids[starts[:, None] + np.arange(CONTEXT + 1)]
    )  # [n, T + 1], disjoint targets
    held_out = {
        name: float(_held_out_loss(VARIANTS[name][0], params[name], windows)) for name in VARIANTS
    }
    baselines = ngram_losses(train_ids, np.asarray(windows[:, 1:]).ravel(), VOCAB_SIZE)
    tokens_per_char = windows[:, 1:].size / test_chars
    main_config, main = VARIANTS["pre-LN"][0], params["pre-LN"]

    rng = np.random.default_rng(seed)
    pairs = _sentences(tokenizer.decode(test_ids), rng, 300)
    order = word_order_test(
        tokenizer, main_config, main, pairs, _bigram_scorer(train_ids, VOCAB_SIZE, baselines["mix"])
    )

    prompts = ["The Transformer", "A neural network"]
    samples = []
    for i, prompt in enumerate(prompts):
        start_ids = jnp.asarray(tokenizer.encode(prompt))[None]  # [1, T0]
        out = generate(main_config, main, start_ids, jax.random.fold_in(key, i),
                       steps=40, temperature=0.8, top_p=0.9)  # fmt: skip
        samples.append(tokenizer.decode(np.asarray(out[0])).replace("\n", " "))

    metrics = {f"held_out_{_slug(name)}": loss for name, loss in held_out.items()}
    metrics |= {
        "held_out_nats_per_char": held_out["pre-LN"] * tokens_per_char,
        "unigram_nats_per_token": baselines["unigram"],
        "bigram_nats_per_token": baselines["bigram"],
        "post_ln_gap": held_out["post-LN"] - held_out["pre-LN"],
        "warmup_gap": held_out["post-LN"] - held_out["post-LN + warm-up"],
        "word_order_accuracy": order["model"],
        "word_order_bigram_accuracy": order["bigram"],
        "word_order_pairs": float(len(pairs)),
        "train_tokens": float(len(train_ids)),
        "train_seconds": trained,
    }
    lines = [
        f"corpus: {len(text):,} characters -> {len(ids):,} BPE tokens (vocabulary {VOCAB_SIZE}); "
        f"held out: the last {len(test_ids):,}",
        f"{'model':<20} {'width x layers':>14} {'held-out nats/token':>20}",
    ]
    for name, (config, _) in VARIANTS.items():
        lines.append(
            f"{name:<20} {f'{config.d_model} x {config.n_layers}':>14} {held_out[name]:>20.3f}"
        )
    lines += [
        f"{'unigram baseline':<20} {'':>14} {baselines['unigram']:>20.3f}",
        f"{'bigram baseline':<20} {'':>14} {baselines['bigram']:>20.3f}",
        f"pre-LN model: {metrics['held_out_nats_per_char']:.3f} nats per character "
        f"({metrics['held_out_nats_per_char'] / np.log(2):.2f} bits)",
        f"zero-shot word order ({len(pairs)} held-out sentences, two words swapped; chance 50%): "
        f"model {order['model']:.1%}, bigram {order['bigram']:.1%}",
        "samples (temperature 0.8, top-p 0.9):",
        *[f"  {s!r}" for s in samples],
    ]
    fig = _figure(result.history, held_out, baselines, VARIANTS)
    return Report("4.5 GPT-2 — a small GPT-2 on the project's prose", metrics, lines, fig,
                  time.perf_counter() - start, extra={"samples": samples})  # fmt: skip


# --8<-- [end:run]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z]+", "_", name.lower()).strip("_")


def _smooth(values: np.ndarray, window: int = 20) -> np.ndarray:
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _figure(history, held_out, baselines, variants):
    fig, axes = plotting.figure(2, height=3.2)
    ax = axes[0]
    for i, name in enumerate(["pre-LN", "post-LN", "post-LN + warm-up"]):
        ax.plot(_smooth(history[name]), label=name, color=plotting.PALETTE[i])
    ax.axhline(
        baselines["bigram"], color="grey", linestyle="--", linewidth=1, label="bigram (held out)"
    )
    ax.set(title="Same depth and learning rate", xlabel="step", ylabel="training loss (nats/token)")
    ax.legend()
    ax = axes[1]
    sizes = ["pre-LN, small", "pre-LN, medium", "pre-LN"]
    counts = [count_parameters(variants[n][0]) for n in sizes]
    ax.plot(counts, [held_out[n] for n in sizes], marker="o", color=plotting.PALETTE[0])
    ax.axhline(baselines["bigram"], color="grey", linestyle="--", linewidth=1)
    ax.set(
        title="Held-out loss by model size", xlabel="parameters", ylabel="nats/token", xscale="log"
    )
    return fig

"""3.4 Word2Vec, the experiment: word vectors from a corpus with planted relations.

Skip-gram with negative sampling, with and without subsampling of frequent words, trained side
by side with the hand-written Adam of topic 2.8 on the corpus of
:mod:`impl.sequence.word2vec_corpus`; then 3CosAdd analogies, nearest neighbours and offset
directions. The model and its math live in :mod:`impl.sequence.word2vec`.

Run it: ``python -m impl 3.4`` (or ``experiment(seed=0)`` from Python).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from impl import checks, plotting
from impl.optimization.adam import adam
from impl.report import Report
from impl.sequence.word2vec import (
    analogy_accuracy,
    context_pairs,
    init_tables,
    keep_probability,
    nearest_neighbours,
    nearest_to_c,
    noise_distribution,
    offset_cosines,
    sample_negatives,
    sgns_loss,
    solve_analogies,
)
from impl.sequence.word2vec_corpus import FAMILIES, Corpus, generate_corpus, word_families
from impl.training import train

__all__ = ["BATCH", "THRESHOLD", "VARIANTS", "experiment", "fit", "make_loss_fn"]

# ---------------------------------------------------------------------------------------
# The experiment: word vectors from a corpus with planted relations, with and without
# subsampling, trained side by side.
# ---------------------------------------------------------------------------------------
# --8<-- [start:experiment]
VARIANTS = {"subsampled": True, "no_subsampling": False}  # name -> subsample frequent words?
THRESHOLD = 1e-3  # t of eq. 5; the paper's 1e-5 is for vocabularies of millions of words
BATCH = 64  # sentences per step


def make_loss_fn(noise: jax.Array, keep: jax.Array, *, window: int, negatives: int, slots: int):
    """The training objective: the two variants of `VARIANTS` side by side, on the same sentences.

    ``params = {variant: {"w_in", "w_out"}}``; ``batch = {"sentences": int[b, length]}``. Each
    variant's summed loss over its real pairs is divided by the fixed number of pair ``slots``
    in a batch, so every pair weighs the same whether or not subsampling thinned the batch.
    Metrics per variant: the mean loss per pair and the number of pairs trained on.
    """

    def loss_fn(params, batch, key):
        k_pairs, k_noise = jax.random.split(key)
        total, metrics = 0.0, {}
        for name, thin in VARIANTS.items():
            centres, contexts, valid = context_pairs(
                k_pairs, batch["sentences"], window, keep if thin else None
            )
            noise_words = sample_negatives(k_noise, noise, centres.shape[0], negatives)  # [P, k]
            w = params[name]
            per_pair = jnp.where(
                valid, sgns_loss(w["w_in"], w["w_out"], centres, contexts, noise_words), 0.0
            )
            n_pairs = jnp.sum(valid)
            total = total + jnp.sum(per_pair) / slots
            metrics[name] = {
                "loss": jnp.sum(per_pair) / jnp.maximum(n_pairs, 1),
                "pairs": n_pairs.astype(jnp.float32),
            }
        return total, metrics

    return loss_fn


def fit(
    key,
    corpus: Corpus,
    *,
    dim=32,
    window=3,
    negatives=5,
    threshold=THRESHOLD,
    steps=2000,
    batch=BATCH,
    lr=0.01,
    progress=None,
):
    """Train both variants from the same initial tables on mini-batches of ``batch`` sentences,
    with Adam at a rate that decays linearly to zero (the released word2vec tool decays its
    SGD rate the same way). Analogy accuracy is measured after every tenth of the steps."""
    k_init, k_train = jax.random.split(key)
    noise = noise_distribution(corpus.counts)  # U(w)^{3/4} / Z over the whole corpus
    keep = keep_probability(corpus.counts, threshold)  # eq. 5
    slots = batch * corpus.sentences.shape[1] * 2 * window
    loss_fn = make_loss_fn(noise, keep, window=window, negatives=negatives, slots=slots)
    tables = init_tables(k_init, len(corpus.words), dim)
    params = {name: tables for name in VARIANTS}
    questions = jnp.asarray(corpus.questions)

    def eval_fn(p):
        return {name: analogy_accuracy(p[name]["w_in"], questions) for name in VARIANTS}

    optimizer = adam(lambda count: lr * (1.0 - count / steps))
    data = {"sentences": corpus.sentences}
    return train(
        loss_fn,
        params,
        optimizer,
        data,
        key=k_train,
        steps=steps,
        batch_size=batch,
        chunk=steps // 10,
        eval_fn=eval_fn,
        progress=progress,
        label="3.4 word2vec",
    )


# --8<-- [end:experiment]


# --8<-- [start:run]
def experiment(seed: int = 0, *, progress: bool | None = None, steps: int = 2000) -> Report:
    """Skip-gram with negative sampling on the planted-relations corpus, with and without
    subsampling.

    ``seed`` picks the corpus, the initial tables and the training order. Metrics: 3CosAdd
    analogy accuracy (overall and per family) against chance and against the nearest-to-c
    baseline, how semantic the nearest neighbours are, how parallel the offsets are, and the
    subsampling ablation (accuracy during training, pairs trained on).
    """
    checks.non_negative_int("seed", seed)
    checks.positive_int("steps", steps)
    if steps % 10:
        raise ValueError(
            f"steps: expected a multiple of 10 (accuracy is measured every tenth), got {steps}"
        )
    start = time.perf_counter()
    # rbg: compiles fast on CPU
    k_corpus, k_fit = jax.random.split(jax.random.key(seed, impl="rbg"))
    corpus = generate_corpus(k_corpus)
    result = fit(k_fit, corpus, steps=steps, progress=progress)
    # the word vectors: input vectors, as word2vec outputs
    vectors = result.params["subsampled"]["w_in"]
    questions = jnp.asarray(corpus.questions)
    answers = np.asarray(solve_analogies(vectors, questions))
    correct = answers == corpus.questions[:, 3]
    V = len(corpus.words)
    metrics = {
        "analogy_accuracy": float(correct.mean()),
        "chance": 1.0 / (V - 3),
        "nearest_to_c_accuracy": float(
            jnp.mean(nearest_to_c(vectors, questions) == questions[:, 3])
        ),
        "analogy_accuracy_no_subsampling": float(
            analogy_accuracy(result.params["no_subsampling"]["w_in"], questions)
        ),
    }
    for f, name in enumerate(FAMILIES):
        metrics[f"analogy_accuracy_{name}"] = float(correct[corpus.question_family == f].mean())
    # Nearest neighbours of the 72 pair words: how many of the 3 nearest share the word's family?
    family = word_families(corpus.words)
    pair_ids = corpus.pairs.reshape(-1)
    neighbours = np.asarray(nearest_neighbours(vectors, jnp.asarray(pair_ids), 3))  # [72, 3]
    metrics["neighbours_same_family"] = float(
        (family[neighbours] == family[pair_ids][:, None]).mean()
    )
    metrics["neighbours_same_family_chance"] = float(
        np.mean([(family == family[i]).sum() - 1 for i in pair_ids]) / (V - 1)
    )
    metrics["offset_cosine_within"], metrics["offset_cosine_across"] = offset_cosines(
        vectors, corpus.pairs
    )
    # The ablation: accuracy after a fifth of training, and pairs trained on per sentence.
    evals = result.evals
    for name in VARIANTS:
        metrics[f"early_accuracy_{name}"] = float(evals[name][1])  # after 20% of the steps
        metrics[f"pairs_per_sentence_{name}"] = float(
            result.history[f"{name}/pairs"].mean() / BATCH
        )
    freq = corpus.counts / corpus.counts.sum()
    metrics["kept_fraction"] = float(jnp.sum(freq * keep_probability(corpus.counts, THRESHOLD)))

    lines = _summary(metrics, corpus, answers, neighbours, evals)
    fig = _figure(vectors, corpus, evals, metrics)
    title = "3.4 Word2Vec — skip-gram with negative sampling on a corpus with planted relations"
    return Report(title, metrics, lines, fig, time.perf_counter() - start)


# --8<-- [end:run]


def _summary(metrics, corpus, answers, neighbours, evals) -> list[str]:
    words = corpus.words
    m = metrics
    lines = [
        f"corpus: {corpus.sentences.shape[0]:,} sentences, "
        f"{int(corpus.counts.sum()):,} tokens, vocabulary {len(words)}; 'the' "
        f"is {float(corpus.counts[0] / corpus.counts.sum()):.0%} of the tokens",
        "",
        f"analogies a : b :: c : ? by 3CosAdd ({len(corpus.questions)} questions)",
        f"  {'all':<22} {m['analogy_accuracy']:>6.1%}",
    ]
    lines += [f"  {name:<22} {m[f'analogy_accuracy_{name}']:>6.1%}" for name in FAMILIES]
    lines += [
        f"  {'chance':<22} {m['chance']:>6.1%}",
        f"  {'nearest word to c':<22} {m['nearest_to_c_accuracy']:>6.1%}   (ignores a and b)",
        "",
    ]
    for q in (0, 300, 600):
        a, b, c, d = corpus.questions[q]
        ok = "right" if answers[q] == d else f"wrong, expected {words[d]}"
        lines.append(f"  {words[a]} : {words[b]} :: {words[c]} : {words[answers[q]]}   ({ok})")
    lines += ["", "nearest neighbours (cosine)"]
    for i in (1, 14, 26, 41, 50, 71):
        lines.append(
            f"  {words[corpus.pairs.reshape(-1)[i]]:<10} "
            + ", ".join(words[j] for j in neighbours[i])
        )
    lines += [
        f"  {m['neighbours_same_family']:.0%} of the 3 nearest neighbours of the 72 pair "
        f"words are in their family (chance {m['neighbours_same_family_chance']:.0%})",
        f"  offsets y - x of different pairs: mean cosine {m['offset_cosine_within']:.2f} "
        f"within a family, {m['offset_cosine_across']:.2f} across families",
        "",
        f"subsampling with t = {THRESHOLD:g} keeps {m['kept_fraction']:.0%} of the tokens "
        f"('the': {float(keep_probability(corpus.counts, THRESHOLD)[0]):.0%} of its occurrences)",
        f"  {'':<25} {'pairs/sentence':>14} {'acc. at 20%':>12} {'final acc.':>11}",
    ]
    for name in VARIANTS:
        lines.append(
            f"  {name.replace('_', ' '):<25} {m[f'pairs_per_sentence_{name}']:>14.1f} "
            f"{m[f'early_accuracy_{name}']:>12.1%} {evals[name][-1]:>11.1%}"
        )
    return lines


def _pca_2d(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T  # [n, 2]


def _figure(vectors, corpus: Corpus, evals, metrics):
    fig, axes = plotting.figure(2, 2, height=7.6)
    unit = np.asarray(vectors / jnp.linalg.norm(vectors, axis=-1, keepdims=True))
    panels = [(axes[0, 0], 0), (axes[0, 1], 1), (axes[1, 0], 2)]
    for ax, f in panels:
        name = list(FAMILIES)[f]
        sides = FAMILIES[name][0]
        pairs = corpus.pairs[f]  # [P, 2]
        xy = _pca_2d(unit[pairs.reshape(-1)]).reshape(len(pairs), 2, 2)  # [P, side, 2]
        for p, (x0, x1) in enumerate(xy):
            ax.annotate(
                "",
                xy=x1,
                xytext=x0,
                arrowprops={"arrowstyle": "->", "color": plotting.PALETTE[f], "lw": 1},
            )
            for s, point in enumerate((x0, x1)):
                ax.text(*point, corpus.words[pairs[p, s]], fontsize=8, ha="center", va="bottom")
        for s in range(2):
            ax.scatter(xy[:, s, 0], xy[:, s, 1], s=10, color=plotting.PALETTE[f] if s else "none",
                       edgecolors=plotting.PALETTE[f])  # fmt: skip
        acc = metrics[f"analogy_accuracy_{name}"]
        title = f"{sides[0]} ○ → {sides[1]} ● (2-D PCA)\nanalogy accuracy {acc:.0%}"
        ax.set(title=title, xticks=[], yticks=[])
    ax = axes[1, 1]
    for i, name in enumerate(VARIANTS):
        ax.plot(
            evals["step"],
            100 * np.asarray(evals[name]),
            marker="o",
            ms=3,
            label=name.replace("_", " "),
            color=plotting.PALETTE[3 + i],
        )
    ax.axhline(
        100 * metrics["nearest_to_c_accuracy"],
        ls="--",
        lw=1,
        color="gray",
        label="nearest word to c (subsampled)",
    )
    ax.axhline(100 * metrics["chance"], ls=":", lw=1, color="gray", label="chance")
    ax.set(title="3CosAdd analogy accuracy", xlabel="step", ylabel="accuracy (%)", ylim=(-3, 103))
    ax.legend(fontsize=8, loc="lower right")
    return fig

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl import twins
from impl.sequence import word2vec, word2vec_experiment
from impl.sequence.word2vec_corpus import (
    FAMILIES,
    FILLERS,
    analogy_questions,
    generate_corpus,
    vocabulary,
    word_families,
)

from twin_checks import assert_twins_agree

V, D = 11, 6  # a small vocabulary and dimension for unit tests


def _tables(seed=0):
    k_in, k_out = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k_in, (V, D)), jax.random.normal(k_out, (V, D))


def _batch(seed=1, pairs=9, k=4):
    k_c, k_o, k_n = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.randint(k_c, (pairs,), 0, V),
        jax.random.randint(k_o, (pairs,), 0, V),
        jax.random.randint(k_n, (pairs, k), 0, V),
    )


# ---------------------------------------------------------------------------------------
# Shapes and dtypes
# ---------------------------------------------------------------------------------------
def test_sgns_loss_shapes_and_dtypes():
    w_in, w_out = _tables()
    centres, contexts, negatives = _batch()
    loss = word2vec.sgns_loss(w_in, w_out, centres, contexts, negatives)
    chex.assert_shape(loss, (9,))
    chex.assert_type(loss, jnp.float32)
    assert bool(jnp.all(loss > 0))  # minus a sum of log-probabilities


def test_context_pairs_shapes_and_dtypes():
    sentences = jax.random.randint(jax.random.key(0), (5, 7), 0, V)
    keep = jnp.full((V,), 0.5)
    centres, contexts, valid = word2vec.context_pairs(jax.random.key(1), sentences, 3, keep)
    for x in (centres, contexts, valid):
        chex.assert_shape(x, (5 * 7 * 2 * 3,))
    chex.assert_type(centres, jnp.int32)
    assert valid.dtype == jnp.bool_


def test_init_tables_follows_the_released_tool():
    tables = word2vec.init_tables(jax.random.key(0), V, D)
    chex.assert_shape([tables["w_in"], tables["w_out"]], (V, D))
    assert float(jnp.max(jnp.abs(tables["w_in"]))) <= 0.5 / D
    chex.assert_trees_all_equal(tables["w_out"], jnp.zeros((V, D)))


# ---------------------------------------------------------------------------------------
# The math, against the papers' formulas written out
# ---------------------------------------------------------------------------------------
def test_sgns_loss_is_minus_eq_4():
    w_in, w_out = (np.asarray(t, np.float64) for t in _tables())
    centres, contexts, negatives = (np.asarray(x) for x in _batch())
    sigma = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    expected = [
        -(
            np.log(sigma(w_out[o] @ w_in[c]))
            + sum(np.log(sigma(-w_out[n] @ w_in[c])) for n in negs)  # eq. 4, term by term
        )
        for c, o, negs in zip(centres, contexts, negatives)
    ]
    ours = word2vec.sgns_loss(*_tables(), *_batch())
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-5)


def test_sgns_gradient_matches_the_closed_form():
    """d loss / d v_I = -(1 - σ(v'_O·v_I)) v'_O + Σ_i σ(v'_i·v_I) v'_i, for one pair."""
    w_in, w_out = _tables()
    c, o, negs = jnp.array([3]), jnp.array([5]), jnp.array([[1, 7, 7]])
    grad = jax.grad(lambda w: word2vec.sgns_loss(w, w_out, c, o, negs)[0])(w_in)[3]
    v = w_in[3]
    expected = -(1 - jax.nn.sigmoid(w_out[5] @ v)) * w_out[5]
    expected += sum(jax.nn.sigmoid(w_out[n] @ v) * w_out[n] for n in (1, 7, 7))
    chex.assert_trees_all_close(grad, expected, rtol=1e-5, atol=1e-6)


def test_keep_probability_is_eq_5():
    counts = jnp.array([500, 100, 10, 1, 0])
    t = 0.01
    f = np.asarray(counts) / 611
    expected = np.where(f > 0, np.minimum(1.0, np.sqrt(t / np.maximum(f, 1e-30))), 1.0)
    np.testing.assert_allclose(
        np.asarray(word2vec.keep_probability(counts, t)), expected, rtol=1e-6
    )
    # The discard probability of eq. 5, 1 - sqrt(t / f), for the frequent words:
    np.testing.assert_allclose(
        1 - np.asarray(word2vec.keep_probability(counts, t))[:2], 1 - np.sqrt(t / f[:2]), rtol=1e-5
    )


def test_noise_distribution_is_the_unigram_to_the_three_quarters():
    counts = jnp.array([81, 16, 1, 0])
    noise = np.asarray(word2vec.noise_distribution(counts))
    expected = np.array([27.0, 8.0, 1.0, 0.0]) / 36.0  # (counts / 98)^(3/4), normalised
    np.testing.assert_allclose(noise, expected, rtol=1e-5)
    uniform = np.asarray(word2vec.noise_distribution(counts, power=0.0))
    np.testing.assert_allclose(uniform, np.full(4, 0.25), rtol=1e-6)  # 0^0 = 1: power 0 is uniform


def _pairs_by_loops(sentences, kept, reach, window):
    """Skip-gram's pairs, literally: drop the discarded words, then pair each survivor with the
    survivors at most its reach away."""
    pairs = []
    for sentence, keep, rs in zip(sentences, kept, reach):
        survivors = [int(w) for w, k in zip(sentence, keep) if k]
        reaches = [int(r) for r, k in zip(rs, keep) if k]
        for i, centre in enumerate(survivors):
            for j, context in enumerate(survivors):
                if i != j and abs(i - j) <= min(reaches[i], window):
                    pairs.append((centre, context))
    return sorted(pairs)


@pytest.mark.parametrize("window", [1, 2, 4])
def test_window_pairs_match_loops(window):
    k_s, k_k, k_r = jax.random.split(jax.random.key(window), 3)
    sentences = jax.random.randint(k_s, (6, 9), 0, 50)
    kept = jax.random.uniform(k_k, (6, 9)) < 0.6
    reach = jax.random.randint(k_r, (6, 9), 1, window + 1)
    centres, contexts, valid = word2vec.window_pairs(sentences, kept, reach, window)
    valid = np.asarray(valid)
    ours = sorted(zip(np.asarray(centres)[valid].tolist(), np.asarray(contexts)[valid].tolist()))
    assert ours == _pairs_by_loops(
        np.asarray(sentences), np.asarray(kept), np.asarray(reach), window
    )


def test_dynamic_window_weights_near_words_more():
    """With reach R uniform in 1..c, a word at distance d is a context with probability
    (c - d + 1) / c."""
    c = 4
    sentences = jnp.arange(20 * 30).reshape(20, 30)  # no subsampling: every word is kept
    _, _, valid = word2vec.context_pairs(_key, sentences, c)
    valid = np.asarray(valid).reshape(20, 30, 2 * c)[:, c:-c]  # centres far from the sentence ends
    observed = valid.mean(axis=(0, 1))  # per offset -c..-1, 1..c
    distance = np.abs(np.concatenate([np.arange(-c, 0), np.arange(1, c + 1)]))
    np.testing.assert_allclose(observed, (c - distance + 1) / c, atol=0.04)


def test_subsampling_keeps_each_word_at_its_eq_5_rate():
    counts = jnp.array([600, 300, 90, 10])
    keep = word2vec.keep_probability(counts, 0.02)  # sqrt(0.02 / f): 0.18, 0.26, 0.47, 1
    sentences = jnp.tile(jnp.arange(4), (5000, 2))  # [5000, 8]
    kept = np.asarray(word2vec.subsample(jax.random.key(3), sentences, keep))
    rates = [kept[np.asarray(sentences) == word].mean() for word in range(4)]
    np.testing.assert_allclose(rates, np.asarray(keep), atol=0.015)
    assert rates[3] == 1.0  # rarer than the threshold: always kept


def test_subsampling_brings_far_words_into_the_window():
    sentences = jnp.array([[10, 0, 0, 0, 11]])  # word 0 is always discarded
    keep = jnp.where(jnp.arange(12) == 0, 0.0, 1.0)
    centres, contexts, valid = word2vec.context_pairs(_key, sentences, 1, keep)
    valid = np.asarray(valid)
    pairs = sorted(zip(np.asarray(centres)[valid].tolist(), np.asarray(contexts)[valid].tolist()))
    assert pairs == [(10, 11), (11, 10)]
    _, _, valid = word2vec.context_pairs(_key, sentences, 1)  # no subsampling: 4 neighbour pairs
    assert int(np.sum(valid)) == 8


def test_negatives_follow_the_noise_distribution():
    noise = word2vec.noise_distribution(jnp.array([1000, 100, 10, 1]))
    draws = np.asarray(word2vec.sample_negatives(_key, noise, 20000, 5))
    chex.assert_shape(draws, (20000, 5))
    frequency = np.bincount(draws.ravel(), minlength=4) / draws.size
    np.testing.assert_allclose(frequency, np.asarray(noise), atol=0.005)


def test_3cosadd_completes_a_planted_parallelogram_and_never_answers_a_question_word():
    # Words 0..3 are x1, y1, x2, y2 with y = x + offset; word 4 is a decoy near y2; 5..7 are noise.
    offset = jnp.array([0.0, 0.0, 3.0, 0.0])
    x1, x2 = jnp.array([1.0, 0.2, 0.0, 0.1]), jnp.array([0.2, 1.0, 0.0, -0.1])
    noise = 0.1 * jax.random.normal(jax.random.key(0), (3, 4)) + jnp.array(
        [0.0, 0.0, 0.0, 1.0]
    ).reshape(1, 4)
    decoy = x2 + offset + jnp.array([1.0, -0.5, 0.0, 0.0])
    # [8, 4]
    vectors = jnp.concatenate([jnp.stack([x1, x1 + offset, x2, x2 + offset, decoy]), noise])
    questions = jnp.array([[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1]])
    assert np.asarray(word2vec.solve_analogies(vectors, questions)).tolist() == [3, 2, 1]
    # Even when the best match is one of a, b, c (e.g. a == c), the answer never is.
    every = jnp.array([[a, b, c] for a in range(8) for b in range(8) for c in range(8)])
    answers = np.asarray(word2vec.solve_analogies(vectors, every))
    assert not np.any(answers[:, None] == np.asarray(every))


def test_3cosadd_matches_brute_force_cosines():
    vectors = jax.random.normal(jax.random.key(0), (30, 5))
    questions = jax.random.randint(jax.random.key(1), (40, 3), 0, 30)
    unit = np.asarray(vectors) / np.linalg.norm(np.asarray(vectors), axis=1, keepdims=True)
    expected = []
    for a, b, c in np.asarray(questions):
        target = unit[b] - unit[a] + unit[c]
        scores = [
            -np.inf if w in (a, b, c) else unit[w] @ target / np.linalg.norm(target)
            for w in range(30)
        ]
        expected.append(int(np.argmax(scores)))
    assert np.asarray(word2vec.solve_analogies(vectors, questions)).tolist() == expected


def test_nearest_neighbours_exclude_the_word_itself_and_are_sorted():
    vectors = jax.random.normal(jax.random.key(2), (20, 4))
    ids = jnp.arange(20)
    neighbours = np.asarray(word2vec.nearest_neighbours(vectors, ids, 5))
    assert not np.any(neighbours == np.arange(20)[:, None])
    unit = np.asarray(vectors) / np.linalg.norm(np.asarray(vectors), axis=1, keepdims=True)
    sims = np.take_along_axis(unit @ unit.T, neighbours, axis=1)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)


# ---------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------
def test_corpus_is_deterministic_and_plants_its_relations():
    a, b = generate_corpus(0, 500), generate_corpus(0, 500)
    chex.assert_trees_all_equal(a.sentences, b.sentences)
    assert not np.array_equal(
        np.asarray(a.sentences), np.asarray(generate_corpus(1, 500).sentences)
    )
    words, pairs, topics, roles = vocabulary()
    assert a.words == words and len(words) == 134
    chex.assert_shape(a.sentences, (500, 10))
    assert int(a.counts.sum()) == 5000
    assert (
        words[pairs[0, 0, 0]] == "france"
        and words[pairs[0, 0, 1]] == "paris"
        and words[topics[0, 0]] == "french"
    )
    # 'the' is the most frequent
    assert words.index("the") == 0 and int(np.argmax(np.asarray(a.counts))) == 0
    # Without noise every sentence holds exactly one pair
    # word, with its topic and two role words of its side.
    clean = np.asarray(generate_corpus(2, 300, noise=0.0).sentences)
    for sentence in clean:
        hits = [
            (f, p, s)
            for f in range(3)
            for p in range(12)
            for s in range(2)
            if pairs[f, p, s] in sentence
        ]
        assert len(hits) == 1
        f, p, s = hits[0]
        assert topics[f, p] in sentence
        assert sum(int(np.isin(w, roles[f, s])) for w in sentence) == 2
        assert sum(int(w < len(FILLERS)) for w in sentence) == 6


def test_word_families_cover_every_content_word():
    words, pairs, topics, roles = vocabulary()
    family = word_families(words)
    assert np.all(family[: len(FILLERS)] == -1)
    for f in range(len(FAMILIES)):
        for ids in (pairs[f], topics[f], roles[f]):
            assert np.all(family[ids] == f)
    assert np.bincount(family[family >= 0]).tolist() == [12 * 3 + 6] * 3


def test_analogy_questions_cover_every_ordered_pair_in_both_directions():
    _, pairs, _, _ = vocabulary()
    questions, family = analogy_questions(pairs)
    n = len(FAMILIES) * 12 * 11 * 2
    chex.assert_shape(questions, (n, 4))
    assert len({tuple(q) for q in questions.tolist()}) == n
    assert np.all(np.bincount(family) == 12 * 11 * 2)


# ---------------------------------------------------------------------------------------
# Ours against Flax's embedding layers
# ---------------------------------------------------------------------------------------
def test_embed_matches_flax_linen_and_nnx_embed():
    table, _ = _tables()
    ids = jnp.array([[0, 3, 10], [7, 7, 1]])
    ours = word2vec.embed(table, ids)
    linen = nn.Embed(V, D).apply({"params": {"embedding": table}}, ids)
    layer = nnx.Embed(V, D, rngs=nnx.Rngs(0))
    layer.embedding[...] = table
    chex.assert_trees_all_equal(ours, linen)
    chex.assert_trees_all_equal(ours, layer(ids))
    # a lookup is a one-hot product
    chex.assert_trees_all_equal(ours, jax.nn.one_hot(ids, V) @ table)


# ---------------------------------------------------------------------------------------
# Linen / NNX twins
# ---------------------------------------------------------------------------------------
def test_linen_init_follows_the_released_tool():
    centres, contexts, negatives = _batch()
    params = word2vec.LinenSkipGram(vocab_size=V, dim=D).init(
        jax.random.key(0), centres, contexts, negatives
    )
    chex.assert_trees_all_equal_shapes(
        params["params"], word2vec.init_tables(jax.random.key(0), V, D)
    )
    chex.assert_shape(params["params"]["w_in"], (V, D))
    chex.assert_trees_all_equal(params["params"]["w_out"], jnp.zeros((V, D)))
    model = word2vec.NnxSkipGram(V, D, rngs=nnx.Rngs(0))
    chex.assert_trees_all_equal(model.w_out[...], jnp.zeros((V, D)))


def test_linen_and_nnx_twins_agree_on_loss_and_gradients():
    batch = _batch()
    linen = word2vec.LinenSkipGram(vocab_size=V, dim=D)
    model = word2vec.NnxSkipGram(V, D, rngs=nnx.Rngs(1))
    variables, _, _ = assert_twins_agree(linen, model, batch, loss=jnp.mean, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_equal(linen.apply(variables, method="vectors"), model.vectors())
    # Non-zero output vectors too (they start at zero), so that every gradient is non-trivial.
    w_in, w_out = _tables(3)
    variables = {"params": {"w_in": w_in, "w_out": w_out}}
    twins.load_linen(model, variables)
    chex.assert_trees_all_close(linen.apply(variables, *batch), model(*batch), rtol=1e-6)
    chex.assert_trees_all_close(
        linen.apply(variables, *batch), word2vec.sgns_loss(*_tables(3), *batch), rtol=1e-6
    )
    grads_linen = jax.grad(lambda v: jnp.mean(linen.apply(v, *batch)))(variables)["params"]
    grads_nnx = nnx.to_pure_dict(nnx.grad(lambda m: jnp.mean(m(*batch)))(model))
    chex.assert_trees_all_close(grads_linen, grads_nnx, rtol=1e-5, atol=1e-7)
    assert (
        float(jnp.abs(grads_linen["w_in"]).sum()) > 0
        and float(jnp.abs(grads_linen["w_out"]).sum()) > 0
    )
    chex.assert_trees_all_equal(linen.apply(variables, method="vectors"), model.vectors())


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
_ids = jnp.array([0, 1, 2])
_negs = jnp.array([[3, 4], [5, 6], [7, 8]])
_model = lambda: word2vec.NnxSkipGram(V, D, rngs=nnx.Rngs(0))  # noqa: E731
_key = jax.random.key(0)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: _model()(jnp.array([0, V]), _ids[:2], _negs[:2]), ValueError,
         r"centres: expected token ids in \[0, 11\)"),
        (lambda: _model()(_ids, jnp.array([0, -1, 2]), _negs), ValueError,
         "contexts: expected token ids"),
        (lambda: word2vec.LinenSkipGram(V, D).init(jax.random.key(0), _ids, _ids, _negs + V),
         ValueError, "negatives: expected token ids"),
        (lambda: _model()(_ids, _ids[:2], _negs), ValueError, "contexts: expected shape"),
        (lambda: _model()(_ids, _ids, _ids), ValueError, "negatives: expected shape"),
        (lambda: _model()(_ids * 1.0, _ids, _negs), TypeError, "centres: expected an integer"),
        (lambda: word2vec.NnxSkipGram(0, D, rngs=nnx.Rngs(0)), ValueError, "vocab_size"),
        (lambda: word2vec.LinenSkipGram(V, -2).init(jax.random.key(0), _ids, _ids, _negs),
         ValueError, "dim"),
        (lambda: word2vec.embed(jnp.ones((V, D)), jnp.array([V])), ValueError,
         "ids: expected token ids"),
        (lambda: word2vec.keep_probability(jnp.array([3, -1, 2]), 1e-3), ValueError,
         "counts: expected non-negative"),
        (lambda: word2vec.noise_distribution(jnp.array([3, -1, 2])), ValueError,
         "counts: expected non-negative"),
        (lambda: word2vec.noise_distribution(jnp.zeros(4, jnp.int32)), ValueError,
         "counts: expected at least one"),
        (lambda: word2vec.keep_probability(jnp.ones((2, 3)), 1e-3), ValueError,
         "counts: expected shape"),
        (lambda: word2vec.keep_probability(jnp.array([3, 1]), 0.0), ValueError, "threshold"),
        (lambda: word2vec.keep_probability(jnp.array([3, 1]), -1e-3), ValueError, "threshold"),
        (lambda: word2vec.noise_distribution(jnp.array([3, 1]), power=1.5), ValueError, "power"),
        (lambda: word2vec.context_pairs(_key, jnp.ones((2, 5), jnp.int32), 0), ValueError,
         "window"),
        (lambda: word2vec.context_pairs(_key, jnp.ones((2, 5), jnp.int32), -2), ValueError,
         "window"),
        (lambda: word2vec.context_pairs(_key, jnp.ones((2, 5), jnp.int32), 2.5), TypeError,
         "window"),
        (lambda: word2vec.context_pairs(_key, jnp.ones(5, jnp.int32), 2), ValueError,
         "sentences: expected shape"),
        (lambda: word2vec.context_pairs(_key, jnp.full((2, 5), 4), 2, jnp.ones(4)), ValueError,
         r"sentences: expected token ids in \[0, 4\)"),
        (lambda: word2vec.subsample(jax.random.key(0), jnp.full((2, 5), -1), jnp.ones(4)),
         ValueError, "sentences"),
        (lambda: word2vec.sample_negatives(_key, jnp.ones(4) / 4, 3, 0), ValueError,
         "k: expected a positive"),
        (lambda: generate_corpus(0, 0), ValueError, "n_sentences"),
        (lambda: generate_corpus(0, 10, length=4), ValueError, "length"),
        (lambda: generate_corpus(0, 10, noise=1.0), ValueError, "noise"),
        (lambda: word2vec_experiment.experiment(seed=-1), ValueError, "seed"),
        (lambda: word2vec_experiment.experiment(steps=15), ValueError, "steps"),
    ],
)  # fmt: skip
def test_bad_input_is_rejected_before_compute(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ---------------------------------------------------------------------------------------
# The claim
# ---------------------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_planted_analogies_are_solved_and_neighbours_are_semantic(seed):
    m = word2vec_experiment.experiment(seed=seed).metrics
    # Analogies: far above chance (1/131), and far above the
    # nearest word to c, which ignores a and b.
    assert m["analogy_accuracy"] > 0.9
    assert m["analogy_accuracy"] > 100 * m["chance"]
    assert m["analogy_accuracy"] > m["nearest_to_c_accuracy"] + 0.15
    assert min(m[f"analogy_accuracy_{name}"] for name in FAMILIES) > 0.85
    # Nearest neighbours stay within their word's family; offsets are parallel within a family only.
    assert m["neighbours_same_family"] > 0.8 > 2 * m["neighbours_same_family_chance"]
    assert m["offset_cosine_within"] > 0.5
    assert abs(m["offset_cosine_across"]) < 0.15
    # Subsampling: far fewer pairs, much faster progress, and no worse at the end.
    assert m["pairs_per_sentence_subsampled"] < 0.25 * m["pairs_per_sentence_no_subsampling"]
    assert m["early_accuracy_subsampled"] > m["early_accuracy_no_subsampling"] + 0.3
    assert m["analogy_accuracy"] >= m["analogy_accuracy_no_subsampling"]

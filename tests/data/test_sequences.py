import jax.numpy as jnp
import pytest

from impl.data import sequences as seq


@pytest.mark.parametrize("name", ["copy", "reverse", "sort"])
def test_permutation_tasks(name):
    task = seq.sequence_task(name, 0, 32, length=6, n_symbols=5)
    assert task.inputs.shape == task.targets.shape == (32, 6)
    assert task.inputs.dtype == jnp.int32 and task.vocab_size == seq.FIRST_SYMBOL + 5
    assert int(task.inputs.min()) >= seq.FIRST_SYMBOL and int(task.inputs.max()) < task.vocab_size
    expected = {
        "copy": task.inputs,
        "reverse": task.inputs[:, ::-1],
        "sort": jnp.sort(task.inputs, axis=1),
    }
    assert jnp.array_equal(task.targets, expected[name])


def test_addition_targets_are_the_sum():
    task = seq.addition(0, 64, digits=3)
    assert task.inputs.shape == (64, 7) and task.targets.shape == (64, 4)
    d = task.inputs - seq.FIRST_SYMBOL
    powers = jnp.array([100, 10, 1], dtype=jnp.int32)
    a, b = (d[:, :3] * powers[None]).sum(1), (d[:, 4:] * powers[None]).sum(1)
    total = (
        (task.targets - seq.FIRST_SYMBOL) * jnp.array([[1000, 100, 10, 1]], dtype=jnp.int32)
    ).sum(1)
    assert jnp.array_equal(total, a + b)
    assert jnp.all(task.inputs[:, 3] == seq.FIRST_SYMBOL + 10)


def test_delayed_recall_target_is_first_symbol_and_distractors_are_disjoint():
    task = seq.delayed_recall(0, 50, delay=60, n_symbols=4, n_distractors=3)
    assert task.inputs.shape == (50, 61) and task.targets.shape == (50,)
    assert jnp.array_equal(task.targets, task.inputs[:, 0])
    assert int(task.inputs[:, 1:].min()) >= seq.FIRST_SYMBOL + 4
    assert task.vocab_size == seq.FIRST_SYMBOL + 7


def test_tasks_are_deterministic():
    a, b = seq.copy_task(3, 8), seq.copy_task(3, 8)
    assert jnp.array_equal(a.inputs, b.inputs)
    assert seq.grammar_corpus(0, 20) == seq.grammar_corpus(0, 20)
    assert seq.grammar_corpus(0, 20) != seq.grammar_corpus(1, 20)


def test_grammar_corpus_agrees_in_number():
    words = seq.GRAMMAR_WORDS
    for sentence in seq.grammar_corpus(0, 300):
        tokens = sentence.split()
        assert tokens[-1] == "."
        # the subject is the first noun; the verb is the first verb form after the subject NP
        # (before any prepositional phrase's own noun could be mistaken for it)
        first_noun = next(t for t in tokens if t in words["noun_sg"] + words["noun_pl"])
        verb = next(
            t
            for t in tokens
            if t in words["verb_sg"] + words["verb_pl"] + words["intrans_sg"] + words["intrans_pl"]
        )
        singular_subject = first_noun in words["noun_sg"]
        singular_verb = verb in words["verb_sg"] + words["intrans_sg"]
        assert singular_subject == singular_verb, sentence


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: seq.sequence_task("shuffle", 0), ValueError, "name: expected one of 'copy'"),
        (lambda: seq.copy_task(0, 8, length=0), ValueError, "length"),
        (lambda: seq.addition(0, 8, digits=9), ValueError, "digits: expected at most 8"),
        (lambda: seq.delayed_recall(0, 8, delay=-5), ValueError, "delay"),
        (lambda: seq.grammar_corpus(0, 0), ValueError, "n_sentences"),
        (lambda: seq.sort_task(0, 2.5), TypeError, "n: expected a positive integer"),
    ],
)
def test_sequence_tasks_reject_bad_settings(call, error, message):
    with pytest.raises(error, match=message):
        call()

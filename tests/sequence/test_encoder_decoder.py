import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl.data.sequences import BOS
from impl.data.translation import VOCAB, translation_task
from impl.sequence import encoder_decoder as ed
from impl.sequence import encoder_decoder_experiment as ed_exp

from twin_checks import assert_twins_agree


def _batch(seed=0, n=5, min_len=2, max_len=7):
    return translation_task(jax.random.key(seed), n, min_len=min_len, max_len=max_len)


# ---------------------------------------------------------------------------------------
# The GRU
# ---------------------------------------------------------------------------------------
def test_gru_step_shapes_and_range():
    params = ed.init_gru(jax.random.key(0), 5, 7)
    h = ed.gru_step(params, jnp.zeros((3, 7)), jnp.ones((3, 5)))
    chex.assert_shape(h, (3, 7))
    chex.assert_type(h, jnp.float32)
    assert jnp.all(jnp.abs(h) < 1.0)  # a convex mix of tanh outputs and an initial state of 0


def test_gru_with_reset_after_matches_flax_gru_cell():
    """flax.linen.GRUCell applies the reset gate after the recurrent matrix; ours can too."""
    cell = nn.GRUCell(features=6)
    x = jax.random.normal(jax.random.key(1), (4, 5))
    h = jax.random.normal(jax.random.key(2), (4, 6))
    variables = cell.init(jax.random.key(0), h, x)
    p = variables["params"]
    assert not jnp.any(p["hn"]["bias"])  # flax's extra recurrent bias starts at zero; ours has none
    ours = {
        "w_r": p["ir"]["kernel"], "u_r": p["hr"]["kernel"], "b_r": p["ir"]["bias"],
        "w_z": p["iz"]["kernel"], "u_z": p["hz"]["kernel"], "b_z": p["iz"]["bias"],
        "w_n": p["in"]["kernel"], "u_n": p["hn"]["kernel"], "b_n": p["in"]["bias"],
    }  # fmt: skip
    theirs, _ = cell.apply(variables, h, x)
    chex.assert_trees_all_close(
        ed.gru_step(ours, h, x, reset_after=True), theirs, rtol=1e-5, atol=1e-6
    )
    # Cho et al.'s own form (eq. 8) resets before the matrix: a different function.
    assert float(jnp.max(jnp.abs(ed.gru_step(ours, h, x) - theirs))) > 1e-3


def test_flax_gru_weights_load_with_the_recurrent_candidate_bias():
    """With ``candidate_bias=True`` the tree has flax's ``hn/bias`` too: any GRUCell's weights
    load."""
    cell = nn.GRUCell(features=6)
    x = jax.random.normal(jax.random.key(1), (4, 5))
    h = jax.random.normal(jax.random.key(2), (4, 6))
    variables = cell.init(jax.random.key(0), h, x)
    p = jax.tree.map(
        lambda a: a + 0.3 * jax.random.normal(jax.random.key(3), a.shape), variables["params"]
    )
    ours = {
        "w_r": p["ir"]["kernel"], "u_r": p["hr"]["kernel"], "b_r": p["ir"]["bias"],
        "w_z": p["iz"]["kernel"], "u_z": p["hz"]["kernel"], "b_z": p["iz"]["bias"],
        "w_n": p["in"]["kernel"], "u_n": p["hn"]["kernel"], "b_n": p["in"]["bias"],
        "c_n": p["hn"]["bias"],
    }  # fmt: skip
    chex.assert_trees_all_equal_shapes(
        ours, ed.init_gru(jax.random.key(0), 5, 6, candidate_bias=True)
    )
    theirs, _ = cell.apply({"params": p}, h, x)
    chex.assert_trees_all_close(
        ed.gru_step(ours, h, x, reset_after=True), theirs, rtol=1e-5, atol=1e-6
    )
    # the topics' GRU: Cho et al.'s, no extra bias
    assert "c_n" not in ed.init_gru(jax.random.key(0), 5, 6)


def test_gru_update_gate_closed_keeps_the_state():
    """Eq. 7: with z = 1 (a large update-gate bias) the unit copies h_{t-1} whatever x is."""
    params = ed.init_gru(jax.random.key(0), 3, 4)
    params["b_z"] = jnp.full((4,), 50.0)
    h = jax.random.normal(jax.random.key(1), (2, 4))
    chex.assert_trees_all_close(ed.gru_step(params, h, 10 * jnp.ones((2, 3))), h, atol=1e-6)


def test_gru_reset_gate_open_forgets_the_state():
    """Eqs. 5, 8: with r = 0 and z = 0 the new state depends on x only."""
    params = ed.init_gru(jax.random.key(0), 3, 4)
    params["b_r"], params["b_z"] = jnp.full((4,), -50.0), jnp.full((4,), -50.0)
    x = jax.random.normal(jax.random.key(1), (2, 3))
    a = ed.gru_step(params, jnp.zeros((2, 4)), x)
    b = ed.gru_step(params, 5 * jax.random.normal(jax.random.key(2), (2, 4)), x)
    chex.assert_trees_all_close(a, b, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Encoder, decoder, loss
# ---------------------------------------------------------------------------------------
def test_padding_does_not_change_the_summary():
    """The encoder's vector depends only on the real tokens: more PAD after them changes nothing."""
    params = ed.init_encoder_decoder(jax.random.key(0), VOCAB, 8, 16)
    src = _batch(n=6)["src"]
    padded = jnp.concatenate([src, jnp.zeros((6, 5), jnp.int32)], axis=1)
    chex.assert_trees_all_close(ed.encode(params, src), ed.encode(params, padded), atol=1e-6)


def test_shapes_of_logits_and_greedy_decode():
    params = ed.init_encoder_decoder(jax.random.key(0), VOCAB, 8, 16)
    data = _batch()
    logits = ed.encoder_decoder(params, data["src"], data["tgt_in"])
    chex.assert_shape(logits, (5, 8, VOCAB))
    out = ed.greedy_decode(params, data["src"], 8)
    chex.assert_shape(out, (5, 8))
    chex.assert_type(out, jnp.int32)


def test_greedy_decode_equals_teacher_forcing_on_its_own_output():
    """Feeding the greedy output back in as the 'true' previous tokens reproduces its argmaxes."""
    params = ed.init_encoder_decoder(jax.random.key(3), VOCAB, 8, 16)
    src = _batch()["src"]
    out = ed.greedy_decode(params, src, 6)
    tgt_in = jnp.concatenate([jnp.full((5, 1), BOS, jnp.int32), out[:, :-1]], axis=1)
    np.testing.assert_array_equal(jnp.argmax(ed.encoder_decoder(params, src, tgt_in), -1), out)


# ---------------------------------------------------------------------------------------
# Linen and NNX twins
# ---------------------------------------------------------------------------------------
def test_linen_and_nnx_agree_on_outputs_and_gradients():
    data = _batch()
    assert_twins_agree(
        ed.LinenEncoderDecoder(VOCAB, 8, 16),
        ed.NnxEncoderDecoder(VOCAB, 8, 16, rngs=nnx.Rngs(0)),
        (data["src"], data["tgt_in"]),
        loss=lambda logits: jnp.mean(logits**2),
        rtol=1e-5,
        atol=1e-7,
    )


def test_linen_params_are_the_tree_init_encoder_decoder_declares():
    data = _batch()
    variables = ed.LinenEncoderDecoder(VOCAB, 8, 16).init(
        jax.random.key(0), data["src"], data["tgt_in"]
    )
    chex.assert_trees_all_equal_shapes(
        variables["params"], ed.init_encoder_decoder(jax.random.key(0), VOCAB, 8, 16)
    )


def test_sequence_loss_is_the_masked_mean_cross_entropy():
    params = ed.init_encoder_decoder(jax.random.key(2), VOCAB, 8, 16)
    data = _batch(n=7)
    logits = ed.encoder_decoder(params, data["src"], data["tgt_in"])
    logp = jax.nn.log_softmax(logits)
    picked = np.take_along_axis(np.asarray(logp), np.asarray(data["tgt_out"])[..., None], axis=-1)[
        ..., 0
    ]
    mask = np.asarray(data["tgt_out"]) != 0  # PAD
    chex.assert_trees_all_close(ed.sequence_loss(params, data), -picked[mask].mean(), rtol=1e-5)


def test_nnx_embedding_lookup_matches_nnx_embed():
    model = ed.NnxEncoderDecoder(VOCAB, 8, 16, rngs=nnx.Rngs(0))
    embed = nnx.Embed(VOCAB, 8, rngs=nnx.Rngs(1))
    embed.embedding[...] = model.src_embed[...]
    src = _batch()["src"]
    chex.assert_trees_all_close(embed(src), model.src_embed[...][src])


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda m: m(jnp.ones((2, 3), jnp.float32), jnp.ones((2, 3), jnp.int32)),
            TypeError,
            "src: expected integer",
        ),
        (
            lambda m: m(jnp.full((2, 3), VOCAB), jnp.ones((2, 3), jnp.int32)),
            ValueError,
            r"src: expected token ids in",
        ),
        (
            lambda m: m(jnp.full((2, 3), -1), jnp.ones((2, 3), jnp.int32)),
            ValueError,
            "src: expected token ids in",
        ),
        (
            lambda m: m(jnp.ones((2, 3, 1), jnp.int32), jnp.ones((2, 3), jnp.int32)),
            ValueError,
            "src: expected shape",
        ),
        (
            lambda m: m(jnp.ones((2, 3), jnp.int32), jnp.ones((3, 3), jnp.int32)),
            ValueError,
            "tgt_in: expected batch",
        ),
        (
            lambda m: m(jnp.ones((2, 0), jnp.int32), jnp.ones((2, 3), jnp.int32)),
            ValueError,
            "src: expected at least",
        ),
    ],
)
def test_bad_input_is_rejected(call, error, message):
    model = ed.NnxEncoderDecoder(VOCAB, 4, 8, rngs=nnx.Rngs(0))
    with pytest.raises(error, match=message):
        call(model)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: ed.NnxEncoderDecoder(3, rngs=nnx.Rngs(0)),
            "vocab: expected more than the 4 reserved",
        ),
        (lambda: ed.NnxEncoderDecoder(VOCAB, 0, rngs=nnx.Rngs(0)), "d_embed"),
        (lambda: ed.init_encoder_decoder(jax.random.key(0), VOCAB, 4, -2), "d_hidden"),
        (lambda: ed.init_gru(jax.random.key(0), 0, 4), "d_in"),
        (lambda: ed_exp.experiment(seed=-1), "seed"),
        (
            lambda: ed.LinenEncoderDecoder(VOCAB).init(
                jax.random.key(0), jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3), jnp.float32)
            ),
            "tgt_in: expected integer",
        ),
    ],
)
def test_bad_settings_are_rejected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# ---------------------------------------------------------------------------------------
# The claim: accuracy falls as the source grows, and a larger vector holds longer sentences
# ---------------------------------------------------------------------------------------
@pytest.mark.claim
def test_claim_accuracy_falls_with_length(seed):
    m = ed_exp.experiment(seed=seed, progress=False).metrics
    for h in ("h32", "h96"):
        assert m[f"{h}_word_acc_short"] > 0.85  # short sentences are translated
        # ... long ones much less well
        assert m[f"{h}_word_acc_short"] - m[f"{h}_word_acc_long"] > 0.3
        assert m[f"{h}_sentence_acc_long"] < 0.2
    # The bottleneck, not the task: a three-times larger vector carries longer sentences further.
    assert m["h96_word_acc_long"] - m["h32_word_acc_long"] > 0.1

import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impl.transformers import gpt2
from impl.transformers import gpt2_experiment as gpt2_exp

from twin_checks import assert_twins_agree

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gpt2"
SMALL = gpt2.GPT2Config(vocab_size=53, d_model=24, n_heads=3, n_layers=2, max_len=16)


def _params(config=SMALL, seed=0):
    return gpt2.init_gpt2(jax.random.key(seed), config)


def _tokens(b=2, t=12, seed=1, vocab=SMALL.vocab_size):
    return jax.random.randint(jax.random.key(seed), (b, t), 0, vocab)


# ---------------------------------------------------------------------------------------
# Sizes, shapes, initialisation
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(gpt2.CONFIGS))
def test_configs_have_the_published_parameter_counts(name):
    """eval_shape only: 124,439,808 for the smallest, position embeddings included, lm_head tied."""
    assert gpt2.count_parameters(gpt2.CONFIGS[name]) == gpt2.PUBLISHED_PARAMETERS[name]


def test_config_defaults_are_gpt2_small_and_mirror_4_1s_config():
    config = gpt2.GPT2Config()
    assert (config.vocab_size, config.d_model, config.n_layers, config.max_len, config.d_ff) == (
        50257, 768, 12, 1024, 3072,
    )  # fmt: skip
    assert config.transformer.pre_ln and config.transformer.activation == "gelu_tanh"


def test_logits_shape_and_dtype():
    out = gpt2.logits(SMALL, _params(), _tokens())
    chex.assert_shape(out, (2, 12, SMALL.vocab_size))
    chex.assert_type(out, jnp.float32)
    chex.assert_tree_all_finite(out)


def test_init_scales_the_residual_projections_by_one_over_sqrt_2l():
    config = gpt2.GPT2Config(vocab_size=50, d_model=96, n_heads=4, n_layers=8, max_len=8)
    blocks = _params(config)["blocks"]
    expected = 0.02 / np.sqrt(2 * config.n_layers)
    np.testing.assert_allclose(float(jnp.std(blocks["attn"]["out"]["kernel"])), expected, rtol=0.05)
    np.testing.assert_allclose(float(jnp.std(blocks["ffn"]["out"]["kernel"])), expected, rtol=0.05)
    np.testing.assert_allclose(float(jnp.std(blocks["ffn"]["hidden"]["kernel"])), 0.02, rtol=0.05)
    chex.assert_shape(blocks["attn"]["qkv"]["kernel"], (8, 96, 3, 4, 24))


def test_unrolled_and_bfloat16_forward_agree_with_the_scan():
    params, tokens = _params(), _tokens()
    ref = gpt2.logits(SMALL, params, tokens)
    chex.assert_trees_all_close(gpt2.logits(SMALL, params, tokens, unroll=True), ref, atol=1e-5)
    chex.assert_trees_all_close(
        gpt2.logits(SMALL, params, tokens, dtype=jnp.bfloat16), ref, atol=0.05
    )


# ---------------------------------------------------------------------------------------
# Causality, the key/value cache, sampling
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("pre_ln", [True, False])
def test_changing_a_future_token_never_changes_an_earlier_logit(pre_ln):
    config = gpt2.GPT2Config(**{**SMALL.__dict__, "pre_ln": pre_ln})
    params, tokens = _params(config), _tokens(b=3, t=16)
    base = np.asarray(gpt2.logits(config, params, tokens))
    rng = np.random.default_rng(0)
    for _ in range(6):
        p = int(rng.integers(0, 16))
        changed = tokens.at[:, p].set(
            (tokens[:, p] + rng.integers(1, config.vocab_size)) % config.vocab_size
        )
        out = np.asarray(gpt2.logits(config, params, changed))
        np.testing.assert_array_equal(out[:, :p], base[:, :p])
        assert (
            np.abs(out[:, p] - base[:, p]).max() > 1e-4
        )  # the changed position itself does change


def test_kv_cache_gives_the_full_forward_logits():
    """Prefill 5 tokens, then 1, 4 and 2 at a time: the logits of recomputing the whole prefix."""
    params, tokens = _params(), _tokens(t=12)
    full = gpt2.logits(SMALL, params, tokens)
    cache = gpt2.init_cache(SMALL, 2, 14)
    pieces, pos = [], 0
    for n in (5, 1, 4, 2):
        out, cache = gpt2.decode_step(SMALL, params, cache, tokens[:, pos : pos + n], pos)
        pieces.append(out)
        pos += n
    chex.assert_trees_all_close(jnp.concatenate(pieces, axis=1), full, atol=1e-5)


@pytest.mark.parametrize(
    "options", [{"greedy": True}, {"temperature": 0.9, "top_k": 20, "top_p": 0.95}, {}]
)
def test_generate_with_cache_equals_recomputing_the_prefix(options):
    params, prompt = _params(seed=2), _tokens(b=3, t=3, seed=3)
    key = jax.random.key(7)
    cached = gpt2.generate(SMALL, params, prompt, key, steps=13, **options)
    recomputed = gpt2.generate(SMALL, params, prompt, key, steps=13, use_cache=False, **options)
    chex.assert_shape(cached, (3, 16))
    chex.assert_trees_all_equal(cached, recomputed)
    chex.assert_trees_all_equal(cached[:, :3], prompt)


def test_greedy_generation_picks_the_argmax_of_the_full_forward():
    params, prompt = _params(seed=4), _tokens(b=2, t=4, seed=5)
    out = gpt2.generate(SMALL, params, prompt, 0, steps=6, greedy=True)
    full = gpt2.logits(SMALL, params, out)
    chex.assert_trees_all_equal(out[:, 4:], jnp.argmax(full[:, 3:-1], axis=-1).astype(jnp.int32))


def test_filter_logits_keeps_the_top_k_and_the_nucleus():
    logits = jnp.log(jnp.array([[0.5, 0.05, 0.3, 0.15], [0.25, 0.25, 0.25, 0.25]]))
    kept = np.isfinite(np.asarray(gpt2.filter_logits(logits, top_k=2)))
    np.testing.assert_array_equal(kept[0], [True, False, True, False])
    kept = np.isfinite(np.asarray(gpt2.filter_logits(logits, top_p=0.75)))
    np.testing.assert_array_equal(kept[0], [True, False, True, False])  # 0.5 + 0.3 >= 0.75
    kept = np.isfinite(np.asarray(gpt2.filter_logits(logits, top_p=0.85)))
    np.testing.assert_array_equal(kept[0], [True, False, True, True])
    kept = np.isfinite(np.asarray(gpt2.filter_logits(logits, top_p=0.01)))
    np.testing.assert_array_equal(
        kept[0], [True, False, False, False]
    )  # the top token always stays
    chex.assert_trees_all_close(gpt2.filter_logits(logits, temperature=0.5), logits / 0.5)


def test_sampling_follows_the_filtered_distribution():
    """Top-p = 0.75 of (0.5, 0.05, 0.3, 0.15) leaves 0.5 and 0.3, renormalised to 5/8 and 3/8."""
    logits = jnp.log(jnp.array([[0.5, 0.05, 0.3, 0.15]]))
    filtered = gpt2.filter_logits(logits, top_p=0.75)
    draws = jax.random.categorical(jax.random.key(0), filtered, shape=(20_000, 1))
    freq = np.bincount(np.asarray(draws).ravel(), minlength=4) / 20_000
    np.testing.assert_allclose(freq, [5 / 8, 0, 3 / 8, 0], atol=0.015)


# ---------------------------------------------------------------------------------------
# The twins
# ---------------------------------------------------------------------------------------
def test_linen_and_nnx_agree_on_outputs_and_gradients():
    tokens = _tokens()
    targets = _tokens(seed=9)
    assert_twins_agree(
        gpt2.LinenGPT2(SMALL),
        gpt2.NnxGPT2(SMALL, rngs=nnx.Rngs(0)),
        (tokens,),
        loss=lambda out: gpt2.lm_loss(out, targets),
        rtol=1e-5,
        atol=1e-6,
    )


def test_linen_params_are_the_tree_init_gpt2_declares():
    variables = gpt2.LinenGPT2(SMALL).init(jax.random.key(0), _tokens())
    chex.assert_trees_all_equal_shapes(variables["params"], _params())


# ---------------------------------------------------------------------------------------
# Hugging Face: the committed fixture
# ---------------------------------------------------------------------------------------
def _fixture():
    state = gpt2.read_safetensors(FIXTURE / "model.safetensors")
    hf_config = json.loads((FIXTURE / "config.json").read_text())
    expected = gpt2.read_safetensors(FIXTURE / "expected.safetensors")
    return state, hf_config, expected


def test_huggingface_gpt2_logits_are_reproduced():
    """A random transformers.GPT2LMHeadModel: width 36, 3 heads, 3 layers, V 101, 23 positions."""
    state, hf_config, expected = _fixture()
    config, params = gpt2.from_huggingface(state, hf_config)
    assert (config.d_model, config.n_heads, config.n_layers, config.vocab_size, config.max_len) == (
        36,
        3,
        3,
        101,
        23,
    )
    out = gpt2.logits(config, params, jnp.asarray(expected["tokens"], jnp.int32))
    chex.assert_shape(out, expected["logits"].shape)
    np.testing.assert_allclose(np.asarray(out), expected["logits"], atol=1e-5, rtol=0)


def test_read_safetensors_reads_what_numpy_wrote():
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], np.int64)}
    header, body, offset = {}, b"", 0
    for name, array in arrays.items():
        raw = array.tobytes()
        header[name] = {
            "dtype": {"float32": "F32", "int64": "I64"}[str(array.dtype)],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        body, offset = body + raw, offset + len(raw)
    text = json.dumps(header).encode()
    out = gpt2.read_safetensors(len(text).to_bytes(8, "little") + text + body)
    for name, array in arrays.items():
        np.testing.assert_array_equal(out[name], array)
        assert out[name].dtype == array.dtype


def test_huggingface_buffers_and_a_tied_lm_head_are_accepted():
    state, hf_config, _ = _fixture()
    extra = dict(state)
    extra["transformer.h.0.attn.bias"] = np.tril(np.ones((1, 1, 23, 23), bool))
    extra["transformer.h.1.attn.masked_bias"] = np.array(-1e4, np.float32)
    extra["lm_head.weight"] = state["transformer.wte.weight"]
    _, params = gpt2.from_huggingface(extra, hf_config)
    _, ref = gpt2.from_huggingface(state, hf_config)
    chex.assert_trees_all_equal(params, ref)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("transformer.h.2.mlp.c_fc.bias"), "h.2.mlp.c_fc.bias"),
        (
            lambda s: s.update(
                {"transformer.h.1.attn.c_attn.weight": np.zeros((36, 36), np.float32)}
            ),
            "c_attn.weight",
        ),
        (
            lambda s: s.update({"transformer.ln_f.weight": np.ones((35,), np.float32)}),
            "ln_f.weight",
        ),
        (lambda s: s.update({"transformer.h.0.mystery": np.ones(3, np.float32)}), "h.0.mystery"),
        (lambda s: s.update({"lm_head.weight": np.zeros((101, 36), np.float32)}), "lm_head.weight"),
    ],
)
def test_huggingface_state_dict_errors_name_the_tensor(change, message):
    state, hf_config, _ = _fixture()
    state = dict(state)
    change(state)
    with pytest.raises(ValueError, match=message):
        gpt2.from_huggingface(state, hf_config)


def test_huggingface_config_errors_name_the_field():
    _, hf_config, _ = _fixture()
    with pytest.raises(ValueError, match="n_head"):
        gpt2.from_huggingface({}, {k: v for k, v in hf_config.items() if k != "n_head"})
    with pytest.raises(ValueError, match="activation_function"):
        gpt2.from_huggingface({}, {**hf_config, "activation_function": "relu"})


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda p: gpt2.logits(SMALL, p, _tokens(t=17)), ValueError, "max_len"),
        (lambda p: gpt2.logits(SMALL, p, _tokens().at[0, 3].set(53)), ValueError, "tokens"),
        (lambda p: gpt2.logits(SMALL, p, _tokens().at[0, 3].set(-1)), ValueError, "tokens"),
        (lambda p: gpt2.logits(SMALL, p, jnp.zeros((2, 3))), TypeError, "tokens"),
        (lambda p: gpt2.logits(SMALL, p, jnp.zeros((6,), jnp.int32)), ValueError, "tokens"),
        (lambda p: gpt2.generate(SMALL, p, _tokens(t=4), 0, steps=5, top_k=0), ValueError, "top_k"),
        (
            lambda p: gpt2.generate(SMALL, p, _tokens(t=4), 0, steps=5, top_k=-2),
            ValueError,
            "top_k",
        ),
        (
            lambda p: gpt2.generate(SMALL, p, _tokens(t=4), 0, steps=5, top_p=0.0),
            ValueError,
            "top_p",
        ),
        (
            lambda p: gpt2.generate(SMALL, p, _tokens(t=4), 0, steps=5, top_p=1.5),
            ValueError,
            "top_p",
        ),
        (
            lambda p: gpt2.generate(SMALL, p, _tokens(t=4), 0, steps=5, temperature=0.0),
            ValueError,
            "temperature",
        ),
        (
            lambda p: gpt2.generate(SMALL, p, _tokens(t=4), 0, steps=5, temperature=-1),
            ValueError,
            "temperature",
        ),
        (lambda p: gpt2.generate(SMALL, p, _tokens(t=4), 0, steps=13), ValueError, "steps"),
        (lambda p: gpt2.generate(SMALL, p, _tokens(t=4), 0, steps=0), ValueError, "steps"),
        (lambda p: gpt2.filter_logits(jnp.zeros((1, 4)), top_p=1.01), ValueError, "top_p"),
        (lambda p: gpt2.init_cache(SMALL, 2, 17), ValueError, "length"),
        (
            lambda p: gpt2.decode_step(SMALL, p, gpt2.init_cache(SMALL, 2, 8), _tokens(t=3), 6),
            ValueError,
            "pos",
        ),
        (lambda p: gpt2.logits(SMALL.transformer, p, _tokens()), TypeError, "config"),
    ],
)
def test_bad_input_is_rejected(call, error, message):
    with pytest.raises(error, match=message):
        call(_params())


@pytest.mark.parametrize(
    "kwargs, message",
    [({"n_heads": 3}, "n_heads"), ({"d_model": 0}, "d_model"), ({"activation": "x"}, "activation"),
     ({"max_len": -1}, "max_len"), ({"ln_eps": 0.0}, "ln_eps")],
)  # fmt: skip
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        gpt2.GPT2Config(
            **{"vocab_size": 10, "d_model": 20, "n_heads": 4, "n_layers": 1, "max_len": 8, **kwargs}
        )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gpt2_exp.experiment(seed=-1), "seed"),
        (lambda: gpt2_exp.experiment(seed=0, steps=0), "steps"),
    ],
)
def test_bad_settings_are_rejected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# ---------------------------------------------------------------------------------------
# The experiment's pieces and the claim
# ---------------------------------------------------------------------------------------
def test_ngram_baselines_on_a_deterministic_stream():
    """A stream that repeats 7, 8, 9: the bigram knows what comes next, the unigram does not."""
    ids = np.tile(np.array([7, 8, 9]), 400).astype(np.int32)
    out = gpt2_exp.ngram_losses(ids[:900], ids[900:], 12)
    assert out["bigram"] < 0.1 < np.log(3) - 0.05 < out["unigram"]


@pytest.mark.claim
def test_claim_gpt2_learns_the_prose_and_judges_word_order_zero_shot(seed):
    m = gpt2_exp.experiment(seed=seed, progress=False).metrics
    # seeds 0-9, worst: pre-LN 0.75 and post-LN 1.31 nats under the unigram, word order 73.4%,
    # 16x2 behind 24x3 by 0.12 (docs/claims.md)
    # a stated held-out loss, far under the unigram baseline (not under the bigram at this budget)
    assert m["held_out_pre_ln"] < m["unigram_nats_per_token"] - 0.6
    assert m["bigram_nats_per_token"] < m["unigram_nats_per_token"]
    # (a) at this scale post-LN trains without warm-up too: the toy does not show Xiong's failure
    for name in ("held_out_post_ln", "held_out_post_ln_warm_up"):
        assert m[name] < m["unigram_nats_per_token"] - 0.8
    # (b) zero-shot: the real word order beats two swapped words well above chance (50%)
    assert m["word_order_accuracy"] > 0.65
    # the nearest measurable trend: held-out loss falls from the smallest model to the next
    assert m["held_out_pre_ln_small"] > m["held_out_pre_ln_medium"] + 0.05

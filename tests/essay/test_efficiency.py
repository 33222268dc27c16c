"""Chapter 2.6's experiment: the variants agree, the measurements are sane (no timing
thresholds)."""

import math

import chex
import jax
import jax.numpy as jnp
import pytest

from impl.essay import efficiency


def _qkv(t, key=0):
    keys = jax.random.split(jax.random.key(key), 3)
    return [jax.random.normal(k, (2, t, 3, 8)) for k in keys]  # [b, T, h, d]


def test_the_three_attentions_agree():
    q, k, v = _qkv(64)
    reference = jax.nn.dot_product_attention(q, k, v)
    chex.assert_shape(efficiency.naive_attention(q, k, v), (2, 64, 3, 8))
    chex.assert_trees_all_close(efficiency.naive_attention(q, k, v), reference, atol=1e-5)
    chex.assert_trees_all_close(
        efficiency.blocked_attention(q, k, v, block=16), reference, atol=1e-5
    )


def test_blocked_attention_survives_large_scores():
    q, k, v = _qkv(32, key=1)
    # scores in the thousands: a naive exp would overflow, the running maximum does not
    q = q * 100.0
    out = efficiency.blocked_attention(q, k, v, block=8)
    assert bool(jnp.all(jnp.isfinite(out)))
    chex.assert_trees_all_close(out, jax.nn.dot_product_attention(q, k, v), atol=1e-4)


def test_blocked_attention_checks_the_block():
    q, k, v = _qkv(48)
    with pytest.raises(ValueError, match="block"):
        efficiency.blocked_attention(q, k, v, block=32)


def test_loop_vmap_and_jit_agree():
    seconds, error = efficiency.dispatch_timings(batch=8, d_in=4, hidden=8, repeats=1)
    assert set(seconds) == {"python loop", "vmap", "jit(vmap)"}
    assert all(math.isfinite(s) and s > 0 for s in seconds.values())
    assert error < 1e-5


def test_attention_timings_structure():
    result = efficiency.attention_timings((128,), block=64, repeats=1)
    row = result[128]
    assert {
        "naive",
        "blocked",
        "library",
        "naive_scores_mb",
        "blocked_scores_mb",
        "max_error",
    } == set(row)
    assert row["naive_scores_mb"] == pytest.approx(efficiency.HEADS * 128 * 128 * 4 / 1e6)
    assert row["blocked_scores_mb"] < row["naive_scores_mb"]
    assert row["max_error"] < 1e-4


def test_precision_timings_structure():
    result = efficiency.precision_timings(64, repeats=1)
    assert all(math.isfinite(result[k]) and result[k] > 0 for k in ("float32", "bfloat16"))
    assert 0 < result["bf16_relative_error"] < 0.05  # bfloat16 keeps about 3 significant digits


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: efficiency.dispatch_timings(batch=0), "batch"),
        (lambda: efficiency.attention_timings(()), "seq_lens"),
        (lambda: efficiency.attention_timings((100,), block=64), r"seq_lens\[0\]"),
        (lambda: efficiency.precision_timings(-4), "n"),
        (lambda: efficiency.experiment(seq_lens=(200,)), r"seq_lens\[0\]"),
        (lambda: efficiency.experiment(n=0), "n"),
        (lambda: efficiency.experiment(repeats=0), "repeats"),
        (lambda: efficiency.experiment(seed=-1), "seed"),
    ],
)
def test_bad_arguments_are_rejected_before_any_compute(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


@pytest.mark.slow
def test_experiment_reports_sane_numbers():
    report = efficiency.experiment(seq_lens=(128, 256), n=128, repeats=1)
    m = report.metrics
    expected = {"loop_ms", "vmap_ms", "jit_ms", "speedup_jit_over_loop", "attention_naive_ms_T256",
                "attention_blocked_ms_T128", "attention_library_ms_T256", "scores_mb_T256",
                "float32_gflops", "bfloat16_gflops", "speedup_bf16",
                "bf16_relative_error"}  # fmt: skip
    assert expected <= set(m)
    assert all(math.isfinite(v) and v >= 0 for v in m.values())
    assert m["attention_max_error"] < 1e-4 and m["dispatch_max_error"] < 1e-5
    assert report.figure is not None and len(report.figure.axes) == 3

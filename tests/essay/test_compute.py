"""Chapter 2.5's experiment: structure and sanity of the measurements (no timing thresholds)."""

import math

import jax.numpy as jnp
import pytest

from impl.essay import compute, milestones


def test_median_seconds_is_positive_and_checks_arguments():
    assert compute.median_seconds(lambda x: x + 1, jnp.ones(4), repeats=2, min_seconds=0.001) > 0
    with pytest.raises(ValueError, match="repeats"):
        compute.median_seconds(lambda x: x, jnp.ones(4), repeats=0)
    with pytest.raises(ValueError, match="min_seconds"):
        compute.median_seconds(lambda x: x, jnp.ones(4), min_seconds=0.0)


def test_matmul_intensity():
    assert compute.matmul_intensity(6) == pytest.approx(1.0)  # 2·216 FLOP over 3·36·4 bytes
    assert compute.matmul_intensity(1200, 2) == pytest.approx(400.0)
    with pytest.raises(ValueError, match="n"):
        compute.matmul_intensity(0)


def test_matmul_throughput_is_positive_and_finite():
    result = compute.matmul_throughput((16, 64), repeats=1)
    assert list(result) == [16, 64]
    assert all(math.isfinite(v) and v > 0 for v in result.values())


def test_bandwidth_is_positive_and_finite():
    assert 0 < compute.bandwidth_gbs(2**16, repeats=1) < math.inf


def test_training_times_divide_compute_by_rate():
    rows = milestones.load()
    times = compute.training_times(rows, 1e12)
    gpt3 = next(t for t in times if t[0] == "GPT-3")
    assert gpt3[2] == pytest.approx(3.14e23) and gpt3[3] == pytest.approx(3.14e11)
    assert all(flop > 0 and seconds == pytest.approx(flop / 1e12) for _, _, flop, seconds in times)
    assert len(times) >= 10  # reported figures plus 6·N·D estimates
    with pytest.raises(ValueError, match="flops_per_second"):
        compute.training_times(rows, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": (64,)}, "sizes"),
        ({"sizes": (64, 0)}, r"sizes\[1\]"),
        ({"sizes": (64, 100_000)}, r"sizes\[1\]"),
        ({"repeats": 0}, "repeats"),
        ({"seed": -1}, "seed"),
    ],
)
def test_experiment_rejects_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        compute.experiment(**kwargs)


@pytest.mark.slow
def test_experiment_reports_sane_numbers():
    report = compute.experiment(sizes=(32, 128), repeats=1)
    m = report.metrics
    assert {
        "gflops_n32",
        "gflops_n128",
        "peak_gflops",
        "bandwidth_gbs",
        "ridge_flop_per_byte",
        "crossover_n",
    } <= set(m)
    assert {"years_GPT-3", "years_Llama_3_405B"} <= set(m)
    assert all(math.isfinite(v) and v > 0 for v in m.values())
    assert m["peak_gflops"] == max(m["gflops_n32"], m["gflops_n128"])
    assert m["years_Llama_3_405B"] > m["years_GPT-3"]  # more compute, same machine
    assert report.figure is not None and len(report.figure.axes) == 2
    assert "GPT-3" in str(report)

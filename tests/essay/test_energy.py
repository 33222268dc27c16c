import math

import pytest

from impl.essay import energy, hardware


def test_training_flop_is_six_n_d():
    assert energy.training_flop(1000, 50) == 6 * 1000 * 50


@pytest.mark.parametrize(("name", "kwargs"), [
    ("n_weights", {"n_weights": 0, "examples": 1}),
    ("examples", {"n_weights": 1, "examples": -3}),
])  # fmt: skip
def test_training_flop_rejects_bad_counts(name, kwargs):
    with pytest.raises(ValueError, match=name):
        energy.training_flop(**kwargs)


def _zone(root, name, energy_uj, wrap=1_000_000):
    zone = root / name
    zone.mkdir()
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_read_rapl_reads_packages_only(tmp_path):
    _zone(tmp_path, "intel-rapl:0", 500)
    _zone(tmp_path, "intel-rapl:0:0", 100)  # a sub-zone of package 0: already counted in it
    _zone(tmp_path, "intel-rapl:1", 700)
    assert energy.read_rapl(tmp_path) == {
        "intel-rapl:0": (500, 1_000_000),
        "intel-rapl:1": (700, 1_000_000),
    }


def test_read_rapl_is_none_without_readable_counters(tmp_path):
    assert energy.read_rapl(tmp_path / "missing") is None
    assert energy.read_rapl(tmp_path) is None  # exists, but no zones
    (tmp_path / "intel-rapl:0").mkdir()  # a zone whose counter cannot be read
    assert energy.read_rapl(tmp_path) is None


def test_joules_between_handles_a_counter_wrapping_around():
    before = {"intel-rapl:0": (900_000, 1_000_000), "intel-rapl:1": (10, 1_000_000)}
    after = {"intel-rapl:0": (100_000, 1_000_000), "intel-rapl:1": (2_000_010, 1_000_000)}
    assert energy.joules_between(before, after) == pytest.approx(0.2 + 2.0)


def test_joules_between_rejects_mismatched_zones():
    with pytest.raises(ValueError, match="after"):
        energy.joules_between({"intel-rapl:0": (0, 1)}, {"intel-rapl:1": (0, 1)})


def test_chip_joules_per_flop_is_power_over_peak():
    h100 = hardware.by_name(hardware.load())["H100 (SXM5)"]
    assert energy.chip_joules_per_flop(h100) == pytest.approx(
        h100.power_w / (h100.fp16_tflops * 1e12)
    )


def test_chip_for_matches_the_milestones_hardware_text():
    chips = hardware.by_name(hardware.load())
    assert energy.chip_for("16,384 NVIDIA H100 GPUs", chips).name == "H100 (SXM5)"
    assert energy.chip_for("992 NVIDIA A100 80GB GPUs", chips).name == "A100 (SXM4, 40 GB)"
    assert energy.chip_for("6144 TPU v4 chips", chips).name == "TPU v4"
    assert energy.chip_for("2,048 NVIDIA H800 GPUs", chips) is None  # not in the hardware file
    assert energy.chip_for("", chips) is None


def test_published_figures_name_milestones():
    from impl.essay import milestones

    systems = {row.system for row in milestones.load()}
    for pub in energy.PUBLISHED:
        assert pub.system in systems and pub.mwh > 0 and pub.source


def test_milestone_energy_scales_with_flop():
    runs = energy.milestone_energy(1e-11)
    assert runs and all(
        r.flop > 0 and r.here_mwh == pytest.approx(r.flop * 1e-11 / 3.6e9) for r in runs
    )
    gpt3 = next(r for r in runs if r.system == "GPT-3")
    # On V100s at peak and rated power, GPT-3's 3.14e23 FLOP
    # need ~209 MWh: below the published 1,287.
    assert gpt3.chip == "Tesla V100 (SXM2)" and 150 < gpt3.chip_mwh < gpt3.published_mwh
    half = {r.system: r.chip_mwh for r in energy.milestone_energy(1e-11, utilisation=0.5)}
    assert half["GPT-3"] == pytest.approx(2 * gpt3.chip_mwh)


@pytest.mark.parametrize(("name", "value"), [("joules_per_flop_here", 0.0), ("utilisation", 1.5)])
def test_milestone_energy_rejects_bad_arguments(name, value):
    kwargs = {"joules_per_flop_here": 1e-11, name: value}
    with pytest.raises(ValueError, match=name):
        energy.milestone_energy(**kwargs)


@pytest.mark.parametrize(
    ("name", "value"),
    [("seed", -1), ("steps", 0), ("steps", 300), ("batch_size", 0), ("watts_per_core", -2.0)],
)
def test_experiment_rejects_bad_arguments_before_training(name, value, monkeypatch):
    monkeypatch.setattr(
        energy, "train", lambda *a, **k: pytest.fail("trained before checking arguments")
    )
    with pytest.raises(ValueError, match=name):
        energy.experiment(**{name: value})


@pytest.mark.slow
def test_experiment_reports_energy_with_or_without_counters(tmp_path):
    _zone(tmp_path, "intel-rapl:0", 0)  # a counter that never moves: the estimate must take over
    report = energy.experiment(seed=0, steps=250, rapl_root=tmp_path)
    m = report.metrics
    for key in (
        "flop",
        "seconds",
        "cpu_seconds",
        "gflop_per_s",
        "joules",
        "joules_per_flop",
        "measured",
    ):
        assert math.isfinite(m[key]) and m[key] >= 0, key
    assert m["measured"] == 0.0 and "ESTIMATED" in str(report)
    assert m["joules"] == pytest.approx(energy.WATTS_PER_CORE * m["cpu_seconds"])
    assert 1e-13 < m["joules_per_flop"] < 1e-6  # picojoules to microjoules per FLOP on any CPU
    assert m["test_accuracy"] > 0.5
    assert m["mwh_chip_gpt_3"] < m["mwh_published_gpt_3"]
    assert report.figure is not None

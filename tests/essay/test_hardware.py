"""The hardware file behind chapters 2.5-2.7: well-formed, sourced, plausible; and its helpers."""

import csv
import math

import pytest

from impl.essay import hardware as h


@pytest.fixture(scope="module")
def rows():
    return h.load()


def test_file_loads_with_every_column(rows):
    assert 25 <= len(rows) <= 60
    with h.PATH.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == h.COLUMNS


def test_types_and_kinds(rows):
    for row in rows:
        assert isinstance(row.name, str) and row.name
        assert isinstance(row.year, int) and 2000 <= row.year <= 2026
        assert row.kind in h.KINDS
        for column in h.RANGES:
            value = getattr(row, column)
            assert value is None or (isinstance(value, float) and math.isfinite(value)), (
                row.name,
                column,
            )


def test_every_figure_has_a_source(rows):
    for row in rows:
        for column, source in h.SOURCE_OF.items():
            if getattr(row, column) is not None:
                assert getattr(row, source).strip(), (row.name, source)
    assert h.sourced_figures(rows) >= 100


def test_no_duplicate_names_and_years_in_order(rows):
    names = [row.name.lower() for row in rows]
    assert len(names) == len(set(names))
    years = [row.year for row in rows]
    assert years == sorted(years)


def test_all_kinds_are_represented(rows):
    assert {row.kind for row in rows} >= {"gpu", "tpu", "cpu"}


def test_known_figures(rows):
    chips = h.by_name(rows)
    assert chips["GeForce GTX 580"].fp32_tflops == pytest.approx(1.581)
    a100 = chips["A100 (SXM4, 40 GB)"]
    assert (a100.fp16_tflops, a100.memory_bandwidth_gbs, a100.power_w) == (312.0, 1555.0, 400.0)
    # dense: the datasheet's 3,958 assumes sparsity
    assert chips["H100 (SXM5)"].fp8_tflops == 1979.0


def _write(tmp_path, rows):
    path = tmp_path / "hardware.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=h.COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in h.COLUMNS})
    return path


GOOD = {
    "name": "Toy GPU",
    "vendor": "Lab",
    "kind": "gpu",
    "year": "2015",
    "fp32_tflops": "5",
    "fp16_tflops": "10",
    "memory_gb": "12",
    "memory_bandwidth_gbs": "300",
    "power_w": "250",
    "price_usd": "1000",
    "source_throughput": "A datasheet",
    "source_memory": "A datasheet",
    "source_power": "A datasheet",
    "source_price": "A price list",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"year": "1990"}, "Toy GPU, year"),
        ({"year": "soon"}, r"line 2 \(Toy GPU\), year"),
        ({"kind": "fpga"}, "Toy GPU, kind"),
        ({"vendor": ""}, "Toy GPU, vendor"),
        ({"fp32_tflops": "fast"}, r"line 2 \(Toy GPU\), fp32_tflops"),
        ({"fp32_tflops": "1e6"}, "Toy GPU, fp32_tflops"),
        ({"fp32_tflops": "-1"}, "Toy GPU, fp32_tflops"),
        ({"memory_bandwidth_gbs": "nan"}, "Toy GPU, memory_bandwidth_gbs"),
        ({"fp16_tflops": "1"}, "Toy GPU, fp16_tflops"),
        ({"fp8_tflops": "5"}, "Toy GPU, fp8_tflops"),
        ({"source_throughput": ""}, "Toy GPU, source_throughput"),
        ({"source_memory": ""}, "Toy GPU, source_memory"),
        ({"source_power": ""}, "Toy GPU, source_power"),
        ({"source_price": ""}, "Toy GPU, source_price"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_rows_are_rejected_naming_the_row_and_column(tmp_path, change, message):
    path = _write(tmp_path, [{**GOOD, **change}])
    with pytest.raises(ValueError, match=message):
        h.load(path)


def test_duplicates_and_missing_columns_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        h.load(_write(tmp_path, [GOOD, {**GOOD, "name": "toy gpu"}]))
    path = tmp_path / "short.csv"
    path.write_text("name,vendor\nX,Y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        h.load(path)


def test_a_good_row_loads_and_empty_figures_are_none(tmp_path):
    (row,) = h.load(_write(tmp_path, [{**GOOD, "price_usd": "", "source_price": ""}]))
    assert row.fp32_tflops == 5.0 and row.price_usd is None and row.fp8_tflops is None


def test_helpers(tmp_path):
    (row,) = h.load(_write(tmp_path, [GOOD]))
    assert h.peak_tflops(row, "fp16") == 10.0
    assert h.ml_peak_tflops(row) == 10.0 and h.peak_tflops(row, "ml") == 10.0
    assert h.flops_per_watt(row) == pytest.approx(5e3 / 250)  # GFLOP/s per watt
    assert h.flops_per_dollar(row, "fp16") == pytest.approx(10e3 / 1000)  # GFLOP/s per dollar
    assert h.ridge_point(row) == pytest.approx(5e12 / 300e9)  # FLOP per byte
    assert h.peak_tflops(row, "fp8") is None and h.ridge_point(row, "int8") is None
    with pytest.raises(ValueError, match="precision"):
        h.peak_tflops(row, "fp64")
    (cpu,) = h.load(
        _write(tmp_path, [{**GOOD, "fp16_tflops": "", "power_w": "", "source_power": ""}])
    )
    assert h.ml_peak_tflops(cpu) == 5.0 and h.flops_per_watt(cpu) is None


def test_doubling_months():
    assert h.doubling_months([(2000, 1.0), (2001, 2.0), (2002, 4.0)]) == pytest.approx(12.0)
    for bad in ([(2000, 1.0)], [(2000, 1.0), (2000, 2.0)], [(2000, 0.0), (2001, 1.0)]):
        with pytest.raises(ValueError, match="points"):
            h.doubling_months(bad)


def test_figures_draw(rows):
    for draw in (h.throughput_figure, h.ridge_figure):
        fig = draw(rows)
        assert fig.axes and fig.axes[0].collections

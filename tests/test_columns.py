"""Results as columns: CSV bytes as before the rewrite, Parquet beside CSV bit for bit, floats as repr."""

import gzip
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gradrun import csvformat, report, runner, spec
from gradrun.cli import cli
from gradrun.model import ExperimentResult
from rows import row

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"  # CSVs written by main before the columnar rewrite
EXAMPLES = sorted((ROOT / "experiments").glob("*.yaml"))


def run(path):
    return runner.run_spec(spec.load_spec(str(path)))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_csv_bytes_are_those_of_the_record_writer(path):
    """The columnar writer gives the bytes the per-element writer gave, on the machine the
    goldens were written on; on another, the same report but for the last bits that its math
    library and SIMD width give f (``assert_same_report``). A spec added later has no golden;
    a deliberate change of numbers recaptures them with
    ``gzip -c results/<stem>.csv > tests/golden/<stem>.csv.gz`` after a run."""
    golden = GOLDEN / f"{path.stem}.csv.gz"
    if not golden.exists():
        pytest.skip(f"{path.stem}.yaml came after the columnar rewrite; its baseline guards it")
    expected = gzip.decompress(golden.read_bytes()).decode("utf-8")
    assert_same_report(report.csv_text(run(path)), expected)


NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
ROUNDOFF_ULPS = 64  # how many units of round-off in f(x +- h) two machines' math libraries may differ by
EPS = {"float64": np.finfo(np.float64).eps, "float32": np.finfo(np.float32).eps}


def assert_same_report(got: str, expected: str):
    """``got`` is the report ``expected`` is: the same bytes, or, where the machine's math
    library or SIMD width rounds f's last bits otherwise than the goldens' machine did (numpy's
    exp with AVX-512, XLA's and torch's kernels for the host CPU), every text, status and
    count the same and every number within what that round-off can move it: the row's own
    tolerance (what the check resolves), or ``ROUNDOFF_ULPS`` units of round-off of f divided
    by the step, or 1e-9 of itself. The first difference beyond that is named."""
    if got == expected:
        return
    a, b = (pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str) for text in (expected, got))
    assert list(a.columns) == list(b.columns) and len(a) == len(b), "columns or rows differ"
    floats = pd.read_csv(io.StringIO(expected))
    numeric = [c for c in floats.columns if floats[c].dtype == np.float64]
    for column in a.columns:
        if column not in numeric:
            texts = [(NUMBER.sub("#", x), NUMBER.sub("#", y)) for x, y in zip(a[column], b[column])]
            bad = next((i for i, (x, y) in enumerate(texts) if x != y), None)
            assert bad is None, f"row {bad + 2}, {column}: {a[column][bad]!r} became {b[column][bad]!r}"
            continue
        x, y = (t[column].replace("", "nan").to_numpy().astype(np.float64) for t in (a, b))
        allowed = _allowed(floats, column)
        with np.errstate(invalid="ignore"):
            same = (x == y) | (np.isnan(x) & np.isnan(y)) | (np.abs(x - y) <= allowed)
        bad = np.flatnonzero(~same)
        assert not len(bad), (f"row {bad[0] + 2}, {column}: {x[bad[0]]!r} became {y[bad[0]]!r} "
                              f"(allowed {allowed[bad[0]]:.3g})")


def _allowed(rows: pd.DataFrame, column: str) -> np.ndarray:
    """How far each row's number in ``column`` may move with f's last bits (see assert_same_report)."""
    value = np.abs(rows[column].to_numpy())
    eps = rows["dtype"].map(EPS).fillna(EPS["float64"]).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        roundoff = ROUNDOFF_ULPS * eps * np.abs(rows["output_value"].to_numpy()) / rows["step"].to_numpy()
        roundoff[(rows["method"] == "complex").to_numpy()] = 0  # a complex step cancels nothing
        allowed = np.fmax(np.fmax(np.nan_to_num(rows["tolerance"].to_numpy()), np.nan_to_num(roundoff)),
                          1e-9 * value)
        if column == "rel_error":  # abs_error over |analytic|
            allowed = np.fmax(allowed / np.abs(rows["analytic"].to_numpy()), 1e-9 * value)
    return np.nan_to_num(allowed, nan=0.0, posinf=np.inf)


def test_a_report_is_told_apart_from_its_golden_beyond_round_off_alone():
    """``assert_same_report`` lets through the last bits of f and nothing more."""
    expected = gzip.decompress((GOLDEN / "chain.csv.gz").read_bytes()).decode("utf-8")
    rows = pd.read_csv(io.StringIO(expected))
    at = int(np.flatnonzero((rows["status"] == "pass") & (rows["numeric"] != 0))[0])

    def changed(column, value):
        edited = rows.copy()
        edited.loc[at, column] = value
        return edited.to_csv(index=False)  # floats as repr, as the report writes them

    num, tol = rows.loc[at, "numeric"], rows.loc[at, "tolerance"]
    assert_same_report(changed("numeric", np.nextafter(num, np.inf)), expected)  # one ulp
    assert_same_report(changed("numeric", num + 0.5 * tol), expected)  # within what the check resolves
    for column, value in [("numeric", num + 10 * tol), ("status", "fail"), ("element", "y"),
                          ("output_value", rows.loc[at, "output_value"] * (1 + 1e-6))]:
        with pytest.raises(AssertionError, match=column):
            assert_same_report(changed(column, value), expected)


def special_floats():
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2 ** 64, size=20_000, dtype=np.uint64).view(np.float64)
    decades = rng.standard_normal(20_000) * 10.0 ** rng.integers(-25, 25, 20_000)
    edges = [0.0, -0.0, 1e-4, np.nextafter(1e-4, 0), 1e16, np.nextafter(1e16, 0), 1e15, 5e-324,
             2.2250738585072014e-308, 1.7976931348623157e308, math.nan, math.inf, -math.inf, 0.1, 1 / 3,
             1e-5, 1.5e-6, 1.2e-7, 100.0, 1234567.0, 9007199254740993.0, 12345678901.5, 1e22, 1e-300]
    return np.concatenate([bits, decades, edges, np.round(decades[:2000])])


def test_floats_are_written_as_repr_writes_them():
    values = special_floats()
    assert csvformat.float_strings(values).to_pylist() == [repr(v) for v in values.tolist()]


def notation_bounds():
    """Every power of ten a notation may change at, the floats on either side, and whole numbers."""
    powers = 10.0 ** np.arange(-20, 25)
    sides = np.concatenate([powers, np.nextafter(powers, 0), np.nextafter(powers, np.inf), 1.5 * powers,
                            9.5 * powers, np.round(1.5 * powers), np.round(powers) + 1])
    return np.concatenate([sides, -sides])


def test_floats_at_every_notation_bound_are_written_as_repr_writes_them():
    values = notation_bounds()
    assert csvformat.float_strings(values).to_pylist() == [repr(v) for v in values.tolist()]


@pytest.mark.parametrize("values", [
    ["pass"] * 5, ["pass", "fail", "pass", None, "kink"], [None] * 3, ["", "a,b", 'say "x"', "\n"],
    [1.5, "x", None], [str(i) for i in range(100)],
], ids=["one", "few", "none", "quoting", "mixed", "many"])
def test_text_columns_read_back_as_written(values):
    from gradrun import arrowcols
    from gradrun.columns import text

    column = np.empty(len(values), dtype=object)
    column[:] = values
    assert arrowcols.text_column(column).to_pylist() == [None if v is None else text(v) for v in values]


def test_distinct_values_of_one_shared_object_and_of_many():
    from gradrun.columns import constant, distinct, one_object

    shared = constant("pass", 1000)
    assert one_object(shared) and distinct(shared) == ["pass"]
    assert distinct(shared[::3]) == ["pass"]  # strided: copied, then seen as one object too
    alike = np.array(["".join(["pa", "ss"]) for _ in range(1000)], dtype=object)  # equal, not one object
    assert not one_object(alike) and distinct(alike) == ["pass"]
    mixed = shared.copy()
    mixed[-1] = "fail"
    assert not one_object(mixed) and sorted(distinct(mixed)) == ["fail", "pass"]


def test_among_matches_isin_with_and_without_known_labels():
    from gradrun.columns import Columns, among

    rng = np.random.default_rng(0)
    status = np.empty(1000, dtype=object)
    status[:] = rng.choice(["pass", "fail", "kink", "nan"], 1000).tolist()
    table = Columns({"status": status})
    for wanted in [("pass", "kink"), ("nan",), ("unresolved",), ("pass", "fail", "kink", "nan")]:
        expected = np.isin(status.astype(str), wanted)
        assert (among(status, wanted) == expected).all()
        assert (among(status, wanted, table.labels("status")) == expected).all()


def hand_made():
    values = special_floats()[::97]
    rows = [row("e", 0, "X", i, f"X[{i}]", 0, v, -v, np.nextafter(v, 1), abs(v), 0.5, status=s,
                tolerance=1e-7, method="central", step=1e-5, coords={"x": float(i), "method": "central"})
            for i, (v, s) in enumerate(zip(values.tolist(), ["pass", "fail", "kink", "nan"] * 1000))]
    return ExperimentResult.from_rows("e", rows)


def read_both(tmp_path, results):
    report.write_csv(tmp_path / "r.csv", results)
    report.write_parquet(tmp_path / "r.parquet", results)
    return pd.read_csv(tmp_path / "r.csv"), pd.read_parquet(tmp_path / "r.parquet")


def missing_as_one(value):
    """Text as compared: the CSV's "nan", empty fields and nulls read back alike."""
    return "<missing>" if value is None or value != value or value in ("", "nan") else str(value)


def assert_same_values(csv, parquet):
    assert list(csv.columns) == list(parquet.columns) and len(csv) == len(parquet)
    for column in csv.columns:
        a, b = csv[column], parquet[column]
        if b.dtype == np.float64:
            assert a.dtype == np.float64, column
            assert np.array_equal(a.to_numpy().view(np.int64), b.to_numpy().view(np.int64)) or \
                np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True), column
            assert np.array_equal(np.signbit(a.to_numpy()), np.signbit(b.to_numpy())), column
        elif pd.api.types.is_bool_dtype(b) or pd.api.types.is_integer_dtype(b):
            assert a.dtype == b.dtype and a.tolist() == b.tolist(), column
        else:  # text: pandas reads the CSV's "nan" status and an empty field as missing
            assert list(map(missing_as_one, a)) == list(map(missing_as_one, b)), column


def test_csv_and_parquet_carry_the_same_values_bit_for_bit(tmp_path):
    csv, parquet = read_both(tmp_path, [hand_made()])
    assert_same_values(csv, parquet)
    assert parquet["passed"].tolist() == [s in ("pass", "kink") for s in parquet["status"]]


@pytest.mark.parametrize("stem", ["screen", "chain", "step-study", "float32"])
def test_csv_and_parquet_of_examples_agree(tmp_path, stem):
    results = run(ROOT / "experiments" / f"{stem}.yaml")
    csv, parquet = read_both(tmp_path, results)
    assert_same_values(csv, parquet)
    frames = pd.concat([r.dataframe() for r in results], ignore_index=True)
    assert_same_values(csv, frames[parquet.columns])


def test_large_reports_stream_in_pieces_with_the_same_bytes(tmp_path, monkeypatch):
    results = run(ROOT / "experiments" / "my-layer.yaml")
    whole = report.csv_text(results)
    from gradrun import layout

    monkeypatch.setattr(layout, "CHUNK", 7)
    chunks = list(report.csv_chunks(results))
    assert len(chunks) > 100 and b"".join(chunks).decode() == whole


def test_threads_and_distinct_values_change_no_byte(monkeypatch):
    """Row slices formatted on threads side by side, and float columns of few distinct values
    formatted once per bit pattern (-0.0 apart from 0.0, runs of one value), give the bytes
    Python's own formatting of every row gives."""
    from gradrun import layout, threads

    monkeypatch.setattr(csvformat, "SPLIT_ROWS", 400)
    monkeypatch.setattr(csvformat, "DISTINCT_SAMPLE", 128)
    monkeypatch.setattr(threads, "free_workers", lambda: 3)
    rng = np.random.default_rng(7)
    edges = special_floats()[-24 - 2000:-2000]  # zeros of both signs, nan, inf, the notation bounds
    few = edges[rng.integers(0, len(edges), 3000)]
    runs = np.repeat(special_floats()[:300], 10)  # an element's value, once per output
    rows = [row("e", 0, "X", i, f"X[{i},0]", 0, a, b, -a, abs(b), 0.5, status="pass", tolerance=1e-7,
                method='say "x", then' if i % 7 == 0 else "central", step=c)
            for i, (a, b, c) in enumerate(zip(few.tolist(), runs.tolist(), rng.standard_normal(3000).tolist()))]
    result = ExperimentResult.from_rows("e", rows)
    assert csvformat.few_distinct(few.view(np.int64)) and csvformat.few_distinct(runs.view(np.int64))
    assert not csvformat.few_distinct(rng.standard_normal(3000).view(np.int64))
    names = layout.schema([result]).names
    expected = csvformat.header(names).decode() + "".join(
        ",".join(csvformat._cell(r[n]) for n in names) + "\n" for r in layout.report_rows(result))
    assert report.csv_text([result]) == expected


def test_projections_are_a_table_of_their_own():
    result = run(ROOT / "experiments" / "screen.yaml")[0]
    assert len(result.projections) and "index" not in result.projections
    assert set(result.projections["status"]) <= {"pass", "kink"}
    assert (result.dataframe()["index"] == -1).sum() == len(result.projections)


def test_report_format_parquet_from_the_command_line(tmp_path):
    out = tmp_path / "out"
    proc = CliRunner().invoke(cli, [str(ROOT / "experiments" / "chain.yaml"), "--out", str(out),
                                    "--report-format", "parquet"])
    assert proc.exit_code == 0, proc.output
    assert (out / "chain.parquet").exists() and not (out / "chain.csv").exists()
    csv = CliRunner().invoke(cli, [str(ROOT / "experiments" / "chain.yaml"), "--out", str(tmp_path / "csv")])
    assert csv.exit_code == 0, csv.output
    assert_same_values(pd.read_csv(tmp_path / "csv" / "chain.csv"), pd.read_parquet(out / "chain.parquet"))


def test_rows_that_are_all_alike_are_each_written():
    same = [row("e", 0, "x", 0, "x", 0, 1.0, 2.0, 2.0, 0.0, 0.0, status="pass", tolerance=1e-7,
                method="central", step=1e-5)] * 3
    text = report.csv_text([ExperimentResult.from_rows("e", same)])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[1] == lines[2] == lines[3]
    assert lines[1].startswith("e,0,x,0,x,0,1.0,2.0,2.0,0.0,0.0,True,pass,1e-07,central,1e-05,")


def test_a_run_writing_csv_imports_no_pandas_jsonschema_or_pyarrow_compute(tmp_path):
    """Each costs 50-500 ms of start-up that a valid spec and a CSV report do not need."""
    import subprocess
    import sys

    code = ("import sys; from gradrun.cli import main\n"
            "try: main([sys.argv[1], '--out', sys.argv[2], '-q'])\n"
            "except SystemExit as e: assert e.code == 0, e.code\n"
            "print(sorted(m for m in ('pandas', 'jsonschema', 'pyarrow.compute') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "experiments" / "chain.yaml"), str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "chain.csv").exists()


def test_the_writer_starts_threads_only_where_a_core_is_free(monkeypatch):
    import os

    from gradrun import threads

    monkeypatch.setattr(threads, "WORKERS", 2)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.9, 0.9, 0.9))
    assert threads.free_workers() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (1.7, 0.9, 0.9))
    assert threads.free_workers() == 1
    monkeypatch.setattr(threads, "WORKERS", 1)  # a -j worker's cap
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.free_workers() == 1


def test_element_names_reused_only_for_the_same_elements():
    """Pieces of one input and shape name the same elements again (sweeps): the names built
    for one are reused for the next only when its indices are the same."""
    from gradrun import layout

    def names(index, shape=(3, 4)):
        columns = layout.Columns({"input": np.full(len(index), "X", dtype=object), "index": np.asarray(index)})
        return layout._arrow_elements(columns, False, {"X": shape}).to_pylist()

    expected = [f"X[{i // 4},{i % 4}]" for i in range(12)]
    assert names(range(12)) == expected and names(range(12)) == expected
    assert names([11, 0, 5]) == ["X[2,3]", "X[0,0]", "X[1,1]"]
    assert names(range(6)) == expected[:6]
    assert names(range(12), shape=(2, 6)) == [f"X[{i // 6},{i % 6}]" for i in range(12)]


def test_small_results_joined_as_columns_are_the_pieces_joined():
    """layout.combined joins the pieces' numpy columns (and one-text-a-piece columns as codes)
    before making Arrow arrays: the values must be those of each piece's batch, joined. The
    results mix experiments with and without sweep columns, screens (projections), an error
    without rows, a hand-made result with its own element names and per-row texts, and a
    sweep column some results lack (a fallback to joining arrays)."""
    import pyarrow as pa

    from gradrun import layout

    results = [r for stem in ("chain", "screen", "step-study", "methods")
               for r in run(ROOT / "experiments" / f"{stem}.yaml")]
    results.append(ExperimentResult.from_checks("broken", [], seconds=0.0, error="ValueError: no"))
    results.append(hand_made())
    schema = layout.schema(results)
    joined = pa.Table.from_batches(layout.combined(results, schema), schema=schema)
    pieces = pa.Table.from_batches(list(layout.report_batches(results, schema_=schema)), schema=schema)
    assert joined.num_rows == pieces.num_rows > 0
    for name in schema.names:  # NaN equal to NaN (Arrow's equals says not)
        same = [a == b or a != a and b != b for a, b in zip(joined[name].to_pylist(), pieces[name].to_pylist())]
        assert all(same), name
    assert csvformat.batch_bytes(joined.to_batches()[0]) == b"".join(
        csvformat.batch_bytes(b) for b in pieces.to_batches())

"""Reports read result columns: CSV, run record, JUnit and console summaries, from hand-made results."""

import json
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from gradrun import report
from gradrun.model import ExperimentResult, Settings, Spec
from rows import row


def rec(experiment="e", point=0, input="x", index=0, element="x", output=0, value=1.0,
        numeric=2.0, analytic=2.0, status=None, tolerance=1e-7, coords=None, **kw):
    abs_error = abs(numeric - analytic)
    status = status or ("pass" if abs_error <= tolerance else "fail")
    return row(
        experiment=experiment, point=point, input=input, index=index, element=element,
        output=output, value=value, numeric=numeric, analytic=analytic, abs_error=abs_error,
        rel_error=abs_error / max(abs(analytic), 1e-300), passed=status == "pass", status=status,
        tolerance=tolerance, method="central", step=1e-5, coords=coords or {}, **kw,
    )


def passing():
    return ExperimentResult.from_rows("square-at-2", [rec("square-at-2", numeric=4.000000000021, analytic=4.0)],
                            seconds=0.01, file="specs/chain.yaml", line=3)


def failing():
    records = [
        rec("my-layer", input="X", index=i * 8 + j, element=f"X[{i},{j}]", output=0,
            value=0.1 * i, numeric=2.0 + i * j, analytic=2.0 + (1.5 * i * j if (i, j) != (0, 0) else 0))
        for i in range(3) for j in range(8)
    ]
    return ExperimentResult.from_rows("my-layer", records, seconds=0.2, file="specs/chain.yaml", line=9)


def swept_with_kink():
    records = [
        rec("chain-3", point=p, value=x, numeric=n, analytic=a, status=s, coords={"x": x},
            numeric_minus=0.2 if s == "kink" else math.nan, numeric_plus=1.0 if s == "kink" else math.nan)
        for p, (x, n, a, s) in enumerate([(-1.0, 0.2, 0.2, "pass"), (0.0, 0.6, 1.0, "kink"),
                                          (0.5, 1.0, 1.0, "pass")])
    ]
    return ExperimentResult.from_rows("chain-3", records, seconds=0.05, file="specs/chain.yaml")


def crashed():
    return ExperimentResult.from_rows("broken", [], error="ZeroDivisionError: division by zero",
                            file="specs/other.yaml")


def test_csv_round_trips_through_pandas_exactly(tmp_path):
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(size=300), rng.normal(size=300) * 1e-9,
                             np.exp(rng.uniform(-700, 700, 300)), [5e-324, 1.7976931348623157e308,
                                                                   0.1, 1 / 3, -0.0]])
    records = [rec(index=i, value=float(v), numeric=float(v) * 3, analytic=float(np.nextafter(v, 1)))
               for i, v in enumerate(values)]
    path = tmp_path / "out" / "chain.csv"
    report.write_csv(path, [ExperimentResult.from_rows("e", records)])
    df = pd.read_csv(path)
    assert list(df.columns) == report.BASE_COLUMNS
    assert df["passed"].dtype == bool
    for column in ["value", "numeric", "analytic", "abs_error", "rel_error", "tolerance", "step"]:
        assert df[column].dtype == np.float64, column
        expected = np.array([r[column] for r in records])
        assert np.array_equal(df[column].to_numpy(), expected), column
    assert df["index"].dtype == np.int64


def test_csv_has_sweep_columns_as_a_union_empty_where_not_applicable(tmp_path):
    path = tmp_path / "chain.csv"
    step_sweep = ExperimentResult.from_rows("steps", [rec("steps", point=p, coords={"step": h, "method": m})
                                            for p, (h, m) in enumerate([(1e-3, "central"), (1e-6, "forward")])])
    report.write_csv(path, [swept_with_kink(), passing(), step_sweep])
    df = pd.read_csv(path)
    assert list(df.columns[-3:]) == ["sweep_x", "sweep_step", "sweep_method"]
    assert df["sweep_x"].tolist()[:3] == [-1.0, 0.0, 0.5]
    assert math.isnan(df["sweep_x"][3])
    assert df["sweep_step"].dropna().tolist() == [1e-3, 1e-6]
    assert df["sweep_method"].dropna().tolist() == ["central", "forward"]
    assert df["status"].tolist()[:3] == ["pass", "kink", "pass"]


def test_csv_quotes_element_names_with_commas(tmp_path):
    path = tmp_path / "m.csv"
    report.write_csv(path, [failing()])
    df = pd.read_csv(path)
    assert df["element"][9] == "X[1,1]"
    assert len(df) == 24


def test_csv_of_no_records_is_a_header(tmp_path):
    path = tmp_path / "empty.csv"
    report.write_csv(path, [crashed()])
    assert path.read_text() == ",".join(report.BASE_COLUMNS) + "\n"


def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path, monkeypatch):
    path = tmp_path / "chain.csv"
    path.write_text("old report\n")

    def explode(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(OSError):
        report.atomic_write(path, "new report\n")
    assert path.read_text() == "old report\n"
    assert os.listdir(tmp_path) == ["chain.csv"]  # no temporary file left behind


def test_a_record_that_cannot_be_written_leaves_nothing(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("boom")

    bad = rec(coords={"x": Unprintable()})
    with pytest.raises(RuntimeError):
        report.write_csv(tmp_path / "chain.csv", [ExperimentResult.from_rows("e", [rec(), bad])])
    assert os.listdir(tmp_path) == []


def test_atomic_write_makes_an_ordinary_file(tmp_path):
    path = tmp_path / "r.json"
    report.atomic_write(path, "{}\n")
    assert path.stat().st_mode & 0o777 == 0o666 & ~report._umask()


def test_summary_table_names_the_worst_element_and_verdict():
    text = report.summary_table([passing(), failing(), swept_with_kink(), crashed()])
    assert "specs/chain.yaml" in text and "specs/other.yaml" in text
    assert "PASS  square-at-2: 1 element checked" in text
    assert "worst x: numeric 4.00000000002 analytic 4" in text
    assert "FAIL  my-layer: 24 elements checked (full), 14 failed" in text
    assert "worst X[2,7]: numeric 16 analytic 23" in text
    assert "worst entries:" in text
    # a failure shows a few entries, never the whole Jacobian
    assert text.count("X[") == 1 + report.WORST_SHOWN
    assert "1 kink" in text and "chain-3" in text
    assert "PASS  chain-3" in text
    assert "ERROR broken" in text and "ZeroDivisionError" in text
    assert text.rstrip().splitlines()[-1].startswith("4 experiments: 2 passed, 1 failed, 1 error, 1 kink")
    assert "\x1b[" not in text


def test_summary_table_swept_points_say_where():
    text = report.summary_table([swept_with_kink()], verbosity=1)
    assert "worst x at point 0 (x=-1.0)" in text
    assert "kinks (not differentiable there" in text
    assert "x at point 1 (x=0.0): numeric 0.6 analytic 1" in text
    assert "kink (left 0.2, right 1)" in text


def test_summary_table_quiet_shows_only_what_did_not_pass():
    text = report.summary_table([passing(), failing()], verbosity=-1)
    assert "square-at-2" not in text and "my-layer" in text


def test_summary_table_colours_only_when_asked():
    assert "\x1b[" in report.summary_table([passing()], color=True)


def test_summary_json_is_strict_json():
    text = report.summary_json([passing(), failing(), crashed()])
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert doc["passed"] is False
    assert [e["verdict"] for e in doc["experiments"]] == ["PASS", "FAIL", "ERROR"]
    assert doc["experiments"][1]["worst"][0]["element"] == "X[2,7]"
    assert len(doc["experiments"][1]["worst"]) == report.WORST_SHOWN
    assert doc["experiments"][2]["worst_abs_error"] is None
    assert doc["totals"] == {"experiments": 3, "passed": 1, "failed": 1, "errors": 1,
                             "elements": 25, "kinks": 0, "seconds": pytest.approx(0.21)}


def test_junit_one_suite_per_file_one_case_per_experiment(tmp_path):
    twin = ExperimentResult.from_rows("square-at-2", [rec()], file="specs/chain.yaml")
    path = tmp_path / "junit.xml"
    report.write_junit(path, [passing(), failing(), twin, crashed()])
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["chain", "other"]
    names = [c.get("name") for c in suites[0].findall("testcase")]
    assert names == ["square-at-2", "my-layer", "square-at-2 #2"]
    failure = suites[0].findall("testcase")[1].find("failure")
    assert "X[2,7]: numeric 16 analytic 23" in failure.get("message")
    assert failure.text.count("\n") == report.WORST_SHOWN - 1
    error = suites[1].find("testcase").find("error")
    assert error.get("message") == "ZeroDivisionError: division by zero"


def test_run_record(tmp_path):
    spec_file = tmp_path / "chain.yaml"
    spec_file.write_text("version: 1\n")
    exp = type("E", (), {"name": "square-at-2", "settings": Settings(seed=42)})()
    spec = Spec(path=str(spec_file), experiments=[exp])
    path = tmp_path / "chain.run.json"
    report.write_run_record(path, spec, [passing()], command=["gradrun", "chain.yaml"],
                            overrides={"method": "central"})
    doc = json.loads(path.read_text())
    assert doc["spec_sha256"] == report.file_sha256(spec_file)
    assert doc["numpy"] == np.__version__ and doc["gradrun"]
    assert doc["command"] == ["gradrun", "chain.yaml"]
    assert doc["overrides"] == {"method": "central"}
    assert doc["experiments"][0]["seed"] == 42
    assert doc["experiments"][0]["seconds"] == 0.01


def test_screen_projections_are_counted_apart_and_have_no_output_index():
    projections = [rec("big", index=-1, element=f"u{k}.J.v{k}", output=-1, value=math.nan) for k in range(4)]
    located = [rec("big", index=3, element="X[0,3]", output=2, numeric=1.0, analytic=1.5)]
    text = report.summary_table([ExperimentResult.from_rows("big", projections + located, check="screen")])
    assert "FAIL  big: 4 projections, 1 element checked (screen), 1 failed" in text
    assert "worst X[0,3] (output 2)" in text and "(output -1)" not in text


def test_csv_writes_non_finite_numbers_pandas_reads_as_floats(tmp_path):
    path = tmp_path / "x.csv"
    records = [rec(numeric=math.inf, analytic=1.0, status="fail"), rec(value=math.nan),
               rec(value=-math.inf)]
    report.write_csv(path, [ExperimentResult.from_rows("e", records)])
    df = pd.read_csv(path)
    assert df["numeric"][0] == math.inf and math.isnan(df["value"][1]) and df["value"][2] == -math.inf
    assert df["numeric_minus"].dtype == np.float64

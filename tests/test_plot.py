"""Pictures drawn from report CSVs: one file per expected kind, non-trivial PNGs, and a clear
message (exit 2) when matplotlib is missing.

Each report is made once per module by running a real spec file through the CLI,
then drawn from its CSV alone, as ``gradrun plot`` does.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradrun import cli, numeric, plot, plot_errors, plot_steps

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ROOT / "experiments" / "chain.yaml"
STEP_STUDY = ROOT / "experiments" / "step-study.yaml"
FAILING = Path(__file__).parent / "cli_specs" / "failing.yaml"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_BYTES = 10_000  # an empty canvas of these sizes is a few kB; a drawn one is tens

# what each example report must produce: experiment -> kinds of picture
CHAIN_SWEPT = ["square-book-deriv", "square-curve", "sigmoid-curve", "leaky-relu-curve",
               "chain-square-sigmoid", "chain-sigmoid-square", "chain-leaky-square-sigmoid",
               "chain-leaky-sigmoid-square"]
CHAIN_SINGLE = ["square-at-2", "sigmoid-of-sum", "sigmoid-of-product", "matrix-loss"]
EXPECTED = {
    "chain": {**{e: {"curve", "error"} for e in CHAIN_SWEPT}, **{e: {"error"} for e in CHAIN_SINGLE}},
    "step-study": {e: {"step", "error"} for e in ("sigmoid-step-study", "exp-step-study")},
    "failing": {e: {"error"} for e in ("before", "wrong-vjp", "after")},
}


def run_spec(spec, out, *extra):
    result = CliRunner().invoke(cli.cli, [str(spec), "-o", str(out), "-q", *extra])
    return result


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """stem -> the paths plot_report wrote for that example's report."""
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("plots")
    written = {}
    for spec in (CHAIN, STEP_STUDY, FAILING):
        result = run_spec(spec, out)
        assert result.exit_code == (1 if spec == FAILING else 0), result.output
        csv = out / f"{spec.stem}.csv"
        written[spec.stem] = plot.plot_report(plot.read_report(csv), out / f"{spec.stem}-plots")
    return written


def assert_picture(path):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > MIN_BYTES, (path, len(data))
    height, width = imread(path).shape[:2]
    assert width >= 500 and height >= 400, (path, width, height)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_one_picture_per_expected_kind(drawn, stem):
    got = {}
    for path in drawn[stem]:
        experiment, kind = path.stem.rsplit("-", 1)
        got.setdefault(experiment, set()).add(kind)
    assert got == EXPECTED[stem]
    for path in drawn[stem]:
        assert_picture(path)


def test_only_the_paths_returned_are_written(drawn):
    for stem, paths in drawn.items():
        folder = paths[0].parent
        assert sorted(folder.iterdir()) == sorted(paths)


def test_step_study_marks_the_auto_step_from_the_library():
    """The auto steps drawn are gradrun.numeric's, per method, at the input's value."""
    import pandas as pd

    rows = pd.DataFrame({"method": ["central"] * 2, "value": [1.0, 1.0], "dtype": ["float64"] * 2})
    assert plot_steps._auto_steps("central", rows) == [numeric.EPS["float64"] ** (1 / 3)]
    assert plot_steps._auto_steps("auto", rows) == []


def test_kinds_are_recognised_from_the_columns():
    import pandas as pd

    rows = pd.DataFrame({"experiment": "e", "point": [0, 1], "input": "x", "element": "x", "output": 0,
                         "check": "full", "sweep_x": [0.0, 1.0], "sweep_step": [None, None]})
    assert plot.swept_input(rows) == "x"
    assert plot.swept_input(rows.assign(sweep_step=[1e-3, 1e-4])) is None  # a grid with step: no curve
    assert plot.element_shape(pd.DataFrame({"element": ["X[0,0]", "X[2,1]"]})) == (3, 2)
    assert plot.element_shape(pd.DataFrame({"element": ["x"]})) == ()


# --- the command ----------------------------------------------------------------


def test_plot_command_writes_beside_the_csv_by_default(tmp_path):
    pytest.importorskip("matplotlib")
    assert run_spec(STEP_STUDY, tmp_path).exit_code == 0
    result = CliRunner().invoke(cli.cli, ["plot", str(tmp_path / "step-study.csv")])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "step-study-plots"
    listed = sorted(Path(line) for line in result.stdout.splitlines())
    assert listed == sorted(folder.iterdir()) and len(listed) == 4


def test_run_with_plot_flag(tmp_path):
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(cli.cli, [str(STEP_STUDY), "-o", str(tmp_path), "--plot", "--only", "exp-*"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "step-study-plots").iterdir()) == [
        "exp-step-study-error.png", "exp-step-study-step.png"]
    assert "wrote 2 pictures into" in result.stderr


def test_not_a_report_exits_2(tmp_path):
    pytest.importorskip("matplotlib")
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(cli.cli, ["plot", str(bad)])
    assert result.exit_code == 2
    assert "is not a gradrun report" in result.stderr


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make every import of matplotlib (and its already-loaded submodules) fail."""
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_missing_matplotlib_is_a_clear_message(no_matplotlib, tmp_path):
    csv = tmp_path / "chain.csv"
    csv.write_text("experiment\n")
    for args in (["plot", str(csv)], [str(CHAIN), "-o", str(tmp_path), "--plot"]):
        result = CliRunner().invoke(cli.cli, args)
        assert result.exit_code == 2, result.output
        assert "matplotlib is not installed: pip install 'gradrun[plot]'" in result.stderr
        assert "Traceback" not in result.output
    assert not (tmp_path / "chain.run.json").exists()  # --plot fails before anything runs
    with pytest.raises(plot.PlotUnavailable):
        plot.plot_report(None, tmp_path)


def test_gradrun_imports_no_matplotlib():
    code = "import sys, gradrun.cli, gradrun.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def large_report(rows_, cols_, rng):
    """A report of one matrix input with infinite and NaN errors among passing elements, and projections."""
    import numpy as np
    import pandas as pd

    n = rows_ * cols_
    index = np.arange(n)
    numeric = rng.normal(size=n)
    analytic = numeric + rng.normal(size=n) * 1e-12
    status = np.full(n, "pass", dtype=object)
    numeric[7], status[7] = np.inf, "fail"
    numeric[n // 2], status[n // 2] = np.nan, "nan"
    elements = pd.DataFrame({
        "experiment": "big", "point": 0, "input": "X", "index": index,
        "element": [f"X[{i},{j}]" for i, j in zip(*np.unravel_index(index, (rows_, cols_)))],
        "output": 0, "value": rng.normal(size=n), "numeric": numeric, "analytic": analytic,
        "abs_error": np.abs(analytic - numeric), "rel_error": 0.0, "passed": status == "pass",
        "status": status, "tolerance": 1e-9, "method": "central", "step": 1e-6, "output_value": 1.0,
        "dtype": "float64", "check": "screen"})
    projections = elements.iloc[:4].assign(index=-1, output=-1, element=[f"u{k}.J.v{k}" for k in range(4)])
    return pd.concat([projections, elements], ignore_index=True)


def test_a_large_report_with_infinite_and_nan_errors_is_drawn_with_them_marked(tmp_path):
    import numpy as np

    pytest.importorskip("matplotlib")
    df = large_report(150, 200, np.random.default_rng(0))
    df.to_parquet(tmp_path / "big.parquet")
    written = plot.plot_report(plot.read_report(tmp_path / "big.parquet"), tmp_path / "plots")
    assert [p.name for p in written] == ["big-error.png"]
    assert_picture(written[0])
    index, ratio, error, status = plot_errors._worst_per_element(df[df["index"] >= 0])
    assert ratio[index == 7] == np.inf and ratio[index == 15000] == np.inf  # drawn as the worst
    assert set(status[np.isin(index, [7, 15000])]) == {"fail", "nan"}

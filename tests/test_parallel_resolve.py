"""-j's workers resolve, check and format; the main process only parses: same reports, same problems.

The reference is always a serial run of the same files (one BLAS thread, as
the workers have; see test_parallel.py).
"""

import textwrap
from pathlib import Path

import pytest

from test_parallel import ONE_THREAD, ROOT, assert_same_reports, gradrun

from gradrun import parallel, report, runner, spec as spec_module, window
from gradrun.model import SpecError

MANY = 30  # experiments in a generated spec: several chunks per worker


def many_spec(folder: Path, bad_at=None, name="many") -> Path:
    lines = ["version: 1", "experiments:"]
    for i in range(MANY):
        function = "sigmod" if i == bad_at else ("tanh", "sigmoid", "softplus")[i % 3]
        lines += [f"  - name: e{i:02d}", f"    function: {function}", f"    inputs: {{x: {{shape: [3], init: normal, seed: {i}}}}}"]
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.yaml"


def test_with_jobs_the_main_process_parses_and_the_workers_resolve(tmp_path):
    path = many_spec(tmp_path)
    parsed = window.parse(path)
    assert isinstance(parsed, window.Parsed) and [e.name for e in parsed.experiments] == [f"e{i:02d}" for i in range(MANY)]
    whole = spec_module.load_spec(path)
    assert parsed.sha256 == whole.sha256 and [e.line for e in parsed.experiments] == [e.line for e in whole.experiments]
    [(_, results)] = parallel.run([(0, parsed, list(range(MANY)))], jobs=2)
    serial = runner.run_spec(whole)
    assert [list(map(repr, r.records)) for r in results] == [list(map(repr, r.records)) for r in serial]
    assert report.csv_text(results) == report.csv_text(serial)
    assert all(r.csv is not None for r in results)  # formatted in the workers
    assert [e.settings for e in parsed.experiments] == [e.settings for e in whole.experiments]  # the run record's seeds


def test_a_window_resolves_its_experiments_as_the_whole_file_does(tmp_path):
    path = many_spec(tmp_path, bad_at=7)
    parsed = window.parse(path)
    with pytest.raises(SpecError) as whole:
        spec_module.load_spec(path)
    experiments, issues = window.resolve(parsed, [6, 7, 8])
    assert issues == whole.value.issues and "unknown function 'sigmod'" in issues[0].message
    experiments, issues = window.resolve(parsed, [8, 9])
    assert not issues and [e.name for e in experiments] == ["e08", "e09"]
    assert [e.line for e in experiments] == [parsed.experiments[8].line, parsed.experiments[9].line]


def test_a_file_that_is_not_a_plain_list_is_loaded_whole(tmp_path):
    path = many_spec(tmp_path)
    text = path.read_text().replace("  - name: e03\n", "  - name: e02\n")  # a name used twice
    path.write_text(text)
    with pytest.raises(SpecError, match="duplicate experiment name 'e02'"):
        window.parse(path)
    chain = window.parse(ROOT / "experiments" / "chain.yaml")
    assert isinstance(chain, window.Parsed)


def test_a_problem_a_worker_finds_stops_the_run_as_a_serial_run_would(tmp_path):
    good, bad = many_spec(tmp_path, name="good"), many_spec(tmp_path, bad_at=MANY - 2, name="bad")
    serial = gradrun(good, bad, "--out", tmp_path / "serial")
    done = gradrun(good, bad, "--out", tmp_path / "jobs", "-j", "2")
    assert serial.returncode == done.returncode == 2
    assert done.stderr == serial.stderr and "unknown function 'sigmod'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "jobs").exists()  # not even the good spec's report


RAISES = '''
import numpy as np

calls = []


def f(x):
    calls.append(x)
    if len(calls) > 1:  # the first call infers its shape; checking it fails
        raise ValueError("no point of this one can be checked")
    return np.tanh(x)


def f_vjp(g, x):
    return g
'''


def test_a_sweep_column_no_row_has_is_formatted_as_the_serial_report(tmp_path):
    """The workers format rows expecting every swept name's column; an experiment that
    raises at its first point reports none, and the report's columns are the serial run's."""
    (tmp_path / "raises.py").write_text(RAISES)
    (tmp_path / "cols.yaml").write_text(textwrap.dedent("""\
        version: 1
        functions:
          f: {python: "raises:f", vjp: "raises:f_vjp"}
        experiments:
          - name: fails-first
            function: f
            sweep: {x: [1.0, 2.0]}
          - name: plain
            function: tanh
            inputs: {x: 0.5}
          - name: methods
            function: tanh
            inputs: {x: 0.25}
            sweep: {method: [central, forward]}
        """))
    for how in ([], ["-j", "2"]):
        done = gradrun(tmp_path / "cols.yaml", "--out", tmp_path / ("jobs" if how else "serial"), *how)
        assert done.returncode == 1, done.stderr
    assert_same_reports(tmp_path / "serial", tmp_path / "jobs", ["cols"])
    header = (tmp_path / "jobs" / "cols.csv").read_text().splitlines()[0]
    assert header.endswith(",sweep_method") and "sweep_x" not in header


def test_a_large_sweep_is_sliced_across_workers(tmp_path):
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""\
        version: 1
        experiments:
          - name: small
            function: sigmoid
            sweep: {x: [-1.0, 0.0, 1.0]}
          - name: large
            expr: "sum(tanh(a * (X @ W)))"
            inputs:
              X: {shape: [8, 8], init: normal, seed: 1}
              W: {shape: [8, 4], init: normal, seed: 2}
            sweep: {a: {linspace: [-1, 1, 60]}}
            check: full
        """))
    whole = spec_module.load_spec(tmp_path / "sweep.yaml")
    assert [parallel.large(e) for e in whole.experiments] == [False, True]
    parsed = window.parse(tmp_path / "sweep.yaml")
    heard = []
    [(_, results)] = parallel.run([(0, parsed, [0, 1])], jobs=2, progress=lambda *a: heard.append(a))
    first = len(parallel.chunks([(0, parsed, [0, 1])], 2))
    assert heard[-1][2] == first + len(parallel.slices(0, 1, "large", 60, 2))  # the slices ran as units
    serial = runner.run_spec(whole)
    assert report.csv_text(results) == report.csv_text(serial)
    assert results[1].csv is not None and len(results[1].elements) == 60 * 97  # X, W and a


def test_jobs_2_on_a_generated_spec_writes_the_serial_bytes(tmp_path):
    path = many_spec(tmp_path)
    assert gradrun(path, "--out", tmp_path / "serial", env=ONE_THREAD).returncode == 0
    done = gradrun(path, "--out", tmp_path / "jobs", "-j", "2", "--report-format", "csv")
    assert done.returncode == 0, done.stderr
    assert_same_reports(tmp_path / "serial", tmp_path / "jobs", ["many"])


@pytest.mark.parametrize("only", ["e0*", "e2[0-5]"])
def test_experiments_only_leaves_out_are_still_validated(tmp_path, only):
    """e27 is wrong: whether --only picks it or not, a serial run refuses the file, and so does -j."""
    good, bad = many_spec(tmp_path, name="good"), many_spec(tmp_path, bad_at=27, name="bad")
    other = tmp_path / "other"
    other.mkdir()
    lone = many_spec(other, bad_at=3, name="lone")  # --only picks nothing of it
    for specs in ([good, bad], [good, lone]):
        serial = gradrun(*specs, "--out", tmp_path / "serial", "--only", only)
        done = gradrun(*specs, "--out", tmp_path / "jobs", "--only", only, "-j", "2")
        assert serial.returncode == done.returncode == 2
        assert done.stderr == serial.stderr and "unknown function 'sigmod'" in done.stderr
        assert not (tmp_path / "jobs").exists()


def test_jobs_2_writes_the_serial_parquet_bytes(tmp_path):
    specs = [ROOT / "experiments" / "chain.yaml", ROOT / "experiments" / "my-layer.yaml"]
    for how in ([], ["-j", "2"]):
        done = gradrun(*specs, "--out", tmp_path / ("jobs" if how else "serial"), "--report-format", "parquet", *how)
        assert done.returncode == 0, done.stderr
    for stem in ("chain", "my-layer"):
        assert (tmp_path / "jobs" / f"{stem}.parquet").read_bytes() == (tmp_path / "serial" / f"{stem}.parquet").read_bytes()

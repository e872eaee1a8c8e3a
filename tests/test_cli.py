"""The gradrun command: routing, options, exit codes and reports.

The first half drives the CLI over a stand-in spec loader and runner (each
fake spec file lists ``name: pass|fail|kink|error`` lines), so the command
layer is tested on its own. The second half runs real spec files from
``tests/cli_specs`` end to end, in-process and as ``python -m gradrun``.
"""

import json
import os
import signal
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import gradrun
from gradrun import cli
from gradrun.model import ExperimentResult, Issue, Settings, Spec, SpecError
from rows import row

SPECS = Path(__file__).parent / "cli_specs"


# --- a stand-in loader and runner ----------------------------------------------


def fake_record(name, status, index=0):
    numeric, analytic = {"pass": (2.0, 2.0), "fail": (3.0, 2.0), "kink": (0.6, 1.0)}[status]
    return row(name, 0, "x", index, "x", 0, 1.0, numeric, analytic, abs(numeric - analytic),
                  abs(numeric - analytic) / 2.0, status == "pass", status, 1e-7, "central", 1e-5)


class Fakes:
    def __init__(self):
        self.runs = []  # (spec path, overrides, only)

    def load_spec(self, path, device=None, policy=None):
        text = Path(path).read_text()
        if "INVALID" in text:
            raise SpecError([Issue(str(path), 2, 15, "experiments[0].function",
                                   "unknown function 'sigmod'", "did you mean 'sigmoid'?")])
        experiments = [types.SimpleNamespace(name=line.split(":")[0].strip(), settings=Settings(seed=3),
                                             status=line.split(":")[1].strip())
                       for line in text.splitlines() if line.strip()]
        return Spec(str(path), experiments, sha256="f" * 64)

    def validate(self, path, policy=None):
        try:
            self.load_spec(path)
        except SpecError as error:
            return error.issues
        return []

    def run_spec(self, spec, overrides=None, only=None, progress=None):
        self.runs.append((spec.path, overrides, only))
        results = []
        chosen = [e for e in spec.experiments if only is None or e.name.startswith(only.rstrip("*"))]
        for done, e in enumerate(chosen, 1):
            if progress:
                progress(e.name, done, len(chosen))
            if e.status == "error":
                results.append(ExperimentResult(e.name, [], error="ZeroDivisionError: division by zero"))
            elif e.status == "explode":
                raise RuntimeError("the runner itself broke")
            else:
                records = [fake_record(e.name, "pass", 0), fake_record(e.name, e.status, 1)]
                results.append(ExperimentResult.from_rows(e.name, records, seconds=0.5))
        return results


@pytest.fixture
def fakes(monkeypatch):
    f = Fakes()
    spec_module = types.ModuleType("gradrun.spec")
    spec_module.load_spec, spec_module.validate = f.load_spec, f.validate
    spec_module.load_schema = lambda: {"$schema": "http://json-schema.org/draft-07/schema#"}
    runner_module = types.ModuleType("gradrun.runner")
    runner_module.run_spec = f.run_spec
    for name, module in [("spec", spec_module), ("runner", runner_module)]:
        monkeypatch.setitem(sys.modules, f"gradrun.{name}", module)
        monkeypatch.setattr(gradrun, name, module, raising=False)
    return f


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.yaml").write_text("square: pass\nrelu-at-0: kink\n")
    (tmp_path / "bad.yaml").write_text("square: pass\nmy-layer: fail\ncrash: error\nlast: pass\n")
    (tmp_path / "invalid.yaml").write_text("INVALID\n")
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(cli.cli, list(args), prog_name="gradrun")


# --- routing and exit codes ---------------------------------------------------------


def test_a_spec_path_runs_without_a_subcommand(fakes, work):
    plain, explicit = invoke("good.yaml"), invoke("run", "good.yaml")
    assert plain.exit_code == explicit.exit_code == 0, plain.output
    assert plain.stdout == explicit.stdout
    assert "PASS  square" in plain.stdout
    assert (work / "results" / "good.csv").exists() and (work / "results" / "good.run.json").exists()


def test_options_may_come_before_the_spec(fakes, work):
    result = invoke("--out", "elsewhere", "good.yaml")
    assert result.exit_code == 0, result.output
    assert (work / "elsewhere" / "good.csv").exists()


def test_kinks_pass_and_are_shown_as_kinks(fakes, work):
    result = invoke("good.yaml")
    assert result.exit_code == 0
    assert "1 kink" in result.stdout and "FAIL" not in result.stdout


def test_a_failing_check_exits_1_and_the_others_still_run(fakes, work):
    result = invoke("bad.yaml")
    assert result.exit_code == 1
    out = result.stdout
    assert "FAIL  my-layer" in out and "ERROR crash" in out and "ZeroDivisionError" in out
    assert "PASS  last" in out  # the experiment after the crash ran
    df = pd.read_csv(work / "results" / "bad.csv")
    assert sorted(set(df["experiment"])) == ["last", "my-layer", "square"]


def test_an_invalid_spec_exits_2_with_every_issue_and_runs_nothing(fakes, work):
    (work / "invalid2.yaml").write_text("INVALID\n")
    result = invoke("good.yaml", "invalid.yaml", "invalid2.yaml")
    assert result.exit_code == 2
    assert "invalid.yaml:2:15: experiments[0].function: unknown function 'sigmod' " \
           "(did you mean 'sigmoid'?)" in result.stderr
    assert "invalid2.yaml:2:15" in result.stderr
    assert "2 problems in 2 spec files" in result.stderr
    assert fakes.runs == []
    assert not (work / "results").exists()
    assert "Traceback" not in result.output


def test_an_invalid_spec_leaves_an_earlier_report_untouched(fakes, work):
    assert invoke("good.yaml").exit_code == 0
    before = {p.name: p.read_bytes() for p in (work / "results").iterdir()}
    (work / "good.yaml").write_text("INVALID\n")
    assert invoke("good.yaml").exit_code == 2
    assert {p.name: p.read_bytes() for p in (work / "results").iterdir()} == before


def test_usage_errors_exit_2(fakes, work):
    assert invoke("missing.yaml").exit_code == 2
    assert invoke("good.yaml", "--method", "fivepoint").exit_code == 2
    assert invoke("good.yaml", "--step", "-1e-3").exit_code == 2
    assert invoke("good.yaml", "--step", "tiny").exit_code == 2
    assert invoke("good.yaml", "--rtol", "-1").exit_code == 2
    assert invoke("good.yaml", "--format", "xml").exit_code == 2
    assert invoke("validate").exit_code == 2
    assert fakes.runs == []


def test_two_specs_with_one_stem_are_refused(fakes, work):
    (work / "sub").mkdir()
    (work / "sub" / "good.yaml").write_text("square: pass\n")
    result = invoke("good.yaml", "sub/good.yaml")
    assert result.exit_code == 2 and "would both write good.csv" in result.stderr


def test_only_selects_and_a_pattern_matching_nothing_is_a_usage_error(fakes, work):
    result = invoke("good.yaml", "bad.yaml", "--only", "my-*")
    assert result.exit_code == 1
    assert fakes.runs == [("bad.yaml", None, "my-*")]  # good.yaml has no match: not run, not written
    assert not (work / "results" / "good.csv").exists()
    result = invoke("good.yaml", "--only", "nothing-*")
    assert result.exit_code == 2 and "matches no experiment" in result.stderr


def test_overrides_reach_the_runner(fakes, work):
    args = ["--method", "central4", "--step", "1e-4", "--rtol", "1e-6", "--atol", "0",
            "--dtype", "float32", "--check", "screen"]
    assert invoke("good.yaml", *args).exit_code == 0
    assert fakes.runs[-1][1] == {"method": "central4", "step": 1e-4, "rtol": 1e-6, "atol": 0.0,
                                 "dtype": "float32", "check": "screen"}
    assert invoke("good.yaml", "--step", "auto").exit_code == 0
    assert fakes.runs[-1][1] == {"step": "auto"}
    record = json.loads((work / "results" / "good.run.json").read_text())
    assert record["overrides"] == {"step": "auto"}


def test_a_crash_of_the_runner_itself_is_a_failure_and_writes_no_report(fakes, work):
    (work / "boom.yaml").write_text("a: explode\n")
    result = invoke("boom.yaml", "good.yaml")
    assert result.exit_code == 1
    assert "RuntimeError: the runner itself broke" in result.stdout
    assert not (work / "results" / "boom.csv").exists()
    assert (work / "results" / "good.csv").exists()


def test_json_summary(fakes, work):
    result = invoke("bad.yaml", "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [e["verdict"] for e in doc["experiments"]] == ["PASS", "FAIL", "ERROR", "PASS"]
    assert doc["experiments"][0]["file"] == "bad.yaml"


def test_quiet_and_verbose(fakes, work):
    quiet = invoke("bad.yaml", "-q")
    assert "PASS" not in quiet.stdout and "FAIL  my-layer" in quiet.stdout
    assert quiet.stderr == ""
    verbose = invoke("good.yaml", "-v")
    assert "kinks (not differentiable there" in verbose.stdout


def test_no_progress_or_colour_when_not_a_terminal(fakes, work):
    result = invoke("bad.yaml")
    assert "\x1b" not in result.output and "\r" not in result.output


def test_colour_only_on_a_terminal_without_no_color():
    tty = types.SimpleNamespace(isatty=lambda: True)
    pipe = types.SimpleNamespace(isatty=lambda: False)
    assert cli.wants_color(tty, {})
    assert not cli.wants_color(tty, {"NO_COLOR": "1"})
    assert not cli.wants_color(pipe, {})


def test_junit(fakes, work):
    result = invoke("good.yaml", "bad.yaml", "--junit", "out/junit.xml")
    assert result.exit_code == 1
    root = ET.parse(work / "out" / "junit.xml").getroot()
    assert [s.get("name") for s in root.findall("testsuite")] == ["good", "bad"]
    bad = root.findall("testsuite")[1]
    assert (bad.get("tests"), bad.get("failures"), bad.get("errors")) == ("4", "1", "1")
    failure = bad.find("testcase[@name='my-layer']/failure")
    assert "numeric 3 analytic 2" in failure.get("message")


def test_run_record(fakes, work):
    invoke("bad.yaml", "--only", "*")
    record = json.loads((work / "results" / "bad.run.json").read_text())
    assert record["spec_sha256"] == "f" * 64
    assert record["only"] == "*"
    assert [e["seed"] for e in record["experiments"]] == [3, 3, 3, 3]
    assert record["experiments"][2]["error"].startswith("ZeroDivisionError")
    assert record["passed"] is False


def test_validate(fakes, work):
    ok = invoke("validate", "good.yaml", "bad.yaml")
    assert ok.exit_code == 0 and ok.stdout == "good.yaml: ok\nbad.yaml: ok\n"
    bad = invoke("validate", "good.yaml", "invalid.yaml")
    assert bad.exit_code == 2 and "invalid.yaml:2:15:" in bad.stderr
    assert fakes.runs == []


def test_functions_lists_every_builtin_with_its_derivative():
    result = invoke("functions")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["call", "formula", "derivative"]
    assert [line.split("(")[0] for line in lines[1:]] == gradrun.primitives.names()
    sigmoid = next(line for line in lines if line.startswith("sigmoid("))
    assert "sigmoid(x)*(1 - sigmoid(x))" in sigmoid
    assert any(line.startswith("sum(x, axis=None, keepdims=False) ") for line in lines)
    data = json.loads(invoke("functions", "--format", "json").stdout)
    assert {d["name"] for d in data} == set(gradrun.primitives.names())
    softmax = next(d for d in data if d["name"] == "softmax")
    assert softmax["keywords"] == [{"name": "axis", "takes": "an integer", "default": -1,
                                    "required": False, "positional": False}]


def test_the_docs_page_of_builtins_is_generated_from_the_table():
    page = (Path(__file__).resolve().parents[1] / "docs" / "builtins.md").read_text(encoding="utf-8")
    assert page == invoke("functions", "--format", "markdown").stdout, \
        "regenerate it: gradrun functions --format markdown > docs/builtins.md"
    for name in gradrun.primitives.PRIMITIVES:
        prim = gradrun.primitives.get(name)
        assert prim.formula.replace("|", "\\|") in page, name


def test_schema_prints_json(fakes):
    result = invoke("schema")
    assert result.exit_code == 0 and "draft-07" in json.loads(result.stdout)["$schema"]


def test_help_everywhere():
    for args in ([], ["--help"], ["run", "--help"], ["validate", "-h"], ["functions", "--help"]):
        result = invoke(*args)
        assert "Usage: gradrun" in result.output
    assert invoke("--version").stdout.strip().endswith(gradrun.__version__)


# --- end to end, over the real loader and runner -------------------------------------


def gradrun_process(*args, cwd, env=None, **kw):
    """``python -m gradrun ARGS`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "gradrun", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=60, **kw)


def test_python_m_gradrun_runs_a_passing_spec(tmp_path):
    proc = gradrun_process(SPECS / "passing.yaml", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS  relu-at-0" in proc.stdout and "kink" in proc.stdout and "FAIL" not in proc.stdout
    assert "\x1b" not in proc.stdout + proc.stderr and "\r" not in proc.stderr
    record = json.loads((tmp_path / "out" / "passing.run.json").read_text())
    assert record["command"][:3] == ["python", "-m", "gradrun"]
    assert [e["name"] for e in record["experiments"]] == ["square-at-2", "chain-3", "matrix-loss",
                                                          "relu-at-0"]


def test_the_csv_holds_exactly_what_the_runner_computed(tmp_path):
    from gradrun import runner, spec

    assert invoke_real(tmp_path, SPECS / "passing.yaml").exit_code == 0
    df = pd.read_csv(tmp_path / "results" / "passing.csv")
    records = [r for res in runner.run_spec(spec.load_spec(SPECS / "passing.yaml")) for r in res.records]
    assert len(df) == len(records) and df["passed"].dtype == bool
    for column in ["value", "numeric", "analytic", "abs_error", "rel_error", "tolerance", "step"]:
        expected = [float(getattr(r, column)) for r in records]
        assert df[column].tolist() == expected, column  # bit for bit, not approximately
    chain = df[df["experiment"] == "chain-3"]
    assert chain["sweep_x"].tolist() == [-3.0, -1.0, 0.0, 0.5, 2.0]
    # leaky_relu's kink at 0 is squared away: differentiable there, so a pass
    assert chain["status"].tolist() == ["pass"] * 5
    assert df[df["experiment"] == "relu-at-0"]["status"].tolist() == ["kink"]
    assert df[df["experiment"] == "square-at-2"]["sweep_x"].isna().all()


def invoke_real(tmp_path, *args):
    return CliRunner().invoke(cli.cli, [*map(str, args), "--out", str(tmp_path / "results")],
                              prog_name="gradrun")


def test_a_wrong_vjp_fails_with_exit_1_and_the_rest_still_runs(tmp_path):
    proc = gradrun_process(SPECS / "failing.yaml", SPECS / "passing.yaml", "--junit", "junit.xml",
                           cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "FAIL  wrong-vjp" in proc.stdout and "PASS  after" in proc.stdout
    assert "worst entries:" in proc.stdout and proc.stdout.count("(output ") <= 6  # not all 144
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert [s.get("name") for s in root.findall("testsuite")] == ["failing", "passing"]
    case = root.find("testsuite[@name='failing']/testcase[@name='wrong-vjp']")
    assert "numeric" in case.find("failure").get("message")
    assert root.get("tests") == "7" and root.get("failures") == "1"
    df = pd.read_csv(tmp_path / "results" / "failing.csv")
    wrong = df[df["experiment"] == "wrong-vjp"]
    assert (~wrong["passed"]).sum() == 12  # the diagonal of a 12-element elementwise Jacobian


def test_an_invalid_spec_writes_nothing_and_keeps_the_last_good_report(tmp_path):
    results = tmp_path / "results"
    assert gradrun_process(SPECS / "passing.yaml", cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    bad = tmp_path / "passing.yaml"  # same stem as the good report
    bad.write_text((SPECS / "invalid.yaml").read_text())
    proc = gradrun_process(bad, SPECS / "failing.yaml", "--junit", "junit.xml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "passing.yaml:4:15: experiments[0].function: unknown function 'sigmod'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before
    assert not (tmp_path / "junit.xml").exists()


def test_validate_functions_and_schema_as_processes(tmp_path):
    ok = gradrun_process("validate", SPECS / "passing.yaml", SPECS / "failing.yaml", cwd=tmp_path)
    assert ok.returncode == 0
    bad = gradrun_process("validate", SPECS / "invalid.yaml", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("invalid.yaml:") == 2
    functions = gradrun_process("functions", cwd=tmp_path)
    assert functions.returncode == 0 and functions.stdout == invoke("functions").stdout
    schema = gradrun_process("schema", cwd=tmp_path)
    assert json.loads(schema.stdout)["$schema"].startswith("http://json-schema.org/draft-07")
    assert list(tmp_path.iterdir()) == []


def test_a_run_killed_midway_leaves_no_partial_report(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "slow.csv").write_text("the last good report\n")
    started = tmp_path / "started"
    env = dict(os.environ, GRADRUN_TEST_STARTED=str(started))
    command = [sys.executable, "-m", "gradrun", str(SPECS / "passing.yaml"), str(SPECS / "slow.yaml")]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the slow function never ran"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # the file that finished has its whole report; the one killed midway keeps its last one
    assert sorted(p.name for p in results.iterdir()) == ["passing.csv", "passing.run.json", "slow.csv"]
    assert len(pd.read_csv(results / "passing.csv")) == 22
    assert (results / "slow.csv").read_text() == "the last good report\n"


def test_every_swept_coordinate_is_a_column(tmp_path):
    assert invoke_real(tmp_path, SPECS / "steps.yaml").exit_code == 0
    df = pd.read_csv(tmp_path / "results" / "steps.csv")
    curve, grid = df[df["experiment"] == "step-curve"], df[df["experiment"] == "grid"]
    assert (curve["sweep_step"] == curve["step"]).all() and (curve["sweep_method"] == curve["method"]).all()
    assert sorted(set(curve["sweep_method"])) == ["central", "forward"]
    assert grid[["sweep_x", "sweep_y"]].drop_duplicates().values.tolist() == [[1, 3], [1, 4], [2, 3], [2, 4]]
    assert grid["sweep_step"].isna().all() and curve["sweep_x"].isna().all()


def test_the_console_script(tmp_path):
    script = Path(sys.executable).with_name("gradrun")
    if not script.exists():
        pytest.skip("gradrun is not installed as a console script here")
    proc = subprocess.run([str(script), "validate", str(SPECS / "passing.yaml")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.endswith("passing.yaml: ok\n")


def test_a_report_that_cannot_be_written_exits_2_without_a_traceback(fakes, work):
    (work / "results").write_text("a file where the folder should be\n")
    result = invoke("good.yaml", "--out", "results/sub")
    assert result.exit_code == 2 and "cannot write results/sub/good.csv" in result.stderr
    assert "Traceback" not in result.output


def test_ctrl_c_exits_130_and_writes_nothing(fakes, work, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fakes, "run_spec", interrupted)
    monkeypatch.setattr(sys.modules["gradrun.runner"], "run_spec", interrupted)
    result = invoke("good.yaml")
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not (work / "results").exists()

"""The pytest plugin: spec files as tests, passing and failing exactly as ``gradrun SPEC`` does.

Each test runs pytest (or gradrun) as a process, the way a user would, so the
installed ``pytest11`` entry point is what is tested.
"""

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli_helpers import ENV, PYTEST

HERE = Path(__file__).parent
FAILING = HERE / "cli_specs" / "failing.yaml"  # a wrong vjp between two passing experiments
PASSING = HERE / "cli_specs" / "passing.yaml"  # passes, with a kink
PLANTED = HERE / "baseline_specs" / "planted.yaml"
INVALID = HERE / "cli_specs" / "invalid.yaml"


def pytest_run(*args, cwd, env=None):
    return subprocess.run(PYTEST + [str(a) for a in args], cwd=cwd, env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def collected(*args, cwd):
    run = pytest_run("--collect-only", "-q", *args, cwd=cwd)
    return sorted(line for line in run.stdout.splitlines() if "::" in line)


def junit_outcomes(path) -> dict:
    """experiment name -> passed, from pytest's JUnit XML."""
    cases = ET.parse(path).getroot().iter("testcase")
    return {c.get("name"): c.find("failure") is None and c.find("error") is None for c in cases}


def test_items_pass_and_fail_exactly_as_the_cli_does(tmp_path):
    env = {"GRADRUN_PLANTED_SCALE": "1.001"}  # planted-layer fails too
    specs = [FAILING, PASSING, PLANTED]
    cli = subprocess.run([sys.executable, "-m", "gradrun", *map(str, specs), "--format", "json",
                          "--out", str(tmp_path / "results")],
                         env={**ENV, **env}, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1, cli.stderr
    by_cli = {e["name"]: e["passed"] for e in json.loads(cli.stdout)["experiments"]}
    run = pytest_run(*specs, f"--junitxml={tmp_path / 'j.xml'}", cwd=tmp_path, env=env)
    assert run.returncode == 1, run.stdout
    assert junit_outcomes(tmp_path / "j.xml") == by_cli
    assert sorted(n for n, ok in by_cli.items() if not ok) == ["planted-layer", "wrong-vjp"]


def test_a_failure_shows_the_worst_entries_without_a_traceback(tmp_path):
    run = pytest_run(FAILING, cwd=tmp_path)
    assert run.returncode == 1
    out = run.stdout
    assert "failing.yaml::wrong-vjp" in out and "2 passed" in out and "1 failed" in out
    assert "FAIL  wrong-vjp: 144 elements checked (full), 12 failed" in out
    assert "worst entries:" in out and "(output " in out and " tol " in out
    assert "Traceback" not in out and "pytest_plugin.py" not in out


def test_an_invalid_spec_is_a_collection_error_with_every_place(tmp_path):
    shown = tmp_path / "invalid.yaml"
    shown.write_text(INVALID.read_text())
    run = pytest_run("invalid.yaml", cwd=tmp_path)
    assert run.returncode == 2
    assert "ERROR collecting invalid.yaml" in run.stdout
    assert "invalid.yaml:4:15: experiments[0].function: unknown function 'sigmod' (did you mean 'sigmoid'?)" \
        in run.stdout
    assert "invalid.yaml:6:5: experiments[1]:" in run.stdout
    assert "Traceback" not in run.stdout and "spec.py" not in run.stdout


@pytest.fixture
def project(tmp_path):
    """A project with Python tests (and a broken spec kept as test data) under testpaths, and specs elsewhere."""
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""\
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        """))
    (tmp_path / "tests" / "data").mkdir(parents=True)
    (tmp_path / "tests" / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    (tmp_path / "tests" / "data" / "broken.yaml").write_text(INVALID.read_text())
    (tmp_path / "specs" / "more").mkdir(parents=True)
    (tmp_path / "specs" / "passing.yaml").write_text(PASSING.read_text())
    (tmp_path / "specs" / "more" / "one.yml").write_text(
        "version: 1\nexperiments:\n  - name: cube\n    function: cube\n    inputs: {x: 2.0}\n")
    (tmp_path / "specs" / "settings.yaml").write_text("not: a spec\n")
    return tmp_path


def test_collection_is_opt_in(project):
    plain = ["tests/test_plain.py::test_plain"]
    specs = ["specs/more/one.yml::cube", "specs/passing.yaml::chain-3", "specs/passing.yaml::matrix-loss",
             "specs/passing.yaml::relu-at-0", "specs/passing.yaml::square-at-2"]
    assert collected(cwd=project) == plain  # a plain `pytest` sees no YAML
    assert collected("tests", cwd=project) == plain  # nor does a testpaths folder named explicitly
    assert collected("specs", cwd=project) == specs  # a named folder elsewhere: its specs only
    assert collected("specs/more/one.yml", cwd=project) == specs[:1]
    named = pytest_run("tests/data/broken.yaml", cwd=project)  # a file named is collected, whatever it holds
    assert named.returncode == 2 and "broken.yaml:4:15:" in named.stdout


def test_the_gradrun_specs_ini_option_collects_by_glob(project):
    with open(project / "pyproject.toml", "a") as f:
        f.write('gradrun_specs = ["specs/*.yaml"]\n')
    assert collected(cwd=project) == ["specs/passing.yaml::" + n for n in
                                      ("chain-3", "matrix-loss", "relu-at-0", "square-at-2")] \
        + ["tests/test_plain.py::test_plain"]


def test_pytest_selection_works_on_experiments(tmp_path):
    run = pytest_run(FAILING, "-k", "not wrong", cwd=tmp_path)
    assert run.returncode == 0 and "2 passed, 1 deselected" in run.stdout

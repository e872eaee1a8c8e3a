"""Baselines: the drift rule on hand-made records, then the CLI against a planted regression.

``baseline_specs/planted.yaml`` holds a layer whose VJP ``GRADRUN_PLANTED_SCALE``
multiplies: 1 is correct code, 1 + 5e-9 a regression the check itself still
passes (errors from ~1e-11 to half their tolerance), 1 + 1e-3 one it fails.
"""

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradrun import baseline, cli
from gradrun.model import ExperimentResult
from rows import row

SPECS = Path(__file__).parent / "baseline_specs"
PLANTED = str(SPECS / "planted.yaml")
SCALE = "GRADRUN_PLANTED_SCALE"
GROWN, BROKEN = "1.000000005", "1.001"


# --- the rule, on records ------------------------------------------------------------


def record(name, abs_error, status="pass", tolerance=1e-8, index=0, point=0):
    return row(name, point, "x", index, f"x[{index}]", 0, 1.0, 1.0, 1.0 + abs_error, abs_error,
                  abs_error, status == "pass", status, tolerance, "central", 1e-5)


def result(name, *records, error=None):
    return ExperimentResult.from_rows(name, records, error=error, file="s.yaml", line=7)


def drifts(old_results, new_results, **kw):
    stored = baseline.baseline_data("s.yaml", old_results)
    stored = json.loads(baseline.baseline_text(stored))  # through the stored form
    return baseline.compare(stored, new_results, "s.yaml", **kw)


@pytest.mark.parametrize("before, after, tolerance, grows", [
    (0.0, 1e-16, 1e-8, False),      # round-off jitter: infinitely more, but nothing against the tolerance
    (1e-17, 1e-15, 1e-8, False),    # a hundredfold, still round-off
    (4e-9, 6e-9, 1e-8, False),      # near the tolerance, but grown by less than the factor
    (1e-12, 5e-9, 1e-8, True),      # 5000x and half the tolerance: a planted error
    (0.0, 3e-9, 1e-8, True),
    (1e-12, 2e-9, 1e-8, False),     # 2000x, but a fifth of the tolerance
])
def test_the_drift_rule(before, after, tolerance, grows):
    assert baseline.grew(before, after, tolerance) is grows
    found = drifts([result("e", record("e", before, tolerance=tolerance))],
                   [result("e", record("e", after, tolerance=tolerance))])
    assert [d.kind for d in found] == (["grew"] if grows else [])


def test_the_same_results_never_drift():
    same = [result("e", record("e", 1e-12), record("e", 0.0, "kink", index=1), record("e", 3e-3, "fail", index=2))]
    assert drifts(same, same) == []


def test_pass_to_fail_and_nan_are_regressions_fail_to_fail_is_not():
    old = [result("e", record("e", 1e-12), record("e", 1e-12, "kink", index=1), record("e", 1.0, "fail", index=2))]
    new = [result("e", record("e", 1e-3, "fail"), record("e", float("nan"), "nan", index=1),
                  record("e", 2.0, "fail", index=2))]
    found = drifts(old, new)
    assert [(d.kind, d.index, d.status_before, d.status_after) for d in found] == [
        ("now-fails", 0, "pass", "fail"), ("now-fails", 1, "kink", "nan")]


def test_appeared_and_vanished_experiments_and_elements():
    old = [result("kept", record("kept", 0.0), record("kept", 0.0, index=1)), result("gone", record("gone", 0.0))]
    new = [result("kept", record("kept", 0.0), record("kept", 0.0, index=2)), result("added", record("added", 0.0))]
    found = {(d.kind, d.experiment, d.index if d.element else None) for d in drifts(old, new)}
    assert found == {("missing-experiment", "gone", None), ("new-experiment", "added", None),
                     ("missing-element", "kept", 1), ("new-element", "kept", 2)}
    # --only: baseline experiments it does not match are not expected to run
    assert sorted(d.kind for d in drifts(old, new[:1], only="kept")) == ["missing-element", "new-element"]


def test_a_crash_is_a_regression_once():
    ran = [result("e", record("e", 0.0))]
    crashed = [result("e", error="ZeroDivisionError: division by zero")]
    assert [d.kind for d in drifts(ran, crashed)] == ["now-errors"]
    assert drifts(crashed, crashed) == []
    assert drifts(crashed, ran) == []  # a fix is no regression


def test_baseline_file_is_a_folder_for_several_specs_or_a_json_path():
    assert baseline.baseline_file("base", "a/chain.yaml", False) == Path("base/chain.baseline.json")
    assert baseline.baseline_file("b.json", "a/chain.yaml", False) == Path("b.json")
    assert baseline.baseline_file("b.json", "a/chain.yaml", True) == Path("b.json/chain.baseline.json")


def test_a_file_that_is_no_baseline_is_an_error(tmp_path):
    (tmp_path / "x.json").write_text('{"experiments": {}}')
    (tmp_path / "y.json").write_text("not json")
    for name in ("x.json", "y.json", "missing.json"):
        with pytest.raises(baseline.BaselineError):
            baseline.load_baseline(tmp_path / name)


# --- the CLI, against a planted regression --------------------------------------------


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SCALE, raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path


def gradrun(*args, scale=None, monkeypatch=None, env=None):
    env = dict(env or {})
    if scale is not None:
        env[SCALE] = scale
    return CliRunner().invoke(cli.cli, list(args), prog_name="gradrun", env=env)


def write_baseline(*specs, path="base"):
    done = gradrun(*specs, "--baseline", path, "--update-baseline", "-q")
    assert done.exit_code == 0, done.output
    return done


def test_correct_code_never_drifts_from_its_own_baseline(work):
    write_baseline(PLANTED)
    for _ in range(2):
        again = gradrun(PLANTED, "--baseline", "base")
        assert again.exit_code == 0, again.output
        assert "baseline base/planted.baseline.json: no drift" in again.stdout


def test_a_grown_error_exits_1_with_the_drift_table_though_every_check_passes(work):
    write_baseline(PLANTED)
    grown = gradrun(PLANTED, "--baseline", "base", scale=GROWN)
    assert grown.exit_code == 1, grown.output
    out = grown.stdout
    assert "3 passed, 0 failed" in out  # the check alone would not see it
    assert "baseline base/planted.baseline.json: 12 drifts in 1 experiment" in out
    assert "worst drifts (an error grows when it is over 10x its baseline and over 0.25x its tolerance):" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("kind"))
    assert header.split() == ["kind", "experiment", "element", "point", "output", "before", "after",
                              "tolerance", "growth"]
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("grew")]
    assert len(rows) == baseline.TABLE_ROWS and all(row[1] == "planted-layer" for row in rows)
    assert "... and 2 more" in out
    # a looser factor than the growth lets it through
    assert gradrun(PLANTED, "--baseline", "base", "--drift-factor", "1e6", scale=GROWN).exit_code == 0


def test_a_broken_backward_pass_is_now_failing(work):
    write_baseline(PLANTED)
    broken = gradrun(PLANTED, "--baseline", "base", "--format", "json", scale=BROKEN)
    assert broken.exit_code == 1
    doc = json.loads(broken.stdout)
    assert doc["passed"] is False and doc["totals"]["drifts"] == 12 and doc["totals"]["regressed"] == 1
    assert {d["kind"] for d in doc["drifts"]} == {"now-fails"}
    assert [e["regressed"] for e in doc["experiments"]] == [False, True, False]
    worst = doc["drifts"][0]
    assert worst["experiment"] == "planted-layer" and worst["after"] > worst["tolerance"] > worst["before"]


def test_only_update_baseline_writes_the_baseline(work):
    assert gradrun(PLANTED).exit_code == 0
    assert gradrun(PLANTED, "--baseline", "base").exit_code == 2
    assert not (work / "base").exists()
    write_baseline(PLANTED)
    stored = work / "base" / "planted.baseline.json"
    before = (stored.read_bytes(), stored.stat().st_mtime_ns)
    for scale in (None, GROWN, BROKEN):
        gradrun(PLANTED, "--baseline", "base", "--junit", "j.xml", scale=scale)
    assert (stored.read_bytes(), stored.stat().st_mtime_ns) == before
    assert sorted(p.name for p in (work / "base").iterdir()) == ["planted.baseline.json"]  # no temp files
    data = json.loads(stored.read_text())
    assert data["gradrun_baseline"] == 1 and list(data["experiments"]) == [
        "square-curve", "planted-layer", "sigmoid-of-sum"]
    # the stored numbers are the report's
    assert len(data["experiments"]["planted-layer"]["elements"]) == 48


def test_a_missing_baseline_exits_2_saying_how_to_write_it_and_runs_nothing(work):
    missing = gradrun(PLANTED, "--baseline", "base")
    assert missing.exit_code == 2
    assert "no baseline for" in missing.stderr and "--update-baseline" in missing.stderr
    assert "Traceback" not in missing.output and not (work / "results").exists()


def test_baseline_usage_errors(work):
    assert gradrun(PLANTED, "--update-baseline").exit_code == 2
    only = gradrun(PLANTED, "--baseline", "base", "--update-baseline", "--only", "square-*")
    assert only.exit_code == 2 and "without --only" in only.stderr
    assert gradrun(PLANTED, "--baseline", "base", "--drift-factor", "1").exit_code == 2


def test_several_specs_share_a_folder_and_only_compares_what_ran(work):
    passing = str(Path(__file__).parent / "cli_specs" / "passing.yaml")
    write_baseline(PLANTED, passing)
    assert sorted(p.name for p in (work / "base").iterdir()) == ["passing.baseline.json", "planted.baseline.json"]
    assert gradrun(PLANTED, passing, "--baseline", "base").exit_code == 0
    assert gradrun(PLANTED, passing, "--baseline", "base", "--only", "square-*").exit_code == 0
    one = gradrun(PLANTED, "--baseline", "one.json", "--update-baseline", "-q")
    assert one.exit_code == 0 and (work / "one.json").is_file()


def test_an_experiment_added_to_the_spec_drifts_until_the_baseline_is_rewritten(work):
    for name in ("planted.yaml", "planted.py"):
        shutil.copy(SPECS / name, work / name)
    write_baseline("planted.yaml")
    with open("planted.yaml", "a") as f:
        f.write("\n  - name: added\n    function: cube\n    inputs: {x: 2.0}\n")
    added = gradrun("planted.yaml", "--baseline", "base")
    assert added.exit_code == 1 and "new-experiment  added" in added.stdout
    write_baseline("planted.yaml")
    assert gradrun("planted.yaml", "--baseline", "base").exit_code == 0


def test_junit_fails_a_regressed_experiment_with_its_drifts(work):
    write_baseline(PLANTED)
    gradrun(PLANTED, "--baseline", "base", "--junit", "j.xml", scale=GROWN)
    suite = ET.parse("j.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    failure = suite.find("testcase[@name='planted-layer']/failure")
    assert failure.get("type") == "BaselineDrift" and "12 drifts from the baseline" in failure.get("message")
    assert "planted-layer: grew x[" in failure.text


def test_github_annotations_only_under_github_actions(work):
    write_baseline(PLANTED)
    plain = gradrun(PLANTED, "--baseline", "base", scale=BROKEN)
    assert "::error" not in plain.output
    actions = {"GITHUB_ACTIONS": "true"}
    passing = gradrun(PLANTED, "--baseline", "base", env=actions)
    assert passing.exit_code == 0 and "::error" not in passing.output
    grown = gradrun(PLANTED, "--baseline", "base", env=actions, scale=GROWN)
    lines = [line for line in grown.stdout.splitlines() if line.startswith("::error")]
    assert len(lines) == 1
    assert lines[0].startswith(f"::error file={PLANTED.replace(':', '%3A')},line=14,title=gradrun%3A planted-layer::")
    assert "12 drifts from the baseline:%0Aplanted-layer: grew" in lines[0]
    broken = gradrun(PLANTED, "--baseline", "base", "--format", "json", env=actions, scale=BROKEN)
    json.loads(broken.stdout)  # annotations go to stderr with --format json
    assert "::error" in broken.stderr and "12 of 48 elements outside tolerance" in broken.stderr

"""``gradrun.run_files``: the run command as a library call, which returns what the command prints from.

Its results are the ones the command writes (byte for byte); it never prints;
a user's mistake comes back as issues or a raised problem, never an exit.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

import gradrun
from gradrun import baseline, cli, report, runfiles
from gradrun.runfiles import CannotRun, RunOptions, UsageProblem, Written

SPECS = Path(__file__).parent / "cli_specs"
PASSING, FAILING, INVALID = (str(SPECS / f"{name}.yaml") for name in ("passing", "failing", "invalid"))
PLANTED = str(Path(__file__).parent / "baseline_specs" / "planted.yaml")


def command(*args):
    return CliRunner().invoke(cli.cli, [*map(str, args)], prog_name="gradrun")


def test_the_outcome_holds_what_the_command_writes(tmp_path, capsys):
    outcome = gradrun.run_files([FAILING, PASSING], RunOptions(out=tmp_path / "lib"))
    assert capsys.readouterr() == ("", "")  # the library prints nothing, not even "wrote ..."
    ran = command(FAILING, PASSING, "--out", tmp_path / "cli")
    assert ran.exit_code == 1 and not outcome.passed
    for spec in outcome.specs:
        stem = Path(spec.path).stem
        written = (tmp_path / "lib" / f"{stem}.csv").read_bytes()
        assert written == (tmp_path / "cli" / f"{stem}.csv").read_bytes()
        assert written.decode() == report.csv_text(spec.results)  # the outcome's columns are the report's
    names = [r.name for r in outcome.results]
    assert names == ["before", "wrong-vjp", "after", "square-at-2", "chain-3", "matrix-loss", "relu-at-0"]
    assert [r.passed for r in outcome.results] == [name != "wrong-vjp" for name in names]
    assert outcome.drifts is None and outcome.issues == []
    assert [(w.kind, w.path.name) for w in outcome.written] == [
        ("report", "failing.csv"), ("run record", "failing.run.json"),
        ("report", "passing.csv"), ("run record", "passing.run.json")]
    assert outcome.written[2].count == sum(r.rows for r in outcome.specs[1].results) == 22


def test_an_invalid_spec_comes_back_as_issues_and_nothing_runs(tmp_path, capsys):
    outcome = gradrun.run_files([PASSING, INVALID], RunOptions(out=tmp_path))
    assert capsys.readouterr() == ("", "")
    assert outcome.specs == [] and outcome.written == [] and not outcome.passed
    assert [(Path(i.file).name, i.line) for i in outcome.issues] == [("invalid.yaml", 4), ("invalid.yaml", 6)]
    assert "unknown function 'sigmod'" in outcome.issues[0].message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("paths, options, message, option", [
    ([PASSING], RunOptions(only=" "), "an empty pattern selects nothing", "--only"),
    ([PASSING], RunOptions(only="nothing-*"), "--only 'nothing-*' matches no experiment; there are: chain-3,", None),
    ([PASSING], RunOptions(update_baseline=True), "--update-baseline needs --baseline PATH", None),
    ([PASSING], RunOptions(baseline="b", update_baseline=True, only="chain-*"), "run it without --only", None),
    ([PASSING, str(SPECS / ".." / "cli_specs" / "passing.yaml")], RunOptions(), "would both write passing.csv",
     None),
])
def test_options_that_cannot_run_raise_a_usage_problem(tmp_path, paths, options, message, option):
    options = RunOptions(**{**options.__dict__, "out": tmp_path})
    with pytest.raises(UsageProblem) as raised:
        gradrun.run_files(paths, options)
    assert message in str(raised.value) and raised.value.option == option
    assert list(tmp_path.iterdir()) == []


def test_a_report_that_cannot_be_written_raises_and_a_missing_baseline_too(tmp_path):
    (tmp_path / "file").write_text("a file where the folder should be\n")
    with pytest.raises(CannotRun, match=r"cannot write .*file/sub/passing\.csv"):
        gradrun.run_files([PASSING], RunOptions(out=tmp_path / "file" / "sub"))
    with pytest.raises(baseline.BaselineError, match="no baseline for"):
        gradrun.run_files([PASSING], RunOptions(out=tmp_path / "out", baseline=tmp_path / "base"))
    assert not (tmp_path / "out").exists()


def test_drifts_from_a_baseline(tmp_path, monkeypatch):
    base = tmp_path / "base"
    written = gradrun.run_files([PLANTED], RunOptions(out=tmp_path, baseline=base, update_baseline=True))
    assert [w.kind for w in written.written] == ["report", "run record", "baseline"]
    assert written.drifts is None and written.baselines == {PLANTED: base / "planted.baseline.json"}
    again = gradrun.run_files([PLANTED], RunOptions(out=tmp_path, baseline=base))
    assert again.drifts == [] and again.passed
    monkeypatch.setenv("GRADRUN_PLANTED_SCALE", "1.000000005")  # passes still, but its errors grew
    grown = gradrun.run_files([PLANTED], RunOptions(out=tmp_path, baseline=base))
    assert all(r.passed for r in grown.results) and not grown.passed
    assert grown.drifts and {(d.experiment, d.kind) for d in grown.drifts} == {("planted-layer", "grew")}
    shown = command(PLANTED, "--out", tmp_path / "cli", "--baseline", base, "--format", "json")
    assert shown.exit_code == 1 and f'"drifts": {len(grown.drifts)},' in shown.stdout


class Progress:
    """A progress factory that remembers what it heard: (label, name, done, total), and closes."""

    heard: list = []
    closed: list = []

    def __init__(self, label):
        self.label = label

    def __call__(self, name, done, total):
        self.heard.append((self.label, name, done, total))

    def close(self):
        self.closed.append(self.label)


@pytest.fixture
def progress(monkeypatch):
    monkeypatch.setattr(Progress, "heard", [])
    monkeypatch.setattr(Progress, "closed", [])
    return Progress


def test_progress_and_files_are_told_to_callbacks(tmp_path, progress):
    heard, closed, told = progress.heard, progress.closed, []
    outcome = gradrun.run_files([PASSING], RunOptions(out=tmp_path, only="*-at-*", progress=Progress,
                                                      on_written=told.append))
    assert [r.name for r in outcome.results] == ["square-at-2", "relu-at-0"]
    assert [(label, done, total) for label, _, done, total in heard][-1] == ("passing", 2, 2)
    assert closed == ["passing"] and told == outcome.written
    assert told[0] == Written("report", tmp_path / "passing.csv", 2)


def test_worker_processes_give_the_serial_outcome(tmp_path, progress):
    serial = gradrun.run_files([PASSING], RunOptions(out=tmp_path / "serial"))
    parallel = gradrun.run_files([PASSING], RunOptions(out=tmp_path / "parallel", jobs=2, progress=progress))
    assert (tmp_path / "serial" / "passing.csv").read_bytes() == (tmp_path / "parallel" / "passing.csv").read_bytes()
    assert [r.name for r in serial.results] == [r.name for r in parallel.results]
    # one progress for the run's units, whichever worker finished them, closed before the reports are written
    assert {label for label, *_ in progress.heard} == {"units"} and progress.closed == ["units"]
    assert progress.heard[-1][2:] == (len(progress.heard), len(progress.heard))


def test_pictures_without_a_report_raise(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "not.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CannotRun):
        runfiles.draw_pictures(tmp_path / "not.csv")


@pytest.mark.parametrize("options, message", [
    (RunOptions(jobs=2, scheduler="tcp://127.0.0.1:1"), "-j and --scheduler exclude each other"),
    (RunOptions(merge=("shards",), shard=(1, 2)), "--merge runs nothing"),
    (RunOptions(shard=(1, 2), baseline="base"), "a shard holds part of each spec"),
])
def test_where_options_that_exclude_each_other_raise_before_anything_runs(tmp_path, options, message):
    with pytest.raises(UsageProblem, match=message):
        gradrun.run_files([PASSING], RunOptions(**{**options.__dict__, "out": tmp_path}))
    assert list(tmp_path.iterdir()) == []

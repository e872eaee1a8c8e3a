"""Hostile and mistaken inputs found in round 8 (docs/security.md): each test fails on the code before its fix.

The attacker controls a spec file, and perhaps files beside it (a symlink is a
file a pull request can add); users make mistakes in options and paths. Either
way: exit 2 with a plain message, no traceback, nothing written before the
run is known to be writable, nothing outside the results folder replaced.
"""

import os
import stat

import pytest

from gradrun import atomic
from cli_helpers import ENV, write
from cli_helpers import invoke as run_command


def invoke(*args):
    return run_command(*args, env=ENV)


OK_SPEC = """\
    version: 1
    experiments:
      - {name: sq, function: square, inputs: {x: 2.0}}
    """


def refused(ran, fragment):
    assert ran.exit_code == 2, ran.output
    assert fragment in ran.output and "Traceback" not in ran.output and "bug" not in ran.output


# --- what a run writes ---------------------------------------------------------------------------


def test_a_junit_path_that_is_a_pipe_or_device_is_refused_not_replaced(project):
    """`--junit /dev/null` replaced the device with a plain file (run as root, as CI containers do)."""
    path = write(project, "ok.yaml", OK_SPEC)
    os.mkfifo(project / "pipe.xml")
    refused(invoke(path, "--out", project / "out", "--junit", project / "pipe.xml"), "it is a named pipe, not a file")
    assert stat.S_ISFIFO(os.lstat(project / "pipe.xml").st_mode) and not (project / "out").exists()
    with pytest.raises(OSError, match="named pipe"):
        atomic.atomic_write(project / "pipe.xml", "x")  # every writer, not only the run's check


def test_a_name_too_long_stops_the_run_before_anything_is_written(project):
    """A 250-character spec name fits its report but not its run record (259 bytes): the report was
    written, then the run record failed; a JUnit name too long failed after every report."""
    long_spec = write(project, "b" * 250 + ".yaml", OK_SPEC)
    refused(invoke(long_spec, "--out", project / "out"), "File name too long")
    ok = write(project, "ok.yaml", OK_SPEC)
    refused(invoke(ok, "--out", project / "out", "--junit", project / "new" / ("j" * 260 + ".xml")),
            "File name too long")
    refused(invoke(ok, "--out", project / ("o" * 300)), "File name too long")  # was a traceback
    assert not (project / "out").exists()


def test_a_long_name_that_fits_is_written(project):
    """The temporary file beside a report was named after it, 14 characters longer."""
    atomic.atomic_write(project / ("r" * 250), "whole")
    assert (project / ("r" * 250)).read_text() == "whole" and len(os.listdir(project)) == 1


# --- shards: N is a number the user typed, or a shard file says -----------------------------------


def test_a_huge_shard_count_costs_what_the_experiments_cost(project):
    """--shard 1/10**20 was a traceback; 1/10**8 built a list of 10**8 loads and scanned it per experiment."""
    path = write(project, "ok.yaml", OK_SPEC)
    ran = invoke(path, "--out", project / "out", "--shard", "1/" + "9" * 20)
    assert ran.exit_code == 0 and "Traceback" not in ran.output
    from gradrun import shards, spec

    loaded = spec.load_spec(write(project, "three.yaml", """\
        version: 1
        experiments:
          - {name: a, function: square, inputs: {x: 1.0}}
          - {name: b, function: square, sweep: {x: [1, 2, 3]}}
          - {name: c, function: square, inputs: {x: 3.0}}
        """))
    chosen = [(0, loaded, [0, 1, 2])]
    assert [shards.slice_of(chosen, i, 10**8)[0][2] for i in (1, 2, 3, 4, 10**8)] == [[1], [0], [2], [], []]
    assert [shards.slice_of(chosen, i, 2)[0][2] for i in (1, 2)] == [[1], [0, 2]]  # least loaded first, as before


def test_a_shard_file_naming_a_huge_count_is_reported_briefly(project):
    from gradrun import shards, spec

    path = write(project, "ok.yaml", OK_SPEC)
    loaded = spec.load_spec(path)
    (project / "in").mkdir()
    for name, shard in ((f"ok.shard-1-of-{10**18}.pickle", (1, 10**18)), ("ok.shard-1-of-1.pickle", ("1", 1))):
        (project / "in" / name).write_bytes(shards.shard_bytes(loaded, [], [], *shard, {}, None))
    ran = invoke(path, "--out", project / "out", "--merge", project / "in")
    refused(ran, "not a shard file")  # ("1", 1): a shard number that is not a number
    (project / "in" / "ok.shard-1-of-1.pickle").unlink()
    ran = invoke(path, "--out", project / "out", "--merge", project / "in")
    refused(ran, f"shard 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and {10**18 - 11} more of {10**18} is missing")


# --- files a run reads: a symlink or a pipe a pull request adds ----------------------------------


SECRET = "machine github.com login bot password hunter2-token\n"


def test_a_spec_that_is_a_symlink_out_of_the_project_is_not_read(project, tmp_path):
    """specs/x.yaml -> ~/.netrc: its first line came back as "unknown key 'machine github.com ...'"."""
    secret = tmp_path / "home" / ".netrc"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    (project / "specs").mkdir()
    (project / "specs" / "x.yaml").symlink_to(secret)
    ran = invoke("validate", "specs/x.yaml")
    refused(ran, "it is a symlink to")
    assert "hunter2" not in ran.output and "machine" not in ran.output
    # a link that stays in the project is followed, as is one beside its target outside it
    write(project, "common/base.yaml", OK_SPEC)
    (project / "specs" / "y.yaml").symlink_to(project / "common" / "base.yaml")
    (tmp_path / "home" / "z.yaml").symlink_to("base.yaml")
    write(tmp_path / "home", "base.yaml", OK_SPEC)
    assert invoke("validate", "specs/y.yaml", tmp_path / "home" / "z.yaml").exit_code == 0


def test_a_baseline_that_is_a_symlink_out_of_the_project_is_not_read(project, tmp_path):
    secret = tmp_path / "config.json"
    secret.write_text('{"auths": {"registry": {"auth": "hunter2"}}}')
    path = write(project, "ok.yaml", OK_SPEC)
    (project / "baselines").mkdir()
    (project / "baselines" / "ok.baseline.json").symlink_to(secret)
    ran = invoke(path, "--out", project / "out", "--baseline", project / "baselines")
    refused(ran, "it is a symlink to")
    assert "hunter2" not in ran.output and not (project / "out").exists()


def test_a_spec_or_baseline_that_is_a_pipe_does_not_hold_the_run(project):
    """open() of a named pipe waits for a writer: the run hung before it began."""
    os.mkfifo(project / "pipe.yaml")
    refused(invoke("validate", project / "pipe.yaml"), "it is a named pipe, not a file")
    path = write(project, "ok.yaml", OK_SPEC)
    (project / "baselines").mkdir()
    os.mkfifo(project / "baselines" / "ok.baseline.json")
    refused(invoke(path, "--out", project / "out", "--baseline", project / "baselines"), "named pipe")
    (project / "baselines" / "ok.baseline.json").unlink()
    (project / "baselines" / "ok.baseline.json").mkdir()  # was "[Errno 21] Is a directory: 4"
    refused(invoke(path, "--out", project / "out", "--baseline", project / "baselines"), "it is a folder, not a file")


def test_a_baseline_is_read_within_a_size_limit(project, monkeypatch):
    """A baseline was read whole, however large (a symlink to /dev/zero inside the project: forever)."""
    from gradrun import baseline

    monkeypatch.setattr(baseline, "MAX_BASELINE_BYTES", 1000)
    path = write(project, "ok.yaml", OK_SPEC)
    write(project, "b/ok.baseline.json", "[" + " " * 2000 + "]")
    refused(invoke(path, "--out", project / "out", "--baseline", project / "b"), "larger than 1000 bytes")


def test_a_spec_that_is_not_utf8_is_placed_at_its_line_and_column(project):
    (project / "latin1.yaml").write_bytes(b'version: 1\nexperiments:\n  - name: caf\xe9\n')
    refused(invoke("validate", project / "latin1.yaml"), "latin1.yaml:3:14: <document>: the file is not UTF-8 text")


# --- a code reference whose file is there but refused says why -------------------------------------


@pytest.mark.parametrize("make, why", [
    (lambda p: (p / "layers.py").mkdir(), "is a folder, not a Python file"),
    (lambda p: os.mkfifo(p / "layers.py"), "is a named pipe"),
    (lambda p: (p / "layers.py").symlink_to("/dev/zero"), "leads to /dev/zero, outside the spec's folder and the project"),
    (lambda p: (p / "layers.py").symlink_to(p / "gone.py"), "is a broken symlink"),
    (lambda p: (write(p, ".venv/lib/layers.py", "def f(x): return x\n"),
                (p / "layers.py").symlink_to(p / ".venv/lib/layers.py")), "part of an installed package"),
])
def test_a_module_file_that_is_there_but_refused_says_why(project, make, why):
    """It said "module 'layers' not found ... (did you mean 'layers'?)"."""
    from gradrun import spec

    make(project)
    path = write(project, "s.yaml", """\
        version: 1
        functions:
          g: {python: "layers:f", vjp: "layers:f"}
        experiments:
          - {name: a, function: g, inputs: {x: 1.0}}
        """)
    issues = spec.validate(path)
    assert issues and all(why in i.message and "not the project's own code" in i.message for i in issues)
    assert all("did you mean" not in i.hint for i in issues)


# --- names Python reserves -------------------------------------------------------------------------


@pytest.mark.parametrize("params, body, word", [
    ("[x, lambda]", "x * lambda", "lambda"),  # a regularization weight: "cannot parse expression: syntax error"
    ("[x, in]", "x + in", "in"),
    ("[x, None]", "x + None", "None"),  # "NoneType constants are not allowed"
])
def test_a_name_python_reserves_is_called_so(project, params, body, word):
    from gradrun import spec

    path = write(project, "s.yaml", f"""\
        version: 1
        functions:
          f: {{params: {params}, expr: "{body}"}}
        experiments:
          - {{name: a, expr: "f(x, x)", inputs: {{x: 1.0}}}}
        """)
    issues = spec.validate(path)
    line = path.read_text().splitlines()[2]
    assert [(i.line, i.column) for i in issues] == [(3, line.index(body) + body.index(word) + 1)]
    assert issues[0].message.endswith(f"'{word}' is a reserved word, not a name") and f"{word}_" in issues[0].hint


def test_an_empty_value_is_called_empty(project):
    """`expr:` with nothing after it was "expected string, got nothing None"."""
    from gradrun import spec

    path = write(project, "s.yaml", """\
        version: 1
        experiments:
          - name: a
            expr:
            inputs: {x}
        """)
    messages = sorted(i.message for i in spec.validate(path))
    assert messages == ["expected string, got nothing (the value is empty)",
                        "nothing (the value is empty) is not allowed here"]


def test_a_file_in_the_way_of_the_pictures_stops_the_run_before_it_runs(project):
    """--plot: the reports were written, then the pictures' folder failed (exit 2 after the run)."""
    pytest.importorskip("matplotlib")
    path = write(project, "ok.yaml", OK_SPEC)
    write(project, "out/ok-plots", "a file where the pictures' folder goes")
    refused(invoke(path, "--out", project / "out", "--plot"), "cannot write the pictures into")
    assert sorted(os.listdir(project / "out")) == ["ok-plots"]


# --- sizes that add up across files ----------------------------------------------------------------


def test_the_inputs_of_all_the_spec_files_of_a_run_are_bounded(project, monkeypatch):
    """A serial run loads every file before running any and holds them all: a folder of files, each
    within MAX_FILE_INPUT_ELEMENTS, took memory without bound (80 MB more per file of 10 million)."""
    from gradrun import runfiles

    monkeypatch.setattr(runfiles, "MAX_RUN_INPUT_ELEMENTS", 2500)
    files = [write(project, f"s{k}.yaml", """\
        version: 1
        experiments:
          - {name: a, expr: "sum(x)", inputs: {x: {shape: [1000], init: normal}}}
        """) for k in range(4)]
    ran = invoke(*files, "--out", project / "out")
    refused(ran, "more than 2500 input elements together at")
    assert "s2.yaml" in ran.output and not (project / "out").exists()
    assert invoke(*files[:2], "--out", project / "out").exit_code == 0


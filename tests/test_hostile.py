"""Hostile inputs found in round 6 (docs/security.md): each test fails on the code before its fix.

The attacker controls a spec file, its file name, or a file the run reads beside it
(a baseline); every refusal is an error with its place and exit 2, never a traceback,
and nothing gradrun prints lets such text start a line of its own.
"""

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradrun import baseline, ci_reports, spec
from gradrun.graph import MAX_DEPTH
from gradrun.limits import MAX_FUNCTIONS, MAX_INLINED
from gradrun.model import ExperimentResult, Issue, one_line
from cli_helpers import ENV, invoke, write


def functions_spec(folder: Path, bodies: list, function: str, name="bomb.yaml") -> Path:
    """A spec declaring ``bodies`` (name, expression) and checking ``function`` at x = 0.5."""
    declared = "\n".join(f'  {n}: "{body}"' for n, body in bodies)
    return write(folder, name, f"version: 1\nfunctions:\n{declared}\nexperiments:\n"
                               f"  - {{name: e, function: {function}, inputs: {{x: 0.5}}}}\n")


# --- expression bombs: declared functions that multiply when inlined ----------------------------


def test_functions_that_double_at_each_level_stop_at_the_inlining_limit(project):
    """f_k(x) = f_{k-1}(f_{k-1}(x)) is 2^k calls of sin: 16 lines, 65 536 operations."""
    levels = 16
    bodies = [("f0", "sin(x)")] + [(f"f{k}", f"f{k - 1}(f{k - 1}(x))") for k in range(1, levels + 1)]
    path = functions_spec(project, bodies, f"f{levels}")
    issues = spec.validate(path)
    assert len(issues) == 1 and f"more than {MAX_INLINED} operations" in issues[0].message
    assert issues[0].hint and issues[0].line == levels + 5  # the experiment's function:, with what to do
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 2 and "Traceback" not in ran.output and not (project / "out").exists()


def test_a_function_called_again_with_the_same_arguments_is_expanded_once(project):
    """h_k = h_{k-1}(x) + ... (8 times): 8^6 = 262 144 operations written, 7 levels of them built."""
    copies, levels = 8, 6
    bodies = [("h0", "sin(x)")] + [(f"h{k}", " + ".join([f"h{k - 1}(x)"] * copies)) for k in range(1, levels + 1)]
    assert copies ** levels > MAX_INLINED
    loaded = spec.load_spec(functions_spec(project, bodies, f"h{levels}"))
    assert len(loaded.experiments[0].graph.nodes) <= 3 + levels * copies


def test_a_ring_of_declared_functions_is_reported_briefly_and_a_flood_is_refused(project):
    ring = [(f"r{k}", f"r{(k + 1) % 300}(x)") for k in range(300)]
    issues = spec.validate(functions_spec(project, ring, "r0"))
    assert len(issues) == 300 and all("calls itself through" in i.message for i in issues)
    assert max(len(str(i)) for i in issues) < 300  # the trail is shortened, not 300 names long
    assert "r0 -> r1 -> r2 -> r3 -> (295 more) -> r299 -> r0" in issues[0].message
    flood = [(f"g{k}", "sin(x)") for k in range(MAX_FUNCTIONS + 1)]
    issues = spec.validate(functions_spec(project, flood, "g0", name="flood.yaml"))
    assert [i.message for i in issues] == [f"{MAX_FUNCTIONS + 1} declared functions, more than {MAX_FUNCTIONS}"]


def test_nesting_past_the_limit_says_what_to_do(project):
    chain = [("g0", "sin(x)")] + [(f"g{k}", f"g{k - 1}(x)") for k in range(1, MAX_DEPTH + 2)]
    issues = spec.validate(functions_spec(project, chain, f"g{MAX_DEPTH + 1}"))
    assert len(issues) == 1 and f"more than {MAX_DEPTH} deep" in issues[0].message and issues[0].hint


# --- names: the schema's "$" ends the text, as in JSON Schema -----------------------------------


@pytest.mark.parametrize("name, body, where", [
    ('"ok\\n"', "function: square, inputs: {x: 1.0}", "experiments[0].name"),
    ("ok", 'function: "square\\n", inputs: {x: 1.0}', "experiments[0].function"),
    ("ok", 'chain: ["square\\n"], inputs: {x: 1.0}', "experiments[0].chain[0]"),
    ("ok", 'expr: "sin(x)", inputs: {"x\\n": 1.0}', "experiments[0].inputs"),
    ("ok", 'expr: "sin(x)", sweep: {"x\\n": [1.0]}', "experiments[0].sweep"),
])
def test_a_trailing_line_break_is_not_part_of_a_valid_name(project, name, body, where):
    path = write(project, "nl.yaml", f"version: 1\nexperiments:\n  - {{name: {name}, {body}}}\n")
    issues = spec.validate(path)
    assert issues and issues[0].path == where and "is not a valid name" in issues[0].message
    assert "\n" not in str(issues[0])


def test_a_code_reference_with_a_trailing_line_break_is_refused(project):
    write(project, "layers.py", "def f(x):\n    return x\ndef f_vjp(g, x):\n    return g\n")
    path = write(project, "ref.yaml", """\
        version: 1
        functions: {f: {python: "layers:f\\n", vjp: "layers:f_vjp"}}
        experiments:
          - {name: e, function: f, inputs: {x: 1.0}}
        """)
    issues = spec.validate(path)
    assert [i.path for i in issues] == ["functions.f.python"] and "is not a valid name" in issues[0].message


# --- text from file names and baselines, printed ----------------------------------------------


def test_a_spec_file_name_cannot_start_a_line_or_colour_the_terminal(project):
    path = write(project, "evil\n::warning::pwned\x1b[31m.yaml", """\
        version: 1
        experiments:
          - {name: e, expr: "sqrt(x)", inputs: {x: -1.0}}
        """)
    ran = invoke(path, "--out", project / "out", "--junit", project / "out" / "j.xml",
                 env={**ENV, "GITHUB_ACTIONS": "true"})
    assert ran.exit_code == 1, ran.output
    lines = ran.output.splitlines()  # stdout and stderr together
    assert not any(line.startswith("::warning") for line in lines)
    assert not any("\x1b" in line for line in lines)
    assert any(line.startswith("::error file=") for line in lines)  # gradrun's own annotation stays
    ET.parse(project / "out" / "j.xml")  # well-formed despite the ESC in the file name


def _hostile_baseline(project, name):
    path = write(project, "ok.yaml", """\
        version: 1
        experiments:
          - {name: sq, function: square, inputs: {x: 2.0}}
        """)
    assert invoke(path, "--out", project / "out", "--baseline", project / "bl", "--update-baseline").exit_code == 0
    stored = project / "bl" / "ok.baseline.json"
    data = json.loads(stored.read_text())
    data["experiments"][name] = {"line": 3, "passed": True, "error": None, "elements": []}
    stored.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("name", ["gone\n::warning::pwned", "esc\x1b[2J", "nul\x00", "lone\ud800"])
def test_a_baseline_naming_an_experiment_with_control_characters_is_refused(project, name):
    path = _hostile_baseline(project, name)
    ran = invoke(path, "--out", project / "out2", "--baseline", project / "bl", env={**ENV, "GITHUB_ACTIONS": "true"})
    assert ran.exit_code == 2 and ran.exception is None or isinstance(ran.exception, SystemExit)
    assert "holds control characters" in ran.output and "rewrite it with --update-baseline" in ran.output
    assert not any(line.startswith("::warning") for line in ran.output.splitlines())
    assert not (project / "out2").exists()
    with pytest.raises(baseline.BaselineError):
        baseline.load_baseline(project / "bl" / "ok.baseline.json")


def test_junit_holds_only_characters_xml_allows():
    result = ExperimentResult("e", [], error="ValueError: \x00\x1b[31m\ud800\ufffe", file="a\x0b.yaml", line=1)
    root = ET.fromstring(ci_reports.junit_xml([result]))
    case = root.find("testsuite/testcase")
    assert case.get("file") == "a\\x0b.yaml" and "\\x1b[31m" in case.find("error").text


def test_one_line_escapes_what_a_terminal_or_a_ci_runner_would_obey():
    text = one_line("a\nb\x1b[2J\x9b31m\x85\u2028\u202eevil\ud800 ünïcode")
    assert text == "a\\nb\\x1b[2J\\x9b31m\\x85\\u2028\\u202eevil\\ud800 ünïcode"
    assert text.isprintable()


def test_a_long_value_is_not_echoed_whole():
    issue = Issue("s.yaml", 3, 11, "experiments[0].name", f"'{'a' * 100_000}' is too long", "b" * 5_000)
    assert len(str(issue)) < 1_200 and "(100014 characters)" in str(issue)


# --- what a run writes: never a file it reads, never one file twice, whole or not at all ----------


OK_SPEC = """\
    version: 1
    experiments:
      - {name: sq, function: square, inputs: {x: 2.0}}
    """


@pytest.mark.parametrize("spec_name, options, fragment", [
    ("spec.csv", ["--out", "."], "would overwrite the spec file"),
    ("ok.yaml", ["--out", "out", "--junit", "out/ok.csv"], "are the same file"),
    ("ok.yaml", ["--out", "out", "--baseline", "out/ok.run.json", "--update-baseline"], "are the same file"),
    ("ok.yaml", ["--out", "out", "--report-format", "parquet", "--junit", "ok.yaml"], "would overwrite the spec file"),
])
def test_a_run_never_writes_over_a_file_it_reads_or_one_file_twice(project, spec_name, options, fragment):
    path = write(project, spec_name, OK_SPEC)
    before = path.read_text()
    ran = invoke(path, *options)
    assert ran.exit_code == 2 and fragment in ran.output and "Traceback" not in ran.output
    assert path.read_text() == before and not (project / "out").exists()


def test_a_report_that_cannot_be_written_stops_the_run_before_it_runs(project):
    path = write(project, "ok.yaml", OK_SPEC)
    (project / "blocker").write_text("a file where a folder is wanted")
    ran = invoke(path, "--out", project / "out", "--junit", project / "blocker" / "j.xml")
    assert ran.exit_code == 2 and "cannot write" in ran.output and "j.xml" in ran.output
    assert not (project / "out" / "ok.csv").exists()  # before: the reports were written, then the JUnit file failed


def test_a_folder_in_the_way_of_a_run_record_stops_the_run_before_the_report_is_replaced(project):
    path = write(project, "ok.yaml", OK_SPEC)
    (project / "out" / "ok.run.json").mkdir(parents=True)
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 2 and "a folder of that name is in the way" in ran.output
    assert not (project / "out" / "ok.csv").exists()


def test_a_merge_key_gets_a_hint_of_its_own(project):
    path = write(project, "merge.yaml", """\
        version: 1
        experiments:
          - {<<: {function: square}, name: m, inputs: {x: 1.0}}
        """)
    issues = spec.validate(path)
    assert [i.path for i in issues] == ["experiments[0].<<"] and "merge keys are not supported" in issues[0].hint


def test_a_full_disk_leaves_the_report_and_its_run_record_as_they_were(project, monkeypatch):
    from gradrun import report

    path = write(project, "ok.yaml", OK_SPEC)
    assert invoke(path, "--out", project / "out").exit_code == 0
    old = {p.name: p.read_bytes() for p in (project / "out").iterdir()}
    path.write_text(OK_SPEC.replace("2.0", "3.0"))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_run_record", full_disk)  # the report is written whole, then this fails
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 2 and "No space left on device" in ran.output
    assert {p.name: p.read_bytes() for p in (project / "out").iterdir()} == old


@pytest.mark.parametrize("module, name", [
    ("gradrun.localpool", "ProcessPoolExecutor"),  # imported there, not gradrun's own
    ("gradrun.model", "ExperimentResult.__class__"),  # an attribute walk to type
])
def test_a_shard_file_cannot_build_classes_gradrun_merely_imports(tmp_path, module, name):
    from gradrun import shards

    forged = tmp_path / "x.shard-1-of-1.pickle"
    forged.write_bytes(b"\x80\x04c" + f"{module}\n{name}\n".encode() + b")R.")  # GLOBAL, (), REDUCE
    with pytest.raises(shards.ShardError, match="may not hold"):
        shards.read(forged)


def test_output_written_to_file_descriptor_1_by_user_code_goes_to_stderr(project):
    import subprocess
    import sys

    write(project, "loud.py", """\
        import os
        def f(x):
            os.write(1, b"::error::written to fd 1\\n")
            return 2 * x
        def f_vjp(g, x):
            return 2 * g
        """)
    path = write(project, "loud.yaml", """\
        version: 1
        functions: {f: {python: "loud:f", vjp: "loud:f_vjp"}}
        experiments:
          - {name: e, function: f, inputs: {x: 1.0}}
        """)
    ran = subprocess.run([sys.executable, "-m", "gradrun", str(path), "--out", "out", "--format", "json"],
                         capture_output=True, text=True, env={**ENV, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["passed"] is True  # stdout is the summary alone
    assert "::error::written to fd 1" in ran.stderr


@pytest.mark.parametrize("expr, inputs, where", [
    ("sum(x)", "{x: {shape: [0], init: normal}}", "experiments[0].inputs.x"),
    ("X[:, 0:0]", "{X: {shape: [2, 2], init: normal}}", "experiments[0]"),
])
def test_an_empty_jacobian_is_a_spec_error_not_a_crash_at_run_time(project, expr, inputs, where):
    path = write(project, "empty.yaml", f"version: 1\nexperiments:\n  - {{name: e, expr: \"{expr}\", inputs: {inputs}}}\n")
    issues = spec.validate(path)
    assert [i.path for i in issues] == [where] and "has nothing to check" in issues[0].message
    assert invoke(path, "--out", project / "out").exit_code == 2


def test_plot_of_a_report_from_elsewhere_keeps_names_to_its_folder_and_one_line(project):
    pytest.importorskip("matplotlib")
    import pandas as pd

    path = write(project, "ok.yaml", OK_SPEC)
    assert invoke(path, "--out", project / "out").exit_code == 0
    report = pd.read_csv(project / "out" / "ok.csv")
    report["experiment"] = "../" * 3 + "a" * 5000 + "\x1b[31m"
    report.to_csv(project / "hostile.csv", index=False)
    ran = invoke("plot", project / "hostile.csv", "--out", project / "plots")
    assert ran.exit_code == 0, ran.output  # before: "File name too long", exit 2
    written = list((project / "plots").iterdir())
    assert len(written) == 1 and len(written[0].name) < 120 and "\x1b" not in ran.output


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b"])
def test_a_character_yaml_refuses_is_placed_at_its_line_and_column(project, char):
    path = write(project, "ctl.yaml", f'version: 1\nexperiments:\n  - name: "a{char}b"\n')
    issues = spec.validate(path)
    assert [(i.line, i.column) for i in issues] == [(3, 13)]
    assert f"U+{ord(char):04X} is not allowed" in issues[0].message and issues[0].hint


def test_a_spec_file_name_that_is_not_utf8_runs_and_writes_junit(project):
    path = write(project, os.fsdecode(b"b\xffad.yaml"), OK_SPEC)  # a byte Linux allows in a name
    ran = invoke(path, "--out", project / "out", "--junit", project / "out" / "j.xml")
    assert ran.exit_code == 0, ran.output  # before: UnicodeEncodeError writing the JUnit file
    ET.parse(project / "out" / "j.xml")


@pytest.mark.parametrize("installed", ["lib/python3/site-packages/pkg", "usr/lib/python3/dist-packages/pkg"])
def test_the_project_inside_an_installed_package_trusts_none_of_it(tmp_path, monkeypatch, installed):
    from gradrun import usercode

    package = tmp_path / installed
    package.mkdir(parents=True)
    (package / "hub.py").write_text("def load(x):\n    return x\n")
    monkeypatch.chdir(package)  # gradrun run from inside the package, the spec beside its modules
    with pytest.raises(usercode.Refused):
        usercode.resolve("hub:load", package)


def test_safe_is_another_spelling_of_no_code(project):
    write(project, "layers.py", "def f(x):\n    return x\ndef f_vjp(g, x):\n    return g\n")
    path = write(project, "code.yaml", """\
        version: 1
        functions: {f: {python: "layers:f", vjp: "layers:f_vjp"}}
        experiments:
          - {name: e, function: f, inputs: {x: 1.0}}
        """)
    for args in (["--safe", path, "--out", project / "out"], ["validate", "--safe", path]):
        ran = invoke(*args)
        assert ran.exit_code == 2 and "code.yaml:2:25: functions.f.python" in ran.output and "safe mode" in ran.output
    assert not (project / "out").exists()

"""Hostile inputs found in round 7 (docs/security.md): each test fails on the code before its fix.

The attacker controls a spec file only. Sizes that each stay within their own
limit must not add up to unbounded memory or time, and whatever is refused is
an error at its place (exit 2), never a traceback or a "gradrun bug".
"""

from pathlib import Path

import pytest

from gradrun import spec
from gradrun.limits import (MAX_EVALUATION_ELEMENTS, MAX_EVALUATION_WORK, MAX_FILE_INPUT_ELEMENTS,
                            MAX_FILE_REPORT_ROWS)
from cli_helpers import ENV, write
from cli_helpers import invoke as run_command


def invoke(*args):
    return run_command(*args, env=ENV)


def only_issue(path):
    issues = spec.validate(path)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


# --- sizes that add up ---------------------------------------------------------------------------


def test_many_large_intermediate_values_stop_before_they_are_computed(project):
    """48 elementwise functions of a 10-million-element broadcast: each value within its limit,
    together 3.8 GB; refused at the call that passes the evaluation's limit."""
    functions = ["sin", "cos", "exp", "tanh", "sigmoid", "softplus", "abs", "square"]
    terms = " + ".join(f"{f}(b(x) * {k}.5)" for k in range(6) for f in functions)
    path = write(project, "s.yaml", f"""\
        version: 1
        functions:
          b: "broadcast_to(reshape(x, (1, 1000)), (10000, 1000))"
        experiments:
          - name: e
            expr: "sum({terms})"
            inputs: {{x: {{shape: [1000]}}}}
        """)
    issue = only_issue(path)
    assert f"more than {MAX_EVALUATION_ELEMENTS} elements" in issue.message and issue.line == 6 and issue.column > 11
    assert "split the experiment" in issue.hint


@pytest.mark.parametrize("joined", ["stack", "concatenate"])
def test_a_join_of_many_large_inputs_is_sized_before_it_is_built(project, joined):
    """400 copies of a million elements: refused from the shapes, without allocating 3.2 GB."""
    copies = ", ".join(["X"] * 400)
    path = write(project, "s.yaml", f"""\
        version: 1
        experiments:
          - {{name: e, expr: "sum({joined}([{copies}], axis=0))", inputs: {{X: {{shape: [1000000], init: zeros}}}}}}
        """)
    issue = only_issue(path)
    assert "more than" in issue.message and "elements" in issue.message


def test_matrix_products_are_bounded_in_work(project):
    """(3000, 3000) @ (3000, 3000): every value within its limits, 2.7e10 multiply-adds."""
    path = write(project, "s.yaml", """\
        version: 1
        experiments:
          - name: e
            expr: "sum(broadcast_to(a, (3000, 3000)) @ broadcast_to(b, (3000, 3000)))"
            inputs: {a: {shape: [3000], init: zeros}, b: {shape: [3000], init: zeros}}
        """)
    assert f"{MAX_EVALUATION_WORK:.0e} multiply-adds" in only_issue(path).message


def test_the_inputs_of_a_whole_file_are_bounded(project):
    """A thousand experiments of a million elements each: 8 GB, each input within its limit."""
    rows = "".join(f"  - {{name: e{i}, expr: 'sum(X)', inputs: {{X: {{shape: [1000000], init: zeros}}}}}}\n"
                   for i in range(1000))
    path = write(project, "s.yaml", "version: 1\nexperiments:\n" + rows)
    issue = only_issue(path)
    assert f"more than {MAX_FILE_INPUT_ELEMENTS} elements" in issue.message
    assert issue.path.endswith("inputs.X") and issue.line == 3 + MAX_FILE_INPUT_ELEMENTS // 1_000_000


def test_the_inputs_of_a_whole_file_are_bounded_under_j_too(project):
    """-j's workers resolve their own experiments: the main process tells the file's size from the document."""
    rows = "".join(f"  - {{name: e{i}, expr: 'sum(X)', inputs: {{X: {{shape: [1000, 1000], init: zeros}}}}}}\n"
                   for i in range(25))
    path = write(project, "s.yaml", "version: 1\nexperiments:\n" + rows)
    result = invoke(path, "-j", "2", "--out", project / "out")
    assert result.exit_code == 2 and f"more than {MAX_FILE_INPUT_ELEMENTS} elements" in result.output
    assert not (project / "out" / "s.csv").exists()


def test_the_report_rows_of_a_whole_file_are_bounded(project):
    rows = "".join(f"  - {{name: e{i}, expr: 'sum(X) * y', check: full, wrt: [X], "
                   f"inputs: {{X: {{shape: [1000], init: zeros}}}}, sweep: {{y: {{linspace: [0, 1, 2000]}}}}}}\n"
                   for i in range(6))
    path = write(project, "s.yaml", "version: 1\nexperiments:\n" + rows)
    issue = only_issue(path)
    assert f"more than {MAX_FILE_REPORT_ROWS} rows" in issue.message and issue.path == "experiments[5]"


def test_running_out_of_memory_while_loading_is_not_called_a_bug(project, monkeypatch):
    path = write(project, "s.yaml", "version: 1\nexperiments:\n  - {name: e, function: square, inputs: {x: 2.0}}\n")

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.63 MiB")

    monkeypatch.setattr(spec, "load_spec", no_memory)
    result = invoke("validate", path)
    assert result.exit_code == 2 and "not enough memory" in result.output and "bug" not in result.output
    assert ":1:1:" in result.output


# --- text that reads as something else -----------------------------------------------------------


@pytest.mark.parametrize("expr, char", [
    ("\U0001d465 * 2", "\U0001d465"),  # mathematical italic x: Python's parser reads it as x
    ("\uff53\uff49\uff4e(x)", "\uff53"),  # full-width sin: Python's parser reads it as sin
    ("x\u200b + 1", "\u200b"),  # zero-width space
    ("x + \u00e9", "\u00e9"),
])
def test_an_expression_is_ascii(project, expr, char):
    path = write(project, "s.yaml", f'version: 1\nexperiments:\n  - {{name: e, expr: "{expr}", inputs: {{x: 2.0}}}}\n')
    issue = only_issue(path)
    assert f"U+{ord(char):04X}" in issue.message and "not allowed in an expression" in issue.message
    assert issue.column == 22 + expr.index(char)


def test_every_invisible_format_character_is_shown_escaped():
    import unicodedata

    from gradrun.model import one_line

    kept = [hex(c) for c in range(0x110000)
            if unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs", "Zl", "Zp") and one_line(chr(c)) == chr(c)]
    assert kept == []


def test_a_byte_order_mark_inside_a_key_is_visible_in_the_message(project):
    path = write(project, "s.yaml", "version: 1\n\ufeffexperiments:\n  - {name: e, function: square, inputs: {x: 2.0}}\n")
    result = invoke("validate", path)
    assert result.exit_code == 2 and "'\\ufeffexperiments'" in result.output and "\ufeff" not in result.output


# --- one file written twice ----------------------------------------------------------------------


def test_experiments_whose_names_meet_after_sanitizing_or_ignoring_case_get_pictures_of_their_own(project):
    pytest.importorskip("matplotlib")
    path = write(project, "s.yaml", """\
        version: 1
        experiments:
          - {name: a+b, function: square, inputs: {x: 1.0}}
          - {name: a_b, function: square, inputs: {x: 2.0}}
          - {name: A_B, function: square, inputs: {x: 3.0}}
        """)
    assert invoke(path, "--out", project / "out").exit_code == 0
    ran = invoke("plot", project / "out" / "s.csv", "--out", project / "plots")
    assert ran.exit_code == 0, ran.output
    names = sorted(p.name.casefold() for p in (project / "plots").iterdir())
    assert len(names) == len(set(names)) == 3, names


def test_two_specs_whose_names_differ_only_in_case_would_write_one_report(project):
    for name in ("run.yaml", "RUN.yaml"):
        write(project, name, "version: 1\nexperiments:\n  - {name: e, function: square, inputs: {x: 2.0}}\n")
    result = invoke(project / "run.yaml", project / "RUN.yaml", "--out", project / "out")
    assert result.exit_code == 2 and "would both write run.csv" in result.output
    assert not (project / "out").exists()


def test_python_dash_m_does_not_import_a_checkouts_library_names(project):
    """``python -m gradrun`` puts the current directory first on sys.path: yaml.py or json.py there
    would run under --no-code, in place of the library gradrun imports after starting."""
    import subprocess
    import sys

    for name in ("yaml", "json", "click", "jsonschema"):
        (project / f"{name}.py").write_text("import sys\nsys.stderr.write('PWNED\\n')\n")
    path = write(project, "s.yaml", "version: 1\nexperiments:\n  - {name: e, function: square, inputs: {x: 2.0}}\n")
    runner = str(Path(__file__).resolve().parents[1] / "runner")
    env = {**ENV, "PYTHONPATH": runner}
    ran = subprocess.run([sys.executable, "-m", "gradrun", "--no-code", str(path), "--out", str(project / "out")],
                         cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "PWNED" not in ran.stdout + ran.stderr, ran.stderr


# --- work that grows faster than the file -------------------------------------------------------


def _seconds(callable_):
    import time

    start = time.process_time()
    callable_()
    return time.process_time() - start


def test_thousands_of_input_names_are_checked_in_linear_time(project):
    """wrt, parameters and inputs were compared list against list: 20 000 names took minutes."""
    names = [f"w{i}" for i in range(20000)]
    listed = ", ".join(names)
    path = write(project, "s.yaml", f"version: 1\nfunctions:\n  f: {{params: [{listed}], expr: 'w0'}}\nexperiments:\n"
                          f"  - {{name: e, function: f, inputs: {{{', '.join(n + ': 1.0' for n in names)}}}, "
                          f"wrt: [{listed}]}}\n")
    assert _seconds(lambda: spec.validate(path)) < 8


def test_checking_shapes_does_not_render_every_subexpression(project, monkeypatch):
    """Each node's message text was rendered as it was evaluated: time quadratic in an expression's size
    (999 experiments of 120 operations: 47 s). Text is rendered only for a message."""
    from gradrun import tree

    rendered = []
    real = tree.render
    monkeypatch.setattr(tree, "render", lambda *a, **k: rendered.append(1) or real(*a, **k))
    terms = "+".join(f"sin(x*{j}.5)" for j in range(60))
    calls = "+".join(f"g(x*{j}.5)" for j in range(25))
    path = write(project, "s.yaml", f"version: 1\nfunctions:\n  g: '{terms}'\n  h: '{calls}'\nexperiments:\n"
                          "  - {name: e, function: h, inputs: {x: 1.0}}\n")
    assert spec.validate(path) == [] and len(rendered) < 10


@pytest.mark.parametrize("inputs", ["{X: {shape: [3], seed: 2.0}}", "{X: {shape: [3], init: randn, seed: 2.0}}"])
def test_a_seed_written_as_a_float_is_a_spec_error_as_in_settings(project, inputs):
    """JSON Schema's integer admits 2.0; numpy's generators do not: this was a 'gradrun bug'."""
    path = write(project, "s.yaml", f"version: 1\nexperiments:\n  - {{name: e, expr: 'sum(X)', inputs: {inputs}}}\n")
    issue = only_issue(path)
    assert "seed must be an integer" in issue.message and issue.line == 3

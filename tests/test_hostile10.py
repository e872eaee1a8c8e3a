"""Hostile specs of round 10 (docs/security.md): each test fails on the code before its fix.

The attacker controls a spec file only; the user runs `gradrun spec.yaml`. A spec of
built-ins and expressions must end in bounded time and memory, and a mistake in it
must be an error at its place (exit 2), in gradrun's words rather than numpy's.
What got through before this round:

- a second-order screen that could not localize fell back to every Hessian column,
  whatever its size: `MemoryError: Unable to allocate 7.28 TiB` at a million elements,
  four million report rows at two thousand (the row limit had counted 250 000);
- localizing a screen where f itself is not finite, or where one analytic entry is
  infinite, spent the whole work limit on halves that all disagree (36 s, 46 s);
"""

import pytest

from gradrun import runner, screen
from cli_helpers import write
from test_hostile9 import experiment, invoke, refused


def failing_rows(project, body: str) -> list:
    """The report rows of a spec of one experiment (``body``) whose check fails (exit 1)."""
    path = write(project, "s.yaml", experiment(body))
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 1 and "Traceback" not in ran.output, ran.output
    return (project / "out" / "s.csv").read_text().splitlines()[1:]


# --- screens that cannot be localized: bounded in time, rows and memory -----------------------------


def _group_tests(monkeypatch):
    seen = []
    real = screen.group_test

    def spy(v, disagrees, rows=None, most=None):
        found = real(v, disagrees, rows, most)
        seen.append(found)
        return found

    monkeypatch.setattr(screen, "group_test", spy)
    return seen


def test_a_second_order_screen_that_cannot_localize_keeps_its_verdict_within_the_row_limit(project, monkeypatch):
    """exp overflowing: every column disagrees, and the check fell back to the whole Hessian
    (a million elements: 7.28 TiB; two thousand: four million rows, 80 s). Now the screen stands."""
    monkeypatch.setattr(runner, "MAX_REPORT_ROWS", 100_000, raising=False)  # 600 x 600 entries is more
    rows = failing_rows(project, "expr: sum(exp(X))\norder: 2\n"
                                 "inputs: {X: {shape: [600], init: uniform, low: 700, high: 720}}")
    assert len(rows) == screen.SCREEN_DIRECTIONS


def test_a_screen_where_f_is_not_finite_does_not_localize(project, monkeypatch):
    """Every half of every direction holds f's NaN: localizing spent the work limit (36 s at a
    million elements) to learn nothing. Every element is looked at instead, within the work limit."""
    seen = _group_tests(monkeypatch)
    rows = failing_rows(project, "expr: sum(softmax(exp(X)))\ncheck: screen\n"
                                 "inputs: {X: {shape: [2000], init: uniform, low: 700, high: 720}}")
    assert seen == [] and len(rows) == screen.SCREEN_DIRECTIONS + 2000


SQRT_AT_0 = "expr: sqrt(broadcast_to(X, (2, 3000)))\ninputs: {X: {shape: [3000], init: arange, start: 0, step: 1}}"


def test_an_infinite_analytic_entry_is_localized_at_once(project, monkeypatch):
    """sqrt'(0) is infinite: 0 * inf made every half's analytic side NaN, so every half
    disagreed and localizing gave up after the work limit (46 s at 3000 x 3 million)."""
    seen = _group_tests(monkeypatch)
    rows = failing_rows(project, SQRT_AT_0)
    assert seen == [[]]  # the other elements agree
    elements = [r for r in rows if ",X[0]," in r]
    assert len(elements) == 2 * 3000 and all(",inf," in r for r in elements[:1])


def test_one_element_of_a_huge_output_does_not_add_millions_of_rows(project, monkeypatch):
    """The element a screen localizes was checked over its whole Jacobian column: ten million
    rows a point for an output of ten million, which the row limits had not counted."""
    monkeypatch.setattr(runner, "MAX_REPORT_ROWS", 5000, raising=False)  # the column has 6000 entries
    assert len(failing_rows(project, SQRT_AT_0)) == screen.SCREEN_DIRECTIONS


def test_the_points_of_a_sweep_share_the_rows_a_failed_screen_may_add(project, monkeypatch):
    """Each point of a sweep could add MAX_REPORT_ROWS rows after its screen failed: a sweep of
    5000 points of one localized element, 100 000 outputs each, was 5e8 rows (tens of GB)."""
    monkeypatch.setattr(runner, "MAX_REPORT_ROWS", 12_000, raising=False)
    body = SQRT_AT_0.replace("(2, 3000)))", "(2, 3000))) * s") + "\nwrt: [X]\nsweep: {s: [1.0, 2.0, 3.0]}"
    assert len(failing_rows(project, body.replace("[1.0, 2.0, 3.0]", "[1.0]"))) == 4 + 6000
    assert len(failing_rows(project, body)) == 3 * 4  # 4000 rows a point: the screens stand


def test_entries_where_f_is_not_finite_are_not_measured_again(project, monkeypatch):
    """A full check of 2000 elements of f overflowing took 10 s (0.2 s where f is finite): every
    NaN entry was measured again at step after step, then called nan, as f's NaN makes it."""
    from gradrun import measure

    again = []
    monkeypatch.setattr(measure, "remeasure", lambda *a, **k: again.append(1))
    rows = failing_rows(project, "expr: sum(softmax(exp(X)))\ncheck: full\n"
                                 "inputs: {X: {shape: [2000], init: uniform, low: 700, high: 720}}")
    assert len(rows) == 2000 and all(",nan," in r for r in rows) and again == []


# --- mistakes said at their place, in gradrun's words ------------------------------------------------


SHAPE_32 = "[" + ", ".join(["1"] * 32) + "]"


@pytest.mark.parametrize("body, place, fragment", [
    # np.broadcast stops at 32 dimensions: "could not load: RuntimeError ... (this is a gradrun bug)"
    ("expr: sum(broadcast_to(X, (" + "1, " * 34 + "2)))\ninputs: {X: [1.0, 2.0]}", "4:31",
     "broadcast_to's shape must be a tuple of at most 32 integers"),
    # numpy's "maximum supported dimension for an ndarray is currently 64, found 601", clipped away
    ("expr: sum(reshape(X, (" + "1, " * 600 + "2)))\ninputs: {X: [1.0, 2.0]}", "4:26",
     "reshape's shape must be a tuple of at most 32 integers"),
    # validated, then 33 dimensions at run time
    ("expr: sum(stack([X, X]))\ninputs: {X: {shape: " + SHAPE_32 + "}}", "4:15",
     "in stack([X, X]): the result would have 33 dimensions, more than 32"),
    # one_hot rounded what it was given: class 2 of 1.7, silently
    ("expr: sum(one_hot(x, 3) * w)\ninputs: {x: 1.7, w: [1.0, 2.0, 3.0]}\nwrt: [w]", "4:15",
     "one_hot's labels must be an integer input, but input 'x' is a float input"),
    ("expr: sum(one_hot(y * 2, 3) * w)\ninputs: {y: {integer: [1]}, w: [1.0, 2.0, 3.0]}", "4:15",
     "one_hot's labels must be an integer input, but they are computed"),
    # a label float64 cannot hold: "labels run from 1e+20 to 1e+20"; 2**53 + 1 became 2**53
    ("expr: sum(one_hot(y, 3) * w)\ninputs: {y: {integer: [99999999999999999999]}, w: [1.0, 2.0, 3.0]}", "5:27",
     "label 99999999999999999999 is beyond 2**53"),
    ("expr: sum(where(m, w, 0))\ninputs: {m: {integer: [9007199254740993, 1]}, w: [1.0, 2.0]}", "5:27",
     "would make it 9007199254740992"),
    ("expr: sum(where(m, w, 0))\ninputs: {m: {integer: [16777217, 1]}, w: [1.0, 2.0]}\ndtype: float32", "5:27",
     "label 16777217 is beyond 2**24: float32"),  # user code got 16777216, and once 16777221
    # checked in float32, 1e39 is inf: every entry nan, a FAIL naming no cause
    ("function: square\ndtype: float32\ninputs: {x: 1e39}", "6:17", "values beyond float32's range"),
    ("function: square\ndtype: float32\nsweep: {x: [1.0, 1e39]}", "6:16", "values beyond float32's range"),
    # read as 16 by Python's parser, where the spec's own values are decimal only
    ("expr: x * 0x10\ninputs: {x: 1.0}", "4:15", "'0x10' is not a decimal number"),
    ("expr: sum(reshape(X, (0b10, 1)))\ninputs: {X: [1.0, 2.0]}", "4:27", "'0b10' is not a decimal number"),
])
def test_a_mistake_is_named_at_its_place_in_gradruns_words(project, body, place, fragment):
    path = write(project, "bad.yaml", experiment(body))
    ran = invoke(path, "--out", project / "out")
    refused(ran, fragment, f"bad.yaml:{place}:")
    assert "numpy" not in ran.output and "ndarray" not in ran.output and not (project / "out").exists()


def test_a_long_call_does_not_push_the_cause_out_of_the_message(project):
    """The message is clipped at 500 characters: `in <the call>` came first, 1900 of them."""
    names = ", ".join(["X"] * 300)
    path = write(project, "long.yaml", experiment(f"expr: sum(X @ concatenate([{names}]))\ninputs: {{X: [1.0, 2.0]}}"))
    ran = invoke(path, "--out", project / "out")
    refused(ran, "long.yaml:4:", "does not fit")
    assert len(ran.output.splitlines()[0]) < 500


def test_a_picture_is_never_named_as_a_windows_device():
    """`nul.x-error.png` is the null device on Windows: the picture vanished."""
    from gradrun.plot_common import picture_names

    names = picture_names(["nul.x", "Com1.b", "console", "_nul.x"])
    assert names == {"nul.x": "_nul.x", "Com1.b": "_Com1.b", "console": "console", "_nul.x": "_nul.x-2"}


# --- where a run writes -------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [[], ["--out", "results/ci"], ["--out", "out", "--junit", "results/j.xml"]])
def test_a_results_folder_that_is_a_symlink_out_of_the_project_is_not_written_through(project, tmp_path, options):
    """A pull request adding `results -> ~/somewhere` had the reports (and a run record) written
    there, while the summary said "wrote results/s.csv". Reads already refused such links."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "ci").mkdir(parents=True)
    (project / "results").symlink_to(elsewhere)
    path = write(project, "s.yaml", experiment("function: square\ninputs: {x: 1.0}"))
    refused(invoke(path, *options), "which a symlink leads to", "outside the project")
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["ci"] and not (project / "out").exists()
    # named for what it is, the folder is the user's choice; a link inside the project is followed
    assert invoke(path, "--out", elsewhere).exit_code == 0 and (elsewhere / "s.csv").exists()
    (project / "inside").mkdir()
    (project / "link").symlink_to(project / "inside")
    assert invoke(path, "--out", "link").exit_code == 0 and (project / "inside" / "s.csv").exists()


# --- files the pytest plugin looks at -------------------------------------------------------------------


def test_the_pytest_plugin_does_not_open_a_pipe_or_a_link_out_of_the_project(project, tmp_path):
    """`pytest specs/` asked every .yaml below specs/ whether it looks like a spec with a plain
    open(): a named pipe held the collection forever, and a symlink to ~/.netrc was read."""
    import os
    import threading

    from gradrun.pytest_plugin import looks_like_spec

    secret = tmp_path / "netrc"
    secret.write_text("version: 1\nexperiments: []\n")  # whatever it holds, it is not read
    write(project, "specs/ok.yaml", "version: 1\nexperiments: []\n")
    os.mkfifo(project / "specs" / "pipe.yaml")
    (project / "specs" / "link.yaml").symlink_to(secret)
    seen = {}
    asked = threading.Thread(target=lambda: seen.update(
        {name: looks_like_spec(project / "specs" / name) for name in ("ok.yaml", "pipe.yaml", "link.yaml")}),
        daemon=True)
    asked.start()
    asked.join(20)
    assert seen == {"ok.yaml": True, "pipe.yaml": False, "link.yaml": False}


# --- reports read back as written ------------------------------------------------------------------------


@pytest.mark.parametrize("name, inputs, place, what", [
    ("NA", "{x: 1.0}", "experiments[0].name", "a missing value"),  # "no activation": NaN in pandas
    ("nan", "{x: 1.0}", "experiments[0].name", "a missing value"),
    ("1.0", "{x: 1.0}", "experiments[0].name", "a number"),  # and "1" beside it: one experiment 1.0
    ("1e5", "{x: 1.0}", "experiments[0].name", "a number"),
    ("true", "{x: 1.0}", "experiments[0].name", "a boolean"),
    ("e", "{NA: 1.0}", "experiments[0].inputs.NA", "a missing value"),
    ("e", "{inf: 1.0}", "experiments[0].inputs.inf", "a number"),
    ("e", "{x: 1.0}, sweep: {true: [1.0]}", "experiments[0].sweep.true", "a boolean"),  # the key as written
])
def test_a_name_pandas_would_read_back_as_something_else_is_refused(project, name, inputs, place, what):
    """The report is read with pandas.read_csv and no arguments: experiments named NA and nan
    both came back as NaN, 1 and 1.0 as one number 1.0, an input named NA as NaN."""
    path = write(project, "n.yaml", "version: 1\nexperiments:\n"
                                    f"  - {{name: '{name}', function: square, inputs: {inputs}}}\n")
    refused(invoke(path, "--out", project / "out"), f"{place}:", f"would be read back from the report as {what}")
    assert not (project / "out").exists()


# --- verdicts at any step ------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", ["step: 1e308", "sweep: {step: {logspace: [-320, 300, 12]}}"])
def test_a_correct_gradient_passes_at_a_step_whose_measurement_overflows(project, settings):
    """sin at a complex step of 1e308: the measurement was inf, never measured again (only a
    failing or vague entry was), and the entry was 'nan', a failure of a correct gradient."""
    path = write(project, "s.yaml", experiment(f"function: sin\ninputs: {{x: 1.0}}\n{settings}"))
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 0 and "PASS" in ran.output, ran.output


def test_user_code_gets_only_the_labels_the_spec_gives(project):
    """The probe for float32-valued code moved every input by a relative 3e-7, labels too: label
    5 000 000 reached the code once as 5 000 001 (an embedding of that size: an index error)."""
    write(project, "layers.py", """\
        import numpy as np
        def f(x, y):
            open("labels.txt", "a").write(f"{int(np.asarray(y).ravel()[0])}\\n")
            return x * 2
        def f_vjp(g, x, y):
            return (2 * g, None)
        """)
    path = write(project, "l.yaml", """\
        version: 1
        functions:
          f: {python: "layers:f", vjp: "layers:f_vjp"}
        experiments:
          - {name: e, function: f, inputs: {x: 1.0, y: {integer: [5000000]}}}
        """)
    assert invoke(path, "--out", project / "out").exit_code == 0
    assert set((project / "labels.txt").read_text().split()) == {"5000000"}

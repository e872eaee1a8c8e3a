"""Hostile specs and misbehaving code (issue 12): a spec runs only its owner's code, every bad input gets a clear error.

Each test plays an attacker who controls only the spec file (and, where said,
files beside it), or a careless user; see docs/security.md for the rule tested.
"""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradrun
from gradrun import baseline, cli, spec, usercode
from cli_helpers import ENV, PYTEST, invoke, write


# --- a deserializer fed bytes spelled by the input floats ----------------------------------


class _Touch:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def payload_floats(marker: Path) -> list:
    """Floats whose bytes are a pickle that runs ``touch MARKER`` when loaded."""
    data = pickle.dumps(_Touch(marker), protocol=0)  # ASCII: every float is finite
    data += b"." * (-len(data) % 8)  # bytes past the STOP opcode are ignored
    values = np.frombuffer(data, dtype="<f8")
    assert np.isfinite(values).all()
    return [float(v) for v in values]


def payload_spec(folder: Path, marker: Path) -> Path:
    floats = ", ".join(repr(v) for v in payload_floats(marker))
    return write(folder, "attack.yaml", f"""\
        version: 1
        functions:
          load: {{python: "pickle:loads", vjp: "pickle:loads"}}
        experiments:
          - name: attack
            function: load
            inputs: {{data: [{floats}]}}
        """)


def test_the_payload_is_live_when_called_directly(tmp_path):
    """The control: the spec's floats do run a command when handed to pickle.loads."""
    marker = tmp_path / "control-marker"
    pickle.loads(np.asarray(payload_floats(marker), dtype=np.float64))
    assert marker.exists()


def test_a_deserializer_named_by_a_spec_runs_nothing_under_validate_and_run(project):
    marker = project / "marker"
    path = payload_spec(project, marker)
    checked = invoke("validate", path)
    assert checked.exit_code == 2
    assert "attack.yaml:3:" in checked.output and "pickle" in checked.output
    assert "--allow-module pickle" in checked.output
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 2 and not (project / "out").exists()
    assert not marker.exists()


def test_a_deserializer_named_by_a_spec_runs_nothing_under_the_pytest_plugin(project):
    marker = project / "marker"
    path = payload_spec(project, marker)
    run = subprocess.run(PYTEST + [str(path)],
                         cwd=project, env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "not the project's own code" in run.stdout
    assert not marker.exists()


# --- the trust rule, attack by attack -------------------------------------------------------


@pytest.mark.parametrize("ref", ["os:system", "builtins:eval", "builtins:exec", "pickle:loads",
                                 "subprocess:getoutput", "numpy:load", "marshal:loads", "gradrun.cli:main"])
def test_standard_library_builtins_and_installed_packages_are_refused(project, ref):
    with pytest.raises(usercode.Refused, match="not the project's own code"):
        usercode.resolve(ref, project)


@pytest.mark.parametrize("ref", ["..os:system", ".layers:f", "layers:os.system", "layers:f.__globals__",
                                 "/etc/passwd:x", "layers", "layers:", "a..b:f", "layers:__init__"])
def test_malformed_references_are_refused_before_any_import(project, ref):
    write(project, "layers.py", "import os\ndef f(x): return x\n")
    with pytest.raises(usercode.Refused):
        usercode.resolve(ref, project)


def test_a_name_a_trusted_module_merely_imported_is_refused(project):
    write(project, "layers.py", """\
        from os import system
        from pickle import loads
        import functools
        spread = functools.partial(loads)
        def dense(x): return x
        """)
    assert usercode.resolve("layers:dense", project)(3) == 3
    for name in ("system", "loads", "spread"):
        with pytest.raises(usercode.Refused, match="not defined in the project's own code"):
            usercode.resolve(f"layers:{name}", project)


def test_a_symlink_out_of_the_project_is_refused(project, tmp_path):
    elsewhere = write(tmp_path / "elsewhere", "evil.py", "def f(x): return x\n")
    (project / "evil.py").symlink_to(elsewhere)
    (project / "os_copy.py").symlink_to(Path(os.__file__))
    (project / "pkg").symlink_to(elsewhere.parent, target_is_directory=True)
    for ref in ("evil:f", "os_copy:system", "pkg.evil:f"):
        with pytest.raises(usercode.Refused, match="not the project's own code|not found"):
            usercode.resolve(ref, project)


@pytest.mark.parametrize("folder", [".venv/lib/python3/site-packages", "site-packages", "venv", "dist-packages"])
def test_installed_packages_inside_the_project_are_refused(project, folder):
    write(project / folder, "helper.py", "def f(x): return x\n")
    sub = folder.replace("/", ".").lstrip(".")
    with pytest.raises(usercode.Refused):
        usercode.resolve("helper:f", project / folder)  # a spec placed in the installed folder
    if sub.isidentifier() or all(p.isidentifier() for p in sub.split(".")):
        with pytest.raises(usercode.Refused):
            usercode.resolve(f"{sub}.helper:f", project)


def test_a_module_outside_the_spec_folder_and_the_project_is_refused(project, tmp_path):
    outside = write(tmp_path / "outside", "helper.py", "def f(x): return x\n").parent
    sys.path.insert(0, str(outside))  # importable, but not the project's
    try:
        with pytest.raises(usercode.Refused, match="not the project's own code"):
            usercode.resolve("helper:f", project)
    finally:
        sys.path.remove(str(outside))


def test_the_project_and_the_spec_folder_resolve(project, tmp_path):
    write(project, "tools/ops.py", "def f(x): return 2 * x\n")
    spec_dir = tmp_path / "specs"
    write(spec_dir, "beside.py", "def g(x): return 3 * x\n")
    assert usercode.resolve("tools.ops:f", spec_dir)(1) == 2  # the project (cwd)
    assert usercode.resolve("beside:g", spec_dir)(1) == 3  # beside the spec


def test_allow_module_lets_the_user_widen_the_rule(project):
    policy = usercode.policy_from(allow_modules=["math"])
    assert usercode.resolve("math:sin", project, policy)(0.0) == 0.0
    with pytest.raises(usercode.Refused):
        usercode.resolve("cmath:sin", project, policy)
    with pytest.raises(ValueError):
        usercode.policy_from(allow_modules=["not a module"])


def test_no_code_refuses_even_the_users_own_code(project):
    write(project, "layers.py", "def f(x): return x\n")
    with pytest.raises(usercode.Refused, match="--no-code"):
        usercode.resolve("layers:f", project, usercode.NO_CODE)


EXAMPLE = Path(__file__).parents[1] / "experiments" / "my-layer.yaml"


def test_no_code_on_the_cli_reports_each_reference_at_its_line(monkeypatch):
    monkeypatch.chdir(EXAMPLE.parents[1])
    checked = invoke("validate", "--no-code", "experiments/my-layer.yaml")
    assert checked.exit_code == 2
    assert "experiments/my-layer.yaml:10:" in checked.output and "--no-code" in checked.output
    assert invoke("validate", "experiments/my-layer.yaml").exit_code == 0
    env_checked = invoke("validate", "experiments/my-layer.yaml", env={"GRADRUN_NO_CODE": "1"})
    assert env_checked.exit_code == 2


def test_no_code_runs_a_spec_of_built_ins(project):
    path = write(project, "plain.yaml", """\
        version: 1
        experiments:
          - {name: s, expr: "sin(x)", inputs: {x: 0.5}}
        """)
    assert invoke(path, "--no-code", "--out", project / "out").exit_code == 0


def test_the_pytest_plugin_follows_the_ini_policy(project):
    write(project, "layers.py", "def f(x): return x * x\ndef f_vjp(g, x): return 2 * x * g\n")
    path = write(project, "own.yaml", """\
        version: 1
        functions: {f: {python: "layers:f", vjp: "layers:f_vjp"}}
        experiments:
          - {name: own, function: f, inputs: {x: 1.5}}
        """)

    def pytest_in(ini):
        (project / "pytest.ini").write_text("[pytest]\n" + ini)
        return subprocess.run(PYTEST + ["-q", str(path)],
                              cwd=project, env=ENV, capture_output=True, text=True, timeout=120)

    assert pytest_in("").returncode == 0
    refused = pytest_in("gradrun_no_code = true\n")
    assert refused.returncode != 0 and "--no-code" in refused.stdout


# --- modules isolated per spec folder ----------------------------------------------------------


def test_the_same_module_name_beside_two_specs_loads_twice(project):
    for folder, value in (("a", 1.0), ("b", 2.0)):
        write(project / folder, "helpers.py", f"SCALE = {value}\n")
        write(project / folder, "layers.py", """\
            import helpers
            def f(x): return helpers.SCALE * x
            def f_vjp(g, x): return helpers.SCALE * g
            """)
        write(project / folder, f"{folder}.yaml", """\
            version: 1
            functions: {f: {python: "layers:f", vjp: "layers:f_vjp"}}
            experiments:
              - {name: f, function: f, inputs: {x: 1.0}}
            """)
    fa = usercode.resolve("layers:f", project / "a")
    fb = usercode.resolve("layers:f", project / "b")
    assert (fa(1.0), fb(1.0)) == (1.0, 2.0)
    assert "helpers" not in sys.modules
    ran = invoke(project / "a" / "a.yaml", project / "b" / "b.yaml", "--out", project / "out")
    assert ran.exit_code == 0, ran.output
    import pandas as pd

    values = {stem: pd.read_csv(project / "out" / f"{stem}.csv")["output_value"][0] for stem in ("a", "b")}
    assert values == {"a": 1.0, "b": 2.0}


# --- user code that misbehaves at run time ------------------------------------------------


MISBEHAVING = """\
    import sys
    import numpy as np
    def quits(x):
        if np.any(x > 2):  # loading calls it at the first point; the second quits
            print("user output on stdout")
            sys.exit(0)
        return x
    def chatty(x):
        print("user output on stdout")
        return x * x
    def chatty_vjp(g, x): return 2 * x * g
    def sneaky(x):
        if np.any(x > 2):
            raise ValueError("line one\\n::error::pwned\\n::add-mask::secret")
        return x
    def same(g, x): return g
    def complex_later(x): return x * (1 + 1j) if np.any(x > 2) else x
    def complex_vjp(g, x): return g * 1j
    """

MISBEHAVING_SPEC = """\
    version: 1
    functions:
      quits: {python: "code:quits", vjp: "code:same"}
      chatty: {python: "code:chatty", vjp: "code:chatty_vjp"}
      sneaky: {python: "code:sneaky", vjp: "code:same"}
      cx: {python: "code:complex_later", vjp: "code:same"}
      cx_vjp: {python: "code:chatty", vjp: "code:complex_vjp"}
    experiments:
      - {name: first, function: chatty, inputs: {x: 1.5}}
      - {name: quitter, function: quits, sweep: {x: [1.5, 2.5]}}
      - {name: sneak, function: sneaky, sweep: {x: [1.5, 2.5]}}
      - {name: complex-forward, function: cx, sweep: {x: [1.5, 2.5]}}
      - {name: complex-vjp, function: cx_vjp, inputs: {x: 1.5}}
      - {name: last, expr: "sin(x)", inputs: {x: 0.5}}
    """


def test_sys_exit_in_user_code_is_an_error_of_its_experiment_only(project):
    write(project, "code.py", MISBEHAVING)
    path = write(project, "bad.yaml", MISBEHAVING_SPEC)
    junit = project / "junit.xml"
    ran = invoke(path, "--out", project / "out", "--junit", junit, "--format", "json")
    assert ran.exit_code == 1, ran.output
    summary = json.loads(ran.stdout)  # user prints never reach stdout
    text = json.dumps(summary)
    assert "quitter" in text and "SystemExit" in text
    assert "code:complex_later returned complex values for real inputs" in text
    assert "code:complex_vjp returned complex values for real inputs" in text
    import pandas as pd

    report = pd.read_csv(project / "out" / "bad.csv")
    assert {"first", "last"} <= set(report.experiment)  # the others ran, and are in the report
    assert report[report.experiment.isin(["quitter", "sneak", "complex-forward"])].point.max() == 0
    assert junit.exists() and "SystemExit" in junit.read_text()


def test_user_messages_cannot_become_workflow_commands(project):
    write(project, "code.py", MISBEHAVING)
    path = write(project, "bad.yaml", MISBEHAVING_SPEC)
    ran = invoke(path, "--out", project / "out", env={"GITHUB_ACTIONS": "true"})
    assert ran.exit_code == 1
    lines = ran.output.splitlines()
    assert not any(line.lstrip().startswith(("::error::", "::add-mask::")) for line in lines)
    assert any(line.startswith("::error file=") for line in lines)  # gradrun's own annotation stays


def test_keyboard_interrupt_still_stops_the_run(project):
    write(project, "code.py", """\
        import numpy as np
        def f(x):
            if np.any(x > 2):
                raise KeyboardInterrupt
            return x
        def f_vjp(g, x): return g
        """)
    path = write(project, "stop.yaml", """\
        version: 1
        functions: {f: {python: "code:f", vjp: "code:f_vjp"}}
        experiments:
          - {name: f, function: f, sweep: {x: [1.0, 3.0]}}
        """)
    assert spec.validate(path) == []  # the first point loads; the second interrupts
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == cli.EXIT_INTERRUPTED and not (project / "out" / "stop.csv").exists()


def test_a_spec_string_cannot_start_a_line_in_an_issue(project):
    path = write(project, "inject.yaml", """\
        version: 1
        experiments:
          - name: a
            expr: "sin(x)"
            inputs: {x: 1.0}
            "bad\\n::error::pwned": 1
        """)
    checked = invoke("validate", path)
    assert checked.exit_code == 2
    assert not any(line.startswith("::") for line in checked.output.splitlines())


# --- numbers at the boundary ----------------------------------------------------------------


PLAIN = """\
    version: 1
    experiments:
      - name: a
        expr: "sin(x)"
        inputs: {{x: 0.5}}
        {extra}
    """


@pytest.mark.parametrize("extra, fragment", [
    ("rtol: .nan", "rtol must be finite"),
    ("atol: .inf", "atol must be finite"),
    ("step: .inf", "step must be finite"),
    ("sweep: {step: {linspace: [-1, 1, 3]}}", "a swept step must be positive"),
    ("sweep: {step: {range: [0, 1, 0.5]}}", "a swept step must be positive"),
])
def test_non_finite_settings_and_non_positive_steps_are_spec_errors(project, extra, fragment):
    path = write(project, "n.yaml", PLAIN.format(extra=extra))
    issues = spec.validate(path)
    assert any(fragment in i.message and i.line == 6 for i in issues), [str(i) for i in issues]


@pytest.mark.parametrize("options", [
    ["--rtol", "nan"], ["--atol", "inf"], ["--drift-factor", "nan"], ["--drift-factor", "inf"],
    ["--step", "nan"], ["--step", "-inf"], ["--only", ""], ["--only", "nothing-*"],
])
def test_bad_cli_numbers_and_selections_are_usage_errors_writing_nothing(project, options):
    path = write(project, "p.yaml", PLAIN.format(extra=""))
    ran = invoke(path, "--out", project / "out", *options)
    assert ran.exit_code == 2, ran.output
    assert "Traceback" not in ran.output and not (project / "out").exists()


@pytest.mark.parametrize("settings, error, fragment", [
    (dict(rtoll=1e-3), TypeError, "did you mean 'rtol'"),
    (dict(chek="full"), TypeError, "did you mean 'check'"),
    (dict(check="x"), ValueError, "check must be one of"),
    (dict(rtol=float("nan")), ValueError, "rtol must be finite"),
    (dict(step=0.0), ValueError, "step must be positive"),
    (dict(step=float("inf")), ValueError, "step must be finite"),
    (dict(seed=-1), ValueError, "seed must be an integer"),
    (dict(dtype="float16"), ValueError, "dtype must be one of"),
])
def test_the_python_api_checks_its_settings(settings, error, fragment):
    with pytest.raises(error, match=fragment):
        gradrun.check("sin(x)", {"x": 0.5}, **settings)


def test_the_python_api_checks_its_inputs():
    with pytest.raises(ValueError, match="not finite"):
        gradrun.check("sin(x)", {"x": float("nan")})
    with pytest.raises(ValueError, match="not an input"):
        gradrun.check("sin(x)", {"x": 0.5}, wrt=["y"])
    assert gradrun.check("sin(x)", {"x": 0.5}, rtol=1e-6).passed


# --- user mistakes that used to be "a gradrun bug" ---------------------------------------------


@pytest.mark.parametrize("value, fragment", [
    ("{shape: [1e22]}", "extent above"),
    ("{shape: [0, 1e22]}", "extent above"),
    ("{shape: [2.0, 2]}", None),
    ("{shape: [" + ", ".join(["1"] * 33) + "]}", "dimensions, more than"),
    ("{shape: [2], init: uniform, low: -1e308, high: 1e308}", "beyond float64's range"),
    ("{shape: [2], init: uniform, low: -.inf, high: 1}", "must be a finite number"),
    ("{shape: [2], init: normal, scale: .nan}", "must be a finite number"),
    ("1" + "0" * 400, "too large"),
    ("[1, 1" + "0" * 400 + "]", "too large"),
    ("{linspace: [0, .nan, 3]}", "not a finite number"),
    ("{range: [0, 1, .inf]}", "not a finite number"),
])
def test_input_mistakes_get_a_place_and_a_plain_message(project, value, fragment):
    path = write(project, "m.yaml", f"""\
        version: 1
        experiments:
          - name: a
            expr: "sum(X)"
            inputs:
              X: {value}
        """)
    issues = spec.validate(path)
    if fragment is None:
        assert issues == []
        return
    assert issues and all(i.line > 0 and "bug" not in str(i) for i in issues), [str(i) for i in issues]
    assert any(fragment in i.message for i in issues), [str(i) for i in issues]


@pytest.mark.parametrize("content, fragment", [
    ({"gradrun_baseline": 1, "experiments": {"sq": 5}}, "experiments.sq is not a mapping"),
    ({"gradrun_baseline": 1, "experiments": {"sq": {"elements": 3}}}, "experiments.sq.elements has the wrong type"),
    ({"gradrun_baseline": 1, "experiments": {"sq": {"elements": [{"point": 0}]}}}, "elements[0] has no 'input'"),
    ({"gradrun_baseline": 1, "experiments": {"sq": {"elements": [
        {"point": "0", "input": "x", "index": 0, "output": 0, "element": "x", "status": "pass",
         "abs_error": 0.0, "tolerance": 1.0}]}}}, "elements[0].point has the wrong type"),
    ({"gradrun_baseline": 1, "experiments": {"sq": {"error": None}}}, "experiments.sq has no elements"),
])
def test_a_baseline_of_the_wrong_shape_names_the_file_and_the_key(project, content, fragment):
    file = project / "b.baseline.json"
    file.write_text(json.dumps(content))
    with pytest.raises(baseline.BaselineError) as caught:
        baseline.load_baseline(file)
    assert str(file) in str(caught.value) and fragment in str(caught.value)
    path = write(project, "b.yaml", PLAIN.format(extra=""))
    ran = invoke(path, "--baseline", file, "--out", project / "out")
    assert ran.exit_code == 2 and fragment in ran.output and not (project / "out").exists()


def test_the_size_limit_is_checked_before_reading(project, monkeypatch):
    path = write(project, "big.yaml", PLAIN.format(extra=""))
    monkeypatch.setattr(spec, "MAX_FILE_BYTES", 10)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read the whole file"))
    issues = spec.validate(path)
    assert [i.message for i in issues] == ["the file is larger than 10 bytes"]


def test_nodes_are_counted_while_composing(project):
    from gradrun import yamlload

    text = "version: 1\nx: [" + "0, " * (yamlload.MAX_NODES + 10) + "0]\n"
    path = project / "many.yaml"
    path.write_text(text)
    issues = spec.validate(path)
    assert len(issues) == 1 and f"more than {yamlload.MAX_NODES} nodes" in issues[0].message
    assert issues[0].line == 2


@pytest.mark.parametrize("kind", ["python", "torch", "jax"])
@pytest.mark.parametrize("ref", ["os:system", "builtins:eval", "pickle:loads"])
def test_every_code_kind_follows_the_trust_rule_at_load(project, kind, ref):
    pytest.importorskip({"python": "numpy", "torch": "torch", "jax": "jax"}[kind])
    extra = ', vjp: "pickle:loads"' if kind == "python" else ""
    path = write(project, "kinds.yaml", f"""\
        version: 1
        functions:
          f: {{{kind}: "{ref}"{extra}}}
        experiments:
          - name: e
            function: f
            inputs: {{x: 1.0}}
        """)
    issues = spec.validate(str(path))
    assert any(i.path.endswith(kind) and "not the project's own code" in i.message for i in issues), issues
    issues = spec.validate(str(path), policy=usercode.NO_CODE)
    assert any("--no-code" in i.message for i in issues), issues

"""Spec loading: the invalid corpus fails where its header says, the valid corpus resolves."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from gradrun import spec, tree
from gradrun.model import Experiment, SpecError
from gradrun.yamlload import load as load_yaml

SPECS = Path(__file__).parent / "specs"
INVALID = sorted((SPECS / "invalid").glob("*.yaml"))
VALID = sorted((SPECS / "valid").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+): (.*)$", re.M)
PWNED = Path("/tmp/gradrun-injection-pwned")  # what the injection specs would create if anything ran them


def expectations(path: Path) -> list:
    return [(int(line), fragment) for line, fragment in EXPECT.findall(path.read_text())]


def test_the_corpus_is_big_enough():
    assert len(INVALID) >= 40
    assert all(expectations(p) for p in INVALID), "every invalid spec states what it expects"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_reports_its_mistake(path):
    issues = spec.validate(path)  # never raises: a bad spec is data, not a traceback
    assert issues, f"{path.name} should be invalid"
    text = [str(i) for i in issues]
    for line, fragment in expectations(path):
        assert any((line == 0 or i.line == line) and fragment.lower() in str(i).lower() for i in issues), \
            f"expected line {line}: {fragment!r}; got:\n" + "\n".join(text)
    for issue in issues:
        assert str(issue).startswith(f"{path}:{issue.line}:{issue.column}: ")
        assert "Traceback" not in str(issue)
    assert issues == sorted(issues, key=lambda i: (i.file, i.line, i.column))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_load_spec_raises_spec_error_with_every_issue(path):
    with pytest.raises(SpecError) as caught:
        spec.load_spec(path)
    assert caught.value.issues == spec.validate(path)


def test_injection_specs_never_execute_anything():
    PWNED.unlink(missing_ok=True)
    for path in INVALID:
        if path.stem.startswith(("inject-", "python-tag")):
            assert spec.validate(path)
    assert not PWNED.exists()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_spec_resolves(path):
    assert spec.validate(path) == []
    loaded = spec.load_spec(path)
    assert loaded.experiments and len(loaded.sha256) == 64
    for exp in loaded.experiments:
        assert isinstance(exp, Experiment) and exp.line > 0 and exp.file == str(path)
        assert exp.points and exp.wrt
        for point in exp.points:
            assert set(tree.variables(exp.expr)) <= set(point.inputs)
            assert all(a.dtype == np.float64 for a in point.inputs.values())
        assert set(tree.calls(exp.expr)) <= set(exp.functions) | set(spec.primitives.PRIMITIVES)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_spec_passes_the_schema_on_its_own(path):
    jsonschema.Draft7Validator(spec.load_schema()).validate(load_yaml(path.read_text()).data)


def by_name(path) -> dict:
    return {e.name: e for e in spec.load_spec(SPECS / "valid" / path).experiments}


def test_design_examples():
    exps = by_name("design.yaml")
    assert list(exps) == ["square-at-2", "sigmoid-curve", "chain-2", "chain-3",
                          "sum-then-sigmoid", "matrix-loss", "my-layer"]
    assert exps["square-at-2"].expr == tree.Call("square", (tree.Var("x"),))
    assert len(exps["sigmoid-curve"].points) == 13
    # range follows numpy.arange: the stop is excluded.
    assert [p.coords["x"] for p in exps["chain-2"].points] == list(np.arange(-3, 3, 0.5))
    assert exps["chain-2"].expr == tree.chain(["square", "sigmoid"])
    assert [p.coords["x"] for p in exps["chain-3"].points] == [-3, -1, 0.5, 2, 3]
    assert exps["sum-then-sigmoid"].wrt == ["x", "y"]
    matrix = exps["matrix-loss"].points[0].inputs
    assert matrix["X"].shape == (3, 3) and matrix["W"].shape == (3, 2)
    np.testing.assert_array_equal(matrix["X"], np.random.default_rng(190204).normal(size=(3, 3)))
    layer = exps["my-layer"]
    dense = layer.functions["dense"]
    assert isinstance(dense, tree.PythonFunction) and dense.params == ("x", "w")
    x, w = layer.points[0].inputs["x"], layer.points[0].inputs["w"]
    assert -1 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(dense.forward(x, w), x @ w)
    assert layer.settings.rtol == 1e-7 and layer.settings.atol == 1e-10 and layer.settings.seed == 0


def test_randn_reproduces_numpys_legacy_global_generator():
    exp = by_name("book-randn.yaml")["matrix-loss-book"]
    np.random.seed(190204)
    X = np.random.randn(3, 3)
    W = np.random.randn(3, 2)
    np.testing.assert_array_equal(exp.points[0].inputs["X"], X)
    np.testing.assert_array_equal(exp.points[0].inputs["W"], W)


def test_generators_are_reproducible_and_follow_their_parameters():
    first = by_name("generators.yaml")["every-init"].points[0].inputs
    again = by_name("generators.yaml")["every-init"].points[0].inputs
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    np.testing.assert_array_equal(first["C"], np.zeros(4))
    np.testing.assert_array_equal(first["D"], np.ones(4))
    np.testing.assert_array_equal(first["E"], (-1 + 0.25 * np.arange(6)).reshape(2, 3))
    np.testing.assert_array_equal(first["F"], np.random.RandomState(11).rand(3))
    assert first["h"] == -2000.0 and first["h"].shape == ()
    assert ((1 <= first["G"]) & (first["G"] <= 2)).all()


def test_sweeps_form_a_grid_in_the_order_written():
    grid = by_name("sweeps.yaml")["grid"]
    assert [p.coords for p in grid.points] == [
        {"x": x, "y": y} for x in (1.0, 2.0, 3.0) for y in (0.1, 10.0)]
    assert [p.index for p in grid.points] == list(range(6))
    assert all(p.inputs["b"] == 0.5 and p.settings is None for p in grid.points)
    assert grid.wrt == ["x", "y", "b"]  # every input, in the order written


def test_sweeps_over_step_and_method_set_per_point_settings():
    exps = by_name("sweeps.yaml")
    steps = exps["error-versus-step"]
    assert [p.settings.step for p in steps.points] == list(np.logspace(-1, -8, 8))
    assert all(p.settings.method == "central" for p in steps.points)  # from defaults
    methods = exps["compare-methods"]
    assert len(methods.points) == 12
    assert methods.points[1].coords == {"method": "forward", "step": 1e-6}
    assert methods.settings_at(methods.points[1]).method == "forward"
    assert set(methods.points[0].inputs) == {"x"}


def test_settings_come_from_defaults_then_the_experiment():
    summed = by_name("sweeps.yaml")["summed-softmax"]
    s = summed.settings
    assert (s.method, s.seed, s.reduce, s.dtype, s.check, s.rtol) == ("central", 7, "sum", "float32", "full", 1e-3)


def test_declared_functions_travel_with_the_experiment():
    exp = by_name("generators.yaml")["every-init"]
    assert set(exp.functions) == {"poly", "quad", "twice"}
    assert exp.functions["poly"].params == ("a", "b")
    assert exp.functions["twice"].body == tree.Call("mul", (tree.Const(2.0), tree.Var("x")))


def test_python_function_with_only_a_jvp():
    fn = by_name("python-jvp.yaml")["forward-mode-only"].functions["scale3"]
    assert fn.vjp is None and fn.jvp is not None and fn.complex_safe


def test_unreadable_file_is_an_issue(tmp_path):
    missing = tmp_path / "nope.yaml"
    [issue] = spec.validate(missing)
    assert issue.line == 1 and "cannot read" in issue.message
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in spec.validate(binary)[0].message


def test_a_document_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    assert "a spec file is a mapping" in spec.validate(path)[0].message


def test_every_error_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(
        "experiments:\n"
        "  - name: a\n    function: sigmod\n    inputs: {x: 1}\n"
        "  - name: b\n    expr: 'x ** 1000'\n    inputs: {x: 1}\n"
        "  - name: c\n    function: square\n    inputs: {x: 1}\n    method: centrl\n"
    )
    issues = spec.validate(path)
    assert [i.line for i in issues] == [3, 6, 11]
    assert issues[1].column == 17  # inside the quoted expression, at the exponent


def test_schema_is_found_and_describes_every_property():
    assert spec.schema_path().is_file()
    schema = spec.load_schema()
    jsonschema.Draft7Validator.check_schema(schema)

    def walk(node, where):
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                target = prop
                if "$ref" in prop:
                    target = schema["definitions"][prop["$ref"].rsplit("/", 1)[-1]]
                assert "description" in target, f"{where}.{name} has no description"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(schema, "schema")


def test_limits_are_documented_constants():
    assert spec.MAX_INPUT_ELEMENTS == 1_000_000
    assert spec.MAX_SWEEP_POINTS == 10_000
    assert spec.MAX_REPORT_ROWS == 2_000_000


def test_schema_path_prefers_the_installed_package_data(tmp_path, monkeypatch):
    import gradrun

    (tmp_path / "schemas").mkdir()
    packaged = tmp_path / "schemas" / "experiment.schema.json"
    packaged.write_text("{}")
    monkeypatch.setattr(gradrun, "__file__", str(tmp_path / "__init__.py"))
    assert spec.schema_path() == packaged

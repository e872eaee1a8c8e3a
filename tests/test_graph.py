"""The graph and its walkers: rules per argument, run only for arguments that need them."""

import numpy as np
import pytest

from gradrun import engine, primitives
from gradrun.primitives import Primitive
from gradrun.tree import Call, Const, Var


@pytest.fixture
def probe():
    """A primitive f(a, b) = a * b whose rules record which argument they were asked for."""
    calls = []

    def rule(k, kind, value):
        def apply(seed, ans, a, b):
            calls.append((kind, k))
            return value(seed, a, b)
        return apply

    primitives.register(Primitive(
        name="probe_mul", nargs=2, forward=lambda a, b: a * b,
        vjp=(rule(0, "vjp", lambda g, a, b: g * b), rule(1, "vjp", lambda g, a, b: g * a)),
        jvp=(rule(0, "jvp", lambda t, a, b: t * b), rule(1, "jvp", lambda t, a, b: a * t)),
        formula="a * b", derivative="da = b, db = a"))
    yield calls
    del primitives.PRIMITIVES["probe_mul"]


def test_a_rule_runs_only_for_an_argument_that_needs_a_cotangent(probe):
    x = np.array([1.5, -2.0, 0.25])
    graph = engine.build(Call("probe_mul", (Var("x"), Const(3.0))), {}, ["x"])
    vals = engine.evaluate(graph, {"x": x})
    grads = engine.vjp(graph, vals, np.ones(3))
    np.testing.assert_array_equal(grads["x"], np.full(3, 3.0))
    assert probe == [("vjp", 0)]  # the constant's rule never ran


def test_an_integer_input_gets_no_cotangent_and_its_rule_does_not_run(probe):
    x, labels = np.array([1.5, -2.0]), np.array([2.0, 5.0])
    graph = engine.build(Call("probe_mul", (Var("labels"), Var("x"))), {}, ["x", "labels"], integers=("labels",))
    vals = engine.evaluate(graph, {"x": x, "labels": labels})
    grads = engine.vjp(graph, vals, np.ones(2))
    np.testing.assert_array_equal(grads["x"], labels)
    np.testing.assert_array_equal(grads["labels"], np.zeros(2))
    assert probe == [("vjp", 1)]


def test_forward_mode_sums_the_rules_of_the_moving_arguments_only(probe):
    a, b = np.array([1.0, 2.0]), np.array([3.0, -4.0])
    graph = engine.build(Call("probe_mul", (Var("a"), Var("b"))), {}, ["a", "b"])
    vals = engine.evaluate(graph, {"a": a, "b": b})
    ta, tb = np.array([0.5, 1.0]), np.array([2.0, -1.0])
    np.testing.assert_array_equal(engine.jvp(graph, vals, {"a": ta}), ta * b)
    assert probe == [("jvp", 0)]
    probe.clear()
    np.testing.assert_array_equal(engine.jvp(graph, vals, {"a": ta, "b": tb}), ta * b + a * tb)
    assert probe == [("jvp", 0), ("jvp", 1)]


def test_every_primitive_has_one_vjp_and_one_jvp_rule_per_argument():
    for name, prim in primitives.PRIMITIVES.items():
        n = prim.nargs or 3  # a variadic op's one rule serves every position
        assert len(prim.vjp_rules(n)) == n and len(prim.jvp_rules(n)) == n, name


def test_registering_a_primitive_with_the_wrong_number_of_rules_is_refused():
    with pytest.raises(ValueError, match="1 VJP and 2 JVP rules for 2 arguments"):
        primitives.register(Primitive(name="broken", nargs=2, forward=np.add, vjp=(None,), jvp=(None, None),
                                      formula="", derivative=""))
    assert "broken" not in primitives.PRIMITIVES


# ---------------------------------------------------------------- the graph built once, at load

SPEC = """
functions:
  softsign: "x / (1 + abs(x))"
  unused: "x * 2"
  dense: {python: "layer:dense", vjp: "layer:dense_vjp"}
experiments:
  - name: loss
    expr: "sum(softsign(dense(X, W)) * 3)"
    inputs:
      X: {shape: [3, 4], init: normal}
      W: {shape: [4, 2], init: normal}
  - name: summed
    expr: "softsign(X @ W)"
    reduce: sum
    inputs:
      X: {shape: [2, 3], init: normal}
      W: {shape: [3, 5], init: normal}
"""

LAYER = r"""
import numpy as np
def dense(x, w):
    with open(__file__ + ".calls", "a") as calls:  # how often, on what: read by the test
        calls.write(f"{np.shape(x)}\n")
    return x @ w
def dense_vjp(g, x, w):
    return g @ w.T, x.T @ g
"""


@pytest.fixture
def loaded(tmp_path, monkeypatch):
    from gradrun import spec

    (tmp_path / "layer.py").write_text(LAYER)
    (tmp_path / "g.yaml").write_text(SPEC)
    exps = {e.name: e for e in spec.load_spec(tmp_path / "g.yaml").experiments}
    return exps, tmp_path / "layer.py.calls"


def test_loading_builds_the_graph_with_every_nodes_shape(loaded):
    exps, _ = loaded
    graph = exps["loss"].graph
    assert graph.output_shape == ()
    assert graph.shapes[graph.inputs["X"]] == (3, 4) and graph.shapes[graph.inputs["W"]] == (4, 2)
    dense = next(i for i, n in enumerate(graph.nodes) if n.fn is not None)
    assert graph.shapes[dense] == (3, 2) and graph.dtypes[dense] == np.float64
    summed = exps["summed"].graph
    assert summed.nodes[summed.output].op == "sum" and summed.output_shape == ()  # reduce: sum is in the graph
    assert summed.shapes[summed.output - 1] == (2, 5)


def test_reach_and_complex_safety_are_read_off_the_graph(loaded):
    exps, _ = loaded
    assert sorted(exps["loss"].graph.functions) == ["dense", "softsign"]  # not `unused`
    assert exps["loss"].functions is exps["loss"].graph.functions
    assert exps["loss"].graph.complex_unsafe == ["dense"] and not exps["loss"].graph.complex_safe
    assert exps["summed"].graph.complex_unsafe == [] and sorted(exps["summed"].graph.functions) == ["softsign"]


def test_running_walks_the_loaded_graph_and_never_rebuilds_it(loaded, monkeypatch):
    from gradrun import engine, graph as graph_module, runner

    exps, calls = loaded
    assert calls.read_text() == "(3, 4)\n"  # the shapes came from one evaluation at the first point

    def no_build(*args, **kwargs):
        raise AssertionError("the graph was built again")

    monkeypatch.setattr(engine, "build", no_build)
    monkeypatch.setattr(graph_module, "build", no_build)
    for exp in exps.values():
        result = runner.run_experiment(exp)
        assert result.error is None and result.passed, result.error
    assert runner.graph_of(exps["loss"]) is exps["loss"].graph


def test_a_shape_error_inside_a_declared_function_has_no_column_and_one_in_the_own_expression(tmp_path):
    from gradrun import spec
    from gradrun.model import SpecError

    (tmp_path / "s.yaml").write_text(
        'functions:\n  mm: {params: [a, b], expr: "a @ b"}\n'
        'experiments:\n'
        '  - name: inner\n    expr: "mm(X, X)"\n    inputs: {X: {shape: [2, 3], init: normal}}\n'
        '  - name: outer\n    expr: "sin(X @ X)"\n    inputs: {X: {shape: [2, 3], init: normal}}\n')
    with pytest.raises(SpecError) as caught:
        spec.load_spec(tmp_path / "s.yaml")
    inner, outer = caught.value.issues
    assert "in (a @ b): matmul of shapes (2, 3) and (2, 3) does not fit" in inner.message
    assert "in (X @ X): matmul of shapes (2, 3) and (2, 3) does not fit" in outer.message
    assert (inner.line, inner.column) == (5, 11)  # the expr's start: the call is in mm's body
    assert (outer.line, outer.column) == (8, 16)  # the @ inside sin(...)


def test_bind_puts_an_experiments_own_functions_in_place_of_the_declared_ones():
    from gradrun.tree import ExprFunction, PythonFunction

    declared = PythonFunction(name="f", params=("x",), forward=lambda x: 2 * x, vjp=lambda g, x: 2 * g)
    seeded = PythonFunction(name="f", params=("x",), forward=lambda x: 3 * x, vjp=lambda g, x: 3 * g)
    twice = ExprFunction("twice", ("x",), Call("f", (Call("f", (Var("x"),)),)))
    graph = engine.build(Call("twice", (Var("x"),)), {"f": declared, "twice": twice}, ["x"])
    assert list(graph.functions) == ["twice", "f"]
    assert graph.bind({"f": declared, "twice": twice}) is graph  # nothing to replace: the same graph
    bound = graph.bind({"f": seeded})
    x = np.array([1.0, -2.0])
    np.testing.assert_array_equal(engine.evaluate(bound, {"x": x})[bound.output], 9 * x)
    np.testing.assert_array_equal(engine.evaluate(graph, {"x": x})[graph.output], 4 * x)  # left as it was
    assert bound.functions == {"twice": twice, "f": seeded}

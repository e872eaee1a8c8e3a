"""A black box with a batched forward (the hook framework adapters use) gives
the same verdicts and numbers as one call per perturbation, in fewer calls."""

import numpy as np

from gradrun.model import Experiment, Point, Settings
from gradrun.runner import run_experiment
from gradrun.tree import Call, PythonFunction, Var


def _run(batched: bool, wrong: float = 0.0):
    calls = [0]

    def f(x, w):
        calls[0] += 1
        return np.tanh(x @ w)

    def vjp(g, x, w):
        d = g * (1 - np.tanh(x @ w) ** 2)
        gx = d @ w.T
        gx.flat[3] += wrong
        return gx, x.T @ d

    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(6, 5)), rng.normal(size=(5, 3))
    fn = PythonFunction("f", ("x", "w"), f, vjp, None, False, "", f if batched else None)
    exp = Experiment("e", Call("f", (Var("x"), Var("w"))), {"f": fn},
                     [Point(0, {"x": x, "w": w})], ["x", "w"], Settings())
    return run_experiment(exp), calls[0]


def test_batched_forward_matches_one_call_per_perturbation():
    plain, plain_calls = _run(False)
    batched, batched_calls = _run(True)
    assert plain.error is None and batched.error is None
    assert plain.passed and batched.passed
    num_plain = np.array([r.numeric for r in plain.records])
    num_batched = np.array([r.numeric for r in batched.records])
    np.testing.assert_allclose(num_batched, num_plain, rtol=1e-12, atol=1e-14)
    assert batched_calls * 5 < plain_calls


def test_batched_forward_still_flags_a_wrong_entry():
    result, _ = _run(True, wrong=1e-4)
    bad = [r for r in result.records if r.status == "fail"]
    assert bad and {r.element for r in bad} == {"x[0,3]"}


def test_the_engine_hands_a_batched_forward_contiguous_rows():
    """A moved argument in C order, rows contiguous: numpy's default copy of a broadcast view
    keeps the batch axis innermost, and torch would copy such a chunk again, transposed."""
    layouts = []

    def f(x):
        return np.sin(x).sum(axis=-1)

    def batch(x):
        layouts.append((x.flags.c_contiguous, x.flags.owndata, x.strides[:1] == (0,)))
        return f(x)

    fn = PythonFunction("f", ("x",), f, lambda g, x: g[:, None] * np.cos(x), None, False, "", batch)
    exp = Experiment("f", Call("f", (Var("x"),)), {"f": fn}, [Point(0, {"x": np.linspace(0.1, 1, 12).reshape(3, 4)})],
                     ["x"], Settings())
    assert run_experiment(exp).passed
    assert layouts and all(layout == (True, True, False) for layout in layouts)


def _box_with_jvps(calls):
    def f(x, w):
        return np.tanh(x @ w)

    def jvp(ts, x, w):
        calls["jvp"] += 1
        return (1 - np.tanh(x @ w) ** 2) * (ts[0] @ w + x @ ts[1])

    def jvp_batch(ts, x, w):  # (B, *shape) tangents; None for the input that does not move
        calls["jvp_batch"] += 1
        tx, tw = ts
        moved = (tx @ w) if tx is not None else 0
        moved = moved + (x @ tw if tw is not None else 0)
        return (1 - np.tanh(x @ w) ** 2) * moved

    def vjp(g, x, w):
        d = g * (1 - np.tanh(x @ w) ** 2)
        return d @ w.T, x.T @ d

    return PythonFunction("f", ("x", "w"), f, vjp, jvp, False, "", jvp_batch=jvp_batch)


def test_forward_columns_of_a_box_under_gradrun_operations_come_a_chunk_at_a_time():
    """3 * sum(f(x, w) ** 2) (reduce: sum, or an expr: around a torch or JAX function): the box's
    columns come by jvp_batch, a chunk per call, and only the rest of the graph is walked per
    column: the columns equal one whole-graph JVP per column, and reverse mode's Jacobian."""
    from gradrun import engine
    from gradrun.expr import parse

    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(6, 5)), rng.normal(size=(5, 3))
    graph_of = {}
    for label in ("batched", "one by one"):
        calls = {"jvp": 0, "jvp_batch": 0}
        fn = _box_with_jvps(calls)
        if label == "one by one":
            fn = PythonFunction("f", ("x", "w"), fn.forward, fn.vjp, fn.jvp, False, "")
        graph = engine.build(parse("3 * sum(f(x, w) ** 2)"), {"f": fn}, ["x", "w"])
        vals = engine.evaluate(graph, {"x": x, "w": w})
        graph_of[label] = ({n: engine.forward_columns(graph, vals, n, range(vals[graph.inputs[n]].size))
                            for n in ("x", "w")}, dict(calls))
    (batched, batched_calls), (alone, alone_calls) = graph_of["batched"], graph_of["one by one"]
    assert batched_calls == {"jvp": 0, "jvp_batch": 2} and alone_calls == {"jvp": 45, "jvp_batch": 0}
    reverse = engine.jacobian(graph, vals, ["x", "w"])
    for n in ("x", "w"):
        np.testing.assert_allclose(batched[n], alone[n], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(batched[n], reverse[n], rtol=1e-12, atol=1e-13)


def test_an_input_that_also_goes_elsewhere_is_walked_whole():
    """x feeds the box and a product outside it: a column through the box alone would miss the
    second path, so the whole graph is walked per column there, and the columns still agree."""
    from gradrun import engine
    from gradrun.expr import parse

    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(4, 5)), rng.normal(size=(5, 3))
    calls = {"jvp": 0, "jvp_batch": 0}
    graph = engine.build(parse("sum(f(x, w)) + sum(x * x)"), {"f": _box_with_jvps(calls)}, ["x", "w"])
    vals = engine.evaluate(graph, {"x": x, "w": w})
    columns = engine.forward_columns(graph, vals, "x", range(x.size))
    assert calls["jvp"] == x.size
    np.testing.assert_allclose(columns, engine.jacobian(graph, vals, ["x"])["x"], rtol=1e-12, atol=1e-13)

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

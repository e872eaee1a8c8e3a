"""Several offsets of every element in one evaluation (numeric.stacking, numeric.evaluate):
the same numbers as one evaluation per offset, in fewer calls of the black box."""

import math

import numpy as np
import pytest

from gradrun import engine, measure, numeric
from gradrun.runner import run_experiment
from gradrun.spec import load_spec

X = np.array([0.3, -1.2, 2.5, 7.0, 1e-3])


class Counting:
    """A delta function of f(x) = (sin x, x**3) per element, counting calls and rows."""

    def __init__(self, rows, limit=None):
        self.rows, self.calls, self.sizes = rows, 0, []
        self.delta = numeric.stacking(self.evaluate, rows, limit) if limit else self.plain

    def evaluate(self, where, offsets):
        self.calls += 1
        self.sizes.append(len(where))
        x = X[where]
        moved = np.stack([np.sin(x + offsets) - np.sin(x), (x + offsets) ** 3 - x ** 3], axis=1)
        return moved, offsets == 0

    def plain(self, offsets):
        return self.evaluate(self.rows, np.asarray(offsets))


NOISE_ROWS = [numeric.NOISE_POINTS] + [numeric.NOISE_POINTS - 1] * (len(numeric.NOISE_SPACINGS) - 1)

PASSES = {  # name: (the pass on a delta function, evaluations it needs without stacking, with: offsets per call)
    "central": (lambda d, h: numeric.derivative(d, "central", h), 2, [2]),
    "central4": (lambda d, h: numeric.derivative(d, "central4", h), 4, [4]),
    "richardson level": (lambda d, h: numeric.richardson_level(d, h), 6, [6]),
    # five tries at bases a quarter apart: each shares its coarsest differences with the last's finest
    "richardson": (lambda d, h: numeric.derivative(d, "richardson", h), 6 + 4 * (numeric.RICHARDSON_TRIES - 1),
                   [6 + 4 * (numeric.RICHARDSON_TRIES - 1)]),
    "one-sided": (lambda d, h: numeric.one_sided(d, h), 2, [2]),
    # a spacing a call (a wide output's deltas are large), f at the element itself once
    "noise": (lambda d, h: (numeric.noise(d, h),), sum(NOISE_ROWS), NOISE_ROWS),
}


@pytest.mark.parametrize("name", list(PASSES))
def test_a_stacked_pass_gives_the_same_numbers_in_fewer_calls(name):
    run, evaluations, stacks = PASSES[name]
    rows = np.arange(len(X))
    h = numeric.steps("richardson", X, "auto", numeric.EPS["float64"])
    one_by_one, stacked = Counting(rows), Counting(rows, limit=10_000)
    expected, got = run(one_by_one.delta, h), run(stacked.delta, h)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    assert one_by_one.calls == evaluations
    assert stacked.sizes == [k * len(X) for k in stacks]


def test_richardson_levels_a_quarter_apart_reuse_the_shared_differences_exactly():
    rows = np.arange(len(X))
    h = numeric.steps("richardson", X, "auto", numeric.EPS["float64"])
    bases = [h / 4**k for k in range(4)]
    fresh = [numeric.richardson_level(Counting(rows).delta, b) for b in bases]  # each level on its own
    shared = Counting(rows)
    tries, _ = numeric._richardson(shared.delta, bases)
    assert shared.calls == 6 + 4 * 3
    chained, first = Counting(rows), None
    for b, alone, together in zip(bases, fresh, tries):
        *level, finest, kink = numeric.richardson_chain(chained.delta, b, first)
        first = (finest, kink)
        for a, c, d in zip(alone[:3], together, level[:3]):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(a, d)
    assert chained.calls == 6 + 4 * 3


def test_a_stack_is_split_at_the_row_limit_and_keeps_each_rows_element():
    rows = np.array([4, 0, 3])
    stacked = Counting(rows, limit=4)
    offsets = np.array([[1e-3, 2e-3, 3e-3], [-1e-3, -2e-3, -3e-3], [0.0, 0.0, 0.5]])
    d, kink = stacked.delta(offsets)
    assert stacked.sizes == [4, 4, 1]
    for k, o in enumerate(offsets):
        np.testing.assert_array_equal(d[k], Counting(rows).delta(o)[0])
    np.testing.assert_array_equal(kink, offsets == 0)


def test_stacked_measurements_are_right():
    """Independent truth: the derivatives of sin and x**3, and noise near sin's round-off."""
    rows = np.arange(len(X))
    stacked = Counting(rows, limit=64)
    h = numeric.steps("richardson", X, "auto", numeric.EPS["float64"])
    value, est, _, _ = numeric.derivative(stacked.delta, "richardson", h)
    truth = np.stack([np.cos(X), 3 * X ** 2], axis=1)
    np.testing.assert_allclose(value, truth, rtol=1e-9, atol=1e-12)
    hc = numeric.steps("central", X, "auto", numeric.EPS["float64"])
    minus, plus = numeric.one_sided(stacked.delta, hc)
    curvature = np.stack([np.ones_like(X), 6 * (np.abs(X) + hc)], axis=1)  # max |f''| within a step
    bound = curvature * hc[:, None] / 2 + 1e-9
    assert (np.abs(minus - truth) <= bound).all() and (np.abs(plus - truth) <= bound).all()
    sigma = numeric.noise(stacked.delta, hc)
    assert (sigma <= 64 * numeric.EPS["float64"] * np.maximum(1.0, np.abs(X) ** 3)[:, None]).all()


def test_an_empty_stack_has_the_outputs_shape():
    stacked = Counting(np.arange(0), limit=8)
    d, kink = stacked.delta(np.zeros((3, 0)))
    assert d.shape == (3, 0, 2) and kink.shape == (3, 0)


SPEC = """
version: 1
functions:
  f: {python: "noisy:f", vjp: "noisy:f_vjp"}
experiments:
  - name: noisy
    function: f
    inputs: {x: {shape: [40], init: normal, seed: 3}}
"""

# derivatives a millionth of f: the first difference cannot resolve them, so f's noise is
# measured and every element is measured again by Richardson extrapolation
CODE = """
import numpy as np
def f(x):
    return 1e4 + np.sum(np.sin(x)) * 1e-3
def f_vjp(g, x):
    return (g * np.cos(x) * 1e-3,)
"""


def test_a_check_measures_the_same_with_and_without_stacks(tmp_path, monkeypatch):
    """Through the verdict: every pass stacked gives every number a pass at a time gives,
    in a fraction of the calls for a chunk of perturbations (``engine.perturb``, counted)."""
    path = tmp_path / "noisy.yaml"
    path.write_text(SPEC)
    (tmp_path / "noisy.py").write_text(CODE)
    exp = load_spec(str(path)).experiments[0]
    results, calls = {}, {}
    real = engine.perturb
    for mode in ("stacked", "one by one"):
        count = [0]

        def counted(*args, **kwargs):
            count[0] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(engine, "perturb", counted)
        if mode == "one by one":
            monkeypatch.setattr(numeric, "evaluate", lambda delta, offsets: _one_by_one(delta, offsets))
        results[mode] = run_experiment(exp)
        calls[mode] = count[0]
    stacked, alone = (results[m].elements for m in ("stacked", "one by one"))
    assert (np.asarray(stacked["status"]) == "pass").all()
    assert (np.asarray(stacked["method"]) == "richardson").any()  # the noise and Richardson passes ran
    np.testing.assert_allclose(np.asarray(stacked["numeric"], dtype=float),
                               1e-3 * np.cos(np.asarray(stacked["value"], dtype=float)), rtol=1e-7)
    for column in ("numeric", "error_estimate", "tolerance", "step"):
        np.testing.assert_array_equal(np.asarray(stacked[column]), np.asarray(alone[column]))
    assert calls["stacked"] * 4 < calls["one by one"]


def _one_by_one(delta, offsets):
    outs = [delta(np.asarray(o)) for o in offsets]
    return [d for d, _ in outs], [k for _, k in outs]


def test_the_witness_is_one_evaluation():
    class Cols:
        def __init__(self):
            self.delta = Counting(np.arange(len(X)), limit=1_000)

        def auto_steps(self, method, idx):
            return numeric.steps(method, X[idx], "auto", numeric.EPS["float64"])

        def run(self, fn, idx):
            return fn(self.delta.delta, idx, slice(None))

    cols = Cols()
    value, slack, _ = measure.witness(cols, np.arange(len(X)), np.ones((2, len(X))), numeric.EPS["float64"])
    assert cols.delta.calls == 1 and cols.delta.sizes == [6 * len(X)]
    h = cols.auto_steps("central", np.arange(len(X)))
    alone = numeric.derivative(Counting(np.arange(len(X))).delta, "central", h)[0].T
    np.testing.assert_array_equal(value, alone)
    np.testing.assert_allclose(value, np.stack([np.cos(X), 3 * X ** 2]), rtol=1e-6, atol=1e-9)
    assert np.isfinite(slack).all() and math.isfinite(float(slack.max()))


def test_a_real_step_is_divided_by_the_distance_x_plus_step_rounds_to():
    """x + h rounds to a multiple of x's rounding unit: at x = 1e9 + 0.3 and h = 1e-3 (about
    8 400 units) the points sit up to half a unit off, and (f(x + h) - f(x - h)) / 2h of
    f(x) = x is 1 + 5e-5, not 1. Divided by the distance between the points as they are,
    every two-point stencil of the identity is exactly 1."""
    x = np.array([1e9 + 0.3, -7e8 + 0.1, 2.5e6 + 1e-7, 0.75])
    h = np.array([1e-3, 3e-4, 1e-7, 1e-9])

    def delta(offsets):  # f(x) = x, evaluated the way the engine moves an element: x + offset
        offsets = np.asarray(offsets)
        d = (x + offsets) - x
        return d[..., None], np.zeros(offsets.shape, dtype=bool)

    delta.stacks = True
    nominal = [v for v, _ in numeric.stencils(delta, [(numeric.STENCILS[m], h) for m in ("central", "forward", "backward")])]
    assert np.abs(nominal[0][0, 0] - 1.0) > 1e-6  # without the points as they are: off
    delta.primal = x
    for method in ("central", "forward", "backward"):
        value, _ = numeric.stencil_derivative(delta, numeric.STENCILS[method], h)
        assert np.array_equal(value, np.ones((len(x), 1))), method
    value, est, _, _ = numeric.derivative(delta, "richardson", h * 1e3)
    np.testing.assert_allclose(value, 1.0, rtol=0, atol=1e-12)


def test_sin_far_from_zero_is_measured_to_its_own_precision():
    """sin at 1e9 + 0.3 and at 2.5e6: the numeric derivative matches cos(x) to 1e-10 (it was
    2e-7 off at 1e9, x's rounding over the step read as f's slope), and a VJP 1e-6 off fails."""
    import gradrun

    x = np.array([1e9 + 0.3, 2.5e6 + 0.2])
    result = gradrun.check(np.sin, {"x": x}, vjp=lambda g, x: g * np.cos(x))
    assert result.passed
    table = result.elements
    numeric_ = np.asarray(table["numeric"])[np.asarray(table["index"]) == np.asarray(table["output"])]
    np.testing.assert_allclose(numeric_, np.cos(x), rtol=1e-10)
    buggy = gradrun.check(np.sin, {"x": x}, vjp=lambda g, x: g * np.cos(x) * (1 + 1e-6))
    assert not buggy.passed

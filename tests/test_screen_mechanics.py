"""How a screen computes, not what it decides: the batched mechanics give bit for bit
what the per-direction computation they replace gives."""

import numpy as np
import pytest

from gradrun import engine, reverse, screen
from gradrun.expr import parse
from gradrun.tree import Call, PythonFunction, Var


def graph_of(text):
    return engine.build(parse(text), {}, ["X", "W"])


def point(seed=0):
    rng = np.random.default_rng(seed)
    return {"X": rng.standard_normal((7, 5)), "W": rng.standard_normal((5, 3))}


def one_pass_each(graph, vals, rows):
    """J^T u by one engine.vjp per row, stacked: what vjp_rows must equal."""
    shape = vals[graph.output].shape
    grads = [engine.vjp(graph, vals, row.reshape(shape)) for row in rows]
    return {name: np.stack([np.ravel(g[name]) for g in grads]) for name in graph.inputs}


@pytest.mark.parametrize("text", ["sum(sigmoid(X @ W))", "sigmoid(X @ W)", "tanh(X @ W) * 3",
                                  "softmax(X @ W)", "logsumexp(X @ W)"])
def test_vjp_rows_equals_one_vjp_per_row_bit_for_bit(text):
    graph = graph_of(text)
    vals = engine.evaluate(graph, point())
    size = vals[graph.output].size
    rows = screen.directions(size, np.random.default_rng(3))
    rows = np.concatenate([rows, -rows[:2], rows[:1]])  # negations and repeats of earlier rows
    got = engine.vjp_rows(graph, vals, rows)
    want = one_pass_each(graph, vals, rows)
    for name in graph.inputs:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name])  # equal values; a zero's sign aside (see vjp_rows)


def test_vjp_rows_runs_one_pass_per_row_through_a_users_vjp():
    """A user's VJP that is not linear in its cotangent (g**2) must not be assumed linear."""
    calls = []

    def squared_vjp(g, x):
        calls.append(1)
        return g * g * np.ones_like(x)

    fn = PythonFunction("f", ("x",), lambda x: x.sum(), squared_vjp)
    graph = engine.build(Call("f", (Var("X"),)), {"f": fn}, ["X"])
    vals = engine.evaluate(graph, {"X": np.arange(6.0)})
    rows = np.array([[1.0], [-1.0], [1.0], [-2.0]])
    got = engine.vjp_rows(graph, vals, rows)
    assert len(calls) == len(rows)
    np.testing.assert_array_equal(got["X"], np.repeat(rows ** 2, 6, axis=1))  # g**2, not sign * g


def test_a_scalar_outputs_sign_directions_take_one_reverse_pass(monkeypatch):
    graph = graph_of("sum(sigmoid(X @ W))")
    vals = engine.evaluate(graph, point())
    passes = []
    real = reverse.vjp
    monkeypatch.setattr(reverse, "vjp", lambda *a, **k: passes.append(1) or real(*a, **k))
    engine.vjp_rows(graph, vals, np.array([[1.0], [-1.0], [-1.0], [1.0]]))
    assert len(passes) == 1


@pytest.mark.parametrize("size", [1, 2, 7, 90_001])
@pytest.mark.parametrize("seed", [0, 1, [5, 2]])
@pytest.mark.parametrize("drawn", [0, 1, 2])
def test_directions_are_the_sign_vectors_rng_choice_draws(size, seed, drawn):
    """The seeded directions (and the generator's state after them) are rng.choice's, as before,
    also after an odd number of draws has left half of the generator's last output pending."""
    ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
    assert ours.integers(0, 2, drawn).tolist() == theirs.integers(0, 2, drawn).tolist()
    got = screen.directions(size, ours)
    np.testing.assert_array_equal(got, theirs.choice([-1.0, 1.0], size=(screen.SCREEN_DIRECTIONS, size)))
    assert ours.random() == theirs.random()


def test_an_imaginary_direction_moves_the_graph_as_the_complex_one_does():
    graph = graph_of("sum(sigmoid(X @ W))")
    vals = engine.evaluate(graph, point())
    along = 1e-20 * screen.directions(35, np.random.default_rng(1)).reshape(-1, 7, 5)
    complex_delta, complex_kink, _ = engine.perturb_along(graph, vals, "X", 1j * along)
    delta, kink, _ = engine.perturb_along(graph, vals, "X", along, imaginary=True)
    np.testing.assert_array_equal(delta, complex_delta)
    np.testing.assert_array_equal(kink, complex_kink)


@pytest.mark.parametrize("seed", range(5))
def test_the_floor_computed_in_place_is_its_formula_bit_for_bit(seed):
    """floor(): eps * ROUNDOFF_FLOOR * sqrt(sum((max(|f| + |g x|, eps) * v / max(1, |x|))**2))."""
    from gradrun import judge, numeric

    rng = np.random.default_rng(seed)
    graph = graph_of("sigmoid(X @ W)")
    vals = engine.evaluate(graph, {k: v * 10.0 ** rng.integers(-4, 4, v.shape) for k, v in point(seed).items()})
    x = vals[graph.inputs["X"]].ravel()
    g = rng.standard_normal((4, x.size)) * 10.0 ** rng.integers(-8, 8, (4, x.size))
    v = rng.choice([-1.0, 0.0, 1.0], (4, x.size))
    eps = np.finfo(float).eps
    size = np.maximum(judge.output_magnitude(graph, vals).sum() + np.abs(g * x[None, :]), eps)
    expected = numeric.ROUNDOFF_FLOOR * eps * np.sqrt(((size * v / np.maximum(1.0, np.abs(x))) ** 2).sum(axis=1))
    assert screen.floor(graph, vals, "X", v, g, eps).tobytes() == expected.tobytes()


def test_inputs_screened_at_one_point_measure_each_slope_once():
    """A complex step's slopes (Im f(a + ih) / h of each op) depend on the point alone: the
    second input reuses the first's, and its directional differences are the same bits."""

    class Counted(dict):
        sets = 0

        def __setitem__(self, key, value):
            Counted.sets += 1
            super().__setitem__(key, value)

    graph = graph_of("sum(sigmoid(X @ W))")
    vals = engine.evaluate(graph, point())
    u = screen.directions(1, np.random.default_rng(0))
    eps = np.finfo(float).eps
    slopes = Counted()
    for name in ("X", "W"):
        v = screen.directions(vals[graph.inputs[name]].size, np.random.default_rng(1))
        alone = screen.directional(graph, vals, name, "complex", v, u, eps)
        shared = screen.directional(graph, vals, name, "complex", v, u, eps, slopes)
        for a, b in zip(alone, shared):
            np.testing.assert_array_equal(a, b)
    assert Counted.sets == 1  # sigmoid's, measured for X, reused for W



@pytest.mark.parametrize("text", ["sum(sigmoid(X @ W))", "sigmoid(X @ W)", "softmax(X @ W)"])
def test_sign_directions_floor_and_terms_by_pass_are_the_general_ones_bit_for_bit(text):
    """For sign directions a screen computes its floor and terms from |J^T u| alone, once per
    reverse pass (a scalar output's four rows share one): the bits of the general formulas."""
    graph = graph_of(text)
    vals = engine.evaluate(graph, point(2))
    u = screen.directions(vals[graph.output].size, np.random.default_rng(4))
    u = np.concatenate([u, -u[:1]])  # a negated row shares a pass whatever the output's size
    which, _ = reverse.shared_passes(graph, u)
    assert len(set(which)) < len(u)
    g = screen.cotangents(graph, vals, u)["X"]
    v = screen.directions(g.shape[1], np.random.default_rng(5))
    v = np.concatenate([v, v[:1]])
    eps = np.finfo(float).eps
    floors = screen.by_pass(lambda rows: screen.floor(graph, vals, "X", None, rows, eps), g, which)
    assert floors.tobytes() == screen.floor(graph, vals, "X", v, g, eps).tobytes()
    sums = screen.by_pass(lambda rows: screen.terms(rows, None), g, which)
    assert sums.tobytes() == np.abs(g * v).sum(axis=1).tobytes()


@pytest.mark.parametrize("method", ["complex", "central", "richardson"])
def test_directional_steps_along_v_over_its_norm_bit_for_bit(method, monkeypatch):
    """Each step moves the input by offset * (v / |v|), v of signs and zeros (a localizing
    part of one): exactly those numbers, however they are computed."""
    from gradrun import numeric

    graph = graph_of("sum(sigmoid(X @ W))")
    vals = engine.evaluate(graph, point(3))
    v = screen.directions(35, np.random.default_rng(6))
    v[1, ::3] = 0.0
    offsets, moves = [], []
    moving, differencing = engine.perturb_along, numeric.derivative
    monkeypatch.setattr(engine, "perturb_along",
                        lambda g, vs, n, along, *a: moves.append(along) or moving(g, vs, n, along, *a))
    monkeypatch.setattr(numeric, "derivative", lambda delta, *a: differencing(
        lambda o: offsets.append(np.imag(o) if np.iscomplexobj(o) else o) or delta(o), *a))
    screen.directional(graph, vals, "X", method, v, np.ones((4, 1)), np.finfo(float).eps)
    unit = v / np.sqrt(np.einsum("bn,bn->b", v, v))[:, None]
    assert len(moves) == len(offsets) > 0
    for along, offset in zip(moves, offsets):
        assert along.reshape(4, -1).tobytes() == (offset[:, None] * unit).tobytes()


def _wrong_everywhere(outputs, inputs):
    """tanh(A x) and a VJP 10 % off in every entry: a screen fails, localizing gives up (every half disagrees)."""
    a = np.random.default_rng(0).standard_normal((outputs, inputs)) / np.sqrt(inputs)

    def vjp(g, x):
        y = np.tanh(a @ x)
        return 1.1 * (a.T @ (g * (1 - y * y)))

    return (lambda x: np.tanh(a @ x)), vjp, {"x": np.random.default_rng(1).standard_normal(inputs)}


@pytest.mark.parametrize("limit, elements_checked", [(10_000, 600), (1_000, 125)])
def test_what_a_failing_screen_checks_in_full_stays_within_the_fallback_limit(limit, elements_checked, monkeypatch):
    """At most ``FALLBACK_FULL_LIMIT`` Jacobian entries of an input are checked in full after a screen
    fails (the first elements localized); past it the failing projections are the verdict. A wrong
    VJP of 2048 outputs and 1024 inputs checked every one of its 2.1 million entries (276 s, 1.2 GB)."""
    import gradrun

    monkeypatch.setattr(screen, "FALLBACK_FULL_LIMIT", limit)
    f, vjp, at = _wrong_everywhere(8, 600)  # 4800 entries, every element wrong
    frame = gradrun.check(f, at, vjp=vjp, check="screen").dataframe()
    elements, projections = frame[frame["index"] >= 0], frame[frame["index"] < 0]
    assert len(projections) and (projections["status"] == "fail").all()
    assert sorted(set(elements["index"])) == list(range(elements_checked))
    assert len(elements) == 8 * elements_checked
    big = np.abs(elements["numeric"].to_numpy()) > 1e-3
    assert np.allclose((elements["analytic"] / elements["numeric"]).to_numpy()[big], 1.1)
    assert (elements["status"].to_numpy()[big] == "fail").all()

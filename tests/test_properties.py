"""Properties of random compositions of smooth primitives on random shapes.

For any such program: every analytic Jacobian element passes against the
numeric one, forward mode equals reverse mode, and the engine's sparse batched
perturbations equal plain re-evaluation, f(x + delta e_j) - f(x).
"""

import numpy as np
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import gradrun
from gradrun import engine
from gradrun.model import ExperimentResult, Settings
from gradrun.tree import Call, Const, Var, render
from gradrun.verdict import check_point

UNARY = ("square", "cube", "exp", "sin", "cos", "tanh", "sigmoid", "softplus", "neg",
         "sum", "softmax", "logsumexp", "transpose",
         "erf", "gelu", "silu", "expm1", "mean", "log_softmax")
BINARY = ("add", "sub", "mul", "matmul")
LOW, HIGH = -1.5, 1.5  # input values: smooth primitives are well-conditioned here
ROUND_OFF = 100 * np.finfo(np.float64).eps  # of a delta, relative to the largest value in the graph

EXAMPLES = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def out_shape(op, *shapes):
    """The result shape of op on these argument shapes, or None when it does not apply."""
    if op in ("sum", "mean"):
        return ()
    if op == "logsumexp":
        return shapes[0][:-1]
    if op == "transpose":
        return shapes[0][::-1]
    if op == "matmul":
        a, b = shapes
        if not a or not b or len(a) > 2 or len(b) > 2 or a[-1] != b[0]:
            return None
        return a[:-1] + b[1:]
    if len(shapes) == 2:
        try:
            return tuple(np.broadcast_shapes(*shapes))
        except ValueError:
            return None
    return shapes[0]


@st.composite
def programs(draw):
    """(expression tree, input values): a few inputs, then 2 to 8 random ops over them."""
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    choices = [(), (k,), (n, k), (k, m)]
    names = [f"x{i}" for i in range(draw(st.integers(1, 3)))]
    shapes = {name: draw(st.sampled_from(choices)) for name in names}
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    inputs = {name: rng.uniform(LOW, HIGH, shape) for name, shape in shapes.items()}
    pool = [(Var(name), shape) for name, shape in shapes.items()]
    const = (Const(draw(st.sampled_from([0.5, 2.0, -1.0]))), ())
    expr, shape = draw(st.sampled_from(pool))  # the running term: every op feeds the output
    for _ in range(draw(st.integers(2, 8))):
        if draw(st.booleans()):
            op = draw(st.sampled_from(UNARY))
            expr, shape = Call(op, (expr,)), out_shape(op, shape)
        else:
            op = draw(st.sampled_from(BINARY))
            left = draw(st.booleans())
            partners = [b for b in pool + [const]
                        if out_shape(op, *((shape, b[1]) if left else (b[1], shape))) is not None]
            if partners:
                other, other_shape = draw(st.sampled_from(partners))
                args = ((expr, shape), (other, other_shape)) if left else ((other, other_shape), (expr, shape))
                expr = Call(op, (args[0][0], args[1][0]))
                shape = out_shape(op, args[0][1], args[1][1])
        pool.append((expr, shape))
    if isinstance(expr, Var):
        expr = Call("sin", (expr,))
    if draw(st.booleans()):
        expr = Call("sum", (expr,))
    return expr, inputs


def graph_of(expr, inputs):
    """The program's graph and values; programs that overflow (exp of cube of ...) are not drawn."""
    graph = engine.build(expr, {}, list(inputs))
    vals = engine.evaluate(graph, inputs)
    assume(all(np.all(np.abs(v) < 1e6) for v in vals))
    return graph, vals


# Programs hypothesis once found failing, kept as fixed examples.
ZERO_GRADIENT = (Call("sum", (Call("softmax", (Var("x0"),)),)), {"x0": np.array([0.41088506, -0.69063986])})
VECTOR_DOT_SELF = (Call("matmul", (Var("x0"), Var("x0"))), {"x0": np.array([0.41088506, -0.69063986])})


def failures(records):
    return [(r.element, r.output, r.numeric, r.analytic, r.tolerance, r.status) for r in records if not r.passed]


@EXAMPLES
@given(programs())
@example(ZERO_GRADIENT)
@example(VECTOR_DOT_SELF)
def test_analytic_matches_numeric(program):
    expr, inputs = program
    graph, _ = graph_of(expr, inputs)
    checked = check_point(graph, inputs, list(inputs), Settings())
    result = ExperimentResult.from_checks("p", [checked])
    assert result.rows
    assert not failures(result.records), render(expr)


@settings(EXAMPLES, max_examples=50)
@given(programs())
def test_public_check_on_the_rendered_expression(program):
    expr, inputs = program
    graph_of(expr, inputs)  # skips programs that overflow
    result = gradrun.check(render(expr), inputs)
    assert result.passed, (render(expr), failures(result.records))


@EXAMPLES
@given(programs())
def test_forward_mode_equals_reverse_mode(program):
    expr, inputs = program
    graph, vals = graph_of(expr, inputs)
    reverse = engine.jacobian(graph, vals, list(inputs))
    forward = engine.jacobian_forward(graph, vals, list(inputs))
    for name in inputs:
        scale = max(1.0, np.max(np.abs(reverse[name]), initial=0.0))
        np.testing.assert_allclose(forward[name], reverse[name], rtol=1e-12, atol=1e-13 * scale,
                                   err_msg=f"{render(expr)}, d/d{name}")


@EXAMPLES
@given(programs(), st.integers(0, 2 ** 32 - 1), st.sampled_from([1e-3, 0.3, 1e-6j, 1e-20j]))
@example(VECTOR_DOT_SELF, 0, 1e-3)
def test_perturb_equals_reevaluation(program, seed, size):
    expr, inputs = program
    graph, vals = graph_of(expr, inputs)
    dtype = np.complex128 if isinstance(size, complex) else np.float64
    base = np.asarray(engine.evaluate(graph, inputs, dtype)[graph.output]).ravel()
    # the largest intermediate value bounds the round-off of either way of computing a delta
    scale = max(1.0, max(np.max(np.abs(v), initial=0.0) for v in vals))
    rng = np.random.default_rng(seed)
    for name, x in inputs.items():
        index = rng.integers(0, x.size, size=2 * x.size + 1)  # repeats and any order
        delta = rng.uniform(-1, 1, len(index)) * size
        got, kink, _ = engine.perturb(graph, vals, name, index, delta)
        want = []
        for j, d in zip(index, delta):
            moved = dict(inputs)
            moved[name] = x.astype(dtype)
            moved[name].flat[j] += d
            want.append(np.asarray(engine.evaluate(graph, moved, dtype)[graph.output]).ravel() - base)
        want = np.array(want).reshape(got.shape)
        assert not kink.any()
        what = f"{render(expr)}, perturbing {name} by {size}"
        if not isinstance(size, complex):  # a complex step's delta is its imaginary part alone
            np.testing.assert_allclose(got.real, want.real, rtol=1e-9, atol=ROUND_OFF * scale, err_msg=what)
        # an imaginary step is not differenced away, so its part holds to a relative bound; the
        # engine carries imaginary parts alone (each node's real part stays primal), which agrees
        # with full complex arithmetic to first order: O(|step|**2) apart, nothing at 1e-20j
        rtol = 1e-9 + 1e6 * abs(size) ** 2 if isinstance(size, complex) else 1e-9
        np.testing.assert_allclose(got.imag, want.imag, rtol=rtol, atol=ROUND_OFF * scale * abs(size),
                                   err_msg=what)

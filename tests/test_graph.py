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

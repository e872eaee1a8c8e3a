"""Expressions: an allow-list over Python's ast, never evaluated."""

from __future__ import annotations

import pytest

from gradrun import expr
from gradrun.tree import Call, Const, Var, render

FUNCTIONS = {"sigmoid": 1, "sum": 1, "square": 1, "matmul": 2, "bilinear": 2, "softmax": 1, "reshape": 1,
             "clip": 1, "concatenate": None, "one_hot": 1, "where": 3}
NAMES = ["x", "y", "X", "W"]


def parse(text):
    return expr.parse(text, FUNCTIONS, NAMES)


GOOD = [
    ("x", Var("x")),
    ("2.5", Const(2.5)),
    ("x + y", Call("add", (Var("x"), Var("y")))),
    ("x - y", Call("sub", (Var("x"), Var("y")))),
    ("x * y", Call("mul", (Var("x"), Var("y")))),
    ("x / y", Call("div", (Var("x"), Var("y")))),
    ("x ** 2", Call("pow", (Var("x"), Const(2.0)))),
    ("X @ W", Call("matmul", (Var("X"), Var("W")))),
    ("-x", Call("neg", (Var("x"),))),
    ("+x", Var("x")),
    ("  sigmoid(x + y)", Call("sigmoid", (Call("add", (Var("x"), Var("y"))),))),
    ("bilinear(x, 1e-3)", Call("bilinear", (Var("x"), Const(1e-3)))),
    ("x ** -64", Call("pow", (Var("x"), Call("neg", (Const(64.0),))))),
    ("sum(\nX)", Call("sum", (Var("X"),))),
    ("sum(X, axis=1, keepdims=True)", Call("sum", (Var("X"),), (("axis", 1), ("keepdims", True)))),
    ("sum(X, axis=(0, -1))", Call("sum", (Var("X"),), (("axis", (0, -1)),))),
    ("softmax(X, axis=0)", Call("softmax", (Var("X"),), (("axis", 0),))),
    ("reshape(X, (2, -1))", Call("reshape", (Var("X"),), (("shape", (2, -1)),))),
    ("reshape(X, shape=[3])", Call("reshape", (Var("X"),), (("shape", (3,)),))),
    ("clip(x, -1, 2.5)", Call("clip", (Var("x"),), (("high", 2.5), ("low", -1)))),
    ("one_hot(y, 3)", Call("one_hot", (Var("y"),), (("n", 3),))),
    ("concatenate([x, y], axis=1)", Call("concatenate", (Var("x"), Var("y")), (("axis", 1),))),
    ("X[0]", Call("index", (Var("X"),), (("key", (0,)),))),
    ("X[-1, 1:3]", Call("index", (Var("X"),), (("key", (-1, (1, 3, None))),))),
    ("X[::2, :]", Call("index", (Var("X"),), (("key", ((None, None, 2), (None, None, None))),))),
    ("where(x >= y, x, 0)", Call("where", (Call("greater_equal", (Var("x"), Var("y"))), Var("x"), Const(0.0)))),
    ("where(x < 0, x, y)", Call("where", (Call("less", (Var("x"), Const(0.0))), Var("x"), Var("y")))),
]


@pytest.mark.parametrize("text, tree", GOOD)
def test_allowed(text, tree):
    assert parse(text) == tree


def test_precedence_follows_python():
    assert render(parse("-x ** 2 + x * y @ W")) == "(-((x ** 2)) + ((x * y) @ W))"


@pytest.mark.parametrize("text", ["sum(X, axis=1, keepdims=True)", "X[-1, 1:3]", "X[::2, 0]",
                                  "where((x > 0), x, (0.1 * x))", "concatenate([x, y], axis=1)"])
def test_render_reads_back_as_the_same_tree(text):
    tree = parse(text)
    assert parse(render(tree)) == tree


BAD = [
    ("__import__('os').system('touch /tmp/x')", 0, "attribute access is not allowed"),
    ("x.real", 0, "attribute access"),
    ("X[y]", 2, "indices must be integer constants"),
    ("X[0.5]", 2, "indices must be integer constants"),
    ("X[::y]", 4, "indices must be integer constants"),
    ("(lambda: 1)() + x", 1, "lambda"),
    ("'abc'", 0, "strings"),
    ("f'{x}'", 0, "strings"),
    ("x if y else 1", 0, "conditional"),
    ("x < y", 0, "comparisons are allowed only as the condition of where"),
    ("sigmoid(x > y)", 8, "comparisons are allowed only as the condition of where"),
    ("where(x, x > y, y)", 9, "comparisons are allowed only as the condition of where"),
    ("where(x < y < 1, x, y)", 6, "one comparison"),
    ("where(x == y, x, y)", 6, "one comparison"),
    ("x and y", 0, "'and'/'or'"),
    ("(z := x)", 1, "assignment"),
    ("sum(*X)", 4, "*arguments"),
    ("sum(X, axes=0)", 7, "sum takes no keyword 'axes'"),
    ("sum(X, axis=0.5)", 12, "sum's axis must be an integer, a tuple of integers or None"),
    ("sum(X, axis=y)", 12, "sum's axis must be"),
    ("sum(X, keepdims=1)", 16, "keepdims must be True or False"),
    ("sum(X, 0)", 0, "sum takes 1 argument, got 2"),
    ("softmax(X, axis=(0, 1))", 16, "softmax's axis must be an integer"),
    ("sigmoid(X, axis=0)", 11, "sigmoid takes no keyword 'axis'"),
    ("bilinear(x, y=1)", 12, "'bilinear' takes no keyword arguments"),
    ("reshape(X)", 0, "reshape needs shape"),
    ("reshape(X, (2, y))", 11, "reshape's shape must be a tuple of at most 32 integers"),
    ("clip(x, 0)", 0, "clip needs high"),
    ("concatenate(x, y)", 0, "concatenate takes a list of arrays"),
    ("[x, y]", 0, "a list is allowed only as the arguments of concatenate or stack"),
    ("one_hot(x, 0)", 11, "one_hot's n must be a positive integer"),
    ("sum(X, axis=0, axis=1)", 15, "sum got axis twice"),
    ("clip(x, 0, 1, 2)", 0, "clip is called as clip(x, low, high)"),
    ("clip(x, 0, high=2, low=1)", 19, "clip got low twice"),
    ("x % 2", 0, "operator not allowed"),
    ("~x", 0, "only unary"),
    ("1j * x", 0, "complex constants"),
    ("True * x", 0, "'True' is a reserved word"),
    ("1e999 * x", 0, "number too large"),
    ("x ** 65", 5, "exponent 65 is too large"),
    ("x ** -1e9", 5, "too large"),
    ("sigmod(x)", 0, "did you mean 'sigmoid'"),
    ("square(x, y)", 0, "square takes 1 argument, got 2"),
    ("x + z", 4, "unknown name 'z'"),
    ("sigmoid", 0, "is a function, not an input"),
    ("x(y)", 0, "is an input, not a function"),
    ("x +", 3, "cannot parse"),
    ("", 0, "empty"),
    ("x; y", 1, "cannot parse"),
    ("import os", 0, "cannot parse"),
    ("x" + " + x" * 600, 0, "longer than"),
    ("(" * 250 + "x" + ")" * 250, 200, "too many nested parentheses"),
    ("sum(" * 120 + "x" + ")" * 120, 0, "nested more than"),
    (" + ".join(["x"] * 450), 0, "nested more than"),
    ("+".join(["x"] * 900), 0, "expression too large"),
]


@pytest.mark.parametrize("text, column, message", BAD, ids=[b[2] for b in BAD])
def test_rejected(text, column, message):
    with pytest.raises(expr.ExprError) as caught:
        parse(text)
    problems = caught.value.problems
    assert any(p.column == column and message in f"{p.message} ({p.hint})" for p in problems), problems


def test_every_problem_at_once():
    with pytest.raises(expr.ExprError) as caught:
        parse("sigmod(z) + x.real")
    assert [p.column for p in caught.value.problems] == [0, 7, 12]


def test_without_tables_names_and_calls_are_not_checked():
    assert expr.parse("anything(a, b)") == Call("anything", (Var("a"), Var("b")))


def test_nothing_is_evaluated(tmp_path):
    target = tmp_path / "pwned"
    with pytest.raises(expr.ExprError):
        expr.parse(f"__import__('os').system('touch {target}')")
    with pytest.raises(expr.ExprError):
        expr.parse(f"open('{target}', 'w')")
    assert not target.exists()

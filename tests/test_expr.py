"""Expressions: an allow-list over Python's ast, never evaluated."""

from __future__ import annotations

import pytest

from gradrun import expr
from gradrun.tree import Call, Const, Var, render

FUNCTIONS = {"sigmoid": 1, "sum": 1, "square": 1, "matmul": 2, "bilinear": 2}
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
]


@pytest.mark.parametrize("text, tree", GOOD)
def test_allowed(text, tree):
    assert parse(text) == tree


def test_precedence_follows_python():
    assert render(parse("-x ** 2 + x * y @ W")) == "(-((x ** 2)) + ((x * y) @ W))"


BAD = [
    ("__import__('os').system('touch /tmp/x')", 0, "attribute access is not allowed"),
    ("x.real", 0, "attribute access"),
    ("X[0]", 0, "subscripts"),
    ("(lambda: 1)() + x", 1, "lambda"),
    ("'abc'", 0, "strings"),
    ("f'{x}'", 0, "strings"),
    ("x if y else 1", 0, "conditional"),
    ("x < y", 0, "comparisons"),
    ("x and y", 0, "'and'/'or'"),
    ("(z := x)", 1, "assignment"),
    ("sum(*X)", 4, "*arguments"),
    ("sum(X, axis=0)", 12, "keyword arguments"),
    ("x % 2", 0, "operator not allowed"),
    ("~x", 0, "only unary"),
    ("1j * x", 0, "complex constants"),
    ("True * x", 0, "bool constants"),
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

"""The built-ins as a reader sees them: rows for ``gradrun functions`` and the page docs/builtins.md.

Both are generated from the one primitive table, so they cannot drift from it;
a test compares the committed page with ``markdown()``.
"""

from __future__ import annotations

from . import primitives

# How the primitives that are syntax, not names, are written.
SPELLING = {
    "add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "pow": "a ** b", "neg": "-x",
    "index": "x[i, a:b:c]",
    "less": "a < b", "less_equal": "a <= b", "greater": "a > b", "greater_equal": "a >= b",
}


def row(prim) -> dict:
    """One built-in: how it is called, what it computes, its derivative and what else the table knows."""
    return {
        "name": prim.name,
        "call": SPELLING.get(prim.name) or prim.signature(),
        "keywords": [{"name": p.name, "takes": p.wants, "default": None if p.required else p.default,
                      "required": p.required, "positional": p.positional} for p in prim.params],
        "formula": prim.formula,
        "derivative": prim.derivative,
        "kinks": list(prim.kinks),
        "complex_safe": prim.complex_safe,
        "second_order": prim.second_order,
    }


def rows(hidden: bool = False) -> list:
    """The named built-ins, alphabetically; with ``hidden``, the operators and syntax instead."""
    if hidden:
        return [row(primitives.get(n)) for n in SPELLING if n in primitives.PRIMITIVES]
    return [row(primitives.get(n)) for n in primitives.names()]


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def _table(entries) -> list:
    lines = ["| call | formula | derivative |", "|---|---|---|"]
    for r in entries:
        kinks = f" (kink at {', '.join(map(str, r['kinks']))})" if r["kinks"] else ""
        lines.append(f"| `{_cell(r['call'])}` | {_cell(r['formula'])} | {_cell(r['derivative'] + kinks)} |")
    return lines


def markdown() -> str:
    """docs/builtins.md, generated from the table (`gradrun functions --format markdown`)."""
    parts = [
        "# Built-in functions",
        "",
        "<!-- Generated from gradrun's primitive table by `gradrun functions --format markdown`;"
        " do not edit by hand. -->",
        "",
        "Every built-in usable in an `expr:`, a declared function or a `chain:`. Arguments after the",
        "arrays are static: constants written in the expression, by keyword (`sum(X, axis=1,",
        "keepdims=True)`) or, where the call shows no `=`, by position (`reshape(X, (2, -1))`,",
        "`clip(x, -1, 1)`, `one_hot(labels, 3)`). An axis may be negative; `axis=None` means every",
        "axis. Keyword names and values are checked when the spec is loaded, and so are shapes and",
        "axes, each error pointing at the call in the expression.",
        "",
    ]
    parts += _table(rows())
    parts += [
        "",
        "## Operators and syntax",
        "",
        "Indices and slices are integer constants. Comparisons stand only as the condition of",
        "`where` (`where(x > 0, x, 0.1 * x)`); they are masks, not differentiated, and a",
        "perturbation that crosses their boundary is reported as a kink.",
        "",
    ]
    parts += _table(rows(hidden=True))
    parts += [
        "",
        "## Integer inputs",
        "",
        "Labels and masks are inputs written `{integer: [0, 2, 1]}`: passed to the function as",
        "they are (to your own code as int64) and never differentiated (`wrt` leaves them out,",
        "and naming one there is an error). `one_hot(labels, n)` turns class labels into rows of",
        "zeros and ones.",
        "",
    ]
    return "\n".join(parts)


__all__ = ["row", "rows", "markdown", "SPELLING"]

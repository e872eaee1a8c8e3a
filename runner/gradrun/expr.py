"""Expressions in spec files: parsed with ``ast`` under an allow-list, never evaluated.

The grammar is Python's arithmetic, cut down to::

    expr   := number | name | expr op expr | -expr | +expr | (expr)
            | name(expr, ..., static, ..., key=static, ...) | name([expr, ...], key=static)
            | expr[index, ...]
    op     := + | - | * | / | ** | @
    index  := integer | integer? : integer? (: integer?)?
    static := integer | number | True | False | None | (integer, ...)

Keyword names and static values are checked per function against its table
entry (``gradrun.params``); comparisons (``< <= > >=``) exist only as where's
condition; indices are integer constants. Anything else (attributes,
lambdas, strings, ...) is an error naming its column. The result is a tree of
``gradrun.tree`` nodes; operators become calls of the primitives in
``tree.OPERATORS``.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import re
from dataclasses import dataclass
from typing import Collection, Mapping, Optional

from . import primitives
from .tree import COMPARISONS, OPERATORS, Call, Const, Expr, Var

MAX_EXPR_LENGTH = 2_000  # characters
MAX_EXPR_NODES = 1_000  # numbers, names, operators and calls
MAX_EXPR_DEPTH = 100  # nesting of operators and calls
MAX_EXPONENT = 64  # |constant exponent| of **

COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@"}

# What a user most likely meant by a construct the grammar does not have.
NOT_ALLOWED = {
    ast.Attribute: ("attribute access is not allowed", "call a built-in or declared function instead"),
    ast.Slice: ("a slice is allowed only inside [ ]", ""),
    ast.Lambda: ("lambda is not allowed", "declare the function under 'functions:'"),
    ast.Compare: ("comparisons are allowed only as the condition of where", "where(x > 0, a, b)"),
    ast.List: ("a list is allowed only as the arguments of concatenate or stack", ""),
    ast.Tuple: ("a tuple is allowed only as a static argument, such as a shape", ""),
    ast.BoolOp: ("'and'/'or' are not allowed", ""),
    ast.IfExp: ("conditional expressions are not allowed", "relu, leaky_relu and abs cover the usual branches"),
    ast.NamedExpr: ("assignment is not allowed", ""),
    ast.Starred: ("*arguments are not allowed", ""),
    ast.JoinedStr: ("strings are not allowed", ""),
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an expression; ``column`` counts characters from 0."""

    column: int
    message: str
    hint: str = ""


class ExprError(Exception):
    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(f"col {p.column}: {p.message}" for p in self.problems))


def did_you_mean(name: str, choices) -> str:
    """A hint naming the closest known spelling, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


class _Parser:
    def __init__(self, text, functions, names, shift=0):
        self.text = text
        self.shift = shift
        self.functions = functions
        self.names = names
        self.problems: list = []

    def col(self, node) -> int:
        # ast counts UTF-8 bytes; a message counts characters.
        return self.shift + len(self.text.encode()[: node.col_offset].decode(errors="ignore"))

    def fail(self, node, message, hint=""):
        self.problems.append(Problem(self.col(node), message, hint))
        return None

    def build(self, node, mask=False) -> Optional[Expr]:
        """The tree of ``node``; ``mask``: where's condition, the one place a comparison may stand."""
        if mask and isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.UnaryOp):
            operand = self.build(node.operand)
            if isinstance(node.op, ast.USub):
                return Call(OPERATORS["neg"], (operand,))
            if isinstance(node.op, ast.UAdd):
                return operand
            return self.fail(node, "only unary '-' and '+' are allowed")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        message, hint = NOT_ALLOWED.get(type(node), (f"'{type(node).__name__}' is not allowed in an expression", ""))
        return self.fail(node, message, hint)

    def constant(self, node):
        value = node.value
        if value is None or isinstance(value, bool):  # True, False, None: reserved words, not names
            return self.fail(node, f"'{value}' is a reserved word, not a name",
                             f"an expression holds numbers, names and calls; rename an input or function "
                             f"called {value}, e.g. {value}_")
        if not isinstance(value, (int, float)):
            kind = "strings" if isinstance(value, str) else f"{type(value).__name__} constants"
            return self.fail(node, f"{kind} are not allowed", "an expression holds numbers, names and calls")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            return self.fail(node, f"number too large: {ast.get_source_segment(self.text, node)}",
                             "numbers in a spec must fit a float64 (about 1.8e308)")
        return Const(number)

    def name(self, node):
        if self.names is not None and node.id not in self.names:
            if self.functions is not None and node.id in self.functions:
                return self.fail(node, f"'{node.id}' is a function, not an input", f"call it: {node.id}(...)")
            hint = did_you_mean(node.id, self.names) or (
                f"known inputs: {', '.join(self.names)}" if self.names else "declare it under inputs or sweep")
            return self.fail(node, f"unknown name '{node.id}'", hint)
        return Var(node.id)

    def binop(self, node):
        symbol = BINARY.get(type(node.op))
        left, right = self.build(node.left), self.build(node.right)
        if symbol is None:
            return self.fail(node, "operator not allowed", "use + - * / ** @")
        if symbol == "**":
            self.check_exponent(node.right)
        return Call(OPERATORS[symbol], (left, right), column=self.col(node))

    def check_exponent(self, node):
        sign_free = node.operand if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) else node
        if isinstance(sign_free, ast.Constant) and isinstance(sign_free.value, (int, float)):
            try:
                too_big = abs(float(sign_free.value)) > MAX_EXPONENT
            except OverflowError:
                too_big = True
            if too_big:
                self.fail(node, f"exponent {ast.get_source_segment(self.text, node)} is too large",
                          f"at most {MAX_EXPONENT} in magnitude")

    def call(self, node):
        if not isinstance(node.func, ast.Name):
            args = [self.build(a) for a in node.args]
            message, hint = NOT_ALLOWED.get(type(node.func), ("only named functions can be called", ""))
            return self.fail(node.func, message, hint) if args is not None else None
        name = node.func.id
        if self.functions is not None and name not in self.functions:
            for a in node.args:
                self.build(a)
            hint = did_you_mean(name, self.functions)
            if self.names is not None and name in self.names:
                return self.fail(node, f"'{name}' is an input, not a function")
            return self.fail(node, f"unknown function '{name}'", hint)
        prim = primitives.PRIMITIVES.get(name)
        if prim is not None and name not in primitives.HIDDEN:
            return self.primitive_call(node, prim)
        if node.keywords:
            self.fail(node.keywords[0], f"'{name}' takes no keyword arguments", "pass arguments by position")
        args = tuple(self.build(a) for a in node.args)
        wanted = None if self.functions is None else self.functions[name]
        if wanted is not None and wanted != len(args):  # None: any number
            return self.fail(node, f"{name} takes {wanted} argument{'s' * (wanted != 1)}, got {len(args)}")
        return Call(name, args, column=self.col(node))

    def primitive_call(self, node, prim):
        """A built-in: its arrays, then its static arguments by position or keyword, checked against the table."""
        name, statics = prim.name, [p for p in prim.params if p.positional]
        if prim.nargs is None:  # concatenate([a, b], axis=0)
            if not node.args or not isinstance(node.args[0], ast.List) or not node.args[0].elts:
                return self.fail(node, f"{name} takes a list of arrays", f"{name}([a, b], axis=0)")
            arrays, rest = node.args[0].elts, node.args[1:]
        else:
            arrays, rest = node.args[: prim.nargs], node.args[prim.nargs:]
        args = tuple(self.build(a, mask=(name == "where" and k == 0)) for k, a in enumerate(arrays))
        if len(arrays) < (prim.nargs or 1) or len(rest) > len(statics):
            if not statics and prim.nargs is not None:
                n = prim.nargs
                return self.fail(node, f"{name} takes {n} argument{'s' * (n != 1)}, got {len(node.args)}",
                                 f"static arguments go by keyword: {prim.signature()}"
                                 if prim.params else "")
            return self.fail(node, f"{name} is called as {prim.signature()}, got {len(node.args)} positional "
                                   f"argument{'s' * (len(node.args) != 1)}")
        given = {p.name: a for p, a in zip(statics, rest)}
        for kw in node.keywords:
            allowed = [p.name for p in prim.params]
            if kw.arg is None:
                self.fail(kw, "**keyword arguments are not allowed")
            elif kw.arg not in allowed:
                self.fail(kw, f"{name} takes no keyword '{kw.arg}'", did_you_mean(kw.arg, allowed)
                          or (f"it is called as {prim.signature()}" if allowed else "it takes no keyword arguments"))
            elif kw.arg in given:
                self.fail(kw, f"{name} got {kw.arg} twice")
            else:
                given[kw.arg] = kw.value
        values = []
        for p in prim.params:
            if p.name in given:
                value = self.static(given[p.name], name, p)
                if value is not _BAD:
                    values.append((p.name, value))
            elif p.required:
                self.fail(node, f"{name} needs {p.name} ({p.wants})", prim.signature())
        return Call(name, args, tuple(sorted(values)), column=self.col(node))

    def static(self, node, fn, param):
        """A static argument's constant value, or _BAD after recording a problem."""
        value = _literal(node)
        if value is _BAD or not param.accepts(value):
            text = ast.get_source_segment(self.text, node) or "this"
            self.fail(node, f"{fn}'s {param.name} must be {param.wants}, got {text}")
            return _BAD
        return value

    def compare(self, node):
        if len(node.ops) != 1 or type(node.ops[0]) not in COMPARE:
            return self.fail(node, "one comparison with < <= > or >= is allowed here",
                             "nest where calls to combine conditions")
        left, right = self.build(node.left), self.build(node.comparators[0])
        return Call(COMPARISONS[COMPARE[type(node.ops[0])]], (left, right), column=self.col(node))

    def subscript(self, node):
        value = self.build(node.value)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        key = []
        for item in items:
            if isinstance(item, ast.Slice):
                bounds = tuple(None if b is None else self.index(b) for b in (item.lower, item.upper, item.step))
                key.append(bounds)
            else:
                key.append(self.index(item))
        if any(k is _BAD or (isinstance(k, tuple) and _BAD in k) for k in key):
            return None
        return Call("index", (value,), (("key", tuple(key)),), column=self.col(node))

    def index(self, node):
        value = _literal(node)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.fail(node, "indices must be integer constants", "x[0], X[:, 1:3], x[-1]; gather by a variable is not supported")
        return _BAD


_BAD = object()  # a static value that could not be read


def _literal(node):
    """A constant number, boolean, None or tuple of them written in the expression; _BAD otherwise."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _literal(node.operand)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner
    if isinstance(node, (ast.Tuple, ast.List)):
        items = tuple(_literal(e) for e in node.elts)
        return _BAD if any(i is _BAD for i in items) else items
    return _BAD


def _size_problems(tree) -> list:
    nodes = [n for n in ast.walk(tree) if not isinstance(n, (ast.expr_context, ast.operator, ast.unaryop))]
    problems = []
    if len(nodes) > MAX_EXPR_NODES:
        problems.append(Problem(0, f"expression too large: {len(nodes)} syntax nodes",
                                f"at most {MAX_EXPR_NODES}; split it into declared functions"))

    deepest, stack = 0, [(tree, 0)]
    while stack:  # iterative: a deep tree must not exhaust the interpreter's stack
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in ast.iter_child_nodes(node) if not isinstance(c, ast.expr_context))
    if not problems and deepest > MAX_EXPR_DEPTH + 1:  # the Expression wrapper does not count
        problems.append(Problem(0, f"expression nested more than {MAX_EXPR_DEPTH} deep",
                                "split it into declared functions"))
    return problems


_NOT_DECIMAL = re.compile(r"(?<![A-Za-z0-9_.])0[xXoObB][0-9A-Za-z_]*")


def _reserved_word(text: str):
    """The first word of ``text`` that Python reserves (``lambda``, ``in``), as a match; or None."""
    return next((m for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", text) if keyword.iskeyword(m[0])), None)


def parse(text: str, functions: Optional[Mapping[str, int]] = None,
          names: Optional[Collection[str]] = None) -> Expr:
    """Parse ``text`` into a tree; raise ``ExprError`` with every problem found.

    ``functions`` maps each callable name to its number of arguments (None:
    any) and ``names`` lists the allowed variable names; either may be None
    to skip that check. A built-in's arguments, keywords and static values
    are checked against its entry in the primitive table.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExprError([Problem(0, "empty expression")])
    if len(text) > MAX_EXPR_LENGTH:
        raise ExprError([Problem(0, f"expression longer than {MAX_EXPR_LENGTH} characters",
                                 "split it into declared functions")])
    foreign = [Problem(k, f"character {ch!r} (U+{ord(ch):04X}) is not allowed in an expression",
                       "names, numbers and operators are ASCII: letters, digits, _ and + - * / @ ( ) [ ] , : < > = .")
               for k, ch in enumerate(text) if not (" " <= ch <= "~" or ch in "\t\n\r")]
    if foreign:  # Python reads a look-alike (U+1D465, mathematical x) as x, a form feed as a space
        raise ExprError(foreign[:1])
    based = [Problem(m.start(), f"'{m[0]}' is not a decimal number", "write it in decimal")
             for m in _NOT_DECIMAL.finditer(text)]
    if based:  # Python reads 0x10 as 16, where a spec's own values are decimal only (0o17 is a string)
        raise ExprError(based)
    flat = text.replace("\r", " ").replace("\n", " ")  # folded YAML scalars span lines
    shift = len(flat) - len(flat.lstrip())  # Python rejects leading indentation
    try:
        tree = ast.parse(flat[shift:], mode="eval")
    except SyntaxError as e:
        reserved = _reserved_word(flat)
        if reserved:  # an input or parameter named lambda (a regularization weight), if, in...
            word = reserved[0]
            raise ExprError([Problem(reserved.start(), f"cannot parse expression: '{word}' is a reserved word, not a name",
                                     f"expressions are read as Python's are: rename the input or function, "
                                     f"e.g. {word}_")]) from None
        column = (e.offset - 1 if e.offset else len(flat) - shift) + shift  # no offset: at the end
        message = (e.msg or "syntax error").replace("invalid syntax", "syntax error")
        raise ExprError([Problem(column, f"cannot parse expression: {message}")]) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError([Problem(0, "cannot parse expression: too complex")]) from None
    problems = _size_problems(tree)
    if problems:
        raise ExprError(problems)
    parser = _Parser(flat[shift:], functions, names, shift)
    result = parser.build(tree.body)
    if parser.problems:
        raise ExprError(sorted(parser.problems, key=lambda p: p.column))
    return result


__all__ = ["parse", "ExprError", "Problem", "did_you_mean",
           "MAX_EXPR_LENGTH", "MAX_EXPR_NODES", "MAX_EXPR_DEPTH", "MAX_EXPONENT"]

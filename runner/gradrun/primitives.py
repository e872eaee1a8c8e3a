"""The table of primitives: one entry each, forward, VJP, JVP and what else we know.

Every rule works on numpy arrays, real or complex (complex-step needs the
complex path). Rules are written for the shapes their arguments have; where
binary arithmetic broadcasts, the graph walker, not the rule, sums cotangents
back to each argument's shape.

Rules are written per argument, as HIPS/autograd's ``defvjp`` does: ``vjp``
holds one rule per argument, ``vjp[k](g, ans, *args, **params)`` -> the
cotangent of argument k, and ``jvp`` one rule per argument,
``jvp[k](t, ans, *args, **params)`` -> the output's tangent when argument k
moves by t. ``None`` in place of a rule: that argument is not differentiated
(a mask, a label). The walkers call only the rules of arguments that need
them (not constants, not integer inputs) and sum what they give. A variadic
op (``nargs=None``: concatenate, stack) has one rule of each kind that takes
the argument's position first: ``rule(k, g, ans, *args, **params)``.
``params`` are the primitive's static arguments (``axis=``, see
``gradrun.params``), constants written in the expression.

``kind`` tells the fast full check how a perturbation travels through the op
(see ``gradrun.perturb``): ``elementwise`` keeps it in place, ``reduce`` sums
it, ``product`` (matmul) spreads it as the entry's own ``moves`` rule says and
evaluates batches by its ``forward_batched``, ``transpose`` and ``reshape``
move it, and ``dense`` makes it touch everything.

Second order: a VJP rule marked ``second_order`` is holomorphic in the primal
arguments (branch conditions read real parts only), so the reverse pass itself
may be differentiated by a complex perturbation through forward and VJP.

The entries live in three modules: elementwise ops here, reductions and
softmax-likes in ``gradrun.reductions``, shape ops in ``gradrun.shapes``; all
register into the one ``PRIMITIVES`` table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import numpy as np

from . import special
from .params import Param

LEAKY_SLOPE = 0.2  # leaky_relu's slope below zero, as in Deep Learning from Scratch


ARG_NAMES = {None: ("[a, b, ...]",), 1: ("x",), 2: ("a", "b"), 3: ("cond", "a", "b")}


@dataclass(frozen=True)
class Primitive:
    name: str
    nargs: Optional[int]  # None: any number, written as a list: concatenate([a, b])
    forward: Callable
    vjp: tuple  # one rule per argument (None: not differentiated); see the module's docstring
    jvp: tuple
    formula: str
    derivative: str
    kind: str = "elementwise"
    complex_safe: bool = True
    domain: tuple = (-3.0, 3.0)  # where the primitive is smooth and well-conditioned
    kinks: tuple = ()  # argument values where it is not differentiable
    additive: bool = False  # f(a + da, b + db) - f(a, b) = f(da, db): add, sub, neg
    linear_in: tuple = ()  # arguments in which f is linear when the others hold still
    params: tuple = ()  # static arguments (gradrun.params.Param), e.g. axis=
    # branch(*args, **params): the discrete choice the op makes (a mask, an argmax);
    # a perturbation that changes it reaches a kink (max ties, where's condition).
    branch: Optional[Callable] = None
    # check(shapes, **params): raise ValueError on a bad shape or axis; may return
    # the output shape (ops whose output can outgrow their inputs).
    check: Optional[Callable] = None
    # batch(params, ndims): the params for arguments that all carry one more,
    # leading, batch axis (``ndims`` without it); None: evaluated row by row.
    batch: Optional[Callable] = None
    # kind "product" only: moves(args, k, idx, delta) -> where sparse moves of argument k (flat
    # positions idx, (B, K), by delta) land in the output, (positions, deltas), or None; and
    # forward_batched(operands, batched, primals, out_shape): forward of operands of which those
    # marked ``batched`` carry a leading batch axis, as (B, *out_shape)
    moves: Optional[Callable] = None
    forward_batched: Optional[Callable] = None
    second_order: bool = True  # the VJP rule is holomorphic: complex perturbation through it is valid
    arg_names: tuple = ()  # names of the array arguments in messages and docs (default: ARG_NAMES)

    def settings(self, params=()) -> dict:
        """Every static argument's value: the defaults, updated by ``params`` ((name, value) pairs)."""
        values = {p.name: p.default for p in self.params}
        values.update(params)
        return values

    def signature(self) -> str:
        """How it is called: its arrays, then its static arguments with their defaults."""
        arrays = list(self.arg_names or ARG_NAMES[self.nargs])
        return f"{self.name}({', '.join(arrays + [p.spelling() for p in self.params])})"

    def vjp_rules(self, nargs: int) -> tuple:
        """One VJP rule per argument of a call with ``nargs`` arguments."""
        return self._per_argument(self.vjp, nargs)

    def jvp_rules(self, nargs: int) -> tuple:
        """One JVP rule per argument of a call with ``nargs`` arguments."""
        return self._per_argument(self.jvp, nargs)

    def _per_argument(self, rules, nargs):
        if self.nargs is not None:
            return rules
        return tuple(None if rules[0] is None else partial(rules[0], k) for k in range(nargs))

    def kind_for(self, params: dict) -> str:
        """A reduction along given axes, or a transpose with axes, moves deltas densely."""
        if self.kind == "reduce" and params.get("axis") is not None:
            return "dense"
        return self.kind


class ShapeMismatch(ValueError):
    """Argument shapes an op cannot combine (``check`` raises it with the op's name):
    reported as "<op> of shapes ... does not fit", like a failed broadcast."""


PRIMITIVES: dict[str, Primitive] = {}


def register(p: Primitive) -> None:
    """Enter one primitive into the table: one VJP and one JVP rule per argument."""
    rules = 1 if p.nargs is None else p.nargs
    if len(p.vjp) != rules or len(p.jvp) != rules:
        raise ValueError(f"{p.name}: {len(p.vjp)} VJP and {len(p.jvp)} JVP rules for {rules} arguments")
    PRIMITIVES[p.name] = p


_register = register


def unary(name, f, df, formula, derivative, **kw):
    """An elementwise one-argument primitive from f and its derivative df(x, ans)."""
    _register(Primitive(name=name, nargs=1, forward=f,
                        vjp=(lambda g, ans, x: g * df(x, ans),),
                        jvp=(lambda t, ans, x: t * df(x, ans),),
                        formula=formula, derivative=derivative, **kw))


def _positive(x):
    """The branch condition of relu-like ops, on the real part (complex-step safe)."""
    return np.real(x) > 0


def _sign(x):
    return np.sign(np.real(x))


def _sigmoid(x):
    if np.all(np.abs(np.real(x)) < 700):  # exp cannot overflow: one exp, one division
        return 1 / (1 + np.exp(-x))
    e = np.exp(-x * np.where(_positive(x), 1, -1))
    return np.where(_positive(x), 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.where(_positive(x), x, 0) + np.log1p(np.exp(-x * np.where(_positive(x), 1, -1)))


unary("square", lambda x: x * x, lambda x, a: 2 * x, "x**2", "2*x")
unary("cube", lambda x: x * x * x, lambda x, a: 3 * x * x, "x**3", "3*x**2")
unary("sqrt", np.sqrt, lambda x, a: 0.5 / a, "sqrt(x)", "1/(2*sqrt(x))", domain=(0.1, 4.0))
unary("exp", np.exp, lambda x, a: a, "exp(x)", "exp(x)")
unary("log", np.log, lambda x, a: 1 / x, "log(x)", "1/x", domain=(0.1, 4.0))
unary("sin", np.sin, lambda x, a: np.cos(x), "sin(x)", "cos(x)")
unary("cos", np.cos, lambda x, a: -np.sin(x), "cos(x)", "-sin(x)")
unary("tan", np.tan, lambda x, a: 1 + a * a, "tan(x)", "1 + tan(x)**2", domain=(-1.2, 1.2))
# not 1 - a*a nor a*(1 - a): those cancel to nothing where tanh and sigmoid saturate
unary("tanh", np.tanh, lambda x, a: 1 / np.cosh(x) ** 2, "tanh(x)", "1 - tanh(x)**2")
unary("sigmoid", _sigmoid, lambda x, a: _sigmoid(x) * _sigmoid(-x), "1/(1 + exp(-x))", "sigmoid(x)*(1 - sigmoid(x))")
unary("softplus", _softplus, lambda x, a: _sigmoid(x), "log(1 + exp(x))", "sigmoid(x)")
unary("relu", lambda x: np.where(_positive(x), x, 0), lambda x, a: np.where(_positive(x), 1.0, 0.0),
      "max(x, 0)", "1 if x > 0 else 0", kinks=(0.0,))
unary("leaky_relu", lambda x: np.where(_positive(x), x, LEAKY_SLOPE * x),
      lambda x, a: np.where(_positive(x), 1.0, LEAKY_SLOPE),
      "x if x > 0 else 0.2*x", "1 if x > 0 else 0.2", kinks=(0.0,))
unary("abs", lambda x: x * _sign(x), lambda x, a: _sign(x), "|x|", "sign(x)", kinks=(0.0,))
unary("neg", lambda x: -x, lambda x, a: -np.ones_like(x), "-x", "-1", additive=True)


def binary(name, f, vjp, jvp, formula, derivative, **kw):
    """An elementwise two-argument primitive that broadcasts like numpy; ``vjp`` and
    ``jvp`` are (rule of a, rule of b)."""
    _register(Primitive(name=name, nargs=2, forward=f, vjp=vjp, jvp=jvp, formula=formula,
                        derivative=derivative, **kw))


def _safe_log(a):
    """log(a) where a > 0; the derivative with respect to an exponent needs a positive base."""
    return np.log(np.where(_positive(a), a, 1))


binary("add", lambda a, b: a + b,
       vjp=(lambda g, ans, a, b: g, lambda g, ans, a, b: g),
       jvp=(lambda t, ans, a, b: t, lambda t, ans, a, b: t),
       formula="a + b", derivative="da = 1, db = 1", additive=True)
binary("sub", lambda a, b: a - b,
       vjp=(lambda g, ans, a, b: g, lambda g, ans, a, b: -g),
       jvp=(lambda t, ans, a, b: t, lambda t, ans, a, b: -t),
       formula="a - b", derivative="da = 1, db = -1", additive=True)
binary("mul", lambda a, b: a * b,
       vjp=(lambda g, ans, a, b: g * b, lambda g, ans, a, b: g * a),
       jvp=(lambda t, ans, a, b: t * b, lambda t, ans, a, b: a * t),
       formula="a * b", derivative="da = b, db = a", linear_in=(0, 1))
binary("div", lambda a, b: a / b,
       vjp=(lambda g, ans, a, b: g / b, lambda g, ans, a, b: -g * a / (b * b)),
       jvp=(lambda t, ans, a, b: t / b, lambda t, ans, a, b: -t * a / (b * b)),
       formula="a / b", derivative="da = 1/b, db = -a/b**2", linear_in=(0,))
binary("pow", lambda a, b: a ** b,
       vjp=(lambda g, ans, a, b: g * b * a ** (b - 1), lambda g, ans, a, b: g * ans * _safe_log(a)),
       jvp=(lambda t, ans, a, b: t * b * a ** (b - 1), lambda t, ans, a, b: t * ans * _safe_log(a)),
       formula="a ** b", derivative="da = b*a**(b-1), db = log(a)*a**b", domain=(0.2, 3.0))


def _lift(a, b, g):
    """View 1-D matmul operands as matrices, numpy-style, with g to match."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if b.ndim == 1:  # first, so that a vector @ vector's scalar g becomes (1, 1)
        g2 = np.expand_dims(g2, -1)
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    return a2, b2, g2


def _matmul_vjp_a(g, ans, a, b):
    a2, b2, g2 = _lift(a, b, g)
    ga = g2 @ np.swapaxes(b2, -1, -2)
    if a.ndim == 1:
        ga = ga.reshape(ga.shape[:-2] + ga.shape[-1:]) if ga.ndim > 2 else ga.reshape(-1)
    return ga


def _matmul_vjp_b(g, ans, a, b):
    a2, b2, g2 = _lift(a, b, g)
    gb = np.swapaxes(a2, -1, -2) @ g2
    if b.ndim == 1:
        gb = gb.reshape(gb.shape[:-1]) if gb.ndim > 2 else gb.reshape(-1)
    return gb


def _matmul_shape(shapes) -> tuple:
    """numpy.matmul's result shape, or ``ShapeMismatch``."""
    a, b = (tuple(s) for s in shapes)
    if not a or not b:
        raise ShapeMismatch("matmul")  # numpy's matmul takes no scalars
    a2, b2 = ((1,) + a if len(a) == 1 else a), (b + (1,) if len(b) == 1 else b)
    if a2[-1] != b2[-2]:
        raise ShapeMismatch("matmul")  # the inner dimensions differ
    try:
        out = np.broadcast_shapes(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    except ValueError:
        raise ShapeMismatch("matmul") from None
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _matmul_moves(args, k, idx, delta):
    """Where sparse moves of operand k land in a matrix product: a move of a[r, c] moves
    row r of a @ b, one of b[r, c] moves column c; (positions, deltas), each (B, K, row or
    column length). None where an operand is not a matrix."""
    a, b = args
    if a.ndim != 2 or b.ndim != 2:
        return None
    n, inner = a.shape
    m = b.shape[1]
    if k == 0:
        r, c = np.divmod(idx, inner)
        return (r * m)[:, :, None] + np.arange(m), delta[:, :, None] * b[c]
    r, c = np.divmod(idx, m)
    return (np.arange(n) * m)[None, None, :] + c[:, :, None], delta[:, :, None] * a.T[r]


def _matmul_batched(operands, batched, primals, out_shape):
    """numpy's matmul of operands some of which carry a leading batch axis."""
    a_nd, b_nd = primals[0].ndim, primals[1].ndim
    lifted = [operands[0][..., None, :] if a_nd == 1 else operands[0],
              operands[1][..., :, None] if b_nd == 1 else operands[1]]
    nd = max(a_nd, b_nd, 2)
    for k in range(2):
        if batched[k]:
            x = lifted[k]
            lifted[k] = x.reshape((x.shape[0],) + (1,) * (nd + 1 - x.ndim) + x.shape[1:])
    product = np.matmul(lifted[0], lifted[1])
    return product.reshape((len(product),) + tuple(out_shape))


_register(Primitive(
    name="matmul", nargs=2, forward=np.matmul,
    vjp=(_matmul_vjp_a, _matmul_vjp_b),
    jvp=(lambda t, ans, a, b: t @ b, lambda t, ans, a, b: a @ t),
    formula="a @ b", derivative="da = g @ b.T, db = a.T @ g", check=_matmul_shape,
    kind="product", linear_in=(0, 1), moves=_matmul_moves, forward_batched=_matmul_batched))

# ---------------------------------------------------------------- more elementwise ops

unary("log1p", np.log1p, lambda x, a: 1 / (1 + x), "log(1 + x)", "1/(1 + x)", domain=(-0.5, 3.0))
unary("expm1", np.expm1, lambda x, a: np.exp(x), "exp(x) - 1", "exp(x)")
unary("erf", special.erf, lambda x, a: special.TWO_OVER_SQRT_PI * np.exp(-x * x),
      "erf(x)", "2/sqrt(pi) * exp(-x**2)")
unary("gelu", lambda x: x * special.normal_cdf(x),
      lambda x, a: special.normal_cdf(x) + x * special.normal_pdf(x),
      "x * Phi(x), Phi(x) = (1 + erf(x/sqrt(2)))/2 (exact, not tanh)", "Phi(x) + x*phi(x)")
unary("silu", lambda x: x * _sigmoid(x), lambda x, a: _sigmoid(x) + x * _sigmoid(x) * _sigmoid(-x),
      "x * sigmoid(x)", "sigmoid(x) + x*sigmoid(x)*sigmoid(-x)")
unary("sign", lambda x: _sign(x) + 0 * x, lambda x, a: np.zeros_like(x),
      "sign(x): -1, 0 or 1", "0 (a jump at 0)", kinks=(0.0,))


def _mask(cond):
    """A where condition as booleans: a positive real part (a comparison gives 1 or 0)."""
    return np.real(cond) > 0


def _greater_equal(a, b):
    return np.real(a) >= np.real(b)


def _pick(first):
    """maximum (first = a >= b) or minimum (first = a <= b): the chosen argument's value and rules."""
    def forward(a, b):
        return np.where(first(a, b), a, b)

    vjp = (lambda g, ans, a, b: g * first(a, b), lambda g, ans, a, b: g * ~first(a, b))
    jvp = (lambda t, ans, a, b: np.where(first(a, b), t, 0), lambda t, ans, a, b: np.where(first(a, b), 0, t))
    return forward, vjp, jvp


for _name, _first, _word in (("maximum", _greater_equal, "max"),
                             ("minimum", lambda a, b: np.real(a) <= np.real(b), "min")):
    _f, _v, _j = _pick(_first)
    register(Primitive(name=_name, nargs=2, forward=_f, vjp=_v, jvp=_j, formula=f"{_word}(a, b), elementwise",
                       derivative="da = 1 where a wins, db = 1 where b wins (a tie is a kink)",
                       branch=_first))


def _clip_region(x, low, high):
    """-1 below low, 0 inside, 1 above high, on the real part."""
    r = np.real(x)
    return (r > high).astype(np.int8) - (r < low)


def _clip(x, low, high):
    """x held within [low, high], in x's own dtype (complex-safe: the bounds are real constants)."""
    region = _clip_region(x, low, high)
    return np.where(region == 0, x, np.where(region < 0, low, high)).astype(np.result_type(x, np.float32))


def _check_clip(shapes, low, high):
    if not low < high:
        raise ValueError(f"clip needs low < high, got low={low} and high={high}")


register(Primitive(
    name="clip", nargs=1, forward=_clip,
    vjp=(lambda g, ans, x, low, high: g * (_clip_region(x, low, high) == 0),),
    jvp=(lambda t, ans, x, low, high: t * (_clip_region(x, low, high) == 0),),
    formula="min(max(x, low), high)", derivative="1 where low < x < high, else 0 (kinks at low and high)",
    params=(Param("low", "number", positional=True, required=True),
            Param("high", "number", positional=True, required=True)),
    branch=_clip_region, check=_check_clip))

register(Primitive(
    name="where", nargs=3, forward=lambda cond, a, b: np.where(_mask(cond), a, b),
    vjp=(None, lambda g, ans, cond, a, b: g * _mask(cond), lambda g, ans, cond, a, b: g * ~_mask(cond)),
    jvp=(None, lambda t, ans, cond, a, b: np.where(_mask(cond), t, 0),
         lambda t, ans, cond, a, b: np.where(_mask(cond), 0, t)),
    formula="a where cond else b (cond: a comparison such as x > 0, or a mask: true where positive)",
    derivative="da = 1 where cond, db = 1 elsewhere; none for cond (its boundary is a kink)"))


def _comparison(name, test, symbol):
    def forward(a, b):
        r = np.real(np.asarray(a))
        return test(r, np.real(b)).astype(r.dtype if r.dtype.kind == "f" else np.float64)

    register(Primitive(name=name, nargs=2, forward=forward, vjp=(None, None), jvp=(None, None),
                       formula=f"a {symbol} b as 1 or 0 (only inside where's condition)",
                       derivative="none: a mask (its boundary is a kink of where)",
                       branch=forward))


_comparison("less", np.less, "<")
_comparison("less_equal", np.less_equal, "<=")
_comparison("greater", np.greater, ">")
_comparison("greater_equal", np.greater_equal, ">=")

def get(name: str) -> Primitive:
    return PRIMITIVES[name]


def names() -> list:
    """Built-in names usable in a spec (operators' primitive names excluded)."""
    return sorted(n for n in PRIMITIVES if n not in HIDDEN)


# Primitives spelled as syntax, not called by name: operators, x[...], comparisons.
HIDDEN = {"add", "sub", "mul", "div", "pow", "neg", "index", "less", "less_equal", "greater", "greater_equal"}

from . import reductions, shapes  # noqa: E402,F401  (they register their entries)

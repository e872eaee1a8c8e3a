"""Red-team round 7: functions and backward passes written to fool the verdict.

Each case is a forward, a VJP (or JVP), a point and what gradrun must say:
``pass`` (correct code: pass or kink), ``fail`` (a bug: some entry fails),
``not-pass`` (no finite difference decides it: unresolved or nan is honest,
a pass is not), ``no-fail`` (correct, and undecidable at the precision the
check claims: pass or unresolved, never fail) or ``error`` (the code breaks the contract, a CheckError or
GraphError naming it). Run by ``tests/test_redteam7.py`` in float64 and float32.

The attacks: values far below 1 (1e-35, 1e-300, subnormals) whose gradients the
round-off floor used to swallow whole; values near 1e150; relu and abs a step's
width from their kink (1e-9 beside inputs of 0.5) with a backward that zeroes
|x| < 1e-6, which passed as a kink; a VJP or forward that
writes to the arrays it is handed (moving the point every later difference is
taken at); a VJP that scales its cotangent in place (correct, and must stay so);
a VJP or JVP whose real answer carries an imaginary part (a cast dropped it);
state that changes f only after the first calls;
jumps, a quantised staircase, a NaN in one entry, an inf output beside a bug.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    forward: Callable
    vjp: Optional[Callable]
    point: dict
    expect: str  # pass | fail | not-pass | no-fail | error
    jvp: Optional[Callable] = None
    dtypes: tuple = ("float64", "float32")
    settings: dict = field(default_factory=dict)


X = np.array([0.3, 1.1, -0.7])


def _scaled(s, bug=1.0):
    def fwd(x):
        return s * np.sin(x)

    def vjp(g, x):
        return bug * s * g * np.cos(x)
    return fwd, vjp


def _small(name, s, dtypes):
    out = []
    for tag, bug, expect in (("", 1.0, "pass"), ("@twice", 2.0, "fail"), ("@1e-5", 1 + 1e-5, "fail")):
        fwd, vjp = _scaled(s, bug)
        out.append(Case(name + tag, fwd, vjp, {"x": X}, expect, dtypes=dtypes))
    return out


def _writes_input_vjp(g, x):  # wrong slope 1 everywhere, and x set to where 1 is right for sin
    x[...] = 0.0
    return g * 1.0


def _relu_in_place(x):  # the right function of x, computed by clipping x itself
    x[x < 0] = 0
    return x * x


def _scales_cotangent(g, x):  # correct: g is its own to scale
    g *= np.cos(x)
    return g


def _scales_tangent(t, x):  # correct: the tangent is its own to scale
    (tx,) = t
    tx *= np.cos(x)
    return tx


def _writes_primal_jvp(t, x):
    (tx,) = t
    x[...] = 0.0
    return tx * 1.0


def _relu(x):
    return np.maximum(x, 0)


def _relu_vjp(g, x):
    return g * (x > 0)


def _relu_vjp_threshold(g, x):
    return g * (x > 1e-6)


def _abs_vjp_threshold(g, x):
    return g * np.sign(x) * (np.abs(x) > 1e-6)


def _leaky(x):
    return np.where(x > 0, x, 0.01 * x)


def _leaky_vjp(g, x):
    return g * np.where(x > 0, 1.0, 0.01)


def _leaky_vjp_threshold(g, x):
    return g * np.where(x > 1e-6, 1.0, 0.01)


def _sharp_softplus(x):
    return np.logaddexp(0, 1e7 * x) / 1e7


def _sharp_softplus_vjp(g, x):
    return g / (1 + np.exp(-1e7 * x))


def _sum_relu(x):
    return np.sum(np.maximum(x, 0))


_NEAR = np.array([1e-9, 0.5, -0.3, 1e-10, -2e-9, 0.7])


class _Counter:
    """sin, plus 1e-7 on every other call after the fourth: state the two calls at the
    start of a check cannot see, and noise that hid a VJP 1e-5 off."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return np.sin(x) + 1e-7 * (self.calls > 4 and self.calls % 2)


def _sum_relu32(x):
    return np.float64(np.sum(np.maximum(x.astype(np.float32), 0)))


_POINT300 = np.random.default_rng(3).normal(size=300)
_POINT300[17] = 0.0


def _here_and_near(x):
    return np.array([np.maximum(x[0], 0) + x[1], 3 * np.maximum(x[0] - 1e-9, 0) + x[1] ** 2])


def _here_and_near_bug(g, x):
    return np.array([g[0] * (x[0] > 0) + 3 * g[1], g[0] + 2 * x[1] * g[1]])


def _jump(x):
    return x + (x > 0)


def _staircase(x):
    return np.round(x * 1e5) / 1e5


def _nan_entry(g, x):
    d = g * np.cos(x)
    d[1] = np.nan
    return d


def _inf_beside(x):
    return np.array([1 / x[0], x[1] ** 2])


def _inf_beside_bug(g, x):
    return np.array([-g[0] / x[0] ** 2, 2 * x[1] * g[1] * (1 + 1e-4)])


CASES = (
    _small("tiny-1e-35", 1e-35, ("float64", "float32"))
    + _small("tiny-1e-300", 1e-300, ("float64",))
    + [
        Case("subnormal-linear", lambda x: 3.0 * x, lambda g, x: 3.0 * g, {"x": np.array([3e-310, 5e-311])},
             "pass"),
        Case("subnormal-linear@1e-6", lambda x: 3.0 * x, lambda g, x: 3.0 * (1 + 1e-6) * g,
             {"x": np.array([3e-310, 5e-311])}, "fail"),
        Case("huge-square", lambda x: x * x, lambda g, x: 2 * x * g, {"x": np.array([1e150, -3e149])}, "pass",
             dtypes=("float64",)),
        Case("huge-square@1e-5", lambda x: x * x, lambda g, x: 2 * x * g * (1 + 1e-5),
             {"x": np.array([1e150, -3e149])}, "fail", dtypes=("float64",)),
        Case("vjp-writes-its-input", np.sin, _writes_input_vjp, {"x": np.array([0.7, 1.3])}, "fail"),
        Case("forward-writes-its-input", _relu_in_place, lambda g, x: 2 * np.maximum(x, 0) * g,
             {"x": np.array([-0.5, 0.7])}, "pass"),
        Case("vjp-scales-its-cotangent", np.sin, _scales_cotangent, {"x": X}, "pass"),
        Case("jvp-scales-its-tangent", np.sin, None, {"x": X}, "pass", jvp=_scales_tangent),
        Case("jvp-writes-its-input", np.sin, None, {"x": np.array([0.7, 1.3])}, "fail", jvp=_writes_primal_jvp),
        Case("vjp-complex-cotangent", np.sin, lambda g, x: g * np.cos(x) + 0.5j, {"x": X}, "error"),
        Case("jvp-complex-tangent", np.sin, None, {"x": X}, "error", jvp=lambda t, x: t[0] * np.cos(x) + 0.5j),
        # a kink a step's width from x, not at it: relu and abs are differentiable at 1e-9
        # beside inputs of 0.5 (step 2e-6), and a backward that zeroes |x| < 1e-6 is wrong
        *[Case(f"relu-near-kink-{x0:g}{tag}", _relu, vjp, {"x": np.array([x0, 0.5, -0.3])}, expect)
          for x0 in (1e-9, -1e-9, 1e-7, 3e-7, 1e-12)
          for tag, vjp, expect in (("", _relu_vjp, "pass"), ("@threshold", _relu_vjp_threshold,
                                                             "pass" if x0 < 0 else "fail"))],
        *[Case(f"abs-near-kink-{x0:g}@threshold", np.abs, _abs_vjp_threshold, {"x": np.array([x0, 0.5, -0.3])},
               "fail") for x0 in (1e-9, -1e-9, 3e-7)],
        Case("relu-at-its-kink", _relu, _relu_vjp, {"x": np.array([0.0, 0.5, -0.3])}, "pass"),
        Case("leaky-near-kink@threshold", _leaky, _leaky_vjp_threshold, {"x": np.array([1e-9, 0.5, -0.3, 2.0])},
             "fail"),
        Case("leaky-near-kink", _leaky, _leaky_vjp, {"x": np.array([1e-9, 0.5, -0.3, 2.0])}, "pass"),
        # a bend 1e-7 wide, 1e-8 from x: smooth, and Richardson across it read 0.5 for 0.525
        Case("sharp-softplus", _sharp_softplus, _sharp_softplus_vjp, {"x": np.array([1e-8, 0.5, -0.3])}, "pass"),
        Case("sharp-softplus@relu-slope", _sharp_softplus, _relu_vjp, {"x": np.array([1e-8, 0.5, -0.3])}, "fail"),
        # one output summing relu of entries 1e-10 to 2e-9 from the kink: a re-measurement at
        # a step of 2e-15 passed a zeroed slope with a tolerance of 2 on its own round-off;
        # the correct slope is unresolved where the step it needs (1e-11) leaves f's round-off 1e-5
        Case("sum-relu-near-kink@threshold", _sum_relu, _relu_vjp_threshold, {"x": _NEAR}, "fail"),
        Case("sum-relu-near-kink", _sum_relu, _relu_vjp, {"x": _NEAR}, "no-fail"),
        Case("counter-after-four-calls", _Counter(), lambda g, x: (1 + 1e-5) * g * np.cos(x), {"x": X}, "error"),
        # x[0] = 0: output 0 has its kink at x, output 1 one 1e-9 away, where its slope is 0, not 3
        Case("kink-here-and-near@3", _here_and_near, _here_and_near_bug, {"x": np.array([0.0, 0.5])}, "fail"),
        Case("jump@slope-1", _jump, lambda g, x: g * 1.0, {"x": np.array([0.0])}, "not-pass"),
        Case("jump@slope-0", _jump, lambda g, x: g * 0.0, {"x": np.array([0.0])}, "not-pass"),
        # f is flat below 1e-5 and its slope 1 above it: no difference measures the derivative
        # at the precision claimed, so neither the straight-through slope nor 0 is judged wrong there
        Case("staircase@straight-through", _staircase, lambda g, x: g * 1.0, {"x": np.array([0.3, 0.71])},
             "not-pass"),
        Case("staircase@twice", _staircase, lambda g, x: g * 2.0, {"x": np.array([0.3, 0.71])}, "fail"),
        # float32 inside, float64 out: its differences move in float32's steps
        Case("float32-inside-sum", _sum_relu32, _relu_vjp, {"x": _POINT300}, "pass"),
        Case("float32-inside-sum@1e-2", _sum_relu32, lambda g, x: g * (x > 0) * 1.01, {"x": _POINT300}, "fail"),
        Case("staircase", _staircase, lambda g, x: g * 0.0, {"x": np.array([0.3, 0.71])}, "pass"),
        Case("nan-in-one-entry", np.sin, _nan_entry, {"x": X}, "not-pass"),
        Case("inf-output-beside-a-bug", _inf_beside, _inf_beside_bug, {"x": np.array([0.0, 0.5])}, "fail"),
    ]
)

"""How close each numeric derivative comes to the exact one, and what a call costs.

For sigmoid, tanh, exp, x**2 and sin at 0.5, 2 and -3: the largest relative
error against the exact derivative (sympy, 40 digits) of

  gradrun auto (graph)      gradrun.check on the expression: complex step
  gradrun auto (black-box)  gradrun.check on a Python callable with a VJP: central,
                            Richardson only for elements that fail the first pass
  central 1e-6              (f(x+h) - f(x-h)) / 2h at torch.autograd.gradcheck's default step
  book deriv (1e-3)         the same at Deep Learning from Scratch's step
  numdifftools              numdifftools.Derivative (if installed)

and the time of one call (one derivative at one point; gradrun's time is a whole check).

Run: .venv/bin/python benchmarks/bench_accuracy.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import gradrun

try:
    import numdifftools
except ImportError:  # optional: the row is left out
    numdifftools = None

# the functions, points and exact derivatives that tests/test_book.py holds auto to
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_book import FUNCTIONS, POINTS, blackbox, exact  # noqa: E402


def central(f, at, h):
    return (f(at + h) - f(at - h)) / (2 * h)


def methods():
    """method name -> derivative(function name, point)."""
    out = {
        "gradrun auto (graph)": lambda name, at: gradrun.check(f"{name}(x)", {"x": at}).records[0].numeric,
        "gradrun auto (black-box)": lambda name, at: gradrun.check(
            blackbox(name)[0], {"x": at}, vjp=blackbox(name)[1]).records[0].numeric,
        "central 1e-6": lambda name, at: central(FUNCTIONS[name][1], at, 1e-6),
        "book deriv (1e-3)": lambda name, at: central(FUNCTIONS[name][1], at, 1e-3),
    }
    if numdifftools is not None:
        out["numdifftools"] = lambda name, at: float(numdifftools.Derivative(FUNCTIONS[name][1])(at))
    return out


def per_call(fn, calls=20):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main():
    truth = {(name, at): exact(FUNCTIONS[name][0], at) for name in FUNCTIONS for at in POINTS}
    head = ["method"] + list(FUNCTIONS) + ["largest", "time per call"]
    print(f"largest relative error over x in {POINTS}" + (f"; numdifftools {numdifftools.__version__}"
                                                         if numdifftools is not None else "; no numdifftools"))
    print(f"{head[0]:<26}" + "".join(f"{h:>11}" for h in head[1:-1]) + f"{head[-1]:>15}")
    for label, derivative in methods().items():
        errors = {name: max(abs(derivative(name, at) - truth[name, at]) / abs(truth[name, at]) for at in POINTS)
                  for name in FUNCTIONS}
        seconds = per_call(lambda: derivative("sigmoid", 0.5))
        print(f"{label:<26}" + "".join(f"{e:>11.1e}" for e in errors.values())
              + f"{max(errors.values()):>11.1e}" + f"{seconds * 1e6:>12.1f} us")


if __name__ == "__main__":
    main()

"""Full-check time for L = sum(sigmoid(X @ W)): gradrun beside a numpy loop and torch.

Every element of dL/dX and dL/dW is checked. Columns, in seconds (best of a few runs),
then speedups (how many times longer the other tool takes):

  check_point   gradrun's verdict.check_point with check: full (its result columns included)
  core          the same without building columns: engine.jacobian + verdict.check_input
  numpy 2N      a plain loop of 2N central differences of the whole function
  torch         torch.autograd.gradcheck, slow mode, default settings, float64 (if installed)

and, for the same loss given to gradrun as a black box (a Python function with its VJP),
the full check beside 2N plain calls of that function: what a black box cannot avoid.

Run: .venv/bin/python benchmarks/bench_full.py
"""

from __future__ import annotations

import time

import numpy as np

import gradrun
from gradrun import engine, numeric, verdict
from gradrun.model import Settings
from gradrun.tree import Call, Var

SIZES = [(3, 3, 2), (32, 32, 16), (100, 100, 50)]
LOSS = Call("sum", (Call("sigmoid", (Call("matmul", (Var("X"), Var("W"))),)),))
SETTINGS = Settings(check="full")

try:
    import torch
except ImportError:  # torch is optional: the column is left out
    torch = None


def best(fn, budget=3.0, most=5):
    """The fastest of up to ``most`` runs, stopping once ``budget`` seconds are spent."""
    times, spent = [], 0.0
    while len(times) < most and (not times or spent < budget):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return min(times)


def gradrun_full(graph, inputs):
    checked = verdict.check_point(graph, inputs, ["X", "W"], SETTINGS)
    assert (checked.elements["status"] == "pass").all()
    assert len(checked.elements) == sum(v.size for v in inputs.values())


def gradrun_core(graph, inputs):
    vals = engine.evaluate(graph, inputs)
    jac = engine.jacobian(graph, vals, ["X", "W"])
    for name in ("X", "W"):
        res = verdict.check_input(graph, vals, name, jac[name], SETTINGS, numeric.EPS["float64"])
        assert np.all(res.status == "pass")


def numpy_loop(inputs, h=1e-6):
    def loss(X, W):
        return np.sum(1 / (1 + np.exp(-(X @ W))))

    grads = {}
    for name in ("X", "W"):
        x = inputs[name]
        g = np.empty(x.size)
        for j in range(x.size):
            moved = dict(inputs)
            plus, minus = x.copy(), x.copy()
            plus.flat[j] += h
            minus.flat[j] -= h
            moved[name] = plus
            up = loss(**moved)
            moved[name] = minus
            g[j] = (up - loss(**moved)) / (2 * h)
        grads[name] = g
    return grads


def black_box_loss(X, W):
    return np.sum(1 / (1 + np.exp(-(X @ W))))


def black_box_vjp(g, X, W):
    s = 1 / (1 + np.exp(-(X @ W)))
    d = g * s * (1 - s)
    return d @ W.T, X.T @ d


def gradrun_black_box(inputs):
    assert gradrun.check(black_box_loss, inputs, vjp=black_box_vjp, check="full").passed


def plain_calls(inputs):
    for _ in range(2 * sum(v.size for v in inputs.values())):
        black_box_loss(**inputs)


def torch_gradcheck(inputs):
    X = torch.tensor(inputs["X"], dtype=torch.float64, requires_grad=True)
    W = torch.tensor(inputs["W"], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: torch.sigmoid(a @ b).sum(), (X, W), fast_mode=False)


def main():
    rng = np.random.default_rng(0)
    rows = []
    for n, k, m in SIZES:
        inputs = {"X": rng.normal(size=(n, k)), "W": rng.normal(size=(k, m))}
        graph = engine.build(LOSS, {}, ["X", "W"])
        row = {
            "size": f"({n},{k},{m})",
            "N": n * k + k * m,
            "check_point": best(lambda: gradrun_full(graph, inputs)),
            "core": best(lambda: gradrun_core(graph, inputs)),
            "numpy 2N": best(lambda: numpy_loop(inputs), most=3),
            "torch": best(lambda: torch_gradcheck(inputs), most=3) if torch is not None else float("nan"),
            "black box": best(lambda: gradrun_black_box(inputs), most=3),
            "2N calls": best(lambda: plain_calls(inputs), most=3),
        }
        rows.append(row)
    print(f"L = sum(sigmoid(X @ W)), full check of dL/dX and dL/dW; numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch is not None else ", torch not installed"))
    head = ["size", "N", "check_point", "core", "numpy 2N", "torch",
            "numpy/check_point", "torch/check_point", "numpy/core", "torch/core"]
    print("  ".join(f"{h:>17}" if i > 1 else f"{h:>13}" for i, h in enumerate(head)))
    for r in rows:
        cells = [r["size"], str(r["N"])] + [f"{r[c]:.4g} s" for c in ("check_point", "core", "numpy 2N", "torch")]
        cells += [f"{r[slow] / r[fast]:.1f}x" for fast in ("check_point", "core") for slow in ("numpy 2N", "torch")]
        print("  ".join(f"{c:>17}" if i > 1 else f"{c:>13}" for i, c in enumerate(cells)))
    print("\nthe same loss as a black box (a Python function and its VJP): gradrun's full check beside 2N plain calls")
    print("  ".join(f"{h:>13}" for h in ["size", "N", "gradrun", "2N calls", "ratio"]))
    for r in rows:
        cells = [r["size"], str(r["N"]), f"{r['black box']:.4g} s", f"{r['2N calls']:.4g} s",
                 f"{r['black box'] / r['2N calls']:.2f}x"]
        print("  ".join(f"{c:>13}" for c in cells))


if __name__ == "__main__":
    main()

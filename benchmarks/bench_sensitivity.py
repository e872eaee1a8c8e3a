"""The smallest single-entry gradient error gradrun flags, beside torch.autograd.gradcheck.

On L = sum(sigmoid(X @ W)) with X (32, 32) and W (32, 16), an error of
10^-k relative is planted in one entry of the analytic dL/dX (the entry of
median magnitude, so neither a near-zero nor the largest one), for
k = 1..10, and "k = -" is the correct gradient. Checked three ways:

- gradrun, Python function: ``gradrun.check(f, ..., vjp=buggy_vjp)``, full mode;
- gradrun, own graph: the expression ``sum(sigmoid(plant(X) @ W))`` where
  ``plant`` is an identity whose VJP plants the error; everything else is
  gradrun's built-in primitives and their VJPs (complex step applies);
- torch.autograd.gradcheck with its defaults (float64, slow mode, eps 1e-6,
  atol 1e-5, rtol 1e-3), the error planted by an identity autograd.Function,
  when torch is installed.

Run: .venv/bin/python benchmarks/bench_sensitivity.py
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import gradrun
from gradrun.tree import PythonFunction

# the function and its VJP are the mutation suite's sum_sigmoid_matmul case
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from mutations import entry_off  # noqa: E402
from mutations.layers import f_sum_sigmoid_matmul as loss, vjp_sum_sigmoid_matmul as loss_vjp  # noqa: E402

SHAPE = (32, 32, 16)
KS = [None] + list(range(1, 11))  # None: the correct gradient


def point(seed=0):
    n, d, m = SHAPE
    rng = np.random.default_rng(seed)
    return {"X": rng.standard_normal((n, d)), "W": rng.standard_normal((d, m)) / np.sqrt(d)}


def median_entry(values) -> int:
    """The flat index of dL/dX's entry of median magnitude."""
    gx = loss_vjp(1.0, values["X"], values["W"])[0].ravel()
    return int(np.argsort(np.abs(gx))[gx.size // 2])


def gradrun_python(values, index, rel) -> tuple:
    res = gradrun.check(loss, values, vjp=entry_off(loss_vjp, rel, arg=0, index=index), check="full")
    return res.passed, res


def gradrun_graph(values, index, rel) -> tuple:
    identity = PythonFunction("plant", ("x",), lambda x: x, entry_off(lambda g, x: g, rel, 0, index),
                              complex_safe=True)
    res = gradrun.check("sum(sigmoid(plant(X) @ W))", values, functions={"plant": identity}, check="full")
    return res.passed, res


def torch_loss(index=None, rel=0.0):
    """sigmoid(X @ W).sum() in torch, with dL/dX's entry ``index`` off by ``rel`` when given."""
    import torch

    class Plant(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            g = g.clone()
            g.view(-1)[index] *= 1 + rel
            return g

    def f(X, W):
        return torch.sigmoid((X if index is None else Plant.apply(X)) @ W).sum()

    return f


def torch_gradcheck(values, index, rel):
    import torch

    X = torch.tensor(values["X"], dtype=torch.float64, requires_grad=True)
    W = torch.tensor(values["W"], dtype=torch.float64, requires_grad=True)
    return torch.autograd.gradcheck(torch_loss(index, rel), (X, W), raise_exception=False), None


def timed(fn, *args):
    start = time.perf_counter()
    passed, _ = fn(*args)
    return passed, time.perf_counter() - start


def main():
    values = point()
    index = median_entry(values)
    checkers = {"gradrun (python vjp)": gradrun_python, "gradrun (own graph)": gradrun_graph}
    try:
        import torch

        checkers[f"torch {torch.__version__} gradcheck"] = torch_gradcheck
    except ImportError:
        print("torch is not installed: its column is left out")
    n, d, m = SHAPE
    gx = loss_vjp(1.0, values["X"], values["W"])[0].ravel()
    print(f"L = sum(sigmoid(X @ W)), X ({n}, {d}), W ({d}, {m}); error planted in dL/dX[{index}] "
          f"= {gx[index]:.4g} (median |entry|; largest {np.abs(gx).max():.4g})\n")
    names = list(checkers)
    widths = [max(len(nm), 18) for nm in names]
    print(f"{'planted rel error':>18}  " + "  ".join(f"{nm:>{w}}" for nm, w in zip(names, widths)))
    smallest = {nm: None for nm in names}
    for k in KS:
        rel = 0.0 if k is None else 10.0 ** -k
        cells = []
        for nm, w in zip(names, widths):
            passed, seconds = timed(checkers[nm], values, index, rel)
            verdict = "pass" if passed else "FLAGGED"
            if k is not None and not passed and (smallest[nm] is None or rel < smallest[nm]):
                smallest[nm] = rel
            cells.append(f"{verdict + f' ({seconds:.2f}s)':>{w}}")
        label = "0 (correct)" if k is None else f"1e-{k}"
        print(f"{label:>18}  " + "  ".join(cells))
    print()
    for nm in names:
        s = smallest[nm]
        print(f"smallest flagged by {nm}: " + ("none" if s is None else f"1e-{round(-np.log10(s))}"))


if __name__ == "__main__":
    main()

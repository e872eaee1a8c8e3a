"""Second order (issue 18): the Hessian check of L = sum(sigmoid(X @ W)) beside torch's gradgradcheck.

At (n, k, m) = (32, 32, 16), X ~ N(0, 1), W ~ N(0, 1/k): 1,536 inputs, a Hessian of
2,359,296 entries. Best of a few runs, one torch intra-op thread:

  hvp             one analytic Hessian-vector product (second_order.hvp, forward-over-reverse in complex)
  full (arrays)   hessian.check_columns over every column: every entry numeric beside analytic,
                  with a verdict, as arrays (no Records: 2.4 million of them would be the report, not the check)
  screen          hessian.check_point with check: screen on correct code (4 HVP directions)
  scr+loc         the same on a user function whose hvp rule is off by 1e-3 in one entry:
                  screen, localize, then the localized column checked entry by entry
  gradgradcheck   torch.autograd.gradgradcheck on the same function, float64, slow mode
                  (its numeric Jacobian of the gradient, column by column) and fast mode

the screen at (100, 100, 50) and (300, 300, 100), and the largest |analytic - torch's Hessian| over all entries (torch.autograd.functional.hessian),
whether the planted entry was found, and the full check's verdict counts.

Run: .venv/bin/python benchmarks/bench_hessian.py      (about a minute)
"""

from __future__ import annotations

import time

import numpy as np

import gradrun
from gradrun import engine, hessian, second_order
from gradrun.model import Settings
from gradrun.tree import Call, PythonFunction, Var

N, K, M = 32, 32, 16
LOSS = Call("sum", (Call("sigmoid", (Call("matmul", (Var("X"), Var("W"))),)),))


def best(fn, runs=3):
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def point():
    rng = np.random.default_rng(0)
    return {"X": rng.normal(size=(N, K)), "W": rng.normal(size=(K, M)) / np.sqrt(K)}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def loss(X, W):
    return np.sum(sigmoid(X @ W))


def loss_vjp(g, X, W):
    d = g * sigmoid(X @ W) * (1 - sigmoid(X @ W))
    return d @ W.T, X.T @ d


def loss_hvp(g, t, X, W):
    tX, tW = t
    s = sigmoid(X @ W)
    d = g * s * (1 - s)
    dd = g * s * (1 - s) * (1 - 2 * s) * (tX @ W + X @ tW)
    return dd @ W.T + d @ tW.T, tX.T @ d + X.T @ dd


def planted_hvp(g, t, X, W):  # one entry, d2L / dX[3,5] dW[7,2], off by 1e-3
    hX, hW = loss_hvp(g, t, X, W)
    hX = hX.copy()
    hX[3, 5] += 1e-3 * t[1][7, 2]
    return hX, hW


def gradrun_figures(values):
    graph = engine.build(LOSS, {}, ["X", "W"])
    settings = Settings(order=2)
    direction = np.random.default_rng(1).normal(size=N * K + K * M)
    t_hvp, _ = best(lambda: second_order.hvp(graph, values, ["X", "W"], direction), runs=5)
    prob = hessian.Problem(graph, values, ["X", "W"], settings)
    t_full, res = best(lambda: hessian.check_columns(prob, np.arange(prob.size)), runs=1)
    t_screen, screened = best(lambda: hessian.check_point(graph, values, ["X", "W"], settings.updated(check="screen")))
    fn = PythonFunction("loss", ("X", "W"), loss, loss_vjp, hvp=planted_hvp)
    bad_graph = engine.build(Call("loss", (Var("X"), Var("W"))), {"loss": fn}, ["X", "W"])
    t_loc, planted = best(lambda: hessian.check_point(bad_graph, values, ["X", "W"], settings.updated(check="screen")),
                          runs=1)
    found = sorted({(r.element, r.element2) for r in planted if r.index != -1 and r.status == "fail"})
    return {"hvp": t_hvp, "full": t_full, "screen": t_screen, "scr+loc": t_loc, "res": res,
            "screen_passed": all(r.passed for r in screened), "found": found}


def torch_figures(values):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    X = torch.tensor(values["X"], requires_grad=True)
    W = torch.tensor(values["W"], requires_grad=True)

    def f(X, W):
        return torch.sigmoid(X @ W).sum()

    t_slow, ok_slow = best(lambda: torch.autograd.gradgradcheck(f, (X, W)), runs=1)
    t_fast, ok_fast = best(lambda: torch.autograd.gradgradcheck(f, (X, W), fast_mode=True))
    flat = torch.cat([X.detach().ravel(), W.detach().ravel()])
    H = torch.autograd.functional.hessian(lambda v: f(v[:N * K].reshape(N, K), v[N * K:].reshape(K, M)), flat)
    return {"slow": t_slow, "fast": t_fast, "ok": ok_slow and ok_fast, "H": H.numpy()}


def screen_as_it_grows():
    """check: screen (auto) on correct code at larger sizes: (inputs, seconds, passed)."""
    out = []
    for n, k, m in [(100, 100, 50), (300, 300, 100)]:
        rng = np.random.default_rng(0)
        values = {"X": rng.normal(size=(n, k)), "W": rng.normal(size=(k, m)) / np.sqrt(k)}
        graph = engine.build(LOSS, {}, ["X", "W"])
        seconds, records = best(lambda: hessian.check_point(graph, values, ["X", "W"], Settings(order=2)), runs=1)
        out.append(((n, k, m), n * k + k * m, seconds, all(r.passed for r in records)))
    return out


def main():
    values = point()
    ours = gradrun_figures(values)
    theirs = torch_figures(values)
    res = ours["res"]
    statuses, counts = np.unique(res["status"], return_counts=True)
    print(f"sum(sigmoid(X @ W)) at (n, k, m) = ({N}, {K}, {M}): {N * K + K * M} inputs, "
          f"{res['status'].size:,} Hessian entries (gradrun {gradrun.__version__})")
    print(f"  gradrun hvp (one HVP)          {ours['hvp'] * 1e3:9.2f} ms")
    print(f"  gradrun full (every entry)     {ours['full']:9.2f} s    verdicts: "
          + ", ".join(f"{s} {c:,}" for s, c in zip(statuses, counts)))
    print(f"  gradrun screen                 {ours['screen']:9.2f} s    passed: {ours['screen_passed']}")
    print(f"  gradrun screen+localize        {ours['scr+loc']:9.2f} s    planted H[X[3,5],W[7,2]] off by 1e-3; "
          f"failing entries found: {ours['found']}")
    for size, inputs, seconds, passed in screen_as_it_grows():
        print(f"  gradrun screen at {size}: {inputs:,} inputs ({inputs ** 2:.1e} entries) {seconds:7.2f} s    "
              f"passed: {passed}")
    if theirs is None:
        print("  torch not installed: gradgradcheck not run")
        return
    print(f"  torch gradgradcheck (slow)     {theirs['slow']:9.2f} s")
    print(f"  torch gradgradcheck (fast)     {theirs['fast']:9.2f} s    passed: {theirs['ok']}")
    print(f"  max |gradrun analytic - torch Hessian| = {np.max(np.abs(res['analytic64'] - theirs['H'])):.2e}")
    print(f"  full check / gradgradcheck slow: {ours['full'] / theirs['slow']:.2f}x the time")


if __name__ == "__main__":
    main()

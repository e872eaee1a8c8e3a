"""Checks that stay fast as tensors grow (issue 7): full check, screen and localize on L = sum(sigmoid(X @ W)).

At (n, k, m) = (3, 3, 2), (32, 32, 16), (100, 100, 50) and (300, 300, 100), with
X ~ N(0, 1) and W ~ N(0, 1/k) (so sigmoid is not saturated), best of a few runs:

  full          verdict.check_point with check: full on correct code (every element of dL/dX, dL/dW)
  screen        the same with check: screen on correct code (random sign directions only)
  scr+loc       check: screen on the graph sum(sigmoid(plant(X) @ W)), where plant is an identity
                whose VJP is 1 % off in one entry of dL/dX (the entry of median magnitude):
                screen, localize, then the full check of what was localized, with its result columns
  localize      screen.localize alone, on the direction that flagged (dL/dX only: n*k elements)
  torch slow    torch.autograd.gradcheck(fast_mode=False), float64, one thread, correct code; above
                TORCH_SLOW_LIMIT parameters it is not run but estimated from gradcheck on a random
                subset of X's elements (each column costs two whole forward passes)
  torch fast    torch.autograd.gradcheck(fast_mode=True), float64, correct code

and whether the planted entry was found (the element the failing rows name) and whether
torch's fast mode flags the same 1 % entry (planted by an autograd.Function whose backward
scales it). Then the screen's stated sensitivity (Screen.sensitivity: the largest tolerance
of its directions, the smallest single-entry error it is sure to flag) and the peak memory
of each gradrun check (tracemalloc, in runs apart from the timed ones; "full without columns"
is bench_full's core: engine.jacobian + verdict.check_input) beside the documented cap on a
check's working memory (engine.WORKING_MEMORY_CAP: beyond its inputs and the result columns it
returns, which grow with the report), and a line per goal.

Run: .venv/bin/python benchmarks/bench_screen.py      (about 2 minutes with torch)
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from bench_full import LOSS, best, gradrun_core, torch
from bench_sensitivity import entry_off, loss_vjp, median_entry, torch_loss  # the planted error, in gradrun and torch
from gradrun import engine, layout, numeric, screen, verdict
from gradrun.model import ExperimentResult, Settings
from gradrun.tree import Call, PythonFunction, Var

SIZES = [(3, 3, 2), (32, 32, 16), (100, 100, 50), (300, 300, 100)]
PLANTED = Call("sum", (Call("sigmoid", (Call("matmul", (Call("plant", (Var("X"),)), Var("W"))),)),))
REL = 0.01  # the planted error: one entry of dL/dX off by 1 %
TORCH_SLOW_LIMIT = 20_000  # parameters; above, torch's slow mode is estimated from a subset
TORCH_SUBSET = 1_000
WRT = ["X", "W"]
MIB = 1 << 20


def point(n, k, m, seed=0):
    rng = np.random.default_rng(seed)
    return {"X": rng.standard_normal((n, k)), "W": rng.standard_normal((k, m)) / np.sqrt(k)}


def planted_graph(index, rel=REL):
    """sum(sigmoid(plant(X) @ W)): gradrun's own graph but for an identity whose VJP is off at ``index``."""
    plant = PythonFunction("plant", ("x",), lambda x: x, entry_off(lambda g, x: g, rel, 0, index),
                           complex_safe=True)
    return engine.build(PLANTED, {"plant": plant}, WRT)


def check(graph, inputs, mode):
    """check_point's columns, as a result (what the runner makes of them)."""
    return ExperimentResult.from_checks("check", [verdict.check_point(graph, inputs, WRT, Settings(check=mode))])


def failing(result):
    """The elements that failing element rows name (screen directions left out)."""
    return sorted({r.element for r in result.records if r.index >= 0 and not r.passed})


def screen_of_x(graph, inputs, settings=Settings(check="screen")):
    """dL/dX's Screen as check_point computes it (same seed, so the same directions), and what it needs."""
    vals = engine.evaluate(graph, inputs)
    eps = numeric.EPS["float64"]
    method, _ = verdict.resolve_method(settings.method, graph)
    rng = np.random.default_rng([settings.seed, 0])
    u = screen.directions(vals[graph.output].size, rng)
    g = screen.cotangents(graph, vals, u)
    found = screen.screen_input(graph, vals, "X", settings, eps, method, rng, "float64",
                                u, g["X"])
    return found, (graph, vals, "X", found, int(np.argmax(found.bad)), settings, eps, "float64")


def peak_mib(fn):
    """tracemalloc's peak over one call of ``fn``, in MiB."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / MIB


# ---------------------------------------------------------------- torch


def torch_threads():
    """One intra-op thread: on a shared 2-CPU machine torch's default pool made slow mode vary 1.3-35 s."""
    if torch is not None:
        torch.set_num_threads(1)


def torch_inputs(inputs):
    return [torch.tensor(inputs[name], dtype=torch.float64, requires_grad=True) for name in WRT]


def torch_gradcheck(inputs, fast, index=None):
    return torch.autograd.gradcheck(torch_loss(index, REL), torch_inputs(inputs), fast_mode=fast, raise_exception=False)


def torch_slow_estimate(inputs, rng):
    """Slow-mode time estimated from gradcheck over TORCH_SUBSET random elements of X (the rest held fixed)."""
    X, W = (torch.tensor(inputs[name], dtype=torch.float64) for name in WRT)
    idx = torch.tensor(rng.choice(X.numel(), TORCH_SUBSET, replace=False))
    subset = X.reshape(-1)[idx].clone().requires_grad_(True)

    def f(s):
        return torch.sigmoid(X.reshape(-1).index_put((idx,), s).reshape(X.shape) @ W).sum()

    seconds = best(lambda: torch.autograd.gradcheck(f, (subset,), fast_mode=False), most=2)
    return seconds * (X.numel() + W.numel()) / TORCH_SUBSET


# ---------------------------------------------------------------- measuring


def measure(n, k, m):
    inputs = point(n, k, m)
    params = n * k + k * m
    most = 5 if params <= 20_000 else 2
    graph = engine.build(LOSS, {}, WRT)
    gx = loss_vjp(1.0, inputs["X"], inputs["W"])[0].ravel()
    index = median_entry(inputs)
    bad = planted_graph(index)
    row = {"size": f"({n},{k},{m})", "N": params, "index": index, "gx": gx}

    assert check(graph, inputs, "full").passed
    assert check(graph, inputs, "screen").passed
    row["full"] = best(lambda: check(graph, inputs, "full"), most=most)
    row["screen"] = best(lambda: check(graph, inputs, "screen"), most=most)
    row["scr+loc"] = best(lambda: check(bad, inputs, "screen"), most=most)
    row["found"] = failing(check(bad, inputs, "screen"))
    row["planted"] = layout.element_name("X", inputs["X"].shape, index)
    row["sensitivity"] = screen_of_x(graph, inputs)[0].sensitivity
    found, args = screen_of_x(bad, inputs)
    row["flagged"] = bool(found.bad.any())
    row["localize"] = best(lambda: screen.localize(*args), most=most) if row["flagged"] else float("nan")

    row["mem full"] = peak_mib(lambda: check(graph, inputs, "full"))
    row["mem core"] = peak_mib(lambda: gradrun_core(graph, inputs))
    row["mem screen"] = peak_mib(lambda: check(graph, inputs, "screen"))
    row["mem scr+loc"] = peak_mib(lambda: check(bad, inputs, "screen"))

    row["torch slow"] = row["torch fast"] = float("nan")
    row["slow estimated"], row["torch flags"] = False, None
    if torch is not None:
        assert torch_gradcheck(inputs, fast=True)
        if params <= TORCH_SLOW_LIMIT:
            row["torch slow"] = best(lambda: torch_gradcheck(inputs, fast=False), most=min(most, 3))
        else:
            row["torch slow"] = torch_slow_estimate(inputs, np.random.default_rng(1))
            row["slow estimated"] = True
        row["torch fast"] = best(lambda: torch_gradcheck(inputs, fast=True), most=most)
        row["torch flags"] = not torch_gradcheck(inputs, fast=True, index=index)
    return row


# ---------------------------------------------------------------- printing


def ms(seconds, estimated=False):
    if np.isnan(seconds):
        return "-"
    return ("~" if estimated else "") + (f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s")


def ratio(slow, fast):
    return "-" if np.isnan(slow) or np.isnan(fast) else f"{slow / fast:.3g}x"


def table(head, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    for cells in [head] + rows:
        print("  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    print()


def yes(flag):
    return "-" if flag is None else ("yes" if flag else "NO")


def main():
    from gradrun import memory

    memory.keep_freed_memory()  # as the gradrun command runs a check (both tools timed in this process)
    torch_threads()
    rows = [measure(*size) for size in SIZES]
    cap = engine.WORKING_MEMORY_CAP / MIB
    print(f"L = sum(sigmoid(X @ W)), X ~ N(0,1), W ~ N(0,1/k); numpy {np.__version__}, "
          + (f"torch {torch.__version__} (float64, 1 thread)" if torch is not None else "torch not installed")
          + f"; planted: dL/dX's median-magnitude entry off by {REL:.0%}\n")

    print("time (best of a few runs; ~ = estimated, see below)")
    table(["size", "N", "full", "screen", "scr+loc", "localize", "torch slow", "torch fast",
           "slow/full", "slow/screen", "fast/screen", "planted", "localized"],
          [[r["size"], str(r["N"]), ms(r["full"]), ms(r["screen"]), ms(r["scr+loc"]), ms(r["localize"]),
            ms(r["torch slow"], r["slow estimated"]), ms(r["torch fast"]),
            ratio(r["torch slow"], r["full"]), ratio(r["torch slow"], r["screen"]),
            ratio(r["torch fast"], r["screen"]), r["planted"], " ".join(r["found"]) or "none"] for r in rows])
    for r in rows:
        if r["slow estimated"]:
            print(f"~ torch slow at {r['size']}: not run ({r['N']} parameters > {TORCH_SLOW_LIMIT}); gradcheck "
                  f"over {TORCH_SUBSET} random elements of X, timed, times N / {TORCH_SUBSET}")
    print()

    print(f"sensitivity of dL/dX's screen ({screen.SCREEN_DIRECTIONS} sign directions) and the planted {REL:.0%} error")
    table(["size", "max |dL/dX|", "sensitivity", "% of max", "planted |dL/dX|", f"{REL:.0%} of it",
           "> sensitivity", "screen flags", "torch fast flags"],
          [[r["size"], f"{np.abs(r['gx']).max():.4g}", f"{r['sensitivity']:.3g}",
            f"{100 * r['sensitivity'] / np.abs(r['gx']).max():.2g} %", f"{abs(r['gx'][r['index']]):.4g}",
            f"{REL * abs(r['gx'][r['index']]):.3g}", yes(REL * abs(r["gx"][r["index"]]) > r["sensitivity"]),
            yes(r["flagged"]), yes(r["torch flags"])] for r in rows])

    print(f"peak memory (tracemalloc) of each gradrun check; working-memory cap (without result columns): {cap:.0f} MiB "
          f"(batched intermediates chunked at MEMORY_CAP = {engine.MEMORY_CAP} elements)")
    table(["size", "full", "full without columns", "screen", "scr+loc"],
          [[r["size"]] + [f"{r[c]:.3g} MiB" for c in ("mem full", "mem core", "mem screen", "mem scr+loc")]
           for r in rows])

    at = {r["size"]: r for r in rows}
    mid, big = at["(100,100,50)"], at["(300,300,100)"]
    peak = max(big[c] for c in ("mem core", "mem screen", "mem scr+loc"))
    goals = [
        ("full at (100,100,50) >= 100x faster than torch slow",
         mid["torch slow"] / mid["full"] >= 100, f"{ratio(mid['torch slow'], mid['full'])} "
         f"({ms(mid['full'])} vs {ms(mid['torch slow'])})"),
        (f"screen at {mid['N'] // 1000}k parameters < 3 ms and flags a 1 % single-entry error",
         mid["screen"] < 3e-3 and mid["flagged"], f"{ms(mid['screen'])}, flagged: {yes(mid['flagged'])}"),
        (f"localize one wrong entry among {mid['N'] // 1000}k < 50 ms",
         mid["scr+loc"] < 50e-3 and mid["found"] == [mid["planted"]],
         f"{ms(mid['scr+loc'])} for the whole check (screen, localize, confirm; localize alone "
         f"{ms(mid['localize'])}), found {' '.join(mid['found']) or 'none'}"),
        ("peak working memory within the cap at (300,300,100)", peak <= cap,
         f"{peak:.3g} MiB of {cap:.0f} MiB (full without columns {big['mem core']:.3g}, with {big['mem full']:.3g}, "
         f"screen {big['mem screen']:.3g}, scr+loc {big['mem scr+loc']:.3g})"),
    ]
    for text, ok, number in goals:
        print(f"{'PASS' if ok else 'MISS'}  {text}: {number}")


if __name__ == "__main__":
    main()

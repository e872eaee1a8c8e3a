"""Reports at the speed of the check: the whole gradrun process beside the check alone and torch.

L = sum(sigmoid(X @ W)), every element of dL/dX and dL/dW checked (check: full). Printed:

  process    the whole `gradrun SPEC` command, wall clock (interpreter start-up, imports,
             spec loading, the check, the report, the summary) and its peak RSS
  check      runner.run_spec alone, in this process (best of a few)
  write      report.write_csv / write_parquet alone, in this process (best of a few)
  torch      torch.autograd.gradcheck(fast_mode=False) on the same loss, float64, one intra-op
             thread (if installed)

At 15k elements the spec holds ten copies of the experiment, so that the process time per
experiment leaves the interpreter's start-up aside; at 120k it holds one.
``--big`` adds the 1.2M-element check (X 1000x1000, W 1000x200): about a minute. Then the
120k report drawn by `gradrun plot`, and where a screen's time goes at 120k elements.

Run: .venv/bin/python benchmarks/bench_report.py [--big]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gradrun import report, runner, spec

SIZES = {"15k": (100, 100, 50, 10), "120k": (300, 300, 100, 1)}  # X rows, X cols = W rows, W cols, copies
BIG = {"1.2M": (1000, 1000, 200, 1)}


def spec_text(n, k, m, copies) -> str:
    experiment = """  - name: loss-{i}
    expr: "sum(sigmoid(X @ W))"
    check: full
    inputs:
      X: {{shape: [{n}, {k}], init: normal, seed: 1}}
      W: {{shape: [{k}, {m}], init: normal, seed: 2}}
"""
    return "version: 1\nexperiments:\n" + "".join(experiment.format(i=i, n=n, k=k, m=m) for i in range(copies))


def best(fn, most=3):
    times = []
    for _ in range(most):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# The child states its own peak RSS (VmHWM) as it exits: rusage would count this process's
# pages too, copied into the child before it started Python.
LAUNCH = """import atexit, sys
def peak():
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
    sys.stderr.write("PEAK " + (hwm[0].split()[1] if hwm else "0") + "\\n")
atexit.register(peak)
from gradrun.cli import main
main(sys.argv[1:])
"""


def process(path, out, fmt) -> tuple:
    """(seconds, peak RSS in MB) of one whole `gradrun` process."""
    command = [sys.executable, "-c", LAUNCH, str(path), "--out", str(out), "--report-format", fmt, "-q"]
    start = time.perf_counter()
    child = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    assert child.returncode == 0, f"{command} exited {child.returncode}: {child.stderr[-2000:]}"
    peak = [line for line in child.stderr.splitlines() if line.startswith("PEAK ")]
    return seconds, int(peak[-1].split()[1]) / 1024 if peak else float("nan")


def torch_gradcheck(n, k, m) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # on a shared machine torch's default pool makes slow mode vary tenfold
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((n, k)), requires_grad=True)
    w = torch.tensor(rng.standard_normal((k, m)), requires_grad=True)
    start = time.perf_counter()
    assert torch.autograd.gradcheck(lambda a, b: torch.sigmoid(a @ b).sum(), (x, w), fast_mode=False)
    return time.perf_counter() - start


def measure(label, shape, folder: Path) -> None:
    n, k, m, copies = shape
    path = folder / f"loss-{label}.yaml"
    path.write_text(spec_text(n, k, m, copies))
    loaded = spec.load_spec(str(path))
    results = runner.run_spec(loaded)
    elements = results[0].rows
    check = best(lambda: runner.run_spec(loaded), most=1 if elements > 500_000 else 3) / copies
    print(f"\n{label}: {elements} elements per experiment, {copies} experiment(s) in the spec")
    print(f"  check alone             {check:8.3f} s per experiment")
    for fmt in report.FORMATS:
        write = best(lambda: report.write_report(folder / f"w.{fmt}", results, fmt)) / copies
        seconds, rss = process(path, folder / "out", fmt)
        size = (folder / "out" / f"{path.stem}.{fmt}").stat().st_size / 1e6
        print(f"  {fmt:8s} process        {seconds / copies:8.3f} s per experiment   peak RSS {rss:6.0f} MB"
              f"   report {size / copies:6.1f} MB")
        print(f"  {fmt:8s} writing alone  {write:8.3f} s per experiment = {write / check:5.1%} of the check")
        if label == "15k":
            measure.process15k[fmt] = seconds / copies
    if elements <= 200_000:
        from gradrun import plot

        drawn = best(lambda: plot.plot_report(plot.read_report(folder / "out" / f"{path.stem}.parquet"),
                                              folder / "plots"), most=1)
        print(f"  gradrun plot (parquet)  {drawn:8.3f} s for {copies * elements} rows")
    if label == "15k":
        torch_seconds = torch_gradcheck(n, k, m)
        if torch_seconds is None:
            print("  torch not installed: no gradcheck figure")
            return
        print(f"  torch gradcheck (slow)  {torch_seconds:8.3f} s")
        for fmt, seconds in measure.process15k.items():
            print(f"  {fmt:8s} process / torch gradcheck = {seconds / torch_seconds:.2%}")


measure.process15k = {}


def screen_breakdown(folder: Path) -> None:
    """Where a screen's time goes at 120k elements: its VJPs, its directional differences, the rest."""
    from gradrun import engine, screen, verdict
    from gradrun.model import Settings

    path = folder / "screen.yaml"
    path.write_text(spec_text(*SIZES["120k"][:3], 1).replace("check: full", "check: screen"))
    exp = spec.load_spec(str(path)).experiments[0]
    graph = runner.graph_of(exp)
    inputs = exp.points[0].inputs
    whole = best(lambda: verdict.check_point(graph, inputs, exp.wrt, Settings(check="screen")))
    vals = engine.evaluate(graph, inputs)
    u = screen.directions(vals[graph.output].size, np.random.default_rng(0))
    vjps = best(lambda: screen.cotangents(graph, vals, u))
    eps = np.finfo(float).eps
    differences = sum(best(lambda name=name: screen.directional(
        graph, vals, name, "complex", screen.directions(vals[graph.inputs[name]].size, np.random.default_rng(1)),
        u, eps)) for name in exp.wrt)
    print(f"\nscreen at 120k elements (each part timed on its own, best of 3): whole check_point "
          f"{whole * 1e3:.1f} ms; its {screen.SCREEN_DIRECTIONS} VJPs {vjps * 1e3:.1f} ms; its directional "
          f"differences (both inputs) {differences * 1e3:.1f} ms")


def main() -> None:
    sizes = dict(SIZES) | (BIG if "--big" in sys.argv else {})
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="gradrun-bench-") as tmp:
        for label, shape in sizes.items():
            measure(label, shape, Path(tmp))
        screen_breakdown(Path(tmp))
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

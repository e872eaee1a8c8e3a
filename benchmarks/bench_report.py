"""Reports at the speed of the check: the whole gradrun process beside the check alone and torch.

L = sum(sigmoid(X @ W)), every element of dL/dX and dL/dW checked (check: full). Printed:

  process    the whole `gradrun SPEC` command (interpreter start-up, imports, spec loading,
             the check, the report, the summary): wall clock, CPU time (user + sys, from
             the child's rusage) and peak RSS
  check      runner.run_spec alone, in this process (best of a few): wall and CPU
  write      report.write_csv / write_parquet alone, in this process (best of a few): wall and CPU

On a shared machine the wall clock grows with the load (printed at start and end); CPU
time is the steadier figure, and the ratios below are of CPU times. This process sets up
malloc as the gradrun command does (``gradrun.memory``), so that the parts timed here run
as they do inside the command.
  torch      torch.autograd.gradcheck(fast_mode=False) on the same loss, float64, one intra-op
             thread (if installed)

At 15k elements the spec holds ten copies of the experiment (each with its own seeds), so
that the process time per experiment leaves most of the interpreter's start-up aside, and a process of one copy is
timed too: the difference over nine is what each further experiment costs, start-up left
out entirely (each the least of three processes); at 120k it holds one.
``--big`` adds the 1.2M-element check (X 1000x1000, W 1000x200): about a minute. Then the
120k report drawn by `gradrun plot`, and where a screen's time goes at 120k elements.

Run: .venv/bin/python benchmarks/bench_report.py [--big]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gradrun import report, runner, spec

SIZES = {"15k": (100, 100, 50, 10), "120k": (300, 300, 100, 1)}  # X rows, X cols = W rows, W cols, copies
BIG = {"1.2M": (1000, 1000, 200, 1)}
PROCESS_RUNS = 3  # processes timed for the 15k figures (the least of each taken)


def spec_text(n, k, m, copies) -> str:
    experiment = """  - name: loss-{i}
    expr: "sum(sigmoid(X @ W))"
    check: full
    inputs:
      X: {{shape: [{n}, {k}], init: normal, seed: {x}}}
      W: {{shape: [{k}, {m}], init: normal, seed: {w}}}
"""
    # each copy draws its own inputs: copies of one experiment would repeat every value, which
    # the CSV writer's formatting of each distinct value once would turn into a false saving
    return "version: 1\nexperiments:\n" + "".join(experiment.format(i=i, n=n, k=k, m=m, x=1 + 2 * i, w=2 + 2 * i)
                                                   for i in range(copies))


def best(fn, most=3):
    """The least wall-clock seconds of ``most`` calls of ``fn``."""
    return timed(fn, most)[0]


def timed(fn, most=3) -> tuple:
    """(wall, CPU) seconds, each the least of ``most`` calls of ``fn``."""
    walls, cpus = [], []
    for _ in range(most):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


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
    """(wall seconds, CPU seconds, peak RSS in MB) of one whole `gradrun` process."""
    command = [sys.executable, "-c", LAUNCH, str(path), "--out", str(out), "--report-format", fmt, "-q"]
    start, cpu = time.perf_counter(), children_cpu()
    child = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
    assert child.returncode == 0, f"{command} exited {child.returncode}: {child.stderr[-2000:]}"
    peak = [line for line in child.stderr.splitlines() if line.startswith("PEAK ")]
    return seconds, cpu, int(peak[-1].split()[1]) / 1024 if peak else float("nan")


def least_process(path, out, fmt, runs: int) -> tuple:
    """``process``'s (wall, CPU, peak RSS), each the least of ``runs`` processes: one process's
    CPU time varies by +-15 ms here, as much as a 15k experiment's whole report."""
    return tuple(min(column) for column in zip(*(process(path, out, fmt) for _ in range(runs))))


def torch_gradcheck(n, k, m) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # on a shared machine torch's default pool makes slow mode vary tenfold
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((n, k)), requires_grad=True)
    w = torch.tensor(rng.standard_normal((k, m)), requires_grad=True)
    start, cpu = time.perf_counter(), time.process_time()
    assert torch.autograd.gradcheck(lambda a, b: torch.sigmoid(a @ b).sum(), (x, w), fast_mode=False)
    return time.perf_counter() - start, time.process_time() - cpu


def measure(label, shape, folder: Path) -> None:
    n, k, m, copies = shape
    path = folder / f"loss-{label}.yaml"
    path.write_text(spec_text(n, k, m, copies))
    loaded = spec.load_spec(str(path))
    results = runner.run_spec(loaded)
    elements = results[0].rows
    check, check_cpu = (t / copies for t in timed(lambda: runner.run_spec(loaded), most=1 if elements > 500_000 else 3))
    print(f"\n{label}: {elements} elements per experiment, {copies} experiment(s) in the spec (per experiment: wall / CPU)")
    print(f"  check alone             {check:8.3f} s / {check_cpu:6.3f} s")
    for fmt in report.FORMATS:
        write, write_cpu = (t / copies for t in timed(lambda: report.write_report(folder / f"w.{fmt}", results, fmt)))
        seconds, cpu, rss = least_process(path, folder / "out", fmt, PROCESS_RUNS if copies > 1 else 1)
        size = (folder / "out" / f"{path.stem}.{fmt}").stat().st_size / 1e6
        print(f"  {fmt:8s} process        {seconds / copies:8.3f} s / {cpu / copies:6.3f} s   peak RSS {rss:6.0f} MB"
              f"   report {size / copies:6.1f} MB")
        print(f"  {fmt:8s} writing alone  {write:8.3f} s / {write_cpu:6.3f} s = {write_cpu / check_cpu:5.1%} of the check's CPU")
        if fmt == "csv":
            floats, cast_cpu = cast_floor(results)
            print(f"  csv      floor: Arrow's cast of the report's {floats} distinct floats (each column's, once), "
                  f"alone {cast_cpu / copies:6.3f} s CPU = {cast_cpu / copies / check_cpu:5.1%} of the check's CPU")
        if label == "15k":
            measure.process15k[fmt] = cpu / copies
            measure.added15k[fmt] = added_experiment(folder, (n, k, m), copies, fmt, seconds, cpu)
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
        print(f"  torch gradcheck (slow)  {torch_seconds[0]:8.3f} s / {torch_seconds[1]:6.3f} s")
        for fmt, cpu in measure.process15k.items():
            print(f"  {fmt:8s} process / torch gradcheck (CPU) = {cpu / torch_seconds[1]:.2%}"
                  f"; one more experiment / torch gradcheck (CPU) = {measure.added15k[fmt] / torch_seconds[1]:.2%}")


def cast_floor(results) -> tuple:
    """(count, CPU seconds): Arrow's cast to text of every distinct float of each float column of
    the report, each once: the least float formatting the CSV needs (repr's digits: ``csvformat``)."""
    import pyarrow as pa

    from gradrun import layout
    from gradrun import arrowcompute as compute

    columns = {}
    for batch in layout.report_batches(results):
        for f, column in zip(batch.schema, batch.columns):
            if pa.types.is_floating(f.type):
                columns.setdefault(f.name, []).append(column.to_numpy(zero_copy_only=False))
    distinct = [np.unique(np.concatenate(c).view(np.int64)).view(np.float64) for c in columns.values()]
    values = pa.array(np.concatenate(distinct))
    return len(values), timed(lambda: compute.cast(values, pa.string()))[1]


measure.process15k = {}
measure.added15k = {}


def added_experiment(folder: Path, shape, copies: int, fmt: str, seconds: float, cpu: float) -> float:
    """CPU seconds one more experiment adds to a process: (ten experiments - one) / nine,
    which leaves out the interpreter's start-up and the imports entirely."""
    one = folder / "loss-15k-one.yaml"
    one.write_text(spec_text(*shape, 1))
    one_seconds, one_cpu, _ = least_process(one, folder / "out", fmt, PROCESS_RUNS)
    wall, used = (seconds - one_seconds) / (copies - 1), (cpu - one_cpu) / (copies - 1)
    print(f"  {fmt:8s} one process of 1 experiment {one_seconds:6.3f} s / {one_cpu:6.3f} s;"
          f" each further experiment {wall:6.3f} s / {used:6.3f} s")
    return used


def screen_breakdown(folder: Path) -> None:
    """Where a screen's time goes at 120k elements: its forward pass, its VJPs, its directional differences."""
    from gradrun import engine, screen, threads, verdict
    from gradrun.model import Settings

    path = folder / "screen.yaml"
    path.write_text(spec_text(*SIZES["120k"][:3], 1).replace("check: full", "check: screen"))
    exp = spec.load_spec(str(path)).experiments[0]
    graph = runner.graph_of(exp)
    inputs = exp.points[0].inputs
    parts = {"whole check_point": lambda: verdict.check_point(graph, inputs, exp.wrt, Settings(check="screen"))}
    vals = engine.evaluate(graph, inputs)
    u = screen.directions(vals[graph.output].size, np.random.default_rng(0))
    parts["forward pass (evaluate)"] = lambda: engine.evaluate(graph, inputs)
    parts[f"J^T u for its {screen.SCREEN_DIRECTIONS} directions (cotangents)"] = lambda: screen.cotangents(graph, vals, u)
    eps = np.finfo(float).eps
    for name in exp.wrt:
        v = screen.directions(vals[graph.inputs[name]].size, np.random.default_rng(1))
        parts[f"directional differences along {name}"] = (
            lambda name=name, v=v: screen.directional(graph, vals, name, "complex", v, u, eps))
    sizes = [vals[graph.inputs[name]].size for name in exp.wrt]
    parts["sign directions drawn (X and W)"] = lambda: [screen.directions(n, np.random.default_rng(1)) for n in sizes]
    print(f"\nscreen at 120k elements, each part timed on its own (least of 10 runs; wall / CPU), on one BLAS thread"
          f" as the gradrun command checks (threads.one_blas_thread):")
    with threads.one_blas_thread():
        for what, fn in parts.items():
            wall, cpu = timed(fn, most=10)
            print(f"  {what:44s} {wall * 1e3:7.1f} ms / {cpu * 1e3:6.1f} ms")


def main() -> None:
    from gradrun import memory

    sizes = dict(SIZES) | (BIG if "--big" in sys.argv else {})
    kept = memory.keep_freed_memory()  # the in-process timings under the gradrun command's own malloc settings
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; freed memory kept for "
          f"reuse as the gradrun command keeps it (gradrun.memory): {kept}")
    with tempfile.TemporaryDirectory(prefix="gradrun-bench-") as tmp:
        for label, shape in sizes.items():
            measure(label, shape, Path(tmp))
        screen_breakdown(Path(tmp))
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

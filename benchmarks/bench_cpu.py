"""CPU time of one check, for comparing two checkouts on a loaded machine.

Wall-clock figures on the shared 2-core machine vary two- to threefold with the
load; the process's own CPU time (``time.process_time``) varies far less. At
(n, k, m) = (100, 100, 50), L = sum(sigmoid(X @ W)), best of 15 runs each:

  check_point   verdict.check_point with check: full (its result columns included)
  core          engine.jacobian + verdict.check_input (bench_full's core)
  screen        verdict.check_point with check: screen

Run from a checkout's benchmarks/ folder, its runner/ first on PYTHONPATH, once per
checkout, alternating (see benchmarks/README.md, "Structure"):

  cd benchmarks && PYTHONPATH=../runner ../.venv/bin/python bench_cpu.py LABEL
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bench_full import LOSS, gradrun_core, gradrun_full
from gradrun import engine, verdict
from gradrun.model import Settings

RUNS = 15
SIZE = (100, 100, 50)


def best_cpu(fn, runs=RUNS) -> float:
    """The least CPU time of ``runs`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main(label: str) -> None:
    rng = np.random.default_rng(0)
    n, k, m = SIZE
    inputs = {"X": rng.standard_normal((n, k)), "W": rng.standard_normal((k, m)) / np.sqrt(k)}
    graph = engine.build(LOSS, {}, ["X", "W"])
    screen = Settings(check="screen")
    figures = {"check_point": best_cpu(lambda: gradrun_full(graph, inputs)),
               "core": best_cpu(lambda: gradrun_core(graph, inputs)),
               "screen": best_cpu(lambda: verdict.check_point(graph, inputs, ["X", "W"], screen))}
    print(label, SIZE, " ".join(f"{name}={seconds * 1e3:.1f} ms" for name, seconds in figures.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "this checkout")

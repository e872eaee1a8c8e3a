"""What the command's and the verdict's structure cost (issue 15): wall and CPU time, best of a few runs.

  check_point   verdict.check_point with check: full on L = sum(sigmoid(X @ W)) at (100, 100, 50):
                15 000 Jacobian entries measured, confirmed and classified
  command       `gradrun experiments/chain.yaml experiments/my-layer.yaml` through click (CliRunner),
                reports into a temporary folder: loading, checking, writing, the summary
  run_files     the same run through gradrun.run_files, which the command calls (left out
                in a tree that predates it)

Run from a checkout, with its own package first, to compare two trees under the same load:
    PYTHONPATH=runner .venv/bin/python benchmarks/bench_structure.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import gradrun
from gradrun import cli, engine, verdict
from gradrun.model import Settings
from gradrun.tree import Call, Var

ROOT = Path(__file__).resolve().parent.parent
SPECS = [str(ROOT / "experiments" / name) for name in ("chain.yaml", "my-layer.yaml")]
LOSS = Call("sum", (Call("sigmoid", (Call("matmul", (Var("X"), Var("W"))),)),))


def best(fn, runs=5) -> tuple:
    """The fastest of ``runs`` runs: (wall seconds, CPU seconds of this process)."""
    times = []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(times)


def check_point():
    rng = np.random.default_rng(0)
    inputs = {"X": rng.normal(size=(100, 100)), "W": rng.normal(size=(100, 50))}
    graph = engine.build(LOSS, {}, ["X", "W"])

    def run():
        checked = verdict.check_point(graph, inputs, ["X", "W"], Settings(check="full"))
        assert (checked.elements["status"] == "pass").all() and len(checked.elements) == 15_000

    return run


def command(out):
    def run():
        ran = CliRunner().invoke(cli.cli, [*SPECS, "--out", out, "-q"], prog_name="gradrun")
        assert ran.exit_code == 0, ran.output

    return run


def library(out):
    def run():
        assert gradrun.run_files(SPECS, gradrun.RunOptions(out=out)).passed

    return run


def main():
    print(f"gradrun from {Path(gradrun.__file__).parent}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as out:
        cases = {"check_point": check_point(), "command": command(out)}
        if hasattr(gradrun, "run_files"):
            cases["run_files"] = library(out)
        for name, fn in cases.items():
            fn()  # warm: imports, caches
            wall, cpu = best(fn)
            print(f"{name:12s} wall {wall * 1e3:8.1f} ms   CPU {cpu * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()

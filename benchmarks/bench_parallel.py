"""Wall and CPU time of a whole `gradrun` run: serial, `-j 2`, and a local Dask cluster of 2 workers.

Three generated specs:

  200 small   200 experiments checking a user's own layers, as experiments/my-layer.yaml
              does (layers.py: a dense layer x 4x5, w 5x3, b 3 with its VJP; layer norm
              of x 3x6 with VJP and JVP), every Jacobian element: 78,000 report rows
  one sweep   one experiment swept over 120 points: sum(tanh(a * (X @ W))), X 16x16,
              W 16x8, every element of the gradient at every point: 46,320 report rows
  40 loopy    40 experiments checking a layer written as Python loops (a 1-D
              convolution of x 128 with k 7, then sum(tanh)), slow to call: checking
              dominates; 5,400 report rows
  one large   one full check of that layer with x of 1024 elements: a single point of
              a black box, measured in element pieces (gradrun.pieces: 4 pieces of 256
              elements of x) by the workers of -j and Dask; 1,031 report rows

Each mode runs the `gradrun` command as a subprocess (start-up, spec loading, checks,
reports), REPEATS rounds in which the modes alternate (median and range); the Dask cluster (distributed.LocalCluster, 2 worker
processes of 1 thread) is started once beforehand and its start-up is printed apart.
Every mode's CSV is compared with the serial one's bytes. Python's bytecode is cached
(under PYTHONPYCACHEPREFIX, a folder of the benchmark's own), as for an installed package,
even where the environment sets PYTHONDONTWRITEBYTECODE: compiling gradrun's modules on
every start-up (about 0.17 s of CPU) would add to every mode alike.

On a shared machine wall times move with the load, so the CPU time of the serial and
`-j 2` runs is printed too (medians of REPEATS alternating runs): the main process's and
its workers' (getrusage), and what
they give on two otherwise idle cores, where the main process's own work (start-up,
parsing, writing) adds to half the workers' work: serial CPU / (main + workers / 2).
The Amdahl bound is the most `-j 2` could give if its workers spent no more than the
serial run spends on what they do: serial CPU / (main + (serial CPU - main) / 2); the
main process's work is the part no number of workers shortens.
Then the serial run's CPU time by phase, measured in a fresh process, with the CSV
formatted also as `-j`'s workers format it (all rows of a chunk in one Arrow batch):
that part of `-j`'s gain is batching a serial writer could have too.

Run: PYTHONPATH=runner .venv/bin/python benchmarks/bench_parallel.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 3  # rounds of alternating runs of every mode
LAYERS = Path(__file__).parents[1] / "experiments" / "layers.py"


def small_spec() -> str:
    lines = ["version: 1", "functions:",
             '  dense: {python: "layers:dense", vjp: "layers:dense_vjp"}',
             '  layer_norm: {python: "layers:layer_norm", vjp: "layers:layer_norm_vjp", jvp: "layers:layer_norm_jvp"}',
             "experiments:"]
    for i in range(200):
        if i % 2 == 0:
            lines += [f"  - name: dense-{i:03d}", "    function: dense", "    inputs:",
                      f"      x: {{shape: [4, 5], init: normal, seed: {i}}}",
                      f"      w: {{shape: [5, 3], init: normal, seed: {1000 + i}}}",
                      f"      b: {{shape: [3], init: normal, seed: {2000 + i}}}"]
        else:
            lines += [f"  - name: layer-norm-{i:03d}", "    function: layer_norm", "    inputs:",
                      f"      x: {{shape: [3, 6], init: normal, seed: {i}}}"]
    return "\n".join(lines) + "\n"


def sweep_spec() -> str:
    return """version: 1
experiments:
  - name: tanh-scale-sweep
    expr: "sum(tanh(a * (X @ W)))"
    inputs:
      X: {shape: [16, 16], init: normal, seed: 1}
      W: {shape: [16, 8], init: normal, scale: 0.25, seed: 2}
    sweep: {a: {linspace: [-2, 2, 120]}}
    check: full
"""


LOOPY = '''"""A layer written as a plain Python loop, as reference implementations often are: slow to call."""

import numpy as np


def conv_loss(x, k):
    """sum(tanh(conv1d(x, k))) over the valid positions, one Python loop per output."""
    out = 0.0
    for i in range(x.shape[0] - k.shape[0] + 1):
        s = 0.0
        for j in range(k.shape[0]):
            s = s + x[i + j] * k[j]
        out = out + np.tanh(s)
    return np.asarray(out)


def conv_loss_vjp(g, x, k):
    gx, gk = np.zeros_like(x), np.zeros_like(k)
    for i in range(x.shape[0] - k.shape[0] + 1):
        d = g * (1 - np.tanh(sum(x[i + j] * k[j] for j in range(k.shape[0]))) ** 2)
        for j in range(k.shape[0]):
            gx[i + j] += d * k[j]
            gk[j] += d * x[i + j]
    return gx, gk
'''


def loopy_spec() -> str:
    lines = ["version: 1", "functions:", '  conv_loss: {python: "loopy:conv_loss", vjp: "loopy:conv_loss_vjp"}',
             "experiments:"]
    for i in range(40):
        lines += [f"  - name: loopy-{i:02d}", "    function: conv_loss", "    inputs:",
                  f"      x: {{shape: [128], init: normal, seed: {i}}}",
                  f"      k: {{shape: [7], init: normal, scale: 0.3, seed: {100 + i}}}"]
    return "\n".join(lines) + "\n"


def large_spec() -> str:
    return """version: 1
functions:
  conv_loss: {python: "loopy:conv_loss", vjp: "loopy:conv_loss_vjp"}
experiments:
  - name: loopy-large
    function: conv_loss
    check: full
    inputs:
      x: {shape: [1024], init: normal, seed: 7}
      k: {shape: [7], init: normal, scale: 0.3, seed: 107}
"""


def phases(spec: Path) -> str:
    """CPU seconds of a serial run's phases, in a fresh process."""
    code = f"""
import time
from pathlib import Path
t = time.process_time()
from gradrun import report, runner, spec, yamlload
t1 = time.process_time(); text = Path({str(spec)!r}).read_text(); yamlload.load(text, "x")
t2 = time.process_time(); s = spec.load_spec({str(spec)!r})
t3 = time.process_time(); results = runner.run_spec(s)
t4 = time.process_time(); report.csv_text(results)
t5 = time.process_time()
from gradrun import csvrows, layout
csvrows.formatted(results, layout.schema(results))
t6 = time.process_time()
print(f"import {{t1 - t:.2f}} s, parse {{t2 - t1:.2f}} s, load (parse, schema, resolve) {{t3 - t2:.2f}} s, "
      f"check {{t4 - t3:.2f}} s, CSV {{t5 - t4:.2f}} s (in one batch, as -j's workers format a chunk: {{t6 - t5:.2f}} s)")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


CPU = """
import resource, sys
from gradrun.cli import main
sys.argv = ["gradrun"] + sys.argv[1:]
try:
    main()
finally:
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(f"CPU {own.ru_utime + own.ru_stime} {children.ru_utime + children.ru_stime}", file=sys.stderr)
"""


def cpu(spec: Path, out: Path, *options) -> tuple:
    """(main process, workers) CPU seconds of one run of the command."""
    done = subprocess.run([sys.executable, "-c", CPU, str(spec), "--out", str(out), "-q", *options],
                          capture_output=True, text=True, env=_env())
    line = next(x for x in done.stderr.splitlines() if x.startswith("CPU "))
    return tuple(float(v) for v in line.split()[1:])


def _env() -> dict:
    """The command's environment: this checkout's gradrun; bytecode cached (in a folder of the benchmark's own,
    as an installed package has it), even where PYTHONDONTWRITEBYTECODE is set, so that no run compiles gradrun."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "runner"),
                                                                      os.environ.get("PYTHONPATH")])),
           "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "gradrun-bench-pycache")}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def wall(spec: Path, out: Path, *options) -> float:
    """Wall time of one run of the command."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gradrun", str(spec), "--out", str(out), "-q", *options],
                          capture_output=True, text=True, env=_env())
    if done.returncode != 0:
        raise SystemExit(f"gradrun {' '.join(options)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start


def alternated(modes: dict, spec: Path, folder: Path) -> dict:
    """mode -> its wall times over REPEATS rounds, each round running every mode once, in turn
    (so that a change of load strikes every mode alike)."""
    times: dict = {mode: [] for mode in modes}
    for _ in range(REPEATS):
        for mode, options in modes.items():
            times[mode].append(wall(spec, folder / f"out-{mode}-{spec.stem}", *options))
    return times


def spread(times) -> str:
    return f"{statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f})"


def main() -> None:
    from distributed import LocalCluster

    folder = Path(tempfile.mkdtemp(prefix="gradrun-bench-parallel-"))
    specs = {"200 small": folder / "small.yaml", "one sweep": folder / "sweep.yaml", "40 loopy": folder / "loopy.yaml",
             "one large": folder / "large.yaml"}
    specs["40 loopy"].write_text(loopy_spec())
    specs["one large"].write_text(large_spec())
    (folder / "loopy.py").write_text(LOOPY)
    specs["200 small"].write_text(small_spec())
    shutil.copy(LAYERS, folder / "layers.py")
    specs["one sweep"].write_text(sweep_spec())
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    started = time.perf_counter() - start
    print(f"cores: {len(os.sched_getaffinity(0))}; load average before: {os.getloadavg()[0]:.2f}; "
          f"Dask LocalCluster (2 workers x 1 thread) started in {started:.1f} s (not counted below)")
    print(f"{'spec':<10} {'serial s':>17} {'-j 2 s':>17} {'dask 2 s':>17} {'-j 2 speedup':>13} "
          f"{'dask speedup':>13} {'same bytes':>10}")
    try:
        for label, spec in specs.items():
            wall(spec, folder / "warm")  # bytecode cached, the page cache warm
            modes = {"serial": (), "j2": ("-j", "2"), "dask": ("--scheduler", cluster.scheduler_address)}
            times = alternated(modes, spec, folder)
            csv = [(folder / f"out-{m}-{spec.stem}" / f"{spec.stem}.csv").read_bytes() for m in modes]
            same = "yes" if csv[0] == csv[1] == csv[2] else "NO"
            median = {m: statistics.median(t) for m, t in times.items()}
            print(f"{label:<10} {spread(times['serial']):>17} {spread(times['j2']):>17} {spread(times['dask']):>17} "
                  f"{median['serial'] / median['j2']:>12.2f}x {median['serial'] / median['dask']:>12.2f}x {same:>10}")
    finally:
        cluster.close()
    print(f"\nCPU seconds (median of {REPEATS} alternating runs): {'spec':<10} {'serial':>7} {'-j 2 main':>10} "
          f"{'-j 2 workers':>13} {'idle 2-core bound':>18} {'Amdahl bound':>13}")
    for label, spec in specs.items():
        runs = [(cpu(spec, folder / "cpu-serial")[0], cpu(spec, folder / "cpu-j2", "-j", "2")) for _ in range(REPEATS)]
        serial = statistics.median(s for s, _ in runs)
        main_cpu = statistics.median(j[0] for _, j in runs)
        workers = statistics.median(j[1] for _, j in runs)
        bound = serial / (main_cpu + workers / 2)
        amdahl = serial / (main_cpu + max(0.0, serial - main_cpu) / 2)  # workers wasting nothing
        print(f"{'':<45}{label:<10} {serial:>6.2f}s {main_cpu:>9.2f}s {workers:>12.2f}s {bound:>17.2f}x "
              f"{amdahl:>12.2f}x")
    for label, spec in specs.items():
        print(f"{label}, serial CPU by phase: {phases(spec)}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (wall time of the command: median (range) of {REPEATS} "
          "alternating runs; speedups of the medians)")


if __name__ == "__main__":
    main()

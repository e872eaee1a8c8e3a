"""Per-run cost of `gradrun --scheduler` on a local Dask cluster of real processes.

Starts `dask scheduler` and two `dask worker --nthreads 1` processes on 127.0.0.1
(each in a folder of its own, as on machines that do not share the spec's folder),
then runs `gradrun experiments/chain.yaml --scheduler ADDRESS` RUNS times, and a
serial `gradrun experiments/chain.yaml` as often, alternating. Printed per mode:
wall time, the gradrun process's own CPU (getrusage of the child), and the CPU the
scheduler and workers spent meanwhile (psutil over their process trees). chain.yaml
checks in well under a second, so what the Dask mode adds over the serial one is
the per-run cost of using a cluster: importing Dask, connecting, shipping the spec,
round trips. Then `parallel.run` alone, in one process that has imported Dask and
loaded the spec, 2 x RUNS times: the cost of the run on the cluster without start-up,
in CPU time, which a loaded machine distorts less than wall time.
The CSV of every run is compared with the serial one's bytes.

`--runner DIR` runs another checkout's gradrun (its runner/ folder), in the command and on the
workers: to compare a change with the code before it under the same load.

Run: PYTHONPATH=runner .venv/bin/python benchmarks/bench_dask.py [--runs N] [--spec PATH] [--runner DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench_parallel import _env

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


RUNNER = ROOT / "runner"  # the gradrun the command and the workers run (--runner)


def env() -> dict:
    """The command's environment (bench_parallel's: bytecode cached), with RUNNER's gradrun."""
    return {**_env(), "PYTHONPATH": str(RUNNER)}


def start_cluster(folder: Path) -> tuple:
    """(scheduler address, the cluster's processes): a scheduler and two workers, each in its own folder."""
    env_ = env()
    log = (folder / "cluster.log").open("w")
    start = lambda *args, cwd: subprocess.Popen([str(BIN / "dask"), *args], cwd=cwd, env=env_, stdout=log,  # noqa: E731
                                                stderr=subprocess.STDOUT, start_new_session=True)
    file = folder / "scheduler.json"
    processes = [start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                       "--scheduler-file", str(file), cwd=folder)]
    deadline = time.monotonic() + 60
    while not file.is_file() or not file.read_text().strip().endswith("}"):
        if time.monotonic() > deadline:
            raise SystemExit(f"no scheduler started; see {folder / 'cluster.log'}")
        time.sleep(0.1)
    address = json.loads(file.read_text())["address"]
    for i in range(2):
        (folder / f"worker{i}").mkdir()
        processes.append(start("worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard",
                               "--local-directory", str(folder / f"worker{i}"), cwd=folder / f"worker{i}"))
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    return address, processes


def cluster_cpu(processes) -> float:
    """CPU seconds the cluster's processes (and their children: the nannies' workers) have spent."""
    total = 0.0
    for process in processes:
        try:
            tree = psutil.Process(process.pid)
            for p in [tree, *tree.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def one_run(spec: Path, out: Path, options, processes) -> tuple:
    """(wall s, gradrun's CPU s, the cluster's CPU s) of one run of the command."""
    before, cluster_before = resource.getrusage(resource.RUSAGE_CHILDREN), cluster_cpu(processes)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gradrun", str(spec), "--out", str(out), "-q", *options],
                          capture_output=True, text=True, env=env())
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"gradrun {' '.join(options)} failed:\n{done.stdout}{done.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, own, cluster_cpu(processes) - cluster_before


PHASE = """
import statistics, sys, time
import distributed  # imported once, outside the times
from gradrun import parallel, spec as spec_module
spec = spec_module.load_spec(sys.argv[1])
chosen = [(0, spec, list(range(len(spec.experiments))))]
times = []
for _ in range(int(sys.argv[3])):
    cpu, wall = time.process_time(), time.perf_counter()
    list(parallel.run(chosen, scheduler=sys.argv[2]))
    times.append((time.process_time() - cpu, time.perf_counter() - wall))
print(*(statistics.median(t) for t in zip(*times)))
"""


def phase(spec: Path, address: str, runs: int) -> tuple:
    """(CPU s, wall s), medians over ``runs``, of ``parallel.run`` on the cluster in one warm process:
    what a run costs beyond start-up and writing (connecting, shipping, round trips, closing)."""
    done = subprocess.run([sys.executable, "-c", PHASE, str(spec), address, str(runs)], capture_output=True,
                          text=True, env=env())
    if done.returncode != 0:
        raise SystemExit(f"the in-process run failed:\n{done.stderr}")
    return tuple(float(v) for v in done.stdout.split())


def main() -> None:
    global RUNNER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--spec", type=Path, default=ROOT / "experiments" / "chain.yaml")
    parser.add_argument("--runner", type=Path, default=RUNNER, help="the runner/ folder of the gradrun to run")
    args = parser.parse_args()
    RUNNER = args.runner.resolve()
    folder = Path(tempfile.mkdtemp(prefix="gradrun-bench-dask-"))
    started = time.perf_counter()
    address, processes = start_cluster(folder)
    print(f"gradrun from {RUNNER}")
    print(f"cores: {len(os.sched_getaffinity(0))}; load average before: {os.getloadavg()[0]:.2f}; "
          f"dask scheduler + 2 workers (1 thread each) started in {time.perf_counter() - started:.1f} s")
    modes = {"serial": (), "dask": ("--scheduler", address)}
    figures: dict = {mode: [] for mode in modes}
    try:
        one_run(args.spec, folder / "warm", (), processes)  # bytecode cached, page cache warm
        one_run(args.spec, folder / "warm", modes["dask"], processes)  # the workers' imports warm
        for _ in range(args.runs):
            for mode, options in modes.items():
                figures[mode].append(one_run(args.spec, folder / f"out-{mode}", options, processes))
        inside = phase(args.spec, address, 2 * args.runs)
    finally:
        for process in reversed(processes):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    same = (folder / "out-serial" / f"{args.spec.stem}.csv").read_bytes() == \
        (folder / "out-dask" / f"{args.spec.stem}.csv").read_bytes()
    print(f"{args.spec.name}, {args.runs} alternating runs each, median (range):")
    print(f"{'mode':<8} {'wall s':>18} {'gradrun CPU s':>18} {'cluster CPU s':>18}")
    for mode, runs in figures.items():
        cells = []
        for column in zip(*runs):
            cells.append(f"{statistics.median(column):.2f} ({min(column):.2f}-{max(column):.2f})")
        print(f"{mode:<8} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18}")
    extra = [statistics.median(d) - statistics.median(s)
             for d, s in zip(zip(*figures["dask"]), zip(*figures["serial"]))]
    print(f"parallel.run on the cluster in a warm process (median of {2 * args.runs}): CPU {inside[0] * 1e3:.0f} ms, "
          f"wall {inside[1] * 1e3:.0f} ms")
    print(f"dask minus serial (medians): wall {extra[0]:+.2f} s, gradrun CPU {extra[1]:+.2f} s; same bytes: "
          f"{'yes' if same else 'NO'}; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""-j and --shard: the same report bytes as a serial run, whatever ran where.

The reference is a serial run made as a subprocess with one BLAS thread, as
every worker has (OpenBLAS sums a large matrix product differently on one
thread than on several, so screen.yaml's last digits follow the thread
count); the other example specs are also compared with a plain serial run.
"""

import atexit
import contextlib
import functools
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gradrun import csvrows, parallel, report, shards, spec as spec_module, threads, window
from gradrun.model import ExperimentResult

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "experiments").glob("*.yaml"))
SUBJECT = Path(__file__).resolve().parents[1] / "runner"
RUN_RECORD_VOLATILE = ("finished", "command", "seconds")
ONE_THREAD = {name: "1" for name in threads.THREAD_VARIABLES}


def gradrun(*args, env=None, cwd=None, timeout=300):
    environ = {**os.environ, "PYTHONPATH": str(SUBJECT), "DASK_SCHEDULER_ADDRESS": None, **(env or {})}
    environ = {k: v for k, v in environ.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "gradrun", *map(str, args)], capture_output=True, text=True,
                          env=environ, cwd=cwd, timeout=timeout)


def stable_run_record(path) -> dict:
    """A run record without what differs between any two runs: timings, the clock, the command line."""
    record = json.loads(Path(path).read_text())
    for key in RUN_RECORD_VOLATILE:
        record.pop(key)
    for experiment in record["experiments"]:
        experiment.pop("seconds")
    return record


def assert_same_reports(expected: Path, got: Path, stems) -> None:
    for stem in stems:
        assert (got / f"{stem}.csv").read_bytes() == (expected / f"{stem}.csv").read_bytes(), stem
        assert stable_run_record(got / f"{stem}.run.json") == stable_run_record(expected / f"{stem}.run.json")


def summary_without_time(text: str) -> str:
    return "\n".join(line.rsplit(" (", 1)[0] if "experiments:" in line else line for line in text.splitlines())


@functools.cache
def serial_run() -> tuple:
    """The example specs run serially, one BLAS thread (as workers have): out folder and JSON summary.

    Made once per test session, for this module's tests and test_parallel_dask's.
    """
    out = Path(tempfile.mkdtemp(prefix="gradrun-serial-"))
    atexit.register(shutil.rmtree, out, True)  # the session's, not left behind in /tmp
    done = gradrun(*EXAMPLES, "--out", out, "--junit", out / "junit.xml", "--format", "json", env=ONE_THREAD)
    assert done.returncode == 0, done.stderr
    return out, done.stdout


@pytest.fixture
def serial():
    return serial_run()


def strip_times(summary_json: str):
    """The JSON summary without any ``seconds``."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "seconds"}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return strip(json.loads(summary_json))


def junit_without_times(path) -> str:
    import re

    return re.sub(r' time="[^"]*"', "", Path(path).read_text())


def test_jobs_2_writes_the_serial_bytes(serial, tmp_path):
    expected, summary = serial
    done = gradrun(*EXAMPLES, "--out", tmp_path, "-j", "2", "--junit", tmp_path / "junit.xml", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert_same_reports(expected, tmp_path, [p.stem for p in EXAMPLES])
    assert junit_without_times(tmp_path / "junit.xml") == junit_without_times(expected / "junit.xml")
    assert strip_times(done.stdout) == strip_times(summary)


def test_serial_bytes_do_not_depend_on_the_blas_thread_count(serial, tmp_path):
    """The fixture ran on one BLAS thread, as -j workers do; this run has BLAS's own count (the
    machine's cores): a check runs on one thread wherever it runs (threads.one_blas_thread).
    screen.yaml's products are the ones whose last bits moved with the count."""
    expected, _ = serial
    some = [p for p in EXAMPLES if p.stem in ("chain", "screen", "second-order", "float32")]  # no torch: quick
    done = gradrun(*some, "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_reports(expected, tmp_path, [p.stem for p in some])


# the example specs a shard test splits: all but those of torch and JAX (8 s of imports and
# compiling each, run by the other tests here), which a shard splits and merges as it does the rest
SHARDED = [p for p in EXAMPLES if p.stem not in ("torch-layers", "jax-rules")]


def test_two_shards_merged_write_the_serial_bytes(serial, tmp_path):
    expected, summary = serial
    for i, how in ((1, []), (2, ["-j", "2"])):  # a shard runs serially, or on workers (-j)
        done = gradrun(*SHARDED, "--out", tmp_path / f"shard{i}", "--shard", f"{i}/2", "-q", *how, env=ONE_THREAD)
        assert done.returncode == 0, done.stderr
    rows = [sum(len(f.read_text().splitlines()) - 1 for f in (tmp_path / f"shard{i}").glob("*.csv")) for i in (1, 2)]
    assert min(rows) > 0  # both shards really ran something
    done = gradrun(*SHARDED, "--out", tmp_path / "merged", "--merge", tmp_path / "shard1",
                   "--merge", tmp_path / "shard2", "--junit", tmp_path / "junit.xml", "--format", "json",
                   "--baseline", ROOT / "experiments" / "baselines")
    assert done.returncode == 0, done.stderr
    assert_same_reports(expected, tmp_path / "merged", [p.stem for p in SHARDED])
    whole = gradrun(*SHARDED, "--out", tmp_path / "whole", "--junit", tmp_path / "whole.xml", "-q", env=ONE_THREAD)
    assert whole.returncode == 0, whole.stderr
    assert junit_without_times(tmp_path / "junit.xml") == junit_without_times(tmp_path / "whole.xml")


def test_shards_of_a_selection_merge_into_it_and_only_whole(tmp_path):
    spec, only = ROOT / "experiments" / "chain.yaml", ["--only", "*-curve"]
    assert gradrun(spec, "--out", tmp_path / "serial", *only, "-q").returncode == 0
    for i in (1, 2):
        assert gradrun(spec, "--out", tmp_path / f"s{i}", *only, "--shard", f"{i}/2", "-q").returncode == 0
    done = gradrun(spec, "--out", tmp_path / "m", *only, "--merge", tmp_path / "s1")
    assert done.returncode == 2
    assert "shard 2 of 2 is missing" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m").exists()
    done = gradrun(spec, "--out", tmp_path / "m", "--merge", tmp_path / "s1", "--merge", tmp_path / "s2")
    assert done.returncode == 2 and "other options (--only *-curve)" in done.stderr
    done = gradrun(spec, "--out", tmp_path / "m", *only, "--merge", tmp_path / "s1", "--merge", tmp_path / "s2")
    assert done.returncode == 0, done.stderr
    assert_same_reports(tmp_path / "serial", tmp_path / "m", ["chain"])


@pytest.mark.parametrize("args, message", [
    (["-j", "0"], "neither 'auto' nor a positive"),
    (["--shard", "3/2"], "1 <= I <= N"),
    (["--shard", "1/2", "--baseline", "b"], "compare with --baseline when you --merge"),
    (["-j", "2", "--scheduler", "tcp://127.0.0.1:1"], "exclude each other"),
])
def test_bad_distribution_options_are_usage_errors(args, message, tmp_path):
    done = gradrun(ROOT / "experiments" / "chain.yaml", "--out", tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_an_explicit_jobs_outranks_the_scheduler_in_the_environment(tmp_path):
    done = gradrun(ROOT / "experiments" / "chain.yaml", "--out", tmp_path, "--only", "square-at-2", "-j", "2",
                   env={"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:9"})
    assert done.returncode == 0, done.stderr


KILLER = """
import gc, multiprocessing, os

STARTED = []  # the threads a worker runs at its first call of f


def f(x):
    local = "FORKED_BY_J" in os.environ and multiprocessing.parent_process() is not None  # -j's worker
    if not STARTED and local and os.path.isdir("/proc/self/task"):
        STARTED.append(len(os.listdir("/proc/self/task")))  # Linux: forked, not spawned
        assert STARTED == [1], f"a worker starts with {STARTED[0]} threads: BLAS started its pool in it"
        assert gc.get_freeze_count() > 0, "forked with its parent's objects out of the collector's reach"
    if x > 2.5 and multiprocessing.parent_process() is not None:  # only ever in a worker
        os._exit(3)
    return x * x

def f_vjp(g, x):
    if multiprocessing.parent_process() is not None:  # a worker's threads are capped
        from gradrun import threads
        want = os.environ["WANT_THREADS"]
        assert os.environ["OPENBLAS_NUM_THREADS"] == os.environ["OMP_NUM_THREADS"] == want, "BLAS variables"
        assert threads.blas_threads() in (None, 1), "a check runs on one BLAS thread, whatever the worker's cap"
        assert str(threads.WORKERS) == want, "gradrun's chunk threads"
    return 2 * g * x
"""

KILLER_SPEC = """version: 1
functions:
  f: {python: "killer:f", vjp: "killer:f_vjp"}
experiments:
  - name: dies-at-3
    function: f
    sweep: {x: [1.0, 2.0, 3.0, 1.5]}
  - name: fine
    function: square
    inputs: {x: 2.0}
  - name: checks-worker-threads
    function: f
    inputs: {x: 0.5}
"""


def killer_spec(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "killer.py").write_text(KILLER)
    (folder / "killer.yaml").write_text(KILLER_SPEC)
    return folder / "killer.yaml"


def test_a_dying_worker_turns_its_unit_into_an_error_and_workers_cap_threads(tmp_path):
    env = {name: None for name in threads.THREAD_VARIABLES}  # the caps are gradrun's, not inherited
    env["WANT_THREADS"] = str(max(1, threads.cores() // 2))
    env["FORKED_BY_J"] = "1"  # the probe of the threads a forked worker starts with
    done = gradrun(killer_spec(tmp_path / "spec"), "--out", tmp_path / "out", "-j", "2", "--format", "json", env=env)
    assert done.returncode == 1, done.stderr
    by_name = {e["name"]: e for e in json.loads(done.stdout)["experiments"]}
    assert by_name["fine"]["verdict"] == "PASS"
    assert by_name["checks-worker-threads"]["error"] is None
    assert "worker process died" in by_name["dies-at-3"]["error"]
    rows = (tmp_path / "out" / "killer.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in rows[1:] if r.startswith("dies-at-3")] == ["0", "1"]  # the points before


HANGS = """import os, time


def f(x):
    if x > 2.5:  # says its pid, then hangs: what a Ctrl-C is meant to stop
        with open(os.environ["HANG_MARKER"], "a") as marker:
            marker.write(f"{os.getpid()}\\n")
        time.sleep(600)
    return x * x


def f_vjp(g, x):
    return 2 * g * x
"""
HANGS_SPEC = """version: 1
functions:
  f: {python: "hangs:f", vjp: "hangs:f_vjp"}
experiments:
  - {name: fine, function: square, inputs: {x: 2.0}}
  - {name: hangs, function: f, sweep: {x: [1.0, 2.0, 3.0, 4.0]}}
"""


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie no reaper has collected does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_interrupted_or_killed_run_stops_its_workers_at_once_even_in_a_function_that_hangs(tmp_path):
    """Ctrl-C (SIGINT to the main process alone, as a CI runner's cancel may send it) ends a -j run
    promptly with 130 and no worker left; so does the main process's death (SIGKILL) its workers."""
    import signal
    import time

    (tmp_path / "hangs.py").write_text(HANGS)
    (tmp_path / "hangs.yaml").write_text(HANGS_SPEC)
    for sig, status in ((signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)):
        marker = tmp_path / f"hung-{sig}"
        env = {**os.environ, "PYTHONPATH": str(SUBJECT), "HANG_MARKER": str(marker)}
        # Ctrl-C as a terminal delivers it: SIGINT's disposition as a shell gives it, whatever this
        # process inherited (an ignored SIGINT is inherited through exec, and Python then never
        # raises KeyboardInterrupt)
        run = subprocess.Popen([sys.executable, "-m", "gradrun", str(tmp_path / "hangs.yaml"), "-j", "2", "--out",
                                str(tmp_path / "out")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 60
            # the marker is created, then written: wait for a whole line
            while not (marker.exists() and marker.read_text().endswith("\n")) and time.monotonic() < deadline \
                    and run.poll() is None:
                time.sleep(0.05)
            hung = int(marker.read_text().split()[0])
            os.kill(run.pid, sig)
            start = time.monotonic()
            try:
                _, err = run.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                ignored = [line for line in Path("/proc/self/status").read_text().splitlines() if "Sig" in line]
                raise AssertionError(f"no exit 30 s after signal {sig}; this process: {ignored}") from None
            assert run.returncode == status, err
            assert time.monotonic() - start < 5 and "Traceback" not in err, err
            while _alive(hung) and time.monotonic() - start < 5:
                time.sleep(0.05)
            assert not _alive(hung)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert not (tmp_path / "out").exists()


INTERRUPTED_IN_PROGRESS = """import sys
from gradrun import parallel, spec

loaded = spec.load_spec(sys.argv[1])


def progress(name, done, total):  # a Ctrl-C while this process tells of a finished unit
    raise KeyboardInterrupt


kept = []  # what a caller may keep (a log record, a report of the error): the traceback and its frames
try:
    list(parallel.run([(0, loaded, list(range(len(loaded.experiments))))], jobs=2, progress=progress))
except KeyboardInterrupt as error:
    kept.append(error)
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_a_ctrl_c_while_an_outcome_is_handled_stops_the_workers_too(tmp_path):
    """The interrupt lands outside the workers' iterator (here, in the progress callback): the
    iterator is closed as the exception passes, its workers stopped, and the process ends. Left
    to the garbage collector, which an exception kept by the caller holds off, the interpreter's
    exit waited for the worker in the function that hangs."""
    (tmp_path / "hangs.py").write_text(HANGS)
    (tmp_path / "hangs.yaml").write_text(HANGS_SPEC)
    (tmp_path / "interrupt.py").write_text(INTERRUPTED_IN_PROGRESS)
    env = {**os.environ, "PYTHONPATH": str(SUBJECT), "HANG_MARKER": str(tmp_path / "hung")}
    done = subprocess.run([sys.executable, str(tmp_path / "interrupt.py"), str(tmp_path / "hangs.yaml")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130 and done.stdout == "interrupted\n", done.stderr


# --- the pieces, in this process ----------------------------------------------


def test_chunks_cover_every_experiment_once_in_order_and_slices_every_point():
    spec = spec_module.load_spec(ROOT / "experiments" / "chain.yaml")
    chosen = [(0, spec, list(range(len(spec.experiments))))]
    for workers in (1, 2, 3, 8):
        units = parallel.chunks(chosen, workers)
        assert [k for u in units for k in u.experiments] == list(range(len(spec.experiments)))
        assert len(units) <= parallel.UNITS_PER_WORKER * workers
        assert all(u.names == tuple(spec.experiments[k].name for k in u.experiments) for u in units)
        for points in (1, 5, 13, 120):
            cut = parallel.slices(0, 3, "e", points, workers)
            assert [i for u in cut for i in range(u.start, u.stop)] == list(range(points))


def test_assembled_slices_equal_the_whole_experiment_rows_and_csv_bytes():
    spec = spec_module.load_spec(ROOT / "experiments" / "chain.yaml")
    k = next(i for i, e in enumerate(spec.experiments) if len(e.points) > 4)
    schema = parallel.expected_schema(spec, [k])
    task = parallel.Task(schemas={0: schema})
    whole = parallel.work(spec, parallel.Unit(0, (k,), ("x",)), task).results[0]
    cut = parallel.slices(0, k, "x", len(spec.experiments[k].points), 2)
    assert len(cut) > 1
    joined = parallel.assemble([parallel.work(spec, u, task).results[0] for u in cut])
    assert list(map(repr, joined.records)) == list(map(repr, whole.records))  # repr: nan equals nan
    assert joined.check == whole.check and joined.notes == whole.notes
    assert joined.csv == whole.csv == csvrows.formatted([whole], schema)[0]
    assert report.csv_text([joined]) == report.csv_text([whole])


def test_csv_rows_formatted_under_other_columns_are_formatted_again():
    spec = spec_module.load_spec(ROOT / "experiments" / "chain.yaml")
    results = [parallel.work(spec, parallel.Unit(0, (k,), ("x",)), parallel.Task()).results[0]
               for k in range(len(spec.experiments))]
    expected = report.csv_text(results)
    assert all(r.csv is None for r in results)
    for r in results:  # rows formatted as if the file had no sweep columns: not the file's columns
        [r.csv] = csvrows.formatted([r], parallel.expected_schema(spec, []))
    assert report.csv_text(results) == expected


def test_rows_formatted_together_are_each_results_own_bytes():
    spec = spec_module.load_spec(ROOT / "experiments" / "chain.yaml")
    results = [parallel.work(spec, parallel.Unit(0, (k,), ("x",)), parallel.Task()).results[0]
               for k in range(len(spec.experiments))]
    schema = parallel.expected_schema(spec, range(len(spec.experiments)))
    together = csvrows.formatted(results, schema)
    assert together == [csvrows.formatted([r], schema)[0] for r in results]
    assert b"".join(rows for _, rows in together) == report.csv_text(results).encode().split(b"\n", 1)[1]
    odd = ExperimentResult.from_rows("e", [dict(record(0), reason="two\nlines"), record(1)])  # a quoted line break
    assert csvrows.formatted([results[0], odd], schema) == [csvrows.formatted([r], schema)[0] for r in (results[0], odd)]
    assert b'"two\nlines"' in csvrows.formatted([odd], schema)[0][1]


def record(point):
    return dict(experiment="e", point=point, input="x", index=0, element="x", output=0, value=1.0, numeric=2.0,
                analytic=2.0, abs_error=0.0, rel_error=0.0, status="pass", tolerance=1e-7, method="central",
                step=1e-5, check="full")


def test_assemble_stops_at_the_first_error_as_the_serial_loop_does():
    parts = [ExperimentResult.from_rows("e", [record(0)], seconds=1.0),
             ExperimentResult("e", [], 0.5, error="ValueError: bad"),
             ExperimentResult.from_rows("e", [record(2)], seconds=1.0)]
    joined = parallel.assemble(parts)
    assert [r.point for r in joined.records] == [0] and joined.error == "ValueError: bad"
    assert joined.seconds == 1.5


def test_shards_partition_the_experiments_and_balance_cost():
    loaded = [spec_module.load_spec(p) for p in EXAMPLES]
    chosen = [(n, s, list(range(len(s.experiments)))) for n, s in enumerate(loaded)]
    every = {(n, k) for n, _, ks in chosen for k in ks}
    for count in (1, 2, 3, 7):
        slices = [shards.slice_of(chosen, i, count) for i in range(1, count + 1)]
        owned = [{(n, k) for n, _, ks in s for k in ks} for s in slices]
        assert set().union(*owned) == every and sum(map(len, owned)) == len(every)
        assert slices[0] == shards.slice_of(chosen, 1, count)  # deterministic
        costs = [sum(shards.cost(loaded[n].experiments[k]) for n, k in o) for o in owned]
        biggest = max(shards.cost(e) for s in loaded for e in s.experiments)
        assert max(costs) - min(costs) <= biggest  # greedy: no shard exceeds another by more than one item


def test_shard_files_hold_only_records(tmp_path):
    import pickle

    bad = tmp_path / "x.shard-1-of-1.pickle"
    bad.write_bytes(pickle.dumps({"format": 1, "results": [(0, os.system)]}))
    with pytest.raises(shards.ShardError, match="may not hold"):
        shards.read(bad)


def test_blas_threads_are_capped_in_a_running_process():
    code = ("import numpy\nfrom gradrun import threads\nbefore = threads.blas_threads()\nthreads.cap_process(1)\n"
            "print(before, threads.blas_threads())")
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**env, "PYTHONPATH": str(SUBJECT)})
    before, after = done.stdout.split()
    if before == "None":
        pytest.skip("this numpy's BLAS does not say how many threads it runs")
    assert (int(before), int(after)) == (threads.cores(), 1)


def test_thread_caps_are_set_for_workers_and_put_back(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    with threads.env_caps(1):
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "7"
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "7"


def test_the_collector_is_given_back_every_object_after_a_run_with_workers():
    spec = spec_module.load_spec(ROOT / "experiments" / "chain.yaml")
    list(parallel.run([(0, spec, [0, 1])], jobs=2))
    assert gc.get_freeze_count() == 0


def test_progress_counts_finished_units_across_workers():
    spec = spec_module.load_spec(ROOT / "experiments" / "chain.yaml")
    chosen = [(0, spec, list(range(len(spec.experiments))))]
    heard = []
    [(spec_no, results)] = list(parallel.run(chosen, jobs=2, progress=lambda *args: heard.append(args)))
    total = len(parallel.chunks(chosen, 2))
    assert [done for _, done, _ in heard] == list(range(1, total + 1)) and {t for _, _, t in heard} == {total}
    serial = [r for u in parallel.chunks(chosen, 1) for r in parallel.work(spec, u, parallel.Task()).results]
    assert [list(map(repr, r.records)) for r in results] == [list(map(repr, r.records)) for r in serial]


def test_a_check_runs_on_one_blas_thread_whatever_the_thread_variables_say():
    """-j's workers start with OPENBLAS_NUM_THREADS set to their share of the cores (2 each for
    -j 2 on 4 cores): a check in them still runs on one BLAS thread, as a serial run's does,
    so the report's bits are the same; the pool's own count is put back after the last check
    of the process ends (a Dask worker's threads run checks that overlap)."""
    code = ("import numpy\nfrom gradrun import threads\nwith threads.one_blas_thread():\n"
            "    inside = threads.blas_threads()\n"
            "first, second = threads.one_blas_thread(), threads.one_blas_thread()\n"
            "first.__enter__(), second.__enter__(), first.__exit__(None, None, None)\n"
            "overlapping = threads.blas_threads()\nsecond.__exit__(None, None, None)\n"
            "print(inside, threads.blas_threads(), overlapping)")
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**env, "PYTHONPATH": str(SUBJECT), "OPENBLAS_NUM_THREADS": "2"})
    inside, after, overlapping = done.stdout.split()
    if after == "None":
        pytest.skip("this numpy's BLAS does not say how many threads it runs")
    assert (int(inside), int(after), int(overlapping)) == (1, 2, 1)

"""Red-team round 10 of -j and Dask: what the user's code does to the process it runs in.

Each test runs gradrun as a process and holds it to a serial run's report
bytes, its exit code and its words.
"""

import contextlib
import json
import os
import threading
from pathlib import Path

import pytest

from test_parallel import SUBJECT, gradrun

MODULE = """import os, threading, time
import numpy as np


def chdir(x):  # leaves the process somewhere else, as a careless helper does
    os.chdir(os.environ["ELSEWHERE"])
    return x * x


def lingers(x):  # starts a thread that is not a daemon and outlives the call
    threading.Thread(target=time.sleep, args=(3600,)).start()
    return x * x


def hangs(x):  # hangs at one point of a sweep, in a retry loop that swallows what it can
    while x == 2.0:
        try:
            time.sleep(0.01)
        except Exception:
            pass
    return x * x


def sq_vjp(g, x):
    return 2 * g * x
"""


@pytest.fixture(scope="module")
def cluster():
    """A Dask LocalCluster on 127.0.0.1 for the module: one worker process of two threads, under a nanny
    (it comes back when user code kills it); yields the scheduler's address."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # a worker's death fails its task at once
        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                                      dashboard_address=None) as local:
            yield local.scheduler_address


def spec_calling(folder: Path, function: str) -> Path:
    """A spec whose first experiment calls ``mods:function``, then gradrun's own experiments."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mods.py").write_text(MODULE)
    spec = folder / f"{function}.yaml"
    spec.write_text(f"""version: 1
functions:
  f: {{python: "mods:{function}", vjp: "mods:sq_vjp"}}
experiments:
  - name: user
    function: f
    sweep: {{x: [1.0, 2.0, 3.0]}}
  - name: own-1
    expr: "sigmoid(x * y)"
    inputs: {{x: 0.5, y: -1.5}}
  - name: own-2
    function: tanh
    sweep: {{x: {{linspace: [-2, 2, 5]}}}}
""")
    return spec


def test_user_code_that_changes_the_working_directory_changes_nothing_of_gradrun(tmp_path):
    """A serial run wrote its report under the folder the user's function moved to; -j's workers then
    looked for the spec's module from there (exit 2, 'module mods not found')."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spec = spec_calling(tmp_path / "proj", "chdir")
    env = {"ELSEWHERE": str(elsewhere)}
    runs = {}
    for how in ([], ["-j", "2"]):
        out = f"out{len(how)}"
        done = gradrun(spec.name, "--out", out, "--format", "json", *how, env=env, cwd=spec.parent)
        assert done.returncode == 0, done.stderr
        runs[len(how)] = (spec.parent / out / "chdir.csv").read_bytes()
        assert [e["verdict"] for e in json.loads(done.stdout)["experiments"]] == ["PASS"] * 3
    assert runs[0] == runs[2]
    assert not list(elsewhere.iterdir())  # nothing written where the user's code went


def test_a_thread_the_user_code_leaves_running_does_not_hang_the_run(tmp_path):
    """-j waited for ever for its workers to end, and they for the user's thread: no report. A serial
    run wrote its report, then waited for the thread at the interpreter's exit."""
    spec = spec_calling(tmp_path, "lingers")
    runs = {}
    for how in ([], ["-j", "2"]):
        done = gradrun(spec, "--out", tmp_path / f"out{len(how)}", "-q", *how, timeout=60)
        assert done.returncode == 0, done.stderr
        runs[len(how)] = (tmp_path / f"out{len(how)}" / "lingers.csv").read_bytes()
    assert runs[0] == runs[2]


def test_a_point_that_hangs_is_its_experiments_error_after_the_timeout(tmp_path, cluster):
    """--timeout stops a point's check that runs too long, in a serial run, a -j worker (its main thread)
    and a Dask worker's thread; its experiment is an ERROR naming the timeout, the points before it
    and every other experiment report as a serial run does: the same bytes everywhere."""
    spec = spec_calling(tmp_path, "hangs")
    runs = {}
    for how in ([], ["-j", "2"], ["--scheduler", cluster]):
        out = tmp_path / f"out{len(runs)}"
        done = gradrun(spec, "--out", out, "--format", "json", "--timeout", "1", *how, timeout=120)
        assert done.returncode == 1, done.stderr
        by_name = {e["name"]: e for e in json.loads(done.stdout)["experiments"]}
        assert by_name["user"]["error"] == ("TimedOut: point 1 still running after 1 s (--timeout 1); "
                                            "a function that hangs, or raise --timeout"), how
        assert by_name["own-1"]["verdict"] == by_name["own-2"]["verdict"] == "PASS"
        runs[len(runs)] = (out / "hangs.csv").read_bytes()
        assert [r.split(b",")[:2] for r in runs[len(runs) - 1].splitlines()[1:] if r.startswith(b"user")] == \
            [[b"user", b"0"]]  # the point before the one that hung
    assert runs[0] == runs[1] == runs[2]


def test_a_large_check_in_pieces_starts_no_more_workers_than_it_has_pieces(tmp_path, monkeypatch):
    """-j 64 forked 64 processes at once for the four pieces of one check (a forked pool starts every
    worker it may have): its pool has as many workers as a phase has pieces, and the result is a serial run's."""
    from gradrun import localpool, parallel, pieces, runner, spec as spec_module

    monkeypatch.setattr(pieces, "PIECE_MIN", 64)
    monkeypatch.setattr(pieces, "PIECE", 16)
    (tmp_path / "bb.py").write_text("import numpy as np\n\ndef f(x):\n    return np.tanh(x)\n\n"
                                    "def f_vjp(g, x):\n    return g * (1 - np.tanh(x) ** 2)\n")
    (tmp_path / "big.yaml").write_text("""version: 1
functions:
  f: {python: "bb:f", vjp: "bb:f_vjp"}
experiments:
  - name: big
    function: f
    inputs: {x: {shape: [64], init: normal}}
    check: full
""")
    spec = spec_module.load_spec(tmp_path / "big.yaml")
    started = []
    pool = localpool._pool
    monkeypatch.setattr(localpool, "_pool", lambda jobs, per_worker: started.append(jobs) or pool(jobs, per_worker))
    [(_, [got])] = list(parallel.run([(0, spec, [0])], jobs=64))
    assert started == [1, 4]  # the first round's one unit, then the pieces
    expected = runner.run_experiment(spec.experiments[0])
    assert got.error is None and len(got.elements) == 64 * 64
    assert str(got.elements.rows()) == str(expected.elements.rows())  # NaN columns too


RESCUE = """import multiprocessing, os, time


def dies(x):
    if x > 2.5 and multiprocessing.parent_process() is not None:  # only ever in a -j worker
        os._exit(3)
    return x * x


SLEPT = []


def slow(x):  # a process's first call takes a second
    if not SLEPT:
        SLEPT.append(os.getpid())
        start = time.time()
        time.sleep(1.0)
        with open(os.environ["SLOW_LOG"], "a") as log:  # only a call that was not killed says so
            log.write(f"{start} {time.time()}\\n")
    return x * x


def sq_vjp(g, x):
    return 2 * g * x
"""


def test_the_units_a_dying_worker_took_with_it_run_again_side_by_side(tmp_path):
    """A worker that dies breaks -j's pool, and every unit in flight comes back DIED; they ran again one
    after another, each alone. Each still runs alone (a process of its own), but -j of them at a time."""
    (tmp_path / "rescue.py").write_text(RESCUE)
    slow = "\n".join(f"  - name: slow-{i}\n    function: s\n    inputs: {{x: {i}.5}}" for i in range(3))
    spec = tmp_path / "rescue.yaml"
    spec.write_text(f"""version: 1
functions:
  d: {{python: "rescue:dies", vjp: "rescue:sq_vjp"}}
  s: {{python: "rescue:slow", vjp: "rescue:sq_vjp"}}
experiments:
  - name: dies
    function: d
    sweep: {{x: [1.0, 3.0]}}
{slow}
""")
    log = tmp_path / "slow.log"
    done = gradrun(spec, "--out", tmp_path / "out", "-j", "2", "--format", "json", env={"SLOW_LOG": str(log)})
    assert done.returncode == 1, done.stderr
    by_name = {e["name"]: e for e in json.loads(done.stdout)["experiments"]}
    assert by_name["dies"]["error"] == "its worker process died while checking it"
    assert [by_name[f"slow-{i}"]["verdict"] for i in range(3)] == ["PASS"] * 3
    rows = (tmp_path / "out" / "rescue.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in rows[1:] if r.startswith("dies")] == ["0"]
    # the first round's one worker that called slow was killed in its first call: these are the reruns'
    calls = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(calls) == 3
    assert any(a_end > b_start for (_, a_end), (b_start, _) in zip(calls, calls[1:])), calls  # side by side


DASK_KILLER = """import os


def f(x):
    try:
        from distributed import get_worker

        get_worker()  # raises outside a Dask task: the main process loads the spec, a serial run checks
    except (ImportError, ValueError):
        return x * x
    if x > 2.5:
        with open(DEATHS, "a") as log:
            log.write("died\\n")
        os._exit(3)
    return x * x


def f_vjp(g, x):
    return 2 * g * x
"""


def test_a_dask_worker_killed_by_a_point_costs_three_deaths_and_the_report_is_whole(tmp_path, cluster):
    """A unit whose Dask worker died ran again whole, then each experiment, then halves of the
    experiment's points: six deaths of the worker for a four-point sweep, each a nanny's restart of
    seconds (Dask's default allowed-failures multiplies each by four, and a nanny whose worker dies as
    it starts gives up: half of such runs ended in 'lost all its workers', exit 2). Now the points run
    again in slices side by side: the first death, the slice's, and the one that confirms it."""
    deaths = tmp_path / "deaths.log"
    (tmp_path / "dkill.py").write_text(f"DEATHS = {str(deaths)!r}\n" + DASK_KILLER)
    spec = tmp_path / "dkill.yaml"
    spec.write_text("""version: 1
functions:
  f: {python: "dkill:f", vjp: "dkill:f_vjp"}
experiments:
  - name: fine
    function: square
    inputs: {x: 2.0}
  - name: dies-at-3
    function: f
    sweep: {x: [1.0, 2.0, 3.0, 1.5]}
  - name: fine-f
    function: f
    inputs: {x: 0.5}
""")
    done = gradrun(spec, "--out", tmp_path / "serial", "-q")
    assert done.returncode == 0, done.stderr
    done = gradrun(spec, "--out", tmp_path / "dask", "--scheduler", cluster, "--format", "json", timeout=180)
    assert done.returncode == 1, done.stderr
    by_name = {e["name"]: e for e in json.loads(done.stdout)["experiments"]}
    assert by_name["dies-at-3"]["error"] == "its Dask worker died while checking it"
    assert by_name["fine"]["verdict"] == by_name["fine-f"]["verdict"] == "PASS"
    serial = (tmp_path / "serial" / "dkill.csv").read_text().splitlines()
    kept = [r for r in serial if not r.startswith("dies-at-3,2,") and not r.startswith("dies-at-3,3,")]
    assert (tmp_path / "dask" / "dkill.csv").read_text().splitlines() == kept  # the points before it report
    assert deaths.read_text().count("died") == 3


@contextlib.contextmanager
def worker_in_this_process(address: str):
    """A second Dask worker, in this process's thread: it sees this process's sys.path, which the
    cluster's worker process does not. Its tasks cap this process's threads: put back after."""
    import asyncio

    from distributed import Worker

    from gradrun import threads

    ready, box = threading.Event(), {}

    async def serve():
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        async with Worker(address, nthreads=1, host="127.0.0.1"):
            ready.set()
            await box["stop"].wait()

    with threads.capped(threads.WORKERS):
        thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        thread.start()
        assert ready.wait(60)
        try:
            yield
        finally:
            box["loop"].call_soon_threadsafe(box["stop"].set)
            thread.join(60)


def test_a_worker_that_lacks_what_the_users_code_imports_stops_the_run_before_any_check(tmp_path, cluster,
                                                                                        monkeypatch):
    """Of two workers, one has the package the user's module imports: the run stopped (exit 2) only once
    the other was handed a unit of that spec, after other work, or ran to the end when it never was.
    Every worker now loads each spec that calls user code before any unit is handed out."""
    write = {"site/only_here.py": "def twice(x):\n    return 2 * x\n",
             "spec/needs.py": "from only_here import twice\n\ndef f(x):\n    return twice(x)\n\n"
                              "def f_vjp(g, x):\n    return 2 * g\n",
             "spec/needs.yaml": "version: 1\nfunctions:\n  f: {python: 'needs:f', vjp: 'needs:f_vjp'}\n"
                                "experiments:\n" + "".join(f"  - {{name: e{i}, function: f, inputs: {{x: 1.5}}}}\n"
                                                           for i in range(4)),
             "spec/other.py": f"def g(x):\n    open({str(tmp_path / 'checked.log')!r}, 'a').write('g\\n')\n"
                              "    return x * x\n\ndef g_vjp(gr, x):\n    return 2 * gr * x\n",
             "spec/other.yaml": "version: 1\nfunctions:\n  g: {python: 'other:g', vjp: 'other:g_vjp'}\n"
                                "experiments:\n" + "".join(f"  - {{name: o{i}, function: g, inputs: {{x: 0.5}}}}\n"
                                                           for i in range(4))}
    for rel, text in write.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with worker_in_this_process(cluster):
        done = gradrun(tmp_path / "spec" / "other.yaml", tmp_path / "spec" / "needs.yaml", "--out", tmp_path / "out",
                       "--scheduler", cluster, env={"PYTHONPATH": f"{SUBJECT}{os.pathsep}{tmp_path / 'site'}"},
                       timeout=120)
    assert done.returncode == 2, done.stderr
    assert "cannot load a spec that loads here" in done.stderr and "install only_here on every worker" \
        in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
    calls = (tmp_path / "checked.log").read_text().count("g")  # a load calls g once per experiment
    assert calls <= 4 * 3  # the main process's load and the two workers', no check


LOOPS = """import time


def f(x):
    if x > 2.5:
        open(STARTED, "w").write("started\\\\n")
        try:
            while True:  # a Python loop that never ends, and swallows what it can
                try:
                    time.sleep(0.05)
                except Exception:
                    pass
        finally:
            open(ENDED, "w").write("ended\\\\n")
    return x * x


def f_vjp(g, x):
    return 2 * g * x
"""


def test_ctrl_c_on_a_dask_run_stops_its_task_that_hangs_on_the_worker(tmp_path, cluster):
    """Ctrl-C ended the run (130) and released its tasks, but a task running a function that hangs
    kept its worker's thread for good, and the tasks of later runs queued behind it. The run now
    stops its running tasks as it ends. (Last in this module: before the fix it kept the worker busy.)"""
    import signal
    import subprocess
    import sys
    import time

    started, ended = tmp_path / "started", tmp_path / "ended"
    (tmp_path / "loops.py").write_text(f"STARTED, ENDED = {str(started)!r}, {str(ended)!r}\n" + LOOPS)
    (tmp_path / "loops.yaml").write_text("version: 1\nfunctions:\n  f: {python: 'loops:f', vjp: 'loops:f_vjp'}\n"
                                         "experiments:\n  - {name: e, function: f, sweep: {x: [1.0, 3.0]}}\n")
    env = {**os.environ, "PYTHONPATH": str(SUBJECT)}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    run = subprocess.Popen([sys.executable, "-m", "gradrun", str(tmp_path / "loops.yaml"), "--out",
                            str(tmp_path / "out"), "--scheduler", cluster], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), run.stderr.read() if run.poll() is not None else "never started"
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
        assert run.returncode == 130 and "Traceback" not in err, err
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    deadline = time.monotonic() + 20
    while not ended.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended.exists()  # the worker's thread is free again
    assert not (tmp_path / "out").exists()


def test_a_function_that_hangs_as_its_spec_loads_is_a_spec_problem_after_the_timeout(tmp_path):
    """Loading a spec calls a python: function once, at its first point, to learn its output's shape: one
    that hangs there hung the run with --timeout too (serially, and in every -j worker that resolved it)."""
    (tmp_path / "conv.py").write_text("import time\n\n\ndef f(x):\n    while x == 1.5:  # never converges\n"
                                      "        time.sleep(0.01)\n    return x * x\n\n\ndef f_vjp(g, x):\n"
                                      "    return 2 * g * x\n")
    spec = tmp_path / "conv.yaml"
    spec.write_text("version: 1\nfunctions:\n  f: {python: 'conv:f', vjp: 'conv:f_vjp'}\n"
                    "experiments:\n  - {name: e, function: f, inputs: {x: 1.5}}\n  - {name: g, function: tanh, "
                    "inputs: {x: 0.5}}\n")
    # -j: a worker's load stops first, then this process's load of the whole file (a serial run's words)
    done = gradrun(spec, "--out", tmp_path / "out", "--timeout", "0.5", "-j", "2", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "conv.yaml:5:25: experiments[0].function: in f(x): conv:f on shapes () did not return within " \
           "0.5 s (--timeout 0.5)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()

"""--scheduler: a real Dask scheduler and two workers, as separate processes on 127.0.0.1.

The workers run in a folder of their own and get each spec as text with its
user modules (gradrun.dask_cluster.SpecSource); the reports must be the same
bytes as a serial run's. Dask's nanny starts every worker with one BLAS
thread, so the reference is the serial run with one BLAS thread
(see test_parallel.py).
"""

import contextlib
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from test_parallel import (  # noqa: E402
    EXAMPLES, ONE_THREAD, ROOT, SUBJECT, assert_same_reports, gradrun, junit_without_times, killer_spec, serial,
    strip_times,
)

from gradrun import dask_cluster, parallel, spec as spec_module  # noqa: E402

BIN = Path(sys.executable).parent
__all__ = ["serial"]  # the serial-run fixture, shared with test_parallel.py


SLOW_MARKER = "GRADRUN_TEST_SLOW_MARKER"  # a file: the first call of slow:f that finds it unset writes its pid
SLOW = f"""
import os, time


def f(x):
    marker = os.environ.get({SLOW_MARKER!r})  # set on the test's workers only
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return x * x
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        time.sleep(120)  # until the test kills this worker, or its scheduler
    return x * x


def f_vjp(g, x):
    return 2 * g * x
"""

SLOW_SPEC = """version: 1
functions:
  f: {python: "slow:f", vjp: "slow:f_vjp"}
experiments:
  - name: before
    function: square
    inputs: {x: 2.0}
  - name: slow
    function: f
    sweep: {x: [1.0, 2.0, 3.0]}
  - name: after
    expr: "sigmoid(x * y)"
    inputs: {x: 0.5, y: -1.5}
"""

# A spec whose python: modules import a sibling module of the spec's folder, and a package's module
# that imports another of its package: none of them is on a worker's path.
TRAVELLING = {
    "travel.yaml": """version: 1
functions:
  f: {python: "usesib:f", vjp: "usesib:f_vjp"}
  g: {python: "pkg.ops:g", vjp: "pkg.ops:g_vjp"}
  h: {python: "projlib:h", vjp: "projlib:h_vjp"}
experiments:
  - name: sibling
    function: f
    sweep: {x: [0.5, 1.5]}
  - name: package
    function: g
    inputs: {x: [1.0, 2.0, -0.5]}
  - name: project
    function: h
    inputs: {x: 0.25}
""",
    "usesib.py": "from helper import SCALE\n\ndef f(x):\n    return SCALE * x ** 3\n\n"
                 "def f_vjp(g, x):\n    return 3 * SCALE * g * x ** 2\n",
    "helper.py": "SCALE = 1.75\n",
    "pkg/__init__.py": "",
    "pkg/ops.py": "import numpy as np\nfrom pkg.inner import SHIFT\n\ndef g(x):\n    return np.sin(x) * SHIFT\n\n"
                  "def g_vjp(gr, x):\n    return gr * np.cos(x) * SHIFT\n",
    "pkg/inner.py": "SHIFT = -2.5\n",
}
PROJECT = {"projlib.py": "import math\n\ndef h(x):\n    return math.exp(x)\n\ndef h_vjp(g, x):\n"
                         "    return g * math.exp(x)\n"}  # in the project (the working directory), not beside the spec


def write_files(folder: Path, files: dict) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def _wait_for_pid(marker: Path, deadline: float) -> int:
    while True:
        try:
            return int(marker.read_text())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _start(args, cwd, env, log):
    return subprocess.Popen([str(BIN / "dask"), *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _address(file, deadline) -> str:
    """The scheduler's address, once it has written its file whole."""
    while True:
        try:
            return json.loads(file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def running_cluster(folder: Path, workers: int = 2, env=None):
    """``dask scheduler`` and ``workers`` ``dask worker``s on free ports, each worker in a folder of its
    own (not the specs'), PYTHONPATH only gradrun's; yields (address, [scheduler, worker...] processes)."""
    env = {**os.environ, "PYTHONPATH": str(SUBJECT), **(env or {})}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    file = folder / "scheduler.json"
    log = (folder / "cluster.log").open("w")
    processes = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                         "--scheduler-file", str(file)], folder, env, log)]
    try:
        address = _address(file, deadline=time.monotonic() + 30)
        for i in range(workers):
            workdir = folder / f"worker{i}"  # not the specs' folder: workers get specs as text
            workdir.mkdir()
            processes.append(_start(["worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                     "--no-dashboard", "--local-directory", str(workdir)], workdir, env, log))
        from distributed import Client

        if workers:
            with Client(address, timeout="30s") as client:
                client.wait_for_workers(workers, timeout=60)
        yield address, processes
    finally:
        for process in reversed(processes):
            _stop(process)
        log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two workers for the module's tests; yields the scheduler's address."""
    folder = tmp_path_factory.mktemp("cluster")
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",  # a worker that dies fails its task at once
           "WANT_THREADS": "1",  # what the killer spec's probe expects of a worker
           SLOW_MARKER: str(folder / "slow.pid")}  # where the slow spec's first call on a worker says its pid
    with running_cluster(folder, env=env) as (address, _):
        _MARKERS[address] = env[SLOW_MARKER]
        yield address


_MARKERS: dict = {}  # scheduler address -> the slow spec's marker file on its workers


def _marker(address: str) -> str:
    return _MARKERS[address]


def test_dask_writes_the_serial_bytes(cluster, serial, tmp_path):
    expected, summary = serial
    done = gradrun(*EXAMPLES, "--out", tmp_path, "--scheduler", cluster, "--junit", tmp_path / "junit.xml",
                   "--format", "json")
    assert done.returncode == 0, done.stderr
    assert_same_reports(expected, tmp_path, [p.stem for p in EXAMPLES])
    assert junit_without_times(tmp_path / "junit.xml") == junit_without_times(expected / "junit.xml")
    assert strip_times(done.stdout) == strip_times(summary)


def test_dask_address_from_the_environment(cluster, serial, tmp_path):
    expected, _ = serial
    spec = ROOT / "experiments" / "my-layer.yaml"  # user code: layers.py travels with the spec
    environ = {**os.environ, "PYTHONPATH": str(SUBJECT), "DASK_SCHEDULER_ADDRESS": cluster}
    done = subprocess.run([sys.executable, "-m", "gradrun", str(spec), "--out", str(tmp_path)],
                          capture_output=True, text=True, env=environ, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same_reports(expected, tmp_path, ["my-layer"])


def test_a_dying_dask_worker_turns_its_unit_into_an_error(cluster, tmp_path):
    done = gradrun(killer_spec(tmp_path / "spec"), "--out", tmp_path / "out", "--scheduler", cluster,
                   "--format", "json")
    assert done.returncode == 1, done.stderr
    by_name = {e["name"]: e for e in json.loads(done.stdout)["experiments"]}
    assert by_name["fine"]["verdict"] == "PASS"
    assert "Dask worker died" in by_name["dies-at-3"]["error"]
    assert by_name["checks-worker-threads"]["error"] is None


@pytest.mark.parametrize("how", [["--scheduler", "tcp://127.0.0.1:1"], ["--scheduler", "tcp://127.0.0.1:99999"],
                                 {"DASK_SCHEDULER_ADDRESS": "garbage"}, {"DASK_SCHEDULER_ADDRESS": "inproc://x"}])
def test_a_wrong_scheduler_address_is_a_usage_error_naming_it(how, tmp_path):
    address = how[1] if isinstance(how, list) else how["DASK_SCHEDULER_ADDRESS"]
    start = time.monotonic()
    done = gradrun(ROOT / "experiments" / "chain.yaml", "--out", tmp_path / "out",
                   *(how if isinstance(how, list) else ()), env=how if isinstance(how, dict) else None)
    assert done.returncode == 2, done.stderr
    assert address in done.stderr and "Traceback" not in done.stderr and "Exception" not in done.stderr
    assert time.monotonic() - start < 20  # within the connect timeout (5 s), not Dask's own retries
    assert not (tmp_path / "out").exists()


def test_the_user_modules_travel_with_the_spec_siblings_packages_and_the_projects_too(cluster, tmp_path):
    """Workers run elsewhere with gradrun alone on their path; the run starts from the project's folder,
    which holds a module the spec names, beside neither the spec nor the workers."""
    write_files(tmp_path / "specs", TRAVELLING)
    write_files(tmp_path / "project", PROJECT)
    spec = tmp_path / "specs" / "travel.yaml"
    serial = gradrun(spec, "--out", tmp_path / "serial", cwd=tmp_path / "project")
    done = gradrun(spec, "--out", tmp_path / "dask", "--scheduler", cluster, cwd=tmp_path / "project")
    assert serial.returncode == done.returncode == 0, done.stdout + done.stderr
    assert_same_reports(tmp_path / "serial", tmp_path / "dask", ["travel"])


def test_a_worker_killed_mid_run_has_its_unit_run_again_and_the_report_is_whole(cluster, tmp_path):
    """The worker that checks the slow experiment is killed from outside (SIGKILL, as the OOM killer
    does) while it runs: its unit runs again alone, and the report is a serial run's bytes."""
    write_files(tmp_path / "spec", {"slow.yaml": SLOW_SPEC, "slow.py": SLOW})
    spec = tmp_path / "spec" / "slow.yaml"
    marker = Path(_marker(cluster))
    marker.unlink(missing_ok=True)
    run = subprocess.Popen([sys.executable, "-m", "gradrun", str(spec), "--out", str(tmp_path / "dask"),
                            "--scheduler", cluster], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(SUBJECT)})
    try:
        os.kill(_wait_for_pid(marker, time.monotonic() + 60), signal.SIGKILL)
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    serial = gradrun(spec, "--out", tmp_path / "serial")
    assert run.returncode == serial.returncode == 0, out + err
    assert_same_reports(tmp_path / "serial", tmp_path / "dask", ["slow"])


def test_the_scheduler_dying_mid_run_is_an_error_and_leaves_the_last_report(tmp_path):
    """The scheduler is killed while a worker checks: exit 2 naming it, no report, the earlier one intact."""
    write_files(tmp_path / "spec", {"slow.yaml": SLOW_SPEC, "slow.py": SLOW})
    (tmp_path / "cluster").mkdir()
    marker = tmp_path / "cluster" / "slow.pid"
    with running_cluster(tmp_path / "cluster", workers=1, env={SLOW_MARKER: str(marker)}) as (address, processes):
        out = tmp_path / "out"
        done = gradrun(tmp_path / "spec" / "slow.yaml", "--out", out)  # the last good report: a serial run
        assert done.returncode == 0, done.stderr
        earlier = {p.name: p.read_bytes() for p in out.iterdir()}
        run = subprocess.Popen([sys.executable, "-m", "gradrun", str(tmp_path / "spec" / "slow.yaml"), "--out",
                                str(out), "--scheduler", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(SUBJECT)})
        try:
            _wait_for_pid(marker, time.monotonic() + 60)
            os.killpg(processes[0].pid, signal.SIGKILL)
            start = time.monotonic()
            _, err = run.communicate(timeout=60)
        finally:
            run.kill()
    assert run.returncode == 2, err
    assert time.monotonic() - start < 30
    assert address in err and "stopped answering" in err and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier


def test_a_spec_runs_from_its_source_without_its_folder(tmp_path):
    """What a worker does, in this process: the spec's folder is gone, its text and modules suffice."""
    folder = tmp_path / "specs"
    folder.mkdir()
    for name in ("my-layer.yaml", "layers.py"):
        shutil.copy(ROOT / "experiments" / name, folder / name)
    spec = spec_module.load_spec(folder / "my-layer.yaml")
    source = dask_cluster.source_of(spec.path)
    assert [rel for rel, _ in source.files] == ["layers.py"]
    task = parallel.Task(schemas={0: parallel.expected_schema(spec, [0, 2])})
    unit = parallel.Unit(0, (0, 2), (spec.experiments[0].name, spec.experiments[2].name))
    expected = parallel.work(spec, unit, task).results
    shutil.rmtree(folder)
    stale = Path(tempfile.gettempdir()) / f"gradrun-{dask_cluster.LAYOUT}-{source.digest}"
    shutil.rmtree(stale, ignore_errors=True)
    (stale / "other").mkdir(parents=True)  # a folder of that name from something else: not used, not fatal
    try:
        got = dask_cluster.remote_unit(source, unit, task).results
    finally:
        for made in [stale, *stale.parent.glob(f"{stale.name}.*")]:
            shutil.rmtree(made, ignore_errors=True)
    assert [list(map(repr, r.records)) for r in got] == [list(map(repr, r.records)) for r in expected]
    assert all(r.error is None and r.records for r in got)
    assert [r.csv for r in got] == [r.csv for r in expected]  # CSV rows formatted on the worker


def test_dask_measures_the_pieces_of_a_large_check_and_writes_the_bytes_of_the_whole(cluster, tmp_path):
    """The workers (in folders of their own) get the lowered thresholds with their task."""
    from test_pieces import SMALL, box_spec

    from gradrun import pieces, piecework, report, runner

    folder = tmp_path / "box"
    spec = spec_module.load_spec(box_spec(folder))
    with pieces.planned(min_size=10**9):
        whole = report.csv_text(runner.run_spec(spec))
    ran = []
    original = piecework.run_apart
    with pieces.planned(**SMALL):
        piecework.run_apart = lambda spec, k, *a: ran.append(k) or original(spec, k, *a)
        try:
            [(_, got)] = list(parallel.run([(0, spec, [0, 1, 2])], scheduler=cluster))
        finally:
            piecework.run_apart = original
    assert ran == [0, 1] and report.csv_text(got) == whole


def test_a_cluster_that_loses_every_worker_or_has_none_is_an_error_after_a_while(tmp_path, monkeypatch):
    """Dask keeps tasks for a worker that may join later, for ever; gradrun waits WORKERS_TIMEOUT."""
    monkeypatch.setattr(dask_cluster, "WORKERS_TIMEOUT", 1)
    monkeypatch.setattr(dask_cluster, "POLL", 0.2)
    write_files(tmp_path / "spec", {"slow.yaml": SLOW_SPEC, "slow.py": SLOW})
    spec = spec_module.load_spec(tmp_path / "spec" / "slow.yaml")
    (tmp_path / "cluster").mkdir()
    marker = tmp_path / "cluster" / "slow.pid"
    with running_cluster(tmp_path / "cluster", workers=1, env={SLOW_MARKER: str(marker)}) as (address, processes):
        def kill_the_worker():  # its nanny too: nothing restarts it
            _wait_for_pid(marker, time.monotonic() + 60)
            os.killpg(processes[1].pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_the_worker)
        killer.start()
        with pytest.raises(dask_cluster.ClusterError, match="lost all its workers mid-run") as raised:
            list(parallel.run([(0, spec, [0, 1, 2])], scheduler=address))
        killer.join()
        assert address in str(raised.value)
        assert re.search(r"Unfinished: [^.]*\bslow\b", str(raised.value)) and "nanny" in str(raised.value)
        with pytest.raises(dask_cluster.ClusterError, match="has no workers") as raised:
            with dask_cluster.connected(address, {}) as cluster:
                cluster.count
        assert f"dask worker {address}" in str(raised.value)


class _Workers:
    """A client whose workers report ``found`` from ``dask_cluster.software``."""

    def __init__(self, found):
        self.found = found

    def run(self, function):
        assert function is dask_cluster.software
        return {"tcp://10.0.0.7:40231": function(), "tcp://10.0.0.8:40231": self.found}

    def wait_for_workers(self, n, timeout):
        pass

    def nthreads(self):
        return {"tcp://10.0.0.7:40231": 1, "tcp://10.0.0.8:40231": 1}


def test_workers_with_another_gradrun_or_numpy_are_named_before_anything_runs():
    version, digest, numpy_version = dask_cluster.software()
    assert digest == dask_cluster.software.__wrapped__()[1]  # the source's digest, not a constant
    for found in [(version, "0" * 12, numpy_version), (version, digest, "1.26.4")]:
        cluster = dask_cluster.Cluster("tcp://10.0.0.5:8786", _Workers(found), {})
        with pytest.raises(dask_cluster.ClusterError, match="install the same on every worker") as raised:
            cluster.count
        assert "tcp://10.0.0.8:40231" in str(raised.value) and "tcp://10.0.0.7" not in str(raised.value)
        assert found[1] in str(raised.value) and found[2] in str(raised.value)
    assert dask_cluster.Cluster("tcp://10.0.0.5:8786", _Workers(dask_cluster.software()), {}).count == 2


# A module whose import takes a while, and a function that says when two of its calls overlap.
THREADED = """import threading, time
time.sleep(0.4)  # a heavy import (torch's): a second task must not find this module half-run
_inside, _lock = [0, 0], threading.Lock()  # calls inside now, most ever at once


def f(x):
    with _lock:
        _inside[0] += 1
        _inside[1] = max(_inside)
    time.sleep(0.005)
    with _lock:
        _inside[0] -= 1
    if _inside[1] > 1:
        raise RuntimeError("two calls at once")
    return x * x


def f_vjp(g, x):
    return 2 * g * x
"""


def _forget(sources) -> None:
    """Remove the folders a worker (here, this process) wrote the sources into."""
    for source in sources:
        shutil.rmtree(Path(tempfile.gettempdir()) / f"gradrun-{dask_cluster.LAYOUT}-{source.digest}",
                      ignore_errors=True)


def _threaded_source(tmp_path):
    write_files(tmp_path, {"threaded.yaml": "version: 1\nfunctions:\n  f: {python: 'threaded:f', vjp: "
                           "'threaded:f_vjp'}\nexperiments:\n" + "".join(
                               f"  - {{name: e{i}, function: f, inputs: {{x: {i + 1}.5}}}}\n" for i in range(2)),
                           "threaded.py": f"# {tmp_path}\n" + THREADED})  # its own digest: a fresh folder
    spec = spec_module.load_spec(tmp_path / "threaded.yaml")
    return spec, dask_cluster.source_of(spec.path)


def _side_by_side(source, spec, task):
    """Both experiments' units as two threads of one Dask worker run them: at once."""
    outcomes = [None, None]

    def run(k):
        outcomes[k] = dask_cluster.remote_unit(source, parallel.Unit(0, (k,), (spec.experiments[k].name,)), task)

    workers = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [r for outcome in outcomes for r in outcome.results]


def test_a_worker_of_several_threads_loads_a_spec_once_and_runs_user_code_one_task_at_a_time(tmp_path):
    """`dask worker --nthreads N` runs N tasks in one process: a task must not find the spec's module
    half-imported by another (its functions missing), and the user's code, called from one thread
    in a serial run, must not be called from two at once (torch's forward mode, a seeded generator
    and a module's caches are the process's)."""
    spec, source = _threaded_source(tmp_path)
    task = parallel.Task()
    try:
        got = _side_by_side(source, spec, task)
    finally:
        _forget([source])
    assert [r.error for r in got] == [None, None] and all(len(r.elements) for r in got)
    expected = parallel.work(spec, parallel.Unit(0, (0, 1), ("e0", "e1")), task).results
    assert [list(map(repr, r.records)) for r in got] == [list(map(repr, r.records)) for r in expected]


def test_a_worker_without_a_module_the_users_code_imports_is_named_with_what_to_install(cluster, tmp_path):
    """The main process finds `extra_only_here` (an installed package, say torch) and loads the spec;
    the workers do not have it: exit 2 before any report, naming the worker, the spec and what to install."""
    write_files(tmp_path / "spec", {
        "needs.yaml": "version: 1\nfunctions:\n  f: {python: 'needs:f', vjp: 'needs:f_vjp'}\n"
                      "experiments:\n  - {name: e, function: f, inputs: {x: 1.5}}\n",
        "needs.py": "from extra_only_here import twice\n\ndef f(x):\n    return twice(x)\n\n"
                    "def f_vjp(g, x):\n    return 2 * g\n"})
    write_files(tmp_path / "site", {"extra_only_here.py": "def twice(x):\n    return 2 * x\n"})
    out = tmp_path / "out"
    done = gradrun(tmp_path / "spec" / "needs.yaml", "--out", out, "--scheduler", cluster,
                   env={"PYTHONPATH": os.pathsep.join([str(SUBJECT), str(tmp_path / "site")])})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
    named = r"Dask worker tcp://127\.0\.0\.1:\d+ cannot load a spec that loads here: \S*needs\.yaml:"
    assert re.search(named, done.stderr), done.stderr
    assert "needs.yaml:3:15: functions.f.python" in done.stderr and "install extra_only_here on every worker" \
        in done.stderr and "/gradrun-spec2-" not in done.stderr, done.stderr


@contextlib.contextmanager
def _listening(reply: bytes | None):
    """A TCP server on 127.0.0.1 that accepts connections and says ``reply`` (None: nothing) to each."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                accepted.append(conn)
                if reply is not None:
                    conn.recv(65536)
                    conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_an_address_where_something_else_answers_is_a_usage_error_within_the_timeout(cluster, monkeypatch):
    """Dask's client waits for ever on a peer that accepts and says nothing (or reads an HTTP reply as
    a frame of exabytes); the dashboard's port and a worker's address are common mistakes."""
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT", 0.5)
    for reply, said in ((None, "within 1.0 s"), (b"HTTP/1.0 400 Bad Request\r\n\r\n" * 8, "as one")):
        with _listening(reply) as address:
            start = time.monotonic()
            with pytest.raises(dask_cluster.ClusterError, match="does not answer as a Dask scheduler") as raised:
                dask_cluster.connected(address, {}).__enter__()
            assert time.monotonic() - start < 5 and address in str(raised.value) and said in str(raised.value)
    from distributed import Client

    with Client(cluster, timeout="10s") as client:
        worker = next(iter(client.scheduler_info()["workers"]))
    with pytest.raises(dask_cluster.ClusterError, match="is a Dask worker's address; give the scheduler's"):
        dask_cluster.connected(worker, {}).__enter__()
    dask_cluster._answers(cluster)  # the scheduler itself


def test_a_long_lived_worker_keeps_only_the_specs_it_used_last(tmp_path, monkeypatch):
    """A worker of a shared cluster sees spec after spec, run after run: it keeps LOADED_KEPT of them."""
    monkeypatch.setattr(dask_cluster, "_LOADED", {})
    monkeypatch.setattr(dask_cluster, "LOADED_KEPT", 2)
    text = (ROOT / "experiments" / "chain.yaml").read_text()
    sources = []
    for i in range(3):
        (tmp_path / f"s{i}.yaml").write_text(f"# {tmp_path} {i}\n{text}")
        sources.append(dask_cluster.source_of(tmp_path / f"s{i}.yaml"))
    task = parallel.Task()
    try:
        loaded = [dask_cluster._loaded(source, task) for source in (*sources[:2], sources[0], sources[2])]
    finally:
        _forget(sources)
    assert loaded[0][0] is loaded[2][0] and not loaded[0][1]  # used again: not loaded again; no user code
    assert [digest for digest, _ in dask_cluster._LOADED] == [sources[0].digest, sources[2].digest]


def test_a_worker_that_joins_with_other_software_is_named_when_it_gets_a_task(tmp_path):
    """The software check runs when the run starts; a worker that joins later (an adaptive cluster),
    or that its nanny restarted into another environment, says so with its first task."""
    (tmp_path / "chain.yaml").write_text((ROOT / "experiments" / "chain.yaml").read_text() + f"# {tmp_path}\n")
    spec = spec_module.load_spec(tmp_path / "chain.yaml")
    source = dask_cluster.source_of(spec.path)
    version, digest, numpy_version = dask_cluster.software()
    with pytest.raises(dask_cluster.OtherSoftware) as raised:
        dask_cluster.remote_unit(source, parallel.Unit(0, (0,), ("x",)), parallel.Task(), (version, "0" * 12, "1.26.4"))
    cluster = dask_cluster.Cluster("tcp://10.0.0.5:8786", _Workers(dask_cluster.software()), {0: spec})
    with pytest.raises(dask_cluster.ClusterError, match="install the same on every worker") as said:
        cluster._died(raised.value, n=0)
    assert digest in str(said.value) and "(this process)" in str(said.value)


RAISES = """import numpy as np


class TooBig(Exception):  # a class of the user's module: on a worker, of the worker's copy of it
    pass


def f(x):
    if x[30] > 5:
        raise TooBig(f"x[30] is {x[30]:.3f}")
    return np.sum(np.sin(x) * x)


def f_vjp(g, x):
    return g * (np.cos(x) * x + np.sin(x))
"""


def test_what_the_users_code_raises_measuring_a_piece_is_its_error_as_in_a_serial_run(cluster, tmp_path):
    """An exception of a class of the user's module cannot be unpickled where the module has another
    name (the main process): it came back as a blob of pickled bytes in the report's error."""
    from gradrun import pieces, runner

    write_files(tmp_path, {"raises.py": RAISES, "raises.yaml": "version: 1\nfunctions:\n  f: {python: 'raises:f', "
                           "vjp: 'raises:f_vjp'}\nexperiments:\n  - {name: big, function: f, inputs: {x: {shape: "
                           "[40], init: normal, seed: 3}}, check: full, step: 10.0}\n"})
    spec = spec_module.load_spec(tmp_path / "raises.yaml")
    with pieces.planned(min_size=10**9):
        [whole] = runner.run_spec(spec)
    with pieces.planned(min_size=8, size=8):
        [(_, [got])] = list(parallel.run([(0, spec, [0])], scheduler=cluster))
    assert whole.error.startswith("TooBig: x[30] is ") and got.error == whole.error

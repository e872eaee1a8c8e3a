"""--scheduler: a real Dask scheduler and two workers, as separate processes on 127.0.0.1.

The workers run in a folder of their own and get each spec as text with its
user modules (gradrun.dask_cluster.SpecSource); the reports must be the same
bytes as a serial run's. Dask's nanny starts every worker with one BLAS
thread, so the reference is the serial run with one BLAS thread
(see test_parallel.py).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker``s on free ports; yields the scheduler's address."""
    folder = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "PYTHONPATH": str(SUBJECT),
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",  # a worker that dies fails its task at once
           "WANT_THREADS": "1"}  # what the killer spec's probe expects of a worker
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    file = folder / "scheduler.json"
    log = (folder / "cluster.log").open("w")
    processes = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                         "--scheduler-file", str(file)], folder, env, log)]
    try:
        address = _address(file, deadline=time.monotonic() + 30)
        for i in range(2):
            workdir = folder / f"worker{i}"  # not the specs' folder: workers get specs as text
            workdir.mkdir()
            processes.append(_start(["worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                     "--no-dashboard", "--local-directory", str(workdir)], workdir, env, log))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)
        log.close()


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


def test_no_scheduler_is_a_usage_error(tmp_path):
    done = gradrun(ROOT / "experiments" / "chain.yaml", "--out", tmp_path, "--scheduler", "tcp://127.0.0.1:9")
    assert done.returncode == 2 and "no Dask scheduler answers" in done.stderr and "Traceback" not in done.stderr


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
    got = dask_cluster.remote_unit(source, unit, task).results
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

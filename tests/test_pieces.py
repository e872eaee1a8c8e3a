"""One large full check measured in element pieces: the same bytes as one measured whole, wherever the pieces ran.

The thresholds are lowered (``pieces.planned`` in this process; ``-j``'s workers
are forked from it and get the main process's plan with their task), so a black
box of 40 elements is cut into five pieces of 8. Its check has every kind of
entry the judge decides after a second look: a wrong VJP entry (fail), a kink,
a jump (unresolved), and, with an explicit coarse step, entries re-measured.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from gradrun import parallel, pieces, piecework, report, runner, spec as spec_module, window

BOX = '''"""A black box of 40 elements: a jump (unresolved), a kink, a wrong VJP entry (fail)."""
import os

import numpy as np

C = np.linspace(0.5, 1.5, 40)
CALLS = {}  # process id -> calls of f there


def f(x):
    CALLS[os.getpid()] = CALLS.get(os.getpid(), 0) + 1
    if CALLS[os.getpid()] == 10 and os.environ.get("PIECY_PIDS"):  # a process that measures: resolving calls f less
        with open(os.environ["PIECY_PIDS"], "a") as log:
            log.write(f"{os.getpid()}\\n")
    jump = float(x[3] > 1e-300)  # a unit jump just right of 0: no derivative to measure there
    return np.array([np.sum(np.sin(x) * C) + jump, np.sum(x ** 2) + np.abs(x[7]) + 1e3])


def f_vjp(g, x):
    gx = g[0] * np.cos(x) * C + g[1] * 2 * x
    gx[7] += g[1] * (np.sign(x[7]) if x[7] != 0 else 1.0)
    gx[5] *= 1.001  # the bug
    return (gx,)
'''


def box_spec(folder: Path) -> Path:
    x = np.random.default_rng(3).normal(size=40)
    x[3] = x[7] = 0.0  # the jump's and the kink's place
    values = "[" + ", ".join(repr(float(v)) for v in x) + "]"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "piecy.py").write_text(BOX)
    (folder / "piecy.yaml").write_text(f"""version: 1
functions:
  f: {{python: "piecy:f", vjp: "piecy:f_vjp"}}
experiments:
  - name: auto
    function: f
    inputs: {{x: {values}}}
  - name: coarse-forward
    function: f
    inputs: {{x: {values}}}
    method: forward
    step: 0.01
  - name: small
    function: square
    inputs: {{x: 2.0}}
""")
    return folder / "piecy.yaml"


SMALL = {"min_size": 8, "size": 8}


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """The spec, and its report (CSV text and results) checked whole, in this process."""
    path = box_spec(tmp_path_factory.mktemp("box"))
    with pieces.planned(min_size=10**9):
        results = runner.run_spec(spec_module.load_spec(path))
    return path, results, report.csv_text(results)


def statuses(results) -> dict:
    return {r.name: sorted({(row.index, row.status) for row in r.records if row.status != "pass"}) for r in results}


def test_the_box_has_every_kind_of_entry_the_judge_looks_at_twice(box):
    _, results, _ = box
    found = statuses(results)
    assert found["auto"] == [(3, "unresolved"), (5, "fail"), (7, "kink")]
    assert {s for _, s in found["coarse-forward"]} == {"unresolved", "fail", "kink"}
    coarse = results[1].records
    assert sum(r.reason.startswith("decided by richardson") for r in coarse) > 60  # re-measured, shown coarse


def test_pieces_measured_here_are_the_bytes_of_the_whole(box):
    path, _, whole = box
    with pieces.planned(**SMALL):
        spec = spec_module.load_spec(path)
        cols = pieces.measurer(_columns(spec.experiments[0]), np.arange(40), (0, "x"))
        assert isinstance(cols, pieces.Pieces) and cols.size == 8
        assert report.csv_text(runner.run_spec(spec)) == whole


def _columns(exp):
    from gradrun import verdict

    return verdict.numeric_side(runner.graph_of(exp), exp.points[0].inputs, exp.wrt, "float64", "x")


def test_jobs_2_measures_the_pieces_in_workers_and_writes_the_bytes_of_the_whole(box, tmp_path, monkeypatch):
    """CSV and Parquet; the spec parsed only, as -j alone has it (a loaded one: the Dask test)."""
    path, results, whole = box
    log = tmp_path / "pids"
    monkeypatch.setenv("PIECY_PIDS", str(log))  # workers forked or spawned (after torch is loaded) see it
    ran = []
    original = piecework.run_apart
    monkeypatch.setattr(piecework, "run_apart", lambda spec, k, *a: ran.append(k) or original(spec, k, *a))
    spec = window.parse(path)
    with pieces.planned(**SMALL):
        [(_, got)] = list(parallel.run([(0, spec, [0, 1, 2])], jobs=2))
    assert ran == [0, 1]  # both large checks sent back and measured in pieces
    assert report.csv_text(got) == whole
    assert [r.csv for r in got] == [r.csv for r in _formatted(spec, results)]
    workers = set(log.read_text().split()) - {str(os.getpid())}
    assert len(workers) >= 2  # pieces measured in both workers
    pytest.importorskip("pyarrow")
    report.write_parquet(tmp_path / "whole.parquet", results)
    report.write_parquet(tmp_path / "pieces.parquet", got)
    assert (tmp_path / "pieces.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def _formatted(spec, results):
    from gradrun import csvrows

    schema = parallel.expected_schema(spec, [0, 1, 2])
    for result, rows in zip(results, csvrows.formatted(results, schema)):
        result.csv = rows
    return results


def test_a_worker_that_dies_measuring_a_piece_makes_its_experiment_an_error(box, tmp_path, monkeypatch):
    path, _, _ = box
    folder = tmp_path / "dies"
    box_spec(folder)
    killer = (folder / "piecy.py").read_text().replace(  # dies measuring a piece (not resolving: 2 calls)
        "    jump = float", "    import multiprocessing\n"
                           "    if CALLS[os.getpid()] > 4 and multiprocessing.parent_process() is not None:\n"
                           "        os._exit(3)\n    jump = float")
    (folder / "piecy.py").write_text(killer)
    spec = window.parse(folder / "piecy.yaml")
    ran = []
    original = piecework.run_apart
    monkeypatch.setattr(piecework, "run_apart", lambda spec, k, *a: ran.append(k) or original(spec, k, *a))
    with pieces.planned(**SMALL):
        [(_, got)] = list(parallel.run([(0, spec, [0, 2])], jobs=2))
    assert ran == [0] and got[0].error == "WorkerDied: its worker process died while checking it"
    assert got[1].passed


def test_a_phase_whose_worker_died_once_is_measured_again(box):
    """As a unit's: a worker killed once from outside (the OOM killer, a lost host) costs a rerun;
    only a piece that kills its worker again makes its experiment an ERROR (the test above)."""
    path, results, _ = box
    spec = spec_module.load_spec(path)
    phases = []

    def mapper(where, phase, calls):
        phases.append(phase)
        if len(phases) == 1:
            raise piecework.WorkerDied("its worker process died while checking it")
        return [piecework.measure(spec, job, {}, ()) for job in piecework.jobs(0, where, phase, calls)]

    with pieces.planned(**SMALL):
        got = piecework.run_apart(spec, 0, {}, (), mapper)
    assert got.error is None and phases[0] == phases[1]
    assert [repr(r) for r in got.records] == [repr(r) for r in results[0].records]


def test_a_batched_black_box_is_split_from_BATCHED_times_the_size_in_whole_batches():
    from gradrun.model import Experiment, Point, Settings
    from gradrun.tree import Call, PythonFunction, Var

    def f(x):
        return np.tanh(x) * np.sin(3 * x)

    def vjp(g, x):
        return (g * ((1 - np.tanh(x) ** 2) * np.sin(3 * x) + 3 * np.tanh(x) * np.cos(3 * x)),)

    x = np.random.default_rng(5).normal(size=2048)

    def experiment(batched):
        fn = PythonFunction("f", ("x",), f, vjp, None, False, "", f if batched else None)
        return Experiment("e", Call("f", (Var("x"),)), {"f": fn}, [Point(0, {"x": x})], ["x"],
                          Settings(reduce="sum"))

    min_size = 2048 // pieces.BATCHED
    assert pieces.due(runner.graph_of(experiment(False)), min_size, min_size)
    assert not pieces.due(runner.graph_of(experiment(True)), 2047, min_size)
    exp = experiment(True)
    with pieces.planned(min_size=10**9):
        whole = report.csv_text([runner.run_experiment(exp)])
    with pieces.planned(min_size=min_size, size=8):
        cols = pieces.measurer(_columns(exp), np.arange(2048), (0, "x"))
        assert isinstance(cols, pieces.Pieces) and cols.size % cols.cols.chunk == 0 and cols.size < 2048
        assert report.csv_text([runner.run_experiment(exp)]) == whole

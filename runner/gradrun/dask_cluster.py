"""Units on a Dask distributed cluster (``gradrun[dask]``); imported only for ``--scheduler``.

Workers need not share the spec's folder. Each unit carries a ``SpecSource``:
the spec file's text and the text of every user module loaded from the
spec's folder (the modules it names, and the siblings they import). A worker
writes them into a private folder, in the same layout, and loads the spec
from there, so every function is imported from source on the worker; no
function object is ever pickled. A unit whose worker dies (or whose task
raises) comes back as an ERROR of its experiment, not as a lost run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import parallel, piecework, threads

# Folders whose modules are installed packages, not the user's code: they are not shipped.
INSTALLED = ("site-packages", "dist-packages", ".venv")
MAX_SHIPPED_BYTES = 16 * 2**20
CONNECT_TIMEOUT = "5s"  # to reach the scheduler; a wrong address fails fast


class ClusterError(Exception):
    """No dask installed, no scheduler at the address, or a spec folder too large to ship."""


@dataclass(frozen=True)
class SpecSource:
    """A spec as text, with its user modules: ``files`` maps a path relative to the spec's folder to bytes."""

    name: str  # the spec file's name
    text: bytes
    files: tuple  # ((relative path, bytes), ...), sorted

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.name.encode() + b"\0" + self.text)
        for rel, data in self.files:
            h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()[:20]


def source_of(spec_path) -> SpecSource:
    """The spec file and the user modules this process loaded from its folder."""
    path = Path(spec_path).resolve()
    folder, own = path.parent, Path(__file__).resolve().parent
    files = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py"):
            continue
        file = Path(file).resolve()
        if file.is_relative_to(folder) and not file.is_relative_to(own) \
                and not any(part in INSTALLED for part in file.relative_to(folder).parts):
            files[file.relative_to(folder).as_posix()] = file.read_bytes()
    if sum(map(len, files.values())) > MAX_SHIPPED_BYTES:
        raise ClusterError(f"the modules of {spec_path} exceed {MAX_SHIPPED_BYTES} bytes; "
                           "install them on the workers instead")
    return SpecSource(path.name, path.read_bytes(), tuple(sorted(files.items())))


def _client(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--scheduler needs Dask: pip install 'gradrun[dask]'") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ClusterError(f"no Dask scheduler answers at {address}: {error}") from None


def worker_count(address: str) -> int:
    """How many worker threads the cluster offers now (at least 1)."""
    with _client(address) as client:
        return max(1, sum(client.nthreads().values()))


def execute(address: str, specs: dict, units, task):
    """``(unit, outcome)`` for every unit, as the cluster finishes them (``parallel.work`` on a worker).

    ``specs`` are loaded specs (``Spec``), by position. A worker that dies
    takes every unit queued on it down with it; those units are run again
    alone (``parallel.rescue``), so only what kills its worker again becomes
    an ERROR.
    """
    sources = {n: source_of(spec.path) for n, spec in specs.items()}
    with _client(address) as client:
        def submit(unit, task):
            return client.submit(remote_unit, sources[unit.spec], unit, task, pure=False,
                                 key=f"gradrun-{unit.name}-{unit.start}-{os.urandom(6).hex()}")

        def alone(unit, task):
            [(_, outcome)] = list(_finished(client, {submit(unit, task): unit}))
            return None if outcome is _DIED else outcome

        suspects = []
        for unit, outcome in _finished(client, {submit(u, task): u for u in units}):
            if outcome is _DIED:
                suspects.append(unit)
            else:
                yield unit, outcome
        for unit in suspects:
            yield unit, parallel.rescue(unit, alone, task, "its Dask worker died while checking it")


@contextlib.contextmanager
def piece_mappers(address: str, specs: dict, task):
    """``mapper_for(n, k)``: the mapper of experiment k of spec n's element pieces
    (``pieces.Plan.mapper``), a task per piece on the cluster; this process's threads
    capped to one meanwhile, as the workers' are."""
    sources: dict = {}
    with _client(address) as client, threads.capped(1):
        def mapper_for(n: int, k: int):
            def mapper(where, phase, calls):
                if n not in sources:
                    sources[n] = source_of(specs[n].path)
                futures = [client.submit(remote_piece, sources[n], job, task, pure=False,
                                         key=f"gradrun-piece-{job.input}-{os.urandom(6).hex()}")
                           for job in piecework.jobs(k, where, phase, calls)]
                try:
                    return [future.result() for future in futures]
                except Exception as error:
                    if type(error).__name__ == "KilledWorker":
                        raise piecework.WorkerDied("its Dask worker died while checking it") from None
                    raise

            return mapper

        yield mapper_for


_DIED = object()  # the unit's worker died under it


def _finished(client, futures):
    from distributed import as_completed

    for future in as_completed(futures, loop=client.loop):
        unit = futures[future]
        try:
            yield unit, future.result()
        except Exception as error:  # KilledWorker when its worker died; whatever the task raised
            yield unit, _DIED if type(error).__name__ == "KilledWorker" else parallel.failed(
                unit, f"{type(error).__name__}: {error}")


_LOADED: dict = {}  # on a worker: (SpecSource digest, load options) -> Spec


def remote_unit(source: SpecSource, unit, task):
    """Runs on a Dask worker: the spec from its source (loaded with ``task.load_options``), then the unit."""
    return parallel.work(_loaded(source, task), unit, task)


def remote_piece(source: SpecSource, job, task):
    """Runs on a Dask worker: the spec from its source, then a piece of a large check (``piecework.Job``)."""
    return piecework.measure(_loaded(source, task), job, task.overrides, task.load_options)


def _loaded(source: SpecSource, task):
    key = (source.digest, task.load_options)
    if key not in _LOADED:
        from . import spec as spec_module

        threads.cap_process(1)  # Dask gives each task a thread, and its nanny gives BLAS one too
        _LOADED[key] = spec_module.load_spec(materialize(source), **dict(task.load_options))
    return _LOADED[key]


def materialize(source: SpecSource) -> Path:
    """Write the spec and its modules into a folder of their own; returns the spec file's path there."""
    folder = Path(tempfile.gettempdir()) / f"gradrun-spec-{source.digest}"
    spec_path = folder / source.name
    if spec_path.is_file():
        return spec_path
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    for rel, data in source.files:
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (staging / source.name).write_bytes(source.text)
    try:
        staging.rename(folder)  # whole or not at all; another task may have won the race
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not spec_path.is_file():
            raise
    return spec_path

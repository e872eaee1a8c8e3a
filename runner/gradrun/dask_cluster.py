"""Units on a Dask distributed cluster (``gradrun[dask]``); imported only for ``--scheduler``.

Workers need not share the spec's folder. Each unit carries a ``SpecSource``:
the spec file's text and the text of every user module loaded from the
spec's folder (the modules it names, and the siblings they import), and from
the project's outside it. A worker writes them into a private folder, in the
same layout, and loads the spec from there, so every function is imported
from source on the worker; no function object is ever pickled. A run talks
to the cluster through one client (``connected``); a unit whose worker dies
runs again alone (``gradrun.workerloss``), and a scheduler that goes away
ends the run (``ClusterError``) before any report is written.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import __version__, deadline, parallel, piecework, runner, threads, usercode, workerloss

MAX_SHIPPED_BYTES = 16 * 2**20
LAYOUT = "spec2"  # names a worker's folders of specs; a new layout takes a new name, never an old folder
CONNECT_TIMEOUT = 5  # seconds to reach the scheduler; a wrong address fails fast
WORKERS_TIMEOUT = 30  # seconds to wait for a worker at a scheduler that has none (at the start, or mid-run)
UNFINISHED_NAMED = 5  # experiments a lost cluster's message names
POLL = 2  # seconds between looks at the cluster while its tasks run
PROBE_WAIT = 2  # seconds units wait for every worker's load of the specs (``Cluster._equipped``)
SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")  # Dask's network transports


class ClusterError(Exception):
    """No dask installed, no scheduler at the address (or it died), or a spec folder too large to ship."""


@dataclass(frozen=True)
class SpecSource:
    """A spec as text, with its user modules: ``files`` maps a path relative to the spec's folder to bytes."""

    name: str  # the spec file's name
    text: bytes
    files: tuple  # ((relative path, bytes), ...), sorted
    project: tuple = ()  # the same of the project's modules (working directory) outside the spec's folder

    @functools.cached_property
    def digest(self) -> str:
        h = hashlib.sha256(self.name.encode() + b"\0" + self.text)
        for where, files in (("spec", self.files), ("project", self.project)):
            for rel, data in files:
                h.update(f"{where}/{rel}".encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()[:20]


def source_of(spec_path) -> SpecSource:
    """The spec file and the user modules this process loaded (``usercode.own_files``) from its
    folder, and from the project's (the working directory) outside it."""
    path = Path(spec_path).resolve()
    folder, project = path.parent, Path.cwd().resolve()
    files = _files(folder, lambda file: True)
    outside = _files(project, lambda file: not file.is_relative_to(folder))
    if sum(len(data) for _, data in files + outside) > MAX_SHIPPED_BYTES:
        raise ClusterError(f"the modules of {spec_path} exceed {MAX_SHIPPED_BYTES} bytes; "
                           "install them on the workers instead")
    return SpecSource(path.name, path.read_bytes(), files, outside)


def _files(folder: Path, wanted) -> tuple:
    """((path relative to ``folder``, bytes), ...) of the user's modules loaded from under it."""
    found = {}
    for file in usercode.own_files(folder):
        rel = file.relative_to(folder)
        if wanted(file) and not usercode.INSTALLED_PARTS.intersection(rel.parts):  # a .venv inside it
            found[rel.as_posix()] = file.read_bytes()
    return tuple(sorted(found.items()))


def checked_address(address: str) -> str:
    """``address`` when it reads as a scheduler's address (``tcp://host:port``), else ``ClusterError``."""
    scheme, sep, rest = address.partition("://")
    host, colon, port = rest.rpartition(":")
    if sep and scheme == "inproc":
        raise ClusterError(f"{address!r} is a Dask address inside another process; give the scheduler's "
                           "network address, e.g. tcp://10.0.0.5:8786")
    if not (sep and scheme in SCHEMES and host and colon and port.isdigit() and 0 < int(port) < 65536):
        raise ClusterError(f"{address!r} is not a Dask scheduler's address; give --scheduler (or "
                           "DASK_SCHEDULER_ADDRESS) as tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786 "
                           "(as `dask scheduler` prints it)")
    return address


@contextlib.contextmanager
def connected(address: str, specs: dict):
    """The cluster at ``address`` for one run, through one client, closed however the run ends."""
    checked_address(address)
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--scheduler needs Dask: pip install 'gradrun[dask]'") from None
    if address.startswith(("tls://", "wss://")) and _tls_unset():
        raise ClusterError(f"{address} needs TLS, and Dask's configuration gives this process no certificate; "
                           "set distributed.comm.tls.client (dask config or DASK_DISTRIBUTED__COMM__TLS__...)")
    with _quiet():
        _answers(address)
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"no Dask scheduler answers at {address}: {error}") from None
        except Exception as error:  # whatever else Dask makes of an address it cannot use
            raise ClusterError(f"cannot connect to the Dask scheduler at {address}: "
                               f"{type(error).__name__}: {error}") from None
        cluster = Cluster(address, client, specs)
        try:
            yield cluster
        except BaseException:  # Ctrl-C, a worker that cannot load a spec: what still runs is of no use
            cluster.stop_running()
            raise
        finally:
            client.close(timeout=CONNECT_TIMEOUT)


def _answers(address: str) -> None:
    """``ClusterError`` unless a Dask scheduler answers at ``address`` within ``CONNECT_TIMEOUT``.

    Dask's client waits for ever for the first answer of whatever accepts the
    connection (the dashboard's port, 8787, another service), or reads its
    bytes as a frame length (an allocation of exabytes): gradrun asks for the
    peer's identity itself, under a deadline, before a client is made.
    """
    import asyncio

    from distributed import Security
    from distributed.comm import connect

    async def identity():
        comm = await connect(address, timeout=CONNECT_TIMEOUT, **Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def ask():  # on a thread of its own: the caller may run an event loop already (a notebook)
        return asyncio.run(asyncio.wait_for(identity(), 2 * CONNECT_TIMEOUT))

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            found = thread.submit(ask).result()
    except (OSError, TimeoutError, asyncio.TimeoutError) as error:
        if "Timed out trying to connect" in str(error) or not isinstance(error, TimeoutError):
            tls = " (a scheduler started with --protocol tls wants tls://)" \
                if address.startswith("tcp://") and isinstance(error, OSError) and "reset" in str(error) else ""
            raise ClusterError(f"no Dask scheduler answers at {address}: {error}; start one there "
                               f"(`dask scheduler`) or give its address as it prints it{tls}") from None
        found = error
    except Exception as error:  # bytes that are no Dask message (MemoryError: a frame length of exabytes)
        found = error
    kind = found.get("type") if isinstance(found, dict) else None
    if kind == "Scheduler":
        return
    if kind in ("Worker", "Nanny"):
        raise ClusterError(f"{address} is a Dask {kind.lower()}'s address; give the scheduler's (the address "
                           "the worker was started with, `dask worker tcp://HOST:8786`)")
    said = f"within {2 * CONNECT_TIMEOUT} s" if isinstance(found, TimeoutError) else "as one"
    raise ClusterError(f"something at {address} accepts connections but does not answer as a Dask scheduler "
                       f"{said} (the dashboard's port, 8787, or another service?); give the scheduler's "
                       "address as `dask scheduler` prints it, tcp://HOST:8786 by default")


def _tls_unset() -> bool:
    from distributed import Security

    return Security().get_connection_args("client")["ssl_context"] is None


@contextlib.contextmanager
def _quiet():
    """Dask's own log lines kept off the user's terminal: gradrun says what went wrong itself.
    Each of Dask's loggers has a level of its own (``distributed.client``'s says ERROR)."""
    import logging

    names = ["distributed", *(n for n in list(logging.root.manager.loggerDict) if n.startswith("distributed."))]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class Cluster:
    """A run's units and pieces on a Dask cluster, through one client; each spec's source built once."""

    def __init__(self, address: str, client, specs: dict):
        self.address, self.client, self.specs = address, client, specs
        self._sources: dict = {}
        self.lost = None  # the ClusterError of a scheduler that went away
        self._probed: set = set()  # the load options every worker has loaded the specs with (``_equipped``)
        self._keys: list = []  # of every task submitted, for ``stop_running``
        self._probes: dict = {}  # a worker's load of a spec not looked at yet -> the spec (``_equipped``)

    @functools.cached_property
    def count(self) -> int:
        """How many worker threads the cluster offers now (waiting a while for a first one)."""
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except TimeoutError:
            raise ClusterError(f"the Dask scheduler at {self.address} has no workers "
                               f"(none joined within {WORKERS_TIMEOUT} s); start some with "
                               f"`dask worker {self.address}`") from None
        except Exception as error:
            raise self._lost(error) from None
        self._same_software()
        return max(1, sum(self.client.nthreads().values()))

    def _same_software(self) -> None:
        """``ClusterError`` unless every worker runs this process's gradrun and numpy (``software``):
        other versions would check, but not write the serial run's bytes, or fail in unpickling."""
        try:
            theirs = self.client.run(software)
        except Exception as error:  # a worker without gradrun cannot even load the function
            raise ClusterError(f"the Dask workers at {self.address} cannot run gradrun "
                               f"({type(error).__name__}: {error}); install gradrun[dask] on every worker") from None
        mine = software()
        for worker, found in sorted(theirs.items()):
            if found != mine:
                raise OtherSoftware(worker, found).explained()

    def source(self, n: int) -> SpecSource:
        if n not in self._sources:
            self._sources[n] = source_of(self.specs[n].path)
        return self._sources[n]

    def execute(self, units, task):
        """``(unit, outcome)`` for every unit, as the cluster finishes them (``parallel.work`` on a worker).

        A worker that dies takes every unit queued on it down with it; those
        units are run again alone (``workerloss.rescued``), so only what kills
        its worker again becomes an ERROR.
        """
        self._equipped(task)

        def alone(units, task):  # side by side: the cluster places them
            futures = {self._submit(remote_unit, u.spec, u, task): u for u in units}
            list(self._done(futures, lambda f: futures[f].names))
            return [workerloss.alone(u, f.result, functools.partial(self._died, n=u.spec)) for f, u in futures.items()]

        futures = {self._submit(remote_unit, u.spec, u, task): u for u in units}
        finished = ((futures[f], workerloss.settled(futures[f], f.result, functools.partial(self._died,
                                                                                           n=futures[f].spec)))
                    for f in self._done(futures, lambda f: futures[f].names))
        def points(unit):  # the main process loaded every spec whole
            return [len(self.specs[unit.spec].experiments[k].points) for k in unit.experiments]

        yield from workerloss.rescued(finished, alone, task, DIED, points)

    def _equipped(self, task) -> None:
        """Every worker loads every spec that calls user code, first (``remote_load``; what it loads
        it keeps for the units that follow): one that cannot (the user's code imports a module or an
        extra missing there) stops the run, exit 2, as soon as its load comes back; before, only once
        it happened to be handed a unit of that spec, after the run's other work, or never (whether the
        run stopped then followed which worker took which unit). Units are handed out once every load
        is back, or after ``PROBE_WAIT`` seconds: a worker busy with another client's long task does
        not hold the run back, its load is looked at when it comes (``_check_probes``). Workers that
        join later are checked with their first unit."""
        if task.load_options in self._probed:
            return
        self._probed.add(task.load_options)
        calling = [n for n, spec in self.specs.items()
                   if any(not runner.graph_of(exp).transparent for exp in spec.experiments)]
        try:
            workers = sorted(self.client.nthreads()) if calling else []
        except Exception as error:
            raise self._lost(error) from None
        self._probes.update({self._submit(remote_load, n, None, task, workers=[worker], allow_other_workers=True): n
                             for worker in workers for n in calling})
        until = time.monotonic() + PROBE_WAIT
        while self._probes and time.monotonic() < until:
            self._check_probes()
            time.sleep(0.02)
        self._check_probes()

    def _check_probes(self) -> None:
        """``ClusterError`` where a worker's load of a spec (``_equipped``) came back wanting a module,
        an extra or other software, or the scheduler went away; anything else the units meet again."""
        for future in [f for f in self._probes if f.done()]:
            n = self._probes.pop(future)
            try:
                future.result()
            except Exception as error:
                self._died(error, n=n)

    @contextlib.contextmanager
    def piece_mappers(self, task):
        """``mapper_for(n, k)``: the mapper of experiment k of spec n's element pieces
        (``pieces.Plan.mapper``), a task per piece on the cluster; this process's threads
        capped to one meanwhile, as the workers' are."""
        def mapper_for(n: int, k: int):
            def mapper(where, phase, calls):
                futures = [self._submit(remote_piece, n, job, task) for job in piecework.jobs(k, where, phase, calls)]
                list(self._done(futures, lambda f: (self.specs[n].experiments[k].name,)))
                return workerloss.gathered(futures, functools.partial(self._died, n=n), DIED)

            return mapper

        with threads.capped(1):
            yield mapper_for
        if self.lost is not None:  # a piece's check became an ERROR of the lost connection: no report
            raise self.lost

    def stop_running(self) -> None:
        """Stop this run's tasks that are running on a worker (``stop_tasks``). Releasing a task
        (closing the client) leaves it running in its worker's thread, a user's function that hangs
        for ever, and the tasks of later runs queue behind it. Best effort: the cluster may be gone."""
        if self.lost is not None or not self._keys:
            return
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            asked = thread.submit(self.client.run, stop_tasks, list(self._keys), on_error="ignore")
            with contextlib.suppress(Exception):
                asked.result(timeout=CONNECT_TIMEOUT)

    def _submit(self, function, n: int, what, task, **placed):
        key = f"gradrun-{function.__name__}-{os.urandom(8).hex()}"
        self._keys.append(key)
        try:
            return self.client.submit(function, self.source(n), what, task, software(), pure=False, key=key,
                                      **placed)
        except Exception as error:  # the client closed: the scheduler went away
            raise self._lost(error) from None

    def _done(self, futures, names):
        """``futures`` as they finish; ``ClusterError`` when the cluster has had no worker for
        ``WORKERS_TIMEOUT`` seconds meanwhile (Dask would wait for one for ever) or the scheduler went away.
        ``names(future)``: the experiments a future checks, for the message."""
        finished: queue.Queue = queue.Queue()
        for future in futures:
            future.add_done_callback(finished.put)  # cancelled ones too: a lost scheduler cancels them all
        left, unserved = set(futures), None
        while left:
            self._check_probes()
            try:
                future = finished.get(timeout=POLL)
            except queue.Empty:
                unserved = self._unserved(unserved, lambda: {name for f in left for name in names(f)})
                continue
            left.discard(future)
            unserved = None
            yield future

    def _unserved(self, since, waiting):
        """Since when the cluster has had no worker (None: it has some); ``ClusterError`` past the timeout,
        naming the experiments ``waiting()`` (those whose code may have killed the workers)."""
        try:
            if self.client.nthreads():
                return None
        except Exception as error:
            raise self._lost(error) from None
        now = time.monotonic()
        if since is not None and now - since > WORKERS_TIMEOUT:
            unfinished = sorted(waiting())
            named = ", ".join(unfinished[:UNFINISHED_NAMED]) + (" …" if len(unfinished) > UNFINISHED_NAMED else "")
            raise ClusterError(f"the Dask cluster at {self.address} lost all its workers mid-run and none "
                               f"joined within {WORKERS_TIMEOUT} s; no report was written. Unfinished: {named}. "
                               "Where user code crashes its worker (a segfault, os._exit), run the workers "
                               "under a nanny (`dask worker`'s default, not --no-nanny): they come back, and "
                               "the experiment that kills them is reported as its ERROR")
        return now if since is None else since

    def _died(self, error, n=None) -> bool:
        """Whether a task's error says its worker died (``KilledWorker``); ``ClusterError`` when
        the scheduler itself went away, or a worker cannot load spec ``n`` (a module or an extra
        it lacks): no report can be complete then."""
        if isinstance(error, OtherSoftware):  # a worker that joined after the check above
            raise error.explained() from None
        if isinstance(error, CannotLoad):
            raise ClusterError(error.explained(self.specs[n].path if n in self.specs else error.spec)) from None
        if self.client.status not in ("running", "connecting") or type(error).__name__ == "FutureCancelledError" \
                and "connection" in str(error):
            raise self._lost(error) from None
        return type(error).__name__ == "KilledWorker"

    def _lost(self, error) -> ClusterError:
        self.lost = self.lost or ClusterError(f"the Dask scheduler at {self.address} stopped answering mid-run "
                                              f"({type(error).__name__}: {error}); no report was written")
        return self.lost


DIED = "its Dask worker died while checking it"


class OtherSoftware(Exception):
    """Raised on a worker handed a task by a process that runs other software (``software``): a
    worker that joined after the run's check, or was restarted into another environment."""

    def __init__(self, worker: str, found: tuple):
        super().__init__(worker, found)
        self.worker, self.found = worker, tuple(found)

    def explained(self) -> ClusterError:
        return ClusterError(f"Dask worker {self.worker} runs {_described(self.found)}, this process "
                            f"{_described(software())}; install the same on every worker")


class CannotLoad(Exception):
    """Raised on a worker: a spec that loaded in the main process does not load there (a module
    the user's code imports, or an extra, is not installed on it). Said as exit 2 naming the worker."""

    def __init__(self, worker: str, spec: str, issues: tuple):
        super().__init__(worker, spec, issues)
        self.worker, self.spec, self.issues = worker, spec, issues  # issues: (line, column, path, message)

    def explained(self, spec_path) -> str:
        """What went wrong and what to do, placed in the user's spec file (not the worker's copy)."""
        from .model import Issue

        first = Issue(str(spec_path), *self.issues[0])
        more = f" (and {len(self.issues) - 1} more problem{'s' * (len(self.issues) > 2)})" \
            if len(self.issues) > 1 else ""
        return (f"Dask worker {self.worker} cannot load a spec that loads here: {first}{more}; "
                f"{_missing_hint(first.message)}; no report was written")


def _missing_hint(message: str) -> str:
    import re

    found = re.search(r"No module named '([^'.]+)", message)
    if found is None and "No such file or directory" in message:
        return ("the user's code opens a file that does not travel with the work (only its .py modules do): "
                "put it where every worker reads it at the same path, or load it from a module")
    if found is None:
        return "give every worker the environment of this machine (the same packages)"
    name = found[1]
    extra = {"torch": " (pip install 'gradrun[torch]')", "jax": " (pip install 'gradrun[jax]')"}.get(name, "")
    return (f"install {name} on every worker{extra}; only the user's own modules under the spec's folder "
            "and the project travel with the work")


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:  # not in a Dask task (a test calls remote_unit itself)
        return "(this process)"


@functools.lru_cache(maxsize=1)
def software() -> tuple:
    """(gradrun's version, a digest of its source files, numpy's version) of this process."""
    import numpy

    own = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for file in sorted(own.rglob("*.py")):
        h.update(file.relative_to(own).as_posix().encode() + b"\0" + file.read_bytes())
    return __version__, h.hexdigest()[:12], numpy.__version__


def _described(found: tuple) -> str:
    version, digest, numpy_version = found
    return f"gradrun {version} (source {digest}) with numpy {numpy_version}"


_LOADED: dict = {}  # on a worker: (SpecSource digest, load options) -> ``_load``'s, the LOADED_KEPT last used
LOADED_KEPT = 32  # a long-lived worker of a shared cluster sees spec after spec: their inputs are not kept for ever
# A worker with several threads runs several tasks at once; loading a spec imports its modules
# (``usercode`` puts a module in ``sys.modules`` before running it, and swaps a folder's helpers
# in and out of it), so a task that found a module half-run would see none of its functions.
# One spec is loaded at a time, once per worker process.
_LOADING = threading.Lock()


# A worker of several threads (``dask worker --nthreads N``) runs N tasks at once in one process. A
# serial run calls the user's code from one thread, and much of it keeps state per process: torch's
# forward mode (one dual level at a time), the generator a train-mode module or the user's own code
# re-seeds, a module's caches. So the tasks of specs that call user code run one at a time in a
# process; those of gradrun's own graphs (thread-safe: its chunk threads share them) run alongside.
_USER_CODE = threading.Lock()


@contextlib.contextmanager
def _one_at_a_time(calls_user_code: bool):
    """The body alone among this process's tasks that call user code, where it calls some."""
    if calls_user_code:
        with _USER_CODE:
            yield
    else:
        yield


class Stopped(KeyboardInterrupt):
    """Raised in a task's thread by ``stop_tasks``: the run that sent it has ended. A KeyboardInterrupt,
    as Ctrl-C is in a serial run: neither the user's ``except Exception`` nor gradrun's own handling
    of an experiment's error catches it, and the task ends (``_stoppable`` says so as an Exception)."""


_RUNNING: dict = {}  # on a worker: the key of a task running here -> the thread running it
_STOPPING = threading.Lock()


def stop_tasks(keys) -> list:
    """Runs on each Dask worker (``Client.run``): ``Stopped`` raised in the threads running these tasks,
    when they next run Python (a single call into C that never returns cannot be stopped so)."""
    import ctypes

    stopped = []
    with _STOPPING:
        for key in keys:
            if key in _RUNNING and _RUNNING[key][1] is None:
                ident = _RUNNING[key][0]
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(Stopped))
                _RUNNING[key] = (ident, True)
                stopped.append(key)
    return stopped


def _stoppable(run):
    """``run()`` as a task ``stop_tasks`` can stop: its thread is known by the task's key while it runs."""
    import ctypes

    try:
        from distributed import get_worker

        key = get_worker().get_current_task()
    except Exception:  # not in a Dask task (a test calls remote_unit itself)
        return run()
    try:
        with _STOPPING:
            _RUNNING[key] = (threading.get_ident(), None)
        try:
            return run()
        finally:
            with _STOPPING:
                if _RUNNING.pop(key)[1]:  # a Stopped still pending must not go off in the next task
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)
    except Stopped:
        with _STOPPING:
            _RUNNING.pop(key, None)  # where it went off before its thread was forgotten
        raise RuntimeError("stopped: the gradrun run that sent this task has ended") from None


def remote_unit(source: SpecSource, unit, task, expected: tuple = ()):
    """Runs on a Dask worker: the spec from its source (loaded with ``task.load_options``), then the unit;
    ``OtherSoftware`` where this worker's ``software()`` is not the ``expected`` of the main process."""
    def run():
        spec, calls_user_code = _loaded(source, task, expected)
        with _one_at_a_time(calls_user_code):
            return parallel.work(spec, unit, task)

    return _stoppable(run)


def remote_load(source: SpecSource, _, task, expected: tuple = ()) -> None:
    """Runs on a Dask worker: the spec loaded from its source and kept (``Cluster._equipped``)."""
    _loaded(source, task, expected)


def remote_piece(source: SpecSource, job, task, expected: tuple = ()):
    """Runs on a Dask worker: the spec from its source, then a piece of a large check (``piecework.Job``)."""
    def run():
        spec, calls_user_code = _loaded(source, task, expected)
        with _one_at_a_time(calls_user_code):
            return piecework.measure(spec, job, task.overrides, task.load_options)

    return _stoppable(run)


def _loaded(source: SpecSource, task, expected: tuple = ()) -> tuple:
    """(the spec loaded from its source, whether it calls user code), loaded once per process."""
    if expected and software() != tuple(expected):  # checked at the start, but workers come and go
        raise OtherSoftware(_worker_address(), software())
    key = (source.digest, task.load_options)
    with _LOADING:
        loaded = _LOADED.pop(key) if key in _LOADED else _load(source, task)
        _LOADED[key] = loaded  # the most recently used last
        while len(_LOADED) > LOADED_KEPT:
            del _LOADED[next(iter(_LOADED))]
        return loaded


def _load(source: SpecSource, task):
    from . import spec as spec_module

    threads.cap_process(1)  # Dask gives each task a thread, and its nanny gives BLAS one too
    spec_path = materialize(source)
    options = dict(task.load_options)
    if source.project:  # the project's modules resolve from its copy, not the worker's directory
        project = str(spec_path.parent.parent / "project")
        options["policy"] = replace(options.get("policy", usercode.DEFAULT), project=project)
    try:
        with deadline.loading(task.overrides):
            spec = spec_module.load_spec(spec_path, **options)
        return spec, any(not runner.graph_of(exp).transparent for exp in spec.experiments)
    except spec_module.SpecError as error:  # it loaded in the main process: this worker lacks something
        raise CannotLoad(_worker_address(), source.name, tuple((i.line, i.column, i.path, i.message, i.hint)
                                                               for i in error.issues)) from None


def materialize(source: SpecSource) -> Path:
    """Write the spec and its modules into a folder of their own (``spec/``, and ``project/`` for
    the project's modules); returns the spec file's path there."""
    folder = Path(tempfile.gettempdir()) / f"gradrun-{LAYOUT}-{source.digest}"
    spec_path = folder / "spec" / source.name
    if spec_path.is_file():
        return spec_path
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    for where, files in (("spec", source.files), ("project", source.project)):
        for rel, data in files:
            target = staging / where / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    (staging / "spec").mkdir(exist_ok=True)
    (staging / "spec" / source.name).write_bytes(source.text)
    try:
        staging.rename(folder)  # whole or not at all; another task may have won the race
    except OSError:
        if not spec_path.is_file():  # a folder of that name that is not one of ours: keep our own
            return staging / "spec" / source.name
        shutil.rmtree(staging, ignore_errors=True)
    return spec_path

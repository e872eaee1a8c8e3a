"""Running spec files from Python: ``run_files(paths, options) -> Outcome``.

What ``gradrun SPEC...`` does, without the printing: load every spec (all
the problems of all the files, or nothing runs), select experiments
(``only``), read the baselines, run (in this process, in worker processes,
on a Dask cluster, as one shard, or by merging shards: ``cli_parallel.outcomes``
chooses), write each spec file's report and run record as soon as it is
done (and its baseline or pictures), and compare with the baselines.

Nothing here prints or exits. Progress and the files written are told to
callbacks the caller passes in; the specs' own mistakes come back as
``Outcome.issues`` (nothing was run); a run that cannot be done as asked
raises ``UsageProblem`` (options that do not go together, a selection of
nothing), ``CannotRun`` (a file that cannot be written, no matplotlib, a
cluster or shard files that cannot be used) or ``baseline.BaselineError``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from . import baseline, cli_parallel, deadline, report, selection, usercode
from .baseline import DRIFT_FACTOR
from .drift import Drift
from .limits import MAX_RUN_INPUT_ELEMENTS
from .model import ExperimentResult, Issue, Spec, SpecError, one_line


class UsageProblem(ValueError):
    """Options that select nothing or do not go together; ``option`` names the one at fault, if one is."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class CannotRun(Exception):
    """A run that cannot be carried out: a report or picture that cannot be written, no matplotlib,
    a Dask cluster or shard files that cannot be used."""


@dataclass(frozen=True)
class Written:
    """A file (or folder of pictures) the run wrote: a report, a baseline, pictures."""

    kind: str  # "report", "run record", "baseline" or "pictures"
    path: Path
    count: int = 0  # rows of a report, pictures in the folder


@dataclass(frozen=True)
class RunOptions:
    """How to run: the ``gradrun run`` options, as values.

    ``overrides`` holds settings replacing the spec's in every experiment
    (method, step, rtol, atol, dtype, check). ``progress(label)``, when
    given, makes a ``progress(name, done, total)`` callback with a
    ``close()`` for one spec file (``label``: its stem) or for a parallel
    run (``"units"``). ``on_written(Written)`` hears of each file as it is
    written. ``command`` is recorded in every run record (default: ``sys.argv``).
    """

    out: str | Path = "results"
    report_format: str = "csv"
    only: Optional[str] = None
    overrides: Mapping = field(default_factory=dict)
    baseline: str | Path | None = None
    update_baseline: bool = False
    drift_factor: float = DRIFT_FACTOR
    plot: bool = False
    device: Optional[str] = None
    policy: usercode.Policy = usercode.DEFAULT
    jobs: int = 1
    scheduler: Optional[str] = None
    shard: Optional[tuple] = None  # (I, N): the I-th of N slices
    merge: tuple = ()  # folders of shard files: run nothing, report the whole run
    command: Optional[tuple] = None
    junit: str | Path | None = None  # the JUnit file the caller writes after (write_junit): checked before
    progress: Optional[Callable] = None
    on_written: Optional[Callable] = None


@dataclass
class SpecOutcome:
    """One spec file's part of a run: its results (columns), its baseline file and drifts."""

    path: str
    spec: Spec
    results: list[ExperimentResult]  # one per selected experiment, in spec order
    ran: bool  # False: the runner crashed around the experiments; no report was written
    baseline: Optional[Path] = None  # the baseline file compared with, or written
    drifts: list[Drift] = field(default_factory=list)


@dataclass
class Outcome:
    """What a run found: per spec file, results and drifts; the files written; or the specs' issues."""

    specs: list[SpecOutcome] = field(default_factory=list)  # per spec file that ran, in order
    issues: list[Issue] = field(default_factory=list)  # the specs' problems: when any, nothing ran
    written: list[Written] = field(default_factory=list)  # in the order written
    compared: bool = False  # a baseline was compared with (not written)

    @property
    def results(self) -> list[ExperimentResult]:
        """Every experiment's result, spec file after spec file."""
        return [r for s in self.specs for r in s.results]

    @property
    def drifts(self) -> Optional[list[Drift]]:
        """Every drift from the baselines; None when no baseline was compared."""
        return [d for s in self.specs for d in s.drifts] if self.compared else None

    @property
    def baselines(self) -> dict:
        """spec path (as the spec records it) -> its baseline file."""
        return {s.spec.path: s.baseline for s in self.specs if s.baseline is not None}

    @property
    def passed(self) -> bool:
        """Every spec loaded, every check passed, nothing drifted."""
        return not self.issues and all(r.passed for r in self.results) and not self.drifts


def run_files(paths, options: RunOptions | None = None) -> Outcome:
    """Run the spec files at ``paths``: check, write reports, compare with baselines.

    Reports go to ``out/<spec stem>.csv`` (or ``.parquet``) and
    ``out/<spec stem>.run.json``, each written whole or not at all, as each
    spec file finishes. A spec with problems stops everything before it runs:
    the returned ``Outcome`` then holds only ``issues``.
    """
    o = options or RunOptions()
    with deadline.loading(o.overrides):  # loading probes the user's code: a hang there is a spec problem
        return _run_files(paths, o)


def _run_files(paths, o) -> Outcome:
    where = _where(o)
    if o.only is not None and not o.only.strip():
        raise UsageProblem("an empty pattern selects nothing", option="--only")
    if o.plot:
        plotting()  # no matplotlib: say so before running, not after
    loaded, issues = load_specs(paths, o.policy, o.device, where.workers_resolve)
    if issues:
        return Outcome(issues=issues)
    _check_selection(loaded, o.only)
    stored = _baselines(o, loaded)
    _check_targets(o, loaded, stored)
    outcome = Outcome(compared=o.baseline is not None and not o.update_baseline)
    try:
        for path, spec, results, ran in cli_parallel.outcomes(loaded, dict(o.overrides), o.only, o.progress, where,
                                                              _run_one):
            outcome.specs.append(_finish(o, outcome, path, spec, results, ran, stored.get(path)))
    except cli_parallel.DistributionError as error:
        raise CannotRun(error.message) from None
    except SpecError as error:  # with -j the workers resolve: a problem one finds stops the run
        return Outcome(issues=error.issues)
    return outcome


def _finish(o: RunOptions, outcome: Outcome, path, spec, results, ran, stored) -> SpecOutcome:
    """Write one spec file's reports (and baseline, pictures) and compare it with its baseline."""
    done = SpecOutcome(str(path), spec, results, ran, None if stored is None else stored[0])
    if ran:
        _write_reports(o, outcome, path, spec, results)
    if outcome.compared:
        done.drifts = baseline.compare(stored[1], results, spec.path, o.drift_factor, only=o.only)
    elif o.update_baseline and ran:
        text = baseline.baseline_text(baseline.baseline_data(spec.path, results, spec.sha256))
        _writing(report.atomic_write, done.baseline, text)
        _tell(o, outcome, Written("baseline", done.baseline))
    return done


def _write_reports(o: RunOptions, outcome: Outcome, path, spec, results) -> None:
    from .atomic import together

    out, stem = Path(o.out), Path(path).stem
    target = out / f"{stem}.{o.report_format}"
    record = out / f"{stem}.run.json"
    with together():  # the report and its run record: both new, or (a full disk) both as they were
        _writing(report.write_report, target, results, o.report_format)
        _writing(report.write_run_record, record, spec, results, command=o.command, overrides=dict(o.overrides),
                 only=o.only)
    _tell(o, outcome, Written("report", target, sum(r.rows for r in results)))
    _tell(o, outcome, Written("run record", record))
    if o.plot:
        folder = target.with_name(f"{target.stem}-plots")
        _tell(o, outcome, Written("pictures", folder, len(draw_pictures(target, folder))))


def _check_targets(o: RunOptions, loaded, stored: dict) -> None:
    """Every file the run will write differs from the others and from every file it reads, and
    its folder can be written (``gradrun.targets``); else ``UsageProblem``, before anything runs."""
    from . import shards, targets

    out, planned, folders = Path(o.out), [], []
    for path, _ in loaded:
        stem = Path(path).stem
        planned += [("the report", out / f"{stem}.{o.report_format}", "--out"),
                    ("the run record", out / f"{stem}.run.json", "--out")]
        if o.shard:
            planned.append(("the shard file", out / shards.file_name(path, *o.shard), "--out"))
        if o.update_baseline and path in stored:
            planned.append(("the baseline", stored[path][0], "--baseline"))
        if o.plot:
            folders.append(("the pictures", out / f"{stem}-plots"))
    if o.junit:
        planned.append(("the JUnit file", Path(o.junit), "--junit"))
    reads = [(f"the spec file {path}", path) for path, _ in loaded]
    reads += [(f"the baseline {file}", file) for file, data in stored.values() if data is not None]
    try:
        targets.check(planned, reads, folders)
    except targets.Clash as clash:
        raise UsageProblem(str(clash), clash.option) from None
    except targets.Unwritable as error:
        raise CannotRun(str(error)) from None


def _tell(o: RunOptions, outcome: Outcome, written: Written) -> None:
    outcome.written.append(written)
    if o.on_written is not None:
        o.on_written(written)


def write_junit(path, outcome: Outcome) -> None:
    """Write the run's JUnit XML: a testsuite per spec file, a testcase per experiment (drifts fail it)."""
    _writing(report.write_junit, path, outcome.results, outcome.drifts)


def _where(o: RunOptions) -> cli_parallel.How:
    """Where the results come from, for ``cli_parallel.outcomes``; ``UsageProblem`` for options
    that exclude each other."""
    if o.scheduler and o.jobs > 1:
        raise UsageProblem("-j and --scheduler exclude each other: workers are the cluster's")
    if o.merge and (o.jobs > 1 or o.scheduler or o.shard):
        raise UsageProblem("--merge runs nothing; give it without -j, --scheduler or --shard")
    if o.shard and o.baseline is not None:
        raise UsageProblem("a shard holds part of each spec; compare with --baseline when you --merge")
    load_options = ((("device", o.device),) if o.device is not None else ()) + \
        ((("policy", o.policy),) if o.policy != usercode.DEFAULT else ())
    return cli_parallel.How(o.jobs, o.scheduler, o.shard, tuple(o.merge), Path(o.out), load_options, o.report_format)


def _writing(write, path, *args, **kwargs) -> None:
    try:
        write(path, *args, **kwargs)
    except OSError as error:
        raise CannotRun(f"cannot write {path}: {error.strerror or error}") from error


def _run_one(path, spec, overrides, only, progress) -> tuple:
    """Run one spec in this process; its results and whether they are worth a report."""
    from . import runner

    bar = progress(Path(path).stem) if progress else None
    try:
        results = runner.run_spec(spec, overrides=overrides or None, only=only, progress=bar)
        ran = True
    except Exception as error:  # the runner isolates experiments; this is a crash around them
        results = [ExperimentResult(f"<{Path(path).stem}>", [], error=one_line(f"{type(error).__name__}: {error}"))]
        ran = False
    finally:
        if bar:
            bar.close()
    for result in results:
        result.file = result.file or str(path)
    return results, ran


# --- loading and selecting -------------------------------------------------------


def load_specs(paths, policy: usercode.Policy = usercode.DEFAULT, device: str | None = None,
               parse_only: bool = False) -> tuple:
    """``([(path, Spec)], issues)`` for the files at ``paths``: every issue of every file.

    ``parse_only`` (``-j`` alone): each file only read and parsed (``window.parse``), its
    experiments resolved by the workers. Two files with the same stem would write the
    same report: a ``UsageProblem``.
    """
    from . import spec as spec_module
    from . import window

    unique = list(dict.fromkeys(str(p) for p in paths))
    stems: dict = {}
    for path in unique:  # one report on a file system that ignores case or normalizes Unicode (macOS, Windows)
        stems.setdefault(unicodedata.normalize("NFC", Path(path).stem).casefold(), []).append(path)
    for same in stems.values():
        if len(same) > 1:
            raise UsageProblem(f"{' and '.join(same)} would both write {Path(same[0]).stem}.csv; run them separately")
    if parse_only:
        return each_spec(unique, lambda path: window.parse(path, device=device, policy=policy))
    held = _Held()
    return each_spec(unique, lambda path: held.add(path, spec_module.load_spec(path, device=device, policy=policy)))


class _Held:
    """The input elements of the specs loaded so far: a serial run holds every file's inputs until it
    ends, so files each within ``MAX_FILE_INPUT_ELEMENTS`` (a folder of them) are bounded together."""

    def __init__(self):
        self.elements = 0

    def add(self, path, spec: Spec) -> Spec:
        points = (p for e in getattr(spec, "experiments", ()) for p in getattr(e, "points", ()))
        arrays = {id(v): v for p in points for v in p.inputs.values()}
        self.elements += sum(int(np.size(v)) for v in arrays.values())
        if self.elements > MAX_RUN_INPUT_ELEMENTS:
            raise UsageProblem(f"the spec files come to more than {MAX_RUN_INPUT_ELEMENTS} input elements together "
                               f"at {path}; run them in several commands, or with -j 2 (its workers generate "
                               "each file's inputs themselves)")
        return spec


def each_spec(paths, load) -> tuple:
    """``([(path, load(path))], issues)``: the issues of every file, none given up on early.

    ``load`` raises SpecError or returns a list of issues; any other exception
    is a gradrun bug, reported as an issue of that file rather than a traceback.
    """
    done, issues = [], []
    for path in paths:
        try:
            value = load(path)
        except SpecError as error:
            issues += error.issues
            continue
        except UsageProblem:
            raise
        except MemoryError:  # the machine's limit, not a mistake in the file nor a bug: say so plainly
            issues.append(Issue(path, 1, 1, "", "not enough memory to load the file",
                                "use smaller inputs, or split the file"))
            continue
        except Exception as error:
            issues.append(Issue(path, 0, 0, "", f"could not load: {type(error).__name__}: {error}",
                                "this is a gradrun bug; please report it"))
            continue
        if isinstance(value, list):
            issues += value
        done.append((path, value))
    return done, issues


def _check_selection(loaded, only) -> None:
    if only is not None and not any(selection.chosen(spec.experiments, only) for _, spec in loaded):
        names = sorted({e.name for _, spec in loaded for e in spec.experiments})
        raise UsageProblem(f"--only {only!r} matches no experiment; there are: {', '.join(names)}")


def _baselines(o: RunOptions, loaded) -> dict:
    """spec path -> (its baseline file, the stored baseline or None when updating).

    Every baseline is read before anything runs, so a missing one stops the
    run (``BaselineError``) without a report written.
    """
    if o.baseline is None:
        if o.update_baseline:
            raise UsageProblem("--update-baseline needs --baseline PATH")
        return {}
    if o.update_baseline and o.only:
        raise UsageProblem("--update-baseline rewrites whole baselines; run it without --only")
    chosen = [path for path, spec in loaded if not o.only or selection.chosen(spec.experiments, o.only)]
    files = {path: baseline.baseline_file(o.baseline, path, len(loaded) > 1) for path in chosen}
    return {path: (file, None if o.update_baseline else baseline.load_baseline(file, path))
            for path, file in files.items()}


# --- pictures --------------------------------------------------------------------


def plotting():
    """``gradrun.plot``, once matplotlib is known to import (else ``CannotRun``)."""
    from . import plot as plotting_module

    try:
        plotting_module.require_matplotlib()
    except plotting_module.PlotUnavailable as error:
        raise CannotRun(str(error)) from error
    return plotting_module


def draw_pictures(report_path, out=None) -> list:
    """Draw the pictures of the report at ``report_path`` into ``out`` (default:
    ``<report folder>/<report stem>-plots``); the paths of the PNGs written."""
    plotting_module = plotting()
    report_path = Path(report_path)
    out = Path(out) if out else report_path.with_name(f"{report_path.stem}-plots")
    try:
        return plotting_module.plot_report(plotting_module.read_report(report_path), out)
    except plotting_module.NotAReport as error:
        raise CannotRun(str(error)) from error
    except OSError as error:
        raise CannotRun(f"cannot write pictures into {out}: {error.strerror or error}") from error

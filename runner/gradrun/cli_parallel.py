"""The run command's ``-j``, ``--scheduler``, ``--shard`` and ``--merge``: where results come from.

``outcomes`` hands the run command ``(path, spec, results, ran)`` per spec
file, in order, whichever way the results were obtained: this process one
experiment after another, worker processes, a Dask cluster, this shard's
slice, or the shard files of an earlier sharded run. The run command then
writes reports, baselines, JUnit and the summary from them as always.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from . import parallel, report, selection, shards, threads, window


class Jobs(click.ParamType):
    """``auto`` (one per core) or a positive number of worker processes."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        if value == "auto":
            return threads.cores()
        if not value.isdigit() or int(value) < 1:
            self.fail(f"{value!r} is neither 'auto' nor a positive whole number", param, ctx)
        return int(value)


class Shard(click.ParamType):
    """``I/N``: the I-th of N slices of the run."""

    name = "I/N"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return shards.parse(value)
        except shards.ShardError as error:
            self.fail(str(error), param, ctx)


class DistributionError(click.ClickException):
    """Shard files that do not make a run, or a Dask cluster that cannot be used: exit 2."""

    exit_code = 2


OPTIONS = (
    click.option("-j", "--jobs", type=Jobs(), default=1, show_default=True, metavar="N|auto",
                 help="Run experiments and slices of sweeps in N worker processes on this machine "
                      "('auto': one per core)."),
    click.option("--scheduler", envvar="DASK_SCHEDULER_ADDRESS", metavar="ADDRESS",
                 help="Run them on the Dask cluster at ADDRESS, e.g. tcp://10.0.0.5:8786 "
                      "(default: $DASK_SCHEDULER_ADDRESS; needs gradrun[dask])."),
    click.option("--shard", type=Shard(), metavar="I/N",
                 help="Run only the I-th of N deterministic slices of the experiments (CI matrices); "
                      "also writes DIR/<spec stem>.shard-I-of-N.pickle for --merge."),
    click.option("--merge", "merge", multiple=True, metavar="DIR", type=click.Path(exists=True, file_okay=False),
                 help="Run nothing: take the results from the shard files in these folders (one --merge each) "
                      "and write the reports of the whole run."),
)


def options(command):
    """Decorate the run command with this module's options."""
    for option in reversed(OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True)
class How:
    """Where a run's results come from, as the options said."""

    jobs: int = 1
    scheduler: str | None = None
    shard: tuple | None = None
    merge: tuple = ()
    out: Path = Path("results")
    load_options: tuple = ()  # load_spec's keywords (device, policy), for workers that load a spec themselves
    report_format: str = "csv"  # workers format the CSV rows of what they checked

    @property
    def serial(self) -> bool:
        return self.jobs == 1 and not (self.scheduler or self.shard or self.merge)

    @property
    def workers_resolve(self) -> bool:
        """Whether the main process only parses the specs and the workers resolve them (``-j`` alone):
        Dask ships the user modules the main process loaded, and shards slice by resolved cost."""
        return self.jobs > 1 and not (self.scheduler or self.shard or self.merge)


def scheduler_for(ctx, jobs: int, scheduler):
    """The cluster to run on: an explicit -j outranks one named only by DASK_SCHEDULER_ADDRESS.

    Whether the options go together is ``runfiles.run_files``' to say.
    """
    from_env = ctx.get_parameter_source("scheduler") == click.core.ParameterSource.ENVIRONMENT
    return None if scheduler and jobs > 1 and from_env else (scheduler or None)


def outcomes(loaded, overrides, only, progress, how: How, run_one):
    """``(path, spec, results, ran)`` for each spec file the run reports on, in order.

    ``progress(label)``, when given, makes the progress callback of a run
    (``gradrun.runfiles.RunOptions.progress``); ``run_one`` runs one spec file serially.
    """
    every = [(n, spec, [k for k, e in enumerate(spec.experiments)
                        if selection.selected(e.name, only or None)])
             for n, (_, spec) in enumerate(loaded)]
    chosen = [c for c in every if c[2]]
    paths = {n: path for n, (path, _) in enumerate(loaded)}
    if how.serial:
        for n, spec, _ in chosen:
            yield (paths[n], spec, *run_one(paths[n], spec, overrides, only, progress))
        return
    if how.merge:
        for n, spec, positions in chosen:
            try:
                yield paths[n], spec, shards.gather(spec, positions, how.merge, overrides, only), True
            except shards.ShardError as error:
                raise DistributionError(str(error)) from None
        return
    if how.shard:  # every spec keeps its place, even with nothing in this shard, so a merge finds it
        chosen = shards.slice_of(chosen, *how.shard)
    positions = {n: p for n, _, p in chosen}
    if how.workers_resolve:  # a file --only leaves nothing of is still validated, by the workers
        chosen = [c for c in every if c[2] or isinstance(c[1], window.Parsed)]
    bar = progress("units") if progress else None
    for n, results in _running(chosen, overrides, how, bar):
        if n not in positions:
            continue
        if bar:
            bar.close()  # the bar's line ends; what is written about these results follows
        spec = loaded[n][1]
        if how.shard:
            _write_shard(how, paths[n], spec, positions[n], results, overrides, only)
        yield paths[n], spec, results, True


def _running(chosen, overrides, how, progress):
    from .dask_cluster import ClusterError  # dask itself is imported only with a scheduler

    finished = False
    try:
        yield from parallel.run(chosen, overrides, how.jobs, how.scheduler, progress, dict(how.load_options),
                                how.report_format)
        finished = True
    except ClusterError as error:
        raise DistributionError(str(error)) from None
    finally:
        if progress and not finished:  # a problem a worker found ends the bar's line (outcomes does otherwise)
            progress.close()


def _write_shard(how, path, spec, positions, results, overrides, only) -> None:
    data = shards.shard_bytes(spec, positions, results, *how.shard, overrides, only)
    target = how.out / shards.file_name(path, *how.shard)
    try:
        report.atomic_write(target, [data])
    except OSError as error:
        raise DistributionError(f"cannot write {target}: {error.strerror or error}") from error

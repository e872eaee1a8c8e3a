"""The gradrun command: a thin layer over the library (``runfiles.run_files``, the readers in ``report``).

``gradrun SPEC...`` runs; ``gradrun validate|functions|schema`` are the other
commands. This module is the only place that prints or picks an exit code:
0 every check passed, 1 a check failed or an experiment crashed, 2 a bad spec
or a usage error (``SpecError`` becomes 2 in ``GradrunGroup.invoke``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path

import click

from . import __version__, baseline, cli_parallel, report, runfiles
from .model import CHECKS, DTYPES, METHODS, SpecError, one_line
from .progress import Bar

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT
OVERRIDES = ("method", "step", "rtol", "atol", "dtype", "check", "timeout")


class GradrunGroup(click.Group):
    """A group whose first argument, when it names no command, starts ``run``: ``gradrun SPEC``.

    ``gradrun -- validate`` runs a spec file that happens to be called ``validate``.
    """

    default_command = "run"
    group_options = ("--help", "-h", "--version")

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in self.group_options:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        """Run the command and turn its outcome into the exit status, here and nowhere else.

        A command returns its exit status; a bad spec anywhere becomes its
        issues on stderr and exit 2 (click's usage errors are 2 as well).
        """
        try:
            status = super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: the spec file under way has no new report", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except baseline.BaselineError as error:
            click.echo(f"error: {one_line(error)}", err=True)
            ctx.exit(EXIT_USAGE)
        except SpecError as error:
            for issue in error.issues:
                click.echo(str(issue), err=True)
            files = len({issue.file for issue in error.issues})
            click.echo(
                f"{_plural(len(error.issues), 'problem')} in {_plural(files, 'spec file')}; "
                "nothing was run and no report was written",
                err=True,
            )
            ctx.exit(EXIT_USAGE)
        ctx.exit(status or EXIT_PASS)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class StepType(click.ParamType):
    """``auto`` or a positive number: the absolute finite-difference step."""

    name = "auto|STEP"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, float):
            return value
        try:
            step = float(value)
        except ValueError:
            step = float("nan")
        if not step > 0 or step == float("inf"):
            self.fail(f"{value!r} is neither 'auto' nor a positive number", param, ctx)
        return step


class FiniteFloat(click.FloatRange):
    """A float within a range that is also finite: NaN and infinities are refused at the door."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def code_options(command):
    """--no-code and --allow-module: the user's say over what code a spec may run (never the spec's)."""
    command = click.option(
        "--allow-module", "allow_modules", multiple=True, metavar="NAME", envvar="GRADRUN_ALLOW_MODULE",
        help="Also let specs name code from this installed or standard module (and its submodules); "
             "repeatable. By default only modules under the spec's folder or the current directory.")(command)
    return click.option(
        "--no-code", "--safe", "no_code", is_flag=True, envvar="GRADRUN_NO_CODE",
        help="Safe mode for untrusted specs: refuse every code reference (python:, torch:, jax:); "
             "built-ins and expressions only. --safe is the same.")(command)


def _policy(no_code, allow_modules):
    from . import usercode

    try:
        return usercode.policy_from(no_code, allow_modules)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--allow-module") from None


@contextlib.contextmanager
def stdout_to_stderr():
    """While specs load and run, what anything prints goes to stderr: Python's ``print`` and, at the
    level of file descriptors, C code, subprocesses and worker processes writing to fd 1. So stdout
    holds only gradrun's summary, and no line there comes from a spec's code (a "::" command)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no fd 1 or 2 to speak of (an embedding host): Python's own redirect only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def wants_color(stream=None, environ=None) -> bool:
    """Colour only on a terminal and only without NO_COLOR (https://no-color.org)."""
    stream = sys.stdout if stream is None else stream
    environ = os.environ if environ is None else environ
    return bool(getattr(stream, "isatty", lambda: False)()) and not environ.get("NO_COLOR")


@click.group(cls=GradrunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradrun")
def cli():
    """Check gradients declared in YAML: numeric beside analytic, element by element.

    \b
    gradrun SPEC...            run every experiment (same as `gradrun run SPEC...`)
    gradrun validate SPEC...   check specs without running them
    gradrun functions          list the built-in functions and their derivatives
    gradrun schema             print the JSON Schema of a spec file
    gradrun plot REPORT.csv    draw a report's pictures (needs gradrun[plot])

    Exit status: 0 every check passed, 1 a check failed, 2 a bad spec or usage.
    """


spec_paths = click.argument(
    "specs", nargs=-1, required=True, metavar="SPEC...",
    type=click.Path(exists=True, dir_okay=False),
)


@cli.command()
@spec_paths
@click.option("--out", "-o", default="results", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False),
              help="Folder for <spec stem>.csv (or .parquet) and <spec stem>.run.json.")
@click.option("--report-format", "report_format", type=click.Choice(report.FORMATS), default="csv",
              show_default=True, help="File format of each spec's report: csv, or parquet (typed, smaller).")
@click.option("--only", metavar="PATTERN",
              help="Run only the experiments whose name matches this glob, e.g. 'chain-*'.")
@click.option("--method", type=click.Choice(METHODS),
              help="Use this finite-difference method in every experiment.")
@click.option("--step", type=StepType(),
              help="Use this absolute step (or 'auto') in every experiment.")
@click.option("--rtol", type=FiniteFloat(min=0), metavar="FLOAT",
              help="Hold every element to this relative tolerance.")
@click.option("--atol", type=FiniteFloat(min=0), metavar="FLOAT",
              help="Hold every element to this absolute tolerance.")
@click.option("--dtype", type=click.Choice(DTYPES),
              help="Evaluate every experiment in this dtype.")
@click.option("--check", type=click.Choice(CHECKS),
              help="Check every Jacobian element (full), by random projections (screen), or choose (auto).")
@click.option("--timeout", type=FiniteFloat(min=0, min_open=True), metavar="SECONDS",
              help="Stop a point's check that runs longer (a function that hangs): its experiment is an "
                   "ERROR naming the timeout, the others report as usual.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Form of the summary printed on stdout.")
@click.option("--junit", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write JUnit XML: a testsuite per spec file, a testcase per experiment.")
@click.option("--plot", is_flag=True,
              help="Also draw each report's pictures into DIR/<spec stem>-plots/ (needs gradrun[plot]).")
@click.option("-q", "--quiet", is_flag=True,
              help="Summarise only experiments that did not pass, and the totals.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show every experiment's worst entries, its kinks and notes.")
@click.option("--baseline", "baseline_path", type=click.Path(), metavar="PATH",
              help="Compare with a stored run: PATH/<spec stem>.baseline.json (or PATH itself, "
                   "a .json file, for one SPEC); any drift exits 1.")
@click.option("--update-baseline", is_flag=True,
              help="Write this run as the baseline at --baseline PATH instead of comparing.")
@click.option("--drift-factor", type=FiniteFloat(min=1, min_open=True), default=baseline.DRIFT_FACTOR,
              show_default=True, metavar="FLOAT",
              help="An error that grew more than this many times (and past a quarter of its tolerance) drifts.")
@click.option("--device", metavar="DEVICE",
              help="Run every torch: function on this device (cpu, cuda, cuda:N); comparisons stay on the CPU.")
@code_options
@cli_parallel.options
@click.pass_context
def run(ctx, specs, out, only, fmt, junit, quiet, verbose, plot, baseline_path, update_baseline, drift_factor,
        report_format, device, no_code, allow_modules, jobs, scheduler, shard, merge, **settings):
    """Run each SPEC: check, write reports, summarise.

    Reports go to DIR/<spec stem>.csv (or .parquet) and DIR/<spec stem>.run.json, each
    written whole or not at all. All SPECs are validated before anything
    runs: if any is invalid, every error is printed, nothing runs and no
    report is written (exit 2). What the user's code prints goes to stderr:
    stdout holds only the summary. -j, --scheduler and --shard change where
    experiments run, never what the reports say (docs/parallel.md).
    """
    policy = _policy(no_code, allow_modules)
    options = runfiles.RunOptions(
        out=out, report_format=report_format, only=only, baseline=baseline_path, update_baseline=update_baseline,
        overrides={k: v for k, v in settings.items() if k in OVERRIDES and v is not None},
        drift_factor=drift_factor, plot=plot, device=device, policy=policy, jobs=jobs,
        scheduler=cli_parallel.scheduler_for(ctx, jobs, scheduler), shard=shard, merge=tuple(merge), command=tuple(command_line()),
        junit=junit,
        progress=Bar if sys.stderr.isatty() and not quiet else None, on_written=None if quiet else _tell)
    with stdout_to_stderr(), _library_errors():
        outcome = runfiles.run_files(specs, options)
    if outcome.issues:
        raise SpecError(outcome.issues)
    _summarise(outcome, fmt, -1 if quiet else (1 if verbose else 0), drift_factor)
    if junit:
        with _library_errors():
            runfiles.write_junit(junit, outcome)
    return EXIT_PASS if outcome.passed else EXIT_FAIL


def _summarise(outcome, fmt, verbosity, drift_factor) -> None:
    """The summary on stdout (and the drift table), then GitHub annotations when in GitHub Actions."""
    results, drifts = outcome.results, outcome.drifts
    if fmt == "json":
        click.echo(report.summary_json(results, drifts), nl=False)
    else:
        click.echo(report.summary_table(results, verbosity, color=wants_color()), nl=False)
        if drifts is not None and (drifts or verbosity >= 0):
            click.echo(baseline.drift_table(drifts, outcome.baselines, drift_factor), nl=False)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in report.github_annotations(results, drifts):
            click.echo(line, err=fmt == "json")  # stdout stays pure JSON; the runner reads both


class RunFailed(click.ClickException):
    """A run that could not be carried out (a report that cannot be written, no matplotlib): exit 2."""

    exit_code = EXIT_USAGE


@contextlib.contextmanager
def _library_errors():
    """The library's problems as click's: usage errors, or an error and exit 2."""
    try:
        yield
    except runfiles.UsageProblem as problem:
        if problem.option:
            raise click.BadParameter(one_line(problem), param_hint=problem.option) from None
        raise click.UsageError(one_line(problem)) from None
    except runfiles.CannotRun as error:
        raise RunFailed(one_line(error)) from None


def _tell(written) -> None:
    """A line on stderr for each file the run wrote."""
    path = one_line(written.path)  # a spec's file name may hold a line break or ESC
    if written.kind == "report":
        click.echo(f"wrote {path} ({_plural(written.count, 'row')})", err=True)
    elif written.kind == "baseline":
        click.echo(f"wrote baseline {path}", err=True)
    elif written.kind == "pictures":
        click.echo(f"wrote {_plural(written.count, 'picture')} into {path}", err=True)


def command_line() -> list:
    """The command as the user typed it, as far as ``sys.argv`` tells."""
    program = Path(sys.argv[0]).name if sys.argv else "gradrun"
    head = ["python", "-m", "gradrun"] if program == "__main__.py" else [program]
    return head + sys.argv[1:]


@cli.command()
@spec_paths
@code_options
def validate(specs, no_code, allow_modules):
    """Check each SPEC without running it (exit 0 or 2).

    Schema and meaning both: every error of every file is printed at once.
    A code reference the trust rule refuses is an error at its line.
    """
    from . import spec as spec_module

    policy = _policy(no_code, allow_modules)
    with stdout_to_stderr():
        checked, issues = runfiles.each_spec(list(dict.fromkeys(specs)),
                                             lambda path: spec_module.validate(path, policy))
    if issues:
        raise SpecError(issues)
    for path, _ in checked:
        click.echo(f"{one_line(path)}: ok")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="A table for people, JSON for programs, or the docs page (docs/builtins.md).")
def functions(fmt):
    """List the built-ins with how they are called (keyword arguments), formula and derivative."""
    from . import builtins_doc

    if fmt == "json":
        click.echo(json.dumps(builtins_doc.rows(), indent=2))
        return
    if fmt == "markdown":
        click.echo(builtins_doc.markdown(), nl=False)
        return
    table = [("call", "formula", "derivative")] + [
        (r["call"], r["formula"], r["derivative"] + (f"   (kink at {', '.join(map(str, r['kinks']))})" if r["kinks"] else ""))
        for r in builtins_doc.rows()
    ]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for call, formula, derivative in table:
        click.echo(f"{call.ljust(widths[0])}  {formula.ljust(widths[1])}  {derivative}")


@cli.command()
def schema():
    """Print the JSON Schema of a spec file (draft-07)."""
    from . import spec as spec_module

    click.echo(json.dumps(spec_module.load_schema(), indent=2))


@cli.command("plot")
@click.argument("report_csv", metavar="REPORT.csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", metavar="DIR", type=click.Path(file_okay=False),
              help="Folder for the PNGs.  [default: <report folder>/<report stem>-plots]")
@click.option("-q", "--quiet", is_flag=True, help="Do not list what was written.")
def plot_command(report_csv, out, quiet):
    """Draw a report's pictures: derivative curves, error maps, error against step.

    Reads only the report (CSV, or Parquet by its .parquet suffix; any gradrun
    report, old or new) and writes PNGs:
    <experiment>-curve.png for a sweep of one scalar input,
    <experiment>-error.png for every experiment, and <experiment>-step.png
    for a sweep over step. Needs matplotlib: pip install 'gradrun[plot]'.
    """
    with _library_errors():
        written = runfiles.draw_pictures(report_csv, out)
    if not quiet:
        for path in written:
            click.echo(one_line(path))


def main(argv=None):
    """The console entry point of ``gradrun`` and ``python -m gradrun``."""
    from . import memory

    memory.keep_freed_memory()  # this process is the command's own: numpy's temporaries reuse freed memory
    try:
        cli.main(args=argv, prog_name="gradrun")
    except SystemExit as done:
        if argv is None:  # the command itself, not a caller's process
            _leave_lingering_threads(done.code)
        raise


def _leave_lingering_threads(code) -> None:
    """Exit now, with ``code``, when a thread the user's code started (not a daemon) is still
    running: the reports are written and the summary printed, and Python's exit would wait
    for that thread for ever (a CI job's timeout), as a -j worker's would (``localpool._ended``)."""
    import threading

    if not any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))

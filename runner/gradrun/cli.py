"""The gradrun command: a thin layer over spec loading, the runner and the reports.

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

from . import __version__, baseline, cli_parallel, primitives, report, selection
from .model import CHECKS, DTYPES, METHODS, ExperimentResult, Issue, SpecError, one_line
from .progress import Bar

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT
OVERRIDES = ("method", "step", "rtol", "atol", "dtype", "check")


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
            click.echo(f"error: {error}", err=True)
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


class ReportWriteError(click.ClickException):
    """A report that could not be written (a read-only --out, a full disk): exit 2."""

    exit_code = EXIT_USAGE


def _writing(write, path, *args, **kwargs) -> None:
    try:
        write(path, *args, **kwargs)
    except OSError as error:
        raise ReportWriteError(f"cannot write {path}: {error.strerror or error}") from error


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
        "--no-code", is_flag=True, envvar="GRADRUN_NO_CODE",
        help="Safe mode for untrusted specs: refuse every python: reference; built-ins and expressions only.")(command)


def _policy(no_code, allow_modules):
    from . import usercode

    try:
        return usercode.policy_from(no_code, allow_modules)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--allow-module") from None


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
    overrides = {k: v for k, v in settings.items() if k in OVERRIDES and v is not None}
    policy = _policy(no_code, allow_modules)
    how = cli_parallel.how(ctx, jobs, scheduler, shard, merge, out, baseline_path is not None, device, policy,
                           report_format)
    if only is not None and not only.strip():
        raise click.BadParameter("an empty pattern selects nothing", param_hint="--only")
    if plot:
        _plotting()  # no matplotlib: say so before running, not after
    with contextlib.redirect_stdout(sys.stderr):
        loaded = _load_all(specs, cli_parallel.loader(how, policy, device))
        _check_selection(loaded, only)
        stored = _baselines(baseline_path, update_baseline, loaded, only)
        drifts = None if baseline_path is None or update_baseline else []
        results = _run_all(loaded, stored, drifts, out, only, overrides, quiet, plot, update_baseline, drift_factor,
                           report_format, how)
    if fmt == "json":
        click.echo(report.summary_json(results, drifts), nl=False)
    else:
        verbosity = -1 if quiet else (1 if verbose else 0)
        click.echo(report.summary_table(results, verbosity, color=wants_color()), nl=False)
        if drifts is not None and (drifts or not quiet):
            files = {spec.path: stored[path][0] for path, spec in loaded if path in stored}
            click.echo(baseline.drift_table(drifts, files, drift_factor), nl=False)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in report.github_annotations(results, drifts):
            click.echo(line, err=fmt == "json")  # stdout stays pure JSON; the runner reads both
    if junit:
        _writing(report.write_junit, junit, results, drifts)
    return EXIT_PASS if all(r.passed for r in results) and not drifts else EXIT_FAIL


def _run_all(loaded, stored, drifts, out, only, overrides, quiet, plot, update_baseline, drift_factor,
             report_format, how) -> list:
    """Run every chosen spec, writing its reports (and baseline) as it finishes; its results, in order."""
    show_progress = sys.stderr.isatty() and not quiet
    results = []
    for path, spec, spec_results, ran in cli_parallel.outcomes(loaded, overrides, only, show_progress, how,
                                                                _run_one):
        results += spec_results
        if ran:
            _write_reports(Path(out), path, spec, spec_results, overrides, only, quiet, report_format)
            if plot:
                _write_plots(Path(out) / f"{Path(path).stem}.{report_format}", None, quiet)
        if drifts is not None:
            drifts += baseline.compare(stored[path][1], spec_results, spec.path, drift_factor, only=only)
        elif update_baseline and ran:
            _write_baseline(stored[path][0], spec, spec_results, quiet)
    return results


def _baselines(option, update, loaded, only) -> dict:
    """spec path -> (its baseline file, the stored baseline or None when updating).

    Every baseline is read before anything runs, so a missing one stops the
    run (exit 2) without a report written.
    """
    if option is None:
        if update:
            raise click.UsageError("--update-baseline needs --baseline PATH")
        return {}
    if update and only:
        raise click.UsageError("--update-baseline rewrites whole baselines; run it without --only")
    chosen = [(path, spec) for path, spec in loaded if not only or _matching(spec, only)]
    files = {path: baseline.baseline_file(option, path, len(loaded) > 1) for path, _ in chosen}
    return {path: (file, None if update else baseline.load_baseline(file, path)) for path, file in files.items()}


def _write_baseline(file, spec, results, quiet) -> None:
    data = baseline.baseline_data(spec.path, results, spec.sha256)
    _writing(report.atomic_write, file, baseline.baseline_text(data))
    if not quiet:
        click.echo(f"wrote baseline {file}", err=True)


def _load_all(paths, load) -> list:
    """Load every spec with ``load(path)``, gathering every issue of every file before giving up."""
    unique = list(dict.fromkeys(paths))
    stems = {}
    for path in unique:
        stems.setdefault(Path(path).stem, []).append(path)
    for stem, same in stems.items():
        if len(same) > 1:
            raise click.UsageError(f"{' and '.join(same)} would both write {stem}.csv; run them separately")
    return _each_spec(unique, load)


def _each_spec(paths, load) -> list:
    """``[(path, load(path))]``; raises one SpecError with the issues of every file.

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
        except Exception as error:
            issues.append(Issue(path, 0, 0, "", f"could not load: {type(error).__name__}: {error}",
                                "this is a gradrun bug; please report it"))
            continue
        if isinstance(value, list):
            issues += value
        done.append((path, value))
    if issues:
        raise SpecError(issues)
    return done


def _matching(spec, pattern) -> list:
    return [e.name for e in selection.chosen(spec.experiments, pattern)]


def _check_selection(loaded, only) -> None:
    if only is not None and not any(_matching(spec, only) for _, spec in loaded):
        names = sorted({e.name for _, spec in loaded for e in spec.experiments})
        raise click.UsageError(f"--only {only!r} matches no experiment; there are: {', '.join(names)}")


def _run_one(path, spec, overrides, only, show_progress) -> tuple:
    """Run one spec; returns its results and whether they are worth a report."""
    from . import runner

    bar = Bar(Path(path).stem) if show_progress else None
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


def _write_reports(out, path, spec, results, overrides, only, quiet, fmt="csv") -> None:
    stem = Path(path).stem
    _writing(report.write_report, out / f"{stem}.{fmt}", results, fmt)
    _writing(report.write_run_record, out / f"{stem}.run.json", spec, results, command=command_line(),
             overrides=overrides, only=only)
    if not quiet:
        rows = sum(r.rows for r in results)
        click.echo(f"wrote {out / (stem + '.' + fmt)} ({_plural(rows, 'row')})", err=True)


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
    with contextlib.redirect_stdout(sys.stderr):
        checked = _each_spec(list(dict.fromkeys(specs)), lambda path: spec_module.validate(path, policy))
    for path, _ in checked:
        click.echo(f"{path}: ok")


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


class PlotError(click.ClickException):
    """No matplotlib, or a CSV that is not a gradrun report: exit 2."""

    exit_code = EXIT_USAGE


def _plotting():
    """gradrun.plot, once matplotlib is known to import."""
    from . import plot as plotting

    try:
        plotting.require_matplotlib()
    except plotting.PlotUnavailable as error:
        raise PlotError(str(error)) from error
    return plotting


def _write_plots(csv_path, out, quiet) -> list:
    """Draw the pictures of the report at csv_path into out (default: <csv folder>/<stem>-plots)."""
    plotting = _plotting()
    csv_path = Path(csv_path)
    out = Path(out) if out else csv_path.with_name(f"{csv_path.stem}-plots")
    try:
        written = plotting.plot_report(plotting.read_report(csv_path), out)
    except plotting.NotAReport as error:
        raise PlotError(str(error)) from error
    except OSError as error:
        raise ReportWriteError(f"cannot write pictures into {out}: {error.strerror or error}") from error
    if not quiet:
        click.echo(f"wrote {_plural(len(written), 'picture')} into {out}", err=True)
    return written


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
    written = _write_plots(report_csv, out, quiet=True)
    if not quiet:
        for path in written:
            click.echo(str(path))


def main(argv=None):
    """The console entry point of ``gradrun`` and ``python -m gradrun``."""
    cli.main(args=argv, prog_name="gradrun")

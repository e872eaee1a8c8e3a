"""pytest collects gradrun spec files: one test per experiment.

Registered as the ``gradrun`` entry point of ``pytest11``, so installing
gradrun is enough::

    pytest experiments/chain.yaml          # one spec file
    pytest experiments/                    # every spec file below a folder
    pytest -k matrix experiments/          # pytest's own selection works

Collection is opt-in, so that a project's ordinary ``pytest`` run is not
changed by YAML files that happen to lie around (or by a corpus of invalid
specs kept as test data). A ``.yaml``/``.yml`` file is collected when

- it is named on the command line (whatever it holds), or
- it lies below a folder named on the command line, outside the ini
  ``testpaths`` folders, and looks like a spec (top-level ``version:`` and
  ``experiments:`` keys), or
- it matches a glob of the ini option ``gradrun_specs`` (relative to the
  rootdir, e.g. ``experiments/*.yaml``) and looks like a spec.

Code a spec names follows the CLI's trust rule (see docs/security.md); the
ini options ``gradrun_allow_modules`` (a list) and ``gradrun_no_code`` (true:
the safe mode) are the plugin's ``--allow-module`` and ``--no-code``.

An item runs its experiment exactly as ``gradrun SPEC`` does and fails when
the CLI would call it FAIL or ERROR, showing the same worst entries. An
invalid spec is a collection error listing every ``file:line:column`` issue.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

SUFFIXES = (".yaml", ".yml")
_SPEC_KEYS = (re.compile(r"^version\s*:", re.M), re.compile(r"^experiments\s*:", re.M))


def pytest_addoption(parser):
    parser.addini("gradrun_specs", type="linelist", default=[],
                  help="gradrun: globs (relative to the rootdir) of spec files to collect as tests")
    parser.addini("gradrun_allow_modules", type="linelist", default=[],
                  help="gradrun: modules specs may name code from beyond their folder and the project")
    parser.addini("gradrun_no_code", type="bool", default=False,
                  help="gradrun: safe mode, refuse every code reference in specs")


def code_policy(config):
    """The trust rule's policy from the ini file, as ``--no-code``/``--allow-module`` give it to the CLI."""
    from .usercode import policy_from

    return policy_from(config.getini("gradrun_no_code"), config.getini("gradrun_allow_modules"))


def pytest_configure(config):
    """Without paths on the command line, pytest walks ``testpaths``; add the ``gradrun_specs`` matches."""
    globs = config.getini("gradrun_specs")
    if globs and config.args_source != pytest.Config.ArgsSource.ARGS:
        root = Path(config.rootpath)
        found = sorted({str(p) for g in globs for p in root.glob(g) if p.suffix in SUFFIXES and looks_like_spec(p)})
        config.args = list(config.args) + [p for p in found if p not in config.args]


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix not in SUFFIXES:
        return None
    config = parent.config
    explicit = _explicit_paths(config)
    if file_path in explicit or (_chosen(config, file_path, explicit) and looks_like_spec(file_path)):
        return SpecFile.from_parent(parent, path=file_path)
    return None


def looks_like_spec(path: Path) -> bool:
    """Top-level ``version:`` and ``experiments:`` keys in the first 64 KiB of a regular file
    that a symlink does not lead out of the project (``gradrun.reading``): a named pipe below
    a folder pytest was given held the collection forever, and ``x.yaml -> ~/.netrc`` was read."""
    from .reading import Unreadable, read_head

    try:
        head = read_head(path, 65536).decode("utf-8", errors="replace")
    except (OSError, Unreadable):
        return False
    return all(key.search(head) for key in _SPEC_KEYS)


def _explicit_paths(config) -> set:
    """The paths named on the command line (not the ini ``testpaths`` pytest falls back to)."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return set()
    base = Path(config.invocation_params.dir)
    return {(base / arg.split("::")[0]).resolve() for arg in config.args}


def _chosen(config, path: Path, explicit: set) -> bool:
    root = Path(config.rootpath)
    try:
        relative = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        relative = None
    if relative is not None and any(fnmatch.fnmatch(relative, g) for g in config.getini("gradrun_specs")):
        return True
    testpaths = [(root / t).resolve() for t in config.getini("testpaths")]
    folders = [p for p in explicit if p.is_dir() and not any(_within(p, t) for t in testpaths)]
    return any(_within(path.resolve(), folder) for folder in folders)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class SpecFile(pytest.File):
    """A spec file; its experiments are the items."""

    def collect(self):
        from .model import SpecError
        from .spec import load_spec

        try:
            spec = load_spec(self._shown_path(), policy=code_policy(self.config))
        except SpecError as error:
            raise self.CollectError("\n".join(str(issue) for issue in error.issues)) from None
        for experiment in spec.experiments:
            yield ExperimentItem.from_parent(self, name=experiment.name, experiment=experiment)

    def _shown_path(self) -> Path:
        """The path as the CLI would print it: relative to where pytest was started, when below it."""
        try:
            return self.path.relative_to(Path(self.config.invocation_params.dir))
        except ValueError:
            return self.path


class ExperimentFailed(Exception):
    """An experiment that did not pass; carries its result for the report."""

    def __init__(self, result):
        super().__init__(result.name)
        self.result = result


class ExperimentItem(pytest.Item):
    """One experiment of a spec, checked as ``gradrun SPEC`` checks it."""

    def __init__(self, *, experiment, **kwargs):
        super().__init__(**kwargs)
        self.experiment = experiment
        self.result = None

    def runtest(self):
        from .runner import run_experiment

        self.result = run_experiment(self.experiment)
        if not self.result.passed:
            raise ExperimentFailed(self.result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ExperimentFailed):
            from .report import experiment_block

            return "\n".join(experiment_block(excinfo.value.result))
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, max(self.experiment.line - 1, 0), f"{self.path.name}::{self.name}"

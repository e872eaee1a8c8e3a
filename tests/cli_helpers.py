"""What the command-line tests share: the environment, a CliRunner call, a spec file written.

The ``project`` fixture (an empty project folder, the current directory) is in conftest.py.
"""

import os
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from gradrun import cli

# the environment without what changes the command's output (GitHub annotations) or pytest's
ENV = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "PYTEST_ADDOPTS")}

# pytest as a process; hypothesis (a dev dependency) registers a plugin that imports it whole (a second)
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]


def invoke(*args, env=None):
    return CliRunner().invoke(cli.cli, [str(a) for a in args], prog_name="gradrun", env=env)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path

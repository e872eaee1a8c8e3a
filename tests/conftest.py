"""Hypothesis runs the same examples on every run unless asked to explore.

CI must not pass or fail by chance: the default profile is derandomized.
`HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest tests/test_properties.py`
draws fresh examples each run (how the fixed @examples in that file were found).

The slowest files are collected first: under `-n 2 --dist loadfile` (the README's
test command) each worker takes the next file in collection order, and the files
that run the example specs in subprocesses or start Dask clusters, left for last,
ran alone on one worker while the other was done.
"""

import os

import pytest

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# the files of this suite that take longest (test_parallel's and test_parallel_dask's slowest
# tests took 10-23 s each in one process)
SLOWEST_FILES = ("test_parallel.py", "test_parallel_dask.py", "test_jax_fresh.py", "test_cluster10.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in SLOWEST_FILES)  # stable: each file's order kept


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder, the current directory (the trust rule's second root)."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder

"""Hypothesis runs the same examples on every run unless asked to explore.

CI must not pass or fail by chance: the default profile is derandomized.
`HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest tests/test_properties.py`
draws fresh examples each run (how the fixed @examples in that file were found).
"""

import os

import pytest

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder, the current directory (the trust rule's second root)."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder

"""``--only``: which experiments a run selects, matched in this one place.

A pattern is a shell-style glob (``fnmatch``, case-sensitive) on experiment
names; ``None`` selects every experiment.
"""

from __future__ import annotations

import fnmatch


def selected(name: str, only: str | None) -> bool:
    """Whether the experiment called ``name`` runs under the ``--only`` pattern ``only``."""
    return only is None or fnmatch.fnmatchcase(name, only)


def chosen(experiments, only: str | None) -> list:
    """The experiments (anything with a ``name``) that ``only`` selects, in order."""
    return [e for e in experiments if selected(e.name, only)]

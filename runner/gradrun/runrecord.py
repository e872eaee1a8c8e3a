"""The run record, ``<stem>.run.json``: versions, the spec's hash, seeds and timings of one run."""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_write
from .columns import PASSING
from .readings import _jsonable, verdict


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_record(spec, results, command=None, overrides=None, only=None) -> dict:
    """What a run was: versions, the spec's hash, seeds, per-experiment timings, the command."""
    seeds = {e.name: e.settings.seed for e in spec.experiments}
    return {
        "gradrun": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "spec": str(spec.path),
        "spec_sha256": spec.sha256 or file_sha256(spec.path),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv if command is None else command),
        "overrides": dict(overrides or {}),
        "only": only,
        "passed": all(r.passed for r in results),
        "seconds": sum(r.seconds for r in results),
        "experiments": [
            {
                "name": r.name,
                "verdict": verdict(r),
                "seed": seeds.get(r.name),
                "check": r.check,
                "seconds": r.seconds,
                "elements": r.rows,
                "failures": r.rows - r.count(*PASSING),
                "kinks": r.count("kink"),
                "error": r.error,
                "notes": list(r.notes),
            }
            for r in results
        ],
    }


def write_run_record(path, spec, results, command=None, overrides=None, only=None) -> None:
    """Write ``<stem>.run.json`` beside the CSV, atomically."""
    record = run_record(spec, results, command, overrides, only)
    atomic_write(path, json.dumps(_jsonable(record), indent=2) + "\n")

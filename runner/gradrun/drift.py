"""A drift: one regression of a run against its baseline, and how it is sorted and described.

``gradrun.baseline`` finds drifts (``compare``); the writers of summaries,
JUnit and annotations (``gradrun.report``) only read them, through this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Kinds, in the order the table lists them (the worst first).
KINDS = ("now-errors", "missing-experiment", "new-experiment", "now-fails", "grew",
         "missing-element", "new-element")


@dataclass(frozen=True)
class Drift:
    """One regression of a run against its baseline."""

    kind: str  # one of KINDS
    file: str  # the spec file, as given on the command line
    experiment: str
    line: int = 0  # the experiment's line in the spec (or in the baseline's spec, when missing now)
    element: str = ""  # "" for a whole experiment
    point: int = 0
    input: str = ""
    index: int = 0
    output: int = 0
    before: float = float("nan")  # abs_error in the baseline
    after: float = float("nan")  # abs_error now
    tolerance: float = float("nan")  # the bound the element is held to now
    status_before: str = ""
    status_after: str = ""
    message: str = ""

    @property
    def growth(self) -> float:
        """after / before (inf when the baseline error was 0)."""
        if math.isnan(self.before) or math.isnan(self.after):
            return float("nan")
        return self.after / self.before if self.before > 0 else (float("inf") if self.after > 0 else 1.0)

    def as_dict(self) -> dict:
        return asdict(self) | {"growth": self.growth}


def regressed(drifts) -> set:
    """``(file, experiment)`` of every experiment with a drift."""
    return {(d.file, d.experiment) for d in drifts}


def for_experiment(drifts, file: str, name: str) -> list:
    return sorted((d for d in drifts if d.file == file and d.experiment == name), key=severity)


def severity(d: Drift) -> tuple:
    """Sort key: the worse kind first, then the error closest to (or furthest past) its tolerance."""
    closeness = d.after / d.tolerance if d.tolerance and d.tolerance > 0 else d.after
    closeness = -1.0 if math.isnan(closeness) else closeness
    return (KINDS.index(d.kind), -closeness, d.experiment, d.point, d.index, d.output)


def sci(x: float) -> str:
    return "-" if math.isnan(x) else "%.2e" % x


def describe(d: Drift) -> str:
    """One line naming a drift, e.g. ``x at point 3: abs_error 1.1e-16 -> 5.0e-09 (tol 1.0e-08)``."""
    if not d.element:
        return f"{d.experiment}: {d.kind}" + (f": {d.message}" if d.message else "")
    where = d.element + (f" (output {d.output})" if d.output > 0 else "") + (f" at point {d.point}" if d.point else "")
    status = f", {d.status_before or '-'} -> {d.status_after or '-'}" if d.status_before != d.status_after else ""
    return (f"{d.experiment}: {d.kind} {where}: abs_error {sci(d.before)} -> {sci(d.after)}"
            f" (tol {sci(d.tolerance)}){status}")

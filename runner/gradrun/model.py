"""The records gradrun passes around: a resolved spec going in, results coming out.

A spec file, once loaded and checked, becomes a ``Spec`` of ``Experiment``s
whose inputs are already generated and whose sweeps are already expanded into
``Point``s. Running an experiment produces ``Record``s, one per checked
Jacobian element; CSV, console, JUnit, baselines and plots all read these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional


from .tree import Expr

METHODS = ("forward", "backward", "central", "central4", "complex", "richardson", "auto")
DTYPES = ("float64", "float32")
CHECKS = ("full", "screen", "auto")


@dataclass(frozen=True)
class Settings:
    """How one experiment is checked; every key may come from `defaults:`."""

    method: str = "auto"
    step: Any = "auto"  # "auto" or a positive float, absolute
    rtol: Optional[float] = None  # None: follows from the dtype (see gradrun.verdict)
    atol: Optional[float] = None
    dtype: str = "float64"
    check: str = "auto"
    seed: int = 0
    reduce: Optional[str] = None  # None or "sum"
    order: int = 1  # 1: the Jacobian; 2: the Hessian of a scalar output (see gradrun.hessian)

    def updated(self, **changes) -> "Settings":
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in known})


@dataclass
class Point:
    """One sweep point: the value of every input, and the swept coordinates."""

    index: int
    inputs: dict  # name -> np.ndarray (float64)
    coords: dict = field(default_factory=dict)  # swept name -> value (inputs, step, method)
    settings: Optional[Settings] = None  # set when the sweep ranges over step or method


@dataclass
class Experiment:
    name: str
    expr: Expr  # in terms of the input names
    functions: dict  # name -> ExprFunction | PythonFunction, every one the expr may call
    points: list  # of Point
    wrt: list  # input names, in order
    settings: Settings
    file: str = ""
    line: int = 0
    column: int = 0
    description: str = ""  # the source form: function, chain or expr, for reports

    def settings_at(self, point: Point) -> Settings:
        return point.settings or self.settings


@dataclass
class Spec:
    path: str
    experiments: list
    sha256: str = ""
    defaults: Settings = field(default_factory=Settings)


@dataclass
class Record:
    """One checked element of a Jacobian: d output[output] / d input[index]."""

    experiment: str
    point: int
    input: str
    index: int
    element: str
    output: int
    value: float
    numeric: float
    analytic: float
    abs_error: float
    rel_error: float
    passed: bool
    status: str  # pass | fail | kink | nan | unresolved (not a pass)
    tolerance: float
    method: str
    step: float
    output_value: float = float("nan")  # the primal output f(x)[output] at this point
    error_estimate: float = float("nan")
    numeric_minus: float = float("nan")  # one-sided (backward) difference, for kinks
    numeric_plus: float = float("nan")  # one-sided (forward) difference, for kinks
    analytic_forward: float = float("nan")  # by the user's JVP, when a function has both JVP and VJP
    dtype: str = "float64"
    check: str = "full"
    coords: dict = field(default_factory=dict)
    # second order: the entry d2 f / d input[index] d input2[index2]; first order leaves them empty
    order: int = 1
    input2: str = ""
    index2: int = -1
    element2: str = ""
    gradient: float = float("nan")  # second order: the first derivative d f / d input[index] at the point
    reason: str = ""  # why an unresolved entry could not be decided (docs/pass-rule.md)

    def as_row(self) -> dict:
        """The record as one flat CSV row: its fields, then ``sweep_<name>`` per swept coordinate."""
        row = dict(self.__dict__)  # the fields in order; every value is a plain scalar but coords
        coords = row.pop("coords")
        for k, v in coords.items():
            row[f"sweep_{k}"] = v
        return row


@dataclass
class ExperimentResult:
    """Everything one experiment produced, or the error that stopped it."""

    name: str
    records: list
    seconds: float = 0.0
    error: Optional[str] = None  # an internal error, reported as this experiment's failure
    check: str = "full"
    notes: list = field(default_factory=list)  # e.g. what a screen can see
    file: str = ""
    line: int = 0

    @property
    def passed(self) -> bool:
        return self.error is None and all(r.passed or r.status == "kink" for r in self.records)

    @property
    def failures(self) -> list:
        return [r for r in self.records if not (r.passed or r.status == "kink")]

    def dataframe(self):
        """The records as a pandas DataFrame, one row per checked element."""
        import pandas as pd

        return pd.DataFrame([r.as_row() for r in self.records])

    def worst(self, n: int = 5) -> list:
        """The n records furthest outside their tolerance, failures first."""
        def badness(r):
            if r.status == "nan":
                return float("inf")
            return r.abs_error / r.tolerance if r.tolerance > 0 else r.abs_error

        return sorted(self.records, key=badness, reverse=True)[:n]


@dataclass(frozen=True)
class Issue:
    """One problem found in a spec file, with its place."""

    file: str
    line: int
    column: int
    path: str  # inside the document, e.g. experiments[2].inputs.X
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.path or '<document>'}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class SpecError(Exception):
    """A spec file that cannot run; carries every issue found, sorted by place."""

    def __init__(self, issues):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.column))
        super().__init__("\n".join(str(i) for i in self.issues))

"""The records gradrun passes around: a resolved spec going in, results coming out.

A spec file, once loaded and checked, becomes a ``Spec`` of ``Experiment``s
whose inputs are already generated and whose sweeps are already expanded into
``Point``s. Running an experiment produces an ``ExperimentResult``: columns,
one row per checked Jacobian element (``gradrun.columns``); CSV, Parquet,
console, JUnit, baselines and plots all read these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np

from .columns import PASSING, SWEEP_PREFIX, Columns, among

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
    integers: tuple = ()  # inputs given as {integer: ...} (labels, masks): passed, never differentiated
    sweep_points: int = 0  # points of the whole sweep (a -j unit holds a slice of them); 0: len(points)
    # the graph built when the spec was loaded (gradrun.graph): shapes, complex safety and reach come
    # from it, and the runner walks it; None for an experiment made by hand, built when it runs
    graph: Any = field(default=None, repr=False, compare=False)

    def settings_at(self, point: Point, overrides: dict | None = None) -> Settings:
        """The settings a point is checked with: its own or the experiment's, then the
        command line's ``overrides`` (those not None)."""
        settings = point.settings or self.settings
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        return settings.updated(**given) if given else settings


@dataclass
class Spec:
    path: str
    experiments: list
    sha256: str = ""
    defaults: Settings = field(default_factory=Settings)


@dataclass
class ExperimentResult:
    """Everything one experiment produced, as columns, or the error that stopped it.

    ``elements`` holds one row per checked Jacobian element, ``projections``
    one row per screening direction ``u . J v`` (see ``gradrun.columns``).
    ``blocks`` says how the two interleave in a report: per (point, input),
    in order, how many projection rows and then element rows. ``shapes``
    gives each input's shape, from which element names are derived.
    """

    name: str
    elements: Columns = field(default_factory=Columns)
    seconds: float = 0.0
    error: Optional[str] = None  # an internal error, reported as this experiment's failure
    check: str = "full"
    notes: list = field(default_factory=list)  # e.g. what a screen can see
    file: str = ""
    line: int = 0
    projections: Columns = field(default_factory=Columns)
    blocks: list = field(default_factory=list)  # [(projection rows, element rows)] per (point, input)
    shapes: dict = field(default_factory=dict)  # input name -> shape
    csv: Optional[tuple] = field(default=None, repr=False)  # (report.schema_key, bytes): its CSV rows, formatted where it was checked

    def __post_init__(self):
        if not isinstance(self.elements, Columns):  # ExperimentResult(name, []) for a result with no rows
            self.elements = Columns(self.elements or None)
        if not self.blocks:
            self.blocks = [(len(self.projections), len(self.elements))]

    @classmethod
    def from_checks(cls, name: str, checks, **fields) -> "ExperimentResult":
        """A result from the points' checks (``verdict.PointCheck``s), in order."""
        return cls(name, Columns.concat([c.elements for c in checks]),
                   projections=Columns.concat([c.projections for c in checks]),
                   blocks=[b for c in checks for b in c.blocks],
                   shapes={k: v for c in checks for k, v in c.shapes.items()}, **fields)

    @classmethod
    def from_rows(cls, name: str, rows, **fields) -> "ExperimentResult":
        """A result from report rows (dicts, as ``records`` gives them): for hand-made results.

        A row with ``index`` -1 is a screen's projection; ``coords`` (a dict) give
        its sweep columns; ``passed`` is derived from ``status``, not read.
        """
        rows = [dict(getattr(r, "__dict__", r)) for r in rows]
        for r in rows:
            r.pop("passed", None)
            for k, v in (r.pop("coords", None) or {}).items():
                r[SWEEP_PREFIX + k] = v
        tables = {}
        for projection in (True, False):
            mine = [r for r in rows if (r.get("index", 0) < 0) == projection]
            names = list(dict.fromkeys(k for r in mine for k in r))
            data = {k: np.array([r.get(k) for r in mine]) for k in names}
            if projection and mine:
                data["direction"] = np.arange(len(mine))
            tables[projection] = Columns({k: v.astype(object) if v.dtype.kind == "U" else v
                                          for k, v in data.items()})
        return cls(name, tables[False], projections=tables[True], **fields)

    @property
    def rows(self) -> int:
        """How many rows its report has: elements and projections."""
        return len(self.elements) + len(self.projections)

    @property
    def passed(self) -> bool:
        return self.error is None and all(among(t["status"], PASSING, t.labels("status")).all()
                                          for t in (self.projections, self.elements) if len(t))

    def count(self, *statuses) -> int:
        """Rows (elements and projections) whose status is one of ``statuses``."""
        return int(sum(among(t["status"], statuses, t.labels("status")).sum()
                       for t in (self.projections, self.elements) if len(t)))

    def worst(self, n: int = 5) -> list:
        """The n rows furthest outside their tolerance, kinks aside (``readings.worst_entries``)."""
        from .readings import worst_entries

        return worst_entries(self, n)

    @property
    def failures(self) -> list:
        """The rows that do not pass, as row objects (see ``records``)."""
        return [r for r in self.records if not r.passed]

    @property
    def records(self) -> list:
        """Every report row as an object with attributes: for tests and small results only.

        Readers of large results use ``elements``, ``projections`` or ``dataframe()``.
        """
        from .layout import report_rows

        return [Row(r) for r in report_rows(self)]

    def dataframe(self):
        """The report's rows as a pandas DataFrame: the CSV's columns and values."""
        from .layout import report_table

        return report_table([self]).to_pandas()


class Row(SimpleNamespace):
    """One report row, its columns as attributes (``coords``: the swept coordinates)."""

    def __init__(self, row: dict):
        super().__init__(**row)
        self.coords = {k[len(SWEEP_PREFIX):]: v for k, v in row.items()
                       if k.startswith(SWEEP_PREFIX) and v is not None}

    def as_row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "coords"}


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
        text = f"{self.file}:{self.line}:{self.column}: {self.path or '<document>'}: {clipped(self.message)}"
        return one_line(f"{text} ({clipped(self.hint)})" if self.hint else text)


# Characters shown escaped, so that text from a spec, a file name, a baseline or user code is one
# line in a log, and neither a CI runner (GitHub's "::error::", "::add-mask::") nor a terminal (ESC,
# 8-bit CSI) reads it as a command: C0 and C1 controls, line and paragraph separators, lone
# surrogates (which no UTF-8 stream can carry), and every format character (Unicode's Cf: the bidi
# overrides and marks that reorder what is shown, zero-width spaces and joiners, a byte order mark,
# soft hyphens, tag characters), which are invisible, so that 'x\u200b' is not shown as 'x'.
_FORMAT = ((0xad, 0xad), (0x600, 0x605), (0x61c, 0x61c), (0x6dd, 0x6dd), (0x70f, 0x70f), (0x890, 0x891),
           (0x8e2, 0x8e2), (0x180e, 0x180e), (0x200b, 0x200f), (0x202a, 0x202e), (0x2060, 0x2064),
           (0x2066, 0x206f), (0xfeff, 0xfeff), (0xfff9, 0xfffb), (0x110bd, 0x110bd), (0x110cd, 0x110cd),
           (0x13430, 0x1343f), (0x1bca0, 0x1bca3), (0x1d173, 0x1d17a), (0xe0001, 0xe0001), (0xe0020, 0xe007f))
_CONTROL = ({c: f"\\x{c:02x}" for c in (*range(32), *range(0x7f, 0xa0))}
            | {10: "\\n", 13: "\\r", 9: "\\t"}
            | {c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0xd800, 0xe000))}
            | {c: (f"\\u{c:04x}" if c <= 0xffff else f"\\U{c:08x}") for a, b in _FORMAT for c in range(a, b + 1)})


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``, ``\\x1b``, ``\\u202e``)."""
    return str(text).translate(_CONTROL)


MAX_SHOWN = 500  # characters of one message or hint: a long value from a spec is not echoed whole


def clipped(text: str, limit: int = MAX_SHOWN) -> str:
    """``text``, or its first ``limit`` characters and how many there were."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class SpecError(Exception):
    """A spec file that cannot run; carries every issue found, sorted by place."""

    def __init__(self, issues):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.column))
        super().__init__("\n".join(str(i) for i in self.issues))

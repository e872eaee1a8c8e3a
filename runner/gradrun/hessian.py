"""Checking second derivatives: every Hessian entry (or Hessian-vector products), numeric beside analytic.

The numeric side differentiates the exact analytic gradient once more, column
by column: column j of the Hessian is the derivative of the gradient along
x_j, taken with ``gradrun.numeric``'s stencils, step rules and Richardson
extrapolation, exactly as first order differentiates f (central differences
of an exact gradient are far more accurate than second differences of f).
The analytic side is ``gradrun.second_order``'s forward-over-reverse HVP.

The pass rule per entry H[i, j] is first order's, with the gradient in the
place of f: ``atol + rtol * |numeric| + 2 * error_estimate + floor``, where
atol is the dtype's ``atol_scale`` times the largest entry of Hessian row i,
the estimate holds the method's own (Richardson's) plus the round-off of the
gradient differences, and the floor is ``ROUNDOFF_FLOOR * eps * |gradient| /
max(1, |x_j|)``. A first pass by central differences (``auto``) is confirmed by
Richardson before an entry is called a failure. A column whose step reached a
kink of a primitive (relu at 0) is a ``kink`` where it disagrees.

Where the analytic side is a black box (a user's ``hvp:``), the analytic
Hessian's symmetry is a check of its own: rows with ``check: symmetry`` compare
H[i, j] (analytic) with H[j, i] (in the numeric column).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import engine, numeric, second_order
from .hessian_screen import screen_hessian
from .columns import Columns, constant, shared_strings, sweep_columns
from .layout import element_name
from .limits import MAX_AUTO_FULL_WORK, MAX_REPORT_ROWS
from .model import Settings
from .verdict import PointCheck, errors

FULL_LIMIT = 250_000  # Hessian entries up to which check: auto checks every entry
CONFIRM = "richardson"
SHRINK_TRIES = 11  # a column's step and ten steps shrinking by 4 toward a domain edge
NUMPY_DTYPES = {"float64": np.float64, "float32": np.float32}


class HessianError(ValueError):
    """A point whose second derivatives cannot be checked as asked."""


class Problem:
    """One point's second-order problem: the graph, the point, the flat layout of the wrt inputs."""

    def __init__(self, graph, inputs: dict, wrt, settings: Settings):
        self.graph, self.wrt, self.settings = graph, list(wrt), settings
        dtype = NUMPY_DTYPES[settings.dtype]
        self.values = {k: np.asarray(v, dtype=dtype).astype(np.float64) for k, v in inputs.items()}
        self.vals = engine.evaluate(graph, self.values)
        if self.vals[graph.output].size != 1:
            raise HessianError("order: 2 needs a scalar output (add reduce: sum to check the sum's Hessian)")
        second_order.check_orderable(graph)
        self.x = np.concatenate([np.ravel(self.values[n]) for n in self.wrt])
        self.owner = np.concatenate([np.full(np.size(self.values[n]), k) for k, n in enumerate(self.wrt)])
        self.local = np.concatenate([np.arange(np.size(self.values[n])) for n in self.wrt])
        # each input's own scale, as at first order: a step of 6e-6 measures another function
        # at an input of 1e-5 (the norm of a tiny vector), however flat it looks there
        self.floor = np.concatenate([np.full(np.size(self.values[n]), numeric.step_floor(self.values[n]))
                                     for n in self.wrt])
        self.g0 = second_order.gradient(graph, self.values, self.wrt)
        self.eps = numeric.EPS["float64"]
        self.magnitude = max(float(np.max(np.abs(self.g0), initial=0.0)), self.eps)
        # per input: one input's gradient entries share its intermediates (1 - sigmoid(31) is
        # computed from 1, whatever the entry shows), another input's (weights of 1e-5 beside
        # data of 1e4) need not
        self.input_magnitude = self.per_input_max(np.abs(self.g0)[None, :])[0]
        # the smallest input's RMS (nonzero entries; 1 if none): a screen's step along a direction
        # over every input moves each by as much, and weights of 1e-3 beside data of 1e3 want
        # a step sized for the weights
        self.smallest_scale = min((float(np.sqrt(np.mean(a[a > 0] ** 2))) if np.any(a > 0) else 1.0
                                   for a in (np.abs(np.ravel(self.values[n])) for n in self.wrt)), default=1.0)
        kinky = [(i, node) for i, node in enumerate(graph.nodes) if node.op and engine.primitives.get(node.op).kinks]
        self.kink_args = [(i, a, k) for i, node in kinky if graph.needs[i]
                          for a in node.args for k in engine.primitives.get(node.op).kinks]

    def per_input_max(self, a):
        """(K, N) -> (K, N): each entry's largest value over the entries of its own input."""
        out = np.zeros(np.shape(a))
        for k in range(len(self.wrt)):
            mine = self.owner == k
            out[:, mine] = np.max(a[:, mine], axis=1, keepdims=True, initial=0.0)
        return out

    @property
    def size(self) -> int:
        return len(self.x)

    def moved(self, offsets_by_row):
        """The inputs moved by each row of (B, N) offsets, one dict per row."""
        out = []
        for off in offsets_by_row:
            vals, at = dict(self.values), 0
            for name in self.wrt:
                size = np.size(self.values[name])
                vals[name] = self.values[name] + off[at:at + size].reshape(np.shape(self.values[name]))
                at += size
            out.append(vals)
        return out

    def delta_along(self, directions):
        """A numeric.py delta function: (offsets (B,)) -> gradient deltas (B, N) along each direction,
        and which rows reached or crossed a kink of a primitive."""
        def delta(offsets):
            rows, kinks = [], []
            for values in self.moved(np.asarray(offsets)[:, None] * directions):
                vals = engine.evaluate(self.graph, values)
                grads = engine.vjp(self.graph, vals, np.ones_like(vals[self.graph.output]))
                rows.append(np.concatenate([np.ravel(grads[n]) for n in self.wrt]) - self.g0)
                kinks.append(self.kinked(vals))
            return np.stack(rows), np.array(kinks)
        return delta

    def kinked(self, vals) -> bool:
        """Whether the point evaluated as ``vals`` is across (or on) a kink of a primitive from this one."""
        for i, a, k in self.kink_args:
            base, new = np.real(self.vals[a]) - k, np.real(vals[a]) - k
            if np.any((base * new <= 0) & (base != new)):
                return True
        return False

    def unit(self, j):
        """The direction of x_j alone, as one row."""
        e = np.zeros((1, self.size))
        e[0, j] = 1.0
        return e

    def numeric_columns(self, method, step, columns):
        """Hessian columns by differences of the gradient: (value (N, C), estimate, kink (C,), step (C,))."""
        h = numeric.steps(method, self.x[columns], step, self.eps, self.floor[columns])
        parts = [self.column(method, h[c:c + 1], j) for c, j in enumerate(columns)]
        value = np.concatenate([p[0] for p in parts]).T
        est = np.concatenate([p[1] for p in parts]).T
        kink = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, bool)
        used = np.concatenate([np.atleast_1d(p[3]) for p in parts]) if parts else np.zeros(0)
        return value, est, kink, used

    def column(self, method, h, j):
        """Column j by ``numeric.derivative`` at step h, shrunk by 4 (at most ten times) while a
        step reaches where the gradient is not finite though it is finite here (x**3.5 at
        x = 1e-6, whose input's other entries set a step of 6e-6)."""
        for _ in range(SHRINK_TRIES):
            part = numeric.derivative(self.delta_along(self.unit(j)), method, h)
            if np.isfinite(part[0]).all() or not np.isfinite(self.g0).all():
                break
            h = h / 4
        return part

    def entry_magnitude(self, num, columns, noise=None):
        """F[i, j] (N, C), the size of the numbers a step along x_j moves in gradient entry i:
        the largest gradient entry of i's input, |H[i, j] x_j| and, where measured, the
        gradient's round-off noise along x_j over eps (first order's F with the gradient in
        the place of f). Never another input's gradient: entries of 1e6 in one input must not
        hide an error of 1e-5 in the Hessian block of another."""
        moved = np.where(np.isfinite(num), np.abs(num), 0.0) * np.abs(self.x[columns])[None, :]
        mags = np.maximum(np.maximum(self.input_magnitude[:, None], moved), self.eps)
        return mags if noise is None else np.maximum(mags, noise / self.eps)

    def column_noise(self, columns):
        """The round-off noise (N, C) of the gradient along each column's x_j (``numeric.noise``)."""
        h = numeric.steps("central", self.x[columns], "auto", self.eps, self.floor[columns])
        return np.stack([numeric.noise(self.delta_along(self.unit(j)), h[c:c + 1])[0]
                         for c, j in enumerate(columns)], axis=1)

    def tolerance(self, num, est, ana, method, used, columns, dtype, mags):
        """The pass bound of every entry of the columns (see the module's docstring)."""
        scale = np.max(np.where(np.isfinite(num), np.abs(num), 0), axis=1, keepdims=True)
        scale = np.maximum(scale, np.max(np.where(np.isfinite(ana), np.abs(ana), 0), axis=1, keepdims=True))
        noise = np.zeros(num.shape)
        for m in set(method):
            at = method == m
            noise[:, at] = numeric.roundoff(m, self.eps, mags[:, at], used[at])
        total = np.nan_to_num(est, nan=0.0) + noise
        floor = numeric.ROUNDOFF_FLOOR * numeric.EPS[dtype] * mags / np.maximum(1.0, np.abs(self.x[columns]))
        return numeric.tolerance(scale, num, total, dtype, self.settings) + floor


def resolve_method(method: str) -> str:
    if method == "complex":
        raise HessianError("method 'complex' of the gradient is the analytic side itself at order: 2 "
                           "(choose central, central4, richardson or auto)")
    return "central" if method == "auto" else method


def check_columns(prob: Problem, columns, tick=None) -> dict:
    """Every entry of Hessian columns ``columns``, numeric beside analytic: a dict of (N, C) arrays."""
    settings = prob.settings
    columns = np.asarray(columns, dtype=np.int64)
    method = resolve_method(settings.method)
    ana = second_order.hessian_columns(prob.graph, prob.values, prob.wrt, columns)
    ana32 = None
    if settings.dtype == "float32":
        ana32 = second_order.hessian_columns(prob.graph, prob.values, prob.wrt, columns, np.float32)
    num, est, kink, used = prob.numeric_columns(method, settings.step, columns)
    methods = np.full(len(columns), method, dtype=object)

    noise = np.zeros(num.shape)

    def verdict(estimate=None):
        estimate = est if estimate is None else estimate
        mags = prob.entry_magnitude(num, columns, noise)
        tol = prob.tolerance(num, estimate, ana, methods, used, columns, "float64", mags)
        bad = ~(np.abs(ana - num) <= tol)
        if ana32 is not None:  # float32 code's own round-off follows the largest gradient entry
            mags32 = np.maximum(mags, prob.magnitude)
            tol = prob.tolerance(num, estimate, ana32, methods, used, columns, "float32", mags32)
            bad |= ~(np.abs(ana32 - num) <= tol)
        return bad, tol

    bad, tol = verdict()
    again = np.flatnonzero(bad.any(axis=0))
    if len(again) and method != CONFIRM:  # a failure never rests on a rough difference
        r_num, r_est, r_kink, r_used = prob.numeric_columns(CONFIRM, "auto", columns[again])
        num[:, again], est[:, again], used[again] = r_num, r_est, r_used
        kink[again] |= r_kink
        methods[again] = CONFIRM
        bad, tol = verdict()
    again = np.flatnonzero(bad.any(axis=0))
    if len(again):  # what |g_i| does not show: the numbers the gradient cancels (1 - sigmoid(30))
        noise[:, again] = prob.column_noise(columns[again])
        bad, tol = verdict()
    # a step across a kink makes the difference, and its error estimate, meaningless: an entry
    # there that disagrees beyond round-off is a kink, never a pass on a swollen estimate
    rough, _ = verdict(np.zeros(est.shape))
    at_kink = kink[None, :] & rough
    shown = ana if ana32 is None else ana32
    # where f itself is undefined (log of a negative number, say) no derivative is checked
    finite = np.isfinite(num) & np.isfinite(shown) & bool(np.isfinite(prob.vals[prob.graph.output]).all())
    status = np.where(~finite, "nan", np.where(at_kink, "kink", np.where(bad, "fail", "pass")))
    if tick is not None:
        tick("hessian", len(columns), len(columns))
    return {"columns": columns, "numeric": num, "analytic": shown, "analytic64": ana, "tolerance": tol,
            "error_estimate": est, "status": status, "method": methods, "step": used}


def symmetry(prob: Problem, res: dict) -> dict:
    """H[i, j] beside H[j, i] of the analytic Hessian, over the checked square block (i < j)."""
    cols = res["columns"]
    block = res["analytic64"][cols, :]  # (C, C): rows and columns both over cols
    i, j = np.triu_indices(len(cols), k=1)
    upper, lower = block[i, j], block[j, i]
    scale = np.maximum(np.abs(block).max(initial=0.0), np.finfo(float).tiny)
    t = numeric.TOLERANCES["float64"]
    floor = numeric.ROUNDOFF_FLOOR * prob.eps * prob.magnitude
    tol = t.atol_scale * scale + t.rtol * np.abs(upper) + floor
    status = np.where(~np.isfinite(upper - lower), "nan", np.where(np.abs(upper - lower) <= tol, "pass", "fail"))
    return {"rows": cols[j], "columns": cols[i], "numeric": lower, "analytic": upper, "tolerance": tol,
            "status": status}


def check_point(graph, inputs: dict, wrt, settings: Settings, *, experiment: str = "", point: int = 0,
                coords=None, tick=None, follow_up_rows: int = MAX_REPORT_ROWS) -> PointCheck:
    """The Hessian of the graph's scalar output at one point, checked as ``settings.check`` says, as
    columns; a failed screen's columns are checked entry by entry within ``follow_up_rows`` rows."""
    with np.errstate(all="ignore"):
        prob = Problem(graph, inputs, wrt, settings)
        shapes = {name: tuple(np.shape(prob.values[name])) for name in prob.wrt}
        if prob.size == 0:
            return PointCheck(Columns(), Columns(), [], shapes)  # an empty Hessian has no entry to check
        rows = Rows(prob, experiment, point, coords or {})
        mode = settings.check
        if mode == "auto":
            mode = "full" if prob.size ** 2 <= FULL_LIMIT else "screen"
        columns = np.arange(prob.size)
        projections = Columns()
        if mode == "screen":
            found = screen_hessian(prob, np.random.default_rng([settings.seed, point]))
            projections = rows.projections(found)
            if not found.bad.any():
                return PointCheck(Columns(), projections, [(len(projections), 0)], shapes)
            columns = found.localized if found.localized is not None else columns
            if not _follow_up_fits(prob, len(columns), follow_up_rows):
                return PointCheck(Columns(), projections, [(len(projections), 0)], shapes)  # the screen stands
        res = check_columns(prob, columns, tick)
        if mode == "screen" and np.isin(res["status"], ("pass", "kink")).all():
            # a projection whose entries all pass one by one disagreed by the directional
            # difference's own error, as at first order (docs/pass-rule.md, Screens): a NaN where
            # its step along v crossed a domain edge an entry's own step does not (x**3.5 at 1e-6),
            # or a difference of 2e-11 where the analytic projection is 1e-16
            found = replace(found, bad=np.zeros_like(found.bad))
            projections = rows.projections(found)
        parts = [rows.entries(res, mode)]
        if not graph.transparent:
            parts.append(rows.entries(symmetry(prob, res), "symmetry"))
        elements = Columns.concat(parts)
        return PointCheck(elements, projections, [(len(projections), len(elements))], shapes)


def _follow_up_fits(prob: Problem, count: int, rows: int) -> bool:
    """Whether ``count`` Hessian columns a failed screen points at may be checked entry by
    entry: within ``rows`` (the point's share of one experiment's) and the work auto allows a full check
    (a column is a gradient's difference: about two evaluations and their pullbacks). A
    screen that could not localize over a million elements fell back to every column: a
    (10^6, 10^6) Hessian, 7 TiB, and four million rows at two thousand elements."""
    elements = sum(np.size(v) for v in prob.vals)
    return count * prob.size <= rows and count * 2 * elements <= MAX_AUTO_FULL_WORK


class Rows:
    """Columns of one point's second-order check: both coordinates of every entry."""

    def __init__(self, prob: Problem, experiment: str, point: int, coords: dict):
        self.prob, self.experiment, self.point, self.coords = prob, experiment, point, coords
        names = [element_name(name, np.shape(prob.values[name]), int(j))
                 for name in prob.wrt for j in range(np.size(prob.values[name]))]
        self.names = np.array(names, dtype=object)  # by flat position over the wrt inputs
        self.inputs = np.array(prob.wrt, dtype=object)[prob.owner]

    def entries(self, res: dict, check: str) -> Columns:
        """One row per entry H[i, j]: input/index/element name i, input2/index2/element2 name j."""
        prob = self.prob
        num, ana, tol, status = (np.atleast_2d(res[k]) for k in ("numeric", "analytic", "tolerance", "status"))
        columns = np.asarray(res["columns"], dtype=np.int64)
        if res.get("rows") is None:  # every row i of each column, column by column
            r, c = np.tile(np.arange(num.shape[0]), len(columns)), np.repeat(np.arange(len(columns)), num.shape[0])
            i = r
        else:
            r, c = np.zeros(len(columns), dtype=np.int64), np.arange(len(columns))
            i = np.asarray(res["rows"], dtype=np.int64)
        j = columns[c]
        n, k = num[r, c].astype(np.float64), len(c)
        numeric_, analytic_ = n, ana[r, c].astype(np.float64)
        abs_error, rel_error = errors(numeric_, analytic_)
        f = float(np.real(prob.vals[prob.graph.output]).ravel()[0])
        data = {
            "experiment": constant(self.experiment, k), "point": constant(self.point, k),
            "input": self.inputs[i], "index": prob.local[i].astype(np.int64), "element": self.names[i],
            "output": constant(0, k), "value": prob.x[i].astype(np.float64), "numeric": numeric_,
            "analytic": analytic_, "abs_error": abs_error, "rel_error": rel_error,
            "status": shared_strings(status[r, c]), "tolerance": tol[r, c].astype(np.float64),
            "method": shared_strings(np.asarray(res["method"])[c]) if "method" in res else constant("symmetry", k),
            "step": np.asarray(res["step"], dtype=np.float64)[c] if "step" in res else constant(np.nan, k),
            "output_value": constant(f, k),
            "error_estimate": (np.asarray(res["error_estimate"], dtype=np.float64)[r, c] if "error_estimate" in res
                               else constant(np.nan, k)),
            "dtype": constant(prob.settings.dtype, k), "check": constant(check, k), "order": constant(2, k),
            "input2": self.inputs[j], "index2": prob.local[j].astype(np.int64), "element2": self.names[j],
            "gradient": np.asarray(prob.g0, dtype=np.float64)[i],
        }
        return Columns(data | sweep_columns(self.coords, k))

    def projections(self, found) -> Columns:
        """One row per screening direction: u . H v, numeric beside analytic."""
        k = len(found.numeric)
        num, ana = np.asarray(found.numeric, dtype=np.float64), np.asarray(found.analytic, dtype=np.float64)
        abs_error, rel_error = errors(num, ana)
        directions = np.arange(k)
        data = {
            "experiment": constant(self.experiment, k), "point": constant(self.point, k), "input": constant("*", k),
            "direction": directions, "element": np.array([f"u{d}.H.v{d}" for d in directions], dtype=object),
            "numeric": num, "analytic": ana, "abs_error": abs_error, "rel_error": rel_error,
            "status": shared_strings(np.where(found.bad, "fail", "pass")),
            "tolerance": np.asarray(found.tolerance, dtype=np.float64), "method": constant(CONFIRM, k),
            "step": constant(float(found.step), k), "dtype": constant(self.prob.settings.dtype, k),
            "order": constant(2, k), "input2": constant("*", k), "index2": constant(-1, k),
            "element2": np.array([f"v{d}" for d in directions], dtype=object),
        }
        return Columns(data | sweep_columns(self.coords, k))

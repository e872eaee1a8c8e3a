"""Checking one point: numeric beside analytic, element by element, with a verdict.

The pass rule, the kink rule and the status ``unresolved`` are written once,
with their reasoning, in docs/pass-rule.md; ``check_input`` follows it:
measure (the spec's method and step, else complex step or a central
difference at each element's own step), judge (``judge.judge``), measure
again as well as gradrun can where that fails or is too uncertain
(``measure.remeasure``), then classify (``judge.classify``: a kink only with
``measure.kink_evidence``). ``_refuse_unmeasurable`` makes an empty
Jacobian, or user code that is not deterministic, an error of the point.

float32: the graph runs in float32 for the analytic gradient; the numeric
reference is computed in float64 at the same (float32-rounded) point, the
analytic code is run in float64 too, and an element passes when the float64
analytic is within the float64 tolerance (formula errors are caught at
float64 sensitivity) and the float32 analytic within the float32 tolerance
(float32 round-off never fails correct code).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import engine, judge, measure, numeric, screen
from .model import Record, Settings


ROUNDOFF_FLOOR = numeric.ROUNDOFF_FLOOR
tolerance = numeric.tolerance

WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

NUMPY_DTYPES = {"float64": np.float64, "float32": np.float32}


class CheckError(ValueError):
    """A point that cannot be checked as asked (e.g. complex step through user code)."""


def resolve_method(method: str, graph: engine.Graph) -> tuple:
    """(first-pass method, "richardson" when auto chose it, else None: kept for callers)."""
    if method == "auto":
        return ("complex" if graph.complex_safe else "central"), "richardson"
    if method == "complex" and not graph.complex_safe:
        raise CheckError("method 'complex' needs every function in the graph to be complex-safe "
                         "(mark a Python function complex_safe: true if it is, or choose another method)")
    return method, None


def element_names(name: str, shape: tuple, columns=None) -> dict:
    """Readable names of elements (``X[0,1]``, or ``x`` for a scalar), by flat index."""
    size = int(np.prod(shape))
    columns = np.arange(size) if columns is None else np.asarray(columns)
    if not shape:
        return {int(j): name for j in columns}
    if len(columns) == size:  # every element, in C order: the index strings by product
        labels = itertools.product(*[[str(i) for i in range(d)] for d in shape])
        return dict(zip(range(size), (f"{name}[{','.join(t)}]" for t in labels)))
    coords = np.unravel_index(columns, shape)
    return {int(j): f"{name}[{','.join(map(str, c))}]" for j, c in zip(columns.tolist(), zip(*(k.tolist() for k in coords)))}


class _Columns:
    """The numeric side of one input's Jacobian, filled chunk by chunk."""

    def __init__(self, graph, vals, name, eps, tick=None):
        self.graph, self.vals, self.name, self.eps, self.tick = graph, vals, name, eps, tick
        self.cache: dict = {}  # what complex steps measured, shared by every chunk
        self.x = vals[graph.inputs[name]].ravel()
        self.floor = numeric.step_floor(self.x)
        if graph.transparent and self.x.size:  # a probe row tells how wide sparse deltas grow
            _, _, width = engine.perturb(graph, vals, name, [0], np.array([0.0]))
        else:  # a user's function sees whole arrays
            width = max(v.size for v in vals)
        self.chunk = max(1, engine.MEMORY_CAP // max(width, 1))


    def run(self, fn, idx):
        """Apply ``fn(delta, rows, at)`` chunk by chunk over element indices ``idx``;
        ``at`` is the chunk's slice of ``idx`` (for per-element arrays given alongside).

        Chunks of gradrun's own graphs go to a thread per core (numpy releases
        the GIL in its loops); user Python functions run on one thread.
        """
        def one(at):
            rows = idx[at]

            def delta(offsets):
                d, k, _ = engine.perturb(self.graph, self.vals, self.name, rows, offsets, self.cache)
                return d, k

            with np.errstate(all="ignore"):  # overflow and NaN are reported per element, not warned
                return fn(delta, rows, at)

        chunks = [slice(start, start + self.chunk) for start in range(0, len(idx), self.chunk)] or [slice(0, 0)]
        outs = []

        def collect(results):
            for at, out in zip(chunks, results):
                outs.append(out)
                if self.tick is not None:
                    self.tick(self.name, min(at.stop, len(idx)), len(idx))

        if len(chunks) > 1 and self.graph.transparent and WORKERS > 1:
            with ThreadPoolExecutor(WORKERS) as pool:
                collect(pool.map(one, chunks))
        else:
            collect(map(one, chunks))
        return [np.concatenate(parts, axis=0) for parts in zip(*outs)]

    def auto_steps(self, method, idx):
        return numeric.steps(method, self.x[idx], "auto", self.eps, self.floor)

    def derivative(self, method, step, idx):
        """``method`` at ``step`` (auto: each element's own): (value, estimate, kink, step)."""
        def fn(delta, rows, at):
            return numeric.derivative(delta, method, numeric.steps(method, self.x[rows], step, self.eps, self.floor))

        return self.run(fn, idx)

    def at(self, method, h, idx):
        """``method`` at the steps h, one per element (Richardson: one level): as ``derivative``."""
        def fn(delta, rows, at):
            if method == "richardson":
                return numeric.richardson_level(delta, h[at])
            return numeric.derivative(delta, method, h[at])

        return self.run(fn, idx)

    def truncation(self, method, h, value, idx):
        def fn(delta, rows, at):
            return (numeric.truncation_estimate(delta, method, h[at], value[at]),)

        return self.run(fn, idx)[0]

    def one_sided(self, h, idx):
        return self.run(lambda delta, rows, at: numeric.one_sided(delta, h[at]), idx)

    def noise(self, idx):
        """f's own round-off noise along each element, (len(idx), M): ``numeric.noise``."""
        h = self.auto_steps("central", idx)
        return self.run(lambda delta, rows, at: (numeric.noise(delta, h[at]),), idx)[0]


def check_input(graph, vals, name, analytic, settings: Settings, eps: float, analytic32=None,
                primary: str = "float64", columns=None, forward=None, tick=None, conditioning=None):
    """Numeric beside analytic for elements of one input: a dict of (M, len(columns)) arrays.

    ``columns`` lists the flat element indices to check (all by default);
    ``analytic`` holds their Jacobian columns. ``analytic`` is held to the
    tolerance of ``primary`` (float64 unless the user's code computes in
    float32 only), ``analytic32`` when given to the float32 tolerance.
    ``forward``, when given, holds the same columns by forward mode (the
    user's JVP), held to the same tolerance against reverse mode.
    ``conditioning`` (M,) widens the float32 tolerance by how much worse than
    its own round-off the float32 code computes each output (see ``check_point``).
    The rules are docs/pass-rule.md's.
    """
    method, _ = resolve_method(settings.method, graph)
    cols = _Columns(graph, vals, name, eps, tick)
    idx = np.arange(cols.x.size) if columns is None else np.asarray(columns, dtype=np.int64)
    x = cols.x[idx]
    num, est, kink, h = cols.derivative(method, settings.step, idx)
    num, est = num.T.copy(), est.T.copy()  # (M, len(idx))
    explicit = settings.method != "auto" or settings.step not in ("auto", None)
    if explicit and method in numeric.STENCILS:  # the spec's own stencil: its truncation, by step doubling
        est = cols.truncation(method, h, num.T, idx).T
    shown = (num.copy(), np.full(len(idx), method, dtype=object), h.copy())  # what the report shows
    magnitude = judge.element_magnitude(graph, vals, num, analytic, x)
    e = judge.Element(num, est, shown[1].copy(), h.copy(), magnitude, None, None,
                      cols.auto_steps("richardson", idx), np.full(num.shape, np.nan))
    judge.set_floors(e, x, eps, numeric.EPS[settings.dtype])

    def rule():
        return judge.judge(e, analytic, analytic32, forward, settings, eps, primary, conditioning)

    bad, vague, tol, aim, _ = rule()
    suspects = np.flatnonzero((bad | vague).any(axis=0))
    if len(suspects):  # what f's own round-off hides, measured where it matters
        judge.add_noise(e, suspects, cols.noise(idx[suspects]).T, x, eps, numeric.EPS[settings.dtype])
        bad, vague, tol, aim, _ = rule()
    measure.remeasure(cols, idx, e, eps, np.flatnonzero((bad | vague).any(axis=0)), aim)
    bad, vague, tol, aim, unc = rule()
    # the aim follows the derivative's size, which the first rough measurement may have
    # missed by orders (a step across the pole of an ill-conditioned solve): aim again
    measure.remeasure(cols, idx, e, eps, np.flatnonzero(vague.any(axis=0)), aim)
    bad, vague, tol, aim, unc = rule()
    seen = analytic if analytic32 is None else analytic32
    status, minus, plus = judge.classify(cols, idx, e, graph, vals, analytic, seen, kink, bad, vague, tol, eps)
    reason = np.where(status == "unresolved", judge.unresolved_reason(unc, aim), "")
    out = e.num
    if explicit:  # the report shows the spec's measurement; the verdict rests on the best one
        redone = np.flatnonzero(e.methods != shown[1])
        for j in redone:
            reason[:, j] = [text or f"decided by {e.methods[j]} at step {e.steps[j]:.3g}: numeric {v:.17g}"
                            for text, v in zip(reason[:, j], e.num[:, j])]
        out, e.methods, e.steps = shown
    return {
        "columns": idx, "output": np.real(vals[graph.output]).ravel(), "numeric": out,
        "forward": np.full(out.shape, np.nan) if forward is None else forward, "analytic": seen,
        "tolerance": tol, "error_estimate": np.where(np.isnan(e.measured), e.est, e.measured), "status": status, "minus": minus, "plus": plus,
        "method": e.methods, "step": e.steps, "reason": reason,
    }


def analytic_columns(graph, vals, name, columns, reverse: dict) -> np.ndarray:
    """Jacobian columns of one input, (M, len(columns)): by reverse mode (the whole
    Jacobian, computed once for every input and kept in ``reverse``), or by
    forward mode when the output is large or the user gave only a JVP."""
    if graph.has_vjp and (vals[graph.output].size <= 64 or not graph.has_jvp):
        if not reverse:
            reverse.update(engine.jacobian(graph, vals, list(graph.inputs)))
        return reverse[name][:, columns]
    return engine.forward_columns(graph, vals, name, columns)


def check_point(graph, inputs: dict, wrt, settings: Settings, *, experiment: str = "",
                point: int = 0, coords=None, tick=None) -> list:
    """The Jacobian of the graph's output at one point, checked as ``settings.check`` says, as Records.

    ``full`` checks every element; ``screen`` compares random projections and
    checks in full only the elements it localizes; ``auto`` is full up to
    ``screen.FULL_LIMIT`` Jacobian entries and a screen above. ``tick(input,
    done, total)``, when given, hears how many elements have been measured.
    """
    with np.errstate(all="ignore"):  # overflow and NaN are reported per element, not warned
        return _check_point(graph, inputs, wrt, settings, experiment, point, coords, tick)


def _check_point(graph, inputs, wrt, settings, experiment, point, coords, tick):
    dtype = settings.dtype
    rounded = {k: np.asarray(v, dtype=NUMPY_DTYPES[dtype]).astype(np.float64) for k, v in inputs.items()}
    vals = engine.evaluate(graph, rounded, np.float64)
    _refuse_unmeasurable(graph, vals, rounded, wrt)
    eps = numeric.EPS["float64" if vals[graph.output].dtype == np.float64 else "float32"]
    vals32, primary = None, "float64"
    if dtype != "float64":
        vals32 = engine.evaluate(graph, rounded, NUMPY_DTYPES[dtype])
        if vals[graph.output].dtype != np.float64:  # the user's code ignores float64
            vals, vals32, primary = vals32, None, dtype
    conditioning = None
    if vals32 is not None:
        # a float32 gradient can be no closer than its function: where float32 code computes
        # f itself worse than its round-off (cos of a large argument, say), its tolerance widens
        miss = np.abs(vals32[graph.output].astype(np.float64) - vals[graph.output]).ravel()
        unit = numeric.EPS[dtype] * engine.output_scale(graph, vals)
        conditioning = np.maximum(1.0, np.nan_to_num(miss / np.maximum(unit, np.finfo(float).tiny), nan=1.0))
    entries = vals[graph.output].size * sum(vals[graph.inputs[name]].size for name in wrt)
    mode = settings.check if settings.check != "auto" else ("full" if entries <= screen.FULL_LIMIT else "screen")
    if not graph.has_vjp:  # a screen projects with VJPs; forward mode alone is checked in full
        mode = "full"
    cross = graph.has_vjp and graph.has_jvp and not graph.transparent  # the user gave both: compare them
    rng = np.random.default_rng([settings.seed, point])
    if mode == "screen":  # one VJP per direction serves every input
        u = screen.directions(vals[graph.output].size, rng)
        g = screen.cotangents(graph, vals, u)
        g32 = None if vals32 is None else screen.cotangents(graph, vals32, u)
    reverse: dict = {}
    reverse32: dict = {}
    records = []
    for name in wrt:
        x = vals[graph.inputs[name]]
        columns = None
        if mode == "screen":
            method, _ = resolve_method(settings.method, graph)
            found = screen.screen_input(graph, vals, name, settings, eps,
                                        method if method != "central" else "richardson", rng, primary,
                                        u, g[name], None if g32 is None else g32[name], conditioning)
            projections = _screen_records(found, experiment, point, name, settings, coords or {})
            records.extend(projections)
            if not found.bad.any():
                continue
            columns = screen.localize(graph, vals, name, found, int(np.argmax(found.bad)), settings, eps, primary)
            if not columns:  # too many, or cancelling: look at every element
                columns = None
        idx = np.arange(x.size) if columns is None else np.asarray(columns)
        ana = analytic_columns(graph, vals, name, idx, reverse).astype(np.float64)
        ana32 = None if vals32 is None else analytic_columns(graph, vals32, name, idx, reverse32).astype(np.float64)
        fwd = engine.forward_columns(graph, vals, name, idx).astype(np.float64) if cross else None
        res = check_input(graph, vals, name, ana, settings, eps, ana32, primary, idx, fwd, tick, conditioning)
        records.extend(_records(res, experiment, point, name, x, settings, coords or {}, mode))
        if mode == "screen" and not np.isin(res["status"], ("fail", "nan")).any():
            # measured one by one, every element the projections pointed at is right: their
            # disagreement was the directional difference's own (a kink crossed, say)
            for r in projections:
                if r.status == "fail":
                    r.status = "kink" if (res["status"] == "kink").any() else "pass"
                    r.passed = True
    return records


def _refuse_unmeasurable(graph, vals, inputs, wrt):
    """Raise CheckError for a point no verdict can rest on: an empty Jacobian (nothing
    would be checked, and nothing checked must not pass), or user code that returns
    different values for the same arguments (no difference of two calls measures a derivative)."""
    empty = [n for n in wrt if vals[graph.inputs[n]].size == 0]
    if empty or vals[graph.output].size == 0:
        what = f"input '{empty[0]}' has no elements" if empty else "the output has no elements"
        raise CheckError(f"{what}: an empty Jacobian has nothing to check (give it a size, or leave it out of wrt)")
    if graph.transparent:
        return  # gradrun's own primitives are deterministic
    changed = measure.nondeterministic(graph, vals, engine.evaluate(graph, inputs, np.float64))
    if changed:
        raise CheckError(f"{changed[0]} is not deterministic: two calls with the same arguments returned "
                         "different values (hidden state, or a random mask drawn on every call); "
                         "fix its seed or pass the state as an input")


def _screen_records(found, experiment, point, name, settings, coords):
    """One row per screening direction: the projection u . J v, numeric beside analytic."""
    out = []
    for k in range(len(found.numeric)):
        num, ana = float(found.numeric[k]), float(found.analytic[k])
        err = abs(ana - num)
        status = ("pass" if not found.bad[k] else "nan" if not np.isfinite(num + ana)
                  else "kink" if found.kink[k] else "fail")
        out.append(Record(
            experiment=experiment, point=point, input=name, index=-1, element=f"u{k}.J.v{k}", output=-1,
            value=float("nan"), output_value=float("nan"), numeric=num, analytic=ana, abs_error=err,
            rel_error=0.0 if err == 0 else float(np.divide(err, max(abs(num), abs(ana)))),
            passed=status in ("pass", "kink"), status=status, tolerance=float(found.tolerance[k]),
            method=found.method, step=float(found.step), error_estimate=float(found.error_estimate[k]),
            dtype=settings.dtype, check="screen", coords=dict(coords)))
    return out


def _records(res, experiment, point, name, x, settings, coords, check="full"):
    num, ana = res["numeric"], res["analytic"]
    abs_err = np.abs(ana - num)
    with np.errstate(all="ignore"):
        rel_err = abs_err / np.maximum(np.abs(num), np.abs(ana))
    rel_err = np.where(abs_err == 0, 0.0, rel_err)
    m = num.shape[0]
    columns = res["columns"]
    names = element_names(name, x.shape, np.unique(columns))
    # element-major order (all outputs of an element together), as plain Python values
    grid = {key: np.asarray(res[key] if key not in ("abs", "rel") else (abs_err if key == "abs" else rel_err)).T
            .ravel().tolist() for key in ("numeric", "analytic", "abs", "rel", "tolerance", "error_estimate",
                                          "minus", "plus", "forward", "status", "reason")}
    element = np.repeat(columns, m).tolist()
    output = np.tile(np.arange(m), len(columns)).tolist()
    value = np.repeat(x.ravel()[columns], m).tolist()
    output_value = np.tile(res["output"], len(columns)).tolist()
    method = np.repeat(res["method"], m).tolist()
    step = np.repeat(res["step"], m).tolist()
    count = len(element)
    same = itertools.repeat
    records = list(map(
        Record, same(experiment, count), same(point, count), same(name, count), element,
        map(names.__getitem__, element), output, value, grid["numeric"], grid["analytic"], grid["abs"],
        grid["rel"], [s in ("pass", "kink") for s in grid["status"]], grid["status"], grid["tolerance"],
        method, step, output_value, grid["error_estimate"], grid["minus"], grid["plus"], grid["forward"],
        same(settings.dtype, count), same(check, count), same(dict(coords), count),  # one point's coords, shared
    ))
    for record, reason in zip(records, grid["reason"]):
        if reason:
            record.reason = reason
    return records

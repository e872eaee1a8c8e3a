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

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from . import engine, graphcheck, judge, measure, numeric, pieces, screen, threads
from .columns import Columns, shared_strings
from .model import Settings
from .limits import MAX_REPORT_ROWS
from .sensitivity import Sensitivity
from .point_columns import element_columns, errors, projection_columns  # noqa: F401 (errors: re-exported)


ROUNDOFF_FLOOR = numeric.ROUNDOFF_FLOOR
tolerance = numeric.tolerance

NUMPY_DTYPES = {"float64": np.float64, "float32": np.float32}


class PointCheck(NamedTuple):
    """What checking one point found: element and projection columns, and how they interleave."""

    elements: Columns
    projections: Columns
    blocks: list  # [(projection rows, element rows)] per input, in wrt order
    shapes: dict  # input name -> shape


class InputCheck(NamedTuple):
    """What ``check_input`` found for the elements of one input: (M outputs, n elements) arrays,
    or (n,) for what is one per element. In the report's column order (``point_columns``)."""

    columns: np.ndarray  # (n,) the flat indices of the elements checked
    output: np.ndarray  # (M,) the primal output
    numeric: np.ndarray  # the numeric derivative the report shows
    forward: np.ndarray  # the user's JVP, NaN without one
    analytic: np.ndarray  # the analytic derivative (float32 code's, when float32 is checked)
    tolerance: np.ndarray
    error_estimate: np.ndarray
    status: np.ndarray  # pass, fail, kink, nan or unresolved
    minus: np.ndarray  # one-sided differences, where a kink was looked for
    plus: np.ndarray
    method: np.ndarray  # (n,) how each element's shown measurement was made
    step: np.ndarray  # (n,) and at what step
    reason: np.ndarray  # why an entry is unresolved, or what decided it


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
        if graph.batched:  # one call per chunk: as many rows as memory allows
            self.chunk = max(self.chunk, graph.chunk_rows(self.x.size, vals, engine.batch_rows))
        # a chunk's calls at once, from threads, up to the process's cap (one in a -j worker)
        self.calls = threads.WORKERS if graph.batched and graph.concurrent else 1


    def run(self, fn, idx):
        """Apply ``fn(delta, rows, at)`` chunk by chunk over element indices ``idx``;
        ``at`` is the chunk's slice of ``idx`` (for per-element arrays given alongside).

        Chunks of gradrun's own graphs go to a thread per core (numpy releases
        the GIL in its loops), and so do those of black boxes that may be called
        from two threads at once (torch's, ``calls``); other user Python
        functions run on one thread.
        """
        def one(at):
            rows = idx[at]

            def moved(where, offsets):
                d, k, _ = engine.perturb(self.graph, self.vals, self.name, where, offsets, self.cache)
                return d, k

            delta = numeric.stacking(moved, rows, self.chunk, 1 if across else self.calls)  # chunk rows a call at most
            if self.x.dtype == np.float64:  # real steps as x + step rounds them (``numeric.stencils``)
                delta.primal = self.x[rows]

            with np.errstate(all="ignore"):  # overflow and NaN are reported per element, not warned
                return fn(delta, rows, at)

        chunks = [slice(start, start + self.chunk) for start in range(0, len(idx), self.chunk)] or [slice(0, 0)]
        # a black box's concurrent calls: chunks of elements on threads of their own, each chunk's
        # offsets evaluated one call after another, not a chunk's calls side by side and joined
        # before the next chunk's (measured on bench_torch.py's MLP: 0.34-0.37 s wall against
        # 0.51-0.54 s, 0.46-0.55 s on one thread; the same calls, so the same bits)
        across = len(chunks) > 1 and self.calls > 1
        outs = []

        def collect(results):
            for at, out in zip(chunks, results):
                outs.append(out)
                if self.tick is not None:
                    self.tick(self.name, min(at.stop, len(idx)), len(idx))

        if across or (len(chunks) > 1 and self.graph.transparent and threads.WORKERS > 1):
            with ThreadPoolExecutor(threads.WORKERS) as pool:
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

    def remeasured(self, base, magnitude, limit, idx):
        """The best measurement of the elements ``idx``: ``measure.remeasured``."""
        return measure.remeasured(self, base, magnitude, limit, idx, self.eps)

    def kink_evidence(self, h, floor, unit, idx):
        """Which elements ``idx`` sit on a kink: ``measure.kink_evidence``."""
        return measure.kink_evidence(self, idx, h, floor, unit)


def check_input(graph, vals, name, analytic, settings: Settings, eps: float, analytic32=None,
                primary: str = "float64", columns=None, forward=None, tick=None, conditioning=None, point=0,
                spread32=0.0, whole_row=None):
    """Numeric beside analytic for elements of one input, as an ``InputCheck``.

    ``columns`` lists the flat element indices to check (all by default);
    ``analytic`` holds their Jacobian columns. ``analytic`` is held to the
    tolerance of ``primary`` (float64 unless the user's code computes in
    float32 only), ``analytic32`` when given to the float32 tolerance.
    ``forward``, when given, holds the same columns by forward mode (the
    user's JVP), held to the same tolerance against reverse mode.
    ``conditioning`` (M,) widens the float32 tolerance by how much worse than
    its own round-off the float32 code computes each output (see ``check_point``);
    ``spread32`` (M, len(columns)) adds how far float32 round-off of the inputs moves
    the gradient (``gradrun.sensitivity``). ``whole_row`` (M,), each row's largest analytic
    entry over every input checked, scales a row this input's entries are all 0 in
    (``judge.zero_rows``).
    The rules are docs/pass-rule.md's: measure, confirm, classify. Where
    ``pieces.due``, what is measured element by element is measured in pieces
    of the elements (in worker processes, under ``-j`` or Dask: ``point`` and
    ``name`` tell them where), the rest here, on the pieces joined.
    """
    method, _ = resolve_method(settings.method, graph)
    cols = _Columns(graph, vals, name, eps, tick)
    idx = np.arange(cols.x.size) if columns is None else np.asarray(columns, dtype=np.int64)
    cols = pieces.measurer(cols, idx, (point, name))
    e, kink, shown = _measure(cols, idx, method, analytic, settings, eps)

    def rule():
        return judge.judge(e, analytic, analytic32, forward, settings, eps, primary, conditioning, spread32,
                           whole_row)

    judged = _confirm(cols, idx, e, rule, eps, settings.dtype)
    seen = analytic if analytic32 is None else analytic32
    status, minus, plus, reason = _classify(cols, idx, e, analytic, seen, kink, judged, eps)
    _modes_disagree(reason, status, analytic, forward, judged[2])
    out = _shown(e, shown, reason)
    return InputCheck(
        columns=idx, output=np.real(vals[graph.output]).ravel(), numeric=out,
        forward=np.full(out.shape, np.nan) if forward is None else forward, analytic=seen,
        tolerance=judged[2], error_estimate=np.where(np.isnan(e.measured), e.est, e.measured),
        status=status, minus=minus, plus=plus, method=e.methods, step=e.steps, reason=reason)


def _measure(cols, idx, method, analytic, settings, eps) -> tuple:
    """The first measurement: the spec's method and step (auto: complex step, or a central
    difference at each element's own step). Returns the ``judge.Element`` the verdict will
    refine, where a kink may be, and what the report shows (None: the verdict's measurement)."""
    x = cols.x[idx]
    num, est, kink, h = cols.derivative(method, settings.step, idx)
    num, est = num.T.copy(), est.T.copy()  # (M, len(idx))
    explicit = settings.method != "auto" or settings.step not in ("auto", None)
    if explicit and method in numeric.STENCILS:  # the spec's own stencil: its truncation, by step doubling
        est = cols.truncation(method, h, num.T, idx).T
    methods = np.full(len(idx), method, dtype=object)
    magnitude = judge.element_magnitude(cols.graph, cols.vals, num, analytic, x)
    e = judge.Element(num.copy(), est, methods.copy(), h.copy(), magnitude, None, None,
                      cols.auto_steps("richardson", idx), np.full(num.shape, np.nan))
    judge.set_floors(e, x, eps, numeric.EPS[settings.dtype])
    # the report shows the spec's measurement; the verdict rests on the best one
    return e, kink, ((num, methods, h) if explicit else None)


def _confirm(cols, idx, e, rule, eps, dtype) -> tuple:
    """Judge, and measure again as well as gradrun can where the verdict fails or is too
    uncertain (``measure.remeasure``): ``rule()``'s (bad, vague, tol, aim, uncertainty)."""
    x = cols.x[idx]
    judged = rule()
    # where f itself is not finite no derivative is checked (``judge.classify``): measuring
    # those entries again learns nothing, and took 50 times a full check's time (f overflowing)
    defined = judge.defined_rows(cols.graph, cols.vals)

    def doubtful(bad, vague):
        # a measurement that is not finite where f is (a complex step of 1e308) decides nothing either
        return np.flatnonzero(((bad | vague | ~np.isfinite(e.num)) & defined).any(axis=0))

    suspects = doubtful(*judged[:2])
    if not len(suspects):  # every entry decided by the first measurement: nothing to measure again
        return judged
    # what f's own round-off hides, measured where it matters
    judge.add_noise(e, suspects, cols.noise(idx[suspects]).T, x, eps, numeric.EPS[dtype])
    bad, vague, tol, aim, _ = rule()
    measure.remeasure(cols, idx, e, eps, doubtful(bad, vague), aim)
    judged = rule()
    # the aim follows the derivative's size, which the first rough measurement may have
    # missed by orders (a step across the pole of an ill-conditioned solve): aim again
    again = np.flatnonzero((judged[1] & defined).any(axis=0))
    if not len(again):
        return judged
    measure.remeasure(cols, idx, e, eps, again, judged[3])
    return rule()


BELOW_RESOLUTION = ("f did not change at any step: the analytic slope times the step is below the "
                    "rounding unit of the values f is given and returns, so no difference can see it")


STAIRCASE = ("f did not change at any step tried, but does at a step of %.2g, where its slope agrees with the "
             "analytic one: f is constant on a finer scale (computed in lower precision, or quantised), and no "
             "difference measures its derivative at the precision claimed")


def _classify(cols, idx, e, analytic, seen, kink, judged, eps) -> tuple:
    """Each entry's status (``judge.classify``; a failure below resolution is unresolved),
    the one-sided differences, and why an unresolved entry is one."""
    bad, vague, tol, aim, unc = judged
    status, minus, plus = judge.classify(cols, idx, e, cols.graph, cols.vals, analytic, seen, kink, bad, vague,
                                         tol, eps, unc, aim)
    frozen = np.zeros(status.shape, dtype=bool)
    if (status == "fail").any():  # only a failure can turn out to be below resolution
        tried = np.fmax(e.steps, cols.auto_steps("central", idx))
        frozen = (status == "fail") & judge.below_resolution(e, (analytic, seen), cols.graph, cols.vals, tried,
                                                             eps)
        status = np.where(frozen, "unresolved", status)
    steps = np.zeros(status.shape)
    if ((status == "fail") & (e.num == 0)).any():
        steps = measure.staircase(cols, idx, status == "fail", e.num, (analytic, seen),
                                  np.fmax(e.steps, cols.auto_steps("central", idx)))
        status = np.where(steps > 0, "unresolved", status)
    unresolved = (status == "unresolved") & ~frozen & ~(steps > 0)  # a reason is formatted for these alone
    reason = np.full(status.shape, "", dtype=object)
    reason[unresolved] = judge.unresolved_reason(np.broadcast_to(unc, status.shape)[unresolved],
                                                 np.broadcast_to(aim, status.shape)[unresolved])
    reason[frozen] = BELOW_RESOLUTION
    for o, j in zip(*np.nonzero(steps > 0)):
        reason[o, j] = STAIRCASE % steps[o, j]
    return status, minus, plus, reason


MODES_DISAGREE = "forward mode (JVP) gives %.17g, reverse mode (VJP) %.17g: the two analytic sides disagree"


def _modes_disagree(reason, status, analytic, forward, tol):
    """Say so where a failure is the forward and reverse modes' disagreeing: the row's numeric
    and analytic (reverse mode) may agree (torch's own forward mode of logcumsumexp is 1.5 %
    off where its backward is right), and without a reason such a row reads as a false alarm."""
    if forward is None:
        return
    apart = (status == "fail") & ~(np.abs(forward - analytic) <= tol) & (reason == "")
    for o, j in zip(*np.nonzero(apart)):
        reason[o, j] = MODES_DISAGREE % (forward[o, j], analytic[o, j])


def _shown(e, shown, reason):
    """The numeric column of the report: the spec's own measurement when it asked for one
    (``shown``), each entry decided by a better one saying so in its reason; else the verdict's."""
    if shown is None:
        return e.num
    for j in np.flatnonzero(e.methods != shown[1]):
        reason[:, j] = [text or f"decided by {e.methods[j]} at step {e.steps[j]:.3g}: numeric {v:.17g}"
                        for text, v in zip(reason[:, j], e.num[:, j])]
    out, e.methods, e.steps = shown
    return out


def analytic_columns(graph, vals, name, columns, reverse: dict) -> np.ndarray:
    """Jacobian columns of one input, (M, len(columns)): by reverse mode (the whole
    Jacobian, computed once for every input and kept in ``reverse``), or by
    forward mode when the output is large or the user gave only a JVP."""
    if graph.has_vjp and (vals[graph.output].size <= 64 or not graph.has_jvp):
        if not reverse:
            reverse.update(engine.jacobian(graph, vals, list(graph.inputs)))
        return reverse[name][:, columns]
    return engine.forward_columns(graph, vals, name, columns)


def numeric_side(graph, inputs: dict, wrt, dtype: str, name: str) -> _Columns:
    """The numeric side of input ``name`` at a point, evaluated as ``check_point`` evaluates it:
    what a worker measures element pieces of a check on (``gradrun.piecework``)."""
    with np.errstate(all="ignore"):
        values = _evaluated(graph, inputs, wrt, dtype)
        return _Columns(graph, values.vals, name, values.eps)


def check_point(graph, inputs: dict, wrt, settings: Settings, *, experiment: str = "",
                point: int = 0, coords=None, tick=None, follow_up_rows: int = MAX_REPORT_ROWS) -> PointCheck:
    """The Jacobian of the graph's output at one point, checked as ``settings.check`` says, as columns.

    ``full`` checks every element; ``screen`` compares random projections and
    checks in full only the elements it localizes; ``auto`` is full up to
    ``screen.FULL_LIMIT`` Jacobian entries and a screen above. ``tick(input,
    done, total)``, when given, hears how many elements have been measured. A screen that
    fails checks the elements it points at one by one within ``follow_up_rows`` rows.
    """
    with np.errstate(all="ignore"):  # overflow and NaN are reported per element, not warned
        return _check_point(graph, inputs, wrt, settings, experiment, point, coords, tick, follow_up_rows)


class _Values(NamedTuple):
    """The graph evaluated at a point, in the dtypes its check compares."""

    vals: list  # float64 (or the user's code's own float32) values of every node
    vals32: object  # float32 values when float32 is checked beside float64, else None
    primary: str  # the dtype ``vals`` holds: the analytic side's tolerance follows it
    eps: float  # the rounding unit of ``vals``
    conditioning: object  # (M,) how much worse than its round-off float32 code computes f, or None


def _rounded(inputs: dict, dtype: str) -> dict:
    """The point as the checked dtype holds it, in float64."""
    return {k: np.asarray(v, dtype=NUMPY_DTYPES[dtype]).astype(np.float64) for k, v in inputs.items()}


def _evaluated(graph, inputs, wrt, dtype) -> _Values:
    """Evaluate the graph at the point rounded to ``dtype``, refusing a point nothing can be measured at."""
    rounded = _rounded(inputs, dtype)
    vals = engine.evaluate(graph, rounded, np.float64)
    _refuse_unmeasurable(graph, vals, rounded, wrt)
    eps = numeric.EPS["float64" if vals[graph.output].dtype == np.float64 else "float32"]
    # code whose output ignores float64 is float32 code, and held to float32's rules in any
    # dtype: float64's RESOLVE (1e-6) left right entries of a float32 layer unresolved
    vals32, primary = None, "float64" if vals[graph.output].dtype == np.float64 else "float32"
    if dtype != "float64":
        vals32 = engine.evaluate(graph, rounded, NUMPY_DTYPES[dtype])
        if vals[graph.output].dtype != np.float64:  # the user's code ignores float64
            vals, vals32, primary = vals32, None, dtype
    if primary == "float64" and _float32_valued(graph, vals, rounded):
        eps, primary = numeric.EPS["float32"], "float32"
        if vals32 is not None and dtype == "float32":  # no float64 code beside it to hold to float64 rules
            vals32 = None
    conditioning = None
    if vals32 is not None:
        # a float32 gradient can be no closer than its function: where float32 code computes
        # f itself worse than its round-off (cos of a large argument, say), its tolerance widens
        miss = np.abs(vals32[graph.output].astype(np.float64) - vals[graph.output]).ravel()
        unit = numeric.EPS[dtype] * engine.output_scale(graph, vals)
        conditioning = np.maximum(1.0, np.nan_to_num(miss / np.maximum(unit, np.finfo(float).tiny), nan=1.0))
    return _Values(vals, vals32, primary, eps, conditioning)


def _float32_valued(graph, vals, inputs) -> bool:
    """Whether user code that returns float64 computes in float32 (or coarser): every
    output it gives, at the point and at a point moved by an odd fraction of each input,
    is a float32 number. Its differences move in float32's steps (a sum of 300 float32
    values, 1e-5), and float64's rules failed it; float64 code gives a float32 number
    by chance one time in 2**29, an exact small value (x**2 at 0.5) not at both points.
    Or it reads its inputs as float32 (``_reads_float32``) and works on in float64."""
    if graph.transparent or vals[graph.output].dtype != np.float64:
        return False
    out = vals[graph.output]
    moved = {k: v * (1 + np.pi * 1e-7) + np.pi * 1e-9 if _differentiated(graph, k) else v for k, v in inputs.items()}
    again = engine.evaluate(graph, moved, np.float64)[graph.output]
    if np.array_equal(np.ravel(out), np.ravel(again)):
        return False
    both = np.concatenate([np.ravel(out), np.ravel(again)])
    both = both[np.isfinite(both) & (both != 0)]
    if len(both) and np.all(both.astype(np.float32).astype(np.float64) == both):
        return True
    return _reads_float32(graph, out, again, inputs)


def _differentiated(graph, name) -> bool:
    """Whether a probe of the code may move input ``name``: integer inputs (labels) stay, as label
    5 000 000 moved by 1.6 would reach the code as another label."""
    return name in graph.inputs and bool(graph.needs[graph.inputs[name]])


def _reads_float32(graph, out, again, inputs) -> bool:
    """Whether user code sees its inputs only as float32 numbers: moved within each element's
    float32 rounding interval, every output is the same bit for bit, although the move across
    a few intervals (``again``) changed one by over a thousand float64 rounding units. Code that
    computes in float32 and returns float64 scaled or summed in float64 (a float32 model's
    outputs weighted by 0.3, summed over a batch) gives no float32 numbers, and float64's
    rules failed it (tests/fresh10)."""
    out, again = np.ravel(out), np.ravel(again)
    if not np.any(np.abs(again - out) > 1024 * numeric.EPS["float64"] * np.abs(out)):
        return False
    within = {}
    for k, v in inputs.items():
        if not _differentiated(graph, k):
            within[k] = v
            continue
        v32 = np.asarray(v, dtype=np.float32)
        # each element by its own fraction of its rounding unit, from 0.2 in to 0.4 out (the unit
        # inwards is half as large at a power of 2): a move by one amount is invisible to a norm
        fraction = 0.4 - 0.6 * np.modf(np.arange(1, v32.size + 1) * 0.6180339887498949)[0].reshape(v32.shape)
        within[k] = v32.astype(np.float64) + fraction * np.spacing(v32).astype(np.float64)
    same = engine.evaluate(graph, within, np.float64)[graph.output]
    return np.array_equal(np.ravel(same), out)


def _full_fits(graph, vals, wrt, check="auto") -> bool:
    """Whether a check of the inputs ``wrt`` element by element is what ``check``
    asks for (``graphcheck.full_check``, as loading counted it)."""
    outputs = vals[graph.output].size
    work = graphcheck.full_work(graph, wrt, outputs, [np.shape(v) for v in vals])
    return graphcheck.full_check(check, outputs * sum(vals[graph.inputs[n]].size for n in wrt), graph, work)


def _mode(graph, vals, wrt, settings) -> str:
    """``full`` or ``screen``: ``auto`` is full up to ``screen.FULL_LIMIT`` Jacobian entries
    and ``limits.MAX_AUTO_FULL_WORK``; a screen projects with VJPs, so forward mode alone is
    checked in full."""
    full = _full_fits(graph, vals, wrt, settings.check)
    return "full" if full else "screen"


def _follow_up_fits(graph, vals, name, columns, rows) -> bool:
    """Whether the elements a failed screen points at (``columns``; None: every element of
    input ``name``) may be checked one by one: within the work auto allows a full check, and
    within ``rows`` (the point's share of the rows one experiment may report) and
    ``screen.FALLBACK_FULL_LIMIT`` Jacobian entries. Past any, the
    screen's failing projections stand: a million elements whose every half disagrees must not
    take days, nor one element of a ten-million-element output add ten million rows a point."""
    outputs = vals[graph.output].size
    count = vals[graph.inputs[name]].size if columns is None else len(columns)
    if count * outputs > min(rows, screen.FALLBACK_FULL_LIMIT):
        return False
    return columns is not None or \
        graphcheck.full_work(graph, [name], outputs, [np.shape(v) for v in vals]) <= graphcheck.MAX_AUTO_FULL_WORK


def _check_point(graph, inputs, wrt, settings, experiment, point, coords, tick, follow_up_rows):
    vals, vals32, primary, eps, conditioning = _evaluated(graph, inputs, wrt, settings.dtype)
    mode = _mode(graph, vals, wrt, settings)
    cross = graph.has_vjp and graph.has_jvp and not graph.transparent  # the user gave both: compare them
    rng = np.random.default_rng([settings.seed, point])
    spread = None if vals32 is None else Sensitivity(graph, _rounded(inputs, settings.dtype), wrt, settings.dtype,
                                                     [settings.seed, point], analytic_columns)
    if mode == "screen":  # one VJP per direction serves every input
        u = screen.directions(vals[graph.output].size, rng)
        g = screen.cotangents(graph, vals, u)
        g32 = None if vals32 is None else screen.cotangents(graph, vals32, u)
        slopes: dict = {}  # a complex step's slopes, measured once for every input's directions
    reverse: dict = {}
    reverse32: dict = {}
    elements, projections, blocks, shapes = [], [], [], {}
    whole_row, full = None, {}
    if mode == "full" and len(wrt) > 1:  # every input's analytic columns, for each row's scale over all
        full = {name: analytic_columns(graph, vals, name, np.arange(vals[graph.inputs[name]].size),
                                       reverse).astype(np.float64) for name in wrt}
        whole_row = np.max([np.max(np.where(np.isfinite(a), np.abs(a), 0.0), axis=1, initial=0.0)
                            for a in full.values()], axis=0)
    for name in wrt:
        x = vals[graph.inputs[name]]
        shapes[name] = tuple(np.shape(x))
        columns = None
        found = Columns()
        if mode == "screen":
            method, _ = resolve_method(settings.method, graph)
            screened = screen.screen_input(graph, vals, name, settings, eps,
                                           method if method != "central" else "richardson", rng, primary,
                                           u, g[name], None if g32 is None else g32[name], conditioning,
                                           slopes, spread)
            found = projection_columns(screened, experiment, point, name, settings, coords or {})
            projections.append(found)
            if screened.bad.any():
                # None: too many, cancelling, or f not finite: look at every element
                columns = screen.localize(graph, vals, name, screened, int(np.argmax(screened.bad)), settings, eps,
                                          primary) or None
                if columns is not None:  # the first elements found, within what a follow-up may check in full
                    columns = columns[:max(1, screen.FALLBACK_FULL_LIMIT // max(vals[graph.output].size, 1))]
            elif not screen.coarse(screened, eps):
                blocks.append((len(found), 0))
                continue
            if not _follow_up_fits(graph, vals, name, columns, follow_up_rows):
                # the screen's verdict stands, but no pass a screen too coarse to see one entry cannot vouch for
                if not screened.bad.any():
                    found["status"] = shared_strings(np.where(found["status"] == "pass", "unresolved",
                                                              found["status"]))
                blocks.append((len(found), 0))
                continue
        idx = np.arange(x.size) if columns is None else np.asarray(columns)
        ana = full[name] if name in full else analytic_columns(graph, vals, name, idx, reverse).astype(np.float64)
        ana32 = None if vals32 is None else analytic_columns(graph, vals32, name, idx, reverse32).astype(np.float64)
        fwd = engine.forward_columns(graph, vals, name, idx).astype(np.float64) if cross else None
        spread32 = spread.widening(name, idx, ana) if ana32 is not None and spread.needed(ana, ana32, settings) else 0.0
        res = check_input(graph, vals, name, ana, settings, eps, ana32, primary, idx, fwd, tick, conditioning,
                          point, spread32, whole_row)
        elements.append(element_columns(res, experiment, point, name, x, settings, coords or {}, mode))
        blocks.append((len(found), len(elements[-1])))
        if mode == "screen" and not np.isin(res.status, ("fail", "nan")).any():
            # measured one by one, every element the projections pointed at is right: their
            # disagreement was the directional difference's own (a kink crossed, say, or a domain
            # edge: a step along v that fits 0.3 crosses 0 from an element of 1e-16)
            status = found["status"].copy()
            status[np.isin(status, ("fail", "nan"))] = "kink" if (res.status == "kink").any() else "pass"
            found["status"] = shared_strings(status)
    _refuse_drift(graph, vals, _rounded(inputs, settings.dtype))
    return PointCheck(Columns.concat(elements), Columns.concat(projections), blocks, shapes)


def _refuse_drift(graph, vals, inputs):
    """Raise CheckError where user code, called twice more after every perturbation, no
    longer gives the values it gave before them: state kept across calls (a counter, a
    cache) that the two calls at the start could not see moved what the differences
    measured (an offset of 1e-7 on every other call after the fourth passed a VJP 1e-5 off)."""
    if graph.transparent:
        return
    for _ in range(2):
        changed = measure.nondeterministic(graph, vals, engine.evaluate(graph, inputs, np.float64))
        if changed:
            raise CheckError(f"{changed[0]} is not deterministic: after the check's calls it returned other "
                             "values for the same arguments than before them (state kept across calls: a "
                             "counter, a cache, a running statistic); pass the state as an input")


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

"""The best measurement gradrun can make of a derivative, and the evidence for a kink.

The rules these serve are written once, with their reasoning, in
docs/pass-rule.md. Both work on ``cols``, the numeric side of one input's
Jacobian (``verdict._Columns``): ``cols.at(method, h, idx)`` measures the
elements ``idx`` by ``method`` at steps ``h`` (one per element), and
``cols.one_sided(h, idx)`` gives their backward and forward differences.
"""

from __future__ import annotations

import numpy as np

from . import numeric

# Richardson base steps tried, as powers of 4 times the element's auto step:
# down to 4**-20 smaller (a domain edge 1e-12 away, a function whose own scale
# is far below |x|), and up to 64 times larger only where the auto step's
# measurement was ruled by round-off (a large constant in f): larger steps
# first would let a periodic function alias. An element stops as soon as its
# measurement is precise enough, or once two levels in a row only got worse.
# An element far below its input's scale (a probability of 1e-16 beside ones of 0.3,
# whose auto step follows the 0.3) goes as many levels deeper as its step needs to
# become relative to the element itself (``deepest``): its domain edge is |x| away.
LEVELS = (range(0, 21), range(-1, -4, -1))
GOOD_ENOUGH = 0.5  # stop when the measurement's error is below this share of what it must resolve

# A kink is seen from one-sided differences at KINK_HALVINGS + 1 steps, each half the last:
# their gap must stay (each halving keeps at least KINK_KEEP of it), while each side settles.
KINK_HALVINGS = 4
KINK_KEEP = 0.7
KINK_SETTLED = 4.0  # the gap must be this many times larger than how far either side still moves
# A kink is *at* x only if its gap stays at every step down to round-off: one a distance d
# away (relu at x = 1e-9 beside inputs of 0.5, whose step is 2e-6) has a gap that vanishes
# once the step is below d. Past the halvings the step keeps shrinking by KINK_DEEPER, at
# most KINK_DEEPEST times, while the sides' round-off stays below a KINK_ROUNDOFF share of the gap.
KINK_DEEPER = 4.0
KINK_DEEPEST = 12
KINK_ROUNDOFF = 1 / 8
KINK_STEP_UNITS = 64  # nor below this many of x's rounding units


def uncertainty(est, method_noise):
    """An error estimate with NaN (not estimated) read as 0, plus the round-off of the differences."""
    return np.nan_to_num(est, nan=0.0) + method_noise


def best(cols, idx, base, noise, target, witness):
    """Richardson extrapolation at shrinking (and then growing) base steps, entry by entry.

    ``base`` (n,) is each element's auto Richardson step, ``noise(h, rows)``
    the round-off of differences at the steps h of the elements ``rows``,
    ``target`` (M, n) the error each entry's measurement aims to get below.
    ``witness`` is (value, slack, step), each (M, n): a small-step
    measurement that a level at larger steps must agree with within its slack
    plus the level's uncertainty (NaN: no witness), because a large step can
    alias: a narrow bump stepped over gives zeros at every Richardson point and
    an estimate of 0. A level within the witness's step sees finer than it and
    answers to the levels below it alone. Each Jacobian entry keeps its own best level (one output of an
    element may be ruled by round-off, another by truncation). Returns
    ``(value, uncertainty, step)`` as (M, n), (M, n), (n,): the finite
    estimates with the smallest uncertainty seen (NaN where no step gave a
    finite one), and each element's finest step used.
    """
    m, n = target.shape
    value = np.full((m, n), np.nan)
    unc = np.full((m, n), np.inf)
    step = np.full((m, n), np.nan)
    noisy = np.zeros(n, dtype=bool)  # the auto step's measurement was ruled by round-off
    finest = _Finest(n, m)
    deepest = _deepest(cols, idx)
    for direction, levels in enumerate(LEVELS):
        active = np.ones(n, dtype=bool) if direction == 0 else noisy & ~_good(unc, target)
        worse = np.zeros(n, dtype=int)
        last = (np.full((m, n), np.nan), np.full((m, n), np.inf), np.full((m, n), np.nan))
        if direction == 0:
            levels = range(0, max(levels.stop, int(deepest.max(initial=0)) + 1))
        for level in levels:
            if direction == 0:
                active &= level <= deepest
            rows = np.flatnonzero(active)
            if not len(rows):
                break
            h = base[rows] * 4.0 ** -level
            if direction == 0:  # each level a quarter of the last: its coarsest points are known
                v, est, _, used = finest.level(cols, h, idx, rows, known=level > 0)
            else:
                v, est, _, used = cols.at("richardson", h, idx[rows])
            v, est, rnd = v.T, est.T, noise(used, rows)
            raw = uncertainty(est, rnd)
            # NaN (no witness) agrees, and so does a level within the witness's step: its slack is
            # only an estimate (a layer norm whose spread is 1e-5 at x = 1, stepped by 6e-6, gave
            # -13990 +- 6300 for -6805, and every finer level that measured -6805 disagreed)
            agrees = ~(np.abs(v - witness[0][:, rows]) > witness[1][:, rows] + raw) | (h <= witness[2][:, rows])
            u = np.where(np.isfinite(v) & agrees, raw, np.inf)
            if level == 0:
                noisy[rows] = (rnd > np.nan_to_num(est, nan=0.0)).any(axis=0)
            if direction == 0:
                cand_v, cand_u, cand_h = _finer(last, rows, v, u, raw, used)
            else:  # a larger step must agree with what the smaller ones measured
                cand_v, cand_h = v, np.broadcast_to(used[None, :], v.shape)
                cand_u = np.where(np.abs(v - value[:, rows]) <= u + unc[:, rows], u, np.inf)
            better = cand_u < unc[:, rows]
            value[:, rows] = np.where(better, cand_v, value[:, rows])
            unc[:, rows] = np.where(better, cand_u, unc[:, rows])
            step[:, rows] = np.where(better, cand_h, step[:, rows])
            confirms = ~(np.abs(v - value[:, rows]) > u + unc[:, rows])
            # and only round-off, which finer steps make worse, ends it: where truncation still
            # rules, the step is not yet below the function's own scale (sin(x) at x = 1e6, whose
            # steps of 20 alias to a consistent, confident and wrong ~0)
            ruled = ((rnd >= np.nan_to_num(est, nan=0.0)) | (v == 0)).all(axis=0)  # (0: not reached)
            settled = np.isfinite(unc[:, rows]).all(axis=0) & ~better.any(axis=0) & confirms.all(axis=0) & ruled
            worse[rows] = np.where(settled, worse[rows] + 1, 0)
            active[rows[_good(unc[:, rows], target[:, rows]) | (worse[rows] >= 2)]] = False
    finest = np.nanmin(np.where(np.isfinite(step), step, np.inf), axis=0, initial=np.inf)
    return value, np.where(np.isfinite(unc), unc, np.nan), np.where(np.isfinite(finest), finest, base)


def _deepest(cols, idx) -> np.ndarray:
    """(n,) each element's last shrinking level: LEVELS' 20, plus log4 of how far its auto
    step's scale (the input's RMS, ``numeric.step_floor``) is above the element itself."""
    x = np.abs(np.real(np.asarray(cols.x, dtype=np.complex128).ravel()[idx]))
    below = np.where(x > 0, np.maximum(x, cols.floor) / np.where(x > 0, x, 1.0), 1.0)
    return LEVELS[0].stop - 1 + np.ceil(np.log(below) / np.log(4.0)).astype(int)


class _Finest:
    """Each element's finest central difference of its last Richardson level (value, kink)."""

    def __init__(self, n, m):
        self.value, self.kink = np.full((n, m), np.nan), np.zeros(n, dtype=bool)

    def level(self, cols, h, idx, rows, known):
        """One Richardson level at base steps h of the elements ``rows``, the last level's
        finest differences reused (``known``, when it was a base 4h); keeps this one's."""
        first = (self.value[rows], self.kink[rows]) if known else None

        def fn(delta, _, at):
            return numeric.richardson_chain(delta, h[at], None if first is None else (first[0][at], first[1][at]))

        v, est, kink, used, self.value[rows], self.kink[rows] = cols.run(fn, idx[rows])
        return v, est, kink, used


def _finer(last, rows, v, u, raw, used) -> tuple:
    """The candidate a finer level makes of the level before it, ``last`` (value, uncertainty,
    step; updated to this level for the rows measured): that level, if this one agrees with it.

    A level counts once the next finer one agrees with it: an estimate of error can be as
    wrong as its value (a step across the smallest singular value of a solve), and only a
    converging sequence of levels vouches for both.
    """
    prev_v, prev_u, prev_h = (a[:, rows] for a in last)
    for a, b in zip(last, (v, u, np.broadcast_to(used[None, :], v.shape))):
        a[:, rows] = b
    return prev_v, np.where(np.abs(v - prev_v) <= raw + prev_u, prev_u, np.inf), prev_h


def _good(unc, target):
    """Elements whose every entry is measured precisely enough."""
    return (unc <= GOOD_ENOUGH * np.where(np.isfinite(target), target, 0.0)).all(axis=0)


def kink_evidence(cols, idx, h, floor, unit=None):
    """Which elements sit on a kink, with their one-sided differences.

    A kink needs a gap between the backward and forward differences that
    does not shrink as the step halves (a smooth function's gap is O(h)),
    above ``floor`` (M, n: what the comparison can resolve) and well above
    how far either side still moves. Returns ``(kink (n,), minus, plus,
    slack)``, the last three (M, n): the one-sided differences at the
    finest step and how far each may still be off. An element is dropped
    as soon as its gap shrinks, so smooth ones cost two halvings. ``unit``
    (M, n), the one-sided differences' round-off at a step of 1, lets the
    gap be followed further down (``_dissolves``): a gap that vanishes there
    is a kink near x, not at it, and no evidence; then three more (M, n) arrays
    give the derivative the sides agree on there and how far it may be off
    (NaN elsewhere), and which entries have a **flat side** (``flat``): one side's
    difference exactly 0 at every step taken, the other not a jump (its gap to
    the flat side shrank, or settled, or vanished closer in).
    """
    n = len(idx)
    alive = np.ones(n, dtype=bool)
    first = cols.one_sided(h, idx)
    last = [np.array(a, copy=True) for a in first]  # (n, M) each: the finest minus and plus
    before = [np.array(a, copy=True) for a in first]
    gap = np.abs(first[1] - first[0])
    gap0 = gap.copy()
    kept = np.ones(gap.shape, dtype=bool)
    held = kept  # the gaps that held through the first halving: a smooth function's halves
    zero = [first[0] == 0, first[1] == 0]  # a side exactly 0 at every step so far
    for k in range(1, KINK_HALVINGS + 1):
        rows = np.flatnonzero(alive)
        if not len(rows):
            break
        m, p = cols.one_sided(h[rows] * 0.5 ** k, idx[rows])
        zero[0][rows] &= m == 0
        zero[1][rows] &= p == 0
        fine = np.abs(p - m)
        kept[rows] &= fine >= KINK_KEEP * gap[rows]
        gap[rows] = fine
        before[0][rows], before[1][rows] = last[0][rows], last[1][rows]
        last[0][rows], last[1][rows] = m, p
        alive[rows] = kept[rows].any(axis=1)
        if k == 1:
            held = kept.copy()
    drift = np.abs(last[0] - before[0]) + np.abs(last[1] - before[1])
    evidence = kept & (gap > KINK_SETTLED * drift) & (gap > floor.T) & alive[:, None]
    if unit is None:
        return evidence.any(axis=1), last[0].T, last[1].T, 2 * drift.T
    # every gap that held through the first halving, above the floor or not, shrinking later
    # or not: a kink 3e-7 away shows at the first steps, is gone at the last, and a Richardson
    # measurement across it (0.5 for relu) decided the entry; a float32 tolerance can exceed a gap
    value, off = _dissolves(cols, idx, h * 0.5 ** KINK_HALVINGS, gap0, held, unit.T)
    # a side on which f did not move at all, at any step: where f is differentiable (the other
    # side's gap closed in, or vanished below a kink's distance: sum(relu(x)) at x = -1e-9, max(x, y)
    # with y 1e-9 below x) its derivative is that side's 0, and where not, 0 is a kink's side; never
    # where the other side is a jump (its gap neither shrinks nor settles)
    flat = (zero[0] | zero[1]) & (~kept | evidence | ~np.isnan(value))
    evidence &= np.isnan(value)
    return evidence.any(axis=1), last[0].T, last[1].T, 2 * drift.T, value.T, off.T, flat.T


def _dissolves(cols, idx, h, gap, evidence, unit):
    """(value, off), (n, M) each: where a kink's gap vanishes at a finer step, above the
    sides' round-off (``unit / step``), the kink is that step's distance from x or more
    and f is differentiable at x. The mean of the two sides is its derivative once two
    levels in a row have vanished and agree within the finer one's spread (the sides'
    difference plus twice their round-off: a step just above the kink's distance has a
    small gap too, and a value off by it), off by twice their difference and round-off;
    the level with the least bound is kept, going down while the spread still halves. NaN where the gap
    stayed, or a side was not finite."""
    value = np.full(gap.shape, np.nan)
    off = np.full(gap.shape, np.nan)
    prev = np.full(gap.shape, np.nan)
    was = np.full(gap.shape, np.inf)  # the last level's spread
    open_ = evidence.copy()
    step = np.array(h, dtype=float, copy=True)
    # x + step rounds to a multiple of x's own unit: a step must stay far above it
    # (at x = 1e-3 a step of 1e-20 moves nothing, and both sides read 0)
    moves = KINK_STEP_UNITS * cols.eps * np.abs(np.real(cols.x[idx]))
    for _ in range(KINK_DEEPEST):
        step /= KINK_DEEPER
        noise = unit / step[:, None]
        open_ &= (noise < KINK_ROUNDOFF * gap) & (step > moves)[:, None]
        rows = np.flatnonzero(open_.any(axis=1))
        if not len(rows):
            break
        m, p = cols.one_sided(step[rows], idx[rows])
        open_[rows] &= np.isfinite(m) & np.isfinite(p)
        # and the sides are off by their slope times x's rounding over the step
        noise[rows] += (np.abs(m) + np.abs(p)) * (cols.eps * np.abs(np.real(cols.x[idx[rows]])) / step[rows])[:, None]
        spread = np.abs(p - m) + 2 * noise[rows]
        mean = (m + p) / 2
        vanished = open_[rows] & (spread < 0.5 * gap[rows])
        settled = vanished & (np.abs(mean - prev[rows]) <= spread)
        # the mean is a central difference: its error at the finer of two levels a factor 4
        # apart is below their difference (a 16th of it where truncation rules), plus round-off
        bound = 2 * (np.abs(mean - prev[rows]) + 2 * noise[rows])
        better = settled & ~(off[rows] <= bound)
        value[rows] = np.where(better, mean, value[rows])
        off[rows] = np.where(better, bound, off[rows])
        # a smooth function's sides close in by 4 a level: go on while they do (sharp
        # softplus 1e-8 from its bend), stop where round-off holds them apart
        open_[rows] &= ~(settled & ~(spread < 0.5 * was[rows]))
        was[rows] = np.where(vanished, spread, np.inf)
        prev[rows] = np.where(vanished, mean, np.nan)
    return value, off


STAIRCASE_LEVELS = 8  # a flat entry is looked at with steps up to 4**8 times the largest tried
STAIRCASE_AGREE = 0.25  # the slope there must agree with the analytic within this share, beyond its sides' gap


def staircase(cols, idx, failed, num, analytics, tried):
    """(M, n): the step at which an entry that failed with a numeric derivative of exactly 0
    sees f move, where its slope there agrees with every analytic value; 0 elsewhere.

    f did not change at any step tried: a function computed in float32 and returned as
    float64 (a sum of 300 float32 values moves in steps of 1e-5) is flat on that scale,
    and its true slope shows only above it. Where a larger step moves f on both sides, by
    slopes within STAIRCASE_AGREE of each other, and their mean agrees with the analytic
    value within their gap plus that share, the entry is not measurable at the precision
    claimed: unresolved. A slope a constant does not have (0.5 where f never moves) and a
    slope the coarse difference contradicts still fail."""
    found = np.zeros(num.shape)
    todo = failed & (num == 0)
    for k in range(1, STAIRCASE_LEVELS + 1):
        cols_ = np.flatnonzero(todo.any(axis=0))
        if not len(cols_):
            break
        step = tried[cols_] * 4.0 ** k
        m, p = (a.T for a in cols.one_sided(step, idx[cols_]))
        moved = todo[:, cols_] & (m != 0) & (p != 0) & np.isfinite(m) & np.isfinite(p)
        gap = np.abs(p - m)
        slope = (m + p) / 2
        settled = moved & (gap <= STAIRCASE_AGREE * np.fmax(np.abs(m), np.abs(p)))  # a few steps of f's own
        agree = settled.copy()
        for ana in analytics:
            agree &= np.abs(ana[:, cols_] - slope) <= gap + STAIRCASE_AGREE * np.abs(ana[:, cols_])
        found[:, cols_] = np.where(agree, step[None, :], found[:, cols_])
        todo[:, cols_] &= ~settled  # decided here, one way or the other
    return found


def nondeterministic(graph, vals, again) -> list:
    """The user functions that returned different values for the same arguments.

    ``again`` is a second evaluation of ``graph`` at the inputs ``vals`` came from.
    """
    def same(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)

    return [node.fn.source or node.fn.name for i, node in enumerate(graph.nodes)
            if node.fn is not None and all(same(vals[a], again[a]) for a in node.args)
            and not same(vals[i], again[i])]


def remeasure(cols, idx, e, eps, which, limit):
    """Measure the elements ``which`` of ``e`` (a ``judge.Element``) again, as well as
    gradrun can (``cols.remeasured``: ``remeasured``, perhaps over pieces of the elements
    in worker processes), aiming below ``limit`` (M, n)."""
    if not len(which):
        return
    value, unc, step = cols.remeasured(e.richardson[which], e.magnitude[:, which], limit[:, which], idx[which])
    found = np.isfinite(value).all(axis=0)
    take = which[found]
    # an entry no converging sequence of levels measured is not measured precisely at all:
    # it is decided neither by the rough first difference nor passed (a jump, say)
    e.measured[:, which] = np.where(np.isnan(value), np.inf, e.measured[:, which])
    e.num[:, take], e.measured[:, take] = value[:, found], unc[:, found]
    e.methods[take], e.steps[take] = "richardson", step[found]


def remeasured(cols, base, magnitude, limit, idx, eps):
    """``best`` for the elements ``idx``, with their auto Richardson steps ``base`` (n,),
    magnitudes and aims (M, n): what ``remeasure`` measures, element by element, so that
    it can be measured over pieces of the elements (``gradrun.pieces``)."""
    def noise(h, rows):
        return numeric.roundoff("richardson", eps, magnitude[:, rows], h)

    return best(cols, idx, base, noise, limit, witness(cols, idx, magnitude, eps))


WITNESS_FINER = 20  # a lost witness is looked for again at steps 4, 16, ... 4**20 times finer (as LEVELS go)


def witness(cols, idx, magnitude, eps):
    """A central difference at each element's small auto step, and how far off it may be
    (how far it moves at twice and half the step, and round-off, four times over), and the
    step each entry's was found at, all (M, n): what a Richardson level at larger steps must
    agree with. A witness lost at the auto step is looked for at finer steps: one aliased
    (sin at x = 1e9, whose auto step of 6e3 sees cos(x)·sin(h)/h) cannot vouch for its sign,
    and without one the levels at steps of 1e5, agreeing on 8e-7, beat those that measured
    0.639 and failed a right cos."""
    h = cols.auto_steps("central", idx)
    value, slack = _witness_at(cols, idx, h, magnitude, eps)
    lost = slack > np.abs(value)
    step = np.broadcast_to(h, value.shape).copy()
    for k in range(1, WITNESS_FINER + 1):
        again = np.flatnonzero((lost & (value != 0)).any(axis=0))  # an exact 0: the entry is not reached
        if not len(again):
            break
        finer = h[again] * 4.0 ** -k
        v, sl = _witness_at(cols, idx[again], finer, magnitude[:, again], eps)
        retry = lost[:, again]
        value[:, again] = np.where(retry, v, value[:, again])
        slack[:, again] = np.where(retry, sl, slack[:, again])
        step[:, again] = np.where(retry, finer[None, :], step[:, again])
        lost[:, again] = retry & (sl > np.abs(v))
    return np.where(lost, np.nan, value), np.where(lost, np.nan, slack), step


def _witness_at(cols, idx, h, magnitude, eps):
    """The central differences at h, their slack (M, n), as ``witness`` describes."""
    central = numeric.STENCILS["central"]

    def three(delta, rows, at):  # steps 2h and h apart can alias alike (sin at 1e6, h = 6): h/2 too
        return tuple(d for d, _ in numeric.stencils(delta, [(central, s * h[at]) for s in (1.0, 2.0, 0.5)]))

    value, coarse, fine = (np.array(d.T, dtype=float) for d in cols.run(three, idx))
    moved = np.fmax(np.abs(coarse - value), np.abs(fine - value))
    # a witness that cannot vouch for its own sign (a step across a pole of an
    # ill-conditioned solve: the difference grows as 1 / h**2) is no witness
    return value, 4 * (moved / 3 + numeric.roundoff("central", eps, magnitude, h / 2))

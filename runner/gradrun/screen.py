"""Screening a Jacobian along random directions, and localizing what a screen flags.

A screen compares ``u . J v`` computed two ways for a few seeded random
sign vectors u (over the output) and v (over one input): analytically, from
one VJP per direction (``g = J^T u``, then ``g . v``), and numerically, from
one directional difference per direction. With signs of +-1, an error of
size e in a single Jacobian entry moves every direction's ``u . J v`` by
exactly e, so the screen sees any single-entry error above its tolerance,
which it states.

When a direction disagrees, group testing finds the culprits without the
full Jacobian: the input elements the direction covers are split in halves,
each half's ``u . J v_half`` is compared (the analytic side is a partial sum
of the same g, so it costs nothing), and only disagreeing halves are split
again. One wrong entry among N costs about 2 log2(N) directional
differences, evaluated a level at a time in one batch; each element found is
then checked in full (its whole Jacobian column), as a full check would.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from . import engine, judge, numeric, reverse
from .limits import MAX_AUTO_FULL_WORK

SCREEN_DIRECTIONS = 4
FULL_LIMIT = 100_000  # Jacobian entries up to which check: auto checks every element
# One input's Jacobian entries up to which a screen that cannot vouch for it (a failure not
# localized, or a screen too coarse to see one entry) is checked in full, within auto's work:
# a full check's columns are (entries,) arrays, a few dozen of them, and its report a row each
# (a wrong VJP of tanh(A x), 2048 outputs by 1024 inputs: all 2.1 million in 276 s and 1.2 GB
# on a busy machine, when no limit held it).
FALLBACK_FULL_LIMIT = 1_000_000
MAX_LOCALIZED = 256  # more disagreeing sets than this: give up localizing, check in full
# Directions moved at once: each holds a copy of every value of the evaluation (complex
# under a complex step), so a batch of B directions over an evaluation of E elements takes
# B times an evaluation's memory. Directions go in chunks of at most this many elements
# over all their rows (64 MiB in float64): a screen of a large graph moves one direction at
# a time, and localizing its 512 halves does not take 512 evaluations' memory (21 GB for
# softmax(exp(X)) over a million elements) but one chunk's.
DIRECTIONS_CAP = 1 << 23
ONE_BITS = np.float64(1.0).view(np.uint64)


@dataclass
class Screen:
    numeric: np.ndarray  # (K,) u . J v by differences
    analytic: np.ndarray  # (K,) u . J v from the VJP (of the dtype being checked)
    analytic64: np.ndarray  # (K,) the same from float64 code
    tolerance: np.ndarray  # (K,)
    error_estimate: np.ndarray  # (K,)
    bad: np.ndarray  # (K,) bool
    kink: np.ndarray  # (K,) bool: the direction reached a kink of a primitive
    method: str
    step: float
    u: np.ndarray  # (K, M)
    v: np.ndarray  # (K, N)
    g: np.ndarray  # (K, N) J^T u, float64 code
    g32: np.ndarray | None  # (K, N) J^T u, float32 code

    @property
    def sensitivity(self) -> float:
        """The smallest single-entry error every direction is sure to flag."""
        return float(np.max(self.tolerance))


def direction_rows(vals) -> int:
    """Directions moved at once through an evaluation holding ``vals``: ``DIRECTIONS_CAP``
    elements over all of them, at least one."""
    return max(1, DIRECTIONS_CAP // max(sum(np.size(a) for a in vals), 1))


def directional(graph, vals, name, method, v, u, eps, slopes=None):
    """u . J v by differences along each row of v, in chunks of ``direction_rows``:
    (value, error estimate, step, kink)."""
    rows = direction_rows(vals)
    if len(v) <= rows:
        return _directional(graph, vals, name, method, v, u, eps, slopes)
    parts = [_directional(graph, vals, name, method, v[i:i + rows], u[i:i + rows], eps, slopes)
             for i in range(0, len(v), rows)]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), parts[0][2],
            np.concatenate([p[3] for p in parts]))


def _directional(graph, vals, name, method, v, u, eps, slopes=None):
    """u . J v by differences along each row of v: (value, error estimate, step, kink).

    The step is taken along the unit vector v / |v|, scaled like one
    element's step, and the result scaled back by |v|: a step of h in every
    element at once would see the curvature of all of them together. The
    estimate is the method's own (or step doubling's) plus the round-off of
    the differences. ``slopes``, a dict kept across the inputs of one point, lets a
    complex step measure each op's slopes once (``Motion``), not once per input.
    v's entries are signs or zeros (a screen's directions, or parts of them).
    """
    x = vals[graph.inputs[name]]
    scale = float(np.sqrt(np.mean(x * x))) if x.size else 1.0
    h = numeric.steps(method, np.array([scale]), "auto", eps)[0]
    # |v|**2 counts v's signs (exactly, in any order: a sum of ones), and offset * (v / |v|)
    # is v * (offset / |v|) bit for bit (v is +-1 or 0): one pass over v per step, not three
    norms = np.maximum(np.sqrt(np.array([row @ row for row in v], dtype=float)), np.finfo(float).tiny)
    signs = v.reshape((len(v),) + x.shape)

    moved = np.zeros(len(v))  # how far the outputs moved, before u's signs could cancel them

    def delta(offsets):
        imaginary = np.iscomplexobj(offsets) and not np.real(offsets).any()  # a complex step: move by Im only
        each = (np.imag(offsets) if imaginary else offsets) * (1.0 / norms)
        along = each.reshape((-1,) + (1,) * x.ndim) * signs
        d, kink, _ = engine.perturb_along(graph, vals, name, along, imaginary, slopes)
        moved[:] = np.maximum(moved, np.einsum("bm,bm->b", np.abs(np.real(d)), np.abs(u)))
        return np.einsum("bm,bm->b", d, u)[:, None], kink

    steps = np.full(len(v), h)
    value, est, kink, used = numeric.derivative(delta, method, steps)
    if np.isnan(est).all():  # a plain stencil: estimate its truncation from twice the step
        est = numeric.truncation_estimate(delta, method, steps, value)
    magnitude = np.abs(u * judge.output_magnitude(graph, vals)).sum(axis=1) + moved
    noise = numeric.ROUNDOFF_GAIN[method] * eps * magnitude / used
    return value[:, 0] * norms, (est[:, 0] + noise) * norms, h, kink


def floor(graph, vals, name, v, g, eps, outputs=np.sum):
    """The round-off floor of each u . J v, from the elements' floors (see verdict) over v:
    each element's own scale, the outputs' |f| (and what is computed on the way) plus
    |(J^T u)[j] x[j]|, what x[j] itself contributes; never the largest input anywhere.
    ``v=None`` stands for sign directions, whose squares are all one. ``outputs`` adds
    the outputs' |f| up: linearly, or in quadrature for float32 code (see ``quadrature``)."""
    x = vals[graph.inputs[name]].ravel()
    # the elements' round-off is independent, and v's signs random: it adds up in quadrature
    # (in place, each step as size = max(|f| + |g x|, tiny), then (size * v / max(1, |x|))**2)
    share = np.multiply(g, x[None, :])
    np.abs(share, out=share)
    share += outputs(judge.output_magnitude(graph, vals))
    np.maximum(share, judge.TINY, out=share)
    if v is not None:
        share *= v
    share /= np.maximum(1.0, np.abs(x))
    share *= share
    return numeric.ROUNDOFF_FLOOR * eps * np.sqrt(share.sum(axis=1))


def terms(g, v):
    """The sum of |g v| over each row: the size of the terms u . J v adds up (one array made,
    not two); ``v=None`` for sign directions, where |g v| is |g|."""
    if v is None:
        return np.abs(g).sum(axis=1)
    product = np.multiply(g, v)
    return np.abs(product, out=product).sum(axis=1)


def quadrature(g):
    """sqrt of the sum of g² over each row: what independent errors of each term, the
    round-off of float32 code's J^T u, add up to along random signs v. A float32 analytic's
    projection is held to it, and its floor adds the outputs' |f| in quadrature too, not
    linearly (the float64 side's, which is the numeric side's round-off): over 2000
    elements and 512 outputs those sums were 45 and 22 times larger, and float16 arithmetic
    inside a float32 backward (1e-3 off) passed. The |f| stays: where J^T u is itself round-off
    (a bias before batch norm in train mode, whose true gradient is 0) it is the scale of
    what cancelled. What float32 code computes worse than its round-off widens it by the
    measured ``conditioning``."""
    return np.sqrt(np.einsum("kn,kn->k", g, g))


def by_pass(fn, g, which):
    """``fn`` of g's rows, called once for the rows of one reverse pass (``reverse.shared_passes``):
    their |J^T u| is the same, and so is what sign directions make of it (a floor, the terms)."""
    return fn(g[reverse.firsts(which)])[which]


def disagree(ana, num, tol):
    """Which projections disagree; an infinite or undefined one always does."""
    return ~(np.abs(ana - num) <= tol) | ~np.isfinite(tol) | ~np.isfinite(ana) | ~np.isfinite(num)


def directions(size, rng) -> np.ndarray:
    """SCREEN_DIRECTIONS seeded random sign vectors of ``size`` entries: those
    ``rng.choice([-1.0, 1.0], size=...)`` draws, and the generator left as it leaves it.

    ``rng.integers(0, 2)`` keeps the top bit of each 32-bit draw (Lemire's method,
    which rejects nothing for two values), and PCG64 hands out its 64-bit outputs
    as 32-bit draws low half first: so the signs are read straight from the raw
    outputs, then written as the bits of +-1.0, in a few passes over bytes.
    """
    count = SCREEN_DIRECTIONS * size
    generator = rng.bit_generator
    state = generator.state if isinstance(generator, np.random.PCG64) else {}
    if count % 2 or state.get("has_uint32", 1) or sys.byteorder != "little":  # a half-used output pending
        draws = rng.integers(0, 2 ** 32, size=count, dtype=np.uint32)
    else:
        draws = generator.random_raw(count // 2).view(np.uint32)
    signs = np.empty((SCREEN_DIRECTIONS, size))  # owns its memory: numpy is slower on views of other dtypes
    bits = signs.view(np.uint64).reshape(-1)
    np.right_shift(draws, 31, out=bits, casting="unsafe")  # 1 where the sign is +
    bits ^= 1
    bits <<= 63  # the sign bit of -1.0
    bits |= ONE_BITS
    return signs


def cotangents(graph, vals, u) -> dict:
    """J^T u for every input and every direction u over the output: {name: (K, N)}."""
    return {name: g.astype(np.float64, copy=False) for name, g in engine.vjp_rows(graph, vals, u).items()}


def screen_input(graph, vals, name, settings, eps, method, rng, primary, u, g, g32=None,
                 conditioning=None, slopes=None, spread=None):
    """Compare u . J v along the directions u (over the output, with g = J^T u given,
    and J^T u of the float32 code in g32) and fresh sign directions v over one input.
    ``slopes``: see ``directional``. ``spread`` (a ``sensitivity.Sensitivity``) widens a
    float32 projection that disagrees by how far float32 round-off of the inputs moves it."""
    v = directions(vals[graph.inputs[name]].size, rng)
    num, est, h, kink = directional(graph, vals, name, method, v, u, eps, slopes)
    which, _ = reverse.shared_passes(graph, u)

    def held_to(rows_g, round_off, dtype, single=False):
        # the tolerance of u . J v for J^T u of code computing in dtype (float32 code: ``single``)
        outputs = (lambda f: np.sqrt(np.sum(f * f))) if single else np.sum  # see ``quadrature``
        least = by_pass(lambda rows: floor(graph, vals, name, None, rows, round_off, outputs), rows_g, which)
        size = by_pass(lambda rows: quadrature(rows) if single else terms(rows, None), rows_g, which)
        return numeric.tolerance(size, num, est, dtype, settings) + least

    ana64 = np.einsum("kn,kn->k", g, v)
    tol = held_to(g, eps, primary)
    bad = disagree(ana64, num, tol)
    ana = ana64
    if g32 is not None:
        ana = np.einsum("kn,kn->k", g32, v)
        tol = held_to(g32, numeric.EPS[settings.dtype], settings.dtype, single=True)  # float32 code's own round-off
        tol = tol * (1.0 if conditioning is None else float(np.max(conditioning, initial=1.0)))
        if spread is not None and disagree(ana, num, tol).any():
            tol = tol + spread.projection_widening(name, u, g, v)
        bad |= disagree(ana, num, tol)
    if not np.all(np.isfinite(vals[graph.output])):  # f itself is undefined somewhere: look closer
        bad[:] = True
        num = np.full(num.shape, np.nan)
    return Screen(num, ana, ana64, tol, est, bad, kink, method, h, u, v, g, g32)


def coarse(screen: Screen, eps: float) -> bool:
    """Whether the screen of code that computes in float32 could miss one entry wrong by a large
    part of itself: its sensitivity (a single entry's error every direction flags) above
    float32's RESOLVE of the largest |J^T u|. Its differences are float32's too, over every
    output: over 3840 outputs their round-off made a tolerance of 2.3 beside J^T u of 3.4, and a
    VJP with one entry 30 % off passed, in float32 and float64 alike (tests/fresh10). float64 code
    screens to 1e-8 of such entries (and, beside float32 code, screens its formula)."""
    if eps <= numeric.EPS["float64"]:
        return False
    g = np.abs(screen.g if screen.g32 is None else screen.g32)
    return screen.sensitivity > numeric.RESOLVE["float32"] * float(np.max(g, initial=0.0))


def group_test(v, disagrees, rows=None, most=None):
    """Group testing: the elements whose part of direction ``v`` disagrees, or None if too many.

    ``disagrees(masked)`` tells, for each row of ``masked`` (``v`` kept on one set of
    elements, zero elsewhere), whether that part of the direction disagrees; it is asked
    about at most ``rows`` sets at once (all of a level's by default), so that a level of
    512 halves of a large input is never one (512, N) array. Disagreeing sets are halved
    until single elements remain: about 2·log2 N tests for one culprit among N. Returns
    the culprits sorted, or None past ``MAX_LOCALIZED`` sets or ``most`` tests in all.
    """
    sets = [np.arange(v.size)]
    found = []
    tested = 0
    while sets:
        halves = [h for s in sets for h in (np.array_split(s, 2) if len(s) > 1 else [s]) if len(h)]
        tested += len(halves)
        if len(halves) > 2 * MAX_LOCALIZED or (most is not None and tested > most):
            return None
        verdicts = []
        step = rows or len(halves)
        for start in range(0, len(halves), step):
            chunk = halves[start:start + step]
            masked = np.zeros((len(chunk), v.size))
            for row, part in enumerate(chunk):
                masked[row, part] = v[part]
            verdicts.extend(disagrees(masked))
        sets = []
        for part, is_bad in zip(halves, verdicts):
            if not is_bad:
                continue
            if len(part) == 1:
                found.append(int(part[0]))
            else:
                sets.append(part)
        if len(sets) > MAX_LOCALIZED:
            return None
    return sorted(found)


def localize(graph, vals, name, screen: Screen, k: int, settings, eps, primary):
    """Input elements whose Jacobian columns disagree along direction k, or None if too many.

    Where f itself is not finite at the point, every part of every direction disagrees
    (u . f holds the NaN): nothing can be localized, and None says so at once instead of
    spending the work limit on halves (36 s for exp overflowing over a million elements).
    An element whose J^T u is not finite is a culprit by itself; the group test runs over
    the others (one infinite entry made every half's ``masked @ g`` a NaN)."""
    if not np.all(np.isfinite(vals[graph.output])):
        return None
    u, v, g = screen.u[k:k + 1], screen.v[k], screen.g[k]
    infinite = np.flatnonzero(~np.isfinite(g))
    if len(infinite) > MAX_LOCALIZED:
        return None
    if len(infinite):
        v, g = v.copy(), g.copy()
        v[infinite], g[infinite] = 0.0, 0.0  # those elements move nothing in the tests below

    def disagrees(masked):
        num, est, _, kink = directional(graph, vals, name, screen.method, masked,
                                        np.repeat(u, len(masked), 0), eps)
        ana = masked @ g
        least = floor(graph, vals, name, masked, np.broadcast_to(g, masked.shape), eps)
        tol = numeric.tolerance(terms(masked, g), num, est, primary, settings) + least
        return disagree(ana, num, tol) | kink

    # each test evaluates the graph along one set: within the work auto allows a full check
    # (a million elements whose every half disagrees would take 1022 evaluations of them all)
    most = MAX_AUTO_FULL_WORK // max(sum(np.size(a) for a in vals), 1)
    found = group_test(v, disagrees, direction_rows(vals), most) if np.any(v) else []
    return None if found is None else sorted(set(found) | set(infinite.tolist())) or None

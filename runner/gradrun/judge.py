"""The pass rule and the kink rule applied to one input's measured arrays (docs/pass-rule.md).

``verdict.check_input`` measures; this module judges what it measured:
``judge`` (agreement within the tolerance, and whether the measurement is
precise enough to tell), ``classify`` (each entry's status, a kink only
with ``measure.kink_evidence``). Arrays are (M, n): output by element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import measure, numeric

ROUNDOFF_FLOOR = numeric.ROUNDOFF_FLOOR
TINY = float(np.finfo(np.float64).tiny)
_TINY = {numeric.EPS["float64"]: TINY, numeric.EPS["float32"]: float(np.finfo(np.float32).tiny)}
tolerance = numeric.tolerance


def row_scale(*jacobians):
    """The largest finite magnitude in each Jacobian row, at least the smallest normal."""
    mags = [np.where(np.isfinite(j), np.abs(j), 0) for j in jacobians]
    return np.maximum(np.max(np.maximum.reduce(mags), axis=1, keepdims=True), np.finfo(np.float64).tiny)


def element_magnitude(graph, vals, num, ana, x):
    """(M, n): the size of the numbers a perturbation of element j moves in output o, which
    its round-off is relative to: |f(x)[o]|, |J[o, j] x[j]| (what x[j] itself contributes)
    and the values computed on the way to the output (never the other inputs nor the other
    outputs: one large entry elsewhere must not loosen every element's tolerance)."""
    own = _finite_abs(np.fmin(np.abs(num), np.abs(ana)) * np.abs(x)[None, :])
    return np.maximum(output_magnitude(graph, vals)[:, None], own)


def _finite_abs(v):
    v = np.abs(np.real(np.asarray(v)))
    return np.where(np.isfinite(v), v, 0.0)


def output_magnitude(graph, vals):
    """(M,): |f(x)[o]|. The values computed on the way (tanh(|x| - x) is 0, the round-off
    of |x| - x is not) count only where an element's perturbation moves them, which the
    measured noise of f along that element shows (``add_noise``): the largest value
    anywhere in the graph would loosen every element's tolerance."""
    return _finite_abs(vals[graph.output]).ravel()


def set_floors(e, x, eps, eps_dtype):
    """The round-off floors from ``e.magnitude``: ROUNDOFF_FLOOR * eps * F / max(1, |x|).
    F is in f's units, so its least value is the dtype's smallest normal (below it a
    value has fewer digits), never eps: a floor of 256 eps² passed a VJP twice too large
    wherever f's values were below 1e-20. Nor is a floor ever below that smallest normal
    itself: a derivative below it has no relative precision in that dtype (float32 code
    underflows sigmoid(-95)' = 5.5e-42 to 0, and computes swish'(-100) = -3.7e-42 1.7 % off
    through subnormals), and code that flushes it to zero is right."""
    def floor(e_):
        tiny = _TINY.get(e_, TINY)
        return np.maximum(ROUNDOFF_FLOOR * e_ * np.maximum(e.magnitude, tiny) / np.maximum(1.0, np.abs(x)), tiny)
    e.floor = floor(eps)
    e.floor32 = floor(eps_dtype)


def add_noise(e, which, sigma, x, eps, eps_dtype):
    """Raise the magnitude of elements ``which`` to what f's measured noise ``sigma``
    (M, len(which)) shows: the numbers an opaque computation cancels, which neither
    |f| nor |J x| reveals (a loss of 1e-15 that is lse(z) - z[y] with z[y] = 35)."""
    e.magnitude[:, which] = np.maximum(e.magnitude[:, which], sigma / eps)
    set_floors(e, x, eps, eps_dtype)


@dataclass
class Element:
    """The facts one input's check gathers, (M, n) or (n,) arrays, that ``_judge`` reads."""

    num: np.ndarray  # the numeric derivative the verdict rests on
    est: np.ndarray  # its truncation estimate (NaN: none)
    methods: np.ndarray  # (n,) how each element was measured
    steps: np.ndarray  # (n,) and at what step
    magnitude: np.ndarray  # what round-off is relative to (``element_magnitude``)
    floor: np.ndarray  # the round-off floor of the dtype checked as primary
    floor32: np.ndarray  # that of float32 code
    richardson: np.ndarray  # (n,) each element's auto Richardson base step
    measured: np.ndarray  # (M, n) the uncertainty of a re-measured entry, round-off included (NaN: none)
    claim: np.ndarray | None = None  # (M, n) the primary tolerance without the uncertainty (``judge`` sets it)
    claim32: np.ndarray | None = None  # that of the float32 analytic (None: no float32 side)


def judge(e: Element, ana, analytic32, forward, settings, eps, primary, conditioning, spread32=0.0,
          whole_row=None):
    """(bad, vague, tol, aim, uncertainty): which entries disagree beyond their tolerance,
    which measurements are too uncertain to decide, the tolerance, what a measurement aims
    to resolve (below the round-off of f, where it can) and the numeric side's uncertainty.
    ``spread32`` (M, n) is how far float32 round-off of the inputs moves the gradient
    (``gradrun.sensitivity``): no float32 code is closer, so the float32 tolerance includes it.
    ``whole_row`` (M,), the largest float64 analytic entry of each row over every input
    checked, is the scale of a row whose entries for this input are all 0 as far as f's
    differences and the analytic side show (``zero_rows``)."""
    scale = row_scale(e.num, ana) if analytic32 is None else row_scale(e.num, ana, analytic32)
    noise = np.zeros(e.num.shape)
    for m in set(e.methods):
        at = e.methods == m
        noise[:, at] = numeric.roundoff(m, eps, e.magnitude[:, at], e.steps[at])
    unc = np.where(np.isnan(e.measured), measure.uncertainty(e.est, noise), e.measured)
    if whole_row is not None:
        scale = np.where(zero_rows(e.num, ana, unc), np.maximum(scale, np.asarray(whole_row)[:, None]), scale)
    claim = tolerance(scale, e.num, 0.0, primary, settings) + e.floor
    # what a measurement must resolve: the claim, or the dtype's resolution of the element
    # itself, above the round-off every difference of f has at its auto Richardson step
    # (thrice: in the round-off regime Richardson's own estimate is made of the same noise)
    # (or at the finer step a re-measurement needed: a function whose own scale is below
    # the auto step, an ill-conditioned solve, is measured no better than that step's round-off)
    natural = np.where(e.methods == "richardson", np.fmin(e.richardson / 4, e.steps), e.richardson / 4)
    reach = 3 * numeric.roundoff("richardson", eps, e.magnitude, natural)
    aim = np.maximum(claim, numeric.RESOLVE[primary] * np.abs(e.num) + e.floor)  # what re-measuring aims at
    limit = aim + reach
    tol = claim + 2 * unc
    e.claim, e.claim32 = claim, None
    bad = ~(np.abs(ana - e.num) <= tol)
    if forward is not None:
        bad |= ~(np.abs(forward - ana) <= tol)
    if analytic32 is not None:
        widen = 1.0 if conditioning is None else conditioning[:, None]
        e.claim32 = (tolerance(scale, e.num, 0.0, settings.dtype, settings) + e.floor32) * widen + spread32
        tol = e.claim32 + 2 * unc
        bad |= ~(np.abs(analytic32 - e.num) <= tol)
    exact = (e.num == 0) & (ana == 0)  # the perturbation never reached this output: nothing to resolve
    return bad, ~(unc <= limit) & ~exact, tol, aim, unc


def zero_rows(num, ana, unc):
    """(M, 1): the rows in which every entry of one input is 0 within the numeric side's
    uncertainty, finite, and so is the analytic one. Such an input has no scale of its own
    in that row: a key bias under a softmax, whose derivative is 0 by invariance, has entries
    of round-off (1e-54 analytic, 1e-49 numeric, beside entries of 1e-37 for the query's
    weights), and an atol relative to them asked the measurement to resolve its own noise.
    The whole row's scale (every input's) is its scale then; a row of small but measured
    entries (weights of 1e-8 beside inputs of 1e6) keeps its own."""
    finite = np.isfinite(unc) & np.isfinite(num)
    zero = finite & (np.abs(num) <= 2 * unc) & (np.abs(ana) <= np.abs(num) + 2 * unc)
    return zero.all(axis=1, keepdims=True)


def defined_rows(graph, vals) -> np.ndarray:
    """(M, 1): whether f itself is finite at each output; where it is not, no derivative is checked."""
    return np.isfinite(vals[graph.output]).reshape(-1, 1)


def classify(cols, idx, e: Element, graph, vals, ana, seen, kink, bad, vague, tol, eps, unc=None, aim=None):
    """Each entry's status, and the one-sided differences where a kink was looked for.

    A kink only with evidence (``measure.kink_evidence``) and the analytic value
    between the sides; an entry neither passed nor failed beyond doubt is unresolved.
    An entry that passed only on the round-off of the finer step a re-measurement took
    (``unc`` above ``aim``, the step below the auto one) is a suspect too: a step that fine was needed where a kink
    lies a hair from x (sum(relu(x)) at x = 1e-9), and its uncertainty can be the size
    of the derivative.
    """
    minus = np.full(e.num.shape, np.nan)
    plus = np.full(e.num.shape, np.nan)
    at_kink = np.zeros(e.num.shape, dtype=bool)
    smooth = np.zeros(e.num.shape, dtype=bool)  # the one-sided differences agree: no kink, cusp nor jump
    loose = np.zeros(e.num.shape, dtype=bool)
    if unc is not None and aim is not None:  # resolved only by the round-off of a finer step than auto
        finer = (e.methods == "richardson") & (e.steps < e.richardson / 4)
        loose = ~(unc <= aim) & finer[None, :]
    suspects = np.flatnonzero(kink | ((bad | vague | loose) & defined_rows(graph, vals)).any(axis=0))
    if len(suspects):
        h = cols.auto_steps("central", idx[suspects])
        finest = h * 0.5 ** measure.KINK_HALVINGS
        # the sides' round-off from f's values alone: the measured noise of f along an element
        # whose step crosses a kink is the kink's (ECnoise reads it as noise), and would stop
        # the search for where it is before the step is below its distance
        plain = element_magnitude(graph, vals, e.num[:, suspects], ana[:, suspects], cols.x[idx[suspects]])
        unit = 2 * numeric.roundoff("forward", eps, plain, np.ones(len(suspects)))
        floor = tol[:, suspects] + 2 * numeric.roundoff("forward", eps, e.magnitude[:, suspects], finest)
        evident, m, p, slack, near, off, flat = cols.kink_evidence(h, floor, unit, idx[suspects])
        minus[:, suspects], plus[:, suspects] = m, p
        smooth[:, suspects] = np.isfinite(m) & np.isfinite(p) & (np.abs(p - m) <= tol[:, suspects] + slack)
        _near_kink(e, suspects, near, off, ana, seen, bad, vague, tol, unc, aim)
        _flat_side(e, suspects, flat, ana, seen, bad, vague)
        lo = np.fmin(m, p) - tol[:, suspects] - slack
        hi = np.fmax(m, p) + tol[:, suspects] + slack
        inside = (seen[:, suspects] >= lo) & (seen[:, suspects] <= hi) & (ana[:, suspects] >= lo) & (
            ana[:, suspects] <= hi)
        # an output whose own gap vanished closer in has no kink at x, whatever the others show
        at_kink[:, suspects] = evident[None, :] & inside & np.isnan(near)
    # where f itself is undefined (log of a negative number, say) no derivative is checked; where
    # f is finite and differentiable (its one-sided differences finite and agreeing) and its
    # derivative measured precisely, a NaN or infinite float64 analytic value is wrong: a fail
    # (JAX's jnp.where(x > 0, sqrt(x), 0) gives NaN where f is 0 and flat)
    defined = np.isfinite(e.num) & defined_rows(graph, vals)
    finite = defined & np.isfinite(seen) & np.isfinite(ana)
    wrong = defined & ~np.isfinite(ana) & ~vague & smooth
    decided = np.where(bad, "fail", np.where(vague, "unresolved", "pass"))
    return np.where(wrong, "fail", np.where(~finite, "nan", np.where(at_kink, "kink", decided))), minus, plus


def _near_kink(e, suspects, near, off, ana, seen, bad, vague, tol, unc=None, aim=None):
    """Decide the entries whose kink was near x, not at it (``measure.kink_evidence``), on
    the one-sided differences at the step below the kink's distance: ``near`` off by
    ``off``, where they are more precise than the verdict's measurement or disagree with
    it beyond both uncertainties: a measurement across the kink (Richardson's, 0.5 for
    relu at 1e-9) is not the derivative there, and its error estimate did not say so.
    Changes ``e``'s numeric side, ``bad``, ``vague``, ``tol`` (and the ``unc`` and ``aim``
    an unresolved entry's reason quotes) in place."""
    at = ~np.isnan(near)
    if unc is not None:
        was, u = e.num[:, suspects], np.broadcast_to(unc, e.num.shape)[:, suspects]
        at &= (off < u) | ~(np.abs(near - was) <= off + u)
    if not at.any():
        return
    cols_ = np.broadcast_to(suspects[None, :], near.shape)[at]
    rows = np.broadcast_to(np.arange(near.shape[0])[:, None], near.shape)[at]
    e.num[rows, cols_] = near[at]
    e.measured[rows, cols_] = off[at]
    claim = np.broadcast_to(e.claim, e.num.shape)[rows, cols_]
    claim32 = claim if e.claim32 is None else np.broadcast_to(e.claim32, e.num.shape)[rows, cols_]
    wrong = ~(np.abs(ana[rows, cols_] - near[at]) <= claim + off[at])
    wrong |= ~(np.abs(seen[rows, cols_] - near[at]) <= claim32 + off[at])
    bad[rows, cols_] = wrong
    vague[rows, cols_] = ~wrong & ~(off[at] <= claim)
    tol[rows, cols_] = claim32 + off[at]
    for array, values in ((unc, off[at]), (aim, claim)):
        if isinstance(array, np.ndarray) and array.shape == e.num.shape and array.flags.writeable:
            array[rows, cols_] = values


def _flat_side(e, suspects, flat, ana, seen, bad, vague):
    """Pass the entries whose analytic value is exactly 0 (float64 and float32) where f did
    not move at all on one side, at any step (``measure.kink_evidence``'s ``flat``): as a
    central difference of exactly 0 beside an analytic 0 is (``judge``'s ``exact``). A
    Richardson measurement across a kink 1e-9 away, or of x·relu(x) at 0 (whose differences
    are h/2 at every step), cannot reach the precision a zero entry in a zero row asks for."""
    zero = flat & (ana[:, suspects] == 0) & (seen[:, suspects] == 0)
    if not zero.any():
        return
    rows, cols_ = np.nonzero(zero)
    at = suspects[cols_]
    e.num[rows, at] = 0.0
    e.measured[rows, at] = 0.0
    bad[rows, at] = False
    vague[rows, at] = False


def below_resolution(e: Element, analytics, graph, vals, steps, eps):
    """Entries where f never moved at all and the analytic slope could not have moved it.

    A numeric derivative of exactly 0 says only that f did not change by one rounding
    unit of the numbers it computes with. A black box hides those numbers, but they are
    at least as large as what it is given and returns: where |analytic| times the
    largest step tried is below that unit, no finite difference can tell the slope from
    0 (a cross-entropy of 1e-14 made from logits of 35). Such an entry is undecidable,
    not wrong, so it is ``unresolved`` rather than ``fail``: still not a pass.
    """
    given = [vals[i] for i in graph.inputs.values()] + [vals[graph.output]]
    scale = max((float(np.max(_finite_abs(np.real(v)))) for v in given if np.size(v)), default=0.0)
    unit = eps * scale
    moved = np.zeros(e.num.shape, dtype=bool)
    for ana in analytics:
        moved |= ~(np.abs(ana) * steps >= unit) & np.isfinite(ana)  # NaN is no slope too small to see
    return (e.num == 0) & moved & (unit > 0)


def unresolved_reason(unc, limit):
    """Why an entry could not be decided, (M, n) strings."""
    text = np.char.add(np.char.add("numeric uncertainty ", np.char.mod("%.2g", unc)),
                       np.char.add(" above the ", np.char.mod("%.2g", limit)))
    return np.char.add(text, " a verdict must resolve").astype(object)

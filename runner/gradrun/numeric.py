"""Finite differences: stencils, step sizes and Richardson extrapolation, as data.

Everything here works on a *delta function*: ``delta(offsets)`` returns how
the output moves when the elements being differentiated move by
``offsets`` (one per element, real or imaginary), as a (B, M) array. The
engine provides one that touches only what each perturbation reaches; a
black-box function provides one by calling the function. A delta function
may also take a stack of offsets, (K, n): K offsets of every element, in
one evaluation (``stacking``); every pass here asks for all the offsets it
needs at once (``evaluate``), since a batched black box pays a fixed cost per
call (torch's vmap: about a millisecond) on top of a cost per row.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}


@dataclass(frozen=True)
class Stencil:
    offsets: tuple  # multiples of the step
    weights: tuple  # derivative = sum(weight * delta(offset * step)) / step
    order: int  # truncation error is O(step ** order)


STENCILS = {
    "forward": Stencil((1.0,), (1.0,), 1),
    "backward": Stencil((-1.0,), (-1.0,), 1),
    "central": Stencil((1.0, -1.0), (0.5, -0.5), 2),
    "central4": Stencil((1.0, -1.0, 2.0, -2.0), (2 / 3, -2 / 3, -1 / 12, 1 / 12), 4),
}

# step: auto = factor * eps ** exponent * max(|x|, floor): the step that balances
# truncation (step ** order) against round-off (eps / step), relative to the
# element (a step larger than a tiny input would measure another function);
# the floor, for elements at or near 0, is the input's own typical size
# (``step_floor``), never above 1.
AUTO_STEP = {
    "forward": (1.0, 1 / 2),
    "backward": (1.0, 1 / 2),
    "central": (1.0, 1 / 3),
    "central4": (1.0, 1 / 5),
    "richardson": (1.0, 1 / 7),  # the largest of RICHARDSON_TRIES base steps
    "complex": (1e-20, 0.0),  # no subtraction, so no round-off to balance
}

ORDER = {**{k: s.order for k, s in STENCILS.items()}, "richardson": 6, "complex": 2}

# Round-off in a real-step derivative is about gain * eps * |f| / step: the
# stencil's weights over the step, and for Richardson the extrapolation
# weights (64 D(h/4) - 20 D(h/2) + D(h)) / 45 on top.
ROUNDOFF_GAIN = {"forward": 2.0, "backward": 2.0, "central": 1.0, "central4": 1.5, "richardson": 7.0,
                 "complex": 0.0}

# Richardson tries base steps h, h/4, h/16, ... and keeps, element by element,
# the one with the smallest error estimate: the step that suits a function
# is not known in advance (sin near x = 1000 wants a far smaller one than
# max(1, |x|) suggests).
RICHARDSON_TRIES = 5


def roundoff(method: str, eps: float, magnitude, h):
    """Round-off bound of the numeric derivative: magnitudes (M,) or (M, N), (N,) steps -> (M, N)."""
    magnitude = np.abs(magnitude)
    if magnitude.ndim == 1:
        magnitude = magnitude[:, None]
    return ROUNDOFF_GAIN[method] * eps * magnitude / np.asarray(h)[None, :]


def step_floor(x) -> float:
    """The smallest scale an auto step is relative to: the RMS of the input's nonzero
    entries, at most 1 (1 when every entry is 0: nothing else is known)."""
    x = np.abs(np.real(np.asarray(x, dtype=np.complex128))).ravel()
    x = x[np.isfinite(x) & (x > 0)]
    return min(1.0, float(np.sqrt(np.mean(x * x)))) if x.size else 1.0


def steps(method: str, x, step, eps: float, floor: float = 1.0) -> np.ndarray:
    """The step for every element: ``step`` when given, else the method's auto step."""
    x = np.abs(np.real(np.asarray(x, dtype=np.complex128)))
    if step != "auto" and step is not None:
        return np.full(x.shape, float(step))
    factor, exponent = AUTO_STEP[method]
    return factor * eps**exponent * np.maximum(floor, x)


def stacking(evaluate_rows, rows, limit: int, calls: int = 1):
    """The delta function of the elements ``rows``, from ``evaluate_rows(rows, offsets)``
    -> ((B, M) deltas, (B,) kinks): it takes (n,) offsets, or a (K, n) stack of them,
    evaluated together, at most ``limit`` rows a call, and up to ``calls`` calls at once
    (threads: a black box whose calls release the GIL, torch's). The calls are the same
    whatever ``calls`` is, so the deltas are the same bits."""
    def delta(offsets):
        offsets = np.asarray(offsets)
        if offsets.ndim == 1:
            return evaluate_rows(rows, offsets)
        k, n = offsets.shape
        if not offsets.size:  # nothing to move: an empty evaluation gives the output's size
            d, kink = evaluate_rows(rows[:0], offsets.reshape(-1))
            return d.reshape((k, n) + d.shape[1:]), kink.reshape(k, n)
        where, flat, step = np.tile(rows, k), offsets.reshape(-1), max(1, int(limit))
        parts = _calls(evaluate_rows, [(where[s:s + step], flat[s:s + step]) for s in range(0, len(flat), step)],
                       calls)
        d = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        kink = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        return d.reshape((k, n) + d.shape[1:]), np.asarray(kink).reshape(k, n)

    delta.stacks = True
    return delta


def _calls(evaluate_rows, parts, calls):
    """``evaluate_rows`` of every part, in order; up to ``calls`` of them at once, from
    threads made for these parts (a fresh thread starts from torch's process-wide thread
    count, not from what an earlier call left in a kept one)."""
    if calls <= 1 or len(parts) <= 1:
        return [evaluate_rows(*p) for p in parts]
    with ThreadPoolExecutor(min(calls, len(parts)), thread_name_prefix="gradrun-calls") as pool:
        return list(pool.map(lambda p: evaluate_rows(*p), parts))


def evaluate(delta, offsets):
    """``delta`` at K offsets of every element, offsets (K, n): ((K, n, M) deltas, (K, n)
    kinks); in one evaluation where the delta function takes a stack (``stacking``), else K."""
    if getattr(delta, "stacks", False):
        return delta(np.asarray(offsets))
    outs = [delta(o) for o in offsets]
    return [d for d, _ in outs], [k for _, k in outs]


def stencils(delta, pairs) -> list:
    """Several stencils at their steps, ``[(stencil, h)]``, in one evaluation: for each,
    sum(w * delta(s * h)) / h and whether any of its evaluations met a kink.

    Where ``delta.primal`` gives the elements' values (float64), a stencil of one or two
    points is evaluated at its offsets as x + s * h rounds them (``realized``) and divided
    by the distance between its points as they are: x's rounding over the step is no error
    (sin at x = 1e9 + 0.3 and a step of 0.09, 700 000 of x's rounding units, was 2e-7 off)."""
    x = getattr(delta, "primal", None)
    offsets = [realized(x, s * h) if _realizes(stencil, x) else s * h for stencil, h in pairs for s in stencil.offsets]
    d, k = evaluate(delta, offsets)
    out, at = [], 0
    for stencil, h in pairs:
        total = 0.0
        kink = np.zeros(len(h), dtype=bool)
        for w in stencil.weights:
            total = total + w * d[at]
            kink |= k[at]
            at += 1
        out.append((total / _span(stencil, h, offsets[at - len(stencil.offsets):at], x)[:, None], kink))
    return out


def realized(x, offset):
    """The offsets from x that x + offset rounds to (the subtraction is exact: Sterbenz),
    the offset itself where either is not finite."""
    moved = (x + offset) - x
    return np.where(np.isfinite(moved), moved, offset)


def _realizes(stencil, x) -> bool:
    """Whether the stencil's points are taken as x + s * h rounds them: one or two points, x known."""
    return x is not None and len(stencil.offsets) <= 2


def _span(stencil, h, offsets, x):
    """What a stencil's weighted sum is divided by: h, or for a realized stencil of one or two
    points the step its points span, by its nominal offsets' measure (h where x did not move)."""
    if not _realizes(stencil, x):
        return h
    nominal = stencil.offsets[0] - (stencil.offsets[1] if len(offsets) == 2 else 0.0)
    span = (offsets[0] - (offsets[1] if len(offsets) == 2 else 0.0)) / nominal
    return np.where(span != 0, span, h)


def stencil_derivative(delta, stencil: Stencil, h):
    """sum(w * delta(s * h)) / h, and whether any evaluation met a kink."""
    return stencils(delta, [(stencil, h)])[0]


def derivative(delta, method: str, h):
    """The numeric derivative by ``method`` at step h (per row).

    Returns ``(value, error_estimate, kink, step)``: the error estimate is NaN
    for methods that do not produce one (see ``truncation_estimate``), and
    step is the step the value rests on (Richardson's finest chosen level, for
    the round-off bound).
    """
    if method == "complex":
        d, kink = delta(1j * h)
        return np.imag(d) / h[:, None], np.zeros(d.shape), kink, h
    if method == "richardson":
        tries, _ = _richardson(delta, [h / 4**k for k in range(RICHARDSON_TRIES)])
        best, best_est, kink = tries[0]
        chosen = np.broadcast_to(h[:, None], best.shape).copy()
        for k, (value, est, more) in enumerate(tries[1:], start=1):
            better = est < best_est
            best, best_est = np.where(better, value, best), np.where(better, est, best_est)
            chosen = np.where(better, (h / 4**k)[:, None], chosen)
            kink |= more
        return best, best_est, kink, chosen.min(axis=1, initial=np.inf) if best.shape[1] else h
    d, kink = stencil_derivative(delta, STENCILS[method], h)
    return d, np.full(d.shape, np.nan), kink, h


def richardson_level(delta, h):
    """One Richardson level at base steps h: ``(value, error_estimate, kink, finest step)``."""
    (value, est, kink), = _richardson(delta, [h])[0]
    return value, est, kink, h / 4


def richardson_chain(delta, h, first=None):
    """``richardson_level``'s four, then its finest central difference as value (n, M) and
    kink (n,): the coarsest of the level at base h/4, which takes it as ``first`` (value,
    kink) instead of evaluating those points again."""
    ((value, est, kink),), (finest, finest_kink) = _richardson(delta, [h], first)
    return value, est, kink, h / 4, finest, finest_kink


def _richardson(delta, bases, first=None) -> tuple:
    """At each base step h of ``bases``, central differences at h, h/2, h/4 extrapolated
    twice (error O(h**6)), and an estimate: ([(value, estimate, kink)], the finest central
    difference), in one evaluation. A base a quarter of the one before shares its
    coarsest differences with that one's finest, which are not evaluated twice; ``first``
    is the first base's coarsest, when already known."""
    central = STENCILS["central"]
    steps = [h * f for h in bases for f in (1.0, 0.5, 0.25)]
    shared = [i % 3 == 0 and ((i and np.array_equal(s, steps[i - 1])) or (not i and first is not None))
              for i, s in enumerate(steps)]
    fresh = iter(stencils(delta, [(central, s) for s, known in zip(steps, shared) if not known]))
    levels = []
    for i, known in enumerate(shared):
        levels.append((levels[-1] if i else first) if known else next(fresh))
    out = []
    for at in range(0, len(levels), 3):
        (d0, k0), (d1, k1), (d2, k2) = levels[at:at + 3]
        r1 = (4 * d1 - d0) / 3
        r2 = (4 * d2 - d1) / 3
        best = (16 * r2 - r1) / 15
        # both lower levels' distance: conservative
        out.append((best, np.abs(best - r2) + np.abs(best - r1), k0 | k1 | k2))
    return out, levels[-1]


def truncation_estimate(delta, method: str, h, value):
    """Estimate the error of ``value`` (method at step h) from the same method at 2h."""
    coarse, _, _, _ = derivative(delta, method, 2 * h)
    return np.abs(coarse - value) / (2 ** ORDER[method] - 1)


# The round-off noise of f itself, measured (Moré & Wild's ECnoise): f at NOISE_POINTS
# points a spacing apart, where a smooth f's high differences vanish and what is left is
# noise, sigma_k ~ sqrt(gamma_k * mean(diff_k ** 2)), gamma_k = k!^2 / (2k)!. An estimate
# counts where the orders agree (within NOISE_AGREE), the highest differences change
# sign and the values are not a plateau. Noise does not depend on the spacing: the
# largest spacing's estimate that another spacing confirms is kept (round-off that is
# smooth at a tiny spacing is still noise at the step's); a spacing above the function's
# own scale (a pole of an ill-conditioned solve nearby) confirms nothing, and where no two
# agree the smallest estimate is kept, which never loosens a tolerance more than needed.
NOISE_POINTS = 12
NOISE_SPACINGS = (1e-2, 1e-4, 1e-6)  # times the element's central step
NOISE_ORDERS = (3, 4, 5, 6)
NOISE_AGREE = 4.0
NOISE_SQUARES = (1e-100, 1e100)  # deltas outside these are scaled before they are squared


def noise(delta, h):
    """The round-off noise of f along each element, (n, M): the size of the numbers an
    opaque computation cancels (1 + erf(-6), a solve's residual) that its result does not show.
    A spacing's points in one evaluation (no more of them held at once than one spacing's:
    a wide output's deltas are large), f at the element itself once for all."""
    centre, estimates = None, []
    for spacing in NOISE_SPACINGS:
        start = 1 if centre is not None else 0
        d, _ = evaluate(delta, [np.full(len(h), k * spacing) * h for k in range(start, NOISE_POINTS)])
        centre = d[0] if centre is None else centre
        estimates.append(_noise_at(np.stack([centre] + list(d[1 - start:]))))
    estimates = np.array(estimates)  # (S, n, M)
    # an estimate another spacing confirms, the largest such; else the smallest that counts
    found = np.full(estimates.shape[1:], np.nan)
    for i, e in enumerate(estimates):
        others = np.delete(estimates, i, axis=0)
        confirmed = np.any((others <= NOISE_AGREE * e) & (e <= NOISE_AGREE * others), axis=0)
        found = np.where(np.isnan(found) & confirmed, e, found)
    found = np.where(np.isnan(found), np.nanmin(np.where(np.isnan(estimates), np.inf, estimates), axis=0), found)
    return np.where(np.isfinite(found), found, 0.0)


def _noise_at(values):
    """ECnoise at one spacing from f's deltas at its NOISE_POINTS points, (NOISE_POINTS, n, M):
    (n, M), NaN where it does not count. Values far from 1 are scaled to their largest before
    they are squared: the noise of outputs below 1e-154 (attention probabilities of 1e-200)
    squared to 0, and f read as noiseless there (above 1e154, to inf)."""
    size = np.max(np.abs(np.where(np.isfinite(values), values, 0.0)), axis=0)
    size = np.where((size > 0) & ((size < NOISE_SQUARES[0]) | (size > NOISE_SQUARES[1])), size, 1.0)
    scaled = values / size
    sigma = np.array([size * np.sqrt(math.factorial(k) ** 2 / math.factorial(2 * k)
                                     * np.mean(np.diff(scaled, n=k, axis=0) ** 2, axis=0))
                      for k in NOISE_ORDERS])
    low, high = sigma.min(axis=0), sigma.max(axis=0)
    moving = np.count_nonzero(np.diff(values, axis=0), axis=0) >= NOISE_POINTS // 2  # not a plateau
    top = np.sign(np.diff(values, n=NOISE_ORDERS[-1], axis=0))
    random = (top.max(axis=0) > 0) & (top.min(axis=0) < 0)  # noise changes sign; a smooth part does not
    valid = np.isfinite(high) & (low > 0) & (high <= NOISE_AGREE * low) & moving & random
    return np.where(valid, np.median(sigma, axis=0), np.nan)


def one_sided(delta, h):
    """The backward and forward differences, for showing both sides of a kink."""
    (minus, _), (plus, _) = stencils(delta, [(STENCILS["backward"], h), (STENCILS["forward"], h)])
    return minus, plus


# ----------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol_scale: float  # atol = atol_scale * the largest entry of the Jacobian row


TOLERANCES = {
    "float64": Tolerance(rtol=1e-8, atol_scale=1e-10),
    "float32": Tolerance(rtol=1e-4, atol_scale=1e-4),
}

# What a measurement must resolve, relative to the element's own derivative, for its verdict to be a pass: the error a check of that dtype claims
# to see (docs/pass-rule.md). Where the numeric side's own uncertainty stays
# above both this and the element's tolerance, the element is unresolved.
RESOLVE = {"float64": 1e-6, "float32": 1e-3}

# However exact the gradient, nothing finer than round-off in the output can be
# compared: every element is allowed ROUNDOFF_FLOOR * eps * max(|f(x)|, tiny) / max(1, |x_j|).
ROUNDOFF_FLOOR = 256


def tolerance(scale, num, est, dtype: str, settings):
    """atol + rtol * |num| + 2 * est: atol and rtol from the spec, else from the dtype's
    row of TOLERANCES with atol relative to ``scale`` (a Jacobian row's largest entry,
    or for a projection the sum of its terms)."""
    t = TOLERANCES[dtype]
    atol = settings.atol if settings.atol is not None else t.atol_scale * scale
    rtol = settings.rtol if settings.rtol is not None else t.rtol
    return atol + rtol * np.abs(num) + 2 * np.nan_to_num(est, nan=0.0)

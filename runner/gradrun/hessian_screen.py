"""Screening a large Hessian with Hessian-vector products, and localizing what the screen flags.

Along a few seeded random sign directions v, ``H v`` is computed two ways:
analytically (one forward-over-reverse HVP, ``gradrun.second_order``) and
numerically (Richardson-extrapolated differences of the exact gradient along
v). With signs of +-1, an error e in one entry H[i, j] moves component i of
every direction's ``H v`` by exactly e, so every component is compared. Each
direction is reported as one row, ``u . H v`` for a further sign vector u.

When a component disagrees, group testing over the columns finds the culprits,
as first order's screen does: the direction is split into halves, each half's
``H v_half`` is compared on the disagreeing components, and only disagreeing
halves are split again; the columns found are then checked entry by entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import numeric, screen, second_order
from .limits import MAX_AUTO_FULL_WORK

SCREEN_DIRECTIONS = 4


@dataclass
class HessianScreen:
    numeric: np.ndarray  # (K,) u . H v by differences of the gradient
    analytic: np.ndarray  # (K,) u . H v from the HVP (of the dtype being checked)
    tolerance: np.ndarray  # (K,) the sum of the components' tolerances
    bad: np.ndarray  # (K,) bool: some component of H v disagrees
    step: float
    localized: np.ndarray | None  # columns to check entry by entry; None: every column


def along(prob, v):
    """H v by differences along each row of v (K, N): (value (K, N), error bound (K, N), step)."""
    h = numeric.steps("richardson", np.array([prob.smallest_scale]), "auto", prob.eps, 0.0)[0]
    norms = np.maximum(np.linalg.norm(v, axis=1), np.finfo(float).tiny)
    value, est, kink, used = numeric.derivative(prob.delta_along(v / norms[:, None]), "richardson", np.full(len(v), h))
    mags = np.maximum(prob.input_magnitude, prob.eps)[None, :]  # component i: its input's gradient scale
    noise = numeric.ROUNDOFF_GAIN["richardson"] * prob.eps * mags / np.asarray(used).reshape(-1, 1)
    return value * norms[:, None], (np.nan_to_num(est, nan=0.0) + noise) * norms[:, None], h, kink


def compare(prob, v, rows=None):
    """Which components (K, N) of H v disagree along the rows of v, with the values and tolerances."""
    num, est, h, kink = along(prob, v)
    dtypes = [np.float64] + ([np.float32] if prob.settings.dtype == "float32" else [])
    bad = np.zeros(num.shape, dtype=bool)
    tol_shown = ana_shown = None
    for dtype in dtypes:
        ana = np.stack([second_order.hvp(prob.graph, prob.values, prob.wrt, vk, dtype) for vk in v])
        name = "float64" if dtype == np.float64 else "float32"
        spread = np.sqrt(((v / np.maximum(1.0, np.abs(prob.x))) ** 2).sum(axis=1, keepdims=True))
        # float64: each component's own input's gradient scale (``Problem.input_magnitude``);
        # float32 code's round-off follows the largest gradient entry anywhere
        mags = np.maximum(prob.input_magnitude, prob.eps)[None, :] if name == "float64" else prob.magnitude
        floor = numeric.ROUNDOFF_FLOOR * numeric.EPS[name] * mags * spread
        # atol per input, as full's per Hessian row: a block of 1e6 sets no other block's
        scale = prob.per_input_max(np.abs(np.where(np.isfinite(num), num, 0)))
        tol = numeric.tolerance(scale, num, est, name, prob.settings) + floor
        bad |= ~(np.abs(ana - num) <= tol)
        tol_shown, ana_shown = tol, ana
    if rows is not None:
        bad = bad[:, rows]
    return bad, num, ana_shown, tol_shown, h, kink


def screen_hessian(prob, rng) -> HessianScreen:
    """Compare H v along seeded random sign directions; localize the columns behind any disagreement."""
    v = rng.choice([-1.0, 1.0], size=(SCREEN_DIRECTIONS, prob.size))
    u = rng.choice([-1.0, 1.0], size=(SCREEN_DIRECTIONS, prob.size))
    bad, num, ana, tol, h, _ = compare(prob, v)
    flagged = bad.any(axis=1)
    localized = None
    if flagged.any():
        k = int(np.argmax(flagged))
        localized = localize(prob, v[k], np.flatnonzero(bad.any(axis=0)))
    return HessianScreen(np.einsum("kn,kn->k", u, num), np.einsum("kn,kn->k", u, ana), tol.sum(axis=1),
                         flagged, h, localized)


def localize(prob, v, rows):
    """Columns whose entries in the disagreeing ``rows`` disagree along v, or None if too many
    (or if f is not finite at the point: then every part of every direction disagrees)."""
    if not np.all(np.isfinite(prob.vals[prob.graph.output])):
        return None

    def disagrees(masked):
        bad, _, _, _, _, kink = compare(prob, masked, rows)
        return bad.any(axis=1) | kink

    # each test measures H v along its sets: within the work auto allows a full check, as at first order
    most = MAX_AUTO_FULL_WORK // max(2 * sum(np.size(a) for a in prob.vals), 1)
    found = screen.group_test(v, disagrees, screen.direction_rows(prob.vals), most)
    return np.array(found, dtype=np.int64) if found else None

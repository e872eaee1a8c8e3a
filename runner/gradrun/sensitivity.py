"""How far the gradient moves when the inputs move by float32's round-off.

Correct float32 code computes, at best, the exact gradient at a point within
a few rounding units of the one it was given (backward stability): every
``x - mean(x)`` it forms is off by eps·|x|. Where the gradient changes fast
on the scale of eps·|x| (a layer norm of inputs near 1e4 whose spread is 1,
a variance of values near 1e5), no float32 code can be closer than that
change, however faithful its formula, while its float64 twin is checked at
float64 precision. So the float32 tolerance includes ``WIDEN`` times that
change, measured: the float64 analytic gradient at ``DRAWS`` points moved by
eps32·|x[k]| with seeded random signs in every differentiated input, beside
the one at the point (docs/pass-rule.md); for a screen, of its projections. It
is measured only where the float32 gradient strays from the float64 one by
more than half the float32 claim (a projection: beyond it): elsewhere it
could decide nothing.
"""

from __future__ import annotations

import numpy as np

from . import numeric
from .graph import evaluate
from .reverse import vjp_rows

DRAWS = 2  # random-sign perturbations; the largest change counts
WIDEN = 4.0  # the change at one rounding unit, times this: a few operations' round-off


class Sensitivity:
    """The change of the float64 analytic Jacobian under float32 round-off of the inputs,
    per input and element, measured lazily (the moved points once, for every input)."""

    def __init__(self, graph, inputs: dict, wrt, dtype: str, seed, analytic_columns):
        self.graph, self.wrt, self.dtype = graph, list(wrt), dtype
        self.inputs = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
        self.seed = seed
        self.analytic_columns = analytic_columns  # (graph, vals, name, idx, cache) -> (M, len(idx))
        self._moved = None  # [(values, {"columns": reverse Jacobian, "screen": J^T u})] of each moved point

    def needed(self, ana, ana32, settings) -> bool:
        """Whether the float32 gradient strays from the float64 one by more than half its claim."""
        scale = np.max(np.abs(ana), axis=1, keepdims=True)
        claim = numeric.tolerance(scale, ana, 0.0, self.dtype, settings)
        return bool((np.abs(ana32 - ana) > 0.5 * claim).any())

    def widening(self, name: str, idx, ana) -> np.ndarray:
        """(M, len(idx)): ``WIDEN`` times the largest change of the analytic columns over the draws."""
        change = np.zeros(ana.shape)
        for vals, cache in self._points():
            moved = self.analytic_columns(self.graph, vals, name, idx, cache["columns"]).astype(np.float64)
            step = np.abs(moved - ana)
            change = np.maximum(change, np.where(np.isfinite(step), step, 0.0))
        return WIDEN * change

    def projection_widening(self, name: str, u, g, v) -> np.ndarray:
        """(K,): ``WIDEN`` times the largest change of a screen's u . J v, J^T u = ``g`` by
        the float64 code at the point, at the moved points (one VJP per direction and point)."""
        change = np.zeros(len(v))
        for vals, cache in self._points():
            if cache["screen"] is None:
                cache["screen"] = vjp_rows(self.graph, vals, u)
            moved = np.einsum("kn,kn->k", np.asarray(cache["screen"][name], dtype=np.float64) - g, v)
            change = np.maximum(change, np.where(np.isfinite(moved), np.abs(moved), 0.0))
        return WIDEN * change

    def _points(self) -> list:
        if self._moved is None:
            rng = np.random.default_rng([*np.atleast_1d(self.seed), 32])
            eps = numeric.EPS[self.dtype]
            self._moved = []
            for _ in range(DRAWS):
                moved = dict(self.inputs)
                for name in self.wrt:
                    x = self.inputs[name]
                    moved[name] = x + eps * np.abs(x) * rng.choice((-1.0, 1.0), size=x.shape)
                self._moved.append((evaluate(self.graph, moved, np.float64), {"columns": {}, "screen": None}))
        return self._moved

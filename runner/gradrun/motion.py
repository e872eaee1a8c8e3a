"""Deltas of batched perturbations and how a step moves a value.

A perturbed node is None (unmoved), ``Sparse`` or ``Dense``. Both store deltas:
the perturbed value minus the primal value, one row per perturbation in the
batch. Sparse rows list the flat positions that moved (the same count in every
row, possibly repeated, repeats adding up); Dense rows hold the whole array.
``Motion`` says whether the step is real or imaginary (complex step); the kink
and branch tests say which rows reached a point where a primitive is not
differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import numpy as np


@dataclass
class Sparse:
    idx: np.ndarray  # (B, K) flat positions
    delta: np.ndarray  # (B, K)
    unique: bool = True  # no position repeats within a row


@dataclass
class Dense:
    delta: np.ndarray  # (B, *shape)


@lru_cache(maxsize=256)
def broadcast_reach(shape: tuple, out_shape: tuple):
    """For broadcasting ``shape`` to ``out_shape``: the source of every output
    position, and the output positions every source element reaches."""
    size = int(np.prod(shape, dtype=np.int64))
    source = np.broadcast_to(np.arange(size).reshape(shape), out_shape).ravel()
    reach = np.argsort(source, kind="stable").reshape(size, -1)
    return source, reach


@lru_cache(maxsize=256)
def moved_positions(shape: tuple, axes=None):
    """For a transpose of ``shape`` (by ``axes``, default reversed): where each flat input position goes."""
    size = int(np.prod(shape, dtype=np.int64))
    return np.argsort(np.arange(size).reshape(shape).transpose(axes).ravel(), kind="stable")


def densify(p, shape, batch):
    if p is None or isinstance(p, Dense):
        return p
    size = int(np.prod(shape, dtype=np.int64))
    out = np.zeros((batch, size), dtype=p.delta.dtype)
    rows = np.broadcast_to(np.arange(batch)[:, None], p.idx.shape)
    np.add.at(out, (rows, p.idx), p.delta)
    return Dense(out.reshape((batch,) + tuple(shape)))


def coalesce(p: Sparse) -> Optional[Sparse]:
    """Merge repeated positions in every row; None when rows would differ in length."""
    if p.unique:
        return p
    order = np.argsort(p.idx, axis=1, kind="stable")
    idx = np.take_along_axis(p.idx, order, axis=1)
    delta = np.take_along_axis(p.delta, order, axis=1)
    first = np.ones(idx.shape, dtype=bool)
    first[:, 1:] = idx[:, 1:] != idx[:, :-1]
    counts = first.sum(axis=1)
    if not np.all(counts == counts[0]):
        return None
    starts = np.flatnonzero(first.ravel())
    summed = np.add.reduceat(delta.ravel(), starts).reshape(len(idx), -1)
    return Sparse(idx.ravel()[starts].reshape(len(idx), -1), summed, True)


INFINITESIMAL = 1e-12  # an imaginary step this small moves f linearly (auto complex steps are ~1e-20)


@dataclass(frozen=True)
class Motion:
    """How a delta moves a value: a real step, or an imaginary one (complex
    step), whose deltas are carried as their real imaginary parts so that
    linear ops stay in real arithmetic.

    An infinitesimal imaginary step d moves f(a) by exactly d * Im f(a + ih) / h
    for any other infinitesimal h (the complex step has no truncation error
    left at that size), so ``slopes`` measures Im f(a + ih) / h once per value
    of a one-argument op's argument and every perturbation reuses it. The
    slope comes from evaluating the forward function at a complex point, never
    from the op's derivative rule.
    """

    imaginary: bool = False
    cache: dict = field(default_factory=dict)

    def infinitesimal(self, d) -> bool:
        if not self.imaginary:
            return False
        if np.iscomplexobj(d):
            return float(np.max(np.abs(d), initial=0.0)) <= INFINITESIMAL
        # the largest magnitude from the two extremes: no array of absolute values (a NaN fails both)
        return bool(d.max(initial=0.0) <= INFINITESIMAL) and bool(-d.min(initial=0.0) <= INFINITESIMAL)

    def slopes(self, i, forward, a):
        """Im f(a + ih) / h for every element of the argument a of node i (cached)."""
        if i not in self.cache:
            h = 1e-20 * np.maximum(1.0, np.abs(a))
            self.cache[i] = np.imag(forward(a + 1j * h)).ravel() / h.ravel()
        return self.cache[i]

    def lift(self, x, d):
        return x + 1j * d if self.imaginary else x + d

    def change(self, new, old):
        return np.imag(new) if self.imaginary else new - old


BRANCH_PROBE = 1e-7  # relative size of the real steps that stand in for an imaginary one at a branch


def probes(motion, new):
    """The moved arguments a branch is looked at with: the real moves themselves, or, for an
    imaginary step (which never moves a branch), real neighbours on both sides of it."""
    if not motion.imaginary:
        return [new]
    return [[n if not np.iscomplexobj(n) else
             np.real(n) + side * BRANCH_PROBE * np.maximum(1.0, np.abs(np.real(n))) * np.sign(np.imag(n))
             for n in new] for side in (1, -1)]


def branch_rows(prim, params, base, new, batch, motion):
    """Rows whose perturbation changes, or starts on the edge of, the discrete choice a primitive
    makes (a mask, an argmax): a kink reached or crossed."""
    before = np.asarray(prim.branch(*base, **params))
    hit = np.zeros(batch, dtype=bool)
    for moved in probes(motion, new):
        after = np.asarray(prim.branch(*moved, **params))
        changed = np.broadcast_to(after != before, np.broadcast_shapes(after.shape, before.shape))
        hit |= changed.reshape(batch, -1).any(axis=1)
    return hit


def kink_rows(prim, x_base, x_new, moved):
    """Rows whose perturbation reaches or crosses a point where ``prim`` has a kink."""
    hit = np.zeros(moved.shape[0], dtype=bool)
    for k in prim.kinks:
        side = (np.real(x_base) - k) * (np.real(x_new) - k) <= 0
        hit |= (side & moved).reshape(len(hit), -1).any(axis=1)
    return hit


"""A mutation suite for gradrun's verdicts: correct hand-written VJPs and buggy ones.

Each ``Case`` is a small function or layer in plain numpy, its correct VJP
and a list of ``(bug name, buggy vjp)`` mutants, with a seeded generator of
inputs that keeps away from kinks. gradrun must pass every correct VJP and
flag every mutant, in float64 and in float32.

Forwards and VJPs are dtype-generic (Python-float constants only), because
gradrun calls them with float32 inputs for the float32 analytic and with
float64 inputs for the formula check.

The mutation operators that apply to any VJP (one entry off by a relative
amount, the whole gradient off) live here; the bugs particular to one
function live beside it, in ``elementwise``, ``layers`` and ``losses``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    forward: Callable  # parameter names are the input names
    vjp: Callable  # (cotangent, *inputs) -> one cotangent per input
    inputs: dict  # input name -> generator(rng) -> array
    bugs: list = field(default_factory=list)  # of (bug name, buggy vjp)
    settings: dict = field(default_factory=dict)  # spec keys the case is checked with (method, step)
    known_misses: dict = field(default_factory=dict)  # bug name -> why gradrun cannot flag it (an xfail)

    def point(self) -> dict:
        """The case's inputs, reproducible from its name."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        return {k: gen(rng) for k, gen in self.inputs.items()}

    def variants(self) -> list:
        """(variant name, vjp, should pass): the correct VJP first, then every mutant."""
        return [("correct", self.vjp, True)] + [(b, v, False) for b, v in self.bugs]


# ------------------------------------------------------------------ input generators


def normal(*shape, scale=1.0):
    return lambda rng: scale * rng.standard_normal(shape)


def uniform(*shape, low=-1.0, high=1.0):
    return lambda rng: rng.uniform(low, high, shape)


def away(*shape, low=-3.0, high=3.0, kinks=(0.0,), margin=0.2):
    """Uniform in [low, high], at least ``margin`` from every kink."""
    def gen(rng):
        x = rng.uniform(low, high, shape)
        while True:
            near = np.zeros(shape, dtype=bool)
            for k in kinks:
                near |= np.abs(x - k) < margin
            if not near.any():
                return x
            x = np.where(near, rng.uniform(low, high, shape), x)

    return gen


def zeros(*shape):
    return lambda rng: np.zeros(shape)


# ------------------------------------------------------------------ mutation operators


def cotangents(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def entry_off(vjp, rel, arg=0, index=None):
    """One entry of input ``arg``'s cotangent off by ``rel`` relative (index: flat, default the middle)."""
    def bad(g, *xs):
        cts = cotangents(vjp(g, *xs))
        c = np.array(cts[arg], copy=True)
        flat = c.reshape(-1)
        j = flat.size // 2 if index is None else index
        flat[j] = flat[j] * (1 + rel)
        cts[arg] = c
        return tuple(cts)

    bad.planted = (arg, index)  # for the check that the planted entry is a typical one
    return bad


def all_off(vjp, rel):
    """Every cotangent off by ``rel`` relative."""
    def bad(g, *xs):
        return tuple(c * (1 + rel) for c in cotangents(vjp(g, *xs)))

    return bad


def precision_ladder(vjp, arg=0, index=None) -> list:
    """The small-error mutants: one entry off by 1e-2, 1e-4, 1e-6; everything off by 1e-3, 1e-6."""
    return [(f"entry_off_1e-{k}", entry_off(vjp, 10.0 ** -k, arg, index)) for k in (2, 4, 6)] + [
        (f"all_off_1e-{k}", all_off(vjp, 10.0 ** -k)) for k in (3, 6)
    ]


# ------------------------------------------------------------------ shared numerics


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_vjp(g, s, axis=-1):
    return s * (g - (g * s).sum(axis=axis, keepdims=True))


def all_cases() -> list:
    from . import elementwise, fresh, hard, layers, losses, regimes, stress

    cases = elementwise.CASES + layers.CASES + losses.CASES + stress.CASES + regimes.CASES + hard.CASES + fresh.CASES
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases

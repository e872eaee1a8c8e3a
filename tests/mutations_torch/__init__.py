"""A torch mutation suite: PyTorch code with correct hand-written backward passes and buggy ones.

Each ``Case`` builds the code to check from a backward rule (an
``autograd.Function``, a module built on one, or code torch differentiates
itself, which has no rule and no mutants). gradrun must pass every correct
variant and flag every mutant, with default settings, in float64 and float32.

Rules are ``backward(grad, *inputs) -> one gradient per input`` (None for an
input that is not differentiated, such as integer labels or a dropout mask)
and work in any dtype. The bugs particular to one function live beside it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


def function(name: str, forward: Callable, backward: Callable):
    """An autograd.Function subclass: ``forward(*inputs)`` (its parameter names are the
    input names), ``backward(grad, *inputs)``; vmappable (generate_vmap_rule)."""

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward_pass(ctx, grad):
        return tuple(backward(grad, *ctx.saved_tensors))

    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward), "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward_pass), "generate_vmap_rule": True})


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable  # rule -> the code to check (a Function, module class or callable)
    rule: Callable | None  # the correct backward; None where torch differentiates the code itself
    inputs: dict  # forward input name -> generator(rng) -> array
    bugs: list = field(default_factory=list)  # of (bug name, buggy rule)
    wrt: tuple | None = None  # default: every given input
    init: dict | None = None  # an nn.Module subclass's constructor arguments
    mode: str = "eval"
    known_misses: dict = field(default_factory=dict)  # bug name -> why gradrun cannot flag it (an xfail)

    def point(self) -> dict:
        """The case's inputs, reproducible from its name."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        return {k: gen(rng) for k, gen in self.inputs.items()}

    def variants(self) -> list:
        """(variant name, code, should pass): the correct code first, then every mutant."""
        return [("correct", self.build(self.rule), True)] + [(b, self.build(r), False) for b, r in self.bugs]


def normal(*shape, scale=1.0):
    return lambda rng: scale * rng.standard_normal(shape)


def uniform(*shape, low=-1.0, high=1.0):
    return lambda rng: rng.uniform(low, high, shape)


def labels(n, classes):
    return lambda rng: rng.integers(0, classes, n).astype(np.float64)


def replace(rule, k, new):
    """A mutant of ``rule`` whose k-th gradient is ``new(grad, *inputs, correct)``."""
    def mutant(grad, *xs):
        out = list(rule(grad, *xs))
        out[k] = new(grad, *xs, out[k])
        return tuple(out)

    return mutant


def all_cases() -> list:
    from . import autograd_only, elementwise, fresh, layers, losses

    return [*elementwise.CASES, *layers.CASES, *losses.CASES, *autograd_only.CASES, *fresh.CASES]

"""JAX: gradrun beside jax.test_util.check_grads on the JAX mutation suite, and the time
of a full check of a 15k-element function beside 2N separate calls.

1. Every variant of tests/jax_mutations.py (correct custom_jvp / custom_vjp rules and
   buggy ones) checked by gradrun (default settings, through the JAX adapter) and by
   ``check_grads(f, args, order=1)`` with its defaults (modes fwd and rev, its own
   step and tolerances), in float64 (x64 on) and float32. check_grads cannot take the
   JVP of a custom_vjp function: it raises, shown as ``error``, and it is run again
   with ``modes=["rev"]`` (the ``rev`` columns). A verdict is ``pass`` or ``FLAG``.
2. The stable logsumexp of experiments/jrules.py (custom_jvp) at x ~ N(0, 1) of 15 000
   elements, every element checked (``check: full``): gradrun with JAX's vmap batches,
   gradrun with one call per perturbation, and 2N separate calls of the function alone
   (jitted, and eager; eager timed over 1 500 elements and scaled, marked ~), the
   central differences any full check must make. Wall and CPU seconds (all threads).
3. A full check of both inputs of sum(tanh(X @ W)), X 64x256, W 256x64 (32 768
   elements): gradrun with vmap batches, beside 2N separate jitted calls for X alone.

Run: .venv/bin/python benchmarks/bench_jax.py [--quick]   (--quick: part 1 only)
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "experiments")]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import gradrun  # noqa: E402
from gradrun.frameworks import jax as adapter  # noqa: E402
from jax_mutations import RULES  # noqa: E402
from jrules import logsumexp  # noqa: E402

DTYPES = {"float64": np.float64, "float32": np.float32}
SIZE = 15_000
SAMPLE = 1_500  # elements the eager calls are timed over (~: scaled up to SIZE)


def gradrun_verdict(rule, fn, dtype) -> str:
    wrapped = adapter.function(fn, "f")
    result = gradrun.check(f"f({', '.join(wrapped.params)})", rule.point(), functions={"f": wrapped},
                           dtype=dtype, name=rule.name)
    return "error" if result.error else ("pass" if result.passed else "FLAG")


def check_grads_verdict(rule, fn, dtype, modes=None) -> str:
    args = [np.asarray(v, dtype=DTYPES[dtype]) for v in rule.point().values()]
    kwargs = {} if modes is None else {"modes": modes}
    with adapter.x64() if dtype == "float64" else contextlib.nullcontext():
        try:
            check_grads(fn, [jnp.asarray(a) for a in args], order=1, **kwargs)
        except AssertionError:
            return "FLAG"
        except TypeError:
            return "error"
    return "pass"


def suite():
    header = f"{'rule':24} {'variant':26} {'want':5}" + "".join(
        f" {tool + ' ' + d[-2:]:>14}" for d in DTYPES for tool in ("gradrun", "check_grads", "rev"))
    print(header)
    tally: dict = {}
    for rule in RULES:
        for variant, fn, should_pass in rule.variants():
            row = {}
            for dtype in DTYPES:
                row["gradrun", dtype] = gradrun_verdict(rule, fn, dtype)
                row["check_grads", dtype] = check_grads_verdict(rule, fn, dtype)
                row["rev", dtype] = (check_grads_verdict(rule, fn, dtype, ["rev"])
                                     if row["check_grads", dtype] == "error" else row["check_grads", dtype])
            for key, verdict in row.items():
                counts = tally.setdefault(key, {"correct passed": 0, "bugs flagged": 0, "errors": 0})
                counts["correct passed" if should_pass else "bugs flagged"] += verdict == (
                    "pass" if should_pass else "FLAG")
                counts["errors"] += verdict == "error"
            print(f"{rule.name:24} {variant:26} {'pass' if should_pass else 'FLAG':5}"
                  + "".join(f" {row[k]:>14}" for k in row))
    correct = sum(1 for r in RULES)
    bugs = sum(len(r.bugs) for r in RULES)
    print(f"\n{correct} correct rules, {bugs} buggy ones")
    for (tool, dtype), c in tally.items():
        print(f"  {tool:12} {dtype}: correct passed {c['correct passed']}/{correct}, "
              f"bugs flagged {c['bugs flagged']}/{bugs}, errors {c['errors']}")


def timed(fn):
    """(wall seconds, CPU seconds of every thread of this process, fn's result)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out


def separate_calls(f, x, h=1e-6, sample=None):
    """2N central-difference calls of ``f`` alone, one perturbed element each (over
    the first ``sample`` elements only, when given: the caller scales the time up)."""
    def run():
        with adapter.x64():
            for j in range(x.size if sample is None else sample):
                for s in (h, -h):
                    moved = x.copy()
                    moved[j] += s
                    np.asarray(f(jnp.asarray(moved)))
    return run


def large():
    x = np.random.default_rng(0).normal(size=SIZE)
    fn = adapter.function(logsumexp, "lse")
    one_by_one = dataclasses.replace(fn, forward_batch=None, jvp_batch=None)

    def full(f):
        return lambda: gradrun.check("lse(x)", {"x": x}, functions={"lse": f}, check="full")

    print(f"\nstable logsumexp (custom_jvp), {SIZE} elements, check: full")
    jitted = jax.jit(logsumexp)
    with adapter.x64():
        jitted(jnp.asarray(x))  # compiled before timing
    rows = [("gradrun, vmap batches", full(fn)), ("gradrun, one call per perturbation", full(one_by_one)),
            (f"2N = {2 * SIZE} separate jitted calls", separate_calls(jitted, x)),
            (f"~2N = {2 * SIZE} separate eager calls", separate_calls(logsumexp, x, sample=SAMPLE))]
    times = {}
    print(f"  {'':44} {'wall s':>8} {'CPU s':>8}")
    for label, run in rows:
        wall, cpu, result = timed(run)
        scale = SIZE / SAMPLE if label.startswith("~") else 1  # ~: timed over SAMPLE elements, scaled
        times[label] = (wall * scale, cpu * scale)
        verdict = "" if result is None else f"  {'pass' if result.passed else 'FAIL'}, {len(result.records)} elements"
        print(f"  {label:44} {wall * scale:8.2f} {cpu * scale:8.2f}{verdict}")
    first = times["gradrun, vmap batches"]
    for label in list(times)[1:]:
        print(f"  gradrun with vmap batches takes {first[0] / times[label][0]:.2f} of the wall time "
              f"({first[1] / times[label][1]:.2f} of the CPU time) of: {label}")


def loss_of_two(x, w):
    return jnp.sum(jnp.tanh(x @ w))


def two_inputs(shape=(64, 256, 64)):
    """A full check of both inputs of sum(tanh(X @ W)): a chunk moves one input while the other,
    the same in every row, goes into the vmapped call once (``frameworks.jax._axes``)."""
    n, k, m = shape
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(n, k)), rng.normal(size=(k, m)) * 0.05
    fn = adapter.function(loss_of_two, "loss")
    print(f"\nsum(tanh(X @ W)), X {n}x{k}, W {k}x{m}: {x.size + w.size} elements, check: full")
    wall, cpu, result = timed(lambda: gradrun.check("loss(x, w)", {"x": x, "w": w}, functions={"loss": fn},
                                                    check="full"))
    print(f"  {'gradrun, vmap batches':44} {wall:8.2f} {cpu:8.2f}  {'pass' if result.passed else 'FAIL'}, "
          f"{len(result.records)} elements")
    jitted = jax.jit(loss_of_two)

    def separate():
        with adapter.x64():
            jw = jnp.asarray(w)
            jitted(jnp.asarray(x), jw)
            for j in range(x.size):
                for s in (1e-6, -1e-6):
                    moved = x.copy()
                    moved[np.unravel_index(j, x.shape)] += s
                    np.asarray(jitted(jnp.asarray(moved), jw))
    wall2, cpu2, _ = timed(separate)
    print(f"  {'2N separate jitted calls (X only)':44} {wall2:8.2f} {cpu2:8.2f}")


if __name__ == "__main__":
    suite()
    if "--quick" not in sys.argv:
        large()
        two_inputs()

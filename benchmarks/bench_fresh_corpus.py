"""The fresh corpus's verdicts: correct passed and buggy flagged, per framework, dtype and check.

Runs every variant of tests/mutations/fresh.py (numpy, python: code with a VJP) and
tests/mutations_torch/fresh.py (torch) with default settings, as `check: auto` (full
at these sizes) and `check: screen`, in float64 and float32, then the layers too large
for a full check, where `auto` screens: a conv2d and a GELU layer whose float32
backward computes in float16, and torch's layer norm of inputs near 1e4. Round 7
added ``jax`` (tests/jax_fresh.py: custom_vjp, custom_jvp and plain JAX, every variant
in both dtypes, auto and screen), ``hvp`` (tests/hvp_fresh.py: order 2, hand-written
HVPs and JAX double backward) and ``specs`` (tests/specs/fresh7: YAML layers and
python: VJPs named in a spec). Prints the counts and every wrong verdict (a declared
known miss included). To compare with another gradrun, put its runner first on
PYTHONPATH (the corpus is read from this checkout's tests/).

    PYTHONPATH=runner python benchmarks/bench_fresh_corpus.py [numpy|torch|large|jax|hvp|specs ...]
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import gradrun  # noqa: E402
from rows import describe  # noqa: E402

DTYPES = ("float64", "float32")
CHECKS = ("auto", "screen")


def expect(case, variant, should, dtype):
    return should or dtype not in getattr(dict(case.bugs).get(variant), "only_in", (dtype,))


def tally(cases, run, label):
    counts, wrong = {}, []
    for case in cases:
        for variant, code, should in case.variants():
            for dtype in DTYPES:
                for check in CHECKS:
                    want = expect(case, variant, should, dtype)
                    record(counts, wrong, f"{label} {case.name}/{variant}", (label, dtype, check), want,
                           run(case, code, dtype, check))
    return counts, wrong


def record(counts, wrong, what, key, want, result, got=None):
    """Count one verdict under ``key`` + its kind; a wrong one is listed with its worst row."""
    if got is None:
        got = result.passed if result.error is None else False
    c = counts.setdefault(key + ("correct passed" if want else "buggy flagged",), [0, 0])
    c[1] += 1
    c[0] += got == want
    if got != want:
        wrong.append(f"{what} {' '.join(key[1:])}: {describe(result, 1)[:200]}")


def numpy_corpus():
    from mutations import fresh

    def run(case, vjp, dtype, check):
        return gradrun.check(case.forward, case.point(), vjp=vjp, dtype=dtype, name=case.name, check=check,
                             **case.settings)

    return tally(fresh.CASES, run, "numpy")


def torch_corpus():
    import torch

    torch.set_num_threads(1)
    from gradrun.frameworks import torch as adapter
    from mutations_torch import fresh

    def run(case, code, dtype, check):
        return adapter.check(code, case.point(), wrt=case.wrt, init=case.init, mode=case.mode, dtype=dtype,
                             name=case.name, check=check)

    return tally(fresh.CASES, run, "torch")


def large():
    """Layers whose Jacobian is above screen.FULL_LIMIT: check: auto screens them."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    from gradrun.frameworks import torch as adapter
    from mutations_torch import fresh

    def gelu_layer(x, w):
        return F.gelu(x @ w).sum(-1)

    def gelu_rule(g, x, w):
        z = x @ w
        d = 0.5 * (1 + torch.erf(z / 2 ** 0.5)) + z * torch.exp(-z * z / 2) / (2 * torch.pi) ** 0.5
        gz = g.unsqueeze(-1) * d
        return gz @ w.T, x.T @ gz

    rng = np.random.default_rng(0)
    conv = {"x": rng.standard_normal((2, 4, 16, 16)), "weight": 0.3 * rng.standard_normal((4, 4, 2, 2)),
            "bias": rng.standard_normal(4)}
    gelu = {"x": rng.standard_normal((32, 40)), "w": rng.standard_normal((40, 64))}
    rows = [("conv2d 2x4x16x16", fresh.function("C", fresh.conv2d, fresh.conv2d_rule), conv, True),
            ("conv2d float16 inside", fresh.function("C", fresh.conv2d, fresh.half_in_single(fresh.conv2d_rule)),
             conv, False),
            ("gelu 32x40 @ 40x64", fresh.function("G", gelu_layer, gelu_rule), gelu, True),
            ("gelu float16 inside", fresh.function("G", gelu_layer, fresh.half_in_single(gelu_rule)), gelu, False),
            ("torch layer_norm 40x40 near 1e4", fresh.layer_norm_autograd,
             {"x": 1e4 + rng.standard_normal((40, 40))}, True)]
    counts, wrong = {}, []
    for name, code, point, should in rows:
        for dtype in DTYPES:
            want = should or dtype == "float64"  # the float16 bugs are float32's only
            start, cpu = time.perf_counter(), time.process_time()
            result = adapter.check(code, point, dtype=dtype, name=name)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"  {name:34s} {dtype}  {'pass' if result.passed else 'FAIL'}  (expected "
                  f"{'pass' if want else 'fail'})  {wall:5.2f} s wall {cpu:5.2f} s CPU")
            key = ("large", dtype, "auto", "correct passed" if want else "buggy flagged")
            c = counts.setdefault(key, [0, 0])
            c[1] += 1
            c[0] += result.passed == want
            if result.passed != want:
                wrong.append(f"large {name} {dtype}: {describe(result, 1)[:200]}")
    return counts, wrong


def jax_corpus():
    from gradrun.frameworks import jax as adapter
    from jax_fresh import CASES

    counts, wrong = {}, []
    for case in CASES:
        for variant, fn, pass64, pass32 in case.variants():
            wrapped = adapter.function(fn, "f")
            for dtype, want in (("float64", pass64), ("float32", pass32)):
                for check in CHECKS:
                    result = gradrun.check(f"f({', '.join(wrapped.params)})", case.point(), functions={"f": wrapped},
                                           dtype=dtype, check=check, name=case.name)
                    got = None
                    if want and case.unmeasurable and result.error is None:  # unresolved there is right
                        got = all(r.status == "pass" or (r.element in case.unmeasurable and r.status == "unresolved")
                                  for r in result.records)
                    record(counts, wrong, f"jax {case.name}/{variant}", ("jax", dtype, check), want, result, got)
    return counts, wrong


def hvp_corpus():
    from gradrun.frameworks import jax as adapter
    from hvp_fresh import EXPR_CASES, JAX_CASES, NUMPY_CASES
    from test_second_order_mutations import run

    counts, wrong = {}, []
    for case in NUMPY_CASES:
        for variant, hvp, want in case.variants():
            for dtype in DTYPES:
                for check in ("full", "screen"):
                    result = run(case, hvp, dtype, check)
                    got = result.passed if want else not any(
                        r.status == "fail" for r in result.records if r.check == check and r.index != -1)
                    record(counts, wrong, f"hvp {case.name}/{variant}", ("hvp", dtype, check), want, result, got)
    for name, (expr, inputs) in EXPR_CASES.items():  # built-ins, all correct
        for dtype in DTYPES:
            for check in ("full", "screen"):
                result = gradrun.check(expr, inputs, order=2, dtype=dtype, check=check, name=name)
                record(counts, wrong, f"hvp-expr {name}", ("hvp-expr", dtype, check), True, result)
    for case in JAX_CASES:
        for variant, bug, want in case.variants():
            fn = adapter.function(case.build(bug), "f")
            for dtype in DTYPES:
                result = gradrun.check(f"f({', '.join(fn.params)})", case.point(), functions={"f": fn}, order=2,
                                       dtype=dtype, name=case.name)
                record(counts, wrong, f"hvp-jax {case.name}/{variant}", ("hvp-jax", dtype, "full"), want, result)
    return counts, wrong


def specs():
    from gradrun import runner, spec
    from test_fresh7_specs import FLOAT64_ONLY, FRESH, expected

    counts, wrong = {}, []
    for path in sorted(FRESH.glob("*.yaml")):
        for exp in spec.load_spec(str(path)).experiments:
            for dtype in DTYPES:
                if dtype == "float32" and exp.name in FLOAT64_ONLY:
                    continue
                result = runner.run_experiment(exp, {"dtype": dtype})
                record(counts, wrong, f"specs {exp.name}", ("specs", dtype, "auto"), expected(exp.name, dtype), result)
    return counts, wrong


def main(which):
    parts = {"numpy": numpy_corpus, "torch": torch_corpus, "large": large, "jax": jax_corpus, "hvp": hvp_corpus,
             "specs": specs}
    counts, wrong = {}, []
    for name in which or list(parts):
        start = time.perf_counter()
        c, w = parts[name]()
        counts.update(c)
        wrong += w
        print(f"{name}: {time.perf_counter() - start:.1f} s")
    for key, (right, total) in sorted(counts.items()):
        print(f"{' '.join(key):45s} {right:3d} / {total}")
    for line in wrong:
        print("WRONG", line)


if __name__ == "__main__":
    main(sys.argv[1:])

"""gradrun passes every correct case of the fresh JAX corpus (tests/jax_fresh.py) and flags every buggy one.

Each variant is a JAX function (``custom_vjp``, ``custom_jvp`` or plain JAX)
checked through the JAX adapter with default settings, once: compiling each
variant is most of the time. Correct code runs in float32, which holds the
float64 derivative to the float64 tolerance and the float32 one to float32's,
so a false alarm in either dtype shows; a bug runs in float64, where a formula
error shows at float64 sensitivity, and a bug only float32 shows runs in
float32 (in float64 it is correct code). ``benchmarks/bench_fresh_corpus.py
--jax`` runs every variant in both dtypes. A declared known miss runs as a
strict xfail with its reason.
"""

import pytest

pytest.importorskip("jax", reason="the fresh JAX corpus needs jax (pip install 'gradrun[jax]')")

import gradrun  # noqa: E402
from gradrun.frameworks import jax as adapter  # noqa: E402
from jax_fresh import CASES  # noqa: E402
from rows import assert_verdict, describe  # noqa: E402


def params():
    out = []
    for case in CASES:
        for variant, fn, pass64, pass32 in case.variants():
            why = case.known_misses.get(variant)
            marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
            dtype, expect = ("float32", pass32) if pass64 else ("float64", False)
            out.append(pytest.param(case, adapter.function(fn, "f"), expect, dtype,
                                    id=f"{case.name}-{variant}-{dtype}", marks=marks))
    return out


@pytest.mark.parametrize("case, fn, should_pass, dtype", params())
def test_verdict(case, fn, should_pass, dtype):
    expr = f"f({', '.join(fn.params)})"
    result = gradrun.check(expr, case.point(), functions={"f": fn}, dtype=dtype, name=case.name)
    assert result.error is None, result.error
    if should_pass and case.unmeasurable:
        missed = {r.element: r.status for r in result.records if r.status != "pass"}
        assert missed == dict.fromkeys(case.unmeasurable, "unresolved"), describe(result)
        return
    assert_verdict(result, should_pass, "JAX function")


def test_corpus_size():
    variants = [v for case in CASES for v in case.variants()]
    assert sum(1 for v in variants if v[0] == "correct") >= 15
    assert sum(1 for v in variants if v[0] != "correct") >= 20

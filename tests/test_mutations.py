"""gradrun passes every correct hand-written VJP in the mutation suite and flags every buggy one.

The suite is data (``tests/mutations``): cases of (forward, correct VJP,
mutants, input generator). Each variant is checked with default settings,
in float64 and in float32.
"""

import numpy as np
import pytest

import gradrun
from mutations import all_cases, hard
from rows import assert_verdict

CASES = all_cases()
DTYPES = ("float64", "float32")

def params():
    out = []
    for case in CASES:
        for variant, vjp, should_pass in case.variants():
            for dtype in DTYPES:
                key = (case.name, variant, dtype)
                expect = should_pass or dtype not in getattr(vjp, "only_in", DTYPES)  # a float32-only bug
                out.append(pytest.param(case, vjp, expect, dtype, id="-".join(key), marks=xfails(case, variant)))
    return out


def xfails(case, variant):
    """A known miss, marked where it is declared (``Case.known_misses``: variant -> why)."""
    why = getattr(case, "known_misses", {}).get(variant)
    return [pytest.mark.xfail(reason=why, strict=True)] if why else []


@pytest.mark.parametrize("case, vjp, should_pass, dtype", params())
def test_verdict(case, vjp, should_pass, dtype):
    result = gradrun.check(case.forward, case.point(), vjp=vjp, dtype=dtype, name=case.name, **case.settings)
    assert result.error is None, result.error
    assert_verdict(result, should_pass, "VJP")


def jacobian(vjp, forward, point, arg):
    """The analytic Jacobian of ``forward`` against input ``arg``, one VJP per output element."""
    xs = list(point.values())
    out = np.asarray(forward(*xs))
    rows = []
    for k in range(out.size):
        seed = np.zeros(out.size)
        seed[k] = 1
        cts = vjp(seed.reshape(out.shape), *xs)
        cts = cts if isinstance(cts, (tuple, list)) else (cts,)
        rows.append(np.asarray(cts[arg]).ravel())
    return np.array(rows)


@pytest.mark.parametrize("case", [c for c in CASES if any(hasattr(v, "planted") for _, v in c.bugs)],
                         ids=lambda c: c.name)
def test_planted_entries_are_typical(case):
    """A one-entry mutant perturbs an entry of typical size, not a near-zero one nobody could see."""
    point = case.point()
    for bug, vjp in case.bugs:
        if not hasattr(vjp, "planted"):
            continue
        arg, index = vjp.planted
        jac = jacobian(case.vjp, case.forward, point, arg)
        j = jac.shape[1] // 2 if index is None else index
        ratio = np.max(np.abs(jac[:, j]) / np.maximum(np.abs(jac).max(axis=1), 1e-300))
        assert ratio >= 0.05, f"{case.name}/{bug}: planted entry is {ratio:.2g} of its row's largest"


def test_suite_size():
    assert len(CASES) >= 30
    assert sum(len(c.bugs) for c in CASES) >= 60


def test_the_hard_regimes_have_at_least_40_correct_and_40_buggy_cases():
    """Issue 13's classes: tiny inputs, domain edges, solves, coarse steps, float16, ..."""
    from mutations import regimes

    hard_cases = regimes.CASES + hard.CASES
    assert len(hard_cases) >= 40
    assert sum(len(c.bugs) for c in hard_cases) + len(hard.NONDETERMINISTIC) >= 40


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, make, vjp", hard.NONDETERMINISTIC, ids=[n for n, _, _ in hard.NONDETERMINISTIC])
def test_a_function_that_is_not_deterministic_is_an_error_naming_it(name, make, vjp, dtype):
    f = make()
    f.__name__ = getattr(f, "__name__", name)

    def forward(x):
        return f(x)

    forward.__name__ = name
    with pytest.raises(ValueError, match=f"{name} is not deterministic"):
        gradrun.check(forward, {"x": np.linspace(0.3, 1.2, 32)}, vjp=vjp, dtype=dtype)

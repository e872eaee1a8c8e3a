"""gradrun passes every correct PyTorch backward in the torch mutation suite and flags every buggy one.

The suite is data (``tests/mutations_torch``): autograd.Functions with hand-written
backward passes, modules built on them (parameters as inputs, dropout and
batch norm in train mode) and code torch differentiates itself. Each variant
is checked with default settings, in float64 and in float32.
"""

import pytest

torch = pytest.importorskip("torch", reason="the torch: function kind needs PyTorch (pip install 'gradrun[torch]')")

from gradrun.frameworks import torch as adapter  # noqa: E402
from mutations_torch import all_cases  # noqa: E402
from rows import assert_verdict

torch.set_num_threads(1)  # tiny tensors: one thread is faster, and immune to a busy machine's contention

CASES = all_cases()
DTYPES = ("float64", "float32")


def expected(case, variant, should_pass, dtype):
    """Whether the variant should pass in ``dtype``: a float32-only bug's rule says ``only_in``."""
    return should_pass or dtype not in getattr(dict(case.bugs).get(variant), "only_in", DTYPES)


def xfails(case, variant):
    """A known miss, marked where it is declared (``Case.known_misses``: variant -> why)."""
    why = case.known_misses.get(variant)
    return [pytest.mark.xfail(reason=why, strict=True)] if why else []


def params():
    return [pytest.param(case, variant, code, expected(case, variant, should_pass, dtype), dtype,
                         id=f"{case.name}-{variant}-{dtype}", marks=xfails(case, variant))
            for case in CASES for variant, code, should_pass in case.variants() for dtype in DTYPES]


@pytest.mark.parametrize("case, variant, code, should_pass, dtype", params())
def test_verdict(case, variant, code, should_pass, dtype):
    result = adapter.check(code, case.point(), wrt=case.wrt, init=case.init, mode=case.mode,
                           dtype=dtype, name=case.name)
    assert_verdict(result, should_pass, "backward")


def test_suite_size():
    assert len(CASES) >= 15
    assert sum(len(c.bugs) for c in CASES) >= 30

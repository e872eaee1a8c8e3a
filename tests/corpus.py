"""Running the red-team corpora (tests/fresh8, fresh9, fresh10): their torch and JAX cases as
pytest parameters, and each case checked with default settings against what it expects."""

import importlib
import importlib.util

import pytest

import gradrun
from rows import assert_flagged


def case_params(module, cases_module, name=lambda case: case.name, dtypes=lambda case: case.dtypes) -> list:
    """(case, dtype) parameters of ``cases_module``'s CASES, one per dtype of each case; none
    where ``module`` (torch, jax) is not installed."""
    if importlib.util.find_spec(module) is None:
        return []
    cases = importlib.import_module(cases_module).CASES
    return [pytest.param(case, dtype, id=f"{name(case)}-{dtype}") for case in cases for dtype in dtypes(case)]


def jax_params(cases_module) -> list:
    """A JAX corpus's cases, tuples (name, code, inputs, expect, dtypes), as parameters."""
    return case_params("jax", cases_module, name=lambda case: case[0], dtypes=lambda case: case[4])


def check_torch_case(case, dtype) -> None:
    from gradrun.frameworks import torch as adapter

    result = adapter.check(case.code, case.inputs, dtype=dtype, name=case.name, **case.keywords)
    assert_flagged(result, case.expect)


def check_jax_case(case, dtype) -> None:
    """A JAX case (name, code, inputs, expect, ...): its function ``f`` called on its inputs."""
    from gradrun.frameworks import jax as adapter

    name, code, inputs, expect = case[:4]
    fn = adapter.function(code, "f")
    result = gradrun.check(f"f({', '.join(fn.params)})", inputs, functions={"f": fn}, dtype=dtype, name=name)
    assert_flagged(result, expect)

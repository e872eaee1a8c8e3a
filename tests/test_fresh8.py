"""gradrun against red-team round 8 (tests/fresh8/): correct code passes, buggy code is flagged,
with default settings, in float64 and float32."""

import importlib.util
import sys
from pathlib import Path

import pytest

import gradrun
from fresh8.numpy_cases import CASES
from gradrun import runner, spec
from corpus import check_jax_case, check_torch_case
from rows import assert_flagged, describe


def params():
    return [pytest.param(case, dtype, id=f"{case.name}-{dtype}") for case in CASES for dtype in ("float64", "float32")]


@pytest.mark.parametrize("case, dtype", params())
def test_numpy_verdict(case, dtype):
    result = gradrun.check(case.forward, {k: v.copy() for k, v in case.point.items()}, vjp=case.vjp,
                           dtype=dtype, name=case.name, **case.settings)
    assert_flagged(result, case.expect)


def test_a_failure_of_forward_against_reverse_mode_says_so_and_ranks_first():
    """A JVP 1.5 % off beside a right VJP (torch 2.13's own forward mode of logcumsumexp): the
    rows' numeric and analytic (reverse mode) agree, so the reason and the worst entries say
    which side disagrees, instead of listing passing rows above the failing one."""
    import numpy as np

    from gradrun.readings import entry_lines, worst_entries

    x = np.array([0.3, 1.1, -0.7])
    result = gradrun.check(np.sin, {"x": x}, vjp=lambda g, x: g * np.cos(x),
                           jvp=lambda t, x: t[0] * np.cos(x) * np.array([1, 0.985, 1]))
    failed = [r for r in result.records if r.status == "fail"]
    assert [r.element for r in failed] == ["x[1]"], describe(result)
    assert failed[0].reason.startswith("forward mode (JVP) gives 0.4467"), failed[0].reason
    worst = worst_entries(result, 1)
    assert worst[0].element == "x[1]" and "forward mode (JVP)" in entry_lines(result, worst)[0]


LABELS = Path(__file__).resolve().parent / "fresh8" / "labels"
FRAMEWORK = {"numpy": None, "torch": "torch", "jax": "jax"}


def label_params():
    out = []
    for stem, module in FRAMEWORK.items():
        if module is not None and importlib.util.find_spec(module) is None:
            continue
        for exp in spec.load_spec(str(LABELS / f"{stem}.yaml")).experiments:
            for dtype in ("float64", "float32"):
                out.append(pytest.param(exp, dtype, id=f"{stem}-{exp.name}-{dtype}"))
    return out


@pytest.mark.parametrize("exp, dtype", label_params())
def test_integer_labels_reach_user_code_as_integers(exp, dtype):
    """{integer: ...} inputs reach python:, torch: and jax: code as int64 (indexing,
    F.cross_entropy, take_along_axis, nn.Embedding), in first and second order and screens;
    they came as float64 and every such spec failed to load."""
    result = runner.run_experiment(exp, {"dtype": dtype})
    assert result.error is None, result.error
    if exp.name.startswith("bug-"):
        assert "fail" in {r.status for r in result.records}, f"bug not flagged: {describe(result)}"
    else:
        assert result.passed, f"correct code failed: {describe(result)}"


def test_the_python_api_takes_integer_arrays_as_labels():
    """gradrun.check: a numpy array of integers is a label (int64, not differentiated) when wrt
    leaves it out, or, without wrt, when other inputs are given; alone it is still an input."""
    import numpy as np

    sys.path.insert(0, str(LABELS))
    try:
        import np_labels
    finally:
        sys.path.remove(str(LABELS))
    z, y = np.random.default_rng(0).normal(size=(4, 5)), np.array([0, 3, 3, 1])
    result = gradrun.check(np_labels.ce, {"z": z, "y": y}, vjp=np_labels.ce_vjp)
    assert result.passed and {r.input for r in result.records} == {"z"}, describe(result)
    assert not gradrun.check(np_labels.ce, {"z": z, "y": y}, vjp=np_labels.bug_ce_vjp, wrt=["z"]).passed
    alone = gradrun.check("sum(x * x)", {"x": np.arange(3)})
    assert alone.passed and len(alone.records) == 3, describe(alone)


def test_the_torch_adapter_takes_integer_arrays_as_labels():
    import numpy as np

    pytest.importorskip("torch")
    import torch.nn.functional as F

    from gradrun.frameworks import torch as adapter

    z = np.random.default_rng(0).normal(size=(4, 5))
    result = adapter.check(lambda z, y: F.cross_entropy(z, y), {"z": z, "y": np.array([0, 3, 3, 1])})
    assert result.passed and {r.input for r in result.records} == {"z"}, describe(result)


def framework_params(module, cases_module):
    if importlib.util.find_spec(module) is None:
        return []
    cases = importlib.import_module(cases_module).CASES
    return [(case, dtype) for case in cases for dtype in getattr(case, "dtypes", ("float64", "float32"))]


@pytest.mark.parametrize("case, dtype", framework_params("torch", "fresh8.torch_cases"),
                         ids=lambda p: getattr(p, "name", p))
def test_torch_verdict(case, dtype):
    check_torch_case(case, dtype)


@pytest.mark.parametrize("case, dtype", [(c, d) for c in (importlib.import_module("fresh8.jax_cases").CASES
                                                           if importlib.util.find_spec("jax") else [])
                                          for d in ("float64", "float32")],
                         ids=lambda p: p[0] if isinstance(p, tuple) else p)
def test_jax_verdict(case, dtype):
    check_jax_case(case, dtype)


def test_a_vjp_that_leaves_a_bias_gradient_per_example_is_an_error():
    """A hand-written VJP's cotangent has its input's shape: the walker summed a (3, 2) bias
    gradient (g where g.sum(0) belongs) back to (2,), into the right one, and the bug passed."""
    import numpy as np

    def affine(x, b):
        return np.tanh(x + b)

    def per_example(g, x, b):
        d = g * (1 - np.tanh(x + b) ** 2)
        return d, d

    point = {"x": np.random.default_rng(0).normal(size=(3, 2)), "b": np.array([0.1, -0.2])}
    with pytest.raises(ValueError, match=r"cotangent of shape \(3, 2\) for its input b of shape \(2,\)"):
        gradrun.check(affine, point, vjp=per_example)
    right = gradrun.check(affine, point, vjp=lambda g, x, b: (per_example(g, x, b)[0], per_example(g, x, b)[1].sum(0)))
    assert right.passed, describe(right)

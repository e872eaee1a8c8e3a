"""Chunks of perturbations of torch code (runner/gradrun/frameworks/torch_batch.py):
what the engine asks of a batched black box and what the adapter evaluates."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from gradrun.model import Experiment, Point, Settings
from gradrun.runner import run_experiment
from gradrun.tree import Call, Var

torch = pytest.importorskip("torch", reason="the torch: function kind needs PyTorch (pip install 'gradrun[torch]')")

from gradrun.frameworks import torch as adapter  # noqa: E402

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent / "torch_specs"))
import torch_code  # noqa: E402


def _moved_points(args, moved):
    """The points forward_moved describes, built one by one in numpy."""
    batch = len(next(iter(moved.values()))[0])
    points = []
    for b in range(batch):
        row = [np.array(a, dtype=np.float64) for a in args]
        for k, (idx, values) in moved.items():
            row[k].reshape(-1)[idx[b]] = values[b]
        points.append(row)
    return points


def _some_moves(arg, batch, rng):
    idx = rng.integers(0, arg.size, size=(batch, 1))
    return idx, arg.reshape(-1)[idx] + rng.normal(size=(batch, 1))


def test_forward_moved_rows_are_the_points_it_describes_one_call_at_a_time():
    rng = np.random.default_rng(0)
    fn = adapter.function("d", torch_code.DropBlock, init={"n": 3}, mode="train", seed=2)
    args = [rng.normal(size=(4, 3)), *fn.defaults.values()]
    for k in (0, 1, 2, 0):  # x, lin.weight, lin.bias, then x again: each working batch rebuilt or reused
        moved = {k: _some_moves(args[k], 7, rng)}
        rows = fn.forward_moved(args, moved)
        alone = np.stack([fn.forward(*p) for p in _moved_points(args, moved)])
        np.testing.assert_allclose(rows, alone, rtol=1e-13, atol=1e-15)
    assert not fn.notes


def test_the_working_batch_is_put_back_between_calls():
    rng = np.random.default_rng(1)
    fn = adapter.function("d", torch_code.DropBlock, init={"n": 3})
    args = [rng.normal(size=(2, 3)), *fn.defaults.values()]
    fn.forward_moved(args, {1: _some_moves(args[1], 5, rng)})
    unmoved = {1: (np.zeros((5, 1), dtype=np.int64), args[1].reshape(-1)[[0]] * np.ones((5, 1)))}
    np.testing.assert_array_equal(fn.forward_moved(args, unmoved), np.stack([fn.forward(*args)] * 5))


def test_code_that_writes_into_its_input_cannot_spoil_later_rows():
    rng = np.random.default_rng(2)
    fn = adapter.function("scrub", torch_code.scrub)
    batches = fn.forward_moved.__self__  # the BatchedForward behind the hook
    x = rng.normal(size=6)
    kept = x.copy()
    for _ in range(3):
        moved = {0: _some_moves(x, 4, rng)}
        rows = fn.forward_moved([x], moved)
        np.testing.assert_allclose(rows, np.sin(np.stack([p[0] for p in _moved_points([x], moved)])))
        assert all(0 not in working for working in batches.working.free)  # the scrubbed batch was dropped, not reused
    np.testing.assert_array_equal(x, kept)


def test_a_full_check_gives_the_same_numbers_with_either_batch_hook():
    x = np.random.default_rng(3).standard_normal((3, 3))
    results = {}
    for hook in ("forward_moved", "forward_batch"):
        fn = adapter.function("d", torch_code.DropBlock, init={"n": 3})
        if hook == "forward_batch":
            fn = dataclasses.replace(fn, forward_moved=None)
        values = {**fn.defaults, "x": x}
        exp = Experiment("d", Call("d", tuple(Var(p) for p in fn.params)), {"d": fn}, [Point(0, values)],
                         list(fn.params), Settings())
        results[hook] = run_experiment(exp)
    assert all(r.passed for r in results.values())
    numeric = {hook: [r.numeric for r in result.records] for hook, result in results.items()}
    np.testing.assert_array_equal(numeric["forward_moved"], numeric["forward_batch"])


def test_jvp_basis_gives_the_jacobian_columns_torch_computes():
    rng = np.random.default_rng(4)
    fn = adapter.function("d", torch_code.DropBlock, init={"n": 3})
    args = [rng.normal(size=(2, 3)), *fn.defaults.values()]
    weight = torch.tensor(args[1]).requires_grad_()
    code = fn.forward.__self__
    jacobian = torch.autograd.functional.jacobian(
        lambda w: code.apply([torch.tensor(args[0]), w, torch.tensor(args[2])]), weight)
    columns = jacobian.reshape(6, 9).numpy()
    for at in ([0, 4, 8], [8, 1], [2, 2, 5, 7]):  # reused, shrunk and grown working batches
        rows = fn.jvp_basis((1,), np.array(at), *args)
        np.testing.assert_allclose(rows.reshape(len(at), -1), columns[:, at].T, rtol=1e-12, atol=1e-15)
    dense = np.eye(9)[[3, 6]].reshape(2, 3, 3)
    np.testing.assert_array_equal(fn.jvp_basis((1,), np.array([3, 6]), *args), fn.jvp_batch([None, dense, None], *args))


def test_forward_mode_columns_before_any_forward_call_still_use_vmap():
    """A module's float64 twin is built outside vmap (inside it torch forbids .data writes),
    so JVPs asked for before any forward call are still one vmapped call, not one each."""
    rng = np.random.default_rng(5)
    fn = adapter.function("d", torch_code.DropBlock, init={"n": 3})
    args = [rng.normal(size=(2, 3)), *fn.defaults.values()]
    code = fn.forward.__self__
    rows = fn.jvp_basis((1,), np.array([0, 5, 7]), *args)  # the first call into the code
    assert code.jacobian.vmappable
    jacobian = torch.func.jacfwd(lambda w: code.apply([torch.tensor(args[0]), w, torch.tensor(args[2])]))(
        torch.tensor(args[1]))
    np.testing.assert_allclose(rows.reshape(3, -1), jacobian.reshape(6, 9).numpy()[:, [0, 5, 7]].T,
                               rtol=1e-12, atol=1e-15)


class _Scaled(torch.nn.Module):
    """tanh(x @ W) with a parameter W: second order needs JVPs of it at one point, many times."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        return torch.tanh(x @ self.weight)


def test_second_order_makes_the_forward_jacobian_once_and_of_the_input_it_moves(monkeypatch):
    """order: 2 asks a JVP per Hessian column at the real parts of its dual numbers, new
    arrays of the same values each time: the forward-mode Jacobian is made once per point,
    of x alone (the parameters' tangents are zero), not once per column of every input."""
    from gradrun.frameworks import torch_jacobian

    made = []
    columns = torch_jacobian.ForwardJacobian._columns
    monkeypatch.setattr(torch_jacobian.ForwardJacobian, "_columns",
                        lambda self, primals, k: made.append(k) or columns(self, primals, k))
    x = np.random.default_rng(4).normal(size=(5, 4))
    result = adapter.check(_Scaled, {"x": x}, order=2, reduce="sum")
    assert result.error is None and result.passed, result.notes
    assert made == [0], made  # input 0 is x; the module's weight never moves


class _Outer(torch.nn.Module):
    """A loss whose one op allocates len(x)**2 floats: x times itself, outer."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return (self.scale * x[:, None] * x[None, :]).tanh().sum()


class _Wide(torch.nn.Module):
    """Small activations, a large weight: 100 x 120."""

    def __init__(self):
        super().__init__()
        self.first, self.second = torch.nn.Linear(16, 120), torch.nn.Linear(120, 100)

    def forward(self, x):
        return torch.tanh(self.second(torch.tanh(self.first(x)))).sum()


def _rows_at(module, x):
    from gradrun.frameworks import torch_batch
    fn = adapter.function(module.__name__, module)
    args = [x] + [fn.defaults[p] for p in fn.params[1:]]
    return {p: fn.chunk_rows(a.size, args) for p, a in zip(fn.params, args)}, torch_batch


def test_a_chunk_holds_what_a_call_allocates_under_the_mmap_threshold():
    n = 600
    rows, torch_batch = _rows_at(_Outer, np.linspace(-1, 1, n))
    largest = n * n * 8  # the outer product, float64; tanh of it allocates as much again
    total = 2 * largest + n * 8  # and scale * x[:, None] its column
    expected = min(torch_batch.ALLOCATION_BYTES // largest, torch_batch.CALL_BYTES // total)
    assert expected == 2
    assert rows["x"] == rows["scale"] == expected  # whichever input moves: the call allocates the same


def test_a_large_weight_with_small_activations_gets_a_chunk_of_its_working_batch():
    rows, torch_batch = _rows_at(_Wide, np.ones((1, 16)))
    assert rows["second.weight"] == torch_batch.WORKING_BATCH_BYTES // (12000 * 8) == 349
    assert rows["second.bias"] == rows["x"] == 1024  # perturb.BATCH_ROWS
    assert rows["first.weight"] == 1024 < torch_batch.WORKING_BATCH_BYTES // (1920 * 8)  # the row cap rules


def test_a_module_called_with_other_tensors_keeps_its_own():
    from gradrun.frameworks.torch_code import _called_with
    m = _Wide().double()
    before = dict(m.named_parameters())
    zeros = {k: torch.zeros_like(v) for k, v in before.items()}
    assert float(_called_with(m, zeros, (torch.ones(1, 16, dtype=torch.float64),))) == 0.0
    assert all(p is before[k] for k, p in m.named_parameters())
    with pytest.raises(RuntimeError):  # put back when the call raises, too
        _called_with(m, zeros, (torch.ones(1, 7, dtype=torch.float64),))
    assert all(p is before[k] for k, p in m.named_parameters())

"""The thread rule of torch code under gradrun (runner/gradrun/frameworks/torch_threads.py):
one intra-op thread during gradrun's calls, torch's count restored afterwards, and a
count chosen by the caller (torch.set_num_threads, OMP_NUM_THREADS) left alone."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch: function kind needs PyTorch (pip install 'gradrun[torch]')")

from gradrun.frameworks import torch as adapter  # noqa: E402
from gradrun.frameworks import torch_threads  # noqa: E402


class Spy(torch.nn.Module):
    """tanh(w * x).sum(), noting torch's intra-op thread count at every call."""

    seen: list = []

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.5, -1.5, 2.0]))

    def forward(self, x):
        Spy.seen.append(torch.get_num_threads())
        return torch.tanh(self.w * x).sum()


@pytest.fixture
def threads(monkeypatch):
    """torch at two threads, as if loaded that way; the thread variables unset."""
    before = torch.get_num_threads()
    for name in torch_threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(2)
    monkeypatch.setattr(torch_threads, "AT_LOAD", 2)
    Spy.seen = []
    yield
    torch.set_num_threads(before)


def check():
    result = adapter.check(Spy, {"x": np.array([0.3, -0.2, 1.1])}, wrt=["x", "params"], check="full")
    assert result.passed, result.error
    return set(Spy.seen)


def test_calls_run_on_one_thread_and_the_count_is_restored(threads):
    assert check() == {1}  # forward, vmapped forward, VJP and JVP alike
    assert torch.get_num_threads() == 2


def test_a_count_set_by_the_caller_is_respected(threads):
    torch.set_num_threads(3)
    assert check() == {3}
    assert torch.get_num_threads() == 3


def test_omp_num_threads_is_respected(threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert check() == {2}
    assert torch.get_num_threads() == 2

"""Chunks of perturbations of torch code evaluated two calls at a time, from two threads
(numeric.stacking's ``calls``, as many as ``threads.WORKERS``; the torch adapter's
``concurrent``): the calls are the same as one at a time, so the report is the same
bytes; train mode (one generator, re-seeded every call) stays one call at a time."""

import threading
import time

import numpy as np
import pytest

from gradrun import engine, perturb, threads

torch = pytest.importorskip("torch", reason="the torch: function kind needs PyTorch (pip install 'gradrun[torch]')")

from gradrun.frameworks import torch as adapter  # noqa: E402
from gradrun.frameworks import torch_threads  # noqa: E402
from torch import nn  # noqa: E402


class Slow(nn.Module):
    """A small MLP loss whose forward waits a little (the GIL released, as torch's ops do),
    so two calls from two threads overlap; it notes the thread and torch's thread count."""

    seen: list = []

    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(3, 5), nn.Linear(5, 2)

    def forward(self, x):
        Slow.seen.append((threading.current_thread().name, torch.get_num_threads()))
        time.sleep(0.002)
        return torch.tanh(self.down(torch.tanh(self.up(x)))).pow(2).sum()


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 rows, so every pass is several calls; torch loaded at two threads."""
    monkeypatch.setattr(engine, "MEMORY_CAP", 1)
    monkeypatch.setattr(perturb, "BATCH_ROWS", 4)
    for name in torch_threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(torch_threads, "AT_LOAD", 2)
    yield monkeypatch
    torch.set_num_threads(before)


def report(monkeypatch, workers, mode="eval"):
    monkeypatch.setattr(threads, "WORKERS", workers)
    Slow.seen = []
    x = np.random.default_rng(4).standard_normal((2, 3))
    result = adapter.check(Slow, {"x": x}, wrt=["x", "params"], check="full", mode=mode)
    assert result.passed and not result.notes, (result.error, result.notes)  # forward mode cross-checked too
    return result.dataframe().to_csv(index=False), {name for name, _ in Slow.seen}, {n for _, n in Slow.seen}


def test_two_calls_at_once_give_the_same_report_bytes(small_chunks):
    alone, names_alone, _ = report(small_chunks, 1)
    both, names_both, counts = report(small_chunks, 2)
    assert both == alone
    assert len(names_both) > len(names_alone) == 1  # the calls did run from other threads
    assert counts == {1}  # every call on one intra-op thread, however many ran at once
    assert torch.get_num_threads() == 2  # and torch's own count put back


def test_train_mode_stays_one_call_at_a_time(small_chunks):
    _, names, _ = report(small_chunks, 2, mode="train")
    assert names == {threading.current_thread().name}


def test_a_count_set_by_the_caller_holds_in_every_thread(small_chunks):
    torch.set_num_threads(3)
    _, names, counts = report(small_chunks, 2)
    assert len(names) > 1 and counts == {3}


def test_a_capped_process_stays_one_call_at_a_time(small_chunks):
    small_chunks.setattr(threads, "WORKERS", 1)  # threads.cap_process(1): a -j worker
    Slow.seen = []
    x = np.random.default_rng(4).standard_normal((2, 3))
    assert adapter.check(Slow, {"x": x}, wrt=["x", "params"], check="full").passed
    assert {name for name, _ in Slow.seen} == {threading.current_thread().name}

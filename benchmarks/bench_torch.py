"""PyTorch code: gradrun's torch: functions beside torch.autograd.gradcheck.

1. The torch mutation suite (tests/mutations_torch: autograd.Functions with
   hand-written backward passes, modules built on them, code torch
   differentiates itself), every correct variant and every buggy one, in
   float64 and float32, checked by gradrun with default settings and by
   ``torch.autograd.gradcheck`` with its defaults (slow mode; float32 inputs
   given as they are). gradcheck gets the same deterministic function gradrun
   checks (train mode re-seeded, buffers fresh every call) and the same
   inputs to differentiate (a module's parameters through functional_call).
   Printed: correct code passed, buggy code flagged, of how many, per tool
   and dtype, and the cases either tool got wrong.

2. A full check (every element, check: full) of the gradient of an MLP loss
   with respect to all of its ~15k parameters: gradrun's time beside
   gradcheck's on the same function, float64, and the ratio.

Both tools run torch with one intra-op thread (on a shared machine torch's
default pool makes tiny calls vary a hundredfold).

Run: .venv/bin/python benchmarks/bench_torch.py   (about 2 minutes; needs torch)
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gradrun.frameworks import torch as adapter  # noqa: E402
from mutations_torch import all_cases  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def gradcheck_verdict(case, code, dtype) -> bool:
    """torch.autograd.gradcheck with its defaults on the function gradrun checks; False on any failure."""
    fn = adapter.function(case.name, code, init=case.init, mode=case.mode)
    values = {**fn.defaults, **case.point()}
    chosen = [w for n in (case.wrt or list(case.point())) for w in (list(fn.defaults) if n == "params" else [n])]
    tensors = [torch.tensor(values[p], dtype=TORCH_DTYPES[dtype]).requires_grad_(p in chosen) for p in fn.params]
    code_of = fn.forward.__self__  # the TorchCode behind the PythonFunction
    try:
        return bool(torch.autograd.gradcheck(lambda *xs: code_of.apply(list(xs)), tuple(tensors)))
    except Exception:  # gradcheck raises GradcheckError (or the backward's own error) on failure
        return False


def suite():
    cases = all_cases()
    tally = {}
    wrong = []
    for case in cases:
        for variant, code, should_pass in case.variants():
            for dtype in ("float64", "float32"):
                verdicts = {
                    "gradrun": adapter.check(code, case.point(), wrt=case.wrt, init=case.init, mode=case.mode,
                                             dtype=dtype, name=case.name).passed,
                    "gradcheck": gradcheck_verdict(case, code, dtype),
                }
                for tool, passed in verdicts.items():
                    row = tally.setdefault((tool, dtype), [0, 0, 0, 0])
                    row[0 if should_pass else 2] += passed == should_pass
                    row[1 if should_pass else 3] += 1
                    if passed != should_pass:
                        wrong.append(f"{tool:9s} {dtype}  {case.name}/{variant}: "
                                     f"{'failed correct code' if should_pass else 'passed a bug'}")
    print(f"mutation suite: {len(cases)} cases, {sum(len(c.bugs) for c in cases)} bugs")
    print(f"{'tool':10s} {'dtype':8s} {'correct passed':>15s} {'bugs flagged':>13s}")
    for (tool, dtype), (ok, n_ok, flagged, n_bugs) in sorted(tally.items()):
        print(f"{tool:10s} {dtype:8s} {ok:>8d} of {n_ok:<4d} {flagged:>6d} of {n_bugs:<4d}")
    print("\n".join(["wrong verdicts:"] + wrong) if wrong else "wrong verdicts: none")


class MLP(nn.Module):
    """16 -> 120 -> 100 -> 1 with tanh: 14 241 parameters."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 120), nn.Tanh(), nn.Linear(120, 100), nn.Tanh(), nn.Linear(100, 1))

    def forward(self, x):
        return self.net(x).sum()


class Attention(nn.Module):
    """Multi-head self-attention with its own q, k, v, o projections."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.n_heads = n_heads

    def forward(self, x):
        n, t, d = x.shape
        split = [f(x).reshape(n, t, self.n_heads, d // self.n_heads).transpose(1, 2) for f in (self.q, self.k, self.v)]
        weights = torch.softmax(split[0] @ split[1].transpose(-1, -2) / (d // self.n_heads) ** 0.5, dim=-1)
        return self.o((weights @ split[2]).transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm attention and feed-forward, d_model 32, 4 heads, d_ff 160, a scalar loss: 14 784 parameters."""

    def __init__(self, d_model=32, n_heads=4, d_ff=160):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads)
        self.up, self.down = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.down(nn.functional.gelu(self.up(self.norm2(x))))
        return (x ** 2).mean()


MODULES = [(MLP, (1, 16)), (TransformerBlock, (1, 4, 32))]


def large():
    for module, shape in MODULES:
        timing(module, shape)


def timing(module, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    fn = adapter.function(module.__name__, module)
    n = sum(v.size for v in fn.defaults.values())
    adapter.check(module, {"x": x}, wrt=["params"], check="full")  # warm-up: torch's first vmap and jvp
    ours, result = timed(lambda: adapter.check(module, {"x": x}, wrt=["params"], check="full"))
    code = fn.forward.__self__
    tensors = [torch.tensor(x)] + [torch.tensor(v).requires_grad_() for v in fn.defaults.values()]
    theirs, passed = timed(lambda: torch.autograd.gradcheck(lambda *xs: code.apply(list(xs)), tuple(tensors)))
    print(f"\nfull check of d loss / d parameters, {module.__name__} with {n} parameters, x of shape {x.shape}, float64")
    print(f"{'':10s} {'cpu s':>8s} {'wall s':>8s}")
    print(f"{'gradrun':10s} {ours[0]:8.2f} {ours[1]:8.2f}  passed={result.passed}  rows={len(result.records)}"
          f"  notes={result.notes}")
    print(f"{'gradcheck':10s} {theirs[0]:8.2f} {theirs[1]:8.2f}  passed={passed}")
    print(f"gradrun / gradcheck: {100 * ours[0] / theirs[0]:.1f} % of its CPU time, "
          f"{100 * ours[1] / theirs[1]:.1f} % of its wall time")


def timed(fn):
    """((process CPU seconds, wall seconds), fn()): CPU time is what a loaded machine does not inflate."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return (time.process_time() - cpu, time.perf_counter() - wall), out


if __name__ == "__main__":
    if "--large-only" not in sys.argv:
        suite()
    large()

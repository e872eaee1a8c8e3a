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
   gradcheck's on the same function, float64, and the ratio. Then a floor no
   black-box check can go under: torch alone evaluating the module at the 2N
   points of central differences, in vmapped calls, the perturbed parameters
   stacked beforehand and left out of the time (``evaluations_floor``), on
   one thread and on two side by side (a module copy each).

   gradrun as a user runs it: each of its calls into torch on one intra-op
   thread (torch_threads.py), two chunks' calls at once from two threads
   (numeric.stacking, up to ``threads.WORKERS``: the cores); then one call
   at a time. gradcheck with torch's default thread count and with one thread.
   Wall time and the process's CPU time of each; the issue's ratio is wall
   time, each tool at its best setting, on the same machine.

The suite (part 1) runs torch on one intra-op thread, as gradrun's calls do.

Run: .venv/bin/python benchmarks/bench_torch.py   (about 4 minutes; needs torch)
"""

from __future__ import annotations

import contextlib
import copy
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gradrun import engine, measure, threads, verdict  # noqa: E402
from gradrun.frameworks import torch as adapter  # noqa: E402
from gradrun.frameworks import torch_batch, torch_jacobian  # noqa: E402
from mutations_torch import all_cases  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()
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


# gradrun's passes over a point, each timed (process CPU) while a check runs: what
# calls it, the name printed. Rows: perturbed points (or JVP tangents) evaluated in vmapped chunks.
PASSES = [
    (verdict._Columns, "derivative", "first pass: central differences at the auto step"),
    (verdict._Columns, "noise", "round-off noise of f (suspects only)"),
    (measure, "witness", "re-measurement: the witness"),
    (measure._Finest, "level", "re-measurement: Richardson levels"),  # shrinking steps
    (verdict._Columns, "at", "re-measurement: Richardson levels"),  # growing steps
    (verdict._Columns, "one_sided", "kink evidence"),
    (engine, "forward_columns", "forward-mode columns (cross-check)"),
]


@contextlib.contextmanager
def by_pass(spent: dict, rows: dict, calls: dict):
    """Time every pass of PASSES and count the rows each evaluates, and in how many calls, for the duration."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in PASSES]
    counters = [(torch_batch.BatchedForward, "moved", lambda a: len(next(iter(a[1].values()))[0])),
                (torch_batch.BatchedForward, "__call__", lambda a: len(a[0])),
                (torch_jacobian.ForwardJacobian, "basis", lambda a: len(a[1])),
                (torch_jacobian.ForwardJacobian, "batch", lambda a: len(next(t for t in a[0] if t is not None)))]
    saved += [(owner, name, getattr(owner, name)) for owner, name, _ in counters]
    current = []

    def timed_pass(fn, label):
        def run(*args, **kwargs):
            current.append(label)
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - start
                current.pop()
        return run

    def counted(fn, size):
        def run(self, *args):
            label = current[-1] if current else "other"
            rows[label] = rows.get(label, 0) + size(args)
            calls[label] = calls.get(label, 0) + 1
            return fn(self, *args)
        return run

    for (owner, name, label), (_, _, fn) in zip(PASSES, saved):
        setattr(owner, name, timed_pass(fn, label))
    for (owner, name, size), (_, _, fn) in zip(counters, saved[len(PASSES):]):
        setattr(owner, name, counted(fn, size))
    try:
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def timing(module, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    fn = adapter.function(module.__name__, module)
    n = sum(v.size for v in fn.defaults.values())

    def ours():
        return adapter.check(module, {"x": x}, wrt=["params"], check="full")

    ours()  # warm-up: torch's first vmap and jvp
    times, workers = {}, threads.WORKERS
    times[f"gradrun, {workers} calls at once"], result = timed(ours)
    threads.WORKERS = 1
    times["gradrun, one call at a time"], alone = timed(ours)
    same = result.dataframe().to_csv(index=False) == alone.dataframe().to_csv(index=False)
    code = fn.forward.__self__
    tensors = [torch.tensor(x)] + [torch.tensor(v).requires_grad_() for v in fn.defaults.values()]
    for count in (DEFAULT_THREADS, 1):
        torch.set_num_threads(count)
        times[f"gradcheck, {count} intra-op thread{'s' * (count > 1)}"], passed = timed(
            lambda: torch.autograd.gradcheck(lambda *xs: code.apply(list(xs)), tuple(tensors)))
    torch.set_num_threads(DEFAULT_THREADS)
    print(f"\nfull check of d loss / d parameters, {module.__name__} with {n} parameters, x of shape {x.shape}, float64")
    print(f"gradrun passed={result.passed}, rows={len(result.records)}, notes={result.notes}, "
          f"report the same bytes either way: {same}; gradcheck passed={passed} ({2 * n} calls of the module)")
    print(f"{'':48s} {'cpu s':>8s} {'wall s':>8s}")
    for label, (cpu, wall) in times.items():
        print(f"{label:48s} {cpu:8.2f} {wall:8.2f}")
    best = {tool: min((t for label, t in times.items() if label.startswith(tool)), key=lambda t: t[1])
            for tool in ("gradrun", "gradcheck")}
    print(f"the issue's ratio, wall time, each tool at its best setting: "
          f"{100 * best['gradrun'][1] / best['gradcheck'][1]:.1f} % "
          f"(CPU time of those runs: {100 * best['gradrun'][0] / best['gradcheck'][0]:.1f} %)")
    gradcheck = best["gradcheck"][1]
    for side in (1, workers):  # calls side by side: one, and gradrun's own (the cores)
        cpu, wall = evaluations_floor(module, x, side)
        print(f"floor: torch alone evaluating the module at the {2 * n} points of central differences, vmapped "
              f"{FLOOR_ROWS} to a call, {side} call{'s' * (side > 1)} at once, the perturbed parameters "
              f"stacked beforehand (not timed): {cpu:.2f} s CPU, {wall:.2f} s wall = "
              f"{100 * wall / gradcheck:.1f} % of gradcheck's best wall time")
    spent, rows, calls = {}, {}, {}
    with by_pass(spent, rows, calls):  # passes timed by process CPU, one call at a time
        total, _ = timed(ours)
    threads.WORKERS = workers
    print(f"gradrun by pass (an instrumented run, one call at a time: {total[0]:.2f} s CPU):")
    for label in list(dict.fromkeys(p[2] for p in PASSES)) + ["other"]:
        cpu = spent.get(label, 0.0) if label != "other" else total[0] - sum(spent.values())
        print(f"  {label:52s} {cpu:6.2f} s CPU  {rows.get(label, 0):7d} rows  {calls.get(label, 0):5d} calls")


FLOOR_ROWS = 370  # perturbed points per vmapped call: what gradrun's first pass of the MLP makes (28482 in 77)


def _floor_chunks(module, x):
    """The module (float64), its parameters, and every chunk of perturbed points a full check of
    d loss / d parameters evaluates: (parameter name, stacked perturbed parameters), built
    beforehand, two per parameter element (central differences)."""
    torch.manual_seed(0)
    m = module().double()
    params = {k: v.detach() for k, v in m.named_parameters()}
    chunks = []
    for name, p in params.items():
        flat = torch.arange(p.numel()).repeat_interleave(2)  # each element moved down, then up
        signs = torch.tensor([-1e-6, 1e-6], dtype=torch.float64).repeat(p.numel())
        for lo in range(0, len(flat), FLOOR_ROWS):
            at, by = flat[lo:lo + FLOOR_ROWS], signs[lo:lo + FLOOR_ROWS]
            stack = p.expand(len(at), *p.shape).clone()
            stack.view(len(at), -1)[torch.arange(len(at)), at] += by
            chunks.append((name, stack))
    return m, params, torch.tensor(x), chunks


def evaluations_floor(module, x, workers: int = 1) -> tuple:
    """(CPU, wall) seconds torch spends evaluating ``module`` (float64, one intra-op thread per
    call) at every point a black-box central difference of d loss / d parameters needs: 2 per
    parameter, each with one element moved, in vmapped calls of FLOOR_ROWS points over
    ``functional_call``, on ``workers`` threads side by side. Only the calls are timed; each
    point is a whole copy of its perturbed parameter, read by the module."""
    m, params, inputs, chunks = _floor_chunks(module, x)
    mine = threading.local()  # functional_call swaps a module's tensors in place: a copy per thread

    def f(name, w):
        if not hasattr(mine, "module"):
            mine.module = copy.deepcopy(m)
        return functional_call(mine.module, {**params, name: w}, (inputs,), tie_weights=False)

    def call(chunk):
        name, stack = chunk
        return vmap(lambda w: f(name, w))(stack)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            cpu, wall = time.process_time(), time.perf_counter()
            list(pool.map(call, chunks))
            return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        torch.set_num_threads(before)


def timed(fn):
    """((process CPU seconds, wall seconds), fn()): CPU time is what a loaded machine does not inflate."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return (time.process_time() - cpu, time.perf_counter() - wall), out


if __name__ == "__main__":
    if "--large-only" not in sys.argv:
        torch.set_num_threads(1)
        suite()
        torch.set_num_threads(DEFAULT_THREADS)
    large()

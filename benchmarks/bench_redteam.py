"""gradrun's verdicts on the red-team corpus (tests/redteam), beside torch.autograd.gradcheck's.

Every case (correct-but-nasty layer or subtly buggy backward pass) is checked
in float64 and float32 with default settings. gradrun's verdict is right
when a correct case passes (pass or kink) and a buggy one fails;
`unresolved` is right for neither. gradcheck runs with its defaults on the
same numpy forward and VJP, wrapped in a torch.autograd.Function, with
inputs of the same dtype.

    PYTHONPATH=runner python benchmarks/bench_redteam.py [--cases]
"""

import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import gradrun  # noqa: E402
from redteam import all_cases  # noqa: E402

DTYPES = ("float64", "float32")


def gradrun_verdict(case, dtype):
    """'pass', 'fail', 'unresolved' or 'error: ...' for one case."""
    try:
        result = gradrun.check(case.forward, case.point(), vjp=case.vjp, jvp=case.jvp, dtype=dtype,
                               name=case.name, **case.settings)
    except Exception as exc:  # noqa: BLE001 - a crash is a verdict to tabulate
        return f"error: {exc}"[:60]
    if result.error is not None:
        return f"error: {result.error}"[:60]
    if result.passed:
        return "pass"
    return "unresolved" if all(r.status == "unresolved" for r in result.failures) else "fail"


def gradcheck_verdict(case, dtype):
    import torch

    names = list(case.point())
    npdtype = np.float64 if dtype == "float64" else np.float32

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):
            ctx.save_for_backward(*xs)
            out = case.forward(*[x.detach().numpy() for x in xs])
            return torch.from_numpy(np.array(out, dtype=npdtype))

        @staticmethod
        def backward(ctx, g):
            xs = [x.detach().numpy() for x in ctx.saved_tensors]
            out = case.vjp(g.detach().numpy().astype(npdtype), *xs)
            out = out if isinstance(out, tuple) else (out,)
            return tuple(torch.from_numpy(np.array(o, dtype=npdtype).reshape(x.shape)) for o, x in zip(out, xs))

    xs = [torch.tensor(np.asarray(case.point()[k], dtype=npdtype), requires_grad=True) for k in names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "pass" if torch.autograd.gradcheck(Fn.apply, xs) else "fail"
        except Exception as exc:  # noqa: BLE001 - a mismatch raises GradcheckError
            return "fail" if type(exc).__name__ == "GradcheckError" else f"error: {type(exc).__name__}"


def right(case, verdict):
    return verdict == ("pass" if case.correct else "fail")


def main(show_cases: bool):
    cases = all_cases()
    per_class = defaultdict(lambda: defaultdict(int))
    wrong = []
    for case in cases:
        for dtype in case.dtypes:
            ours = gradrun_verdict(case, dtype)
            # a JVP-only bug is not visible to a VJP-only gradcheck; it is still tabulated
            theirs = gradcheck_verdict(case, dtype)
            key = ("correct" if case.correct else "buggy", case.cls, dtype)
            per_class[key]["n"] += 1
            per_class[key]["gradrun"] += right(case, ours)
            per_class[key]["gradcheck"] += right(case, theirs)
            if show_cases or not right(case, ours):
                wrong.append(f"{case.name:32s} {dtype:8s} gradrun={ours:12s} gradcheck={theirs}")
    print(f"{'kind':8s} {'class':36s} {'dtype':8s} {'n':>3s} {'gradrun':>8s} {'gradcheck':>9s}")
    totals = defaultdict(lambda: [0, 0, 0])
    for (kind, cls, dtype), c in sorted(per_class.items()):
        print(f"{kind:8s} {cls:36s} {dtype:8s} {c['n']:3d} {c['gradrun']:8d} {c['gradcheck']:9d}")
        t = totals[(kind, dtype)]
        t[0], t[1], t[2] = t[0] + c["n"], t[1] + c["gradrun"], t[2] + c["gradcheck"]
    print("\nright verdicts (correct: passed; buggy: failed)")
    for (kind, dtype), (n, ours, theirs) in sorted(totals.items()):
        print(f"{kind:8s} {dtype:8s} {n:3d} cases: gradrun {ours:3d}, gradcheck {theirs:3d}")
    if wrong:
        print("\n" + ("every case" if show_cases else "gradrun's wrong verdicts") + ":")
        print("\n".join(wrong))


if __name__ == "__main__":
    main("--cases" in sys.argv)

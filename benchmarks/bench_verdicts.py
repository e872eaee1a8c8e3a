"""Verdicts where finite differences are hard: issue 13's mutation classes, counted.

Runs the mutation suite's hard regimes (tests/mutations/regimes.py and
hard.py: tiny inputs, domain edges, linear maps, one large value beside
small ones, ill-conditioned solves, coarse user steps, scales far below |x|,
float16 inside float32 rules, probabilities near 0) with gradrun's default
settings (a case's own method and step where it sets them), in float64 and
float32, and prints per class: correct VJPs passed, buggy VJPs flagged,
statuses seen, and the time; then the nondeterministic functions (each must
be an error naming it).

Run: PYTHONPATH=runner .venv/bin/python benchmarks/bench_verdicts.py
"""

from __future__ import annotations

import collections
import os
import sys
import time

import numpy as np

import gradrun

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from mutations import hard, regimes  # noqa: E402


def case_class(name: str) -> str:
    return name.split("_")[0]


def run(case, vjp, dtype):
    try:
        result = gradrun.check(case.forward, case.point(), vjp=vjp, dtype=dtype, **case.settings)
    except ValueError as err:
        return False, {"error"}, str(err)
    return result.passed, {r.status for r in result.records}, None


def main():
    table = collections.defaultdict(lambda: {"ok": 0, "ok_of": 0, "bug": 0, "bug_of": 0, "status": set(), "s": 0.0})
    wrong = []
    for case in regimes.CASES + hard.CASES:
        for variant, vjp, should_pass in case.variants():
            for dtype in ("float64", "float32"):
                start = time.perf_counter()
                passed, statuses, _ = run(case, vjp, dtype)
                row = table[case_class(case.name)]
                row["s"] += time.perf_counter() - start
                row["status"] |= statuses
                key = "ok" if should_pass else "bug"
                row[key + "_of"] += 1
                row[key] += passed == should_pass
                if passed != should_pass:
                    wrong.append(f"{case.name}/{variant}/{dtype}")
    print(f"{'class':<10} {'correct passed':>15} {'bugs flagged':>13} {'seconds':>8}  statuses")
    for name, row in table.items():
        print(f"{name:<10} {row['ok']:>7}/{row['ok_of']:<7} {row['bug']:>6}/{row['bug_of']:<6} {row['s']:>8.2f}  "
              f"{', '.join(sorted(row['status']))}")
    errors = 0
    for name, make, vjp in hard.NONDETERMINISTIC:
        for dtype in ("float64", "float32"):
            f = make()

            def forward(x, f=f):
                return f(x)

            forward.__name__ = name
            try:
                gradrun.check(forward, {"x": np.linspace(0.3, 1.2, 32)}, vjp=vjp, dtype=dtype)
            except ValueError as err:
                errors += f"{name} is not deterministic" in str(err)
    print(f"nondeterministic: {errors}/{2 * len(hard.NONDETERMINISTIC)} an error naming the function")
    print(f"wrong verdicts: {len(wrong)}" + "".join(f"\n  {w}" for w in wrong))


if __name__ == "__main__":
    main()

"""floattext beside Arrow's cast to text and Python's repr: nanoseconds of CPU a float.

Printed for 15 000 and 1 000 000 floats of two kinds: ``normal`` (standard normal
times 10**k, k in [-12, 2], as a report's values and errors), ``bits`` (random bit
patterns, every exponent). Each figure is the least of five runs of CPU time
(``time.process_time``), under the gradrun command's malloc settings
(``gradrun.memory``). ``repr`` includes building the Arrow array of its strings, as
csvformat does. Then, with ``--million N``, N million random bit patterns (all
exponents, subnormals, both signs) compared with ``repr`` byte for byte.

Run: PYTHONPATH=runner .venv/bin/python benchmarks/bench_floattext.py [--million N]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pyarrow as pa

from gradrun import arrowcols, arrowcompute, floattext, memory


def cpu_ns(fn, floats: int, runs: int = 5) -> float:
    """Least CPU nanoseconds a float over ``runs`` calls of ``fn``."""
    fn()
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best * 1e9 / floats


def samples(n: int, rng) -> dict:
    bits = rng.integers(0, 2 ** 64, n, dtype=np.uint64).view(np.float64)
    return {"normal": rng.standard_normal(n) * 10.0 ** rng.integers(-12, 3, n), "bits": bits[np.isfinite(bits)]}


def speed() -> None:
    rng = np.random.default_rng(0)
    print(f"{'floats':>9} {'kind':7} {'floattext':>10} {'Arrow cast':>11} {'repr':>8}   (ns of CPU a float)")
    for n in (15_000, 1_000_000):
        for kind, x in samples(n, rng).items():
            arrow = arrowcols.floats(x)
            ours = cpu_ns(lambda: floattext.strings(x), len(x))
            cast = cpu_ns(lambda: arrowcompute.cast(arrow, pa.string()), len(x))
            python = cpu_ns(lambda: arrowcols.texts(map(repr, x.tolist())), len(x), runs=1 if n > 100_000 else 3)
            print(f"{len(x):9d} {kind:7} {ours:10.1f} {cast:11.1f} {python:8.1f}")


def correctness(millions: int) -> None:
    rng = np.random.default_rng(2024)
    start = time.perf_counter()
    for m in range(millions):
        x = rng.integers(0, 2 ** 64, 1_000_000, dtype=np.uint64).view(np.float64)
        got = floattext.strings(x).to_pylist()
        wrong = [(repr(v), g) for v, g in zip(x.tolist(), got) if repr(v) != g]
        assert not wrong, f"million {m}: {len(wrong)} differ from repr, first (repr, floattext): {wrong[:5]}"
    print(f"{millions} million random bit patterns: every text as repr's ({time.perf_counter() - start:.0f} s)")


def main() -> None:
    kept = memory.keep_freed_memory()
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; malloc as gradrun's: {kept}")
    speed()
    if "--million" in sys.argv:
        correctness(int(sys.argv[sys.argv.index("--million") + 1]))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

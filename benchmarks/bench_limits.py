"""Hostile spec files at the size limit: how long `validate` takes and how much memory it peaks at.

Each case is a spec of (almost) gradrun.spec.MAX_FILE_BYTES, validated in a
fresh process so that its peak resident memory is its own:

- flow-list: one inline list of 0s ("[0,0,0,...]"), the cheapest bytes per node;
- block-list: the same as a block sequence, one "- 0" a line;
- mappings: many small mappings;
- long-string: one huge scalar (few nodes, many bytes);
- alias-bomb: nested aliases (the billion laughs), small on disk;

and small ones whose declared functions multiply when inlined (round 6):

- doubling: f_k(x) = f_{k-1}(f_{k-1}(x)) for k up to 40: 2^40 operations;
- repeated: h_k(x) = h_{k-1}(x) + ... (8 times), 12 levels: 8^12 walks of 13 distinct nodes;
- ring: 1000 functions, each calling the next, the last the first;
- many-declarations: 3000 functions, each calling the one before (past MAX_FUNCTIONS).

Run from the repository root:  .venv/bin/python benchmarks/bench_limits.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runner"))

from gradrun import spec  # noqa: E402

TIMEOUT = 120  # seconds a case may take before it is stopped (the code before round 6 never finished some)
HEAD = 'version: 1\nexperiments:\n  - name: a\n    expr: "sum(X)"\n    inputs:\n      X:'


def cases(limit: int) -> dict:
    bomb = "version: 1\na: &a [0,0,0,0,0,0,0,0,0,0]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    return {
        "flow-list": HEAD + " [" + "0," * ((limit - len(HEAD) - 8) // 2) + "0]\n",
        "block-list": HEAD + "\n" + "        - 0\n" * ((limit - len(HEAD) - 2) // 12),
        "mappings": "version: 1\nx:\n" + "".join(f"  k{i}: {{a: 1}}\n" for i in range(limit // 16)),
        "long-string": 'version: 1\nx: "' + "a" * (limit - 20) + '"\n',
        "alias-bomb": bomb,
        "doubling": _declared([("f0", "sin(x)")] + [(f"f{k}", f"f{k-1}(f{k-1}(x))") for k in range(1, 41)], "f40"),
        "repeated": _declared([("h0", "sin(x)")] + [(f"h{k}", " + ".join([f"h{k-1}(x)"] * 8)) for k in range(1, 13)],
                              "h12"),
        "ring": _declared([(f"r{k}", f"r{(k + 1) % 1000}(x)") for k in range(1000)], "r0"),
        "many-declarations": _declared([("g0", "sin(x)")] + [(f"g{k}", f"g{k-1}(x)") for k in range(1, 3000)],
                                       "g2999"),
    }


def _declared(bodies, function) -> str:
    """A spec declaring ``bodies`` (name, expression) and checking ``function`` at x = 0.5."""
    declared = "".join(f'  {name}: "{body}"\n' for name, body in bodies)
    return f"version: 1\nfunctions:\n{declared}experiments:\n  - {{name: e, function: {function}, inputs: {{x: 0.5}}}}\n"


MEASURE = """
import resource, sys, time
sys.path.insert(0, {runner!r})
from gradrun import spec
start = time.perf_counter()
issues = spec.validate({path!r})
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{{seconds:.2f}} {{peak:.0f}} " + (issues[0].message if issues else "ok"))
"""


def main():
    limit = spec.MAX_FILE_BYTES
    print(f"validate of hostile specs (near the size limit of {limit} bytes, or small); fresh process each")
    print(f"{'case':<12} {'bytes':>10} {'seconds':>8} {'peak MB':>8}  first issue")
    with tempfile.TemporaryDirectory() as folder:
        for name, text in cases(limit).items():
            path = Path(folder) / f"{name}.yaml"
            path.write_text(text[:limit])
            code = MEASURE.format(runner=str(ROOT / "runner"), path=str(path))
            try:
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     timeout=TIMEOUT).stdout.split(" ", 2)
            except subprocess.TimeoutExpired:
                out = [f">{TIMEOUT}", "?", "(stopped: still running)"]
            print(f"{name:<12} {path.stat().st_size:>10} {out[0]:>8} {out[1]:>8}  {out[2].strip()[:60]}")


if __name__ == "__main__":
    main()

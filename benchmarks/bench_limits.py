"""Hostile spec files at the size limit: how long `validate` takes and how much memory it peaks at.

Each case is a spec of (almost) gradrun.spec.MAX_FILE_BYTES, validated in a
fresh process so that its peak resident memory is its own:

- flow-list: one inline list of 0s ("[0,0,0,...]"), the cheapest bytes per node;
- block-list: the same as a block sequence, one "- 0" a line;
- mappings: many small mappings;
- long-string: one huge scalar (few nodes, many bytes);
- alias-bomb: nested aliases (the billion laughs), small on disk.

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
    }


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
    print(f"validate of hostile specs near the size limit ({limit} bytes); fresh process each")
    print(f"{'case':<12} {'bytes':>10} {'seconds':>8} {'peak MB':>8}  first issue")
    with tempfile.TemporaryDirectory() as folder:
        for name, text in cases(limit).items():
            path = Path(folder) / f"{name}.yaml"
            path.write_text(text[:limit])
            code = MEASURE.format(runner=str(ROOT / "runner"), path=str(path))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split(" ", 2)
            print(f"{name:<12} {path.stat().st_size:>10} {out[0]:>8} {out[1]:>8}  {out[2].strip()[:60]}")


if __name__ == "__main__":
    main()

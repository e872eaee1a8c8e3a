"""Full-check time of the YAML-declared layers (experiments/layers.yaml), as written and scaled up.

For each layer: the elements checked (full Jacobian), the time of a whole check
(runner.run_experiment, best of a few runs), and the same check with every
primitive's batch rule switched off, so that ops along an axis are evaluated
once per perturbation instead of once per chunk of perturbations (what the
batch rules in the table buy). Scaled-up sizes multiply every dimension of the
spec's inputs by the factor shown; every check is `check: full`.

Run: .venv/bin/python benchmarks/bench_layers.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from bench_full import best  # the fastest of a few runs, within a time budget
from gradrun import primitives, runner, spec

LAYERS = Path(__file__).resolve().parents[1] / "experiments" / "layers.yaml"
SCALES = (1, 2, 3)
UNSCALED = {"labels", "mask"}  # integer inputs keep their meaning only at their written size
FIXED_SHAPE = {"glu-slices"}  # its slices are written for its own width


def scaled(exp, factor):
    """The experiment with every input dimension multiplied by ``factor`` (None if it cannot be)."""
    exp = dataclasses.replace(exp, settings=exp.settings.updated(check="full"))
    if factor == 1:
        return exp
    if UNSCALED & set(exp.points[0].inputs) or exp.name in FIXED_SHAPE:
        return None
    rng = np.random.default_rng(factor)
    inputs = {k: rng.normal(size=tuple(d * factor for d in v.shape)) * (1.0 / factor) + (v.mean() if k == "gamma" else 0)
              for k, v in exp.points[0].inputs.items()}
    return dataclasses.replace(exp, points=[dataclasses.replace(exp.points[0], inputs=inputs)])


def without_batch_rules():
    saved = dict(primitives.PRIMITIVES)
    for name, prim in saved.items():
        if prim.batch is not None:
            primitives.PRIMITIVES[name] = dataclasses.replace(prim, batch=None)
    return saved


def main():
    experiments = spec.load_spec(LAYERS).experiments
    print(f"{'layer':<20}{'scale':>6}{'elements':>10}{'check s':>10}{'row by row s':>14}{'speedup':>9}  verdict")
    for exp in experiments:
        for factor in SCALES:
            big = scaled(exp, factor)
            if big is None:
                continue
            result = runner.run_experiment(big)
            fast = best(lambda: runner.run_experiment(big), budget=2.0, most=3)
            saved = without_batch_rules()
            try:
                slow = best(lambda: runner.run_experiment(big), budget=2.0, most=1)
            finally:
                primitives.PRIMITIVES.update(saved)
            verdict = "PASS" if result.passed else "FAIL"
            print(f"{exp.name:<20}{factor:>6}{len(result.records):>10}{fast:>10.3f}{slow:>14.3f}{slow / fast:>9.1f}  {verdict}")


if __name__ == "__main__":
    main()

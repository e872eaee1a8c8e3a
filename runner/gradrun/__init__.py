"""gradrun: numeric beside analytic gradients, from YAML specs or from Python.

The Python entry point is ``check``::

    import gradrun
    result = gradrun.check("sum(sigmoid(X @ W))", {"X": X, "W": W})
    result.passed, result.dataframe()

    def dense(x, w): return x @ w
    def dense_vjp(g, x, w): return g @ w.T, x.T @ g
    gradrun.check(dense, {"x": x, "w": w}, vjp=dense_vjp)

Spec files run from Python with ``run_files``, as ``gradrun SPEC...`` runs
them, without printing::

    outcome = gradrun.run_files(["experiments/chain.yaml"], gradrun.RunOptions(out="/tmp/r"))
    outcome.passed, outcome.results, outcome.drifts, outcome.written
"""

from __future__ import annotations

__version__ = "0.1.0"

from .model import ExperimentResult, Settings, SpecError  # noqa: E402


def check(f, inputs: dict, *, wrt=None, vjp=None, jvp=None, hvp=None, complex_safe: bool = False,
          functions: dict | None = None, name: str = "check", **settings) -> ExperimentResult:
    """Check the gradient of ``f`` at ``inputs``, element by element.

    ``f`` is an expression string (as in a spec's ``expr:``), a list of
    one-argument function names (a chain, over input ``x``), or a Python
    callable with a hand-written ``vjp(cotangent, *inputs)`` (and optionally
    ``jvp(tangents, *inputs)``, and for ``order=2`` ``hvp(cotangent, tangents,
    *inputs)``: see ``gradrun.second_order``); its parameter names are the
    input names; a numpy array of integers that ``wrt`` leaves out (labels, a mask)
    is passed as int64 and never differentiated. ``settings`` are the spec's keys: method, step, rtol, atol,
    dtype, check, seed, reduce, order. Returns an ``ExperimentResult``:
    ``.passed``, its columns (``.elements``, ``.projections``) and
    ``.dataframe()``, one row per checked Jacobian (or Hessian) element.
    """
    import numpy as np

    from . import labels, primitives
    from .expr import ExprError, parse
    from .model import Experiment, Point
    from .runner import run_experiment
    from .tree import Call, PythonFunction, Var, chain, python_params
    from .values import checked_settings

    settings = checked_settings(settings)
    integers = labels.label_names(inputs, wrt)
    inputs = _checked_inputs(inputs)
    functions = dict(functions or {})
    if callable(f):
        fn = PythonFunction(getattr(f, "__name__", "f"), python_params(f), f, vjp, jvp, complex_safe,
                            hvp=hvp)
        functions[fn.name] = fn
        expr = Call(fn.name, tuple(Var(p) for p in fn.params))
    elif isinstance(f, (list, tuple)):
        expr = chain(f)
    else:
        arity = {n: primitives.get(n).nargs for n in primitives.names()}
        arity.update({k: len(getattr(v, "params", ())) for k, v in functions.items()})
        if not isinstance(f, str):
            raise TypeError(f"f must be an expression string, a list of function names or a callable, "
                            f"got {type(f).__name__}")
        try:
            expr = parse(f, arity, list(inputs))
        except ExprError as error:
            raise ValueError(f"expression {f!r}: {error}") from None
    wrt = [k for k in inputs if k not in integers] if wrt is None else list(wrt)
    unknown = [w for w in wrt if w not in inputs]
    if unknown:
        raise ValueError(f"wrt names '{unknown[0]}', which is not an input; inputs: {', '.join(inputs)}")
    exp = Experiment(name, expr, functions, [Point(0, inputs)], wrt, Settings().updated(**settings),
                     integers=integers)
    result = run_experiment(exp)
    if result.error is not None and not result.rows:
        raise ValueError(result.error)
    return result


def run_files(paths, options=None):
    """Run spec files as ``gradrun SPEC...`` does and return an ``Outcome``: see ``gradrun.runfiles``."""
    from .runfiles import run_files as run

    return run(paths, options)


def __getattr__(name):
    if name in ("RunOptions", "Outcome"):  # imported when first asked for: the runner's imports are not small
        from . import runfiles

        return getattr(runfiles, name)
    raise AttributeError(f"module 'gradrun' has no attribute {name!r}")


def _checked_inputs(inputs) -> dict:
    """name -> finite float64 array; ``TypeError``/``ValueError`` for what cannot be one."""
    import numpy as np

    if not isinstance(inputs, dict):
        raise TypeError(f"inputs must be a dict of name -> array, got {type(inputs).__name__}")
    out = {}
    for name, value in inputs.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"input name {name!r} is not a name")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"input '{name}' is not an array of real numbers: {error}") from None
        if not np.isfinite(array).all():
            raise ValueError(f"input '{name}' holds values that are not finite (inf or nan)")
        out[name] = array
    return out


__all__ = ["check", "run_files", "RunOptions", "Outcome", "ExperimentResult", "Settings", "SpecError", "__version__"]

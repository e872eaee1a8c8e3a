"""Spec files: read, check against the schema and for meaning, resolve into a ``Spec``.

``load_spec(path)`` returns a fully resolved ``model.Spec`` (defaults applied,
inputs generated, sweeps expanded, expressions built) or raises
``model.SpecError`` carrying every problem in the file, each with its line and
column. ``validate(path)`` returns those problems as a list. Nothing here
prints, exits, or evaluates an expression as Python.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from functools import lru_cache
from pathlib import Path

import jsonschema
import numpy as np

from . import expr as exprs
from . import hessian, primitives, tree, usercode, yamlload
from . import values as values_rules
from .model import METHODS, Experiment, Issue, Point, Settings, Spec, SpecError
from .tree import Call, Const, ExprFunction, PythonFunction, Var

MAX_FILE_BYTES = 10_000_000  # a spec file
MAX_EXPERIMENTS = 1_000  # per file
MAX_INPUT_ELEMENTS = 1_000_000  # elements of one input
MAX_INTERMEDIATE_ELEMENTS = 10_000_000  # elements of any value computed from the inputs
MAX_SWEEP_POINTS = 10_000  # points of one experiment (the product of the swept lengths)
MAX_REPORT_ROWS = 2_000_000  # rows one experiment may add to a report
MAX_DIMENSIONS = 32  # of one input: numpy's own limit in 1.x

SETTING_KEYS = ("method", "step", "rtol", "atol", "dtype", "check", "seed", "order")
SWEPT_SETTINGS = ("step", "method")  # sweep keys that mean settings, not inputs
FORMS = ("function", "chain", "expr")
SEQUENCES = ("linspace", "range", "logspace")

# init -> the keys it takes besides shape and init (seed is for random inits only).
INIT_KEYS = {
    "normal": ("seed", "loc", "scale"),
    "uniform": ("seed", "low", "high"),
    "randn": ("seed",),
    "rand": ("seed",),
    "zeros": (),
    "ones": (),
    "arange": ("start", "step"),
}
SCHEMA_NAME = "experiment.schema.json"


# ---------------------------------------------------------------- schema

def schema_path() -> Path:
    """Where the JSON Schema is: inside an installed wheel, or in a checkout."""
    import gradrun

    candidates = (
        Path(gradrun.__file__).parent / "schemas" / SCHEMA_NAME,  # wheel (force-included)
        Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_NAME,  # checkout: runner/gradrun/ -> repo
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{SCHEMA_NAME} not found; looked in: " + ", ".join(map(str, candidates)))


@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(schema_path().read_text(encoding="utf-8"))


def load_schema() -> dict:
    """The JSON Schema of a spec file, as a dict (a fresh copy)."""
    return json.loads(json.dumps(_schema()))


def _schema_issues(doc: yamlload.Document):
    """(issues, broken): the schema's complaints, and the top two levels of every path they touch."""
    validator = jsonschema.Draft7Validator(_schema())
    issues, broken = [], set()
    for error in validator.iter_errors(doc.data):
        issues.extend(_schema_error_issues(doc, error))
        path = tuple(error.absolute_path)
        if error.validator in ("additionalProperties", "required") and isinstance(error.instance, dict):
            # An unknown or missing key breaks only that key, not its siblings.
            wanted = error.schema.get("required", []) if error.validator == "required" else error.instance
            broken.update((path + (k,))[:2] for k in wanted
                          if (k in error.instance) != (error.validator == "required"))
        else:
            broken.add(path[:2])
    return issues, broken


def _kind(value) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _branch(error, index) -> dict:
    """The index-th alternative of an anyOf/oneOf error's schema, a top-level $ref followed."""
    branch = error.schema[error.validator][index]
    ref = branch.get("$ref", "")
    return _schema()["definitions"][ref.rsplit("/", 1)[-1]] if ref.startswith("#/definitions/") else branch


def _alternatives_issues(doc, error, path) -> list:
    """A value that fits none of several forms: say which form it seems meant as, and what is wrong."""
    value = error.instance
    in_sweep = "sweep" in path[-3:-1]
    if in_sweep and not isinstance(value, dict):
        items = value if isinstance(value, list) else [value]
        bad = next((x for x in items if isinstance(x, (bool, list, dict, str)) and x not in METHODS), value)
        if isinstance(bad, str):
            return [doc.issue(path, f"{bad!r} is neither a number nor a method name",
                              exprs.did_you_mean(bad, METHODS) or "sweep numbers, or method names for method")]
        return [doc.issue(path, f"sweep values must be scalars, got {_kind(bad)}",
                          "a sweep lists numbers (or method names when sweeping method); put arrays under inputs")]
    if isinstance(value, dict):
        # A mapping holding one form's required key is reported against that form's own rules.
        for index in range(len(error.schema[error.validator])):
            required = set(_branch(error, index).get("required", ()))
            if required and required <= set(value):
                subs = [e for e in error.context if e.relative_schema_path[0] == index]
                return [i for e in subs for i in _schema_error_issues(doc, e)]
        if path[:1] == ("functions",):
            return [doc.issue(path, "not a function declaration",
                              "write an expression string, {params: [...], expr: ...}, {python: ..., vjp: ...}, {torch: ...} or {jax: ...}")]
        known = ", ".join(f"{{{k}: [...]}}" for k in SEQUENCES) + ", {shape: [...], init: ...}, {integer: [...]}"
        return [doc.issue(path, f"not a known generator: keys {', '.join(map(str, value))}", f"use one of {known}")]
    if error.context:
        deepest = jsonschema.exceptions.best_match(error.context)
        if deepest is not None and len(tuple(deepest.absolute_path)) > len(path):
            return _schema_error_issues(doc, deepest)
    return [doc.issue(path, f"{_kind(value)} {value!r} is not allowed here"[:200],
                      error.schema.get("description", ""))]


def _schema_error_issues(doc, error) -> list:
    """One schema error as Issues a person can act on."""
    path = tuple(error.absolute_path)
    value, v, schema = error.instance, error.validator, error.schema
    if v in ("anyOf", "oneOf"):
        return _alternatives_issues(doc, error, path)
    if v == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        extra = [k for k in value if k not in allowed]
        return [doc.issue(path + (k,), f"unknown key '{k}'",
                          exprs.did_you_mean(k, allowed) or f"allowed keys: {', '.join(allowed)}", key=True)
                for k in extra]
    if v == "required":
        missing = [k for k in schema["required"] if k not in value]
        return [doc.issue(path, f"missing key '{k}'") for k in missing]
    if v == "enum":
        choices = [str(c) for c in schema["enum"]]
        return [doc.issue(path, f"{value!r} is not one of: {', '.join(choices)}",
                          exprs.did_you_mean(str(value), choices))]
    if v == "const":
        return [doc.issue(path, f"must be {schema['const']!r}, got {value!r}")]
    if v == "type":
        wanted = schema["type"]
        wanted = wanted if isinstance(wanted, str) else " or ".join(wanted)
        hint = "quote nothing that should be a number" if isinstance(value, str) and wanted == "number" else ""
        return [doc.issue(path, f"expected {wanted}, got {_kind(value)} {value!r}"[:200], hint)]
    if v == "pattern":
        return [doc.issue(path, f"{value!r} is not a valid name here", schema.get("description", f"pattern {error.validator_value}"))]
    if v == "propertyNames":
        bad = error.instance if isinstance(error.instance, str) else ""
        return [doc.issue(path, f"'{bad}' is not a valid name", "use letters, digits and _, not starting with a digit")]
    if v in ("minItems", "maxItems"):
        n = error.validator_value
        hint = schema.get("description", "")
        return [doc.issue(path, f"expected {'at least' if v == 'minItems' else 'at most'} {n} item{'s' * (n != 1)}, got {len(value)}", hint)]
    if v in ("minimum", "exclusiveMinimum", "maximum"):
        sign = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}[v]
        return [doc.issue(path, f"must be {sign} {error.validator_value}, got {value!r}")]
    if v == "uniqueItems":
        return [doc.issue(path, "a name is listed twice")]
    return [doc.issue(path, error.message)]  # pragma: no cover - a rule without a friendlier wording


# ---------------------------------------------------------------- python functions

# A problem found while resolving: a message, a hint and (for a place inside an
# expression) a column; code references raise the same type.
_Problem = usercode.Refused
import_callable = usercode.resolve  # the one resolver of code references (see gradrun.usercode)


# ---------------------------------------------------------------- values and generators

def _sequence(doc, path, kind, args, limit, issues):
    """linspace/range/logspace -> a 1-D float64 array, or None after recording an issue."""
    bad = next((x for x in args if values_rules.finite_problem(abs(x), "") is not None), None)
    if bad is not None:
        issues.append(doc.issue(path + (kind,), f"{kind} holds {bad!r}, not a finite number"))
        return None
    a, b, n = (float(x) for x in args)
    if kind == "range":
        if n == 0:
            issues.append(doc.issue(path + (kind,), "range step is 0", "use a nonzero step"))
            return None
        count = math.ceil((b - a) / n) if math.isfinite((b - a) / n) else math.inf
        if count <= 0:
            issues.append(doc.issue(path + (kind,), f"range [{a:g}, {b:g}, {n:g}] is empty",
                                    "the step needs the sign of stop - start; stop is excluded, as in numpy.arange"))
            return None
    else:
        count = args[2]
        if count < 1:
            issues.append(doc.issue(path + (kind,), f"{kind} count must be at least 1, got {count}"))
            return None
    if count > limit:
        issues.append(doc.issue(path + (kind,), f"{kind} gives {count:g} values, more than {limit}",
                                "make it coarser or split the experiment"))
        return None
    if kind == "range":
        return np.arange(a, b, n, dtype=np.float64)
    return (np.linspace if kind == "linspace" else np.logspace)(a, b, int(count), dtype=np.float64)


def _finite(doc, path, array, issues):
    """``array`` if every value is finite, else None after recording an issue."""
    if array is not None and not np.isfinite(array).all():
        issues.append(doc.issue(path, "values are not finite (inf or nan)", "keep numbers within float64's range"))
        return None
    return array


class _Inputs:
    """Generates the inputs of one experiment, in the order written, from its seed."""

    def __init__(self, doc, settings, issues):
        self.doc, self.settings, self.issues = doc, settings, issues
        self.stream = None  # the legacy RandomState shared by randn/rand inputs

    def value(self, path, value, position):
        """An input's value as a float64 array, or None after recording an issue."""
        with np.errstate(all="ignore"):
            array = self.make(path, value, position)
        return _finite(self.doc, path, array, self.issues)

    def make(self, path, value, position):
        if isinstance(value, (int, float)):
            return np.asarray(float(value), dtype=np.float64)
        if isinstance(value, dict) and "integer" in value:  # labels: exact in float64, never differentiated
            value = value["integer"]
            if not isinstance(value, list):
                return np.asarray(float(value), dtype=np.float64)
        if isinstance(value, list):
            try:
                array = np.asarray(value, dtype=np.float64)
            except ValueError:
                self.issues.append(self.doc.issue(path, "a nested list must be rectangular (rows of equal length)"))
                return None
            return array if self.sized(path, array.shape) else None
        kind = next(k for k in (*SEQUENCES, "shape") if k in value)
        if kind in SEQUENCES:
            return _sequence(self.doc, path, kind, value[kind], MAX_INPUT_ELEMENTS, self.issues)
        return self.generated(path, value, position)

    def sized(self, path, shape) -> bool:
        size = math.prod(shape)
        if size > MAX_INPUT_ELEMENTS:
            self.issues.append(self.doc.issue(path, f"input has {size} elements, more than {MAX_INPUT_ELEMENTS}",
                                              "use a smaller shape"))
            return False
        return True

    def generated(self, path, spec, position):
        shape = tuple(int(d) for d in spec["shape"])  # the schema allows 2.0 for 2
        init = spec.get("init", "normal")
        problems = [f"'{k}' does not apply to init {init}" for k in spec
                    if k not in ("shape", "init") and k not in INIT_KEYS[init]]
        problems += [f"{k} must be a finite number, got {spec[k]!r}" for k in ("loc", "scale", "low", "high", "start", "step")
                     if k in spec and values_rules.finite_problem(abs(spec[k]), k) is not None]
        if any(d > MAX_INPUT_ELEMENTS for d in shape):
            problems.append(f"shape {list(shape)} has an extent above {MAX_INPUT_ELEMENTS}")
        if len(shape) > MAX_DIMENSIONS:
            problems.append(f"shape has {len(shape)} dimensions, more than {MAX_DIMENSIONS}")
        if any(d < 0 for d in shape):
            problems.append(f"shape {list(shape)} has a negative dimension")
        if problems:
            pass  # a non-finite parameter makes the comparisons below meaningless
        elif init == "normal" and spec.get("scale", 1.0) <= 0:
            problems.append(f"normal scale must be > 0, got {spec['scale']}")
        elif init == "uniform" and not spec.get("low", 0.0) < spec.get("high", 1.0):
            problems.append(f"uniform low ({spec.get('low', 0.0)}) must be below high ({spec.get('high', 1.0)})")
        elif init == "uniform" and not math.isfinite(float(spec.get("high", 1.0)) - float(spec.get("low", 0.0))):
            problems.append("uniform high - low is beyond float64's range")
        for message in problems:
            self.issues.append(self.doc.issue(path, message, f"init {init} takes: {', '.join(INIT_KEYS[init]) or 'nothing more'}"))
        if problems or not self.sized(path, shape):
            return None
        return self.draw(init, shape, spec, position)

    def draw(self, init, shape, spec, position):
        seed = spec.get("seed")
        if init in ("randn", "rand"):
            # numpy's legacy global generator: one stream per experiment, reseeded by an input's own seed.
            if self.stream is None:
                self.stream = np.random.RandomState(self.settings.seed)
            if seed is not None:
                self.stream.seed(seed)
            drawn = (self.stream.randn if init == "randn" else self.stream.rand)(*shape)
            return np.asarray(drawn, dtype=np.float64)
        rng = np.random.default_rng(seed if seed is not None else [self.settings.seed, position])
        size = math.prod(shape)
        values = {
            "normal": lambda: rng.normal(spec.get("loc", 0.0), spec.get("scale", 1.0), size=shape),
            "uniform": lambda: rng.uniform(spec.get("low", 0.0), spec.get("high", 1.0), size=shape),
            "zeros": lambda: np.zeros(shape),
            "ones": lambda: np.ones(shape),
            "arange": lambda: (spec.get("start", 0.0) + spec.get("step", 1.0) * np.arange(size)).reshape(shape),
        }[init]()
        return np.asarray(values, dtype=np.float64)


# ---------------------------------------------------------------- shapes

def _matmul_shape(a: tuple, b: tuple) -> tuple:
    """numpy.matmul's result shape, or ValueError."""
    if not a or not b:
        raise ValueError("matmul needs arrays, not scalars")
    a2, b2 = ((1,) + a if len(a) == 1 else a), (b + (1,) if len(b) == 1 else b)
    if a2[-1] != b2[-2]:
        raise ValueError("inner dimensions differ")
    out = np.broadcast_shapes(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _shape_text(shapes) -> str:
    return " and ".join(str(tuple(s)) for s in shapes)


def infer_shape(expr, shapes: dict, functions: dict, values: dict | None = None) -> tuple:
    """The output shape of ``expr`` on inputs of ``shapes``; raise ``_Problem`` when they do not fit.

    Primitives run their table entry's ``check`` (axes, shapes, sizes), then
    their forward function, after a shape rule has made sure the result is
    not huge; declared functions are followed. With ``values`` (the declared
    inputs of one point) everything runs on them, so a user's function is
    never called on invented inputs (a solve would reject an all-zero matrix)
    and a label out of one_hot's range is caught; without, on zeros. A
    problem in the experiment's own expression carries the column of the
    call it is in.
    """

    def run(e, env, own):
        if isinstance(e, Var):
            return env[e.name]
        if isinstance(e, Const):
            return np.asarray(float(e.value)) if values is not None else np.zeros(())
        args = [run(a, env, own) for a in e.args]
        fn = functions.get(e.fn)
        if isinstance(fn, ExprFunction):
            return run(fn.body, dict(zip(fn.params, args)), False)
        where = f"in {tree.render(e)}"
        column = e.column if own else None
        if isinstance(fn, PythonFunction):
            try:
                return np.asarray(fn.forward(*args))
            except KeyboardInterrupt:
                raise
            except BaseException as err:
                raise _Problem(f"{where}: {fn.source} on shapes {_shape_text(a.shape for a in args)} "
                               f"raised {type(err).__name__}: {err}") from None
        return _primitive_shape(e, args, where, column)

    env = {name: (np.asarray(values[name], dtype=np.float64) if values is not None and name in values
                  else np.zeros(shape)) for name, shape in shapes.items()}
    return run(expr, env, True).shape


def _primitive_shape(e, args, where, column):
    """A primitive's value on its arguments, after its shape rules pass."""
    prim = primitives.get(e.fn)
    shapes = [a.shape for a in args]
    try:
        out = prim.check(shapes, **prim.settings(e.params)) if prim.check else None
        if out is None and prim.kind == "matmul":
            out = _matmul_shape(shapes[0], shapes[1])
        elif out is None:  # elementwise ops broadcast; the rest are no larger than their first argument
            out = np.broadcast_shapes(*shapes) if prim.kind == "elementwise" else shapes[0]
    except ValueError as err:
        if prim.check is not None and str(err):
            raise _Problem(f"{where}: {err}", f"`gradrun functions` shows what {e.fn} takes", column) from None
        what = "matmul" if prim.kind == "matmul" else f"{e.fn} (broadcasting)"
        raise _Problem(f"{where}: {what} of shapes {_shape_text(shapes)} does not fit",
                       "matmul needs (n, k) @ (k, m); elementwise ops need shapes that broadcast", column) from None
    if math.prod(out) > MAX_INTERMEDIATE_ELEMENTS:
        raise _Problem(f"{where}: result of shape {out} has more than {MAX_INTERMEDIATE_ELEMENTS} elements",
                       column=column)
    with np.errstate(all="ignore"):
        try:
            return np.asarray(prim.forward(*args, **e.kwargs))
        except Exception as err:
            raise _Problem(f"{where}: {e.fn} of shapes {_shape_text(shapes)} fails: {err}", column=column) from None


def screen_rows() -> int:
    """A screen's rows per input and point: one per direction."""
    from .screen import SCREEN_DIRECTIONS

    return SCREEN_DIRECTIONS


def full_check(check: str, entries: int, expr, functions: dict) -> bool:
    """Whether a point's check is element by element, as the verdict decides it
    (``verdict.check_point``): full, or auto up to FULL_LIMIT entries, or any user
    function without a VJP (a screen projects with VJPs)."""
    from .screen import FULL_LIMIT

    forward_only = any(isinstance(f, PythonFunction) and f.vjp is None for f in _reachable(expr, functions).values())
    return check == "full" or forward_only or (check == "auto" and entries <= FULL_LIMIT)


def _reachable(expr, functions: dict) -> dict:
    """The declared functions ``expr`` may call, directly or through others."""
    found: dict = {}
    todo = list(tree.calls(expr))
    while todo:
        name = todo.pop()
        if name in functions and name not in found:
            found[name] = functions[name]
            if isinstance(found[name], ExprFunction):
                todo.extend(tree.calls(found[name].body))
    return found


def _complex_unsafe(expr, functions: dict) -> list:
    reach = _reachable(expr, functions)
    names = set(tree.calls(expr)) | {c for f in reach.values() if isinstance(f, ExprFunction) for c in tree.calls(f.body)}
    unsafe = [n for n, f in reach.items() if isinstance(f, PythonFunction) and not f.complex_safe]
    unsafe += [n for n in names if n in primitives.PRIMITIVES and not primitives.get(n).complex_safe]
    return sorted(unsafe)


# ---------------------------------------------------------------- the checker

class _Checker:
    """Meaning checks and resolution of one document; collects every issue."""

    def __init__(self, doc: yamlload.Document, spec_dir: Path, device: str | None = None,
                 policy: usercode.Policy = usercode.DEFAULT):
        self.doc = doc
        self.spec_dir = spec_dir
        self.policy = policy  # what code references may reach (gradrun.usercode)
        self.device = device  # overrides every torch declaration's device
        self.seed = 0  # the defaults' seed, which declared torch modules are built under
        self.torch_decls: dict = {}  # name -> its torch declaration, to rebuild under another seed
        self.torch_built: dict = {}  # (name, seed) -> PythonFunction
        self.issues, self.broken = _schema_issues(doc)
        self.functions: dict = {}  # declared name -> ExprFunction | PythonFunction
        self.arity = {n: primitives.get(n).nargs for n in primitives.names()}  # None: any
        # Declared functions already reported as broken: using them is no second error.
        self.unusable: set = set()

    def ok(self, *path) -> bool:
        """False where the schema found an error: that part's shape is unknown, so it is not checked further."""
        return not any(b[: len(path)] == path or path[: len(b)] == b for b in self.broken)

    def add(self, path, message, hint="", key=False, column_offset=None):
        self.issues.append(self.doc.issue(path, message, hint, key=key, column_offset=column_offset))

    def expression(self, path, text, names):
        """Parse an expression string; problems become issues pointing inside the string."""
        try:
            return exprs.parse(text, self.arity, names)
        except exprs.ExprError as e:
            for p in e.problems:
                self.add(path, p.message, p.hint, column_offset=p.column)
            return None

    # -- defaults and functions

    def settings(self, path, data: dict, base: Settings) -> Settings:
        """The settings ``data`` gives over ``base``; a value breaking its rule is an issue and is not used."""
        values = {k: data[k] for k in SETTING_KEYS if k in data}
        if "reduce" in data:
            values["reduce"] = data["reduce"]
        for key, message in values_rules.setting_problems(values):
            self.add(path + (key,), message, "a finite number is needed here")
            del values[key]
        for k in ("rtol", "atol", "step"):
            if values_rules.is_number(values.get(k)):
                values[k] = float(values[k])
        return base.updated(**values)

    def declare_functions(self, declared: dict):
        bodies = {}
        for name, decl in declared.items():
            path = ("functions", name)
            if not self.ok(*path):
                self.unusable.add(name)
            elif name in primitives.PRIMITIVES:
                self.add(path, f"function '{name}' has the name of a built-in", "choose another name", key=True)
            elif isinstance(decl, str):
                bodies[name] = (("x",), decl, path)
            elif "expr" in decl:
                bodies[name] = (tuple(decl.get("params", ["x"])), decl["expr"], path + ("expr",))
            else:
                kind = next((k for k in ("torch", "jax") if k in decl), "python")
                fn = {"torch": self.torch_function, "jax": self.jax_function,
                      "python": self.python_function}[kind](name, decl, path)
                if fn is not None:
                    self.functions[name] = fn
                    self.arity[name] = fn.nargs
                else:
                    self.unusable.add(name)
        for name, (params, _, _) in bodies.items():
            self.arity[name] = len(params)
        for name in self.unusable:
            self.arity[name] = None
        for name, (params, body, path) in bodies.items():
            parsed = self.expression(path, body, params) if params else None
            if not params:
                self.add(path[:2], f"function '{name}' has no parameters")
            if parsed is None:
                self.unusable.add(name)
            else:
                self.functions[name] = ExprFunction(name, params, parsed)
        self.check_recursion()

    def python_function(self, name, decl, path):
        refs = {}
        for key in ("python", "vjp", "jvp", "hvp"):
            if key in decl:
                try:
                    refs[key] = usercode.resolve(decl[key], self.spec_dir, self.policy)
                except _Problem as p:
                    self.add(path + (key,), p.message, p.hint)
        if "python" not in refs or len(refs) < len([k for k in ("python", "vjp", "jvp", "hvp") if k in decl]):
            return None
        if "vjp" not in refs and "jvp" not in refs:
            self.add(path, f"python function '{name}' needs a 'vjp' (or 'jvp')",
                     "gradrun compares finite differences with your analytic derivative", key=True)
            return None
        params = self.code_params(path, decl, "python", refs["python"])
        if params is None:
            return None
        guarded = {k: usercode.guarded(refs.get(k), decl.get(k, "")) for k in ("python", "vjp", "jvp", "hvp")}
        return PythonFunction(name, params, guarded["python"], guarded["vjp"], guarded["jvp"],
                              bool(decl.get("complex_safe", False)), decl["python"], hvp=guarded["hvp"])

    def torch_function(self, name, decl, path, seed=None):
        """A torch declaration (see frameworks/torch.py), built under ``seed`` (the defaults' seed)."""
        seed = self.seed if seed is None else seed
        if (name, seed) in self.torch_built:
            return self.torch_built[(name, seed)]
        try:
            code = usercode.resolve(decl["torch"], self.spec_dir, self.policy)
        except _Problem as p:
            return self.add(path + ("torch",), p.message, p.hint)
        try:
            from .frameworks import torch as adapter
        except ImportError as e:
            return self.add(path + ("torch",), f"torch: needs PyTorch, which cannot be imported ({e})",
                            "install it: pip install 'gradrun[torch]'")
        try:
            fn = adapter.function(name, code, init=decl.get("init"), mode=decl.get("mode", "eval"), seed=seed,
                                  device=self.device or decl.get("device", "cpu"),
                                  complex_safe=decl.get("complex_safe", False), source=decl["torch"])
        except adapter.TorchDeclarationError as p:
            return self.add(path + ((p.key,) if p.key in decl else ("torch",)), p.message, p.hint)
        self.torch_decls[name], self.torch_built[(name, seed)] = decl, fn
        return fn

    def seeded(self, functions: dict, seed: int) -> dict:
        """The experiment's functions, torch ones built under its own seed."""
        return {n: self.torch_function(n, self.torch_decls[n], ("functions", n), seed) or f
                if n in self.torch_decls else f for n, f in functions.items()}

    def jax_function(self, name, decl, path):
        """A ``jax:`` function: JAX itself supplies the VJP (and the JVP where it can)."""
        try:
            from .frameworks import jax as adapter
        except ImportError as e:
            self.add(path + ("jax",), f"jax: functions need JAX, which cannot be imported ({e})",
                     "pip install 'gradrun[jax]'")
            return None
        try:
            fn = usercode.resolve(decl["jax"], self.spec_dir, self.policy)
        except _Problem as p:
            self.add(path + ("jax",), p.message, p.hint)
            return None
        params = self.code_params(path, decl, "jax", fn)
        return None if params is None else adapter.function(fn, name, decl["jax"])

    def code_params(self, path, decl, key, fn):
        """The input names of a user's callable, or None after an issue."""
        try:
            params = tree.python_params(fn)
        except (TypeError, ValueError):
            self.add(path + (key,), f"cannot read the parameters of '{decl[key]}'")
            return None
        if not params:
            self.add(path + (key,), f"'{decl[key]}' takes no positional parameters")
            return None
        return params

    def check_recursion(self):
        graph = {n: [c for c in tree.calls(f.body) if c in self.functions]
                 for n, f in self.functions.items() if isinstance(f, ExprFunction)}

        def cycle_from(start):
            stack = [(start, [start])]
            seen = set()
            while stack:
                node, trail = stack.pop()
                for nxt in graph.get(node, ()):
                    if nxt == start:
                        return trail + [start]
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append((nxt, trail + [nxt]))
            return None

        for name in list(graph):
            trail = cycle_from(name)
            if trail:
                how = "itself" if len(trail) == 2 else "itself through " + " -> ".join(trail)
                self.add(("functions", name), f"function '{name}' calls {how}",
                         "recursion cannot be expanded into a graph", key=True)
                del self.functions[name]
                self.unusable.add(name)

    # -- experiments

    def experiments(self, items: list, defaults: Settings) -> list:
        if len(items) > MAX_EXPERIMENTS:
            self.add(("experiments",), f"{len(items)} experiments, more than {MAX_EXPERIMENTS}", "split the file")
            return []
        first_seen: dict = {}
        out = []
        for i, data in enumerate(items):
            name = data.get("name") if isinstance(data, dict) else None
            if isinstance(name, str):
                if name in first_seen:
                    self.add(("experiments", i, "name"), f"duplicate experiment name '{name}' "
                             f"(first on line {self.doc.where(('experiments', first_seen[name], 'name'))[0]})")
                first_seen.setdefault(name, i)
            if self.ok("experiments", i):
                exp = self.experiment(i, data, defaults)
                if exp is not None:
                    out.append(exp)
        return out

    def written_order(self, path, names):
        return sorted(names, key=lambda n: self.doc.where(path + (n,), key=True))

    def experiment(self, i, data, defaults):
        path = ("experiments", i)
        before = len(self.issues)
        settings = self.settings(path, data, defaults)
        inputs, sweep = data.get("inputs", {}), data.get("sweep", {})
        swept_settings = [k for k in sweep if k in SWEPT_SETTINGS]
        swept_inputs = [k for k in sweep if k not in SWEPT_SETTINGS]
        for name in swept_inputs:
            if name in inputs:
                self.add(path + ("sweep", name), f"'{name}' is both an input and swept", "keep one", key=True)
        given = self.written_order(path + ("inputs",), inputs) + [n for n in swept_inputs if n not in inputs]
        given = sorted(given, key=lambda n: self.doc.where(
            path + (("inputs",) if n in inputs else ("sweep",)) + (n,), key=True))

        written = list(given)
        named = data.get("function")  # a torch module's parameters are inputs too
        fn = self.seeded({named: self.functions[named]}, settings.seed)[named] if named in self.functions else None
        supplied = fn.defaults if isinstance(fn, PythonFunction) else {}
        given += [n for n in supplied if n not in given]
        expr = self.build_expr(path, data, inputs, given)
        integers = [n for n in written if isinstance(inputs.get(n), dict) and "integer" in inputs[n]]
        differentiable = [n for n in written if n not in integers]
        if expr is not None and not given:
            self.add(path, "has no inputs, so nothing to differentiate", "add inputs or sweep")
        elif expr is not None and not differentiable and "wrt" not in data:
            self.add(path, "has only integer inputs, so nothing to differentiate", "add inputs or sweep")
        wrt = [w for n in data.get("wrt", differentiable)
               for w in (list(supplied) if n == "params" and supplied and n not in given else [n])]
        for k, name in enumerate(wrt):
            if name in integers:
                self.add(path + ("wrt", k), f"'{name}' is an integer input, which is never differentiated",
                         "remove it from wrt; integer inputs (labels, indices) are passed to the function as they are")
            elif name not in given:
                self.add(path + ("wrt", k), f"wrt names '{name}', which is not an input",
                         exprs.did_you_mean(name, given) or f"inputs: {', '.join(given)}")

        fixed = {}
        generator = _Inputs(self.doc, settings, self.issues)
        for position, name in enumerate(given):
            if name in inputs:
                value = generator.value(path + ("inputs", name), inputs[name], position)
                if value is not None:
                    fixed[name] = value
            elif name in supplied:
                fixed[name] = supplied[name]
        axes = self.sweep_axes(path, sweep, swept_inputs, swept_settings)
        if len(self.issues) > before or expr is None or axes is None:
            return None
        functions = self.seeded(_reachable(expr, self.functions), settings.seed)
        called = set(tree.calls(expr)).union(*(tree.calls(f.body) for f in functions.values()
                                                 if isinstance(f, ExprFunction)))
        if called & self.unusable:
            return None  # already reported where the function is declared

        points = self.points(axes, fixed, settings, swept_settings)
        if not self.fits(path, data, expr, fixed, swept_inputs, functions, wrt, settings, points):
            return None
        line, column = self.doc.where(path)
        return Experiment(
            name=data["name"], expr=expr, functions=functions, points=points, wrt=wrt,
            settings=settings, file=self.doc.file, line=line, column=column,
            description=data.get("description", self.source_form(data)),
            integers=tuple(integers),
        )

    @staticmethod
    def source_form(data) -> str:
        if "chain" in data:
            return "chain: " + ", ".join(data["chain"])
        return f"function: {data['function']}" if "function" in data else f"expr: {data['expr']}"

    def build_expr(self, path, data, inputs, given):
        forms = [k for k in FORMS if k in data]
        if len(forms) != 1:
            message = ("needs one of 'function', 'chain' or 'expr'" if not forms
                       else f"has both {' and '.join(repr(f) for f in forms)}; keep exactly one")
            self.add(path, message)
            return None
        form = forms[0]
        if form == "expr":
            parsed = self.expression(path + ("expr",), data["expr"], given)
            if parsed is not None:
                self.unused(path, inputs, given, tree.variables(parsed), "the expression")
            return parsed
        if form == "chain":
            ok = True
            for k, name in enumerate(data["chain"]):
                ok &= self.known(path + ("chain", k), name, want_one=True)
            params = ("x",)
            built = tree.chain(data["chain"], var="x") if ok else None
        else:
            name = data["function"]
            if not self.known(path + ("function",), name):
                return None
            params = self.params_of(name)
            built = Call(name, tuple(Var(p) for p in params))
        what = "the chain (its input is x)" if form == "chain" else f"'{data.get('function')}' (parameters: {', '.join(params)})"
        for p in params:
            if p not in given:
                self.add(path, f"input '{p}' of {what} is not given", "add it under inputs or sweep")
        self.unused(path, inputs, given, params, what)
        return built

    def unused(self, path, inputs, given, used, what):
        for name in given:
            if name not in used:
                where = path + ("inputs" if name in inputs else "sweep", name)
                self.add(where, f"input '{name}' is not used by {what}", "remove it, or use it", key=True)

    def known(self, path, name, want_one=False) -> bool:
        if name in self.unusable:
            return False  # already reported where it is declared
        if name not in self.arity:
            self.add(path, f"unknown function '{name}'", exprs.did_you_mean(name, self.arity)
                     or "`gradrun functions` lists the built-ins")
            return False
        if want_one and self.arity[name] != 1:
            self.add(path, f"chain members take one argument; '{name}' takes {self.arity[name]}",
                     "use expr for functions of several inputs")
            return False
        needs = [p.name for p in getattr(primitives.PRIMITIVES.get(name), "params", ()) if p.required]
        if needs and name not in self.functions:
            self.add(path, f"{name} needs {' and '.join(needs)}, which only an expression can give",
                     f"write expr: \"{primitives.get(name).signature()}\" with values for them")
            return False
        return True

    def params_of(self, name) -> tuple:
        fn = self.functions.get(name)
        if fn is not None:
            return tuple(fn.params)
        prim = primitives.get(name)
        if prim.nargs is None:  # concatenate, stack: two inputs, a and b
            return ("a", "b")
        return prim.arg_names or primitives.ARG_NAMES[prim.nargs]

    def sweep_axes(self, path, sweep, swept_inputs, swept_settings):
        """name -> list of values, in the order written; None after an issue."""
        axes = {}
        ok = True
        for name in self.written_order(path + ("sweep",), sweep):
            spec, where = sweep[name], path + ("sweep", name)
            if isinstance(spec, dict):
                kind = next(k for k in SEQUENCES if k in spec)
                with np.errstate(all="ignore"):
                    values = _sequence(self.doc, where, kind, spec[kind], MAX_SWEEP_POINTS, self.issues)
                values = _finite(self.doc, where, values, self.issues)
                values = None if values is None else [float(v) for v in values]
            else:
                values = self.sweep_list(where, name, spec)
                if values is not None and name != "method":
                    values = _finite(self.doc, where, np.asarray(values), self.issues)
                    values = None if values is None else [float(v) for v in values]
            if name == "step" and values is not None and not all(v > 0 for v in values):
                bad = next(v for v in values if not v > 0)
                self.add(where, f"a swept step must be positive, and this sweep gives {bad:g}",
                         "sweep steps with logspace, or list positive numbers")
                values = None
            ok &= values is not None
            axes[name] = values
        if not ok:
            return None
        total = math.prod(len(v) for v in axes.values())
        if total > MAX_SWEEP_POINTS:
            self.add(path + ("sweep",), f"the sweep has {total} points, more than {MAX_SWEEP_POINTS}",
                     "sweep fewer values, or fewer names at once", key=True)
            return None
        return axes

    def sweep_list(self, where, name, values):
        if name == "method":
            bad = [v for v in values if v not in METHODS]
            if bad:
                self.add(where, f"method sweep holds {bad[0]!r}, not a method",
                         exprs.did_you_mean(str(bad[0]), METHODS) or f"methods: {', '.join(METHODS)}")
                return None
            return list(values)
        bad = [v for v in values if isinstance(v, str)]
        if bad:
            self.add(where, f"sweep of '{name}' holds the string {bad[0]!r}", "sweep numbers here")
            return None
        return [float(v) for v in values]

    def points(self, axes, fixed, settings, swept_settings) -> list:
        names = list(axes)
        points = []
        for index, combo in enumerate(itertools.product(*(axes[n] for n in names))):
            coords = dict(zip(names, combo))
            inputs = dict(fixed)
            for n, v in coords.items():
                if n not in SWEPT_SETTINGS:
                    inputs[n] = np.asarray(v, dtype=np.float64)
            changed = {k: coords[k] for k in swept_settings}
            points.append(Point(index, inputs, coords, settings.updated(**changed) if changed else None))
        return points or [Point(0, dict(fixed))]

    def fits(self, path, data, expr, fixed, swept_inputs, functions, wrt, settings, points) -> bool:
        """Shapes, complex-safety and report size; False after an issue."""
        form = next(k for k in FORMS if k in data)
        shapes = {n: a.shape for n, a in fixed.items()} | {n: () for n in swept_inputs}
        try:
            out_shape = infer_shape(expr, shapes, functions, points[0].inputs if points else dict(fixed))
        except _Problem as p:
            self.add(path + (form,), p.message, p.hint,
                     column_offset=p.column if form == "expr" and p.column is not None else None)
            return False
        methods = {settings.method} | {p.settings.method for p in points if p.settings}
        if "complex" in methods:
            unsafe = _complex_unsafe(expr, functions)
            if unsafe:
                if "method" in data:
                    where = path + ("method",)
                elif "method" in data.get("sweep", {}):
                    where = path + ("sweep", "method")
                else:
                    where = ("defaults", "method")
                self.add(where, f"method complex needs a complex-safe graph; not complex-safe: {', '.join(unsafe)}",
                         "declare complex_safe: true if your code takes complex input, or use another method")
                return False
        per_output = 1 if settings.reduce == "sum" else math.prod(out_shape)
        entries = sum(math.prod(shapes[n]) for n in wrt) * per_output
        rows = len(points) * (entries if full_check(settings.check, entries, expr, functions)
                              else len(wrt) * screen_rows())
        if settings.order == 2:
            if not self.second_order_ok(path, data, per_output, methods, _reachable(expr, functions)):
                return False
            entries = sum(math.prod(shapes[n]) for n in wrt) ** 2
            rows = len(points) * (entries if settings.check == "full" else min(entries, hessian.FULL_LIMIT))
        if rows > MAX_REPORT_ROWS:
            self.add(path, f"the report would have {rows} rows, more than {MAX_REPORT_ROWS}",
                     "use reduce: sum, fewer wrt inputs, smaller inputs or a coarser sweep")
            return False
        return True


    def second_order_ok(self, path, data, per_output, methods, reach) -> bool:
        """order: 2 needs a scalar output, a numeric method other than complex, and user
        functions it can differentiate twice."""
        ok = True
        if per_output != 1:
            self.add(path + ("order",) if "order" in data else path, "order: 2 needs a scalar output",
                     "add reduce: sum to check the Hessian of the sum of the outputs")
            ok = False
        if "complex" in methods:
            self.add(path + ("method",) if "method" in data else path,
                     "method complex of the gradient is the analytic side itself at order: 2",
                     "use central, central4, richardson or auto")
            ok = False
        for name, fn in sorted(reach.items()):
            if isinstance(fn, PythonFunction) and fn.hvp is None and not fn.complex_safe:
                self.add(("functions", name), f"python function '{name}' needs an 'hvp' rule for order: 2",
                         "hvp(cotangent, tangents, *inputs) -> one block per input, or complex_safe: true "
                         "if its vjp takes complex input", key=True)
                ok = False
        return ok


# ---------------------------------------------------------------- entry points

def _read(path: Path):
    """(text, bytes) of the file, or raise SpecError with one Issue.

    The size is checked before reading (stat), and at most the limit is read,
    so a file that grows meanwhile or lies about its size costs no more.
    """
    file = str(path)
    too_big = SpecError([Issue(file, 1, 1, "", f"the file is larger than {MAX_FILE_BYTES} bytes",
                               "split it, or generate large inputs with shape and init")])
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise too_big
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise SpecError([Issue(file, 1, 1, "", f"cannot read the file: {e.strerror or e}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise too_big
    try:
        return raw.decode("utf-8"), raw
    except UnicodeDecodeError as e:
        raise SpecError([Issue(file, 1, 1, "", f"the file is not UTF-8 text (byte {e.start})")]) from None


def load_spec(path, device: str | None = None, policy: usercode.Policy = usercode.DEFAULT) -> Spec:
    """Read, check and resolve a spec file; raise ``SpecError`` with every issue found.

    ``device``, when given, is where every ``torch:`` function runs, whatever it declares.
    ``policy`` bounds the code the spec may name (see ``gradrun.usercode``).
    """
    path = Path(path)
    text, raw = _read(path)
    doc = yamlload.load(text, str(path))
    if not isinstance(doc.data, dict):
        raise SpecError([Issue(str(path), 1, 1, "", "a spec file is a mapping with an 'experiments' list",
                               "start from an example in experiments/")])
    checker = _Checker(doc, path.resolve().parent, device, policy)
    data = doc.data
    defaults = checker.settings(("defaults",), data.get("defaults") or {}, Settings()) \
        if checker.ok("defaults") else Settings()
    checker.seed = defaults.seed
    functions = data.get("functions")
    checker.declare_functions(functions if isinstance(functions, dict) else {})
    experiments = data.get("experiments")
    resolved = checker.experiments(experiments, defaults) if isinstance(experiments, list) else []
    if checker.issues:
        raise SpecError(checker.issues)
    return Spec(str(path), resolved, hashlib.sha256(raw).hexdigest(), defaults)


def validate(path, policy: usercode.Policy = usercode.DEFAULT) -> list:
    """Every issue in a spec file, sorted by place; empty when it is fine."""
    try:
        load_spec(path, policy=policy)
    except SpecError as e:
        return list(e.issues)
    return []


__all__ = [
    "load_spec", "validate", "schema_path", "load_schema", "infer_shape", "import_callable",
    "MAX_FILE_BYTES", "MAX_EXPERIMENTS", "MAX_INPUT_ELEMENTS", "MAX_INTERMEDIATE_ELEMENTS",
    "MAX_SWEEP_POINTS", "MAX_REPORT_ROWS",
]

"""Input values and generators: literal arrays, linspace/range/logspace, shape + init, and their seeds."""

from __future__ import annotations

import math

import numpy as np

from . import values as values_rules
from .limits import MAX_DIMENSIONS, MAX_INPUT_ELEMENTS

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


def sequence(doc, path, kind, args, limit, issues):
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


EXACT = {"float64": 53, "float32": 24}  # integers up to 2 ** these are exact in each dtype


def _beyond_exact(value, bits: int):
    """The first integer of a nested list (or a single one) beyond ``2 ** bits`` in size, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, int) and abs(item) > 2 ** bits and math.log10(abs(item)) < 309:
            return item  # larger ones are refused as numbers too large for a float64
    return None


FLOAT32_MAX = float(np.finfo(np.float32).max)


def finite(doc, path, array, issues, dtype: str = "float64"):
    """``array`` if every value is finite, in ``dtype`` too, else None after recording an issue."""
    if array is not None and not np.isfinite(array).all():
        issues.append(doc.issue(path, "values are not finite (inf or nan)", "keep numbers within float64's range"))
        return None
    if array is not None and dtype == "float32" and array.size and np.abs(array).max() > FLOAT32_MAX:
        # checked in float32, 1e39 is inf: its every entry was nan, a failure with no cause named
        issues.append(doc.issue(path, f"values beyond float32's range ({FLOAT32_MAX:.3g}) under dtype: float32, "
                                      f"such as {np.abs(array).max():g}", "use dtype: float64, or smaller values"))
        return None
    return array


class Inputs:
    """Generates the inputs of one experiment, in the order written, from its seed."""

    def __init__(self, doc, settings, issues):
        self.doc, self.settings, self.issues = doc, settings, issues
        self.stream = None  # the legacy RandomState shared by randn/rand inputs

    def value(self, path, value, position):
        """An input's value as a float64 array, or None after recording an issue."""
        with np.errstate(all="ignore"):
            array = self.make(path, value, position)
        return finite(self.doc, path, array, self.issues, self.settings.dtype)

    def make(self, path, value, position):
        if isinstance(value, (int, float)):
            return np.asarray(float(value), dtype=np.float64)
        if isinstance(value, dict) and "integer" in value:  # labels: exact in float64, never differentiated
            value = value["integer"]
            dtype = self.settings.dtype  # the point is checked rounded to it, labels too
            inexact = _beyond_exact(value, EXACT[dtype])
            if inexact is not None:
                rounded = float(np.asarray(inexact, dtype=np.float64).astype(dtype))
                self.issues.append(self.doc.issue(
                    path + ("integer",), f"label {inexact} is beyond 2**{EXACT[dtype]}: {dtype}, which holds the "
                    f"labels, would make it {rounded:.17g}", "labels are class numbers or indices: use smaller ones"))
                return None
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
            return sequence(self.doc, path, kind, value[kind], MAX_INPUT_ELEMENTS, self.issues)
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
        if "seed" in spec and values_rules.RULES["seed"](spec["seed"], "seed"):  # the schema allows 2.0 for 2
            problems.append(values_rules.RULES["seed"](spec["seed"], "seed"))
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



"""Fuzzing the boundary (issue 12): random YAML, hostile spec-shaped mappings and random bytes.

Whatever comes in, ``validate`` and ``run`` answer with exit 0, 1 or 2 and
plain messages (never a traceback, never "this is a gradrun bug"), and
``gradrun.check`` returns or raises ``TypeError``/``ValueError``. The
examples are derandomized (tests/conftest.py), so CI never passes by chance.
"""

import json
import math
import os
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradrun
from gradrun import cli, spec

FUZZ = settings(max_examples=int(os.environ.get("GRADRUN_FUZZ_EXAMPLES", "50")), deadline=None, suppress_health_check=list(HealthCheck))

# Numbers a careless user or an attacker may write where gradrun wants one.
HOSTILE_NUMBERS = st.sampled_from([
    0, 1, 2, 3, -1, -3, 2.0, 0.5, -0.0, 1e-300, 5e-324, 1e22, 1e308, -1e308, 2**31, 2**63, 10**400,
    float("nan"), float("inf"), float("-inf"),
])
HOSTILE_TEXT = st.sampled_from(["", "x", "auto", "sum", "é", "𝑥", "a\n::error::x", "\x00", "1e5", "yes", "..os:system"])
SCALARS = st.one_of(HOSTILE_NUMBERS, HOSTILE_TEXT, st.booleans(), st.none())
ANY = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(HOSTILE_TEXT, inner, max_size=4)),
                   max_leaves=12)
SMALL_SHAPES = st.lists(st.sampled_from([0, 1, 2, 3, -1, 2.0, 1e22, 10**400, 2.5]), max_size=3)
GENERATORS = st.one_of(
    st.fixed_dictionaries({"shape": SMALL_SHAPES}, optional={
        "init": st.sampled_from(["normal", "uniform", "zeros", "ones", "arange", "randn", "rand", "bogus"]),
        "seed": HOSTILE_NUMBERS, "low": HOSTILE_NUMBERS, "high": HOSTILE_NUMBERS, "loc": HOSTILE_NUMBERS,
        "scale": HOSTILE_NUMBERS, "start": HOSTILE_NUMBERS, "step": HOSTILE_NUMBERS}),
    st.builds(lambda k, a: {k: a}, st.sampled_from(["linspace", "range", "logspace"]),
              st.lists(HOSTILE_NUMBERS, min_size=2, max_size=4)),
)
INPUT = st.one_of(HOSTILE_NUMBERS, st.lists(HOSTILE_NUMBERS, max_size=3),
                  st.lists(st.lists(HOSTILE_NUMBERS, min_size=2, max_size=2), max_size=2), GENERATORS, ANY)
SETTINGS = st.fixed_dictionaries({}, optional={
    "method": st.sampled_from(["central", "forward", "complex", "auto", "bogus"]), "step": HOSTILE_NUMBERS,
    "rtol": HOSTILE_NUMBERS, "atol": HOSTILE_NUMBERS, "dtype": st.sampled_from(["float32", "float64", "int8"]),
    "check": st.sampled_from(["full", "screen", "auto", "x"]), "seed": HOSTILE_NUMBERS, "order": HOSTILE_NUMBERS,
})
EXPERIMENT = st.builds(
    lambda name, form, inputs, sweep, extra: {"name": name, **form, "inputs": inputs, **sweep, **extra},
    st.sampled_from(["a", "b", "é", "", "x y"]),
    st.sampled_from([{"expr": "sum(sigmoid(X @ W))"}, {"expr": "sin(x) * y"}, {"function": "square"},
                     {"chain": ["square", "sigmoid"]}, {"expr": "x +"}, {"function": "nope"}]),
    st.dictionaries(st.sampled_from(["x", "y", "X", "W"]), INPUT, max_size=3),
    st.one_of(st.just({}), st.builds(lambda v: {"sweep": {"step": v}}, INPUT),
              st.builds(lambda v: {"sweep": {"x": v}}, INPUT)),
    SETTINGS,
)
SPECS = st.builds(lambda defaults, exps: {"version": 1, "defaults": defaults, "experiments": exps},
                  SETTINGS, st.lists(EXPERIMENT, min_size=1, max_size=2))

# A valid spec, and the places one hostile value is dropped into (most mutants still run).
BASE = {
    "version": 1,
    "defaults": {"seed": 0},
    "experiments": [
        {"name": "a", "expr": "sum(sigmoid(X @ W))",
         "inputs": {"X": {"shape": [2, 2], "init": "uniform", "low": -1, "high": 1}, "W": [[1.0, 2.0], [3.0, 4.0]]}},
        {"name": "b", "expr": "sin(x) * y", "inputs": {"x": 0.5}, "sweep": {"y": [1.0, 2.0]}},
    ],
}
SLOTS = [("defaults", k) for k in ("rtol", "atol", "step", "seed", "method", "check", "dtype")] + [
    ("experiments", 0, "inputs", "X", "shape", 0), ("experiments", 0, "inputs", "X", "shape"),
    ("experiments", 0, "inputs", "X", "init"), ("experiments", 0, "inputs", "X", "seed"),
    ("experiments", 0, "inputs", "X", "low"), ("experiments", 0, "inputs", "X", "high"),
    ("experiments", 0, "inputs", "X"), ("experiments", 0, "inputs", "W"), ("experiments", 0, "inputs", "W", 0, 1),
    ("experiments", 0, "check"), ("experiments", 0, "reduce"), ("experiments", 0, "wrt"),
    ("experiments", 1, "inputs", "x"), ("experiments", 1, "sweep", "y"), ("experiments", 1, "sweep", "step"),
    ("experiments", 1, "sweep", "method"), ("experiments", 1, "step"), ("experiments", 1, "rtol"),
    ("experiments", 1, "method"), ("experiments", 1, "name"), ("experiments", 1, "expr"),
    ("experiments", 1, "order"), ("experiments", 0, "order"),
]


def _mutated(changes) -> dict:
    data = json.loads(json.dumps(BASE))
    for path, value in changes:
        target = data
        for key in path[:-1]:
            target = target[key] if isinstance(target, (dict, list)) and (
                key in target if isinstance(target, dict) else -len(target) <= key < len(target)) else None
        if isinstance(target, dict) or (isinstance(target, list) and -len(target) <= path[-1] < len(target)):
            target[path[-1]] = value  # else an earlier change replaced the way there: nothing to change
    return data


MUTANTS = st.lists(st.tuples(st.sampled_from(SLOTS), st.one_of(HOSTILE_NUMBERS, HOSTILE_TEXT, INPUT)),
                   min_size=1, max_size=2).map(_mutated)


def _hostile_yaml(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def assert_answers_plainly(path: Path, out: Path):
    """validate, then run: exit 0/1/2, no traceback, no "bug" anywhere."""
    issues = spec.validate(path)
    assert all(i.line > 0 and "bug" not in (i.message + i.hint).lower() for i in issues), [str(i) for i in issues]
    runner = CliRunner()
    for args in (["validate", str(path)], [str(path), "--out", str(out), "-q"]):
        result = runner.invoke(cli.cli, args, prog_name="gradrun")
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code in (0, 1, 2), result.output
        said = result.output.replace(str(path.parent), "DIR")  # a random folder name may hold "bug"
        assert "Traceback" not in said and "bug" not in said.lower(), result.output
    return issues


def _in_tmp(write):
    with tempfile.TemporaryDirectory(prefix="gradrun-fuzz-") as folder:
        path = Path(folder) / "fuzz.yaml"
        write(path)
        return assert_answers_plainly(path, Path(folder) / "out")


@FUZZ
@given(MUTANTS)
def test_a_valid_spec_with_hostile_values(data):
    _in_tmp(lambda path: path.write_text(_hostile_yaml(data), encoding="utf-8"))


@FUZZ
@given(SPECS)
def test_hostile_spec_shaped_mappings(data):
    _in_tmp(lambda path: path.write_text(_hostile_yaml(data), encoding="utf-8"))


@FUZZ
@given(ANY)
def test_random_yaml_documents(data):
    _in_tmp(lambda path: path.write_text(_hostile_yaml(data), encoding="utf-8"))


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_bytes(raw):
    _in_tmp(lambda path: path.write_bytes(raw))


@FUZZ
@given(st.sampled_from(["sin(x)", "sum(X)", "x +", "", "nope(x)", "x @ x"]),
       st.dictionaries(st.sampled_from(["x", "X", "1x", ""]), INPUT, max_size=2),
       st.dictionaries(st.sampled_from(["rtol", "rtoll", "step", "method", "check", "seed", "dtype", "atol", "order"]),
                       st.one_of(HOSTILE_NUMBERS, HOSTILE_TEXT), max_size=3))
def test_the_python_api_raises_only_type_and_value_errors(f, inputs, settings_):
    try:
        result = gradrun.check(f, inputs, **settings_)
    except (TypeError, ValueError) as error:
        assert "bug" not in str(error).lower()
        return
    assert result.error is None or "bug" not in result.error.lower()
    assert result.passed in (True, False)  # a verdict, whatever the values
    for key in ("rtol", "atol", "step"):
        if key in settings_ and not isinstance(settings_[key], str):
            assert math.isfinite(settings_[key])  # a non-finite setting never got through

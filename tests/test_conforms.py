"""The schema's fast yes (gradrun.conforms) never says yes where jsonschema says no."""

import copy
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from gradrun import schema, yamlload
from gradrun.conforms import conforms
from gradrun.model import SpecError

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(ROOT.glob("experiments/*.yaml")) + sorted((ROOT / "tests").rglob("*.yaml"))
SCHEMA = json.loads(schema.schema_path().read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def data_of(path):
    try:
        return yamlload.load(path.read_text(encoding="utf-8"), str(path)).data
    except (SpecError, UnicodeDecodeError):
        return None


DOCUMENTS = [(p, d) for p in SPECS if (d := data_of(p)) is not None]


def valid(data) -> bool:
    return not any(True for _ in VALIDATOR.iter_errors(data))


@pytest.mark.parametrize("path", sorted(ROOT.glob("experiments/*.yaml")), ids=lambda p: p.stem)
def test_every_example_is_surely_valid_without_jsonschema(path):
    assert conforms(data_of(path), SCHEMA)


def test_the_fast_yes_agrees_with_jsonschema_on_every_spec_in_the_repository():
    assert len(DOCUMENTS) > 50
    for path, data in DOCUMENTS:
        assert conforms(data, SCHEMA) <= valid(data), path
    assert any(not valid(d) for _, d in DOCUMENTS) and any(valid(d) for _, d in DOCUMENTS)


REPLACEMENTS = [None, True, False, 0, 1, -1, 2.5, -0.5, 1e300, float("nan"), "", "x", "full", "central", "float64",
                "1bad name", [], [1], ["a", "a"], [1, 2, 3, 4, 5], {}, {"shape": [2], "init": "normal"}, {"x": 1}]


def places(data, path=()):
    """Every path into the data (mappings' values and keys' places, lists' items)."""
    yield path
    if isinstance(data, dict):
        for k, v in data.items():
            yield from places(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from places(v, path + (i,))


def mutated(data, path, how, value):
    data = copy.deepcopy(data)
    *head, last = path
    parent = data
    for k in head:
        parent = parent[k]
    if how == "set":
        parent[last] = value
    elif how == "drop" and isinstance(parent, dict):
        del parent[last]
    elif how == "add" and isinstance(parent[last], dict):
        parent[last]["unknown_key" if value is None else "seed"] = value
    return data


def test_the_fast_yes_agrees_with_jsonschema_on_thousands_of_broken_specs():
    """Each valid spec, one node at a time replaced, dropped, or given a key: never a wrong yes."""
    rng = np.random.default_rng(14)
    checked = disagreements = 0
    for path, data in DOCUMENTS:
        if not valid(data):
            continue
        spots = [p for p in places(data) if p]
        for spot in rng.choice(len(spots), size=min(len(spots), 40), replace=False):
            how = rng.choice(["set", "set", "drop", "add"])
            value = REPLACEMENTS[rng.integers(len(REPLACEMENTS))]
            broken = mutated(data, spots[spot], how, value)
            fast, slow = conforms(broken, SCHEMA), valid(broken)
            assert fast <= slow, (path, spots[spot], how, value)
            checked += 1
            disagreements += fast != slow
    assert checked > 1000
    assert disagreements < checked // 10  # the fast path is taken for nearly every valid one


@pytest.mark.parametrize("schema_, value, expected", [
    ({"type": "integer"}, 2.0, True), ({"type": "integer"}, True, False), ({"type": "number"}, False, False),
    ({"enum": [1, "a"]}, True, False), ({"const": 0}, False, False), ({"minimum": 0}, "text", True),
    ({"uniqueItems": True}, [1, 1.0], False), ({"not": {}}, 1, False), ({"$ref": "#/definitions/none"}, 1, False),
    ({"items": [{"type": "string"}]}, ["a", 1], True), ({"items": [{"type": "string"}], "additionalItems": False}, ["a", 1], False), ({"pattern": "^a"}, "ba", False), ({"pattern": "a"}, "ba", True),
])
def test_draft7_corners(schema_, value, expected):
    assert conforms(value, schema_) is expected
    if expected:
        assert valid_against(schema_, value)


def valid_against(schema_, value) -> bool:
    return jsonschema.Draft7Validator(schema_).is_valid(value)

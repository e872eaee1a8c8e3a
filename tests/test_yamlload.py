"""The YAML loader: numbers as a numeric user means them, places for every node, nothing unsafe."""

from __future__ import annotations

import pytest

from gradrun import yamlload
from gradrun.model import SpecError

SCALARS = [
    ("1e-5", 1e-5), ("1.0e-6", 1e-6), ("-2E3", -2000.0), (".5", 0.5), ("+3", 3), ("12", 12),
    ("1_000", "1_000"), ("true", True), ("false", False), ("yes", "yes"), ("no", "no"),
    ("on", "on"), ("off", "off"), ("True", "True"), ("~", None), ("null", None), ("", None),
    ("'1e-5'", "1e-5"), ('"true"', "true"), (".inf", float("inf")), ("-.inf", float("-inf")),
    ("0x1F", "0x1F"), ("1:30", "1:30"), ("!!float 3", 3.0), ("!!str 3", "3"),
]


@pytest.mark.parametrize("text, value", SCALARS)
def test_scalars(text, value):
    assert yamlload.load(f"a: {text}\n").data == {"a": value}
    assert type(yamlload.load(f"a: {text}\n").data["a"]) is type(value)


def errors(text) -> list:
    with pytest.raises(SpecError) as caught:
        yamlload.load(text, "f.yaml")
    return caught.value.issues


def test_positions_of_values_and_keys():
    doc = yamlload.load("top:\n  items: [1, {b: 2}]\n  name: 'q'\n")
    assert doc.marks[("top", "items", 1, "b")] == (2, 18)
    assert doc.key_marks[("top", "name")] == (3, 3)
    assert doc.text_marks[("top", "name")] == (3, 10)  # inside the quotes
    assert doc.where(("top", "items", 7)) == (2, 10)  # nearest known ancestor


def test_duplicate_key_names_both_lines():
    [issue] = errors("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert (issue.line, issue.column) == (4, 3)
    assert "duplicate key 'c' (first on line 3, again on line 4)" in issue.message


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['true']", "!!python/name:os.system",
                                 "!!binary aGk=", "!!set {a}", "!custom 1"])
def test_tags_beyond_plain_data_are_errors(tag):
    [issue] = errors(f"a: {tag}\n")
    assert "is not allowed" in issue.message and issue.line == 1


def test_tab_indentation():
    [issue] = errors("a:\n\tb: 1\n")
    assert (issue.line, issue.column, issue.message) == (2, 1, "tab in indentation")


def test_tab_inside_a_value_is_fine():
    assert yamlload.load("a: 'x\ty'\n").data == {"a": "x\ty"}


def test_syntax_error_has_a_place():
    [issue] = errors("a: [1, 2\nb: 3\n")
    assert issue.line == 2 and "YAML syntax error" in issue.message


def test_alias_bomb_stops_early():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    [issue] = errors("\n".join(lines) + "\n")
    assert f"more than {yamlload.MAX_ALIAS_NODES} nodes" in issue.message


def test_small_aliases_are_fine():
    doc = yamlload.load("a: &v [1, 2]\nb: *v\n")
    assert doc.data == {"a": [1, 2], "b": [1, 2]}


def test_recursive_alias_is_an_error():
    assert "contains it" in errors("a: &a [1, *a]\n")[0].message


def test_deep_nesting_is_an_error():
    assert "nest" in errors("a: " + "[" * 3000 + "]" * 3000 + "\n")[0].message


def test_empty_document():
    assert yamlload.load("# nothing\n").data is None


def test_complex_key_is_an_error():
    assert "key must be a plain scalar" in errors("? [1, 2]\n: 3\n")[0].message


def test_path_text():
    assert yamlload.path_text(("experiments", 2, "inputs", "X")) == "experiments[2].inputs.X"

"""The JSON Schema of a spec file: where it is, loading it, and its errors as Issues a person can act on."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from . import expr as exprs
from . import yamlload
from .conforms import conforms, pattern
from .inputs import SEQUENCES
from .model import METHODS

SCHEMA_NAME = "experiment.schema.json"
IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_]*$"  # the schema's pattern of function, input and sweep names
IDENTIFIER_HINT = "use letters, digits and _, not starting with a digit"
MERGE_KEY_HINT = "YAML merge keys are not supported; write the keys out, or put shared settings under defaults:"


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


def schema_issues(doc: yamlload.Document):
    """(issues, broken): the schema's complaints, and the top two levels of every path they touch."""
    if conforms(doc.data, _schema()):  # the usual case, without jsonschema's import
        return [], set()
    validator = _validator()(_schema())
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


@lru_cache(maxsize=1)
def _validator():
    """Draft-07 as jsonschema checks it, but ``pattern`` with the schema's own meaning of ``$``
    (``gradrun.conforms.pattern``), so a value with a trailing line break is refused here too."""
    import jsonschema
    from jsonschema.exceptions import ValidationError

    def pattern_rule(validator, text, instance, schema):
        if validator.is_type(instance, "string") and not pattern(text).search(instance):
            yield ValidationError(f"{instance!r} does not match {text!r}")

    return jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": pattern_rule})


def _kind(value) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _shown(value) -> str:
    """A value in a message: its kind and repr; an empty one (``expr:`` with nothing after it) said so."""
    return "nothing (the value is empty)" if value is None else f"{_kind(value)} {value!r}"


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
        from jsonschema.exceptions import best_match

        deepest = best_match(error.context)
        if deepest is not None and len(tuple(deepest.absolute_path)) > len(path):
            return _schema_error_issues(doc, deepest)
    return [doc.issue(path, f"{_shown(value)} is not allowed here"[:200],
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
        return [doc.issue(path + (k,), f"unknown key '{k}'", MERGE_KEY_HINT if k == "<<" else
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
        return [doc.issue(path, f"expected {wanted}, got {_shown(value)}"[:200], hint)]
    if v == "pattern":
        hint = schema.get("description") or (IDENTIFIER_HINT if error.validator_value == IDENTIFIER
                                             else f"pattern {error.validator_value}")
        return [doc.issue(path, f"{value!r} is not a valid name here", hint)]
    if v == "propertyNames":
        bad = error.instance if isinstance(error.instance, str) else ""
        return [doc.issue(path, f"'{bad}' is not a valid name", IDENTIFIER_HINT)]
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

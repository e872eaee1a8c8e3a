"""Whether a spec's data surely fits the JSON Schema, without importing jsonschema.

Importing ``jsonschema`` costs about 0.15 s of every run, more than loading
and checking a small spec. Most specs are valid, and saying so needs only the
few draft-07 keywords the schema uses. ``conforms(data, schema)`` answers
True only when the data fits for certain; anything it does not know (a
keyword it does not implement, ``uniqueItems`` over non-strings) answers
False, and then ``gradrun.schema`` asks jsonschema, which finds and words
every error. So a False here costs time, never a verdict.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Words of a schema that say nothing about validity.
ANNOTATIONS = frozenset(("$id", "$schema", "title", "description", "default", "examples", "definitions", "$comment"))

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


def _number(v) -> bool:
    return TYPES["number"](v)


def _same(a, b) -> bool:
    """JSON equality for scalars: true is not 1; lists and mappings are left to jsonschema."""
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


@lru_cache(maxsize=256)
def pattern(text: str):
    """A schema's ``pattern`` compiled with its JSON Schema (ECMA 262) meaning, where ``$`` ends the
    text: Python's ``$`` also matches before a final line break, which would let ``"name\\n"`` through."""
    out, escaped, in_class = [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return re.compile("".join(out))


def _type(schema, v, root) -> bool:
    wanted = schema["type"]
    return any(TYPES[t](v) for t in ([wanted] if isinstance(wanted, str) else wanted))


def _object(schema, v, root) -> bool:
    if not isinstance(v, dict):
        return True
    props = schema.get("properties", {})
    if any(k not in v for k in schema.get("required", ())):
        return False
    extra = schema.get("additionalProperties", True)
    for k, value in v.items():
        if k in props:
            if not conforms(value, props[k], root):
                return False
        elif not conforms(value, extra, root):
            return False
    names = schema.get("propertyNames")
    return names is None or all(conforms(k, names, root) for k in v)


def _array(schema, v, root) -> bool:
    if not isinstance(v, list):
        return True
    items = schema.get("items", True)
    if isinstance(items, list):  # positional: the first items each by its own schema, the rest by additionalItems
        rest = schema.get("additionalItems", True)
        each = [items[i] if i < len(items) else rest for i in range(len(v))]
    else:
        each = [items] * len(v)
    if not all(conforms(x, s, root) for x, s in zip(v, each)):
        return False
    if not schema.get("minItems", 0) <= len(v) <= schema.get("maxItems", len(v)):
        return False
    if schema.get("uniqueItems"):
        return all(isinstance(x, str) for x in v) and len(set(v)) == len(v)
    return True


def _string(schema, v, root) -> bool:
    if not isinstance(v, str):
        return True
    if not schema.get("minLength", 0) <= len(v) <= schema.get("maxLength", len(v)):
        return False
    return "pattern" not in schema or pattern(schema["pattern"]).search(v) is not None


def _bounds(schema, v, root) -> bool:
    if not _number(v):
        return True
    checks = (("minimum", lambda b: v >= b), ("maximum", lambda b: v <= b),
              ("exclusiveMinimum", lambda b: v > b), ("exclusiveMaximum", lambda b: v < b))
    return all(test(schema[k]) for k, test in checks if k in schema)


# keyword -> (the keywords one check reads, the check)
RULES = (
    (("type",), _type),
    (("enum",), lambda s, v, root: any(_same(v, e) for e in s["enum"])),
    (("const",), lambda s, v, root: _same(v, s["const"])),
    (("properties", "required", "additionalProperties", "propertyNames"), _object),
    (("items", "additionalItems", "minItems", "maxItems", "uniqueItems"), _array),
    (("pattern", "minLength", "maxLength"), _string),
    (("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"), _bounds),
    (("anyOf",), lambda s, v, root: any(conforms(v, b, root) for b in s["anyOf"])),
    (("allOf",), lambda s, v, root: all(conforms(v, b, root) for b in s["allOf"])),
)
KNOWN = ANNOTATIONS | {k for words, _ in RULES for k in words} | {"$ref"}


def conforms(value, schema, root=None) -> bool:
    """True if ``value`` surely fits the draft-07 ``schema`` (``root`` holds its definitions)."""
    root = schema if root is None else root
    if isinstance(schema, bool):
        return schema
    if "$ref" in schema:  # draft 7: beside $ref, every other keyword is ignored
        ref = schema["$ref"]
        if not ref.startswith("#/definitions/"):
            return False
        return conforms(value, root.get("definitions", {}).get(ref[len("#/definitions/"):], False), root)
    if not KNOWN.issuperset(schema):
        return False
    return all(check(schema, value, root) for words, check in RULES if any(w in schema for w in words))

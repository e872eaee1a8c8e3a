"""Spec files: read, check against the schema and for meaning, resolve into a ``Spec``.

``load_spec(path)`` returns a fully resolved ``model.Spec`` (defaults applied,
inputs generated, sweeps expanded, expressions built) or raises
``model.SpecError`` carrying every problem in the file, each with its line and
column. ``validate(path)`` returns those problems as a list. Nothing here
prints, exits, or evaluates an expression as Python.

The work is split by concern: ``schema`` (the JSON Schema and its messages),
``inputs`` (values and generators), ``graph`` (each experiment's graph, built
once: reach, complex safety), ``graphcheck`` (its shapes), ``declare``
(declared functions), ``resolve`` (experiments, sweeps, points) and
``limits``; this module reads the file and keeps the public API.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import primitives, reading, usercode, yamlload  # primitives: still reachable as spec.primitives
from .graphcheck import infer_shape
from .limits import (MAX_DIMENSIONS, MAX_EXPERIMENTS, MAX_FILE_BYTES, MAX_INPUT_ELEMENTS,
                     MAX_INTERMEDIATE_ELEMENTS, MAX_REPORT_ROWS, MAX_SWEEP_POINTS)
from .model import Issue, Settings, Spec, SpecError
from .resolve import Checker
from .schema import load_schema, schema_path

import_callable = usercode.resolve  # the one resolver of code references (see gradrun.usercode)

def _read(path: Path):
    """(text, bytes) of the file, or raise SpecError with one Issue (``gradrun.reading``: a regular
    file, at most the size limit of it, not a symlink out of the project)."""
    file = str(path)
    try:
        raw = reading.read_bounded(path, MAX_FILE_BYTES)
    except reading.TooLarge as e:
        raise SpecError([Issue(file, 1, 1, "", str(e), "split it, or generate large inputs with shape and init")]) \
            from None
    except reading.Unreadable as e:
        raise SpecError([Issue(file, 1, 1, "", f"cannot read the file: {e}")]) from None
    except OSError as e:
        raise SpecError([Issue(file, 1, 1, "", f"cannot read the file: {e.strerror or e}")]) from None
    try:
        return raw.decode("utf-8"), raw
    except UnicodeDecodeError as e:  # placed as YAML errors are: line, and column in characters
        start = raw.rfind(b"\n", 0, e.start) + 1
        line, column = raw.count(b"\n", 0, e.start) + 1, len(raw[start:e.start].decode("utf-8")) + 1
        raise SpecError([Issue(file, line, column, "", f"the file is not UTF-8 text: byte 0x{raw[e.start]:02X} "
                               f"(byte {e.start} of the file) is not UTF-8",
                               "save the file as UTF-8")]) from None


def load_spec(path, device: str | None = None, policy: usercode.Policy = usercode.DEFAULT) -> Spec:
    """Read, check and resolve a spec file; raise ``SpecError`` with every issue found.

    ``device``, when given, is where every ``torch:`` function runs, whatever it declares.
    ``policy`` bounds the code the spec may name (see ``gradrun.usercode``).
    """
    path = Path(path)
    text, raw = _read(path)
    return spec_of(path, yamlload.load(text, str(path)), raw, device, policy)


def spec_of(path: Path, doc, raw: bytes, device: str | None = None,
            policy: usercode.Policy = usercode.DEFAULT) -> Spec:
    """``load_spec`` of a file already read (``raw``) and parsed (``doc``)."""
    if not isinstance(doc.data, dict):
        raise SpecError([Issue(str(path), 1, 1, "", "a spec file is a mapping with an 'experiments' list",
                               "start from an example in experiments/")])
    defaults, resolved, issues = resolve_document(doc, path.resolve().parent, device, policy)
    if issues:
        raise SpecError(issues)
    return Spec(str(path), resolved, hashlib.sha256(raw).hexdigest(), defaults)


def resolve_document(doc, spec_dir: Path, device: str | None = None,
                     policy: usercode.Policy = usercode.DEFAULT) -> tuple:
    """(defaults, experiments, issues) of a parsed spec document (a mapping).

    ``doc`` may be a view of some of the file's experiments (``gradrun.window``),
    which is how -j's workers resolve their part of a spec.
    """
    with usercode.kept_cwd():  # loading imports the user's modules and calls their functions
        return _resolve_document(Checker(doc, spec_dir, device, policy), doc.data)


def _resolve_document(checker, data) -> tuple:
    defaults = checker.settings(("defaults",), data.get("defaults") or {}, Settings()) \
        if checker.ok("defaults") else Settings()
    checker.seed = defaults.seed
    functions = data.get("functions")
    checker.declare_functions(functions if isinstance(functions, dict) else {})
    experiments = data.get("experiments")
    resolved = checker.experiments(experiments, defaults) if isinstance(experiments, list) else []
    return defaults, resolved, checker.issues


def validate(path, policy: usercode.Policy = usercode.DEFAULT) -> list:
    """Every issue in a spec file, sorted by place; empty when it is fine."""
    try:
        load_spec(path, policy=policy)
    except SpecError as e:
        return list(e.issues)
    return []


__all__ = [
    "load_spec", "resolve_document", "validate", "schema_path", "load_schema", "infer_shape", "import_callable",
    "MAX_FILE_BYTES", "MAX_EXPERIMENTS", "MAX_INPUT_ELEMENTS", "MAX_INTERMEDIATE_ELEMENTS",
    "MAX_SWEEP_POINTS", "MAX_REPORT_ROWS", "MAX_DIMENSIONS", "primitives",
]

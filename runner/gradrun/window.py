"""Part of a spec, resolved where it runs: how ``-j``'s workers get their experiments.

The main process of ``gradrun -j N`` reads and parses each spec file
(``parse``) and no more: which experiments there are, their names and
places, it reads from the parsed document. A worker resolves the experiments
of its unit itself (``resolve``) through a ``Window``: the document showing
only those experiments, whose issues point at their places in the whole
file. Resolving an experiment never depends on the others (each draws its
inputs from its own seed), so a window's experiments are the ones
``spec.load_spec`` makes of the whole file.

What only the whole list can tell (too many experiments, a name used twice,
inputs past the per-file limit) ``parse`` checks. A file that is not a plain list of named experiments, or
that has such a problem, is loaded whole in the main process instead, as a
serial run loads it, so that its issues read exactly as they always do.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import spec as spec_module
from . import usercode, yamlload
from .limits import MAX_FILE_INPUT_ELEMENTS
from .model import Settings
from .resolve import listing_issues


@dataclass
class Outline:
    """An experiment as the main process knows it before a worker has resolved it."""

    name: str
    file: str
    line: int
    settings: Settings = field(default_factory=Settings)  # replaced by the resolved ones when a worker sends them


@dataclass
class Parsed:
    """A spec file read and parsed, its experiments not yet resolved (``-j``'s main process holds these)."""

    path: str
    doc: yamlload.Document
    experiments: list  # Outlines, in the order written
    sha256: str
    defaults: Settings = field(default_factory=Settings)


class Window:
    """A parsed spec document showing only the experiments at ``positions``; places are the whole file's."""

    def __init__(self, doc: yamlload.Document, positions):
        self.doc, self.positions, self.file = doc, tuple(positions), doc.file
        items = doc.data["experiments"]
        self.data = {**doc.data, "experiments": [items[k] for k in self.positions]}

    def _whole(self, path) -> tuple:
        path = tuple(path)
        if len(path) > 1 and path[0] == "experiments" and isinstance(path[1], int):
            return ("experiments", self.positions[path[1]]) + path[2:]
        return path

    def where(self, path, key: bool = False):
        return self.doc.where(self._whole(path), key)

    def issue(self, path, message: str, hint: str = "", key: bool = False, column_offset=None):
        return self.doc.issue(self._whole(path), message, hint, key, column_offset)


def _plain(data) -> bool:
    """A mapping whose experiments are a non-empty list of mappings, each with a name."""
    items = data.get("experiments") if isinstance(data, dict) else None
    return isinstance(items, list) and bool(items) and all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in items)


def _declared_elements(value) -> int:
    """About how many elements an input value as written generates (0 for what is not a value);
    cheap, from the document alone, so that -j's main process can tell a file past the per-file limit."""
    if isinstance(value, list):
        return sum(_declared_elements(v) for v in value) if value else 0
    if isinstance(value, dict):
        if isinstance(value.get("shape"), list):
            dims = [d for d in value["shape"] if isinstance(d, (int, float)) and not isinstance(d, bool)]
            return math.prod(max(int(d), 0) for d in dims) if len(dims) == len(value["shape"]) else 0
        for kind in ("linspace", "logspace"):
            if isinstance(value.get(kind), list) and len(value[kind]) == 3 and isinstance(value[kind][2], int):
                return max(value[kind][2], 0)
        if "integer" in value:
            return _declared_elements(value["integer"])
        return 1 if "range" in value else 0  # a range's length is bounded by the sweep and input limits
    return 1 if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _heavy(data) -> bool:
    """Whether the inputs written in a plain file come to more than the per-file limit, which only
    the whole file can tell: such a file is loaded whole, so the limit is reported as without -j."""
    total = 0
    for item in data["experiments"]:
        inputs = item.get("inputs")
        total += sum(_declared_elements(v) for v in inputs.values()) if isinstance(inputs, dict) else 0
        if total > MAX_FILE_INPUT_ELEMENTS:
            return True
    return False


def parse(path, device: str | None = None, policy: usercode.Policy = usercode.DEFAULT):
    """A ``Parsed`` spec; or, for a file that is not plain, the ``Spec`` ``load_spec`` makes of it.

    Raises ``SpecError`` as ``load_spec`` does for a file that cannot be read or parsed.
    """
    path = Path(path)
    text, raw = spec_module._read(path)
    doc = yamlload.load(text, str(path))
    if not _plain(doc.data) or listing_issues(doc, doc.data["experiments"]) or _heavy(doc.data):
        return spec_module.spec_of(path, doc, raw, device, policy)
    outlines = [Outline(item["name"], str(path), doc.where(("experiments", k))[0])
                for k, item in enumerate(doc.data["experiments"])]
    return Parsed(str(path), doc, outlines, hashlib.sha256(raw).hexdigest())


def resolve(parsed: Parsed, positions, device: str | None = None,
            policy: usercode.Policy = usercode.DEFAULT) -> tuple:
    """(experiments, issues): the experiments at ``positions`` resolved, in order, or the issues found."""
    folder = Path(parsed.path).resolve().parent
    _, experiments, issues = spec_module.resolve_document(Window(parsed.doc, positions), folder, device, policy)
    if not issues and len(experiments) != len(positions):  # pragma: no cover - every skip comes with an issue
        raise RuntimeError(f"{parsed.path}: {len(positions) - len(experiments)} experiments were not resolved")
    return experiments, issues


def sweep_kinds(spec, positions) -> dict:
    """``sweep_<name>`` -> "text" or "number", for the experiments at ``positions``, in order of first appearance.

    What the report's sweep columns will be when every experiment reports
    rows: from the resolved points of a ``Spec``, from the document of a
    ``Parsed`` (a swept method is text, every other swept value a number).
    """
    kinds: dict = {}
    for k in positions:
        if isinstance(spec, Parsed):
            sweep = spec.doc.data["experiments"][k].get("sweep")
            names = {name: ("text" if name == "method" else "number") for name in sweep} \
                if isinstance(sweep, dict) else {}
        else:
            points = spec.experiments[k].points
            coords = points[0].coords if points else {}
            names = {name: ("text" if isinstance(v, str) else "number") for name, v in coords.items()}
        for name, kind in names.items():
            kinds.setdefault("sweep_" + name, kind)
    return kinds

"""Reading YAML the way a numeric user means it, remembering where every node was.

PyYAML's safe loader follows YAML 1.1: ``1e-5`` is a string there, ``yes`` and
``off`` are booleans, and a repeated key silently wins. Here the document is
composed with PyYAML's own scanner and parser (no constructor ever runs), and
the node graph is turned into plain Python data by hand:

- ``1e-5``, ``1.0e-6``, ``-2E3``, ``.5`` are floats, ``12`` is an int;
- only ``true`` and ``false`` are booleans (``yes``/``no``/``on``/``off`` stay strings);
- ``~``, ``null`` and an empty value are ``None``;
- a repeated key is an error naming both lines;
- any tag but the plain core ones (``!!str``, ``!!int``, ``!!float``, ``!!bool``,
  ``!!null``, ``!!seq``, ``!!map``) is an error, so ``!!python/...`` never builds anything;
- aliases are followed, but the number of nodes they add is bounded
  (``MAX_ALIAS_NODES``), as are the nodes of the whole document (``MAX_NODES``)
  and its nesting (``MAX_DEPTH``), so an alias bomb stops early;
- a tab in indentation and a syntax error are errors with their line and column.

``load(text, file)`` returns a ``Document``: the data, plus the (line, column)
of every node, keyed by its path in the document (a tuple of keys and list
indices). Lines and columns count from 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from .model import Issue, SpecError

MAX_NODES = 100_000  # nodes composed, and nodes of the data after following aliases
MAX_ALIAS_NODES = 10_000  # nodes added by following aliases
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_INT_DIGITS = 308  # beyond this an integer does not fit a float64

TAG = "tag:yaml.org,2002:"
ALLOWED_TAGS = {TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}

INT = re.compile(r"^[-+]?[0-9]+$")
FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?$")
SPECIAL_FLOATS = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}


class NumericResolver(BaseResolver):
    """Implicit tags for plain scalars: only null, true/false, ints and floats."""


NumericResolver.yaml_implicit_resolvers = {}
NumericResolver.add_implicit_resolver(TAG + "null", re.compile(r"^(?:~|null|)$"), ["~", "n", ""])
NumericResolver.add_implicit_resolver(TAG + "bool", re.compile(r"^(?:true|false)$"), list("tf"))
NumericResolver.add_implicit_resolver(TAG + "int", INT, list("-+0123456789"))
NumericResolver.add_implicit_resolver(
    TAG + "float", re.compile(f"{FLOAT.pattern}|^[-+]?\\.inf$|^\\.nan$"), list("-+0123456789.")
)


class _Overflow(Exception):
    """Composition stopped at a limit; ``mark`` is where."""

    def __init__(self, message, mark):
        super().__init__(message)
        self.message, self.mark = message, mark


class _Bounded:
    """Counts nodes and measures nesting as they are composed, so a document past a limit
    stops there, before the rest of it costs time and memory."""

    composed = 0
    depth = 0

    def compose_node(self, parent, index):
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _Overflow(f"the document has more than {MAX_NODES} nodes", self.peek_event().start_mark)
        if self.depth > MAX_DEPTH:
            raise _Overflow(f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self.depth += 1
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1


class ComposingLoader(_Bounded, Reader, Scanner, Parser, Composer, NumericResolver):
    """Scanner, parser and composer only: nodes come out, no Python object is ever built."""

    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        NumericResolver.__init__(self)


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python parser alone
    FastComposingLoader = None
else:
    class FastComposingLoader(_Bounded, Composer, CParser, NumericResolver):
        """The same, with libyaml's scanner and parser (several times faster) under Python's composer."""

        def __init__(self, stream):
            CParser.__init__(self, stream)
            Composer.__init__(self)
            NumericResolver.__init__(self)


Mark = tuple  # (line, column), both from 1


@dataclass
class Document:
    """Plain data from a YAML file, with the place of every node and key."""

    file: str
    data: object
    marks: dict = field(default_factory=dict)  # path -> (line, column) of the value
    key_marks: dict = field(default_factory=dict)  # path -> (line, column) of the key naming it
    text_marks: dict = field(default_factory=dict)  # path -> (line, column) of a string's first character

    def where(self, path: tuple, key: bool = False) -> Mark:
        """The place of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if key and path in self.key_marks:
                return self.key_marks[path]
            if path in self.marks:
                return self.marks[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def issue(self, path: tuple, message: str, hint: str = "", key: bool = False, column_offset=None) -> Issue:
        """An Issue at ``path``; ``column_offset`` points inside a string value where that is exact."""
        line, column = self.where(path, key=key)
        if column_offset is not None and tuple(path) in self.text_marks:
            line, column = self.text_marks[tuple(path)]
            column += column_offset
        return Issue(self.file, line, column, path_text(path), message, hint)


def path_text(path) -> str:
    """``("experiments", 2, "inputs", "X")`` -> ``experiments[2].inputs.X``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def mark(node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns a composed node graph into plain data, recording marks and problems."""

    def __init__(self, doc: Document, source: str):
        self.doc = doc
        self.source = source
        self.issues: list = []
        self.nodes = 0
        self.alias_nodes = 0
        self.stopped = False

    def problem(self, node, path, message, hint=""):
        line, column = mark(node)
        self.issues.append(Issue(self.doc.file, line, column, path_text(path), message, hint))

    def build(self, node, path=(), depth=0, via_alias=False, active=()):
        if self.stopped:
            return None
        self.nodes += 1
        self.alias_nodes += via_alias
        if self.nodes > MAX_NODES or self.alias_nodes > MAX_ALIAS_NODES:
            self.stopped = True
            what = "aliases expand" if self.alias_nodes > MAX_ALIAS_NODES else "the document has"
            limit = MAX_ALIAS_NODES if self.alias_nodes > MAX_ALIAS_NODES else MAX_NODES
            self.problem(node, path, f"{what} to more than {limit} nodes", "write the data out, or make it smaller")
            return None
        if depth > MAX_DEPTH:
            self.stopped = True
            self.problem(node, path, f"nesting deeper than {MAX_DEPTH} levels")
            return None
        if id(node) in active:
            self.problem(node, path, "an alias refers to a node that contains it")
            return None
        self.doc.marks.setdefault(path, mark(node))
        if node.tag not in ALLOWED_TAGS:
            self.problem(node, path, f"tag '{node.tag.replace(TAG, '!!')}' is not allowed",
                         "spec files hold plain data only")
            return None
        # A node reached twice is an alias (or a repeated anchor target).
        seen = getattr(node, "_gradrun_seen", False)
        node._gradrun_seen = True
        alias = via_alias or seen
        inner = active + (id(node),)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(n, path + (i,), depth + 1, alias, inner) for i, n in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth, alias, inner)
        self.problem(node, path, "unexpected YAML node")  # pragma: no cover
        return None

    def mapping(self, node, path, depth, alias, active):
        out: dict = {}
        first_line: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag not in ALLOWED_TAGS:
                self.problem(key_node, path, "a key must be a plain scalar")
                continue
            key = self.scalar(key_node, path, record=False)
            if isinstance(key, (list, dict)) or key is None:
                self.problem(key_node, path, "a key must be a plain scalar")
                continue
            key = key if isinstance(key, str) else key_node.value  # as written: true, 1e5 (not True, 100000.0)
            if key in out:
                line = mark(key_node)[0]
                self.problem(key_node, path + (key,), f"duplicate key '{key}' (first on line {first_line[key]}, again on line {line})",
                             "remove one of them")
                continue
            first_line[key] = mark(key_node)[0]
            self.doc.key_marks.setdefault(path + (key,), mark(key_node))
            out[key] = self.build(value_node, path + (key,), depth + 1, alias, active)
        return out

    def scalar(self, node, path, record=True):
        text = node.value
        tag = node.tag
        if record:
            self.text_mark(node, path)
        if tag == TAG + "str":
            return text
        if tag == TAG + "null":
            return None
        if tag == TAG + "bool":
            if text in ("true", "false"):
                return text == "true"
        elif tag == TAG + "int" and INT.match(text):
            if len(text.lstrip("+-")) > MAX_INT_DIGITS:
                self.problem(node, path, f"an integer of {len(text.lstrip('+-'))} digits is too large",
                             "numbers in a spec must fit a float64 (about 1.8e308)")
                return None
            return int(text)
        elif tag == TAG + "float":
            if text.lower() in SPECIAL_FLOATS:
                return SPECIAL_FLOATS[text.lower()]
            if FLOAT.match(text):
                return float(text)
        self.problem(node, path, f"'{text}' is not a valid {tag.replace(TAG, '!!')}")
        return None

    def text_mark(self, node, path):
        """Record where a one-line string's characters start, when they map 1:1 onto the file."""
        if path in self.doc.text_marks or node.start_mark.line != node.end_mark.line:
            return
        raw = self.source[node.start_mark.index:node.end_mark.index]
        line, column = mark(node)
        if raw == node.value:
            self.doc.text_marks[path] = (line, column)
        elif node.style in ("'", '"') and raw == node.style + node.value + node.style:
            self.doc.text_marks[path] = (line, column + 1)


def tab_issues(text: str, file: str) -> list:
    """A tab in a line's indentation is an error YAML reports obscurely; say it plainly."""
    issues = []
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            issues.append(Issue(file, number, indent.index("\t") + 1, "", "tab in indentation",
                                "indent with spaces; YAML does not allow tabs there"))
    return issues


def _compose(text: str):
    """The node graph of ``text``: libyaml's parser when there is one; Python's words any syntax error."""
    loaders = [FastComposingLoader, ComposingLoader] if FastComposingLoader else [ComposingLoader]
    for number, kind in enumerate(loaders, start=1):
        loader = kind(text)
        try:
            return loader.get_single_node()
        except yaml.YAMLError:
            if number == len(loaders):
                raise
        finally:
            loader.dispose()
    return None  # pragma: no cover - the last loader returns or raises


def load(text: str, file: str = "<string>") -> Document:
    """Parse one YAML document into a ``Document``; raise ``SpecError`` with every problem found."""
    doc = Document(file, None)
    issues = tab_issues(text, file)
    if issues:
        raise SpecError(issues)
    try:
        node = _compose(text)
    except _Overflow as e:
        line, column = e.mark.line + 1, e.mark.column + 1
        raise SpecError([Issue(file, line, column, "", e.message,
                               "write the data out with generators (shape and init, linspace), or split the file")]) from None
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        line, column = (m.line + 1, m.column + 1) if m else (1, 1)
        context = e.context or ""
        if e.context and e.context_mark and e.context_mark.line != m.line:
            context += f" (from line {e.context_mark.line + 1})"
        message = ": ".join(p for p in (context, e.problem) if p)
        raise SpecError([Issue(file, line, column, "", f"YAML syntax error: {message}")]) from None
    except ReaderError as e:  # a character YAML does not allow: say where it is
        at = min(e.position, len(text))
        line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        raise SpecError([Issue(file, line, column, "", f"character U+{e.character:04X} is not allowed in YAML",
                               "remove it, or write it as an escape in a double-quoted string")]) from None
    except yaml.YAMLError as e:
        raise SpecError([Issue(file, 1, 1, "", f"YAML error: {e}")]) from None
    except RecursionError:
        raise SpecError([Issue(file, 1, 1, "", "the document is nested too deeply")]) from None
    if node is None:
        return doc
    builder = _Builder(doc, text)
    try:
        doc.data = builder.build(node)
    except RecursionError:
        builder.issues.append(Issue(file, 1, 1, "", "the document is nested too deeply"))
    if builder.issues:
        raise SpecError(builder.issues)
    return doc


__all__ = ["Document", "load", "path_text", "MAX_NODES", "MAX_ALIAS_NODES", "MAX_DEPTH"]

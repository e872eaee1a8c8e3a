"""Results for CI: JUnit XML (one testcase per experiment) and GitHub Actions annotations."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from . import drift
from .atomic import atomic_write
from .model import ExperimentResult, one_line
from .readings import WORST_SHOWN, _group_by_file, _plural, _shape, describe, entry_lines, stats, worst_entries


def _unique(names) -> list:
    seen = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def _testcase(suite: ET.Element, result: ExperimentResult, name: str, classname: str, drifts=()) -> None:
    s = stats(result)
    case = ET.SubElement(
        suite, "testcase", name=name, classname=classname, time=f"{result.seconds:.3f}"
    )
    if result.file:
        case.set("file", result.file)
    if result.line:
        case.set("line", str(result.line))
    drift_lines = [drift.describe(d) for d in drifts]
    if result.error is not None:
        node = ET.SubElement(case, "error", message=result.error.splitlines()[0] if result.error else "",
                             type="InternalError")
        node.text = "\n".join([result.error] + drift_lines)
    elif not result.passed:
        multi_output, swept = _shape(result)
        message = (
            f"{s['failures']} of {_plural(s['elements'], 'element')} outside tolerance; worst "
            + describe(s["worst"], multi_output, swept)
        )
        node = ET.SubElement(case, "failure", message=message, type="GradientMismatch")
        node.text = "\n".join(entry_lines(result, worst_entries(result))
                              + (["baseline drift:"] + drift_lines if drift_lines else []))
    elif drift_lines:
        node = ET.SubElement(case, "failure", message=f"{_plural(len(drift_lines), 'drift')} from the baseline; "
                             + drift_lines[0], type="BaselineDrift")
        node.text = "\n".join(drift_lines)
    out = [f"{_plural(s['elements'], 'element')} checked ({result.check})"]
    if s["kinks"]:
        out.append(f"{_plural(s['kinks'], 'kink')} (not differentiable there, not failures)")
    out += [f"note: {n}" for n in result.notes]
    ET.SubElement(case, "system-out").text = "\n".join(out)


def _vanished(drifts, file: str) -> list:
    """Experiments of the baseline that did not run, as results (a testcase, an annotation)."""
    return [ExperimentResult(d.experiment, [], file=file, line=d.line)
            for d in drifts if d.file == file and d.kind == "missing-experiment"]


def junit_xml(results, drifts=None) -> str:
    """JUnit XML: one testsuite per spec file, one uniquely named testcase per experiment.

    With ``drifts``, an experiment that regressed from its baseline fails
    (``BaselineDrift``) and lists its drifts; one that vanished is a failing testcase.
    """
    drifts = drifts or []
    root = ET.Element("testsuites", name="gradrun")
    counted = []
    for file, group in _group_by_file(results).items():
        classname = Path(file).stem if file else "gradrun"
        suite = ET.SubElement(root, "testsuite", name=classname)
        if file:
            suite.set("file", file)
        group = group + _vanished(drifts, file)
        for result, name in zip(group, _unique(r.name for r in group)):
            _testcase(suite, result, name, classname, drift.for_experiment(drifts, file, result.name))
        _count(suite, group, drifts)
        counted += group
    _count(root, counted, drifts)
    _xml_safe(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# What XML 1.0 cannot hold at all, escaped or not (NUL, ESC, lone surrogates, U+FFFE): ElementTree
# writes it as it is, and a CI server then rejects the whole file.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(root: ET.Element) -> None:
    """Every text and attribute of the tree with characters XML cannot hold shown escaped (``\\x1b``)."""
    def safe(text):
        return _NOT_XML.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", text)

    for node in root.iter():
        node.text = None if node.text is None else safe(node.text)
        node.attrib.update({k: safe(v) for k, v in node.attrib.items()})


def _count(node: ET.Element, results, drifts=()) -> None:
    bad = drift.regressed(drifts)
    node.set("tests", str(len(results)))
    node.set("failures", str(sum((not r.passed or (r.file, r.name) in bad) and r.error is None for r in results)))
    node.set("errors", str(sum(r.error is not None for r in results)))
    node.set("time", f"{sum(r.seconds for r in results):.3f}")


def write_junit(path, results, drifts=None) -> None:
    """Write the JUnit XML of all results, atomically."""
    atomic_write(path, junit_xml(results, drifts))


# --- GitHub Actions annotations ---------------------------------------------------


def _escape(text: str, prop: bool = False) -> str:
    """GitHub's workflow-command escaping: %, CR and LF always; ':' and ',' in properties; any other
    control character (ESC, which GitHub's log shows as colour) as ``one_line`` shows it."""
    text = one_line(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github_annotations(results, drifts=None) -> list:
    """``::error file=…,line=…,title=gradrun: NAME::message`` for every failing or regressed experiment."""
    drifts = drifts or []
    bad = drift.regressed(drifts)
    lines = []
    for file, group in _group_by_file(results).items():
        for result in group + _vanished(drifts, file):
            mine = drift.for_experiment(drifts, file, result.name)
            if result.passed and not mine:
                continue
            s = stats(result)
            if result.error is not None:
                message = [f"error: {result.error}"]
            elif not result.passed:
                message = [f"{s['failures']} of {_plural(s['elements'], 'element')} outside tolerance"]
                message += entry_lines(result, worst_entries(result))
            else:
                message = []
            if (result.file or file, result.name) in bad:
                message.append(f"{_plural(len(mine), 'drift')} from the baseline:")
                message += [drift.describe(d) for d in mine[:WORST_SHOWN]]
            props = f"file={_escape(result.file or file, True)}"
            if result.line:
                props += f",line={result.line}"
            props += f",title={_escape('gradrun: ' + result.name, True)}"
            lines.append(f"::error {props}::{_escape(chr(10).join(message))}")
    return lines

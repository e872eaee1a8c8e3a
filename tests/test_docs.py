"""The docs restate some of the code (options, CSV columns, methods, links):
these tests keep the two from drifting apart."""

import re
from pathlib import Path

import click
import pytest

from gradrun import cli, model, report

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _text(*names) -> str:
    return "\n".join((ROOT / n).read_text(encoding="utf-8") for n in names)


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def _options(command: click.Command):
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            yield max(param.opts, key=len)


@pytest.mark.parametrize("name", ["run", "validate", "functions", "plot"])
def test_every_option_is_documented(name):
    command = cli.cli.commands[name]
    docs = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))
    missing = [o for o in _options(command) if f"`{o}" not in docs and f", {o}" not in docs and o != "--help"]
    assert not missing, f"options of `gradrun {name}` not in the docs: {missing}"


def test_every_csv_column_is_documented():
    docs = _text("docs/commands.md")
    table = {m.group(1) for m in re.finditer(r"^\| ([a-z_0-9, ]+?) \|", docs, re.M)}
    documented = {c.strip() for row in table for c in row.split(",")}
    missing = [c for c in report.BASE_COLUMNS if c not in documented]
    assert not missing, f"CSV columns missing from docs/commands.md: {missing}"


def test_every_method_is_in_the_method_table():
    docs = _text("docs/how-a-check-works.md")
    for method in model.METHODS:
        assert re.search(rf"^\| `{method}`", docs, re.M) or f"/ `{method}`" in docs, method

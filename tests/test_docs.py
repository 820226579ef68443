"""The README and docs/ stay true to the tree: the code map, links, settings and cited tests.

The code map is the first fenced block after README's "## Code map" heading. On each of its
lines the first word is a path; the rest is a description. A path is relative to the folder of
the nearest line above it that is less indented and ends in "/" (a line with no indentation is
relative to the repository's root). The rule for the map:
- every path it names exists;
- it names every Python module under webapp/, except that a subpackage's `__init__.py` and
  the contents of webapp/migrations/ (Alembic's env.py and revisions) may stand under their
  folder's line instead (naming them too is allowed);
- it names every top-level folder of the repository (hidden ones, and what .gitignore keeps
  out of git, such as build/ and *.egg-info/, aside).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from webapp import config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PACKAGE = ROOT / "webapp"
README_LIMIT = 8192
#: Top-level folders that are never part of the tree (.gitignore's).
UNTRACKED = {"build", "htmlcov", "__pycache__", "dist"}

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def code_map(text: str) -> list[str]:
    """The lines of the README's code map."""
    heading = re.search(r"^## Code map\s*$", text, re.MULTILINE)
    assert heading, 'README.md has no "## Code map" heading'
    block = re.search(r"^```[^\n]*\n(.*?)^```", text[heading.end() :], re.MULTILINE | re.DOTALL)
    assert block, 'no fenced block after "## Code map"'
    return [line for line in block.group(1).splitlines() if line.strip()]


def map_paths(lines: list[str]) -> list[str]:
    """The paths the code map names, relative to the repository's root ("x/" for a folder)."""
    folders: list[tuple[int, str]] = []  # (indent, folder) of the enclosing folder lines
    paths = []
    for line in lines:
        indent = len(line) - len(line.lstrip())
        word = line.split()[0]
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = (folders[-1][1] if folders else "") + word
        paths.append(path)
        if word.endswith("/"):
            folders.append((indent, path))
    return paths


def test_map_paths_resolve_through_indentation():
    lines = ["top.py  x", "pkg/  y", "  a.py  z", "  sub/", "    b.py", "  c.py", "other/"]
    assert map_paths(lines) == [
        "top.py",
        "pkg/",
        "pkg/a.py",
        "pkg/sub/",
        "pkg/sub/b.py",
        "pkg/c.py",
        "other/",
    ]


def required_modules() -> set[str]:
    required = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if "__pycache__" in relative.parts or "migrations" in relative.parts:
            continue
        if path.name == "__init__.py" and path.parent != PACKAGE:
            continue
        required.add(relative.as_posix())
    return required


def top_level_folders() -> set[str]:
    return {
        entry.name + "/"
        for entry in ROOT.iterdir()
        if entry.is_dir()
        and not entry.name.startswith(".")
        and entry.name not in UNTRACKED
        and not entry.name.endswith(".egg-info")
    }


def test_readme_code_map_names_only_paths_that_exist():
    missing = [
        path for path in map_paths(code_map(README.read_text())) if not (ROOT / path).exists()
    ]
    assert missing == [], f"the code map names paths that do not exist: {missing}"


def test_readme_code_map_names_every_module_under_webapp():
    named = {path for path in map_paths(code_map(README.read_text())) if path.endswith(".py")}
    assert sorted(required_modules() - named) == [], "modules missing from README's code map"


def test_readme_code_map_names_every_top_level_folder():
    named = set(map_paths(code_map(README.read_text())))
    assert sorted(top_level_folders() - named) == [], "folders missing from README's code map"


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move details to docs/"


def test_every_screenshot_is_shown_somewhere():
    """docs/screenshots holds only pictures that README.md or a doc shows (`make screenshots`
    writes no others), so that none goes stale unseen."""
    shown = README.read_text() + "".join(doc.read_text() for doc in DOCS.glob("*.md"))
    unused = [p.name for p in (DOCS / "screenshots").glob("*.png") if p.name not in shown]
    assert unused == [], f"pictures no document shows: {unused}"


def anchors(markdown: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    text = FENCE.sub("", markdown.read_text(encoding="utf-8"))
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        found.add(slug)
    return found


MARKDOWN = [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("markdown", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_that_exist(markdown):
    text = FENCE.sub("", markdown.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (markdown.parent / path).resolve() if path else markdown
        if not resolved.exists() or (
            anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)
        ):
            broken.append(target)
    assert broken == [], f"{markdown.name}: links to nothing: {broken}"


def configuration_rows() -> dict[str, list[str]]:
    """docs/configuration.md's table rows by the WEBAPP_* name in their first cell."""
    rows = {}
    for line in (DOCS / "configuration.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and (name := re.fullmatch(r"`(WEBAPP_[A-Z0-9_]+)`", cells[0])):
            rows[name.group(1)] = cells
    return rows


def documented_default(value: object) -> str | None:
    """How a default is written in the table's second cell (None: described in words)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return str(value) or None


@pytest.mark.parametrize("name", config.SETTINGS)
def test_every_setting_is_documented_with_its_default(name):
    row = configuration_rows().get(config.ENV_PREFIX + name)
    assert row is not None, f"docs/configuration.md has no row for {config.ENV_PREFIX}{name}"
    assert len(row) >= 3 and row[2], f"{config.ENV_PREFIX}{name}: say what it does"
    default = documented_default(getattr(config, name))
    if default is not None:
        assert f"`{default}`" in row[1], f"{config.ENV_PREFIX}{name}: default {default} not given"


def test_configuration_documents_no_setting_that_does_not_exist():
    """INSTANCE_PATH is read from the environment alone, before any setting."""
    known = {config.ENV_PREFIX + name for name in (*config.SETTINGS, "INSTANCE_PATH")}
    assert set(configuration_rows()) - known == set()


def defined_tests() -> set[str]:
    """The names of every test function under tests/."""
    names = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return {name for name in names if name.startswith("test_")}


def test_every_test_cited_in_security_md_exists():
    text = (DOCS / "security.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"`(?:[\w/.]+::)?(test_\w+)`", text))
    assert cited, "docs/security.md cites no test"
    assert sorted(cited - defined_tests()) == [], "docs/security.md cites tests that do not exist"


def test_every_test_file_cited_in_security_md_exists():
    text = (DOCS / "security.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"`(tests/[\w/.]+\.py)(?:::\w+)?`", text))
    assert sorted(path for path in cited if not (ROOT / path).is_file()) == []
